"""Constants stored once: a post-pass over a written `.tflite` flatbuffer.

The LiteRT quantizer quantizes each signature's subgraph on its own, so a multi-signature file
(an LM's prefill buckets and decode) carries one copy of every shared constant per signature.
`dedupe_buffers` points every tensor whose constant buffer holds the same bytes as an earlier
buffer at that earlier buffer and empties the duplicates. Quantization parameters live on the
tensor, not the buffer, so tensors of different quantization may share bytes; variable tensors
and buffers named by the model's metadata are left alone. The file keeps its layout: buffers
stored by offset after the flatbuffer (the quantizer's layout for large models, and the only one
past 2 GB) stay so, inline buffers stay inline.
"""

from __future__ import annotations

import hashlib
from typing import Any

_ALIGN = 16  # buffer data starts 16-byte aligned, as the converter and the quantizer write it
_MIN_OFFSET_BYTES = 1024  # smaller buffers stay inline in the offset layout (as the quantizer)


def dedupe_buffers(flatbuffer: bytes) -> bytes:
    """`flatbuffer` with every constant stored once; the same bytes back when nothing repeats."""
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(flatbuffer)
    resolve_offsets(model, flatbuffer)
    remap = duplicate_buffers(model)
    if not remap:
        return flatbuffer
    for subgraph in model.subgraphs or []:
        for tensor in subgraph.tensors or []:
            if not tensor.isVariable and tensor.buffer in remap:
                tensor.buffer = remap[tensor.buffer]
    for index in remap:
        model.buffers[index].data = None
    return serialized_with_offsets(model)


def duplicate_buffers(model: Any) -> dict[int, int]:
    """{duplicate buffer index: the earlier buffer with the same bytes} over the constant buffers
    that only non-variable tensors reference (offsets already resolved into `data`)."""
    pinned = {m.buffer for m in model.metadata or []}
    for subgraph in model.subgraphs or []:
        pinned.update(t.buffer for t in subgraph.tensors or [] if t.isVariable)
    first: dict[tuple[int, bytes], int] = {}
    remap: dict[int, int] = {}
    for index, buffer in enumerate(model.buffers or []):
        data = _bytes(buffer.data)
        if index in pinned or not data:
            continue
        key = (len(data), hashlib.blake2b(data, digest_size=32).digest())
        earlier = first.setdefault(key, index)
        if earlier != index and _bytes(model.buffers[earlier].data) == data:
            remap[index] = earlier
    return remap


def _bytes(data: Any) -> bytes:
    if data is None:
        return b""
    return bytes(memoryview(data).cast("B")) if not isinstance(data, bytes) else data


def resolve_offsets(model: Any, flatbuffer: bytes) -> None:
    """Buffers stored by offset read into their `data` (as the object API expects to write)."""
    view = memoryview(flatbuffer)
    for buffer in model.buffers or []:
        if buffer.offset:
            buffer.data = view[buffer.offset : buffer.offset + buffer.size]
            buffer.offset = 0
            buffer.size = 0
    for subgraph in model.subgraphs or []:
        for op in subgraph.operators or []:
            if op.largeCustomOptionsOffset:
                start = op.largeCustomOptionsOffset
                op.customOptions = bytes(view[start : start + op.largeCustomOptionsSize])
                op.largeCustomOptionsOffset = 0
                op.largeCustomOptionsSize = 0


def serialized_with_offsets(model: Any) -> bytes:
    """The model with its larger buffers appended after the flatbuffer, 16-byte aligned, their
    offsets and sizes patched into the packed tables (the quantizer's own large-model layout)."""
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils

    packed: dict[int, memoryview] = {}
    for index, buffer in enumerate(model.buffers or []):
        if buffer.data is not None and len(_bytes(buffer.data)) >= _MIN_OFFSET_BYTES:
            packed[index] = memoryview(_bytes(buffer.data))
            buffer.data, buffer.offset, buffer.size = None, 1, 1  # reserve the fields
        elif buffer.data is not None:
            buffer.data = _as_array(buffer.data)
    out = bytearray(flatbuffer_utils.convert_object_to_bytearray(model))
    places = {}
    for index, data in packed.items():
        out += bytes(-len(out) % _ALIGN)
        places[index] = len(out)
        out += data
    tables = schema.Model.GetRootAs(out, 0)
    for index, start in places.items():
        flatbuffer_utils.update_packed_buffer(
            tables.Buffers(index), offset=start, size=len(packed[index])
        )
    return bytes(out)


def _as_array(data: Any) -> Any:
    import numpy as np

    return np.frombuffer(_bytes(data), np.uint8)
