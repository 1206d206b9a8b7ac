"""SavedModel folders: `TFLiteConverter.from_saved_model` on the serving signature.

Some SavedModels keep their weights as resource variables through that path (every Keras 3
model saved with `tf.saved_model.save`, subclassed or not, and a `tf.Module` holding Keras 3
layers): the file then reads uninitialized variables and every output is 0. Such a conversion
is refused and redone from the loaded serving function, saved again: its variables then
freeze.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from converters.base import Prepared, register
from tfopt import keras_worlds
from tfopt.core import LoadedModel, SourceKind
from tfopt.errors import ConversionError, note
from tfopt.flatbuffer import model_root, operators


def from_folder(folder: Path) -> Prepared:
    tf = keras_worlds.tf()
    converter = tf.lite.TFLiteConverter.from_saved_model(
        str(folder), signature_keys=["serving_default"]
    )
    return Prepared(converter, None)


def unfrozen_variables(flatbuffer: bytes) -> int:
    """How many variables a converted file reads but never assigns: weights left as resource
    variables with no initializer (a model that keeps state assigns its variables)."""
    ops = [op.name for graph in operators(model_root(flatbuffer)) for op in graph]
    return 0 if "ASSIGN_VARIABLE" in ops else ops.count("VAR_HANDLE")


def _refusing_unfrozen(converter: Any, refused: list[int] | None = None) -> Any:
    """`converter`, whose `convert()` raises when the file kept its weights as variables (the
    count is appended to `refused`)."""
    convert = converter.convert

    def checked() -> bytes:
        flatbuffer = convert()
        count = unfrozen_variables(flatbuffer)
        if count:
            if refused is not None:
                refused.append(count)
            raise ConversionError(
                f"the converter left {count} weight variables unfrozen (VAR_HANDLE ops with no "
                "initializer: every output would be 0)"
            )
        return flatbuffer

    converter.convert = checked
    return converter


def _frozen(loaded: LoadedModel, refused: list[int], folder: Path) -> Any:
    """A converter on the loaded serving function, saved again with the object TensorFlow
    loaded: its variables are plain ones now, which the converter freezes into constants.

    (`from_concrete_functions` does the same save inside each `convert()`, but only once: a
    second `convert()` of that converter fails.)"""
    tf = keras_worlds.tf()
    if refused:
        note(
            f"the SavedModel's own conversion left {refused[-1]} weights as uninitialized "
            "variables: converting its loaded serving signature instead, variables frozen"
        )
    if not folder.exists():
        owner = getattr(loaded.model, "_tfopt_owner", None)
        tf.saved_model.save(owner, str(folder), signatures={"serving_default": loaded.model})
    return _refusing_unfrozen(from_folder(folder).converter)


def _refuse_fixed_batch(loaded: LoadedModel) -> None:
    """A signature traced at a batch of N > 1 (what a subclassed Keras model records from its
    first `fit` batch) bakes N into its reshapes: the file cannot run one sample per call."""
    for spec in loaded.inputs:
        if spec.shape and spec.shape[0] is not None and spec.shape[0] > 1:
            free = ", ".join(["None", *map(str, spec.shape[1:])])
            raise ConversionError(
                f"{loaded.path}'s serving signature fixes the batch at {spec.shape[0]} (input "
                f"'{spec.name}' {spec.shape}), and tfopt converts and checks one sample per "
                f"call: save the model with a signature of shape ({free}) (e.g. model.build "
                "with batch None before saving)"
            )


@register(SourceKind.SAVED_MODEL)
def prepare(loaded: LoadedModel, seq_len: int | None, workdir: Path) -> Prepared:
    assert loaded.path is not None
    _refuse_fixed_batch(loaded)
    refused: list[int] = []
    resaved = with_fixed_signature(loaded, workdir)  # saved again: its variables freeze
    converter = _refusing_unfrozen(from_folder(resaved or loaded.path).converter, refused)
    if resaved is not None:
        return Prepared(converter, None)
    return Prepared(converter, None, lambda: _frozen(loaded, refused, workdir / "resaved"))


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
