"""Keras 3 recurrent models at calibrated precisions, through their tf_keras twin.

Keras 3 exports an LSTM/GRU/SimpleRNN as a WHILE loop, which TF 2.21's calibrator crashes on, so
int8/int16x8 were refused. The same model rebuilt in tf_keras with the same weights converts
without that loop: an LSTM lowers to the fused `UNIDIRECTIONAL_SEQUENCE_LSTM` op; a GRU or
SimpleRNN (no fused TFLite op), and an LSTM at int16x8 (TF 2.21 quantizes the fused op to int8
only), is unrolled over its fixed number of time steps. The conversion goes through the twin; the
check still runs the original Keras 3 model.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from tfopt import keras_twin
from tfopt.core import CALIBRATED, LoadedModel, Precision, SourceKind
from tfopt.errors import ConversionError, note

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


def fused(loaded: LoadedModel, prec: Precision) -> LoadedModel:
    """The model to convert at `prec`: a Keras 3 model with LSTM/GRU/SimpleRNN layers rebuilt as
    its tf_keras twin (LSTMs fused, the others unrolled) at calibrated precisions; `loaded`
    unchanged otherwise. `loaded.inputs` must be the fixed shapes the conversion exports.

    Raises:
        ConversionError: the time dimension is free (unrolling needs it fixed), or a layer has
            no tf_keras twin (named). Other recurrent layers (ConvLSTM, custom cells) leave the
            model as it is.
    """
    if loaded.kind is not SourceKind.KERAS3 or prec not in CALIBRATED:
        return loaded
    if getattr(loaded.model, "_tfopt_fake_quant", False):
        return loaded  # QAT ranges live in Keras 3 FakeQuant layers: only that export keeps them
    layers = _recurrent(loaded.model)
    if not layers:
        return loaded
    if any(_inner(n) not in {_FUSED, *_UNROLLED} for n in layers):
        return loaded  # e.g. ConvLSTM or a custom cell: Keras 3's export (guards refuse its loop)
    free = [s.name for s in loaded.inputs if any(d is None for d in s.shape[1:])]
    if free:
        raise ConversionError(
            f"{prec} of a Keras 3 recurrent model needs a fixed sequence length (input "
            f"'{free[0]}' has a free one): pass --seq-len N"
        )
    # int16x8 has no fused LSTM kernel in TF 2.21: there the LSTM is unrolled too.
    unroll = _UNROLLED | {_FUSED} if prec is Precision.INT16X8 else _UNROLLED
    try:
        twin = keras_twin.keras3_to_tf_keras(loaded.model, loaded.inputs, unroll)
    except ValueError as exc:
        raise ConversionError(
            f"cannot convert the Keras 3 recurrent model to {prec}: {exc} (TF 2.21's calibrator "
            "crashes on Keras 3's loop; tfopt converts its tf_keras twin); use --precision "
            "dynamic or float16"
        ) from exc
    counts = Counter(layers)
    how = ", ".join(
        f"{n} {name}"
        + (" (unrolled)" if _inner(name) in unroll else " (fused UNIDIRECTIONAL_SEQUENCE_LSTM)")
        for name, n in sorted(counts.items())
    )
    note(
        f"{prec}: rebuilt the Keras 3 model in tf_keras with its weights to reach {prec} "
        f"without a loop: {how}; the check runs the Keras 3 model"
    )
    structure = None if len(loaded.inputs) == 1 else tuple(loaded.input_names)
    return LoadedModel(SourceKind.TF_KERAS, twin, loaded.inputs, loaded.path, structure)
