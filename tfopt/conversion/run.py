"""The conversion itself: load -> backend -> precision settings -> flatbuffer -> check -> keep."""

from __future__ import annotations

import os
import tempfile
import time
from contextlib import nullcontext
from dataclasses import replace
from pathlib import Path
from typing import Any

from converters import PRECISIONS, backend_for
from converters.base import KEEP_FREE
from tfopt import keras_worlds
from tfopt.conversion import budget, recurrent
from tfopt.conversion.guards import aeq, may_loop, probe, refuse_loops, run_converter
from tfopt.conversion.inputs import (
    CHECK_SAMPLES,
    FREE_LENGTH,
    check_sample,
    dataset,
    fixed_specs,
    preset_sentences,
    representative,
    specs_from_data,
    synthetic_data,
    vocabulary_bound,
    written_input_notes,
)
from tfopt.conversion.isolated import convert_in_child, in_child, step
from tfopt.conversion.lm import convert_lm
from tfopt.conversion.quantized import QUANTIZED, check_quantized, quantized_tensors
from tfopt.conversion.request import ConvertRequest
from tfopt.conversion.result import ConvertResult
from tfopt.conversion.transformer import MASK_MARGIN, quantize_transformer
from tfopt.core import LoadedModel, Precision, SourceKind
from tfopt.errors import ConversionError, DataError, InputError, ValidationError, note
from tfopt.fsutil import atomic_path, check_output
from tfopt.inspection import graph_summary, gzip_size
from tfopt.loading import load
from tfopt.metadata import Metadata, app_caveats, attach, carry, read
from tfopt.validate import (
    compare_outputs,
    run_reference,
    run_tflite,
    with_saturation,
    with_thresholds,
)


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


# What the check ran on, as recorded in the result's `check.data` (and how a failure reads).
CHECK_DATA = {
    "check_data": "the check data",
    "calibration": "the calibration data",
    "sentences": "public-domain sentences through the model's own tokenizer",
    "synthetic": "synthetic inputs",
}


def _keep(
    out: Path,
    flatbuffer: bytes,
    prec: Precision,
    loaded: LoadedModel,
    sample: tuple[str, Any],
    check: bool,
) -> dict[str, Any] | None:
    """Write `flatbuffer` to `out` atomically, after checking it against `loaded` on `sample`
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
        diff = compare_outputs(run_reference(loaded, checked_on), run_tflite(str(tmp), checked_on))
        diff = with_saturation(diff, str(tmp), checked_on)  # int8 inputs the data overflows
        spec = PRECISIONS[prec]
        verdict = with_thresholds(diff, spec.min_sqnr_db, spec.min_cosine)
        for warning in verdict.warnings:
            note(warning)
        if not verdict.passed:
            if kind == "synthetic":
                raise ValidationError(
                    f"{prec} model fails its numeric check on synthetic inputs (random values, "
                    f"nothing like real data): {verdict.failures[0]}; judge it on real inputs "
                    "with --check-data DATA (or --no-check to keep it)"
                )
            raise ValidationError(
                f"{prec} model fails its numeric check on {CHECK_DATA[kind]}: "
                f"{verdict.failures[0]} (pass --no-check to keep it anyway)"
            )
        return {**verdict.to_dict(), "data": kind}


def _requantize(loaded: LoadedModel, out: Path, req: ConvertRequest) -> ConvertResult:
    """A float .tflite through the LiteRT quantizer; the metadata and packed files it carries
    (labels, normalization) are kept, and `req.metadata` changes them."""
    assert loaded.path is not None
    prec, source = req.precision, Path(loaded.path).read_bytes()
    quantized = sorted(quantized_tensors(source))  # a uint8 image input alone is not
    if quantized:
        raise InputError(
            f"{Path(loaded.path).name} is already quantized ({', '.join(quantized)} tensors): "
            "the LiteRT quantizer takes a float .tflite"
        )
    data = dataset(req.calibration, loaded.inputs, req.num_calibration)
    if PRECISIONS[prec].needs_calibration and data is None:
        raise DataError(f"{prec} needs calibration data: pass --calibration DATA")
    _calibration_unused(prec, data)
    started = time.perf_counter()
    flatbuffer = aeq(source, prec, req.keep_float, data)
    seconds = time.perf_counter() - started
    check_quantized(flatbuffer, prec, source, req.check)
    flatbuffer, metadata = carry(source, flatbuffer)
    if metadata:
        files = ", ".join(f["name"] for f in metadata.get("packed_files", [])) or "no files"
        note(f"metadata kept from {Path(loaded.path).name} ({files})")
        for caveat in [] if req.metadata else app_caveats(flatbuffer):
            note(caveat)
    if req.metadata:
        flatbuffer, metadata = with_metadata(flatbuffer, req.metadata)
    budget.check(flatbuffer, prec.value, req.max_size, req.allowed_ops)
    held_out = dataset(req.check_data, loaded.inputs, CHECK_SAMPLES)
    sample = check_sample(held_out, data, lambda: synthetic_data(loaded.inputs, 8))
    result = _keep(out, flatbuffer, prec, loaded, sample, req.check)
    summary = graph_summary(flatbuffer)
    return ConvertResult(
        output=str(out), precision=prec.value, source=loaded.kind.value,
        size_bytes=len(flatbuffer), gzip_bytes=gzip_size(flatbuffer), seconds=round(seconds, 2),
        float_compute_ops=summary["float_compute_ops"], check=result,
        metadata=metadata,
    )  # fmt: skip


def _calibration_unused(prec: Precision, data: Any) -> None:
    if data is not None and not PRECISIONS[prec].needs_calibration and prec in QUANTIZED:
        note(f"{prec} needs no calibration: the --calibration data serves the check only")


def _isolate(model: Any, req: ConvertRequest) -> bool:
    """Whether to run the conversion in a child process: the native steps that crash (TF's
    calibrator, the quantizers) on a model given by path, unless already in that child."""
    risky = PRECISIONS[req.precision].needs_calibration or req.use_aeq
    return isinstance(model, (str, os.PathLike)) and risky and not req.lm and not in_child()


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
    `imports` (modules or `.py` files with custom layers; need `unsafe`) and `input_shapes`.

    The result is checked on `check_data` (else the calibration data, else public-domain
    sentences through a keras-hub text model's own tokenizer, else realistic random inputs; at
    most 32 samples) against the precision's tolerance before it is kept; `check["data"]` says
    which. Calibrated and LiteRT-quantizer conversions of a model given by path run in a child
    process, so a native crash there is a `ConversionError` naming the step.

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
    """`convert` for a ready request."""
    out = check_output(output, req.overwrite)
    if _isolate(model, req):
        return convert_in_child(model, out, req)
    step("loading the model")
    loaded: LoadedModel = load(
        model, unsafe=req.unsafe, imports=req.imports, input_shapes=req.input_shapes
    )
    if loaded.path is not None and Path(loaded.path).resolve() == out.resolve():
        raise InputError("-o is MODEL itself: write the converted model to another path")
    if loaded.kind is SourceKind.TFLITE:
        if not req.use_aeq:
            raise InputError(
                f"{model} is already a .tflite file: quantize it with --quantizer aeq (the LiteRT "
                "quantizer works on float .tflite files), or convert its source model"
            )
        shaped = [flag for flag, given in (("--seq-len", req.seq_len is not None),
                  ("--input-shape", req.input_shapes is not None),
                  ("--dynamic-length", req.dynamic_length)) if given]  # fmt: skip
        if shaped:
            raise InputError(
                f"{', '.join(shaped)}: a .tflite keeps the input shapes it was converted with; "
                "set them when converting its source model"
            )
        return _requantize(loaded, out, req)
    if req.lm:
        return convert_lm(
            loaded, out, req.precision, req.max_length, req.check, req.use_aeq, req.keep_float
        )
    prec, spec = req.precision, PRECISIONS[req.precision]
    seq_len = req.seq_len
    free = any(d is None for s in loaded.inputs for d in s.shape[1:])
    if seq_len is not None and not free:
        note(f"the model has no free (sequence) dimension: --seq-len {seq_len} changes nothing")
        seq_len = None  # the result records no length it did not set
    free_inputs = [s.name for s in loaded.inputs if None in s.shape[1:] and not req.dynamic_length]
    data = dataset(req.calibration, loaded.inputs, req.num_calibration)
    specs = loaded.inputs
    if req.dynamic_length:
        note(
            "sequence length left free (--dynamic-length): resize the inputs to each input's length"
            if free
            else "the model has no free (sequence) dimension: --dynamic-length changes nothing"
        )
    elif free and seq_len is None:
        # Free lengths follow the user's own data first, then a keras-hub model's own length.
        # (what the file takes is noted once it is written, read back from it)
        specs, fixed = specs_from_data(specs, data or dataset(req.check_data, specs, 1))
        if any(d is None for s in specs for d in s.shape[1:]):
            seq_len = keras_worlds.default_sequence_length(loaded.model)
            if seq_len is not None:
                note(f"--seq-len {seq_len}: the model's own sequence length (--seq-len changes it)")
        elif fixed:
            seq_len = next(d for s in specs if s.shape[1:] for d in s.shape[1:2])
    specs = fixed_specs(specs, seq_len)
    loaded = replace(loaded, inputs=specs)  # the backends export exactly these shapes
    if prec is Precision.INT16X8 and not req.use_aeq:
        ints = [f"{s.name} ({s.dtype})" for s in specs if not s.is_float]
        if ints:
            raise ConversionError(
                f"int16x8 cannot calibrate integer inputs {', '.join(ints)}: TF 2.21 records no "
                "range for them; use --precision int8 or dynamic"
            )
    if data is not None:
        data = dataset(data, specs, req.num_calibration)  # checked against the fixed shapes
    held_out = dataset(req.check_data, specs, CHECK_SAMPLES)
    if spec.needs_calibration and data is None:
        raise DataError(
            f"{prec} needs calibration data: pass --calibration DATA (.npz, .npy or image folder)"
        )
    _calibration_unused(prec, data)

    original = loaded  # the check runs the model the user gave, whatever is converted
    loaded = recurrent.fused(loaded, prec)  # Keras 3 LSTM/GRU at int8: their tf_keras twin

    # A Keras 3 attention model: how its masked softmax is exported (below), and whether the
    # default int8 path searches which op kinds to keep out of int8.
    attention = loaded.kind is SourceKind.KERAS3 and keras_worlds.has_masked_softmax(loaded.model)
    # A model trained through tfopt's FakeQuant (`optimize`'s qat) brings its own ranges, which
    # only the converter honours.
    qat = getattr(loaded.model, "_tfopt_fake_quant", False)
    searched = (
        attention and prec is Precision.INT8 and not req.use_aeq and not req.int8_io and not qat
    )
    # Quantized scores need a bounded mask fill; elsewhere the mask is added to the scores
    # instead of selected (XNNPACK takes ADD, not SELECT_V2): the same outputs, one XNNPACK graph
    # instead of one per attention layer. The int8 search keeps the scores float
    # (`transformer.score_chains`), so it takes the additive mask too.
    bounded = spec.needs_calibration and attention and not searched
    additive = attention and not bounded
    sensitivity = None
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="tfopt-") as work:
        masks = (
            keras_worlds.bounded_softmax_masks(MASK_MARGIN)
            if bounded
            else keras_worlds.additive_softmax_masks()
            if additive
            else nullcontext()
        )
        with masks:
            free = KEEP_FREE if req.dynamic_length else None
            step(f"exporting the {loaded.kind} model for the converter")
            prepared = backend_for(loaded.kind)(loaded, free, Path(work))
        if bounded:
            note(
                f"{prec}: masked attention scores are filled with the row's minimum - "
                f"{MASK_MARGIN:g} instead of -1e9, so one int8 scale holds them"
            )
        elif searched:
            note(
                f"{prec}: the attention mask is added to the scores, which stay float from the "
                "attention matmul through the softmax (XNNPACK runs them in float only)"
            )
        calibrated = spec.needs_calibration and not req.use_aeq and not searched
        looping = calibrated and may_loop(loaded)

        def configured(converter: Any) -> Any:
            if req.use_aeq or searched:
                PRECISIONS[Precision.FLOAT32].configure(converter, None, False)
            else:
                order = prepared.calibration_order
                feed = representative(data, order) if data else None
                spec.configure(converter, feed, req.int8_io)
            return converter

        def attempt(converter: Any) -> bytes:
            if looping:  # on the converter that will calibrate, the fallback's too
                refuse_loops(converter, prec)
            if searched:
                assert data is not None  # int8 needs calibration, checked above
                float_model = run_converter(configured(converter), Precision.FLOAT32, False, (), None)
                nonlocal sensitivity
                step("searching which op kinds int8 keeps float (LiteRT quantizer)")
                quantized, sensitivity = quantize_transformer(float_model, data)
                note(sensitivity.summary())
                return quantized
            return run_converter(configured(converter), prec, req.use_aeq, req.keep_float, data)

        try:
            flatbuffer = attempt(prepared.converter)
        except ConversionError:
            if prepared.fallback is None:
                raise
            flatbuffer = attempt(prepared.fallback())
    seconds = time.perf_counter() - started
    metadata = None
    if req.metadata:
        flatbuffer, metadata = with_metadata(flatbuffer, req.metadata)
    budget.check(flatbuffer, prec.value, req.max_size, req.allowed_ops)  # before anything is written

    check_quantized(flatbuffer, prec, None, req.check)
    own = keras_worlds.default_sequence_length(loaded.model) or FREE_LENGTH
    free_length = min(own, FREE_LENGTH) if req.dynamic_length else None
    sample = check_sample(
        held_out,
        data,
        lambda: synthetic_data(
            specs, 8, max_id=vocabulary_bound(loaded.model), free_length=free_length
        ),
        lambda: preset_sentences(original, specs),
    )
    result = _keep(out, flatbuffer, prec, original, sample, req.check)
    for line in written_input_notes(flatbuffer, free_inputs, req.seq_len, held_out or data):
        note(line)
    summary = graph_summary(flatbuffer)
    stateful = sorted(op for op in summary["ops"] if "SEQUENCE_" in op)
    if stateful:
        note(
            f"{', '.join(stateful)} keep their state in variable tensors between invocations: an "
            "app calls the interpreter's reset_all_variables() before each new sequence"
        )
    return ConvertResult(
        output=str(out),
        precision=prec.value,
        source=original.kind.value,
        size_bytes=len(flatbuffer),
        gzip_bytes=gzip_size(flatbuffer),
        seconds=round(seconds, 2),
        float_compute_ops=summary["float_compute_ops"],
        check=result,
        seq_len=seq_len,
        sensitivity=sensitivity.to_dict() if sensitivity else None,
        metadata=metadata,
    )
