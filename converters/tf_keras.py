"""tf_keras (Keras 2) models: `TFLiteConverter.from_keras_model`, works for every precision."""

from __future__ import annotations

from pathlib import Path

from converters.base import Prepared, fixed_shape, has_free_dims, register
from tfopt import keras_worlds
from tfopt.loading import LoadedModel, SourceKind


@register(SourceKind.TF_KERAS)
def prepare(loaded: LoadedModel, seq_len: int | None, workdir: Path) -> Prepared:
    tf = keras_worlds.tf()
    order = loaded.input_names
    if not has_free_dims(loaded.inputs) or seq_len is None:
        return Prepared(tf.lite.TFLiteConverter.from_keras_model(loaded.model), order)
    # Free non-batch dimensions: trace a concrete function at the fixed shape instead.
    specs = [tf.TensorSpec(fixed_shape(s, seq_len), s.dtype, name=s.name) for s in loaded.inputs]
    model = loaded.model
    fn = tf.function(lambda *xs: model(list(xs) if len(xs) > 1 else xs[0], training=False))
    concrete = fn.get_concrete_function(*specs)
    return Prepared(tf.lite.TFLiteConverter.from_concrete_functions([concrete], model), order)
