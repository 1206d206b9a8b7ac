"""The backend registry: source kind -> function that prepares a TFLiteConverter."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tfopt.core import LoadedModel, SourceKind, TensorSpec
from tfopt.errors import ConversionError, option


@dataclass(frozen=True)
class Prepared:
    """A converter ready for precision settings.

    `calibration_order` lists input names in the order the converter's representative dataset
    must yield them as a list; None means it takes a dict keyed by signature input names.
    `fallback` builds another converter for the same model, tried if the first one fails.
    """

    converter: Any
    calibration_order: list[str] | None
    # A second way to build the converter, tried when the first fails to convert (e.g. a
    # tf_keras RNN, whose tensor lists lower only at a static batch size).
    fallback: Callable[[], Any] | None = None


Backend = Callable[[LoadedModel, int | None, Path], Prepared]
_BACKENDS: dict[SourceKind, Backend] = {}


def register(kind: SourceKind) -> Callable[[Backend], Backend]:
    """Decorator: register the backend that converts models of `kind`."""

    def wrap(fn: Backend) -> Backend:
        _BACKENDS[kind] = fn
        return fn

    return wrap


def backend_for(kind: SourceKind) -> Backend:
    """The backend for `kind`; .tflite files are already converted."""
    if kind not in _BACKENDS:
        raise ConversionError(f"no conversion backend for a {kind} source")
    return _BACKENDS[kind]


KEEP_FREE = -1  # as `seq_len`: free dimensions stay free (`convert --dynamic-length`)


def fixed_shape(spec: TensorSpec, seq_len: int | None) -> list[int | None]:
    """Batch 1; other free dimensions become `seq_len` (stay free for KEEP_FREE), or the error
    asks for it."""
    shape: list[int | None] = [1]
    for dim in spec.shape[1:]:
        if dim is None and seq_len == KEEP_FREE:
            shape.append(None)
            continue
        if dim is None:
            if seq_len is None:
                raise ConversionError(
                    f"input '{spec.name}' has a free dimension {spec.shape}; "
                    f"pass {option('seq_len')} N to fix it"
                )
            dim = seq_len
        shape.append(int(dim))
    return shape


def has_free_dims(specs: tuple[TensorSpec, ...]) -> bool:
    return any(d is None for s in specs for d in s.shape[1:])
