"""The LiteRT quantizer (PyPI `ai-edge-quantizer`) as a second quantization backend.

Converter post-training quantization is deprecated upstream in favour of this quantizer, which
works on a float `.tflite` file. A scheme is a recipe in the quantizer's own JSON format, built
here as data; `keep_float` regexes append `no_quantize` entries (later entries win), so chosen
layers (matched on their op's output tensor name) stay in float.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from tfopt.core import AEQ_PRECISIONS, Precision
from tfopt.errors import ConversionError, first_line, option
from tfopt.quiet import silenced

# The quantizer's schemes are tfopt's precisions (`core.AEQ_PRECISIONS`): w8 and w4 weight-only
# channelwise (float compute); w4b32 int4 weights in blocks of 32 with activations quantized on
# the fly (aeq 0.10 rejects blockwise int4 for weight-only FULLY_CONNECTED, "Unsupported op for
# FLOAT", so blocks need this form); dynamic; int8 (a8w8) and int16x8 (a16w8), both calibrated.


def _weights(bits: int, granularity: str = "CHANNELWISE") -> dict[str, Any]:
    return {"num_bits": bits, "symmetric": True, "granularity": granularity, "dtype": "INT"}


def _activations(bits: int) -> dict[str, Any]:
    return {"num_bits": bits, "symmetric": bits == 16, "granularity": "TENSORWISE", "dtype": "INT"}


def _op_config(scheme: Precision) -> dict[str, Any]:
    if scheme is Precision.W8:
        return {
            "weight_tensor_config": _weights(8),
            "compute_precision": "FLOAT",
            "explicit_dequantize": True,
        }
    if scheme is Precision.W4:
        return {
            "weight_tensor_config": _weights(4),
            "compute_precision": "FLOAT",
            "explicit_dequantize": True,
        }
    if scheme is Precision.W4B32:
        return {
            "weight_tensor_config": _weights(4, "BLOCKWISE_32"),
            "compute_precision": "INTEGER",
            "explicit_dequantize": False,
        }
    if scheme is Precision.DYNAMIC:
        return {
            "weight_tensor_config": _weights(8),
            "compute_precision": "INTEGER",
            "explicit_dequantize": False,
        }
    bits = 8 if scheme is Precision.INT8 else 16
    return {
        "activation_tensor_config": _activations(bits),
        "weight_tensor_config": _weights(8),
        "compute_precision": "INTEGER",
        "explicit_dequantize": False,
    }


def recipe(scheme: Precision, keep_float: Iterable[str] = ()) -> list[dict[str, Any]]:
    """The quantizer recipe for `scheme`, with `keep_float` layers left in float."""
    entries: list[dict[str, Any]] = [
        {
            "regex": ".*",
            "operation": "*",
            "algorithm_key": "min_max_uniform_quantize",
            "op_config": {**_op_config(scheme), "skip_checks": False, "min_weight_elements": 0},
        }
    ]
    entries += [{"regex": r, "operation": "*", "algorithm_key": "no_quantize"} for r in keep_float]
    return entries


Calibration = dict[str, list[dict[str, Any]]]  # signature key -> samples (named arrays)


class Session:
    """The LiteRT quantizer on one float model: calibrate once, quantize many.

    Built with the float `.tflite` bytes and, for the calibrated schemes (int8, int16x8), the
    calibration samples by signature key. The first calibrated `quantize` runs the calibration;
    every later one (another scheme, other `keep_float` layers, a hand-made recipe) reuses its
    statistics, which are the float model's tensor ranges whatever the recipe.
    """

    def __init__(self, float_model: bytes, calibration: Calibration | None = None) -> None:
        self.float_model = bytes(float_model)
        self.calibration = calibration
        self._stats: Any = None

    def calibrate(self, scheme: Precision) -> None:
        """Run the calibration now (for `scheme`'s recipe), so a failure is the calibration's."""
        self.quantize_recipe(recipe(scheme), str(scheme), calibrate_only=True)

    def quantize(self, scheme: Precision, keep_float: Iterable[str] = ()) -> bytes:
        """The float model at `scheme`, with `keep_float` layers (regexes) left in float."""
        if scheme not in AEQ_PRECISIONS:
            raise ConversionError(f"the LiteRT quantizer has no {scheme} scheme")
        return self.quantize_recipe(recipe(scheme, keep_float), str(scheme))

    def quantize_recipe(
        self, entries: list[dict[str, Any]], what: str, calibrate_only: bool = False
    ) -> bytes:
        """The float model quantized by a recipe of the quantizer's own (`recipe` and entries
        appended to it); `what` names the scheme in errors."""
        from ai_edge_quantizer import quantizer

        try:
            with silenced():  # its calibration bar and "Original model size..." report
                qt = quantizer.Quantizer(bytearray(self.float_model), entries)
                stats = self._calibrated(qt, what) if qt.need_calibration else None
                if calibrate_only:
                    return b""
                quantized = qt.quantize(stats).quantized_model
        except ConversionError:
            raise
        except Exception as exc:  # noqa: BLE001 - the quantizer raises many types
            first = first_line(exc, 240)
            raise ConversionError(f"the LiteRT quantizer failed ({what}): {first}") from exc
        if quantized is None:
            raise ConversionError(f"the LiteRT quantizer produced no model ({what})")
        return bytes(quantized)

    def _calibrated(self, qt: Any, what: str) -> Any:
        if self._stats is None:
            if not self.calibration:
                raise ConversionError(
                    f"{option('quantizer')} aeq {what} needs calibration data "
                    f"({option('calibration')})"
                )
            self._stats = qt.calibrate(self.calibration)
        return self._stats


def quantize(
    float_model: bytes,
    scheme: Precision,
    keep_float: Iterable[str] = (),
    calibration: Calibration | None = None,
) -> bytes:
    """Quantize a float `.tflite` flatbuffer once (a `Session` used for one scheme)."""
    return Session(float_model, calibration).quantize(scheme, keep_float)
