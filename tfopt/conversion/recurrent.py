"""Recurrent models at calibrated precisions, converted without a WHILE loop.

TF 2.21's calibrator crashes on the WHILE loop a recurrent layer lowers to, so int8/int16x8 of
such a model were refused. The same model rebuilt with the same weights converts without it:

- a Keras 3 LSTM/GRU/SimpleRNN goes through its tf_keras twin (`keras_twin.keras3_to_tf_keras`):
  an LSTM lowers to the fused `UNIDIRECTIONAL_SEQUENCE_LSTM` op; a GRU or SimpleRNN (no fused
  TFLite op), and an LSTM at int16x8 (TF 2.21 quantizes the fused op to int8 only), is unrolled
  over its fixed number of time steps;
- a tf_keras model is cloned with those same layers unrolled (`keras_twin.unrolled`), and its
  LSTMs too where they take a mask (the fused op takes none).

The conversion goes through the rebuilt model; the check still runs the model as given.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from tfopt import keras_twin
from tfopt.core import CALIBRATED, FAKE_QUANT_MARK, LoadedModel, Precision, SourceKind, TensorSpec
from tfopt.errors import ConversionError, note, option

_FUSED = "LSTM"  # lowers to UNIDIRECTIONAL_SEQUENCE_LSTM in tf_keras
_UNROLLED = frozenset({"GRU", "SimpleRNN"})  # no fused TFLite op: unrolled over the time steps


def _recurrent(model: Any) -> list[str]:
    """Class names of the model's recurrent layers (a Bidirectional's inner layers included)."""
    flatten = getattr(model, "_flatten_layers", None)
    every = list(flatten(include_self=False)) if callable(flatten) else []
    inner = {  # a Bidirectional's own two layers are counted as the Bidirectional
        id(getattr(b, side)) for b in every for side in ("forward_layer", "backward_layer")
        if hasattr(b, side)
    }  # fmt: skip
    found = []
    for layer in every:
        name = type(layer).__name__
        if name == "Bidirectional":
            found.append(f"Bidirectional({type(layer.forward_layer).__name__})")
        elif id(layer) in inner:
            continue
        elif name in {_FUSED, *_UNROLLED} or any(c.__name__ == "RNN" for c in type(layer).__mro__):
            found.append(name)
    return found


def _inner(name: str) -> str:
    return name.removeprefix("Bidirectional(").removesuffix(")")


def _rebuild(loaded: LoadedModel, prec: Precision) -> tuple[list[str], frozenset[str]] | None:
    """(the recurrent layers, the kinds unrolled) when `fused` rebuilds the model at `prec`."""
    if loaded.kind not in (SourceKind.KERAS3, SourceKind.TF_KERAS) or prec not in CALIBRATED:
        return None
    if getattr(loaded.model, FAKE_QUANT_MARK, False):
        return None  # QAT ranges live in Keras 3 FakeQuant layers: only that export keeps them
    layers = _recurrent(loaded.model)
    if not layers or any(_inner(n) not in {_FUSED, *_UNROLLED} for n in layers):
        return None  # e.g. ConvLSTM or a custom cell: the model's own export
    keras3 = loaded.kind is SourceKind.KERAS3
    # int16x8 has no fused LSTM kernel in TF 2.21, and the fused op takes no mask: there the LSTM
    # is unrolled too.
    whole = prec is Precision.INT16X8 or (not keras3 and keras_twin.takes_mask(loaded.model))
    unroll = _UNROLLED | {_FUSED} if whole else _UNROLLED
    if not keras3 and not any(_inner(n) in unroll for n in layers):
        return None  # tf_keras LSTMs fuse by themselves
    return layers, unroll


def rebuilt_how(loaded: LoadedModel, prec: Precision) -> str | None:
    """What `fused` does to the model at `prec`, in one line (None: it converts as it is)."""
    found = _rebuild(loaded, prec)
    if found is None:
        return None
    world = "Keras 3" if loaded.kind is SourceKind.KERAS3 else "tf_keras"
    return _how(prec, world, *found)


def fused(loaded: LoadedModel, prec: Precision) -> LoadedModel:
    """The model to convert at `prec`: at calibrated precisions, a Keras 3 model with
    LSTM/GRU/SimpleRNN layers rebuilt as its tf_keras twin (LSTMs fused, the others unrolled),
    a tf_keras one cloned with the layers that would loop unrolled; `loaded` unchanged otherwise.
    `loaded.inputs` must be the fixed shapes the conversion exports.

    Raises:
        ConversionError: the time dimension is free (unrolling needs it fixed), or the model
            cannot be rebuilt (named). Other recurrent layers (ConvLSTM, custom cells) leave the
            model as it is (guards refuse its loop).
    """
    found = _rebuild(loaded, prec)
    if found is None:
        return loaded
    layers, unroll = found
    keras3 = loaded.kind is SourceKind.KERAS3
    _fixed_length(loaded.inputs, prec)
    world = "Keras 3" if keras3 else "tf_keras"
    try:
        if keras3:
            rebuilt = keras_twin.keras3_to_tf_keras(loaded.model, loaded.inputs, unroll)
        else:
            rebuilt = keras_twin.unrolled(loaded.model, loaded.inputs, unroll)
    except ValueError as exc:
        how = "converts its tf_keras twin" if keras3 else "unrolls it"
        raise ConversionError(
            f"cannot convert the {world} recurrent model to {prec}: {exc} (TF 2.21's calibrator "
            f"crashes on the recurrent loop; tfopt {how}); use {option('precision')} dynamic or float16"
        ) from exc
    note(_how(prec, world, layers, unroll))
    structure = loaded.structure if not keras3 else (
        None if len(loaded.inputs) == 1 else tuple(loaded.input_names)
    )  # fmt: skip
    return LoadedModel(SourceKind.TF_KERAS, rebuilt, loaded.inputs, loaded.path, structure)


def _fixed_length(inputs: tuple[TensorSpec, ...], prec: Precision) -> None:
    free = [s.name for s in inputs if any(d is None for d in s.shape[1:])]
    if free:
        raise ConversionError(
            f"{prec} of a recurrent model needs a fixed sequence length (input '{free[0]}' has "
            f"a free one): pass {option('seq_len')} N"
        )


def _how(prec: Precision, world: str, layers: list[str], unroll: frozenset[str]) -> str:
    how = ", ".join(
        f"{n} {name}"
        + (" (unrolled)" if _inner(name) in unroll else " (fused UNIDIRECTIONAL_SEQUENCE_LSTM)")
        for name, n in sorted(Counter(layers).items())
    )
    if world == "Keras 3":
        return (
            f"{prec}: rebuilt the Keras 3 model in tf_keras with its weights to reach {prec} "
            f"without a loop: {how}; the check runs the Keras 3 model"
        )
    return (
        f"{prec}: cloned the tf_keras model with its weights to reach {prec} without a loop: "
        f"{how}; the check runs the model as saved"
    )
