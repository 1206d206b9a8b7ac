"""Single-file LiteRT timing harness: stdlib + numpy + ai_edge_litert, never TensorFlow.

This file is what travels to devices (copied as-is and run with the device's python), so it must
stay self-contained: no imports from the rest of tfopt. It is also the interpreter doorway used by
`tfopt.validate` on the host, so there is exactly one copy of "how to feed and read a .tflite".

Run as a script it measures one model at one thread count and prints one JSON document:

    python harness.py MODEL.tflite --threads 2 --runs 100 --warmup 10 [--no-xnnpack] [--data X.npz]
        [--pin 0,1] [--accelerator gpu [--placement-only]] [--lm --prompt-len 16 --new-tokens 32]

`--accelerator gpu` goes through LiteRT's CompiledModel (the Interpreter cannot reach the GPU)
and adds LiteRT's op-placement verdict and the largest difference against a CPU run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
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


def parse_cpus(cpus: str) -> list[int]:
    """'4,5,6,7' -> [4, 5, 6, 7]; the one parser of --pin (host, harness and adb's taskset)."""
    try:
        wanted = sorted({int(c) for c in cpus.split(",") if c.strip()})
    except ValueError:
        wanted = []
    if not wanted or wanted[0] < 0:
        raise ValueError(f"--pin {cpus}: give CPU ids like 0 or 4,5,6,7")
    return wanted


def pin(cpus: str) -> list[int]:
    """Pin this process (and the runtime threads it starts) to the given CPU ids."""
    wanted = parse_cpus(cpus)
    if not hasattr(os, "sched_setaffinity"):
        raise ValueError("--pin needs Linux (sched_setaffinity)")
    allowed = sorted(os.sched_getaffinity(0))
    bad = [c for c in wanted if c not in allowed]
    if bad:
        raise ValueError(f"--pin {cpus}: CPUs available here are {allowed}")
    os.sched_setaffinity(0, wanted)
    return wanted


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


def _time_loop(
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
    first_ms, latencies = _time_loop(interpreter.invoke, runs, min_seconds, min_runs, warmup)
    return {
        "accelerator": "cpu",
        "threads": threads,
        "xnnpack": xnnpack,
        "load_ms": round(load_ms, 3),
        "first_ms": round(first_ms, 3),
        "warmup": warmup,
        "runs": len(latencies),
        "latency_us": summarize(latencies),
        "peak_rss_mb": peak_rss_mb(),
    }


# --- GPU: LiteRT CompiledModel (the legacy Interpreter cannot reach the GPU accelerator) ---

_GPU_COUNTS = re.compile(
    r"(\d+) operations will run on the GPU, and the remaining (\d+) operations? will run on the CPU"
)
_GPU_UNSUPPORTED_HEADER = "Following operations are not supported by GPU delegate:"
_GPU_ADAPTER = re.compile(r"Selected adapter: (.+)")
_DELEGATE_REPLACING = re.compile(r"Replacing (\d+) out of (\d+) node\(s\) with delegate")
_LOG_LEVELS = {"INFO", "WARNING", "ERROR", "VERBOSE", "DEBUG", "E", "W", "I"}


@contextlib.contextmanager
def native_stderr() -> Iterator[list[str]]:
    """Capture what native code writes to fd 2 (LiteRT logs its GPU verdict there, not to Python).

    Yields a list that holds the captured text once the block ends.
    """
    captured: list[str] = []
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield captured
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            captured.append(sink.read().decode("utf-8", "replace"))


def parse_gpu_log(text: str) -> dict[str, Any]:
    """LiteRT's own GPU verdict from its log: unsupported ops with reasons, op counts, adapter."""
    reasons: dict[str, str] = {}
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if _GPU_UNSUPPORTED_HEADER in line:
            for follow in lines[i + 1 :]:
                op, sep, reason = follow.partition(": ")
                if not sep or not op.isupper() or " " in op or op in _LOG_LEVELS:
                    break
                reasons.setdefault(op.strip(), reason.strip())
    counts = [tuple(int(n) for n in m.groups()) for m in _GPU_COUNTS.finditer(text)]
    if not counts:  # the classic GPU delegate's wording (Android's OpenCL/OpenGL accelerator)
        counts = [(int(a), int(b) - int(a)) for a, b in _DELEGATE_REPLACING.findall(text)]
    adapter = next((m.group(1).strip() for m in _GPU_ADAPTER.finditer(text)), None)
    return {
        "fallback_reasons": reasons,
        "gpu_ops": sum(c[0] for c in counts) if counts else None,
        "cpu_ops": sum(c[1] for c in counts) if counts else None,
        "adapter": adapter,
        "software": bool(adapter and ("Software" in adapter or "llvmpipe" in adapter)),
    }


def model_graph(model_path: str) -> list[list[tuple[str, list[int], list[int]]]]:
    """Per subgraph, in execution order: (op name, input tensors, output tensors)."""
    from ai_edge_litert import schema_py_generated as schema

    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if isinstance(v, int)}
    with open(model_path, "rb") as f:
        model = schema.Model.GetRootAs(f.read(), 0)
    graphs = []
    for g in range(model.SubgraphsLength()):
        graph = model.Subgraphs(g)
        nodes = []
        for o in range(graph.OperatorsLength()):
            op = graph.Operators(o)
            code = model.OperatorCodes(op.OpcodeIndex())
            name = names.get(max(code.BuiltinCode(), code.DeprecatedBuiltinCode()), "UNKNOWN")
            if name == "CUSTOM":
                name = (code.CustomCode() or b"?").decode()
            ins = [op.Inputs(i) for i in range(op.InputsLength())]
            outs = [op.Outputs(i) for i in range(op.OutputsLength())]
            nodes.append((name, ins, outs))
        graphs.append(nodes)
    return graphs


def _partitions(
    nodes: list[tuple[str, list[int], list[int]]], unsupported: set[str]
) -> list[tuple[bool, list[int]]]:
    """TFLite's partitioning: alternate maximal sets of ready supported / unsupported nodes."""
    producers = {t for _, _, outs in nodes for t in outs}
    available = {-1} | {t for _, ins, _ in nodes for t in ins if t not in producers}
    left = list(range(len(nodes)))
    supported, stalled = True, 0
    parts: list[tuple[bool, list[int]]] = []
    while left:
        part: list[int] = []
        grew = True
        while grew:
            grew = False
            for i in list(left):
                name, ins, outs = nodes[i]
                if (name not in unsupported) == supported and all(t in available for t in ins):
                    part.append(i)
                    left.remove(i)
                    available.update(outs)
                    grew = True
        if part:
            parts.append((supported, part))
            stalled = 0
        else:
            stalled += 1
            if stalled == 2:  # nothing is ready on either side: not a plain DAG, stop here
                break
        supported = not supported
    return parts


def op_placement(model_path: str, verdict: dict[str, Any], fully: bool) -> dict[str, Any]:
    """Which ops run on the GPU and which on the CPU, per op type.

    LiteRT logs only the unsupported op types and the two totals. The delegate then takes the
    largest partition of supported ops; we replay that partitioning on the model's graph and keep
    the per-op answer only labelled exact when it reproduces LiteRT's own totals.
    """
    unsupported = set(verdict["fallback_reasons"])
    gpu: dict[str, int] = {}
    cpu: dict[str, int] = {}
    for nodes in model_graph(model_path):
        if fully:
            on_gpu = set(range(len(nodes)))
        else:
            parts: list[list[int]] = [part for ok, part in _partitions(nodes, unsupported) if ok]
            on_gpu = set(max((len(part), part) for part in parts)[1]) if parts else set()
        for i, (name, _, _) in enumerate(nodes):
            side = gpu if i in on_gpu else cpu
            side[name] = side.get(name, 0) + 1
    n_gpu, n_cpu = sum(gpu.values()), sum(cpu.values())
    if verdict["gpu_ops"] is None:
        exact = fully
    else:
        exact = (n_gpu, n_cpu) == (verdict["gpu_ops"], verdict["cpu_ops"])
    return {
        "op_placement": {
            "gpu": dict(sorted(gpu.items(), key=lambda kv: -kv[1])),
            "cpu": dict(sorted(cpu.items(), key=lambda kv: -kv[1])),
        },
        "op_placement_exact": exact,
        "gpu_op_count": verdict["gpu_ops"] if verdict["gpu_ops"] is not None else n_gpu,
        "cpu_op_count": verdict["cpu_ops"] if verdict["cpu_ops"] is not None else n_cpu,
    }


class CompiledRunner:
    """One model compiled by LiteRT for the CPU or the GPU (with CPU fallback), inputs bound."""

    def __init__(self, model_path: str, accelerator: str, threads: int = 1) -> None:
        from ai_edge_litert.compiled_model import (
            CompiledModel,
            CpuOptions,
            GpuOptions,
            HardwareAccelerator,
            Options,
        )

        options = Options(
            hardware_accelerators=HardwareAccelerator.CPU,
            cpu_options=CpuOptions(num_threads=threads),
        )
        if accelerator == "gpu":
            # CPU too, so unsupported ops fall back instead of failing; benchmark_mode makes a run
            # wait for the GPU (otherwise run_by_index only submits the work).
            options = Options(
                hardware_accelerators=HardwareAccelerator.GPU | HardwareAccelerator.CPU,
                cpu_options=CpuOptions(num_threads=threads),
                gpu_options=GpuOptions(benchmark_mode=True),
            )
        failure = None
        with native_stderr() as log:
            try:
                self.model = CompiledModel.from_file(model_path, options=options)
            except RuntimeError as exc:
                failure = str(exc)
        if failure is not None:
            raise RuntimeError(_gpu_failure(failure, log))
        self.log = log[0] if log else ""
        self.fully_accelerated = self.model.is_fully_accelerated()
        key = next(iter(self.model.get_signature_list()))
        self.signature = self.model.get_signature_index(key)
        names = self.model.get_signature_list()[key]
        # Quantization parameters come from the Interpreter's view of the same signature.
        interpreter = make_interpreter(model_path, threads=1)
        ins, outs = io_details(interpreter)
        self.inputs = {n: ins[n] for n in names["inputs"]}
        self.outputs = {n: outs[n] for n in names["outputs"]}
        self.in_buffers = self.model.create_input_buffers(self.signature)
        self.out_buffers = self.model.create_output_buffers(self.signature)
        self._out_layout = [
            (b, int(np.prod(d["shape"])), np.dtype(d["dtype"]))
            for b, d in zip(self.out_buffers, self.outputs.values(), strict=True)
        ]

    def feed(self, sample: dict[str, np.ndarray]) -> None:
        for buffer, (name, detail) in zip(self.in_buffers, self.inputs.items(), strict=True):
            buffer.write(np.ascontiguousarray(quantize(np.asarray(sample[name]), detail)))

    def invoke(self) -> None:
        """Run and read every output back to the host: the latency an app actually waits for."""
        self.model.run_by_index(self.signature, self.in_buffers, self.out_buffers)
        for buffer, size, dtype in self._out_layout:
            buffer.read(size, dtype)

    def read(self) -> dict[str, np.ndarray]:
        """Outputs as real values (dequantized)."""
        out = {}
        for buffer, (name, detail) in zip(self.out_buffers, self.outputs.items(), strict=True):
            shape = [int(s) for s in detail["shape"]]
            values = buffer.read(int(np.prod(shape)), np.dtype(detail["dtype"]))
            out[name] = dequantize(values.reshape(shape), detail)
        return out


def _gpu_failure(message: str, log: list[str]) -> str:
    """One line for a failed compile: no usable GPU, or LiteRT's own last words."""
    text = (log[0] if log else "") + message
    if "No adapters found" in text or "Failed to initialize WebGPU" in text:
        return (
            "LiteRT found no usable GPU (no Vulkan adapter); on a machine without one, "
            "`make soft-gpu` installs a software Vulkan device"
        )
    lines = [ln.lstrip("└ ").strip() for ln in message.strip().splitlines()]
    return next((ln for ln in reversed(lines) if not ln.startswith("ERROR: [")), lines[-1])


def run_compiled(
    model_path: str,
    accelerator: str = "gpu",
    threads: int = 1,
    runs: int | None = None,
    min_seconds: float = 1.0,
    min_runs: int = 10,
    warmup: int = 5,
    data_path: str | None = None,
    seed: int = 0,
    timing: bool = True,
) -> dict[str, Any]:
    """Time one model through CompiledModel; on the GPU also report placement and numerics.

    With `timing=False` only the placement verdict is returned (what `inspect --gpu` shows).
    """
    t0 = time.perf_counter_ns()
    runner = CompiledRunner(model_path, accelerator, threads)
    load_ms = (time.perf_counter_ns() - t0) / 1e6
    result: dict[str, Any] = {"accelerator": accelerator, "threads": threads}
    if accelerator == "gpu":
        verdict = parse_gpu_log(runner.log)
        result["fully_accelerated"] = runner.fully_accelerated
        result.update(op_placement(model_path, verdict, runner.fully_accelerated))
        result["fallback_reasons"] = verdict["fallback_reasons"]
        result["gpu_device"] = verdict["adapter"]
        result["software_gpu"] = verdict["software"]
    if not timing:
        return result
    sample = load_sample(data_path, runner.inputs, seed)
    runner.feed(sample)
    first_ms, latencies = _time_loop(runner.invoke, runs, min_seconds, min_runs, warmup)
    result.update(
        {
            "load_ms": round(load_ms, 3),
            "first_ms": round(first_ms, 3),
            "warmup": warmup,
            "runs": len(latencies),
            "latency_us": summarize(latencies),
            "peak_rss_mb": peak_rss_mb(),
        }
    )
    if accelerator == "gpu":
        got = runner.read()
        reference = CompiledRunner(model_path, "cpu", threads)
        reference.feed(sample)
        reference.invoke()
        want = reference.read()
        result["max_abs_vs_cpu"] = float(
            max(float(np.max(np.abs(got[k] - want[k]))) if got[k].size else 0.0 for k in got)
        )
    return result


class LmRunner:
    """A causal LM exported with `prefill` and `decode` signatures (see converters/lm.py)."""

    def __init__(self, model_path: str, threads: int = 1, xnnpack: bool = True) -> None:
        self.interpreter = make_interpreter(model_path, threads, xnnpack)
        signatures = self.interpreter.get_signature_list()
        if not {"prefill", "decode"} <= set(signatures):
            raise ValueError(
                f"{model_path} has signatures {sorted(signatures)}; an LM needs prefill and decode "
                "(convert with --lm)"
            )
        self._prefill = self.interpreter.get_signature_runner("prefill")
        self._decode = self.interpreter.get_signature_runner("decode")
        self.max_length = int(self._prefill.get_input_details()["token_ids"]["shape"][1])
        self.vocab = int(self._prefill.get_output_details()["logits"]["shape"][-1])

    def check_prompt(self, prompt: list[int], new_tokens: int = 1) -> None:
        if not prompt:
            raise ValueError("the prompt is empty")
        if any(not isinstance(t, (int, np.integer)) for t in prompt):
            raise ValueError("token ids must be integers")
        if min(prompt) < 0 or max(prompt) >= self.vocab:
            raise ValueError(f"token ids must lie in [0, {self.vocab})")
        if len(prompt) + new_tokens > self.max_length:
            raise ValueError(
                f"{len(prompt)} prompt + {new_tokens} new tokens exceed the exported length "
                f"{self.max_length} (convert with a larger --max-length)"
            )

    def prefill(self, prompt: list[int]) -> tuple[np.ndarray, np.ndarray]:
        """Logits for the token after the prompt, and the filled cache."""
        tokens = np.zeros((1, self.max_length), np.int32)
        tokens[0, : len(prompt)] = prompt
        out = self._prefill(token_ids=tokens)
        return out["logits"][0, len(prompt) - 1], out["cache"]

    def decode(self, token: int, cache: np.ndarray, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Logits after feeding `token` at position `index`, and the updated cache."""
        out = self._decode(
            token_ids=np.array([[token]], np.int32),
            cache=cache,
            cache_update_index=np.array([index], np.int32),
        )
        return out["logits"][0, 0], out["cache"]

    def generate(
        self,
        prompt: list[int],
        new_tokens: int,
        top_k: int | None = None,
        seed: int = 0,
        stop: set[int] | None = None,
    ) -> tuple[list[int], dict[str, Any]]:
        """Greedy (top_k None) or seeded top-k sampling; returns tokens and per-step timings."""
        self.check_prompt(prompt, new_tokens)
        rng = np.random.default_rng(seed)

        def pick(logits: np.ndarray) -> int:
            if not top_k:
                return int(np.argmax(logits))
            top = np.argpartition(logits, -top_k)[-top_k:]
            p = np.exp(logits[top] - logits[top].max())
            return int(rng.choice(top, p=p / p.sum()))

        clock = time.perf_counter_ns
        t0 = clock()
        logits, cache = self.prefill(prompt)
        prefill_ms = (clock() - t0) / 1e6
        tokens, steps_us = [pick(logits)], []
        for index in range(len(prompt), len(prompt) + new_tokens - 1):
            if stop and tokens[-1] in stop:
                break
            t0 = clock()
            logits, cache = self.decode(tokens[-1], cache, index)
            steps_us.append((clock() - t0) / 1e3)
            tokens.append(pick(logits))
        return tokens, {"prefill_ms": prefill_ms, "decode_us": steps_us}


def run_lm(
    model_path: str,
    threads: int = 1,
    xnnpack: bool = True,
    prompt_len: int = 16,
    new_tokens: int = 32,
    runs: int = 5,
    warmup: int = 1,
    seed: int = 0,
) -> dict[str, Any]:
    """Time to first token and decode speed of an exported LM (greedy, synthetic prompt)."""
    t0 = time.perf_counter_ns()
    lm = LmRunner(model_path, threads, xnnpack)
    load_ms = (time.perf_counter_ns() - t0) / 1e6
    prompt = [
        int(t) for t in np.random.default_rng(seed).integers(0, min(lm.vocab, 100), prompt_len)
    ]
    lm.check_prompt(prompt, new_tokens)
    for _ in range(warmup):
        lm.generate(prompt, new_tokens)
    ttft, prefill, decode = [], [], []
    for _ in range(max(1, runs)):
        _, t = lm.generate(prompt, new_tokens)
        first = t["decode_us"][0] / 1e3 if t["decode_us"] else 0.0
        ttft.append(t["prefill_ms"] + first)  # prefill + first decode step
        prefill.append(t["prefill_ms"])
        decode += t["decode_us"]
    per_token = summarize(decode) if decode else None
    return {
        "threads": threads,
        "xnnpack": xnnpack,
        "lm": True,
        "load_ms": round(load_ms, 3),
        "prompt_len": prompt_len,
        "new_tokens": new_tokens,
        "max_length": lm.max_length,
        "runs": max(1, runs),
        "prefill_ms": round(statistics.median(prefill), 3),
        "ttft_ms": round(statistics.median(ttft), 3),
        "decode_step_us": per_token,
        "decode_tokens_per_s": None
        if per_token is None
        else {
            "p50": round(1e6 / per_token["p50"], 1),
            "mean": round(len(decode) / (sum(decode) / 1e6), 1),
        },
        "latency_us": per_token,
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
    parser.add_argument("--lm", action="store_true", help="time prefill/decode of an exported LM")
    parser.add_argument("--prompt-len", type=int, default=16)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument(
        "--accelerator",
        choices=("cpu", "gpu"),
        default="cpu",
        help="cpu: Interpreter + XNNPACK; gpu: CompiledModel on the GPU with CPU fallback",
    )
    parser.add_argument("--placement-only", action="store_true", help="GPU op placement, no timing")
    parser.add_argument("--pin", default=None, help="CPU ids to pin this process to, e.g. 0,1")
    args = parser.parse_args(argv)
    try:
        pinned = pin(args.pin) if args.pin else None
        if args.accelerator == "gpu":
            if args.lm:
                raise ValueError("--lm runs on the CPU Interpreter only")
            result = run_compiled(
                args.model,
                "gpu",
                threads=args.threads,
                runs=args.runs,
                min_seconds=args.min_seconds,
                warmup=args.warmup,
                data_path=args.data,
                seed=args.seed,
                timing=not args.placement_only,
            )
        elif args.lm:
            result = run_lm(
                args.model,
                args.threads,
                not args.no_xnnpack,
                args.prompt_len,
                args.new_tokens,
                runs=args.runs or 5,
                warmup=min(args.warmup, 2),
                seed=args.seed,
            )
        else:
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
    if pinned is not None:
        result["pinned_cpus"] = pinned
    result["machine"] = machine_info()
    result["harness_version"] = HARNESS_VERSION
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
