"""SavedModel folders: `TFLiteConverter.from_saved_model` on the serving signature."""

from __future__ import annotations

from pathlib import Path

from converters.base import Prepared, register
from tfopt import keras_worlds
from tfopt.core import LoadedModel, SourceKind


def from_folder(folder: Path) -> Prepared:
    tf = keras_worlds.tf()
    converter = tf.lite.TFLiteConverter.from_saved_model(
        str(folder), signature_keys=["serving_default"]
    )
    return Prepared(converter, None)


@register(SourceKind.SAVED_MODEL)
def prepare(loaded: LoadedModel, seq_len: int | None, workdir: Path) -> Prepared:
    assert loaded.path is not None
    return from_folder(loaded.path)
