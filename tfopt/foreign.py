"""Sources tfopt does not convert, named: which format a refused file or folder is, and the
route to something tfopt reads (one line each).

Consulted only after a source has been refused (a folder that is no SavedModel or preset, an
unknown extension, a `.tflite` without the TFL3 identifier), so a guess never changes what
loads. Standard library only: `inspect` and `bench` use it without TensorFlow.
"""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

_REBUILD = (
    "rebuild the model in code, restore these weights into it and save it with "
    "model.save('model.keras') or tf.saved_model.save(model, 'folder'), then convert that"
)
_ELSEWHERE = "tfopt converts Keras/TensorFlow models"
_THEN = "then tfopt convert/inspect the .tflite"
_SHARD = re.compile(r"\.data-\d{5}-of-\d{5}$")


def describe(path: Path) -> str | None:
    """One line naming the format of `path` and how to get a model tfopt converts; None when
    the format is not one recognised here."""
    checkpoint = f"{path} is a TensorFlow checkpoint (weights only, no graph): {_REBUILD}"
    if (path.parent / "saved_model.pb").is_file() and path.name in ("variables", "saved_model.pb"):
        return f"{path} is part of a SavedModel: pass its folder, {path.parent}"
    if path.is_dir() or not path.exists():
        return checkpoint if _is_checkpoint(path) else None
    head = _head(path)
    suffix = path.suffix.lower()
    if suffix in (".pt", ".pth", ".pt2") or _is_torch(path, head):  # Lightning's .ckpt too
        return (
            f"{path} is a PyTorch model: {_ELSEWHERE}; convert PyTorch to TFLite with "
            f"litert-torch (pip install litert-torch), or export ONNX and use onnx2tf, {_THEN}"
        )
    if _is_checkpoint(path):
        return checkpoint
    if suffix == ".pb":
        return (
            f"{path} is a TensorFlow GraphDef (a TF1 frozen graph), not a SavedModel: wrap it "
            "in a function (tf.compat.v1.wrap_function), save that with tf.saved_model.save and "
            "convert the folder, or use tf.compat.v1.lite.TFLiteConverter.from_frozen_graph"
        )
    if suffix == ".onnx" or _is_onnx(head):
        return (
            f"{path} is an ONNX model: {_ELSEWHERE}; convert ONNX to TFLite with onnx2tf "
            f"(pip install onnx2tf), {_THEN}"
        )
    if suffix == ".safetensors":
        return (
            f"{path} holds weights only (safetensors): pass the keras-hub preset folder with its "
            f"config.json, or {_REBUILD}"
        )
    if path.name.endswith(".weights.h5"):
        return f"{path} is a Keras weights file (no architecture): {_REBUILD}"
    return None


def _is_checkpoint(path: Path) -> bool:
    """A tf.train.Checkpoint / TF1 Saver folder, one of its files, or its prefix."""
    if path.is_dir():
        return (path / "checkpoint").is_file() or any(
            _SHARD.search(p.name) for p in path.glob("*.data-*")
        )
    if not path.exists():  # a checkpoint is named by its prefix: model.ckpt, ckpt-1
        return Path(f"{path}.index").is_file()
    return (
        path.name == "checkpoint"
        or bool(_SHARD.search(path.name))
        or path.suffix in (".index", ".ckpt", ".meta")
    )


def _head(path: Path, size: int = 64) -> bytes:
    try:
        with path.open("rb") as f:
            return f.read(size)
    except OSError:
        return b""


def _is_onnx(head: bytes) -> bool:
    """An ONNX ModelProto: field 1 (ir_version: 3 since ONNX 1.0, a small varint) first, then a
    string or message field (producer_name, graph, opset_import...). A SavedModel's
    saved_model.pb starts alike with version 1, and is told by its name before this."""
    return (
        len(head) >= 3
        and head[0] == 0x08
        and 3 <= head[1] <= 20
        and head[2] in (0x12, 0x1A, 0x22, 0x2A, 0x32, 0x3A, 0x42, 0x52, 0x5A, 0x62, 0x72)
    )


def _is_torch(path: Path, head: bytes) -> bool:
    """`torch.save`: a zip holding `<name>/data.pkl`, or (before PyTorch 1.6) a bare pickle."""
    if head.startswith(b"PK\x03\x04"):
        try:
            with zipfile.ZipFile(path) as z:
                return any(n.endswith("data.pkl") for n in z.namelist())
        except (OSError, zipfile.BadZipFile):
            return False
    return head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05")
