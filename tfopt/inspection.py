"""Inspect a `.tflite` file: I/O, signatures, op and dtype counts, sizes. No TensorFlow needed."""

from __future__ import annotations

import gzip
import os
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from tfopt.errors import InputError, ModelLoadError, first_line
from tfopt.flatbuffer import enum_names, is_tflite, model_root, operators, schema
from tfopt.foreign import describe
from tfopt.fsutil import existing
from tfopt.metadata import read as read_metadata
from tfopt.runtime.feeding import make_interpreter, short_name

# Ops that move between float and integer domains; they do not count as "float compute".
_CONVERSION_OPS = {"QUANTIZE", "DEQUANTIZE", "CAST"}


def gzip_size(data: bytes) -> int:
    """Size after gzip -9: what a pruned or clustered model costs in an app download."""
    return len(gzip.compress(data, compresslevel=9, mtime=0))


def graph_summary(data: bytes) -> dict[str, Any]:
    """Op counts, tensor dtype counts, custom ops and float-compute ops over all subgraphs."""
    type_names = enum_names(schema().TensorType)
    model = model_root(data)
    ops: Counter[str] = Counter()
    dtypes: Counter[str] = Counter()
    float_ops: Counter[str] = Counter()
    custom: set[str] = set()
    for g, nodes in enumerate(operators(model)):
        graph = model.Subgraphs(g)
        tensor_types = [type_names[graph.Tensors(t).Type()] for t in range(graph.TensorsLength())]
        dtypes.update(name.lower() for name in tensor_types)
        for op in nodes:
            if op.custom:
                custom.add(op.name)
            ops[op.name] += 1
            if op.name not in _CONVERSION_OPS and any(
                i >= 0 and tensor_types[i] in ("FLOAT32", "FLOAT16") for i in op.outputs
            ):
                float_ops[op.name] += 1
    return {
        "subgraphs": model.SubgraphsLength(),
        "ops": dict(ops.most_common()),
        "tensor_dtypes": dict(dtypes.most_common()),
        "custom_ops": sorted(custom),
        "float_compute_ops": dict(float_ops.most_common()),
    }


def _io(details: dict[str, dict]) -> list[dict[str, Any]]:
    out = []
    for name, d in details.items():
        scale, zero_point = d["quantization"]
        out.append(
            {
                "name": name,
                "tensor": d["name"],
                "shape": [int(s) for s in d["shape_signature"]],
                "dtype": np.dtype(d["dtype"]).name,
                "quantization": (
                    {"scale": float(scale), "zero_point": int(zero_point)} if scale else None
                ),
            }
        )
    return out


def read_tflite(path: str | os.PathLike[str]) -> bytes:
    """The bytes of a `.tflite` file, refusing anything that is not one."""
    p = existing(path, "model")
    if p.is_dir():
        raise InputError(describe(p) or f"{p} is a folder, not a .tflite file")
    data = p.read_bytes()
    if not is_tflite(data):  # an ONNX, PyTorch... file is named, with the route to a .tflite
        raise ModelLoadError(describe(p) or f"{p} is not a TFLite flatbuffer (no TFL3 identifier)")
    return data


_NUMPY_TYPES = {"FLOAT32": "float32", "FLOAT16": "float16", "FLOAT64": "float64", "BOOL": "bool"}


def _tensor_doc(graph: Any, index: int, name: str, type_names: dict[int, str]) -> dict[str, Any]:
    """One I/O tensor read from the flatbuffer, in the shape `runtime.feeding.io_details` reports."""
    tensor = graph.Tensors(index)
    if tensor.ShapeSignatureLength() > 0:
        shape = [int(d) for d in tensor.ShapeSignatureAsNumpy()]
    else:
        shape = [int(d) for d in tensor.ShapeAsNumpy()] if tensor.ShapeLength() else []
    kind = type_names.get(tensor.Type(), f"TYPE_{tensor.Type()}")
    quant = tensor.Quantization()
    q = None
    if quant is not None and quant.ScaleLength() == 1 and quant.ZeroPointLength() == 1:
        q = {"scale": float(quant.Scale(0)), "zero_point": int(quant.ZeroPoint(0))}
    return {
        "name": name,
        "tensor": (tensor.Name() or b"").decode("utf-8", "replace"),
        "shape": shape,
        "dtype": _NUMPY_TYPES.get(kind, kind.lower()),
        "quantization": q,
    }


def flatbuffer_io(data: bytes) -> dict[str, Any]:
    """Inputs, outputs and signatures read from the flatbuffer alone: no kernels needed, so a
    file with custom ops the runtime does not ship is still described.

    Raises ValueError (or the flatbuffer reader's own errors) on a structurally broken file.
    """
    type_names = enum_names(schema().TensorType)
    model = model_root(data)
    if model.SubgraphsLength() < 1:
        raise ValueError("no subgraphs")
    for count in (model.SubgraphsLength(), model.BuffersLength(), model.OperatorCodesLength()):
        if count * 4 > len(data):
            raise ValueError("a vector runs past the end of the file")
    graph = model.Subgraphs(0)
    n_tensors = graph.TensorsLength()

    def checked(index: int, graph_tensors: int) -> int:
        if not 0 <= index < graph_tensors:
            raise ValueError(f"tensor index {index} out of range")
        return index

    signatures: dict[str, Any] = {}
    sig_io: dict[str, tuple[list[dict[str, Any]], list[dict[str, Any]]]] = {}
    for i in range(model.SignatureDefsLength()):
        sig = model.SignatureDefs(i)
        key = (sig.SignatureKey() or b"").decode("utf-8", "replace")
        sub = sig.SubgraphIndex()
        if not 0 <= sub < model.SubgraphsLength():
            raise ValueError(f"signature '{key}' names subgraph {sub}")
        g = model.Subgraphs(sub)
        ins = [sig.Inputs(j) for j in range(sig.InputsLength())]
        outs = [sig.Outputs(j) for j in range(sig.OutputsLength())]
        names_in = [(t.Name() or b"").decode("utf-8", "replace") for t in ins]
        names_out = [(t.Name() or b"").decode("utf-8", "replace") for t in outs]
        signatures[key] = {"inputs": names_in, "outputs": names_out}
        sig_io[key] = (
            [
                _tensor_doc(g, checked(t.TensorIndex(), g.TensorsLength()), n, type_names)
                for t, n in zip(ins, names_in, strict=True)
            ],
            [
                _tensor_doc(g, checked(t.TensorIndex(), g.TensorsLength()), n, type_names)
                for t, n in zip(outs, names_out, strict=True)
            ],
        )
    if len(sig_io) == 1:
        inputs, outputs = next(iter(sig_io.values()))
    else:
        inputs, outputs = (
            [
                _tensor_doc(
                    graph,
                    checked(i, n_tensors),
                    short_name((graph.Tensors(checked(i, n_tensors)).Name() or b"").decode()),
                    type_names,
                )
                for i in indices
            ]
            for indices in (
                [int(i) for i in graph.InputsAsNumpy()] if graph.InputsLength() else [],
                [int(i) for i in graph.OutputsAsNumpy()] if graph.OutputsLength() else [],
            )
        )
    return {"inputs": inputs, "outputs": outputs, "signatures": signatures}


def _missing_kernels(path: str | os.PathLike[str], custom_ops: list[str]) -> list[str]:
    """Custom ops LiteRT cannot run here (empty when the model loads).

    Raises ValueError/RuntimeError from the runtime when the file fails for another reason.
    """
    from tfopt.loading import probe_tflite

    probe_tflite(path)  # a native crash (damaged file, int16 op without kernel) stays in a child
    try:  # without XNNPACK: it segfaults preparing some damaged int8 graphs (found by fuzzing)
        make_interpreter(str(path), xnnpack=False)
    except (ValueError, RuntimeError) as exc:
        text = str(exc)
        missing = sorted(op for op in custom_ops if op in text)
        if missing and ("unresolved custom op" in text or "custom op" in text.lower()):
            return missing
        raise
    return []


def inspect_tflite(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Everything a deployer asks about a `.tflite` file, as a JSON-ready dict.

    The description comes from the flatbuffer itself, so a file whose custom ops LiteRT does not
    ship is described too (`missing_kernels` names them: the app must register them); the file
    is then also loaded by LiteRT, which refuses a structurally broken one.

    Raises:
        InputError / ModelLoadError: missing file, not a TFLite file, or a broken one.
    """
    data = read_tflite(path)
    try:
        summary = graph_summary(data)
        io = flatbuffer_io(data)
        missing = _missing_kernels(path, summary["custom_ops"])
        try:
            meta = read_metadata(data)
        except ModelLoadError as exc:  # LiteRT runs the model regardless: describe the rest
            meta = {"error": str(exc)}
    except ModelLoadError:
        raise
    except Exception as exc:  # noqa: BLE001 - a truncated flatbuffer fails in many ways
        raise ModelLoadError(f"{path} is a broken .tflite file: {first_line(exc, 200)}") from exc
    return {
        "model": str(Path(path)),
        "size_bytes": len(data),
        "gzip_bytes": gzip_size(data),
        **io,
        "missing_kernels": missing,
        **summary,
        "metadata": meta,
    }


def weight_stats(path: str | os.PathLike[str], min_size: int = 64) -> dict[str, dict[str, Any]]:
    """Per constant weight tensor (main subgraph): dtype, zeros, unique values (total, per channel).

    Per channel means along axis 0, the output channels of TFLite's FULLY_CONNECTED and CONV
    kernels: with per-channel int8 scales, a clustered kernel keeps K values per channel.
    """
    data = read_tflite(path)
    model = model_root(data)
    graph = model.Subgraphs(0)
    interpreter = make_interpreter(str(path), xnnpack=False)
    out: dict[str, dict[str, Any]] = {}
    for t in range(graph.TensorsLength()):
        tensor = graph.Tensors(t)
        buffer = model.Buffers(tensor.Buffer()) if tensor.Buffer() > 0 else None
        if buffer is None or (buffer.DataLength() == 0 and buffer.Size() == 0):
            continue
        try:
            value = interpreter.get_tensor(t)
        except ValueError:
            continue
        if value.ndim < 2 or value.size < min_size or not np.issubdtype(value.dtype, np.number):
            continue
        per_channel = max(int(np.unique(c).size) for c in value.reshape(value.shape[0], -1))
        out[(tensor.Name() or b"").decode()[:80]] = {
            "dtype": value.dtype.name,
            "shape": list(value.shape),
            "sparsity": round(float(np.mean(value == 0)), 4),
            "unique": int(np.unique(value).size),
            "unique_per_channel_max": per_channel,
        }
    return out


LOOKUP_OPS = ("GATHER", "EMBEDDING_LOOKUP", "GATHER_ND")


def weight_bytes_per_run(path: str | os.PathLike[str], signature: str) -> dict[str, int]:
    """Constant bytes one run of `signature` reads: every weight an op consumes, once per buffer,
    except lookup tables (an embedding GATHER reads one row per id: counted as one row). The
    numerator of a memory-bandwidth roofline; `table_bytes` are the lookup tables left out."""
    data = read_tflite(path)
    model = model_root(data)
    index = next(
        (
            model.SignatureDefs(i).SubgraphIndex()
            for i in range(model.SignatureDefsLength())
            if (model.SignatureDefs(i).SignatureKey() or b"").decode() == signature
        ),
        None,
    )
    if index is None:
        raise ModelLoadError(f"{path} has no signature '{signature}'")
    graph = model.Subgraphs(index)

    def size(t: int) -> tuple[int, int]:
        tensor = graph.Tensors(t)
        buffer = model.Buffers(tensor.Buffer()) if tensor.Buffer() > 0 else None
        if buffer is None:
            return 0, 0
        nbytes = buffer.DataLength() or (buffer.Size() if buffer.Offset() > 1 else 0)
        return tensor.Buffer(), nbytes

    seen: set[int] = set()
    read = tables = 0
    for op in operators(model)[index]:
        for position, t in enumerate(op.inputs):
            if t < 0:
                continue
            buffer, nbytes = size(t)
            if not nbytes or buffer in seen:
                continue
            seen.add(buffer)
            if op.name in LOOKUP_OPS and position == 0:
                rows = max(1, int(graph.Tensors(t).Shape(0)) if graph.Tensors(t).ShapeLength() else 1)
                tables += nbytes
                read += nbytes // rows
            else:
                read += nbytes
    return {"weight_bytes": read, "table_bytes": tables}
