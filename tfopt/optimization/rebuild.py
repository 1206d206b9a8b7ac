"""Rebuild a Keras 3 model made only of standard layers as a tf_keras model (config + weights).

tfmot accepts only tf_keras models; a plain Keras 3 chain of built-in layers (a typical CNN or
MLP) can be rebuilt layer by layer so that clustering and QAT apply. The rebuilt model is checked
to compute the same outputs before it is used.
"""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np

from tfopt import keras_worlds
from tfopt.data import Dataset
from tfopt.errors import first_line
from tfopt.optimization.context import StageError, World
from tfopt.optimization.training import model_args


def _translate(value: Any) -> Any:
    """Keras 3 serialized objects -> the {class_name, config} form tf_keras reads."""
    if isinstance(value, dict):
        if "class_name" in value and "config" in value:
            if value["class_name"] in ("DTypePolicy", "FloatDTypePolicy"):
                return value["config"]["name"]
            return {"class_name": value["class_name"], "config": _translate(value["config"])}
        return {k: _translate(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_translate(v) for v in value]
    return value


def _layer(tfk: Any, layer: Any) -> Any:
    cls = getattr(tfk.layers, type(layer).__name__)
    allowed = set(inspect.signature(cls.__init__).parameters) | {"name", "trainable", "dtype"}
    # Initializers are dropped: the weights are copied over, and Keras 3 initializer configs
    # carry fields tf_keras does not know.
    config = {
        k: _translate(v)
        for k, v in layer.get_config().items()
        if k in allowed and not k.endswith("_initializer")
    }
    return cls.from_config(config)


def to_tf_keras(model: Any, sample: Dataset, stage: str) -> Any:
    """The same network as a tf_keras model, or StageError naming the layer types at fault."""
    tfk = keras_worlds.module(World.TF_KERAS)
    layers = [layer for layer in model.layers if type(layer).__name__ != "InputLayer"]
    odd = sorted(
        {
            type(layer).__name__
            for layer in layers
            if type(layer).__module__.split(".")[0] != "keras"
            or not hasattr(tfk.layers, type(layer).__name__)
        }
    )
    if type(model).__name__ not in ("Functional", "Sequential") or odd or len(model.inputs) != 1:
        kinds = ", ".join(odd or [type(model).__name__])
        raise StageError(
            f"{stage} needs tfmot, which accepts only tf_keras models; this Keras 3 model cannot be "
            f"rebuilt as one (layer types at fault: {kinds})"
        )
    spec = model.inputs[0]
    x = inputs = tfk.Input(shape=tuple(spec.shape[1:]), dtype=spec.dtype, name=spec.name)
    try:
        for layer in layers:
            new = _layer(tfk, layer)
            x = new(x)
            new.set_weights(layer.get_weights())
        rebuilt = tfk.Model(inputs, x, name=model.name)
        probe = sample.take(8).x
        same = np.allclose(
            np.asarray(model(model_args(model, probe), training=False)),
            np.asarray(rebuilt(model_args(rebuilt, probe), training=False)),
            atol=1e-4,
        )
    except (ValueError, TypeError, AttributeError) as exc:
        raise StageError(
            f"{stage}: cannot rebuild the Keras 3 model as tf_keras ({first_line(exc)})"
        ) from None
    if not same:
        raise StageError(
            f"{stage}: the Keras 3 model is not a simple chain of layers; cannot rebuild it as tf_keras"
        )
    return rebuilt
