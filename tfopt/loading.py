"""Load stage: any supported source becomes a `LoadedModel` with named input specs.

Sources: in-memory tf_keras or Keras 3 models (keras-hub included), `.keras` and `.h5` files (the
file's own metadata decides which Keras world loads it), SavedModel folders and `.tflite` files.
Keras files load in safe mode: a Lambda layer is refused unless `unsafe=True`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np

from tfopt import keras_worlds
from tfopt.errors import InputError, ModelLoadError, first_line
from tfopt.fsutil import existing

TFLITE_MAGIC = b"TFL3"


class SourceKind(StrEnum):
    TF_KERAS = "tf_keras"
    KERAS3 = "keras3"
    SAVED_MODEL = "saved_model"
    TFLITE = "tflite"


@dataclass(frozen=True)
class TensorSpec:
    """One model input: its name, shape (None for free dimensions) and numpy dtype name."""

    name: str
    shape: tuple[int | None, ...]
    dtype: str

    @property
    def is_float(self) -> bool:
        return np.issubdtype(np.dtype(self.dtype), np.floating)


@dataclass(frozen=True)
class LoadedModel:
    """A model ready for conversion or reference runs."""

    kind: SourceKind
    model: Any  # Keras model, SavedModel signature function, or None for .tflite
    inputs: tuple[TensorSpec, ...]
    path: Path | None = None

    @property
    def input_names(self) -> list[str]:
        return [s.name for s in self.inputs]


def _dtype_name(dtype: Any) -> str:
    name = getattr(dtype, "name", dtype)
    return np.dtype(str(name)).name


def _keras_inputs(model: Any) -> tuple[TensorSpec, ...]:
    tensors = getattr(model, "inputs", None)
    if not tensors:
        raise ModelLoadError(
            f"{type(model).__name__} has no defined inputs (a subclassed model that was never "
            "built?); build it on an Input or save it as a SavedModel"
        )
    names = getattr(model, "input_names", None) or [t.name for t in tensors]
    return tuple(
        TensorSpec(str(n).split(":")[0], tuple(t.shape), _dtype_name(t.dtype))
        for n, t in zip(names, tensors, strict=True)
    )


def from_keras(model: Any, path: Path | None = None) -> LoadedModel:
    """Wrap an in-memory Keras model of either world."""
    world = keras_worlds.world_of_model(model)
    if world is None:
        raise ModelLoadError(f"{type(model).__name__} is not a Keras model")
    kind = SourceKind.TF_KERAS if world is keras_worlds.World.TF_KERAS else SourceKind.KERAS3
    return LoadedModel(kind, model, _keras_inputs(model), path)


def _load_saved_model(path: Path) -> LoadedModel:
    tf = keras_worlds.tf()
    try:
        loaded = tf.saved_model.load(str(path))
    except Exception as exc:  # noqa: BLE001 - TF raises many types for a broken folder
        raise ModelLoadError(f"cannot load SavedModel {path}: {_first_line(exc)}") from exc
    signatures = getattr(loaded, "signatures", {})
    if "serving_default" not in signatures:
        raise ModelLoadError(f"SavedModel {path} has no 'serving_default' signature")
    fn = signatures["serving_default"]
    specs = fn.structured_input_signature[1]
    inputs = tuple(
        TensorSpec(name, tuple(spec.shape.as_list()), spec.dtype.name)
        for name, spec in sorted(specs.items())
    )
    # Keep the loaded object alive: the signature function references its variables.
    fn._tfopt_owner = loaded  # noqa: SLF001
    return LoadedModel(SourceKind.SAVED_MODEL, fn, inputs, path)


def _load_tflite(path: Path) -> LoadedModel:
    from tfopt import harness

    data = path.read_bytes()
    if len(data) < 8 or data[4:8] != TFLITE_MAGIC:
        raise ModelLoadError(f"{path} is not a TFLite flatbuffer (no TFL3 identifier)")
    try:
        interpreter = harness.make_interpreter(str(path))
        inputs, _ = harness.io_details(interpreter)
    except Exception as exc:  # noqa: BLE001 - the runtime raises ValueError/RuntimeError
        raise ModelLoadError(f"{path} is a broken .tflite file: {_first_line(exc)}") from exc
    # A quantized (int8 I/O) input takes real values: the harness quantizes them.
    specs = tuple(
        TensorSpec(
            n,
            tuple(int(s) for s in d["shape"]),
            "float32" if d["quantization"][0] else np.dtype(d["dtype"]).name,
        )
        for n, d in inputs.items()
    )
    return LoadedModel(SourceKind.TFLITE, None, specs, path)


def _first_line(exc: BaseException) -> str:
    return first_line(exc)


def load(source: str | os.PathLike[str] | Any, unsafe: bool = False) -> LoadedModel:
    """Load a model file or folder, or wrap an in-memory Keras model.

    Raises:
        InputError: the path does not exist or has an unknown extension.
        ModelLoadError: the file is not a model, is broken, or holds a Lambda layer in safe mode.
    """
    if not isinstance(source, (str, os.PathLike)):
        return from_keras(source)
    path = existing(source, "model")
    if path.is_dir():
        if (path / "saved_model.pb").exists():
            return _load_saved_model(path)
        if (path / "config.json").exists():  # a keras-hub / Hugging Face preset folder
            try:
                return from_keras(keras_worlds.load_preset(path), path)
            except Exception as exc:  # noqa: BLE001 - keras-hub raises many types
                raise ModelLoadError(f"cannot load preset {path}: {_first_line(exc)}") from exc
        raise InputError(
            f"{path} is a folder but neither a SavedModel (saved_model.pb) nor a preset (config.json)"
        )
    if path.suffix == ".tflite":
        return _load_tflite(path)
    if path.suffix not in (".keras", ".h5", ".hdf5"):
        raise InputError(
            f"{path}: unknown model format '{path.suffix}' "
            "(expected .keras, .h5, .tflite or a SavedModel folder)"
        )
    try:
        version, config = keras_worlds.file_metadata(path)
    except ValueError as exc:
        raise ModelLoadError(f"{path} is not a Keras model file: {exc}") from exc
    if not unsafe and "Lambda" in keras_worlds.layer_classes(config):
        raise ModelLoadError(
            f"{path} holds a Lambda layer, which runs arbitrary Python code when loaded; "
            "refused in safe mode (pass --unsafe if you trust this file)"
        )
    world = keras_worlds.world_of_version(version)
    try:
        model = keras_worlds.load_file(path, world, config, unsafe)
    except Exception as exc:  # noqa: BLE001 - Keras raises many types for a bad file
        raise ModelLoadError(f"cannot load {path}: {_first_line(exc)}") from exc
    return from_keras(model, path)
