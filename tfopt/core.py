"""The core types every stage and backend share: what a model is, what its inputs are, and the
precisions tfopt converts to. No TensorFlow, no click; `converters/` builds on this module.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np

TFLITE_MAGIC = b"TFL3"  # the flatbuffer file identifier at bytes 4..8 of every .tflite


class Precision(StrEnum):
    """Every precision tfopt produces; `converters.precision` holds how each is reached."""

    FLOAT32 = "float32"
    FLOAT16 = "float16"
    DYNAMIC = "dynamic"  # int8 weights, activations quantized on the fly
    INT8 = "int8"  # full integer, calibrated
    INT16X8 = "int16x8"  # int16 activations, int8 weights, calibrated
    W8 = "w8"  # weight-only int8 (LiteRT quantizer)
    W4 = "w4"  # weight-only int4, channelwise (LiteRT quantizer)
    W4B32 = "w4b32"  # int4 weights in blocks of 32, dynamic activations (LiteRT quantizer)


#: What TFLiteConverter reaches by itself (recipes and the demo use these).
CONVERTER_PRECISIONS = (
    Precision.FLOAT32,
    Precision.FLOAT16,
    Precision.DYNAMIC,
    Precision.INT8,
    Precision.INT16X8,
)
#: What the LiteRT quantizer (`--quantizer aeq`) reaches: it quantizes, so no float precisions.
AEQ_PRECISIONS = (
    Precision.DYNAMIC,
    Precision.INT8,
    Precision.INT16X8,
    Precision.W8,
    Precision.W4,
    Precision.W4B32,
)
#: Calibrated precisions: they need representative data. The one definition: `converters`'
#: `PrecisionSpec.needs_calibration` and every stage read it from here.
CALIBRATED = (Precision.INT8, Precision.INT16X8)

#: Set (True) on a Keras model that computes through tfopt's FakeQuant (`optimize`'s qat): its
#: quantization ranges live in the model, and only the converter's Keras 3 export honours them.
FAKE_QUANT_MARK = "_tfopt_fake_quant"


class SourceKind(StrEnum):
    TF_KERAS = "tf_keras"
    KERAS3 = "keras3"
    SAVED_MODEL = "saved_model"
    TFLITE = "tflite"


@dataclass(frozen=True)
class TensorSpec:
    """One model input: its name, shape (None for free dimensions) and numpy dtype name."""

    name: str
    shape: tuple[int | None, ...]
    dtype: str

    @property
    def is_float(self) -> bool:
        return np.issubdtype(np.dtype(self.dtype), np.floating)


# How a Keras model takes its inputs: one tensor (None), a list in this order of input names,
# or a dict from call keys to input names.
CallStructure = None | tuple[str, ...] | dict[str, str]


@dataclass(frozen=True)
class LoadedModel:
    """A model ready for conversion or reference runs."""

    kind: SourceKind
    model: Any  # Keras model, SavedModel signature function, or None for .tflite
    inputs: tuple[TensorSpec, ...]
    path: Path | None = None
    structure: CallStructure = None

    @property
    def input_names(self) -> list[str]:
        return [s.name for s in self.inputs]

    def call_args(self, x: dict[str, Any]) -> Any:
        """Named arrays arranged the way the Keras model is called (one, a list or a dict)."""
        return arrange(self.structure, self.input_names, x)


def arrange(structure: CallStructure, names: list[str], x: dict[str, Any]) -> Any:
    """Named arrays as a model call's argument: one array, a list or a dict (by `structure`)."""
    if isinstance(structure, dict):
        return {key: x[name] for key, name in structure.items()}
    if isinstance(structure, tuple):
        return [x[name] for name in structure]
    return x[names[0]] if names and names[0] in x else next(iter(x.values()))


# Input shapes given by the user (--input-shape): one shape for a single-input model, or by name.
InputShapes = tuple[int | None, ...] | dict[str, tuple[int | None, ...]]
