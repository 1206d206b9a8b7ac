"""Per-op profile of a `.tflite` model with LiteRT's own profiler.

The Python `CompiledModel` and `Interpreter` of ai-edge-litert 2.3 do not expose a profiler, but
the LiteRT C API that ships in the same wheel (`ai_edge_litert/libLiteRt.so`) does: runtime option
`enable_profiling`, `LiteRtCompiledModelGetProfiler`, and the recorded events (each op's kernel
time, and XNNPACK's own per-operator times inside a delegate partition). This module drives that C
API through ctypes on the CPU accelerator (XNNPACK delegate, default TFLite kernels for the rest)
and sums the events per op type. It times nothing itself: every number is LiteRT's.
"""

from __future__ import annotations

import ctypes
import os
from typing import Any

import numpy as np

from .cpuopts import xnnpack_flags
from .feeding import feed, has_free_length, io_details, load_sample, make_interpreter, quantize

# litert/c/litert_profiler_event.h (LiteRtProfilerEventType, ProfiledEventSource)
OPERATOR_INVOKE_EVENT = 1 << 1
DELEGATE_OPERATOR_INVOKE_EVENT = 1 << 2
DELEGATE_PROFILED_OPERATOR_INVOKE_EVENT = 1 << 3
_HW_CPU = 1  # kLiteRtHwAcceleratorCpu
_LOCK_WRITE = 1  # kLiteRtTensorBufferLockModeWrite
_HOST_MEMORY = 1  # kLiteRtTensorBufferTypeHostMemory


class _TensorType(ctypes.Structure):
    """LiteRtRankedTensorType (litert/c/litert_model_types.h, litert_layout.h): ABI stable."""

    _fields_ = [
        ("element_type", ctypes.c_int),
        ("rank", ctypes.c_uint, 7),
        ("has_strides", ctypes.c_uint, 1),
        ("dimensions", ctypes.c_int32 * 8),
        ("strides", ctypes.c_uint32 * 8),
    ]


class _MemoryUsage(ctypes.Structure):
    _fields_ = [
        ("total", ctypes.c_size_t),
        ("in_use", ctypes.c_size_t),
        ("private", ctypes.c_size_t),
    ]


class _Event(ctypes.Structure):
    """ProfiledEventData of litert/c/litert_profiler_event.h."""

    _fields_ = [
        ("tag", ctypes.c_char_p),
        ("event_type", ctypes.c_int),
        ("start_us", ctypes.c_uint64),
        ("elapsed_us", ctypes.c_uint64),
        ("begin_mem", _MemoryUsage),
        ("end_mem", _MemoryUsage),
        ("metadata1", ctypes.c_uint64),
        ("metadata2", ctypes.c_uint64),
        ("source", ctypes.c_int),
    ]


_NO_OP_DELETER = ctypes.CFUNCTYPE(None, ctypes.c_void_p)(lambda _: None)
_keep: list[Any] = []  # option payloads LiteRT may read until the process ends


def _library() -> ctypes.CDLL:
    import ai_edge_litert

    path = os.path.join(os.path.dirname(ai_edge_litert.__file__), "libLiteRt.so")
    if not os.path.isfile(path):
        raise RuntimeError(f"this ai-edge-litert has no LiteRT C library ({path}); cannot profile")
    return ctypes.CDLL(path)


class _Api:
    """The few LiteRT C functions used here; every call checks LiteRtStatus."""

    def __init__(self) -> None:
        self.lib = _library()
        for name in ("Environment", "Model", "Options", "CompiledModel", "TensorBuffer"):
            getattr(self.lib, f"LiteRtDestroy{name}").argtypes = [ctypes.c_void_p]

    def __call__(self, name: str, *args: Any) -> None:
        status = getattr(self.lib, name)(*args)
        if status != 0:
            raise RuntimeError(f"LiteRT {name} failed (status {status})")


def _opaque(api: _Api, identifier: str, toml: str) -> ctypes.c_void_p:
    """An opaque options block as LiteRT's own option builders make it: id + TOML payload."""
    payload = ctypes.create_string_buffer(toml.encode())
    _keep.append(payload)
    handle = ctypes.c_void_p()
    api(
        "LiteRtCreateOpaqueOptions",
        identifier.encode(),
        ctypes.cast(payload, ctypes.c_void_p),
        _NO_OP_DELETER,
        ctypes.byref(handle),
    )
    return handle


def cpu_options_toml(threads: int, cpu: dict[str, Any]) -> str:
    """LiteRT's CPU (XNNPACK) options as the TOML its own `LrtCpuOptions` writes."""
    lines = [f"num_threads = {threads}"]
    if "kernel_mode" in cpu:
        lines.append(f'kernel_mode = "{cpu["kernel_mode"]}"')
    flags = xnnpack_flags(cpu)
    if flags is not None:
        lines.append(f"flags = {flags}")
    if cpu.get("ynnpack"):
        lines.append("enable_ynnpack = true")
    if cpu.get("weight_cache"):
        lines.append(f'weight_cache_file_path = "{cpu["weight_cache"]}"')
    return "\n".join(lines) + "\n"


def runtime_options_toml(cpu: dict[str, Any]) -> str:
    """LiteRT's runtime options: profiling on, and delegate clustering as asked."""
    toml = "enable_profiling = true\n"
    if "clustering" in cpu:
        toml += f"disable_delegate_clustering = {str(not cpu['clustering']).lower()}\n"
    return toml


class _Profiled:
    """One compiled model on LiteRT's CPU accelerator with profiling on, inputs bound."""

    def __init__(
        self,
        api: _Api,
        model_path: str,
        threads: int,
        cpu: dict[str, Any],
        shapes: dict[str, tuple[int, ...]] | None = None,
        out_bytes: dict[str, tuple[tuple[int, ...], int]] | None = None,
    ) -> None:
        """`shapes`: the inputs' shapes for this run where the model leaves a length free
        (`convert --dynamic-length`), which they are resized to; `out_bytes`: then each output's
        shape and size in bytes."""
        self.api = api
        self.shapes = shapes or {}
        self.out_bytes = out_bytes or {}
        vp = ctypes.c_void_p
        self.env, self.model, self.options, self.compiled = vp(), vp(), vp(), vp()
        api("LiteRtCreateEnvironment", 0, None, ctypes.byref(self.env))
        api("LiteRtCreateModelFromFile", self.env, model_path.encode(), ctypes.byref(self.model))
        api("LiteRtCreateOptions", ctypes.byref(self.options))
        api("LiteRtSetOptionsHardwareAccelerators", self.options, _HW_CPU)
        runtime = _opaque(api, "runtime_options_string", runtime_options_toml(cpu))
        api("LiteRtAddOpaqueOptions", self.options, runtime)
        xnnpack = _opaque(api, "xnnpack", cpu_options_toml(threads, cpu))
        api("LiteRtAddOpaqueOptions", self.options, xnnpack)
        compiled = ctypes.byref(self.compiled)
        api("LiteRtCreateCompiledModel", self.env, self.model, self.options, compiled)
        self.profiler = vp()
        api("LiteRtCompiledModelGetProfiler", self.compiled, ctypes.byref(self.profiler))
        if not self.profiler:
            raise RuntimeError("LiteRT returned no profiler for this model")
        signature = vp()
        api("LiteRtGetModelSignature", self.model, 0, ctypes.byref(signature))
        count = ctypes.c_size_t()
        api("LiteRtGetNumSignatureInputs", signature, ctypes.byref(count))
        for i in range(count.value):
            name = ctypes.c_char_p()
            api("LiteRtGetSignatureInputName", signature, i, ctypes.byref(name))
            shape = self.shapes.get((name.value or b"").decode())
            if shape is not None:  # free dimensions: resize, as the Interpreter did
                dims = (ctypes.c_int * len(shape))(*shape)
                api("LiteRtCompiledModelResizeInputTensor", self.compiled, 0, i, dims, len(shape))
        self.inputs = self._buffers(signature, "Input")
        self.outputs = self._buffers(signature, "Output")

    def _buffers(self, signature: ctypes.c_void_p, kind: str) -> list[tuple[str, ctypes.c_void_p]]:
        api = self.api
        count = ctypes.c_size_t()
        api(f"LiteRtGetNumSignature{kind}s", signature, ctypes.byref(count))
        out = []
        for i in range(count.value):
            name, tensor, reqs, buffer = ctypes.c_char_p(), *(ctypes.c_void_p() for _ in range(3))
            api(f"LiteRtGetSignature{kind}Name", signature, i, ctypes.byref(name))
            api(f"LiteRtGetSignature{kind}TensorByIndex", signature, i, ctypes.byref(tensor))
            tensor_type = _TensorType()
            api("LiteRtGetRankedTensorType", tensor, ctypes.byref(tensor_type))
            key = (name.value or b"").decode()
            sized = self.out_bytes.get(key) if kind == "Output" else None
            shape = sized[0] if sized else self.shapes.get(key) if kind == "Input" else None
            for d in range(tensor_type.rank):  # a free (batch) size runs as 1, as the Interpreter
                size = shape[d] if shape is not None and d < len(shape) else 1
                tensor_type.dimensions[d] = max(tensor_type.dimensions[d], size)
            api(
                f"LiteRtGetCompiledModel{kind}BufferRequirements",
                self.compiled,
                0,
                i,
                ctypes.byref(reqs),
            )
            if sized:
                # LiteRT 2.3 sizes outputs after a resize only on the next run: size it here
                api(
                    "LiteRtCreateManagedTensorBuffer",
                    self.env,
                    _HOST_MEMORY,
                    ctypes.byref(tensor_type),
                    sized[1],
                    ctypes.byref(buffer),
                )
            else:
                api(
                    "LiteRtCreateManagedTensorBufferFromRequirements",
                    self.env,
                    ctypes.byref(tensor_type),
                    reqs,
                    ctypes.byref(buffer),
                )
            out.append(((name.value or b"").decode(), buffer))
        return out

    def write(self, name: str, values: np.ndarray) -> None:
        buffer = dict(self.inputs)[name]
        data = np.ascontiguousarray(values)
        size, host = ctypes.c_size_t(), ctypes.c_void_p()
        self.api("LiteRtGetTensorBufferPackedSize", buffer, ctypes.byref(size))
        if size.value != data.nbytes:
            raise RuntimeError(
                f"input '{name}': {data.nbytes} bytes given, LiteRT wants {size.value}"
            )
        self.api("LiteRtLockTensorBuffer", buffer, ctypes.byref(host), _LOCK_WRITE)
        ctypes.memmove(host, data.ctypes.data, data.nbytes)
        self.api("LiteRtUnlockTensorBuffer", buffer)

    def run(self) -> None:
        ins = (ctypes.c_void_p * len(self.inputs))(*(b for _, b in self.inputs))
        outs = (ctypes.c_void_p * len(self.outputs))(*(b for _, b in self.outputs))
        self.api(
            "LiteRtRunCompiledModel",
            self.compiled,
            0,
            len(self.inputs),
            ins,
            len(self.outputs),
            outs,
        )

    def events(self) -> list[_Event]:
        n = ctypes.c_int()
        self.api("LiteRtGetNumProfilerEvents", self.profiler, ctypes.byref(n))
        events = (_Event * n.value)()
        if n.value:
            self.api("LiteRtGetProfilerEvents", self.profiler, n.value, events)
        return list(events)

    def close(self) -> None:
        for _, buffer in self.inputs + self.outputs:
            self.api.lib.LiteRtDestroyTensorBuffer(buffer)
        self.api.lib.LiteRtDestroyCompiledModel(self.compiled)
        self.api.lib.LiteRtDestroyOptions(self.options)
        self.api.lib.LiteRtDestroyModel(self.model)
        self.api.lib.LiteRtDestroyEnvironment(self.env)


def summarize_events(
    events: list[tuple[str, int, int, int]], runs: int, top: int
) -> dict[str, Any]:
    """LiteRT's events (tag, type, elapsed us, metadata) -> per op type and place, per run.

    XNNPACK reports each of its operators as a DELEGATE_PROFILED_OPERATOR_INVOKE_EVENT numbered
    from 0 within its partition; ops on the default TFLite kernels are OPERATOR_INVOKE_EVENTs;
    LiteRT's 'Invoke' event is the whole run.
    """
    ops: dict[tuple[str, str], list[int]] = {}
    run_us = partitions = 0
    for tag, kind, elapsed_us, index in events:
        if kind == DELEGATE_PROFILED_OPERATOR_INVOKE_EVENT:
            where = "xnnpack"
            partitions += index == 0
        elif kind == OPERATOR_INVOKE_EVENT:
            where = "tflite"
        else:
            run_us += elapsed_us if tag == "Invoke" and kind == 1 else 0
            continue
        count_us = ops.setdefault((tag, where), [0, 0])
        count_us[0] += 1
        count_us[1] += elapsed_us
    run_ms = run_us / runs / 1000
    rows: list[dict[str, Any]] = [
        {
            "op": tag,
            "where": where,
            "count": round(n / runs, 2),
            "total_ms": round(us / runs / 1000, 4),
            "pct": round(100 * us / run_us, 2) if run_us else None,
        }
        for (tag, where), (n, us) in ops.items()
    ]
    rows.sort(key=lambda r: -r["total_ms"])
    place = {w: [r for r in rows if r["where"] == w] for w in ("xnnpack", "tflite")}
    return {
        "tool": "LiteRT profiler (CompiledModel, CPU accelerator)",
        "runs": runs,
        "run_ms": round(run_ms, 4),
        "profiled_ms": round(sum(r["total_ms"] for r in rows), 4),
        "xnnpack_partitions": round(partitions / runs, 2),
        "ms_by_place": {w: round(sum(r["total_ms"] for r in v), 4) for w, v in place.items()},
        "ops_by_place": {w: round(sum(r["count"] for r in v), 2) for w, v in place.items()},
        "top": top,
        "ops": rows,
    }


def profile_ops(
    model_path: str,
    threads: int = 1,
    runs: int = 20,
    warmup: int = 3,
    cpu: dict[str, Any] | None = None,
    data_path: str | None = None,
    seed: int = 0,
    top: int = 15,
) -> dict[str, Any]:
    """Run the model `runs` times under LiteRT's profiler on the CPU accelerator (with the CPU
    options `cpu`, see `cpuopts`); per op type: count and ms per run, share of the run, and where
    it ran (`xnnpack`: inside the delegate, `tflite`: on the default kernels)."""
    interpreter = make_interpreter(model_path, threads=1)
    inputs, outputs = io_details(interpreter)
    sample = load_sample(data_path, inputs, seed)
    shapes: dict[str, tuple[int, ...]] = {}
    out_bytes: dict[str, tuple[tuple[int, ...], int]] = {}
    if has_free_length(inputs):
        # a free length: one Interpreter run at the sample's shapes tells every output's size
        feed(interpreter, inputs, sample)
        interpreter.invoke()
        shapes = {n: tuple(np.shape(sample[n])) for n in inputs}
        for n, d in outputs.items():
            value = interpreter.get_tensor(d["index"])
            out_bytes[n] = (tuple(value.shape), value.nbytes)
    del interpreter
    model = _Profiled(_Api(), model_path, threads, cpu or {}, shapes, out_bytes)
    try:
        for name, _ in model.inputs:
            if name not in inputs:
                raise RuntimeError(f"LiteRT names an input '{name}' the Interpreter does not know")
            model.write(name, quantize(np.asarray(sample[name]), inputs[name]))
        for _ in range(warmup):
            model.run()
        model.api("LiteRtStartProfiler", model.profiler)
        for _ in range(runs):
            model.run()
        model.api("LiteRtStopProfiler", model.profiler)
        events = [
            ((e.tag or b"").decode("utf-8", "replace"), e.event_type, e.elapsed_us, e.metadata1)
            for e in model.events()
        ]
    finally:
        model.close()
    return summarize_events(events, runs, top)
