"""Single-file LiteRT timing harness: stdlib + numpy + ai_edge_litert, never TensorFlow.

This file is what travels to devices (copied as-is and run with the device's python), so it must
stay self-contained: no imports from the rest of tfopt. It is also the interpreter doorway used by
`tfopt.validate` on the host, so there is exactly one copy of "how to feed and read a .tflite".

Run as a script it measures one model at one thread count and prints one JSON document:

    python harness.py MODEL.tflite --threads 2 --runs 100 --warmup 10 [--no-xnnpack] [--data X.npz]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import time
from typing import Any

import numpy as np

HARNESS_VERSION = 1


def make_interpreter(model_path: str, threads: int = 1, xnnpack: bool = True) -> Any:
    """Build a LiteRT Interpreter with threads and XNNPACK set explicitly."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    resolver = OpResolverType.AUTO if xnnpack else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    interpreter = Interpreter(
        model_path=model_path, num_threads=threads, experimental_op_resolver_type=resolver
    )
    interpreter.allocate_tensors()
    return interpreter


def _short_name(tensor_name: str) -> str:
    """'serving_default_token_ids:0' -> 'token_ids' (signature-less tensor names)."""
    name = tensor_name.split(":")[0]
    if name.startswith("serving_default_"):
        name = name[len("serving_default_") :]
    return name


def io_details(interpreter: Any) -> tuple[dict[str, dict], dict[str, dict]]:
    """Inputs and outputs keyed by user-facing name (signature names if there is one signature)."""
    signatures = interpreter.get_signature_list()
    if len(signatures) == 1:
        runner = interpreter.get_signature_runner(next(iter(signatures)))
        return runner.get_input_details(), runner.get_output_details()
    ins = {_short_name(d["name"]): d for d in interpreter.get_input_details()}
    outs = {_short_name(d["name"]): d for d in interpreter.get_output_details()}
    return ins, outs


def quantize(values: np.ndarray, detail: dict) -> np.ndarray:
    """Cast real values to the tensor's dtype, applying its scale and zero point when quantized."""
    dtype = np.dtype(detail["dtype"])
    scale, zero_point = detail["quantization"]
    if scale and np.issubdtype(dtype, np.integer) and np.issubdtype(values.dtype, np.floating):
        info = np.iinfo(dtype)
        q = np.round(values / scale + zero_point)
        return np.clip(q, info.min, info.max).astype(dtype)
    return values.astype(dtype, copy=False)


def dequantize(values: np.ndarray, detail: dict) -> np.ndarray:
    """Real values of a tensor: (q - zero_point) * scale when quantized, else float32."""
    scale, zero_point = detail["quantization"]
    if scale and np.issubdtype(values.dtype, np.integer):
        return (values.astype(np.float32) - zero_point) * scale
    return values.astype(np.float32) if values.dtype != np.float32 else values


def synthetic_input(name: str, detail: dict, rng: np.random.Generator) -> np.ndarray:
    """Realistic random values for one input: floats in [0, 1), small non-negative ids for ints.

    Integer inputs are usually indices (token ids, segment ids, masks), so negative or large values
    would make gathers fail; masks and segment/type ids stay in {0, 1}.
    """
    shape = [int(s) for s in detail["shape"]]
    dtype = np.dtype(detail["dtype"])
    if dtype == np.bool_:
        return rng.integers(0, 2, shape).astype(bool)
    if np.issubdtype(dtype, np.floating):
        return rng.random(shape, dtype=np.float32).astype(dtype)
    scale, _ = detail["quantization"]
    if scale:  # a quantized (int8 I/O) tensor: realistic float values, then quantized
        return quantize(rng.random(shape, dtype=np.float32), detail)
    lowered = name.lower()
    high = 2 if any(k in lowered for k in ("mask", "segment", "type")) else 100
    return rng.integers(0, high, shape).astype(dtype)


def feed(interpreter: Any, inputs: dict[str, dict], sample: dict[str, np.ndarray]) -> None:
    """Set every input tensor from a {name: array} sample (batch dimension included)."""
    for name, detail in inputs.items():
        interpreter.set_tensor(detail["index"], quantize(np.asarray(sample[name]), detail))


def _percentile(sorted_values: list[float], p: float) -> float:
    k = (len(sorted_values) - 1) * p / 100.0
    lo = int(k)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (k - lo) * (sorted_values[hi] - sorted_values[lo])


def summarize(latencies_us: list[float]) -> dict[str, float]:
    """p50/p90/p99/mean/std/min/max of a list of microsecond latencies."""
    s = sorted(latencies_us)
    return {
        "p50": round(_percentile(s, 50), 2),
        "p90": round(_percentile(s, 90), 2),
        "p99": round(_percentile(s, 99), 2),
        "mean": round(statistics.fmean(s), 2),
        "std": round(statistics.pstdev(s), 2),
        "min": round(s[0], 2),
        "max": round(s[-1], 2),
    }


def peak_rss_mb() -> float:
    """Peak resident set size of this process (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (1024 * 1024 if sys.platform == "darwin" else 1024), 1)


def machine_info() -> dict[str, Any]:
    """CPU model, core count and library versions of the machine running the harness."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith(("model name", "Hardware", "Model")):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        from importlib.metadata import version

        litert = version("ai-edge-litert")
    except Exception:  # noqa: BLE001 - a device may carry the runtime without metadata
        litert = "unknown"
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "arch": platform.machine(),
        "system": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "numpy": np.__version__,
        "ai_edge_litert": litert,
    }


def load_sample(data_path: str | None, inputs: dict[str, dict], seed: int) -> dict[str, np.ndarray]:
    """First sample of a .npz/.npy file (by input name, or `x`), else synthetic values."""
    rng = np.random.default_rng(seed)
    if not data_path:
        return {name: synthetic_input(name, d, rng) for name, d in inputs.items()}
    if data_path.endswith(".npy"):
        arrays = {"x": np.load(data_path, allow_pickle=False)}
    else:
        with np.load(data_path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    sample = {}
    for name, detail in inputs.items():
        key = name if name in arrays else "x" if len(inputs) == 1 and "x" in arrays else None
        if key is None:
            raise ValueError(f"data has no array named '{name}'")
        sample[name] = arrays[key][:1].reshape([int(s) for s in detail["shape"]])
    return sample


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
) -> dict[str, Any]:
    """Load, warm up and time one model; return one result entry (times in ms/us).

    `runs` fixes the number of timed invokes; otherwise invokes repeat until `min_seconds` have
    passed and at least `min_runs` were taken. Inputs are set once, before warm-up.
    """
    t0 = time.perf_counter_ns()
    interpreter = make_interpreter(model_path, threads, xnnpack)
    load_ms = (time.perf_counter_ns() - t0) / 1e6
    inputs, _ = io_details(interpreter)
    feed(interpreter, inputs, load_sample(data_path, inputs, seed))

    invoke = interpreter.invoke
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
            break
    return {
        "threads": threads,
        "xnnpack": xnnpack,
        "load_ms": round(load_ms, 3),
        "first_ms": round(first_ms, 3),
        "warmup": warmup,
        "runs": len(latencies),
        "latency_us": summarize(latencies),
        "peak_rss_mb": peak_rss_mb(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Time one .tflite model with LiteRT.")
    parser.add_argument("model")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--runs", type=int, default=None)
    parser.add_argument("--min-seconds", type=float, default=1.0)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--no-xnnpack", action="store_true")
    parser.add_argument("--data", default=None)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        result = run(
            args.model,
            threads=args.threads,
            xnnpack=not args.no_xnnpack,
            runs=args.runs,
            min_seconds=args.min_seconds,
            warmup=args.warmup,
            data_path=args.data,
            seed=args.seed,
        )
    except Exception as exc:  # noqa: BLE001 - reported to the parent as one line of JSON
        print(json.dumps({"error": f"{type(exc).__name__}: {exc}".splitlines()[0]}))
        return 1
    result["machine"] = machine_info()
    result["harness_version"] = HARNESS_VERSION
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
