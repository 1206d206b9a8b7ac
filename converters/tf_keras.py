"""tf_keras (Keras 2) models: `TFLiteConverter.from_keras_model`, works for every precision.

Where that cannot work — input shapes fixed for this conversion (free non-batch dimensions set
from the data, `seq_len` or `--input-shape`), a subclassed model with no symbolic inputs — or
where it fails (an LSTM/GRU's tensor lists lower only at a static batch size), the model is
traced as a concrete function at batch 1 instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from converters.base import Prepared, fixed_shape, has_free_dims, register
from tfopt import keras_worlds
from tfopt.core import LoadedModel, SourceKind


def _at_batch_one(loaded: LoadedModel, seq_len: int | None) -> Any:
    tf = keras_worlds.tf()
    model = loaded.model
    names = loaded.input_names
    specs = [tf.TensorSpec(fixed_shape(s, seq_len), s.dtype, name=s.name) for s in loaded.inputs]

    def call(*xs: Any) -> Any:
        return model(loaded.call_args(dict(zip(names, xs, strict=True))), training=False)

    concrete = tf.function(call).get_concrete_function(*specs)
    return tf.lite.TFLiteConverter.from_concrete_functions([concrete], model)


def _own_shapes(loaded: LoadedModel) -> bool:
    """Whether `loaded.inputs` are the model's own symbolic input shapes (batch aside): then
    `from_keras_model` exports them. Shapes fixed for this conversion (from the data,
    `--seq-len`, `--input-shape`) are not, and need a traced function at exactly those shapes."""
    tensors = getattr(loaded.model, "inputs", None)
    if not tensors or len(tensors) != len(loaded.inputs):
        return False
    own = [tuple(t.shape)[1:] for t in tensors]
    return own == [tuple(s.shape[1:]) for s in loaded.inputs]


@register(SourceKind.TF_KERAS)
def prepare(loaded: LoadedModel, seq_len: int | None, workdir: Path) -> Prepared:
    tf = keras_worlds.tf()
    order = loaded.input_names
    if _own_shapes(loaded) and (not has_free_dims(loaded.inputs) or seq_len is None):
        converter = tf.lite.TFLiteConverter.from_keras_model(loaded.model)
        fallback = None if has_free_dims(loaded.inputs) else lambda: _at_batch_one(loaded, None)
        return Prepared(converter, None, fallback)  # samples as dicts keyed by input name
    return Prepared(_at_batch_one(loaded, seq_len), order)
