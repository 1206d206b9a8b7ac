"""SavedModel folders: `TFLiteConverter.from_saved_model` on the serving signature."""

from __future__ import annotations

from pathlib import Path
from typing import Any

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
    return from_folder(with_fixed_signature(loaded, workdir) or loaded.path)


# Input shapes fixed for this conversion (free sizes set from the data, `--seq-len`,
# `--input-shape`): the converter keeps a signature's free sizes free, so it gets a signature
# that takes exactly `loaded.inputs`.


def fixed_signature(loaded: LoadedModel) -> Any:
    """The serving function traced at exactly `loaded.inputs`, or None when the folder's own
    signature already takes those shapes."""
    tf = keras_worlds.tf()
    fn = loaded.model  # the folder's serving signature (`loading._load_saved_model`)
    own = fn.structured_input_signature[1]
    if all(tuple(own[s.name].shape.as_list()) == tuple(s.shape) for s in loaded.inputs):
        return None
    names = [s.name for s in loaded.inputs]
    specs = [tf.TensorSpec(list(s.shape), own[s.name].dtype, name=s.name) for s in loaded.inputs]

    def serving(*xs: Any) -> Any:
        return fn(**dict(zip(names, xs, strict=True)))

    return tf.function(serving, autograph=False).get_concrete_function(*specs)


def with_fixed_signature(loaded: LoadedModel, workdir: Path) -> Path | None:
    """A copy of the SavedModel whose serving signature is `fixed_signature`, or None when the
    folder's own one takes `loaded.inputs` already."""
    tf = keras_worlds.tf()
    concrete = fixed_signature(loaded)
    if concrete is None:
        return None
    folder = workdir / "fixed_signature"
    owner = getattr(loaded.model, "_tfopt_owner", None) or tf.Module()  # holds the variables
    tf.saved_model.save(owner, str(folder), signatures={"serving_default": concrete})
    return folder
