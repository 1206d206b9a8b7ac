"""GPU timing through LiteRT's CompiledModel (the legacy Interpreter cannot reach the GPU
accelerator), and LiteRT's own GPU verdict read from the log its native code writes to stderr.

The verdict travels back as data (unsupported op types with reasons, LiteRT's op totals); the
host turns it into a per-op placement (`tfopt.placement`), which needs the graph, not the device.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
import time
from collections.abc import Iterator
from typing import Any

import numpy as np

from .cpu import Budget, time_loop, timing_entry
from .cpuopts import xnnpack_flags
from .feeding import (
    dequantize,
    has_free_length,
    io_details,
    load_sample,
    make_interpreter,
    quantize,
)
from .openvino import openvino_environment, openvino_options, parse_openvino_log

LITERT_OP_TOTALS = "litert_op_totals"  # the verdict's totals, as the device returns them

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


class CompiledRunner:
    """One model compiled by LiteRT for the CPU or the GPU (with CPU fallback), inputs bound."""

    def __init__(
        self,
        model_path: str,
        accelerator: str,
        threads: int = 1,
        cpu: dict[str, Any] | None = None,
    ) -> None:
        from ai_edge_litert.compiled_model import (
            CompiledModel,
            CpuOptions,
            GpuOptions,
            HardwareAccelerator,
            Options,
        )

        options = Options(
            hardware_accelerators=HardwareAccelerator.CPU,
            cpu_options=cpu_options(CpuOptions, threads, cpu or {}),
        )
        if accelerator == "gpu":
            # CPU too, so unsupported ops fall back instead of failing; benchmark_mode makes a run
            # wait for the GPU (otherwise run_by_index only submits the work).
            options = Options(
                hardware_accelerators=HardwareAccelerator.GPU | HardwareAccelerator.CPU,
                cpu_options=CpuOptions(num_threads=threads),
                gpu_options=GpuOptions(benchmark_mode=True),
            )
        environment = None
        if accelerator == "openvino":
            environment, options = openvino_environment(), openvino_options(threads)
        failure = None
        with native_stderr() as log:
            try:
                self.model = CompiledModel.from_file(
                    model_path, environment=environment, options=options
                )
            except RuntimeError as exc:
                failure = str(exc)
        if failure is not None:
            if accelerator == "cpu" and cpu:
                raise RuntimeError(_cpu_failure(failure, cpu))
            if accelerator == "openvino":
                raise RuntimeError(
                    f"LiteRT's OpenVINO dispatch failed: {(failure.strip().splitlines() or ['no message'])[0]}"
                )
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
        if has_free_length(self.inputs):
            raise RuntimeError(
                "a free-length model (convert --dynamic-length) runs on the Interpreter only: "
                "the GPU, OpenVINO and api=compiled paths need fixed shapes (convert with --seq-len N)"
            )
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


def cpu_options(cpu_options_cls: Any, threads: int, cpu: dict[str, Any]) -> Any:
    """`CpuOptions` of CompiledModel for parsed `--cpu-option`s (see `cpuopts`)."""
    from ai_edge_litert.cpu_kernel_mode import CpuKernelMode

    kwargs: dict[str, Any] = {"num_threads": threads, "xnnpack_flags": xnnpack_flags(cpu)}
    if "kernel_mode" in cpu:
        kwargs["kernel_mode"] = CpuKernelMode[cpu["kernel_mode"].upper()]
    if "ynnpack" in cpu:
        kwargs["enable_ynnpack"] = bool(cpu["ynnpack"])
    if "weight_cache" in cpu:
        kwargs["xnnpack_weight_cache_path"] = cpu["weight_cache"]
    return cpu_options_cls(**kwargs)


def _cpu_failure(message: str, cpu: dict[str, Any]) -> str:
    """One line for CPU options LiteRT refused; its message is often only source locations."""
    options = " ".join(f"{k}={str(v).lower()}" for k, v in cpu.items() if k != "api")
    lines = [ln.lstrip("└ ").strip() for ln in message.strip().splitlines() if ln.strip()]
    said = [ln for ln in lines if not (ln.startswith("ERROR: [") and ln.endswith("]"))]
    reason = said[-1] if said else f"it gave no reason beyond {lines[-1] if lines else '?'}"
    return f"LiteRT's CPU accelerator could not compile the model with {options}: {reason}"


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
    budget: Budget | None = None,
    data_path: str | None = None,
    seed: int = 0,
    timing: bool = True,
    cpu: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Time one model through CompiledModel; on the GPU also report placement and numerics.

    With `timing=False` only the placement verdict is returned (what `inspect --gpu` shows). The
    verdict holds LiteRT's op totals under `LITERT_OP_TOTALS`; `tfopt.placement` turns them into
    the per-op placement on the host.
    """
    t0 = time.perf_counter_ns()
    runner = CompiledRunner(model_path, accelerator, threads, cpu)
    load_ms = (time.perf_counter_ns() - t0) / 1e6
    result: dict[str, Any] = {"accelerator": accelerator, "threads": threads}
    if accelerator == "gpu":
        verdict = parse_gpu_log(runner.log)
        result["fully_accelerated"] = runner.fully_accelerated
        # LiteRT's own totals; the host replaces them with the per-op placement (same place).
        result[LITERT_OP_TOTALS] = {"gpu": verdict["gpu_ops"], "cpu": verdict["cpu_ops"]}
        result["fallback_reasons"] = verdict["fallback_reasons"]
        result["gpu_device"] = verdict["adapter"]
        result["software_gpu"] = verdict["software"]
    if accelerator == "openvino":
        result["fully_accelerated"] = runner.fully_accelerated
        result.update(parse_openvino_log(runner.log))
    if not timing:
        return result
    sample = load_sample(data_path, runner.inputs, seed)
    runner.feed(sample)
    budget = budget or Budget()
    first_ms, latencies = time_loop(runner.invoke, budget)
    result.update(timing_entry(load_ms, first_ms, budget.warmup, latencies))
    if accelerator in ("gpu", "openvino"):
        got = runner.read()
        reference = CompiledRunner(model_path, "cpu", threads)
        reference.feed(sample)
        reference.invoke()
        want = reference.read()
        result["float_outputs"] = all(
            np.dtype(d["dtype"]).kind == "f" for d in runner.outputs.values()
        )
        result["max_abs_vs_cpu"] = float(
            max(float(np.max(np.abs(got[k] - want[k]))) if got[k].size else 0.0 for k in got)
        )
    return result
