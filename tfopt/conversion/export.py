"""The export stage: a Keras model or SavedModel to flatbuffer bytes, exactly as its plan says.

The plan (`plan.ExportPlan`) has made every decision; here the model is rebuilt when the plan
converts its recurrent twin, exported by its backend with the planned softmax mask, converted
(after a float conversion that refuses calibrator-crashing loops, where planned) and quantized by
TF's converter, the LiteRT quantizer or the int8 op-kind search. A backend's second way of
building its converter is tried when the first fails.
"""

from __future__ import annotations

import tempfile
import time
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from converters import PRECISIONS, backend_for
from converters.base import KEEP_FREE
from tfopt import keras_worlds
from tfopt.conversion import recurrent
from tfopt.conversion.guards import refuse_loops, run_converter
from tfopt.conversion.inputs import representative
from tfopt.conversion.isolated import step
from tfopt.conversion.plan import ExportPlan, Mask
from tfopt.conversion.transformer import MASK_MARGIN, Sensitivity, quantize_transformer
from tfopt.core import LoadedModel, Precision
from tfopt.data import Dataset
from tfopt.errors import ConversionError, note


@dataclass(frozen=True)
class Exported:
    """The converted flatbuffer, the seconds it took, and what the int8 search found."""

    flatbuffer: bytes
    seconds: float
    sensitivity: Sensitivity | None = None


@dataclass(frozen=True)
class _Job:
    """What one converter attempt needs besides the converter."""

    plan: ExportPlan
    keep_float: tuple[str, ...]
    data: Dataset | None
    order: list[str] | None  # the backend's calibration order
    debug: bool


def export(
    plan: ExportPlan,
    loaded: LoadedModel,
    data: Dataset | None,
    keep_float: tuple[str, ...] = (),
    debug: bool = False,
) -> Exported:
    """Convert `loaded` (its inputs become the plan's) on calibration `data` as `plan` says."""
    converted = replace(loaded, inputs=plan.inputs)  # the backends export exactly these shapes
    if plan.recurrent_twin:
        converted = recurrent.fused(converted, plan.precision)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="tfopt-") as work:
        with _masks(plan.mask):
            step(f"exporting the {converted.kind} model for the converter")
            free = KEEP_FREE if plan.keep_free else None
            prepared = backend_for(converted.kind)(converted, free, Path(work))
        _mask_note(plan)
        job = _Job(plan, keep_float, data, prepared.calibration_order, debug)
        try:
            flatbuffer, sensitivity = _attempt(job, prepared.converter)
        except ConversionError:
            if prepared.fallback is None:
                raise
            flatbuffer, sensitivity = _attempt(job, prepared.fallback())
    return Exported(flatbuffer, time.perf_counter() - started, sensitivity)


def _masks(mask: Mask) -> AbstractContextManager[Any]:
    if mask is Mask.BOUNDED:
        return keras_worlds.bounded_softmax_masks(MASK_MARGIN)
    if mask is Mask.ADDITIVE:
        return keras_worlds.additive_softmax_masks()
    return nullcontext()


def _mask_note(plan: ExportPlan) -> None:
    prec = plan.precision
    if plan.mask is Mask.BOUNDED:
        note(
            f"{prec}: masked attention scores are filled with the row's minimum - "
            f"{MASK_MARGIN:g} instead of -1e9, so one int8 scale holds them"
        )
    elif plan.int8_search:
        note(
            f"{prec}: the attention mask is added to the scores, which stay float from the "
            "attention matmul through the softmax (XNNPACK runs them in float only)"
        )


def _configured(job: _Job, converter: Any) -> Any:
    """The converter set for the plan: float32 when the LiteRT quantizer or the int8 search
    quantizes afterwards, else the precision itself (its calibration fed in the backend's order)."""
    plan = job.plan
    if plan.quantizer == "aeq" or plan.int8_search:
        PRECISIONS[Precision.FLOAT32].configure(converter, None, False)
    else:
        feed = representative(job.data, job.order) if job.data else None
        PRECISIONS[plan.precision].configure(converter, feed, plan.int8_io)
    return converter


def _attempt(job: _Job, converter: Any) -> tuple[bytes, Sensitivity | None]:
    """One converter's conversion: loops refused first where planned, then the plan's quantizer."""
    plan = job.plan
    if plan.loop_check:  # on the converter that will calibrate, the fallback's too
        refuse_loops(converter, plan.precision, job.debug)
    if plan.int8_search:
        assert job.data is not None  # int8 needs calibration, planned
        float_model = run_converter(
            _configured(job, converter), Precision.FLOAT32, False, (), None, job.debug
        )
        step("searching which op kinds int8 keeps float (LiteRT quantizer)")
        quantized, sensitivity = quantize_transformer(float_model, job.data, debug=job.debug)
        note(sensitivity.summary())
        return quantized, sensitivity
    use_aeq = plan.quantizer == "aeq"
    flatbuffer = run_converter(
        _configured(job, converter), plan.precision, use_aeq, job.keep_float, job.data, job.debug
    )
    return flatbuffer, None
