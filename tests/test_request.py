"""The convert request refuses meaningless combinations in one line, before any work."""

from __future__ import annotations

from typing import Any

import pytest

from tfopt.conversion import ConvertRequest, Quantizer
from tfopt.core import Precision
from tfopt.errors import InputError

REFUSED = [
    ({"lm": True, "calibration": "c.npz"}, "lm .* no calibration"),
    ({"lm": True, "seq_len": 32}, "lm .* no seq_len"),
    ({"lm": True, "check_data": "x.npz", "input_shapes": (1, 4)}, "check_data, input_shapes"),
    ({"lm": True, "max_length": 1}, "max_length must be at least 2"),
    ({"max_length": 64}, "max_length applies to lm only"),
    ({"precision": "float16", "int8_io": True}, "int8_io applies to precision int8"),
    ({"precision": "int8", "int8_io": True, "quantizer": "aeq"}, "int8_io applies"),
    ({"precision": "w4"}, "w4 \\(weight-only\\) needs quantizer aeq"),
    ({"precision": "float32", "quantizer": "aeq"}, "aeq quantizes: choose dynamic"),
    ({"keep_float": ("softmax",)}, "keep_float needs quantizer aeq"),
    ({"num_calibration": 0}, "num_calibration must be at least 1"),
    ({"seq_len": 0}, "seq_len must be at least 1"),
    ({"precision": "int4"}, "unknown precision 'int4' \\(choose from float32, float16"),
    ({"quantizer": "tflite"}, "unknown quantizer 'tflite'"),
]


@pytest.mark.parametrize("options, message", REFUSED, ids=[m for _, m in REFUSED])
def test_meaningless_combinations_are_refused(options: dict[str, Any], message: str) -> None:
    with pytest.raises(InputError, match=message):
        ConvertRequest(**options)


def test_a_valid_request_normalises_its_enums() -> None:
    req = ConvertRequest(precision="w4b32", quantizer="aeq", keep_float=["softmax"])
    assert req.precision is Precision.W4B32 and req.quantizer is Quantizer.AEQ
    assert req.keep_float == ("softmax",) and req.use_aeq
    lm = ConvertRequest(precision="dynamic", lm=True, max_length=64)
    assert lm.max_length == 64 and not lm.use_aeq
