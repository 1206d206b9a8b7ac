"""Convert stage: load -> backend -> precision settings -> .tflite, checked before it is kept.

The converted file is written to a temporary path, checked numerically against its source with
the precision's tolerance, and only then renamed into place: a failed conversion or a failed
check leaves nothing behind.

    request.py  ConvertRequest: every option, meaningless combinations refused in one line
    run.py      convert(): load -> plan -> export -> check -> keep
    plan.py     ExportPlan: every decision, from the request and the loaded model; explain()
    export.py   the plan followed: backend, mask, converter or LiteRT quantizer, int8 search
    keep.py     budget, numeric check against the source, atomic write, the result
    requantize.py  a float .tflite through the LiteRT quantizer
    dedupe.py   constants stored once across signatures (the LM export's last step)
    lookups.py  an LM's token GATHER as EMBEDDING_LOOKUP, so the LiteRT quantizer quantizes its table
    inputs.py   fixed input specs, calibration/check data, synthetic samples
    guards.py   converter errors named by op; crashes of TF or LiteRT refused, not suffered
    result.py   ConvertResult (causal LMs: `tfopt.lm.export`)
"""

from tfopt.conversion.inputs import CHECK_SAMPLES, fixed_specs, synthetic_data, vocabulary_bound
from tfopt.conversion.plan import ExportPlan, explain, plan_export
from tfopt.conversion.request import ConvertRequest, Quantizer
from tfopt.conversion.result import ConvertResult
from tfopt.conversion.run import convert, convert_request

__all__ = [
    "CHECK_SAMPLES",
    "ConvertRequest",
    "ConvertResult",
    "ExportPlan",
    "Quantizer",
    "convert",
    "fixed_specs",
    "convert_request",
    "explain",
    "plan_export",
    "synthetic_data",
    "vocabulary_bound",
]
