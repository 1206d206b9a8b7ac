"""The check and keep stages: a converted flatbuffer is held to the app's budget, checked against
its source with the precision's tolerance on the planned data, and only then written (atomically:
a failed check writes nothing)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from converters import PRECISIONS
from tfopt.conversion.guards import probe
from tfopt.conversion.inputs import (
    CHECK_SAMPLES,
    check_sample,
    preset_sentences,
    synthetic_data,
    written_input_notes,
)
from tfopt.conversion.isolated import step
from tfopt.conversion.plan import ExportPlan
from tfopt.conversion.result import ConvertResult
from tfopt.core import LoadedModel, Precision
from tfopt.data import Dataset
from tfopt.errors import ValidationError, note, option
from tfopt.fsutil import atomic_path
from tfopt.inspection import graph_summary, gzip_size
from tfopt.metadata import Metadata, app_caveats, attach, read
from tfopt.validate import (
    compare_outputs,
    run_reference,
    run_tflite,
    with_saturation,
    with_thresholds,
)

# What the check ran on, as recorded in the result's `check.data` (and how a failure reads).
CHECK_DATA = {
    "check_data": "the check data",
    "calibration": "the calibration data",
    "sentences": "public-domain sentences through the model's own tokenizer",
    "synthetic": "synthetic inputs",
}


def with_metadata(flatbuffer: bytes, spec: Metadata) -> tuple[bytes, dict[str, Any]]:
    """The converted model with its TFLite metadata (and that metadata, read back); one note
    says what was written."""
    out = attach(flatbuffer, spec)
    doc = read(out) or {}
    written = [k for k in ("name", "version", "author") if getattr(spec, k) is not None]
    if spec.normalize is not None:
        inp = doc["inputs"][0]
        written.append(f"input normalization {spec.normalize} ({inp.get('content', 'feature')})")
    if spec.labels is not None:
        written.append(f"{Path(spec.labels).name} packed for output '{doc['outputs'][0]['name']}'")
    note("metadata: " + ", ".join(written or ["description"]))
    for caveat in app_caveats(out):
        note(caveat)
    return out, doc


def sample_for(
    plan: ExportPlan, reference: LoadedModel, held_out: Dataset | None, data: Dataset | None
) -> tuple[str, Any]:
    """What the check runs on (`plan.check_data`, falling back as `inputs.check_sample` does):
    (its kind, the Dataset)."""
    sentences = plan.check_data == "sentences"
    return check_sample(
        held_out,
        data,
        lambda: synthetic_data(plan.inputs, 8, max_id=plan.synthetic_max_id,
                               free_length=plan.synthetic_free_length),  # fmt: skip
        (lambda: preset_sentences(reference, plan.inputs)) if sentences else None,
    )


def keep(
    out: Path,
    flatbuffer: bytes,
    prec: Precision,
    reference: LoadedModel,
    sample: tuple[str, Any],
    check: bool,
) -> dict[str, Any] | None:
    """Write `flatbuffer` to `out` atomically, after checking it against `reference` on `sample`
    (what it is, the Dataset) with the precision's tolerance (a failed check writes nothing)."""
    kind, data = sample
    with atomic_path(out) as tmp:
        tmp.write_bytes(flatbuffer)
        if not check:
            return None
        step(f"loading the {prec} file in LiteRT (a child process)")
        probe(tmp, prec)
        step(f"checking the {prec} file against the source model in LiteRT")
        checked_on = data.take(CHECK_SAMPLES)
        ref = run_reference(reference, checked_on)
        diff = compare_outputs(ref, run_tflite(str(tmp), checked_on))
        diff = with_saturation(diff, str(tmp), checked_on)  # int8 inputs the data overflows
        spec = PRECISIONS[prec]
        verdict = with_thresholds(diff, spec.min_sqnr_db, spec.min_cosine)
        for warning in verdict.warnings:
            note(warning)
        if not verdict.passed:
            raise _failed(prec, kind, verdict.failures[0])
        return {**verdict.to_dict(), "data": kind}


def _failed(prec: Precision, kind: str, failure: str) -> ValidationError:
    if kind == "synthetic":
        return ValidationError(
            f"{prec} model fails its numeric check on synthetic inputs (random values, "
            f"nothing like real data): {failure}; judge it on real inputs "
            f"with {option('check_data')} DATA (or --no-check to keep it)"
        )
    return ValidationError(
        f"{prec} model fails its numeric check on {CHECK_DATA[kind]}: "
        f"{failure} (pass {option('no_check', 'check=False')} to keep it anyway)"
    )


def written_notes(
    flatbuffer: bytes, plan: ExportPlan, seq_len: int | None, data: Dataset | None
) -> None:
    """Notes on the written file: the shape each free input takes (read back from it), and the
    state that stateful sequence ops keep between invocations."""
    for line in written_input_notes(flatbuffer, list(plan.free_inputs), seq_len, data):
        note(line)
    stateful = sorted(op for op in graph_summary(flatbuffer)["ops"] if "SEQUENCE_" in op)
    if stateful:
        note(
            f"{', '.join(stateful)} keep their state in variable tensors between invocations: an "
            "app calls the interpreter's reset_all_variables() before each new sequence"
        )


def result(
    out: Path,
    flatbuffer: bytes,
    plan: ExportPlan,
    source: str,
    seconds: float,
    **more: Any,
) -> ConvertResult:
    """The `ConvertResult` of a kept file; `more` are its optional fields (check, seq_len...)."""
    summary = graph_summary(flatbuffer)
    return ConvertResult(
        output=str(out),
        precision=plan.precision.value,
        source=source,
        size_bytes=len(flatbuffer),
        gzip_bytes=gzip_size(flatbuffer),
        seconds=round(seconds, 2),
        float_compute_ops=summary["float_compute_ops"],
        plan=plan.to_dict(),
        **more,
    )
