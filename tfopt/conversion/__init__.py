"""Convert stage: load -> backend -> precision settings -> .tflite, checked before it is kept.

The converted file is written to a temporary path, checked numerically against its source with
the precision's tolerance, and only then renamed into place: a failed conversion or a failed
check leaves nothing behind.

    request.py  ConvertRequest: every option, meaningless combinations refused in one line
    run.py      convert(): backend, precision settings, check, atomic keep
    inputs.py   fixed input specs, calibration/check data, synthetic samples
    guards.py   converter errors named by op; crashes of TF or LiteRT refused, not suffered
    lm.py       causal LMs: prefill/decode signatures with a KV cache
    result.py   ConvertResult
"""

from tfopt.conversion.inputs import CHECK_SAMPLES, fixed_specs, synthetic_data, vocabulary_bound
from tfopt.conversion.request import ConvertRequest, Quantizer
from tfopt.conversion.result import ConvertResult
from tfopt.conversion.run import convert, convert_request

__all__ = [
    "CHECK_SAMPLES",
    "ConvertRequest",
    "ConvertResult",
    "Quantizer",
    "convert",
    "fixed_specs",
    "convert_request",
    "synthetic_data",
    "vocabulary_bound",
]
