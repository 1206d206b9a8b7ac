"""CPU timing: the LiteRT Interpreter with threads and XNNPACK set explicitly."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from .cpuopts import interpreter_kwargs
from .feeding import feed, io_details, load_sample, make_interpreter
from .stats import peak_rss_mb, summarize


@dataclass(frozen=True)
class Budget:
    """How long to time: `runs` timed invokes if given, else until `min_seconds` have passed and
    at least `min_runs` were taken; `warmup` untimed invokes first."""

    runs: int | None = None
    min_seconds: float = 1.0
    min_runs: int = 10
    warmup: int = 5


def time_loop(invoke: Any, budget: Budget) -> tuple[float, list[float]]:
    """First-invoke ms, then the budget's untimed warm-up invokes, then the timed latencies in us."""
    clock = time.perf_counter_ns
    t0 = clock()
    invoke()
    first_ms = (clock() - t0) / 1e6
    for _ in range(budget.warmup):
        invoke()
    latencies: list[float] = []
    deadline = clock() + int(budget.min_seconds * 1e9)
    runs = budget.runs
    while True:
        t0 = clock()
        invoke()
        latencies.append((clock() - t0) / 1e3)
        n = len(latencies)
        if (runs is not None and n >= runs) or (
            runs is None and n >= budget.min_runs and clock() >= deadline
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
    budget: Budget = Budget(),
    data_path: str | None = None,
    seed: int = 0,
    cpu: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Load, warm up and time one model for `budget`; return one result entry (times in ms/us).

    Inputs are set once, before warm-up. `cpu` holds parsed Interpreter options
    (`cpuopts.parse_cpu_options`).
    """
    t0 = time.perf_counter_ns()
    interpreter = make_interpreter(model_path, threads, xnnpack, interpreter_kwargs(cpu or {}))
    load_ms = (time.perf_counter_ns() - t0) / 1e6
    inputs, _ = io_details(interpreter)
    feed(interpreter, inputs, load_sample(data_path, inputs, seed))
    first_ms, latencies = time_loop(interpreter.invoke, budget)
    return {
        "accelerator": "cpu",
        "threads": threads,
        "xnnpack": xnnpack,
        "input_shapes": fed_shapes(inputs),
        **timing_entry(load_ms, first_ms, budget.warmup, latencies),
    }


def fed_shapes(inputs: dict[str, dict]) -> dict[str, list[int]]:
    """The shape each input was timed at (after `feed` resized free dimensions)."""
    return {name: [int(d) for d in detail["shape"]] for name, detail in inputs.items()}
