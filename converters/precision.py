"""Precisions: a registry from `Precision` to the converter settings that reach it.

Each entry also carries the numeric tolerance a converted model must meet against its source
(SQNR in dB and cosine similarity of the outputs), so the check is defined next to the setting.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from tfopt import keras_worlds
from tfopt.core import CALIBRATED, CONVERTER_PRECISIONS, Precision  # noqa: F401 - re-exported

Configure = Callable[[Any, Callable[[], Iterator[Any]] | None, bool], None]


@dataclass(frozen=True)
class PrecisionSpec:
    """How to reach a precision and how close the result must stay to the source."""

    precision: Precision
    min_sqnr_db: float
    min_cosine: float
    configure: Configure

    @property
    def needs_calibration(self) -> bool:
        """Whether reaching it takes representative data (`core.CALIBRATED`)."""
        return self.precision in CALIBRATED


PRECISIONS: dict[Precision, PrecisionSpec] = {}


def _precision(
    precision: Precision, min_sqnr_db: float, min_cosine: float
) -> Callable[[Configure], Configure]:
    def wrap(fn: Configure) -> Configure:
        PRECISIONS[precision] = PrecisionSpec(precision, min_sqnr_db, min_cosine, fn)
        return fn

    return wrap


@_precision(Precision.FLOAT32, min_sqnr_db=40.0, min_cosine=0.9999)
def _float32(converter: Any, representative: Any, int8_io: bool) -> None:
    """Float32 weights and activations: the reference for size and accuracy."""


@_precision(Precision.FLOAT16, min_sqnr_db=25.0, min_cosine=0.999)
def _float16(converter: Any, representative: Any, int8_io: bool) -> None:
    """Float16 weights, float32 compute: half the size, near-identical outputs."""
    tf = keras_worlds.tf()
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.target_spec.supported_types = [tf.float16]


@_precision(Precision.DYNAMIC, min_sqnr_db=12.0, min_cosine=0.99)
def _dynamic(converter: Any, representative: Any, int8_io: bool) -> None:
    """Int8 weights, activations quantized on the fly: a quarter of the size, no data needed."""
    tf = keras_worlds.tf()
    converter.optimizations = [tf.lite.Optimize.DEFAULT]


@_precision(Precision.INT8, min_sqnr_db=8.0, min_cosine=0.95)
def _int8(converter: Any, representative: Any, int8_io: bool) -> None:
    """Full integer int8, calibrated on data; float I/O unless int8 I/O is asked for."""
    tf = keras_worlds.tf()
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    if int8_io:
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8


@_precision(Precision.INT16X8, min_sqnr_db=15.0, min_cosine=0.99)
def _int16x8(converter: Any, representative: Any, int8_io: bool) -> None:
    """Int16 activations, int8 weights: closer to float than int8, runs on reference kernels."""
    tf = keras_worlds.tf()
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [
        tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8
    ]


@_precision(Precision.W8, min_sqnr_db=25.0, min_cosine=0.999)
def _w8(converter: Any, representative: Any, int8_io: bool) -> None:
    """Weight-only int8 (LiteRT quantizer): int8 storage, float compute."""


@_precision(Precision.W4, min_sqnr_db=10.0, min_cosine=0.98)
def _w4(converter: Any, representative: Any, int8_io: bool) -> None:
    """Weight-only int4, channelwise (LiteRT quantizer): an eighth of the size, float compute."""


@_precision(Precision.W4B32, min_sqnr_db=10.0, min_cosine=0.98)
def _w4b32(converter: Any, representative: Any, int8_io: bool) -> None:
    """int4 weights in blocks of 32, activations quantized on the fly (LiteRT quantizer)."""
