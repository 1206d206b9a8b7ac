"""The one doorway to TensorFlow and the two Keras worlds.

tfmot and `tf.lite.TFLiteConverter.from_keras_model` live in the tf_keras (Keras 2) world;
keras-hub / keras-nlp models live in the Keras 3 world. This module is the only place that imports
`tensorflow`, `keras`, `tf_keras` or `keras_hub`, always lazily, so `tfopt --help` and the timing
harness never pay for TensorFlow.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

from tfopt.core import SourceKind

# A Keras world is one of the two Keras source kinds: `World.TF_KERAS` is `SourceKind.TF_KERAS`
# (one enum, so a loaded model's kind is its world).
World = SourceKind


def tf() -> ModuleType:
    """Import TensorFlow, quieting its C++ start-up chatter unless the user set a level."""
    if "tensorflow" not in sys.modules:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow  # here, and in no other module (import-linter checks it)

    return tensorflow


def module(world: World) -> ModuleType:
    """The Keras package of a world: `tf_keras` or `keras`."""
    tf()
    if world is World.TF_KERAS:
        import tf_keras

        return tf_keras
    import keras

    return keras


def keras_hub() -> ModuleType:
    """keras-hub (keras_nlp is an alias of it); registers its layers for deserialization."""
    tf()
    import keras_hub

    return keras_hub


def keras_hub_serving_hook() -> ModuleType | None:
    """keras-hub's attention serving hook (`keras_hub.src.vllm.context`: `vllm_context_scope`,
    `get_vllm_context`), through which tfopt's LM export plugs its KV cache; None if absent."""
    keras_hub()
    try:
        return importlib.import_module("keras_hub.src.vllm.context")
    except ImportError:
        return None


def dynamic_update_slice() -> Any:
    """TensorFlow's XLA DynamicUpdateSlice op (`fn(operand, update, indices)`), which the
    converter turns into LiteRT's DYNAMIC_UPDATE_SLICE, the op a runtime can run in place."""
    tf()
    from tensorflow.compiler.tf2xla.python import xla

    return xla.dynamic_update_slice


def world_of_model(model: Any) -> World | None:
    """Which Keras world an in-memory model belongs to, or None if it is no Keras model."""
    for cls in type(model).__mro__:
        top = cls.__module__.split(".")[0]
        if top == "tf_keras":
            return World.TF_KERAS
        if top == "keras" and cls.__name__ in ("Model", "Functional", "Sequential", "Layer"):
            return World.KERAS3
    return None


def file_metadata(path: Path) -> tuple[str, str]:
    """(keras_version, model config JSON) stored in a `.keras` zip or an `.h5` file.

    Raises ValueError when the file is not a Keras model file.
    """
    if path.suffix == ".keras":
        try:
            with zipfile.ZipFile(path) as z:
                meta = json.loads(z.read("metadata.json"))
                config = z.read("config.json").decode("utf-8")
        except (zipfile.BadZipFile, KeyError, json.JSONDecodeError, UnicodeDecodeError, OSError,
                NotImplementedError, EOFError) as exc:  # fmt: skip - a damaged zip fails many ways
            raise ValueError(f"not a Keras model archive ({exc})") from exc
        if not isinstance(meta, dict):
            raise ValueError("not a Keras model archive (metadata.json is not a JSON object)")
        return str(meta.get("keras_version", "")), _json_object(config, "config.json")
    import h5py

    try:
        with h5py.File(path, "r") as f:
            version = f.attrs.get("keras_version", "")
            config = f.attrs.get("model_config")
    except OSError as exc:
        raise ValueError(f"not an HDF5 file ({exc})") from exc
    if config is None:
        raise ValueError("HDF5 file holds no model config (weights only?)")
    as_text = lambda v: v.decode(errors="replace") if isinstance(v, bytes) else str(v)  # noqa: E731
    return as_text(version), _json_object(as_text(config), "the model_config attribute")


def _json_object(text: str, what: str) -> str:
    """`text` if it is a JSON object; ValueError naming `what` otherwise."""
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"{what} is not valid JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise ValueError(f"{what} is not a JSON object")
    return text


def world_of_version(keras_version: str) -> World:
    """Keras 2.x files belong to tf_keras, 3.x files to Keras 3."""
    return World.TF_KERAS if keras_version.startswith("2.") else World.KERAS3


def layer_classes(config_json: str) -> set[str]:
    """Every `class_name` in a model config, nested models included."""
    found: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("class_name"), str):
                found.add(node["class_name"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(json.loads(config_json))
    return found


def _node_refs(node: Any) -> list[tuple[Any, Any]]:
    """(layer name, node index) of every tensor a saved node reads, in either world's format."""
    refs: list[tuple[Any, Any]] = []

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            if value.get("class_name") == "__keras_tensor__":  # Keras 3
                history = (value.get("config") or {}).get("keras_history")
                refs.append((history[0], history[1]) if isinstance(history, list) and
                            len(history) == 3 else (None, None))  # fmt: skip
                return
            for v in value.values():
                walk(v)
        elif isinstance(value, list):
            if len(value) in (3, 4) and isinstance(value[0], str) and not isinstance(value[1], str):
                if value[0] != "_CONSTANT_VALUE":  # tf_keras: [layer, node, tensor(, kwargs)]
                    refs.append((value[0], value[1]))
                return
            for v in value:
                walk(v)

    walk(node)
    return refs


def check_layer_graph(config_json: str) -> None:
    """Refuse a functional model config whose layer calls can never all be rebuilt.

    Both Keras worlds rebuild a functional model by calling layers until every saved node is
    processed, and loop forever when a node reads a node that never comes to exist (an edited or
    corrupted config.json). This replays that schedule on the config alone.

    Raises ValueError naming the first layer whose inputs cannot be found.
    """

    def check(config: dict[str, Any]) -> None:
        layers = config.get("layers")
        if not isinstance(layers, list) or not any(
            isinstance(entry, dict) and "inbound_nodes" in entry for entry in layers
        ):
            return
        pending: dict[str, list[Any]] = {}
        made: dict[str, int] = {}
        for entry in layers:
            if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
                raise ValueError("a layer entry in the model config has no name")
            nodes = entry.get("inbound_nodes", [])
            if not isinstance(nodes, list):
                raise ValueError(f"layer '{entry['name']}': inbound_nodes is not a list")
            pending[entry["name"]] = list(nodes)
            # An Input layer (and a nested model's own input node) exists before any call.
            made[entry["name"]] = int(entry.get("class_name") in _PRE_BUILT)
        while any(pending.values()):
            progress = False
            for name, nodes in pending.items():
                while nodes and all(
                    ref in made and isinstance(i, int) and not isinstance(i, bool) and
                    0 <= i < made[ref] for ref, i in _node_refs(nodes[0])
                ):  # fmt: skip
                    nodes.pop(0)
                    made[name] += 1
                    progress = True
            if not progress:
                stuck = next(n for n, nodes in pending.items() if nodes)
                raise ValueError(
                    f"layer '{stuck}' reads a layer output that the model config never creates"
                )
        for entry in layers:
            inner = entry.get("config") if isinstance(entry, dict) else None
            if isinstance(inner, dict):
                check(inner)

    try:
        doc = json.loads(config_json)
    except ValueError as exc:
        raise ValueError(f"the model config is not JSON ({exc})") from None
    if isinstance(doc, dict) and isinstance(doc.get("config"), dict):
        check(doc["config"])


_PRE_BUILT = {"InputLayer", "Functional", "Model", "Sequential"}


def is_keras_class(cls: type) -> bool:
    """True for a Keras layer or model class of either world (user-defined ones included)."""
    return any(
        c.__name__ == "Layer" and c.__module__.split(".")[0] in ("keras", "tf_keras")
        for c in cls.__mro__
    )


def load_file(
    path: Path,
    world: World,
    config_json: str,
    unsafe: bool,
    custom_objects: dict[str, type] | None = None,
) -> Any:
    """Load a `.keras` / `.h5` file in its world, in safe mode unless `unsafe`."""
    check_layer_graph(config_json)
    if world is World.KERAS3 and ("keras_hub" in config_json or "keras_nlp" in config_json):
        keras_hub()
    keras = module(world)
    if world is World.TF_KERAS and "Quantize" in config_json:  # a QAT model from tfmot
        import tensorflow_model_optimization as tfmot

        with tfmot.quantization.keras.quantize_scope():
            return keras.models.load_model(
                str(path), custom_objects, compile=False, safe_mode=not unsafe
            )
    return keras.models.load_model(str(path), custom_objects, compile=False, safe_mode=not unsafe)


def export_saved_model(model: Any, folder: Path, signature: list[Any]) -> None:
    """Export a Keras 3 model (keras-hub included) as a SavedModel with a fixed signature."""
    model.export(str(folder), format="tf_saved_model", input_signature=signature, verbose=False)


def load_preset(folder: Path) -> Any:
    """A keras-hub backbone from a local preset folder (keras-hub or Hugging Face layout)."""
    return keras_hub().models.Backbone.from_preset(str(folder))


def preset_text_inputs(folder: Path, sentences: list[str], seq_len: int) -> dict[str, Any] | None:
    """Sentences through a keras-hub preset's own text preprocessor (its tokenizer and packing),
    as numpy arrays by input name; None when the preset has no text preprocessor."""
    import numpy as np

    hub = keras_hub()
    try:
        pre = hub.models.TextClassifierPreprocessor.from_preset(
            str(folder), sequence_length=seq_len
        )
        out = pre(sentences)
    except Exception:  # noqa: BLE001 - this preset has no text preprocessor
        return None
    x = out[0] if isinstance(out, tuple) else out
    return {k: np.asarray(v) for k, v in x.items()} if isinstance(x, dict) else None


def default_sequence_length(model: Any) -> int | None:
    """The sequence length a keras-hub model was built for: its preprocessor's, else the
    backbone's maximum (`max_sequence_length`); None when it has neither (RoPE models)."""
    for owner in (getattr(model, "preprocessor", None), model, getattr(model, "backbone", None)):
        for attr in ("sequence_length", "max_sequence_length"):
            value = getattr(owner, attr, None) if owner is not None else None
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                return value
    return None


def has_masked_softmax(model: Any) -> bool:
    """Whether a Keras 3 model holds attention or a Softmax layer (which may take a mask)."""
    keras = module(World.KERAS3)
    kinds = (keras.layers.MultiHeadAttention, keras.layers.Softmax)
    layers = getattr(model, "_flatten_layers", None)
    return layers is not None and any(isinstance(x, kinds) for x in layers(include_self=False))


@contextmanager
def bounded_softmax_masks(margin: float) -> Iterator[None]:
    """Keras 3's masked softmax with a fill one int8 scale can hold, while exporting.

    `keras.layers.Softmax` fills masked scores with -1e9 (`SELECT_V2(mask, x, -1e9)`), so the
    calibrated range of that tensor is [-1e9, max] and int8 puts every real score in one bucket.
    Inside this context the fill is the row's smallest score minus `margin`: the range grows by
    `margin` only, and a masked position keeps at most e**-margin of the weight the row's largest
    score gets (margin 12: 6e-6), so float outputs are unchanged to about 1e-5. The second select
    Keras adds after the softmax (zeros for a row with every position masked) is dropped: such a
    row, which padding and causal masks never make, averages its values instead.
    """
    with _masked_softmax(lambda layer, x, mask: bounded_mask_fill(x, mask, layer.axis, margin)):
        yield


@contextmanager
def additive_softmax_masks() -> Iterator[None]:
    """Keras 3's masked softmax as an additive mask while exporting a float or dynamic model.

    `keras.layers.Softmax` masks with `SELECT_V2(mask, x, -1e9)`, which XNNPACK does not take:
    each attention layer then leaves XNNPACK's graph and splits it. Here the scores get
    `(mask - 1) * 3e4` added instead (SUB, MUL and ADD, all XNNPACK ops): kept positions are
    unchanged to the bit, masked ones sit 3e4 lower, so exp() gives them exactly 0 as before
    (3e4 rather than 1e9: it stays finite where a runtime computes in float16).
    """
    ops = module(World.KERAS3).ops

    def add(layer: Any, x: Any, mask: Any) -> Any:
        return x + (ops.cast(_bool_mask(mask), x.dtype) - 1.0) * 3e4

    with _masked_softmax(add):
        yield


@contextmanager
def _masked_softmax(masked: Callable[[Any, Any, Any], Any]) -> Iterator[None]:
    """Within: `keras.layers.Softmax` given a mask computes `softmax(masked(layer, x, mask))`."""
    keras = module(World.KERAS3)
    original = keras.layers.Softmax.call

    def call(self: Any, inputs: Any, mask: Any = None) -> Any:
        if mask is None:
            return original(self, inputs)
        return original(self, masked(self, inputs, mask))

    keras.layers.Softmax.call = call
    try:
        yield
    finally:
        keras.layers.Softmax.call = original


def _bool_mask(mask: Any) -> Any:
    """Keras's reading of a mask: values above 0.5 keep their position."""
    keras = module(World.KERAS3)
    if keras.backend.standardize_dtype(mask.dtype) == "bool":
        return mask
    return keras.ops.greater(mask, keras.ops.cast(0.5, mask.dtype))


def bounded_mask_fill(inputs: Any, mask: Any, axis: int | list[int], margin: float) -> Any:
    """Masked scores filled with the row's smallest score minus `margin` (see
    `bounded_softmax_masks`); also what the Keras 3 QAT stage fake-quantizes before its softmax."""
    ops = module(World.KERAS3).ops
    axes = tuple(axis) if isinstance(axis, list) else axis
    fill = ops.min(inputs, axis=axes, keepdims=True) - margin
    return ops.where(_bool_mask(mask), inputs, fill)
