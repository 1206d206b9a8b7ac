"""Conversion backends: one module per source format, each producing a configured TFLiteConverter.

`backend_for(kind)` returns the backend registered for a `tfopt.loading.SourceKind`; `PRECISIONS`
maps each `Precision` to the converter settings that reach it.
"""

from converters.base import Prepared, backend_for, register
from converters.precision import PRECISIONS, Precision, PrecisionSpec

# Importing the backend modules registers them.
from converters import keras3, saved_model, tf_keras  # noqa: E402,F401  isort: skip

__all__ = ["PRECISIONS", "Precision", "PrecisionSpec", "Prepared", "backend_for", "register"]
