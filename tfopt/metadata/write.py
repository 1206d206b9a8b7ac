"""Writing TFLite metadata into a .tflite: the fields a `Metadata` names, a label file packed
for the output it describes, the rest of what the model carries kept; and carrying metadata over
to a model made from it."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import Any

import flatbuffers

from tfopt.errors import DataError, InputError, ModelLoadError, option
from tfopt.flatbuffer import is_tflite, schema
from tfopt.metadata import schema_generated as md
from tfopt.metadata.fields import Metadata
from tfopt.metadata.parse import parse_normalize, read_labels
from tfopt.metadata.reader import (
    FIELD,
    IDENTIFIER,
    TEXT_KEYS,
    guarded,
    io_tensors,
    metadata_buffer,
    packed_files,
    read,
    text_of,
)

PARSER_VERSION = "1.0.0"  # every field written here exists since metadata schema 1.0.0
_ALIGN = 16  # buffers stay 16-byte aligned, as the converter writes them


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
            f"{option('normalize')} gives {len(mean)} values per statistic; input '{info['name']}' has "
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
    """The input `normalize` describes: the only one, or the only NHWC image (1 or 3 channels)."""
    if len(ins) == 1:
        return 0
    images = [i for i, t in enumerate(ins) if len(t["shape"]) == 4 and t["shape"][-1] in (1, 3)]
    if len(images) != 1:
        names = ", ".join(t["name"] for t in ins)
        raise InputError(f"{option('normalize')}: {len(images)} of the model's inputs ({names}) are "
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


@guarded
def attach(data: bytes, spec: Metadata) -> bytes:
    """`data` (a .tflite) with `spec` written into its metadata; what the model already carries
    (other fields, other packed files, the converter's own metadata entries) is kept.

    Raises:
        InputError: the model has several subgraphs, or `normalize` does not fit its input.
        DataError: a label file that is missing, empty, not UTF-8 or of the wrong length.
    """
    if not is_tflite(data):
        raise ModelLoadError("not a TFLite flatbuffer (no TFL3 identifier)")
    ins, outs = io_tensors(data)
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
        old = {text_of(f.name) for f in graph.outputTensorMetadata[i].associatedFiles or []
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


@guarded
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
    shapes = [[[t["shape"] for t in side] for side in io_tensors(m)] for m in (source, target)]
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
