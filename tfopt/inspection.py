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
# Which input of a lookup is the table (the other is the ids): EMBEDDING_LOOKUP takes (ids, table).
_TABLE_INPUT = {"GATHER": 0, "GATHER_ND": 0, "EMBEDDING_LOOKUP": 1}


def _buffer_bytes(model: Any, graph: Any, t: int) -> tuple[int, int]:
    """(buffer index, bytes) of tensor `t`'s constant data; (0, 0) for a tensor without any."""
    buffer = graph.Tensors(t).Buffer()
    if buffer <= 0:
        return 0, 0
    data = model.Buffers(buffer)
    return buffer, data.DataLength() or (data.Size() if data.Offset() > 1 else 0)


def _scale_reads(model: Any, graph: Any, t: int) -> tuple[int, list[int]]:
    """Quantization data constant tensor `t` brings with it: (bytes of its scale and non-zero
    zero-point arrays, tensors holding block scales / zero points of blockwise int4)."""
    quant = graph.Tensors(t).Quantization()
    if quant is None:
        return 0, []
    inline = 4 * quant.ScaleLength()  # float32 scales, read by the kernel per channel
    if quant.ZeroPointLength() and quant.ZeroPointAsNumpy().any():
        inline += 8 * quant.ZeroPointLength()  # int64 zero points, read only when asymmetric
    tensors = []
    fb = schema()
    if quant.DetailsType() == fb.QuantizationDetails.BlockwiseQuantization:
        table, blockwise = quant.Details(), fb.BlockwiseQuantization()
        blockwise.Init(table.Bytes, table.Pos)
        tensors = [i for i in (blockwise.Scales(), blockwise.ZeroPoints()) if i >= 0]
    return inline, tensors


def _signature_subgraph(model: Any, path: str | os.PathLike[str], signature: str) -> int:
    for i in range(model.SignatureDefsLength()):
        if (model.SignatureDefs(i).SignatureKey() or b"").decode() == signature:
            return model.SignatureDefs(i).SubgraphIndex()
    raise ModelLoadError(f"{path} has no signature '{signature}'")


def _lookup_rows(graph: Any, op: Any) -> int:
    """Rows a lookup reads: one per index (indices of unknown shape count as one)."""
    ids = 1 - _TABLE_INPUT[op.name]
    if len(op.inputs) < 2 or op.inputs[ids] < 0:
        return 1
    indices = graph.Tensors(op.inputs[ids])
    shape = [int(d) for d in indices.ShapeAsNumpy()] if indices.ShapeLength() else []
    return int(np.prod(shape)) if all(d > 0 for d in shape) else 1


def weight_bytes_per_run(path: str | os.PathLike[str], signature: str) -> dict[str, int]:
    """Constant bytes one run of `signature` reads: the numerator of a memory-bandwidth roofline.

    Every constant buffer an op consumes counts once, in full, with its quantization scales
    (per-channel arrays and blockwise int4's scale tensors), except a buffer only lookups read
    (an embedding GATHER reads one row per id). A table a matmul also reads (a tied embedding:
    lookup and output head) counts in full. Keys: `weight_bytes` (all of it), `scale_bytes` (the
    part that is quantization scales), `table_bytes` (bytes of every lookup table) and
    `tied_table_bytes` (those tables also read in full, hence inside `weight_bytes`).
    """
    model = model_root(read_tflite(path))
    index = _signature_subgraph(model, path, signature)
    graph = model.Subgraphs(index)
    full: dict[int, int] = {}  # buffer -> bytes, read in full
    lookups: dict[int, tuple[int, int]] = {}  # buffer -> (bytes, bytes of the rows read)
    scales: dict[int, int] = {}  # buffer (or -tensor for inline arrays) -> scale bytes
    for op in operators(model)[index]:
        for position, t in enumerate(op.inputs):
            buffer, nbytes = _buffer_bytes(model, graph, t) if t >= 0 else (0, 0)
            if not nbytes:
                continue
            if op.name in LOOKUP_OPS and position == _TABLE_INPUT[op.name]:
                table = graph.Tensors(t)
                rows = max(1, int(table.Shape(0)) if table.ShapeLength() else 1)
                row_bytes = nbytes // rows * min(rows, _lookup_rows(graph, op))
                lookups[buffer] = (nbytes, max(row_bytes, lookups.get(buffer, (0, 0))[1]))
            else:
                full[buffer] = nbytes
            inline, scale_tensors = _scale_reads(model, graph, t)
            scales[-1 - t] = inline
            for s in scale_tensors:
                scale_buffer, scale_nbytes = _buffer_bytes(model, graph, s)
                if scale_nbytes:
                    scales[scale_buffer] = scale_nbytes
    scale_total = sum(n for key, n in scales.items() if key < 0 or key not in full)
    rows_read = sum(r for b, (_, r) in lookups.items() if b not in full)
    return {
        "weight_bytes": sum(full.values()) + rows_read + scale_total,
        "scale_bytes": scale_total,
        "table_bytes": sum(n for n, _ in lookups.values()),
        "tied_table_bytes": sum(n for b, (n, _) in lookups.items() if b in full),
    }
