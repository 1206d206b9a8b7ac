"""Fake quantization patched into a trained Keras 3 model, layer instance by layer instance.

tfmot's QAT wraps layers by cloning a functional model, which never reaches the layers keras-hub
builds inside its blocks (attention projections, layer norms, the attention softmax). Here `call`
is replaced on each `Dense`, `EinsumDense`, `LayerNormalization` and `Softmax` instance found by
walking the model, nested layers included, so the trained model itself computes through TF's
FakeQuant ops (`fake_quant_with_min_max_vars`, straight-through gradients built
in):

- the input of every Dense / EinsumDense: per tensor, range tracked by moving-average min/max;
- their kernels: symmetric per tensor (max |w|, narrow range), as tfmot does for Dense;
- the softmax input (attention scores, after the bounded mask fill of
  `keras_worlds.bounded_mask_fill`: a -1e9 fill would take the whole int8 range);
- every layer norm output.

`freeze()` turns the tracked ranges into constants, so an export holds FakeQuant ops with the
learned ranges and no extra variables, and TFLite's converter takes those ranges in full int8.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tfopt import core, keras_worlds
from tfopt.optimization.context import StageError, World

MASK_MARGIN = 12.0  # masked scores sit this far below the row's smallest (weight e**-12)
DECAY = 0.99  # moving average of the per-batch min/max while tracking
KINDS = ("Dense", "EinsumDense", "LayerNormalization", "Softmax")
MARK = core.FAKE_QUANT_MARK  # set on a model that computes through tfopt's FakeQuant
_TAG = "_tfopt_fake_quantized"  # set on a tensor that already went through a FakeQuant


@dataclass
class _Range:
    """A per-tensor activation range: moving-average min/max, constants once frozen."""

    lo: Any
    hi: Any
    seen: Any
    frozen: tuple[float, float] | None = None


@dataclass
class FakeQuant:
    """Every quantizer patched into one model: ranges are tracked until `freeze()`."""

    ranges: dict[str, _Range] = field(default_factory=dict)
    weight_ranges: dict[str, float] = field(default_factory=dict)
    patched: list[Any] = field(default_factory=list)
    model: Any = None
    decay: float = DECAY  # calibration sets 1 - 1/n per batch: the plain mean of batch ranges

    def activation(self, name: str, x: Any) -> Any:
        """`x` through FakeQuant with its tracked (or frozen) per-tensor range."""
        if getattr(x, _TAG, False):
            return x  # already quantized by the layer that produced it
        tf = keras_worlds.tf()
        if name not in self.ranges:
            self.ranges[name] = _Range(
                tf.Variable(0.0, trainable=False, name=f"{name}/min"),
                tf.Variable(0.0, trainable=False, name=f"{name}/max"),
                tf.Variable(False, trainable=False, name=f"{name}/seen"),
            )
        r = self.ranges[name]
        if r.frozen is not None:
            lo, hi = tf.constant(r.frozen[0]), tf.constant(r.frozen[1])
        else:
            x_min = tf.stop_gradient(tf.minimum(tf.reduce_min(x), 0.0))
            x_max = tf.stop_gradient(tf.maximum(tf.reduce_max(x), 0.0))
            lo = tf.where(r.seen, self.decay * r.lo + (1 - self.decay) * x_min, x_min)
            hi = tf.where(r.seen, self.decay * r.hi + (1 - self.decay) * x_max, x_max)
            r.lo.assign(lo)
            r.hi.assign(hi)
            r.seen.assign(True)
        out = tf.quantization.fake_quant_with_min_max_vars(
            x, lo, tf.maximum(hi, lo + 1e-6), num_bits=8
        )
        _tag(out)
        return out

    def kernel(self, name: str, layer: Any) -> Any:
        """The layer's kernel through symmetric per-tensor FakeQuant (narrow range, max |w|).

        Per tensor, as tfmot quantizes Dense kernels: the converter lowers a matmul by
        transposing its kernel, and refuses a per-channel FakeQuant whose axis moves.
        """
        tf = keras_worlds.tf()
        kernel = tf.convert_to_tensor(layer.kernel)
        if name in self.weight_ranges:
            bound = tf.constant(self.weight_ranges[name], tf.float32)
        else:
            bound = tf.stop_gradient(tf.maximum(tf.reduce_max(tf.abs(kernel)), 1e-8))
        return tf.quantization.fake_quant_with_min_max_vars(
            kernel, -bound, bound, num_bits=8, narrow_range=True
        )

    def freeze(self) -> None:
        """Fix every range as a constant: what inference, export and TFLite use from now on."""
        for r in self.ranges.values():
            lo, hi = float(r.lo.numpy()), float(r.hi.numpy())
            r.frozen = (lo, max(hi, lo + 1e-6))
        for layer in self.patched:
            if hasattr(layer, "kernel"):
                bound = np.abs(np.asarray(layer.kernel.numpy())).max()
                self.weight_ranges[_name(layer)] = max(float(bound), 1e-8)

    def ranges_dict(self) -> dict[str, list[float]]:
        """Frozen per-tensor ranges by name (the report's evidence of what TFLite receives)."""
        return {n: [round(v, 6) for v in r.frozen] for n, r in self.ranges.items() if r.frozen}

    def unpatch(self) -> None:
        """Give every patched layer its class's own `call` back."""
        for layer in self.patched:
            layer.__dict__.pop("call", None)
        self.patched.clear()
        if self.model is not None:
            self.model.__dict__.pop(MARK, None)


def _tag(tensor: Any) -> None:
    try:
        setattr(tensor, _TAG, True)
    except AttributeError:  # a tensor type that takes no attributes: it is quantized again
        pass


def _name(layer: Any) -> str:
    path = getattr(layer, "path", None) or layer.name
    return str(path)


def targets(model: Any) -> list[Any]:
    """The built Dense / EinsumDense / LayerNormalization / Softmax instances, nested included."""
    keras = keras_worlds.module(World.KERAS3)
    types = tuple(getattr(keras.layers, k) for k in KINDS)
    found, seen = [], set()
    for layer in model._flatten_layers(include_self=False):  # noqa: SLF001 - Keras 3 API
        if isinstance(layer, types) and id(layer) not in seen:
            seen.add(id(layer))
            found.append(layer)
    return found


def patch(model: Any) -> FakeQuant:
    """Put FakeQuant into every target layer of `model`; StageError if none or if one cannot."""
    keras = keras_worlds.module(World.KERAS3)
    state = FakeQuant()
    layers = targets(model)
    for layer in layers:
        if getattr(layer, "quantization_mode", None) or getattr(layer, "lora_enabled", False):
            raise StageError(
                f"qat: layer '{_name(layer)}' is already quantized or carries LoRA; "
                "quantization-aware training needs plain float layers"
            )
    if not any(hasattr(layer, "kernel") for layer in layers):
        raise StageError("qat: no Dense or EinsumDense layer to quantize in this Keras 3 model")
    for layer in layers:
        if isinstance(layer, keras.layers.Softmax):
            layer.call = _softmax_call(state, layer)
        elif isinstance(layer, keras.layers.LayerNormalization):
            layer.call = _norm_call(state, layer)
        else:
            layer.call = _matmul_call(state, layer, isinstance(layer, keras.layers.EinsumDense))
        state.patched.append(layer)
    # The convert stage reads this: the converter must take these ranges (the post-training
    # search of `conversion.transformer` would quantize the float graph afresh).
    object.__setattr__(model, MARK, True)
    state.model = model
    return state


def _matmul_call(state: FakeQuant, layer: Any, einsum: bool) -> Any:
    ops = keras_worlds.module(World.KERAS3).ops
    name = _name(layer)

    def call(inputs: Any, training: Any = None) -> Any:
        """Dense / EinsumDense's own call on the quantized input and kernel."""
        x = state.activation(f"{name}/input", inputs)
        kernel = state.kernel(name, layer)
        y = ops.einsum(layer.equation, x, kernel) if einsum else ops.matmul(x, kernel)
        if layer.bias is not None:
            y = ops.add(y, layer.bias)
        return layer.activation(y) if layer.activation is not None else y

    return call


def _norm_call(state: FakeQuant, layer: Any) -> Any:
    original = type(layer).call
    name = _name(layer)

    def call(inputs: Any) -> Any:
        return state.activation(f"{name}/output", original(layer, inputs))

    return call


def _softmax_call(state: FakeQuant, layer: Any) -> Any:
    original = type(layer).call
    name = _name(layer)

    def call(inputs: Any, mask: Any = None) -> Any:
        if mask is not None:
            inputs = keras_worlds.bounded_mask_fill(inputs, mask, layer.axis, MASK_MARGIN)
        return original(layer, state.activation(f"{name}/input", inputs))

    return call
