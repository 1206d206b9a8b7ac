"""TFLite model metadata, the kind Android Studio's ML Model Binding, the TFLite Task Library and
MediaPipe Tasks read: name, version, author, input normalization and range, tensor descriptions,
and label files packed into the model (a zip appended after the flatbuffer).

    Metadata          what to write (a convert option, a recipe's convert keys, `tfopt metadata`)
    read(data)        the metadata and packed files of a .tflite, as a JSON-ready dict (or None)
    attach(data, m)   the model with `m` written in: existing metadata and files are kept and
                      only the fields `m` names change

Only the flatbuffers package is needed (the generated schema is vendored beside this file).
"""

from __future__ import annotations

import functools
import io
import os
import zipfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, TypeVar

import flatbuffers

from tfopt.errors import DataError, InputError, ModelLoadError, TfoptError, first_line
from tfopt.flatbuffer import enum_names, is_tflite, schema
from tfopt.metadata import schema_generated as md

T = TypeVar("T")
FIELD = b"TFLITE_METADATA"  # the model metadata entry the runtimes look up
IDENTIFIER = b"M001"  # the metadata flatbuffer's file identifier
PARSER_VERSION = "1.0.0"  # every field written here exists since metadata schema 1.0.0
TEXT_KEYS = ("name", "description", "version", "author", "license")
_ALIGN = 16  # buffers stay 16-byte aligned, as the converter writes them


@dataclass(frozen=True)
class Metadata:
    """What to write. Unset fields keep what the model already carries.

    `labels` is a text file, one class name per line, packed into the model for its first
    output; `normalize` is "MEAN,STD" (each a number, or one per channel joined by ':'), the
    `(pixel - mean) / std` an app applies before feeding the first input.
    """

    name: str | None = None
    description: str | None = None
    version: str | None = None
    author: str | None = None
    license: str | None = None
    labels: str | None = None
    normalize: str | None = None

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if value is not None and not isinstance(value, str):
                raise InputError(f"metadata {f.name}: expected text, got {value!r}")
        if self.normalize is not None:
            parse_normalize(self.normalize)

    def __bool__(self) -> bool:
        return any(getattr(self, f.name) is not None for f in fields(self))

    def to_dict(self) -> dict[str, str]:
        return {k: v for k, v in asdict(self).items() if v is not None}

    @classmethod
    def from_sets(cls, sets: tuple[str, ...] | list[str], **given: str | None) -> Metadata:
        """From `KEY=VALUE` pairs (`tfopt metadata --set`) plus named fields."""
        values = {k: v for k, v in given.items() if v is not None}
        for item in sets:
            key, sep, value = item.partition("=")
            key = key.strip().replace("-", "_")
            if not sep or key not in {f.name for f in fields(cls)}:
                keys = ", ".join(f.name for f in fields(cls))
                raise InputError(f"--set {item}: expected KEY=VALUE with KEY one of {keys}")
            values[key] = value
        return cls(**values)


def parse_normalize(text: str) -> tuple[list[float], list[float]]:
    """'127.5,127.5' or '0.485:0.456:0.406,0.229:0.224:0.225' -> (mean, std)."""
    parts = text.split(",")
    try:
        if len(parts) != 2:
            raise ValueError
        mean, std = ([float(v) for v in p.split(":")] for p in parts)
    except ValueError:
        raise InputError(
            f"--normalize {text}: expected MEAN,STD (numbers, or one per channel joined by ':')"
        ) from None
    if len(mean) != len(std):
        raise InputError(f"--normalize {text}: {len(mean)} means but {len(std)} stds")
    if any(s == 0 for s in std):
        raise InputError(f"--normalize {text}: a std of 0 divides by zero")
    return mean, std


def read_labels(path: str | os.PathLike[str]) -> list[str]:
    """A label file's class names: UTF-8 text, one per line (trailing blank lines ignored)."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"label file not found: {p}")
    try:
        text = p.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{p} is not UTF-8 text (byte {exc.start}); save the labels as UTF-8") from None
    labels = text.removeprefix("\ufeff").rstrip("\r\n").splitlines()
    if not labels or not any(line.strip() for line in labels):
        raise DataError(f"{p} is empty: expected one class name per line")
    blank = [i + 1 for i, line in enumerate(labels) if not line.strip()]
    if blank:
        raise DataError(f"{p}: line {blank[0]} is blank; every line names one class")
    return labels


def _guarded(fn: Callable[..., T]) -> Callable[..., T]:
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


# --- reading --------------------------------------------------------------------------------


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


def _text(value: Any) -> str | None:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def _tensor_doc(t: Any, files: dict[str, bytes]) -> dict[str, Any]:
    doc: dict[str, Any] = {"name": _text(t.name), "description": _text(t.description)}
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
        name = _text(f.name) or ""
        entry: dict[str, Any] = {"name": name, "type": kinds.get(f.type, "?")}
        if f.type in (md.AssociatedFileType.TENSOR_AXIS_LABELS, md.AssociatedFileType.TENSOR_VALUE_LABELS) and name in files:
            labels = files[name].decode("utf-8", "replace").rstrip("\r\n").splitlines()
            entry.update(count=len(labels), labels=labels)  # all; the text view abbreviates
        entry["packed"] = name in files
        doc.setdefault("files", []).append(entry)
    return {k: v for k, v in doc.items() if v is not None}


@_guarded
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
    doc: dict[str, Any] = {k: _text(getattr(meta, k)) for k in TEXT_KEYS}
    doc["min_parser_version"] = _text(meta.minParserVersion)
    graph = (meta.subgraphMetadata or [None])[0]
    if graph is not None:
        doc["inputs"] = [_tensor_doc(t, files) for t in graph.inputTensorMetadata or []]
        doc["outputs"] = [_tensor_doc(t, files) for t in graph.outputTensorMetadata or []]
    doc["packed_files"] = _file_sizes(files)
    return {k: v for k, v in doc.items() if v is not None}


def _file_sizes(files: dict[str, bytes]) -> list[dict[str, Any]]:
    return [{"name": n, "bytes": len(b)} for n, b in files.items()]


# --- writing --------------------------------------------------------------------------------


class _AlignedBuffer(schema().BufferT):  # type: ignore[misc]
    """A model buffer packed 16-byte aligned (the generated Pack aligns to 1)."""

    def Pack(self, builder: flatbuffers.Builder) -> int:  # noqa: N802 - the generated name
        data = None
        if self.data is not None and len(self.data):
            raw = bytes(memoryview(self.data).cast("B")) if not isinstance(self.data, bytes) else self.data
            builder.StartVector(1, len(raw), _ALIGN)
            builder.head = builder.head - len(raw)
            builder.Bytes[builder.head : builder.head + len(raw)] = raw
            data = builder.EndVector()
        fb = schema()
        fb.BufferStart(builder)
        if data is not None:
            fb.BufferAddData(builder, data)
        fb.BufferAddOffset(builder, self.offset)
        fb.BufferAddSize(builder, self.size)
        return fb.BufferEnd(builder)


def _tensors(data: bytes) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
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


def _blank_tensor(info: dict[str, Any]) -> Any:
    t = md.TensorMetadataT()
    t.name = info["name"]
    content = md.ContentT()
    content.contentPropertiesType = md.ContentProperties.FeatureProperties
    content.contentProperties = md.FeaturePropertiesT()
    t.content = content
    return t


def _image_input(t: Any, info: dict[str, Any], mean: list[float], std: list[float]) -> None:
    """Normalization, value range and (for NHWC with 1 or 3 channels) image content."""
    shape = info["shape"]
    channels = shape[-1] if shape else 1
    if len(mean) not in (1, channels):
        raise InputError(
            f"--normalize gives {len(mean)} values per statistic; input '{info['name']}' has "
            f"{channels} channels (give 1 or {channels})"
        )
    unit = md.ProcessUnitT()
    unit.optionsType = md.ProcessUnitOptions.NormalizationOptions
    unit.options = md.NormalizationOptionsT()
    unit.options.mean, unit.options.std = list(mean), list(std)
    t.processUnits = [unit]
    stats = md.StatsT()  # the normalized range of 8-bit pixels, as MediaPipe's writers record it
    stats.min = [(0.0 - m) / s for m, s in zip(mean, std, strict=True)]
    stats.max = [(255.0 - m) / s for m, s in zip(mean, std, strict=True)]
    t.stats = stats
    if len(shape) == 4 and channels in (1, 3):
        content = md.ContentT()
        content.contentPropertiesType = md.ContentProperties.ImageProperties
        content.contentProperties = md.ImagePropertiesT()
        content.contentProperties.colorSpace = (
            md.ColorSpaceType.RGB if channels == 3 else md.ColorSpaceType.GRAYSCALE
        )
        t.content = content


def _image_index(ins: list[dict[str, Any]]) -> int:
    """The input --normalize describes: the only one, or the only NHWC image (1 or 3 channels)."""
    if len(ins) == 1:
        return 0
    images = [i for i, t in enumerate(ins) if len(t["shape"]) == 4 and t["shape"][-1] in (1, 3)]
    if len(images) != 1:
        names = ", ".join(t["name"] for t in ins)
        raise InputError(f"--normalize: {len(images)} of the model's inputs ({names}) are "
                         "images (NHWC, 1 or 3 channels); it needs exactly one")  # fmt: skip
    return images[0]


def _labelled_index(outs: list[dict[str, Any]], path: str, count: int) -> int:
    """The output --labels names the classes of: the only one, or the only one with as many
    classes as the file has labels."""
    if len(outs) == 1:
        return 0
    fits = [i for i, t in enumerate(outs) if t["shape"] and t["shape"][-1] == count]
    if len(fits) != 1:
        sizes = ", ".join(f"{t['name']} ({t['shape'][-1] if t['shape'] else 1})" for t in outs)
        raise DataError(f"{path} has {count} labels; {len(fits)} of the outputs have that many "
                        f"classes ({sizes}); it needs exactly one")  # fmt: skip
    return fits[0]


def _label_output(t: Any, info: dict[str, Any], path: str, labels: list[str]) -> str:
    classes = info["shape"][-1] if info["shape"] else 1
    if len(labels) != classes:
        raise DataError(
            f"{path} has {len(labels)} labels; output '{info['name']}' has {classes} classes"
        )
    name = Path(path).name
    f = md.AssociatedFileT()
    f.name, f.description = name, "Labels for the classes of this output."
    f.type = md.AssociatedFileType.TENSOR_AXIS_LABELS
    kept = [a for a in t.associatedFiles or [] if a.type != md.AssociatedFileType.TENSOR_AXIS_LABELS]
    t.associatedFiles = [*kept, f]
    return name


def _pack_metadata(meta: Any) -> bytes:
    builder = flatbuffers.Builder(1024)
    builder.Finish(meta.Pack(builder), IDENTIFIER)
    return bytes(builder.Output())


@_guarded
def attach(data: bytes, spec: Metadata) -> bytes:
    """`data` (a .tflite) with `spec` written into its metadata; what the model already carries
    (other fields, other packed files, the converter's own metadata entries) is kept.

    Raises:
        InputError: the model has several subgraphs, or --normalize does not fit its input.
        DataError: a label file that is missing, empty, not UTF-8 or of the wrong length.
    """
    if not is_tflite(data):
        raise ModelLoadError("not a TFLite flatbuffer (no TFL3 identifier)")
    ins, outs = _tensors(data)
    files = packed_files(data)
    raw = metadata_buffer(data)
    if raw is not None and raw[4:8] != IDENTIFIER:
        raise ModelLoadError("the model's TFLITE_METADATA entry is not TFLite metadata (no M001 "
                             "identifier); tfopt will not replace another tool's data")  # fmt: skip
    meta = md.ModelMetadataT()
    if raw is not None:
        meta = md.ModelMetadataT.InitFromObj(md.ModelMetadata.GetRootAs(raw, 0))
    graph = (meta.subgraphMetadata or [None])[0]
    if graph is None or len(graph.inputTensorMetadata or []) != len(ins) or len(
        graph.outputTensorMetadata or []
    ) != len(outs):  # metadata must describe every input and output, in order
        graph = md.SubGraphMetadataT()
        graph.inputTensorMetadata = [_blank_tensor(i) for i in ins]
        graph.outputTensorMetadata = [_blank_tensor(o) for o in outs]
    meta.subgraphMetadata = [graph]
    for key in TEXT_KEYS:
        value = getattr(spec, key)
        if value is not None:
            setattr(meta, key, value)
    if meta.name is None:
        meta.name = "model"
    if spec.normalize is not None:
        mean, std = parse_normalize(spec.normalize)
        i = _image_index(ins)
        _image_input(graph.inputTensorMetadata[i], ins[i], mean, std)
    if spec.labels is not None:
        labels = read_labels(spec.labels)
        i = _labelled_index(outs, spec.labels, len(labels))
        old = {_text(f.name) for f in graph.outputTensorMetadata[i].associatedFiles or []
               if f.type == md.AssociatedFileType.TENSOR_AXIS_LABELS}  # fmt: skip
        name = _label_output(graph.outputTensorMetadata[i], outs[i], spec.labels, labels)
        for stale in old - {name}:  # the labels these replace
            files.pop(stale or "", None)
        files[name] = ("\n".join(labels) + "\n").encode("utf-8")
    old = meta.minParserVersion.decode() if isinstance(meta.minParserVersion, bytes) else meta.minParserVersion
    meta.minParserVersion = max(old or PARSER_VERSION, PARSER_VERSION, key=_semver)
    return _with_buffer(data, _pack_metadata(meta), files)


def _semver(v: str) -> tuple[int, ...]:
    try:
        return tuple(int(p) for p in v.split("."))
    except ValueError:
        return (0,)


def _with_buffer(data: bytes, metadata: bytes | None, files: dict[str, bytes]) -> bytes:
    """Repack the model with `metadata` as its TFLITE_METADATA buffer, then append `files`."""
    fb = schema()
    model = fb.ModelT.InitFromObj(fb.Model.GetRootAs(data, 0))
    if any(b.offset > 1 for b in model.buffers or []):
        raise InputError("metadata cannot be written into a model whose weights live outside "
                         "the flatbuffer (over 2 GB)")  # fmt: skip
    buffers = []
    for b in model.buffers or []:
        aligned = _AlignedBuffer()
        aligned.data, aligned.offset, aligned.size = b.data, b.offset, b.size
        buffers.append(aligned)
    entry = next((m for m in model.metadata or [] if m.name == FIELD), None)
    new = _AlignedBuffer()
    new.data = metadata
    if entry is None:
        entry = fb.MetadataT()
        entry.name = FIELD
        model.metadata = [*(model.metadata or []), entry]
        buffers.append(new)
        entry.buffer = len(buffers) - 1
    else:
        buffers[entry.buffer] = new
    model.buffers = buffers
    builder = flatbuffers.Builder(len(data) + len(metadata) + 1024)
    builder.Finish(model.Pack(builder), b"TFL3")
    return _append(bytes(builder.Output()), files) if files else bytes(builder.Output())


@_guarded
def carry(source: bytes, target: bytes) -> tuple[bytes, dict[str, Any] | None]:
    """`target` with the metadata and packed files of `source` (a model it was made from, with
    the same input and output shapes) that it lacks: a tool that rewrites the flatbuffer (the
    LiteRT quantizer) keeps the TFLITE_METADATA entry but drops the files zipped after it.
    Returns (model, its metadata) when anything moved, else (target, None)."""
    raw, files = metadata_buffer(source), packed_files(source)
    own_raw, own_files = metadata_buffer(target), packed_files(target)
    missing = {n: b for n, b in files.items() if n not in own_files}
    if (raw is None or own_raw is not None) and not missing:
        return target, None
    shapes = [[[t["shape"] for t in side] for side in _tensors(m)] for m in (source, target)]
    if shapes[0] != shapes[1]:
        return target, None  # other inputs or outputs: the description would be wrong
    if own_raw is None and raw is not None:
        moved = _with_buffer(target, raw, {**own_files, **missing})
    else:
        moved = _append(target, missing)
    return moved, read(moved)


def _append(data: bytes, files: dict[str, bytes]) -> bytes:
    out = io.BytesIO(data)
    out.seek(0, io.SEEK_END)
    with zipfile.ZipFile(out, "a") as zf:
        for name, content in files.items():
            zf.writestr(name, content)
    return out.getvalue()


@_guarded
def app_caveats(data: bytes) -> list[str]:
    """What keeps MediaPipe Tasks' image APIs from feeding this model (checked by hand against
    mediapipe 1.2.2): they read RGB inputs only, of type uint8 or float32."""
    doc = read(data) or {}
    image = [t for t in doc.get("inputs", []) if t.get("content", "").startswith("image")]
    if not image:
        return []
    (first, *_), _ = _tensors(data)
    caveats = []
    if image[0]["content"] == "image GRAYSCALE":
        caveats.append("MediaPipe Tasks' image APIs read RGB inputs only; this 1-channel "
                       "model's metadata serves the Task Library and ML Model Binding")  # fmt: skip
    if first["dtype"] not in ("FLOAT32", "UINT8"):
        caveats.append(f"MediaPipe Tasks' image APIs feed uint8 or float32 inputs, not this "
                       f"model's {first['dtype']} (keep float inputs: no --int8-io)")  # fmt: skip
    return caveats
