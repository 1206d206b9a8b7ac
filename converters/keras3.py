"""Keras 3 models, keras-hub / keras-nlp included.

`from_keras_model` fails on keras-hub models (ENV.md), so every Keras 3 model is exported to a
SavedModel with a fixed input signature (batch 1, free dimensions set to `seq_len`) and converted
from there.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from converters.base import Prepared, fixed_shape, register
from converters.saved_model import from_folder
from tfopt import keras_worlds
from tfopt.errors import ConversionError, first_line
from tfopt.loading import LoadedModel, SourceKind


@register(SourceKind.KERAS3)
def prepare(loaded: LoadedModel, seq_len: int | None, workdir: Path) -> Prepared:
    tf = keras_worlds.tf()
    model = loaded.model
    specs = {
        s.name: tf.TensorSpec(fixed_shape(s, seq_len), s.dtype, name=s.name) for s in loaded.inputs
    }
    structure = model.input
    signature: list[Any]
    if isinstance(structure, dict):
        signature = [{key: specs[t.name] for key, t in structure.items()}]
    elif isinstance(structure, (list, tuple)):
        signature = [[specs[t.name] for t in structure]]
    else:
        signature = [specs[loaded.inputs[0].name]]
    folder = workdir / "saved_model"
    try:
        keras_worlds.export_saved_model(model, folder, signature)
    except Exception as exc:  # noqa: BLE001 - export raises many types
        raise ConversionError(
            f"cannot export the Keras 3 model to a SavedModel: {first_line(exc)}"
        ) from exc
    return from_folder(folder)
