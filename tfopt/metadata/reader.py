"""Reading TFLite metadata: the TFLITE_METADATA flatbuffer and the files packed after the model
(a zip appended to the flatbuffer), as a JSON-ready dict; and what keeps apps from using it."""

from __future__ import annotations

import functools
import io
import zipfile
from collections.abc import Callable
from typing import Any, TypeVar

from tfopt.errors import InputError, ModelLoadError, TfoptError, first_line, option
from tfopt.flatbuffer import enum_names, schema
from tfopt.metadata import schema_generated as md

T = TypeVar("T")
FIELD = b"TFLITE_METADATA"  # the model metadata entry the runtimes look up
IDENTIFIER = b"M001"  # the metadata flatbuffer's file identifier
TEXT_KEYS = ("name", "description", "version", "author", "license")


def guarded(fn: Callable[..., T]) -> Callable[..., T]:
    """A damaged flatbuffer or zip fails in many ways inside the generated readers: one line."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        try:
            return fn(*args, **kwargs)
        except TfoptError:
            raise
        except Exception as exc:  # noqa: BLE001 - struct.error, IndexError, zlib.error, ...
            raise ModelLoadError(f"broken TFLite metadata or model: {first_line(exc, 200)}") from exc

    return wrapper


def _entries(model: Any) -> dict[bytes, int]:
    return {model.Metadata(i).Name(): model.Metadata(i).Buffer() for i in range(model.MetadataLength())}


def metadata_buffer(data: bytes) -> bytes | None:
    """The raw TFLITE_METADATA flatbuffer of a model, if it has one."""
    model = schema().Model.GetRootAs(data, 0)
    index = _entries(model).get(FIELD)
    if index is None:
        return None
    buf = model.Buffers(index)
    if buf.Offset() > 1:  # stored after the flatbuffer (models over 2 GB)
        return data[buf.Offset() : buf.Offset() + buf.Size()]
    return buf.DataAsNumpy().tobytes() if buf.DataLength() else None


def packed_files(data: bytes) -> dict[str, bytes]:
    """The files packed into the model (the zip appended after the flatbuffer)."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            return {name: zf.read(name) for name in zf.namelist()}
    except Exception:  # noqa: BLE001 - no zip, or a damaged one: nothing packed to show
        return {}


def text_of(value: Any) -> str | None:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def _tensor_doc(t: Any, files: dict[str, bytes]) -> dict[str, Any]:
    doc: dict[str, Any] = {"name": text_of(t.name), "description": text_of(t.description)}
    content = t.content
    if content is not None and content.contentProperties is not None:
        kind = content.contentPropertiesType
        if kind == md.ContentProperties.ImageProperties:
            space = enum_names(md.ColorSpaceType).get(content.contentProperties.colorSpace, "?")
            doc["content"] = f"image {space}"
        else:
            doc["content"] = enum_names(md.ContentProperties).get(kind, "?")
    for unit in t.processUnits or []:
        if unit.optionsType == md.ProcessUnitOptions.NormalizationOptions:
            doc["normalization"] = {
                "mean": [float(v) for v in unit.options.mean],
                "std": [float(v) for v in unit.options.std],
            }
    if t.stats is not None and t.stats.min is not None and t.stats.max is not None:
        doc["range"] = [[float(v) for v in t.stats.min], [float(v) for v in t.stats.max]]
    kinds = enum_names(md.AssociatedFileType)
    for f in t.associatedFiles or []:
        name = text_of(f.name) or ""
        entry: dict[str, Any] = {"name": name, "type": kinds.get(f.type, "?")}
        if f.type in (md.AssociatedFileType.TENSOR_AXIS_LABELS, md.AssociatedFileType.TENSOR_VALUE_LABELS) and name in files:
            labels = files[name].decode("utf-8", "replace").rstrip("\r\n").splitlines()
            entry.update(count=len(labels), labels=labels)  # all; the text view abbreviates
        entry["packed"] = name in files
        doc.setdefault("files", []).append(entry)
    return {k: v for k, v in doc.items() if v is not None}


@guarded
def read(data: bytes) -> dict[str, Any] | None:
    """The model's metadata as a JSON-ready dict, or None when it carries none.

    Raises:
        ModelLoadError: a TFLITE_METADATA entry that is not a metadata flatbuffer.
    """
    raw = metadata_buffer(data)
    files = packed_files(data)
    if raw is None:
        return {"packed_files": _file_sizes(files)} if files else None
    if len(raw) < 8 or raw[4:8] != IDENTIFIER:
        raise ModelLoadError("the model's TFLITE_METADATA is not a metadata flatbuffer (no M001)")
    meta = md.ModelMetadataT.InitFromObj(md.ModelMetadata.GetRootAs(raw, 0))
    doc: dict[str, Any] = {k: text_of(getattr(meta, k)) for k in TEXT_KEYS}
    doc["min_parser_version"] = text_of(meta.minParserVersion)
    graph = (meta.subgraphMetadata or [None])[0]
    if graph is not None:
        doc["inputs"] = [_tensor_doc(t, files) for t in graph.inputTensorMetadata or []]
        doc["outputs"] = [_tensor_doc(t, files) for t in graph.outputTensorMetadata or []]
    doc["packed_files"] = _file_sizes(files)
    return {k: v for k, v in doc.items() if v is not None}


def _file_sizes(files: dict[str, bytes]) -> list[dict[str, Any]]:
    return [{"name": n, "bytes": len(b)} for n, b in files.items()]


def io_tensors(data: bytes) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The main subgraph's inputs and outputs: name, shape, dtype name."""
    fb = schema()
    model = fb.Model.GetRootAs(data, 0)
    if model.SubgraphsLength() < 1:
        raise InputError("the model has no graph to describe")
    graph = model.Subgraphs(0)  # the main graph; others are control-flow bodies
    types = enum_names(fb.TensorType)

    def doc(index: int) -> dict[str, Any]:
        t = graph.Tensors(index)
        return {"name": (t.Name() or b"").decode(), "shape": [int(d) for d in t.ShapeAsNumpy()]
                if t.ShapeLength() else [], "dtype": types.get(t.Type(), "?")}  # fmt: skip

    ins = [doc(graph.Inputs(i)) for i in range(graph.InputsLength())]
    outs = [doc(graph.Outputs(i)) for i in range(graph.OutputsLength())]
    return ins, outs


@guarded
def app_caveats(data: bytes) -> list[str]:
    """What keeps MediaPipe Tasks' image APIs from feeding this model (checked by hand against
    mediapipe 1.2.2): they read RGB inputs only, of type uint8 or float32."""
    doc = read(data) or {}
    image = [t for t in doc.get("inputs", []) if t.get("content", "").startswith("image")]
    if not image:
        return []
    (first, *_), _ = io_tensors(data)
    caveats = []
    if image[0]["content"] == "image GRAYSCALE":
        caveats.append("MediaPipe Tasks' image APIs read RGB inputs only; this 1-channel "
                       "model's metadata serves the Task Library and ML Model Binding")  # fmt: skip
    if first["dtype"] not in ("FLOAT32", "UINT8"):
        caveats.append(f"MediaPipe Tasks' image APIs feed uint8 or float32 inputs, not this "
                       f"model's {first['dtype']} (keep float inputs: no {option('int8_io')})")  # fmt: skip
    return caveats
