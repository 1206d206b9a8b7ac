"""The conversion hub: load -> plan -> export -> check -> keep.

Each stage is one function of its own module: `plan.plan_export` makes every decision
(`ExportPlan`), `export.export` follows it to flatbuffer bytes, `keep` holds the file to the
app's budget, checks it against the source and writes it atomically. A float `.tflite` source
goes through `requantize`, a causal LM through `tfopt.lm.export`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from tfopt.conversion import budget
from tfopt.conversion.export import Exported, export
from tfopt.conversion.inputs import CHECK_SAMPLES, dataset
from tfopt.conversion.isolated import convert_in_child, in_child, step
from tfopt.conversion.keep import keep, result, sample_for, with_metadata, written_notes
from tfopt.conversion.plan import Backend, ExportPlan, isolate, plan_export, refuse
from tfopt.conversion.quantized import check_quantized
from tfopt.conversion.request import ConvertRequest
from tfopt.conversion.result import ConvertResult
from tfopt.core import LoadedModel
from tfopt.data import Dataset
from tfopt.errors import InputError, note
from tfopt.fsutil import check_output
from tfopt.loading import load


def convert(
    model: str | os.PathLike[str] | Any,
    output: str | os.PathLike[str],
    precision: str = "float32",
    **options: Any,
) -> ConvertResult:
    """Convert a Keras model, model file or SavedModel to a `.tflite` file at `precision`.

    Options (`ConvertRequest` fields): `calibration` (data for int8/int16x8), `num_calibration`,
    `int8_io`, `seq_len` (free sequence dimensions; a keras-hub model's own length by default),
    `overwrite`, `unsafe`, `check` (on by default), `check_data`, `lm` with `max_length` (a causal
    LM with prefill/decode signatures), `quantizer` ("converter" or "aeq"), `keep_float`,
    `imports` (modules or `.py` files with custom layers; need `unsafe`), `input_shapes` and
    `debug` (keep the converter's and quantizer's native output).

    The result is checked on `check_data` (else the calibration data, else public-domain
    sentences through a keras-hub text model's own tokenizer, else realistic random inputs; at
    most 32 samples) against the precision's tolerance before it is kept; `check["data"]` says
    which. Calibrated and LiteRT-quantizer conversions of a model given by path run in a child
    process, so a native crash there is a `ConversionError` naming the step. The result's `plan`
    names every decision made (`plan.ExportPlan`).

    Raises:
        InputError: a bad option or combination of options, a bad model path.
        ModelLoadError, DataError: bad model or data.
        ConversionError: the precision cannot be reached; names the ops at fault.
        ValidationError: the converted model misses the precision's tolerance.
        OutputError: `output` exists without `overwrite`, or cannot be written.
    """
    return convert_request(model, output, ConvertRequest(precision=precision, **options))  # type: ignore[arg-type]


def convert_request(
    model: str | os.PathLike[str] | Any, output: str | os.PathLike[str], req: ConvertRequest
) -> ConvertResult:
    """`convert` for a ready request: load -> plan -> export -> check -> keep."""
    out = check_output(output, req.overwrite)
    if isolate(isinstance(model, (str, os.PathLike)), req) and not in_child():
        return convert_in_child(model, out, req)
    loaded, data = load_source(model, out, req)
    plan = plan_export(req, loaded, data)
    for line in plan.notes:
        note(line)
    if plan.backend is Backend.LM:
        from tfopt.lm.export import convert_lm

        return convert_lm(loaded, out, req, plan)
    if plan.backend is Backend.TFLITE:
        from tfopt.conversion.requantize import requantize

        return requantize(loaded, out, req, plan, data)
    data, held_out = fitted_data(plan, req, data)
    exported = export(plan, loaded, data, req.keep_float, req.debug)
    return check_and_keep(exported, plan, loaded, out, req, (held_out, data))


def load_source(
    model: str | os.PathLike[str] | Any, out: Path, req: ConvertRequest
) -> tuple[LoadedModel, Dataset | None]:
    """The model, and its calibration data as given (checked against its declared inputs).
    A source the request cannot take is refused before any data is read."""
    step("loading the model")
    loaded = load(model, unsafe=req.unsafe, imports=req.imports, input_shapes=req.input_shapes)
    if loaded.path is not None and Path(loaded.path).resolve() == out.resolve():
        raise InputError("-o is MODEL itself: write the converted model to another path")
    refuse(req, loaded)
    return loaded, dataset(req.calibration, loaded.inputs, req.num_calibration)


def fitted_data(
    plan: ExportPlan, req: ConvertRequest, data: Dataset | None
) -> tuple[Dataset | None, Dataset | None]:
    """The calibration data checked against the planned (fixed) input shapes, and the check
    data read for them."""
    if data is not None:
        data = dataset(data, plan.inputs, req.num_calibration)
    return data, dataset(req.check_data, plan.inputs, CHECK_SAMPLES)


def check_and_keep(
    exported: Exported,
    plan: ExportPlan,
    loaded: LoadedModel,
    out: Path,
    req: ConvertRequest,
    check_on: tuple[Dataset | None, Dataset | None],
) -> ConvertResult:
    """Metadata, the app's budget and the quantization held to before anything is written; then
    the numeric check against the model as given (`loaded`, whatever was converted) and the
    atomic write. `check_on` is (the check data, the calibration data)."""
    flatbuffer, metadata = exported.flatbuffer, None
    if req.metadata:
        flatbuffer, metadata = with_metadata(flatbuffer, req.metadata)
    budget.check(flatbuffer, plan.precision.value, req.max_size, req.allowed_ops)
    check_quantized(flatbuffer, plan.precision, None, req.check)
    held_out, data = check_on
    sample = sample_for(plan, loaded, held_out, data)
    checked = keep(out, flatbuffer, plan.precision, loaded, sample, req.check)
    written_notes(flatbuffer, plan, req.seq_len, held_out or data)
    sensitivity = exported.sensitivity.to_dict() if exported.sensitivity else None
    return result(out, flatbuffer, plan, loaded.kind.value, exported.seconds, check=checked,
                  seq_len=plan.seq_len, sensitivity=sensitivity, metadata=metadata)  # fmt: skip

