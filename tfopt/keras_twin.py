"""Twins of a Keras model for conversion: the same layers and weights, rebuilt so TF's converter
lowers their recurrent layers without a WHILE loop (which TF 2.21's calibrator crashes on).

`keras3_to_tf_keras` rebuilds a Keras 3 model in tf_keras (whose LSTM fuses); `unrolled` clones a
tf_keras model with `unroll=True` on the recurrent layers named. TensorFlow and the Keras worlds
come through `keras_worlds`, lazily.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

from tfopt import keras_worlds
from tfopt.errors import first_line


def _tf_keras() -> ModuleType:
    return keras_worlds.module(keras_worlds.World.TF_KERAS)


# Keras 3 config keys tf_keras does not know, dropped when they do not change what a layer computes.
_KERAS3_ONLY = {"seed", "quantization_config", "lora_rank", "lora_alpha", "use_cudnn"}


def _tf_keras_config(config: dict[str, Any], unroll: frozenset[str]) -> dict[str, Any]:
    """A Keras 3 layer config as tf_keras reads it: dtype policies by name, initializers,
    regularizers and constraints left to their defaults (weights are set afterwards and neither
    acts at inference), nested layers (a Bidirectional's) cleaned the same way."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        if key.endswith(("_initializer", "_regularizer", "_constraint")):
            continue
        if key in _KERAS3_ONLY and value in (None, False, "auto") or key == "seed":
            continue
        if key == "dtype" and isinstance(value, dict):
            value = (value.get("config") or {}).get("name", "float32")
        elif isinstance(value, dict) and value.get("class_name") and "config" in value:
            name = value["class_name"]  # a nested layer (a Bidirectional's, a TimeDistributed's)
            inner = _tf_keras_config(value["config"], unroll)
            if name in unroll:
                inner["unroll"] = True
            value = {"class_name": name, "config": inner}
        out[key] = value
    return out


def keras3_to_tf_keras(model: Any, inputs: Any, unroll: frozenset[str] = frozenset()) -> Any:
    """The same Keras 3 Sequential or functional model rebuilt layer by layer in tf_keras, with
    the same weights: each layer's config, cleaned of Keras-3-only keys, deserialized by tf_keras
    and called on the same graph, then given the Keras 3 layer's weights (shapes checked).

    `inputs` are the model's input specs (`name`, `shape`, `dtype`), fixed shapes included;
    layers whose class is in `unroll` (e.g. GRU) are rebuilt with `unroll=True`.

    Raises ValueError naming the first layer that cannot be rebuilt.
    """
    tfk = _tf_keras()
    graph = getattr(model, "_functional", None) or model
    if not hasattr(graph, "_run_through_graph") or len(graph.inputs) != len(inputs):
        raise ValueError(f"{type(model).__name__} is neither a Sequential nor a functional model")
    twins: dict[int, tuple[Any, Any]] = {}

    def twin(layer: Any) -> Any:
        if id(layer) not in twins:
            name = type(layer).__name__
            if not hasattr(layer, "get_config") or hasattr(layer, "_run_through_graph"):
                raise ValueError(f"'{layer.name}' ({name}) is not a plain layer")
            config = _tf_keras_config(layer.get_config(), unroll)
            if name in unroll:
                config["unroll"] = True
            try:
                made = tfk.layers.deserialize({"class_name": name, "config": config})
            except Exception as e:  # noqa: BLE001 - unknown class or keyword, in many types
                why = first_line(e)
                raise ValueError(
                    f"layer '{layer.name}' ({name}) has no tf_keras twin: {why}"
                ) from e
            if not isinstance(made, tfk.layers.Layer):  # e.g. a Keras 3 op (a mask's NotEqual)
                raise ValueError(f"'{layer.name}' ({name}) has no tf_keras twin")
            twins[id(layer)] = (layer, made)
        return twins[id(layer)][1]

    tensors = [  # batch 1: tf_keras lowers an RNN's tensor lists only at a static batch size
        tfk.Input(shape=tuple(s.shape[1:]), batch_size=1, dtype=s.dtype, name=s.name)
        for s in inputs
    ]
    try:
        outputs = graph._run_through_graph(tensors, operation_fn=twin)
    except ValueError:
        raise
    except Exception as e:  # noqa: BLE001 - a twin that cannot take the Keras 3 call
        raise ValueError(f"the tf_keras layers cannot be called as the Keras 3 ones: {e}") from e
    rebuilt = tfk.Model(tensors if len(tensors) > 1 else tensors[0], outputs, name=model.name)
    for layer, made in twins.values():
        weights, shapes = layer.get_weights(), [tuple(w.shape) for w in made.get_weights()]
        if [tuple(w.shape) for w in weights] != shapes:
            raise ValueError(
                f"layer '{layer.name}' ({type(layer).__name__}) has weights of shapes "
                f"{[tuple(w.shape) for w in weights]} in Keras 3 but {shapes} in tf_keras"
            )
        made.set_weights(weights)
    return rebuilt


def _unrolled_config(name: str, config: dict[str, Any], unroll: frozenset[str]) -> dict[str, Any]:
    """A tf_keras layer config with `unroll=True` where its class (or a nested layer's, such as a
    Bidirectional's two) is in `unroll`."""
    out = {**config, "unroll": True} if name in unroll else dict(config)
    for key, value in config.items():
        if isinstance(value, dict) and isinstance(value.get("config"), dict) and value.get(
            "class_name"
        ):
            out[key] = {**value, "config": _unrolled_config(value["class_name"], value["config"],
                                                            unroll)}  # fmt: skip
    return out


def takes_mask(model: Any) -> bool:
    """Whether a tf_keras model feeds a mask (an `Embedding(mask_zero=True)`, a `Masking`) to
    any of its layers, nested models included."""
    for layer in model._flatten_layers(include_self=False):
        for node in getattr(layer, "_inbound_nodes", []):
            if any(getattr(t, "_keras_mask", None) is not None for t in node.keras_inputs):
                return True
    return False


def unrolled(model: Any, inputs: Any, unroll: frozenset[str]) -> Any:
    """A tf_keras Sequential or functional model cloned with `unroll=True` on its layers whose
    class is in `unroll` (nested models and wrappers included), at the fixed input shapes of
    `inputs` (the model's input specs, in its input order), with the same weights.

    Raises ValueError with the reason when the model cannot be cloned so (a subclassed model, a
    layer whose time length is still free).
    """
    tfk = _tf_keras()

    def clone(layer: Any) -> Any:
        if isinstance(layer, tfk.Model):
            return tfk.models.clone_model(layer, clone_function=clone)
        name = type(layer).__name__
        return type(layer).from_config(_unrolled_config(name, layer.get_config(), unroll))

    tensors = [
        tfk.Input(shape=tuple(s.shape[1:]), dtype=s.dtype, name=s.name) for s in inputs
    ]
    try:
        rebuilt = tfk.models.clone_model(
            model, tensors if len(tensors) > 1 else tensors[0], clone_function=clone
        )
        rebuilt.set_weights(model.get_weights())
    except Exception as e:  # noqa: BLE001 - clone_model fails in many types
        raise ValueError(first_line(e)) from e
    return rebuilt
