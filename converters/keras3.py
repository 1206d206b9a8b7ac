"""Keras 3 models, keras-hub / keras-nlp included.

`from_keras_model` fails on keras-hub models (ENV.md), so every Keras 3 model is exported to a
SavedModel with a fixed input signature (batch 1, free dimensions set to `seq_len`) and converted
from there. Sequential, functional, subclassed and nested models all go this way: the signature
follows how the model takes its inputs (`LoadedModel.structure`), not `model.input`, which a
Sequential model loaded from a `.keras` file does not have.
"""

from __future__ import annotations

from pathlib import Path

from converters.base import Prepared, fixed_shape, register
from converters.saved_model import from_folder
from tfopt import keras_worlds
from tfopt.core import LoadedModel, SourceKind
from tfopt.errors import ConversionError, first_line


@register(SourceKind.KERAS3)
def prepare(loaded: LoadedModel, seq_len: int | None, workdir: Path) -> Prepared:
    tf = keras_worlds.tf()
    specs = {
        s.name: tf.TensorSpec(fixed_shape(s, seq_len), s.dtype, name=s.name) for s in loaded.inputs
    }
    signature = [loaded.call_args(specs)]
    if not getattr(loaded.model, "built", True):
        # A subclassed model never called (its shapes came from --input-shape): build it on zeros.
        zeros = {n: tf.zeros(s.shape, s.dtype) for n, s in specs.items()}
        loaded.model(loaded.call_args(zeros), training=False)
    folder = workdir / "saved_model"
    try:
        keras_worlds.export_saved_model(loaded.model, folder, signature)
    except Exception as exc:  # noqa: BLE001 - export raises many types
        raise ConversionError(
            f"cannot export the Keras 3 model to a SavedModel: {first_line(exc)}"
        ) from exc
    return from_folder(folder)
