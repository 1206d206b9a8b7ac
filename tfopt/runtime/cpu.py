"""CPU timing: the LiteRT Interpreter with threads and XNNPACK set explicitly."""

from __future__ import annotations

import time
from typing import Any

from .cpuopts import interpreter_kwargs
from .feeding import feed, io_details, load_sample, make_interpreter
from .stats import peak_rss_mb, summarize


def time_loop(
    invoke: Any, runs: int | None, min_seconds: float, min_runs: int, warmup: int
) -> tuple[float, list[float]]:
    """First-invoke ms, then `warmup` untimed invokes, then the timed latencies in us."""
    clock = time.perf_counter_ns
    t0 = clock()
    invoke()
    first_ms = (clock() - t0) / 1e6
    for _ in range(warmup):
        invoke()
    latencies: list[float] = []
    deadline = clock() + int(min_seconds * 1e9)
    while True:
        t0 = clock()
        invoke()
        latencies.append((clock() - t0) / 1e3)
        n = len(latencies)
        if (runs is not None and n >= runs) or (
            runs is None and n >= min_runs and clock() >= deadline
        ):
            return first_ms, latencies


def timing_entry(
    load_ms: float, first_ms: float, warmup: int, latencies: list[float]
) -> dict[str, Any]:
    """The timing part of a result: load, first invoke, warm-up, timed runs, peak memory."""
    return {
        "load_ms": round(load_ms, 3),
        "first_ms": round(first_ms, 3),
        "warmup": warmup,
        "runs": len(latencies),
        "latency_us": summarize(latencies),
        "peak_rss_mb": peak_rss_mb(),
    }


def run(
    model_path: str,
    threads: int = 1,
    xnnpack: bool = True,
    runs: int | None = None,
    min_seconds: float = 1.0,
    min_runs: int = 10,
    warmup: int = 5,
    data_path: str | None = None,
    seed: int = 0,
    cpu: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Load, warm up and time one model; return one result entry (times in ms/us).

    `runs` fixes the number of timed invokes; otherwise invokes repeat until `min_seconds` have
    passed and at least `min_runs` were taken. Inputs are set once, before warm-up. `cpu` holds
    parsed Interpreter options (`cpuopts.parse_cpu_options`).
    """
    t0 = time.perf_counter_ns()
    interpreter = make_interpreter(model_path, threads, xnnpack, interpreter_kwargs(cpu or {}))
    load_ms = (time.perf_counter_ns() - t0) / 1e6
    inputs, _ = io_details(interpreter)
    feed(interpreter, inputs, load_sample(data_path, inputs, seed))
    first_ms, latencies = time_loop(interpreter.invoke, runs, min_seconds, min_runs, warmup)
    return {
        "accelerator": "cpu",
        "threads": threads,
        "xnnpack": xnnpack,
        "input_shapes": fed_shapes(inputs),
        **timing_entry(load_ms, first_ms, warmup, latencies),
    }


def fed_shapes(inputs: dict[str, dict]) -> dict[str, list[int]]:
    """The shape each input was timed at (after `feed` resized free dimensions)."""
    return {name: [int(d) for d in detail["shape"]] for name, detail in inputs.items()}
