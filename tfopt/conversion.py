"""Convert stage: load -> backend -> precision settings -> .tflite, checked before it is kept.

The converted file is written to a temporary path, checked numerically against its source with
the precision's tolerance, and only then renamed into place: a failed conversion or a failed
check leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from converters import PRECISIONS, Precision, backend_for
from tfopt import keras_worlds
from tfopt.data import Dataset, load_data
from tfopt.errors import (
    ConversionError,
    DataError,
    InputError,
    ModelLoadError,
    ValidationError,
    note,
)
from tfopt.fsutil import atomic_path, check_output
from tfopt.inspection import graph_summary, gzip_size
from tfopt.loading import InputShapes, LoadedModel, SourceKind, TensorSpec, load
from tfopt.runtime.feeding import make_interpreter, synthetic_input
from tfopt.runtime.lm import LmRunner
from tfopt.validate import compare_outputs, run_reference, run_tflite, with_thresholds

CHECK_SAMPLES = 32


@dataclass(frozen=True)
class ConvertResult:
    """What was written and the evidence that it still computes what the source computes."""

    output: str
    precision: str
    source: str
    size_bytes: int
    gzip_bytes: int
    seconds: float
    float_compute_ops: dict[str, int]
    check: dict[str, Any] | None
    seq_len: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def fixed_specs(inputs: tuple[TensorSpec, ...], seq_len: int | None) -> tuple[TensorSpec, ...]:
    """Input specs with free non-batch dimensions set to `seq_len` (when given)."""
    if seq_len is None:
        return inputs
    return tuple(
        TensorSpec(
            s.name, (s.shape[0], *(seq_len if d is None else d for d in s.shape[1:])), s.dtype
        )
        for s in inputs
    )


def vocabulary_bound(model: Any) -> int | None:
    """The smallest embedding table of a Keras model: synthetic token ids must stay below it."""
    flatten = getattr(model, "_flatten_layers", None)
    if not callable(flatten):
        return None
    sizes = [
        getattr(layer, "input_dim", None) or getattr(layer, "vocabulary_size", None)
        for layer in flatten(include_self=False)
        if "Embedding" in type(layer).__name__
    ]
    sizes = [int(v) for v in sizes if isinstance(v, int) and v > 0]
    return min(sizes) if sizes else None


def synthetic_data(
    inputs: tuple[TensorSpec, ...], n: int, seed: int = 0, max_id: int | None = None
) -> Dataset:
    """`n` realistic random samples (the runtime's rule: floats in [0,1), small ids for ints;
    ids below `max_id` when the model's embedding table is smaller than that)."""
    rng = np.random.default_rng(seed)
    x: dict[str, list[np.ndarray]] = {s.name: [] for s in inputs}
    for _ in range(n):
        for s in inputs:
            if any(d is None for d in s.shape[1:]):
                raise ConversionError(f"input '{s.name}' has a free dimension; pass --seq-len N")
            detail = {
                "shape": [1, *s.shape[1:]],
                "dtype": np.dtype(s.dtype),
                "quantization": (0, 0),
            }
            value = synthetic_input(s.name, detail, rng)
            if max_id is not None and np.issubdtype(value.dtype, np.integer):
                value = value % max_id
            x[s.name].append(value)
    return Dataset({k: np.concatenate(v) for k, v in x.items()})


def _dataset(
    source: str | os.PathLike[str] | Dataset | None, specs: tuple[TensorSpec, ...], limit: int
) -> Dataset | None:
    if source is None or isinstance(source, Dataset):
        return source.take(limit) if source is not None else None
    return load_data(source, specs, limit=limit)


def _representative(data: Dataset, order: list[str] | None) -> Any:
    from tqdm import tqdm

    def gen() -> Iterator[Any]:
        for i in tqdm(
            range(len(data)), desc="calibrating", unit="sample", leave=False, disable=None
        ):
            sample = data.sample(i)
            yield [sample[n] for n in order] if order is not None else sample

    return gen


_OP_PATTERNS = (
    re.compile(r"'(?:tf|tfl)\.(\w+)' op"),
    re.compile(r"[Oo]p(?:eration)?[: ]+'?(\w+)'? (?:is not supported|not yet supported)"),
    re.compile(r"not yet supported for op: '?(\w+)'?"),
)


def _conversion_error(precision: Precision, exc: BaseException) -> ConversionError:
    """One line naming the ops at fault and what to try."""
    text = str(exc)
    ops = sorted({m for p in _OP_PATTERNS for m in p.findall(text)})
    if ops and "neither a custom op nor a flex op" in text:
        return ConversionError(
            f"cannot convert to {precision}: TensorFlow ops with no TFLite builtin kernel: "
            f"{', '.join(ops)}; replace them in the model (ai-edge-litert ships no Flex delegate)"
        )
    errors = [ln.rsplit("error: ", 1)[-1].strip() for ln in text.splitlines() if "error" in ln]
    reason = (errors or text.strip().splitlines() or [type(exc).__name__])[0][:240]
    hint = {
        Precision.INT8: "; try --precision dynamic or float16",
        Precision.INT16X8: "; try --precision int8 or dynamic",
        Precision.DYNAMIC: "; try --precision float16 or float32",
        Precision.FLOAT16: "; try --precision float32",
    }.get(precision, "")
    at_fault = f" (ops at fault: {', '.join(ops)})" if ops else ""
    return ConversionError(f"cannot convert to {precision}{at_fault}: {reason}{hint}")


def convert(
    model: str | os.PathLike[str] | Any,
    output: str | os.PathLike[str],
    precision: str = "float32",
    calibration: str | os.PathLike[str] | Dataset | None = None,
    num_calibration: int = 100,
    int8_io: bool = False,
    seq_len: int | None = None,
    overwrite: bool = False,
    unsafe: bool = False,
    check: bool = True,
    check_data: str | os.PathLike[str] | Dataset | None = None,
    lm: bool = False,
    max_length: int = 128,
    quantizer: str = "converter",
    keep_float: tuple[str, ...] = (),
    imports: tuple[str, ...] = (),
    input_shapes: InputShapes | None = None,
) -> ConvertResult:
    """Convert a Keras model, model file or SavedModel to a `.tflite` file at `precision`.

    The result is checked on `check_data` (else the calibration data, else realistic random
    inputs; at most 32 samples) against the precision's tolerance before it is kept.
    `imports` are modules or `.py` files with custom layers (they need `unsafe`);
    `input_shapes` fixes inputs a model does not record (see `loading.parse_input_shapes`).
    A keras-hub model's free sequence dimension defaults to its own sequence length.

    Raises:
        InputError, ModelLoadError, DataError: bad model or data.
        ConversionError: the precision cannot be reached; names the ops at fault.
        ValidationError: the converted model misses the precision's tolerance.
        OutputError: `output` exists without `overwrite`, or cannot be written.
    """
    try:
        prec = Precision(precision)
    except ValueError:
        allowed = ", ".join(p.value for p in Precision)
        raise InputError(f"unknown precision '{precision}' (choose from {allowed})") from None
    if num_calibration < 1:
        raise InputError("num_calibration must be at least 1")
    spec = PRECISIONS[prec]
    out = check_output(output, overwrite)
    loaded: LoadedModel = load(model, unsafe=unsafe, imports=imports, input_shapes=input_shapes)
    if loaded.kind is SourceKind.TFLITE:
        raise InputError(f"{model} is already a .tflite file; convert its source model instead")
    if quantizer not in ("converter", "aeq"):
        raise InputError(f"unknown quantizer '{quantizer}' (choose converter or aeq)")
    use_aeq = quantizer == "aeq"
    if use_aeq and prec in (Precision.FLOAT32, Precision.FLOAT16):
        raise InputError(
            "--quantizer aeq quantizes: choose dynamic, int8, int16x8, w8, w4 or w4b32"
        )
    if not use_aeq and prec in (Precision.W8, Precision.W4, Precision.W4B32):
        raise InputError(f"{prec} (weight-only) needs --quantizer aeq")
    if keep_float and not use_aeq:
        raise InputError("--keep-float needs --quantizer aeq")
    if lm:
        return _convert_lm(loaded, out, prec, max_length, check, use_aeq, keep_float)
    if seq_len is None and any(d is None for s in loaded.inputs for d in s.shape[1:]):
        seq_len = keras_worlds.default_sequence_length(loaded.model)
        if seq_len is not None:
            note(f"--seq-len {seq_len}: the model's own sequence length (pass --seq-len to change)")
    elif seq_len is not None and seq_len < 1:
        raise InputError("--seq-len must be at least 1")
    specs = fixed_specs(loaded.inputs, seq_len)
    if prec is Precision.INT16X8 and not use_aeq:
        ints = [f"{s.name} ({s.dtype})" for s in specs if not s.is_float]
        if ints:
            raise ConversionError(
                f"int16x8 cannot calibrate integer inputs {', '.join(ints)}: TF 2.21 records no "
                "range for them; use --precision int8 or dynamic"
            )
    data = _dataset(calibration, specs, num_calibration)
    held_out = _dataset(check_data, specs, CHECK_SAMPLES)
    if spec.needs_calibration and data is None:
        raise DataError(
            f"{prec} needs calibration data: pass --calibration DATA (.npz, .npy or image folder)"
        )

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="tfopt-") as work:
        prepared = backend_for(loaded.kind)(loaded, seq_len, Path(work))
        calibrated = spec.needs_calibration and not use_aeq
        if calibrated and prepared.fallback is not None:
            # TF 2.21's quantizer aborts the process on the shape plumbing (SHAPE, FILL, ...)
            # that a free batch size leaves in a tf_keras graph: calibrate the static batch-1
            # graph instead, as Keras 3 models are.
            prepared = replace(prepared, converter=prepared.fallback(), fallback=None)
        if calibrated and _may_loop(loaded):
            _refuse_loops(prepared.converter, prec)

        def configured(converter: Any) -> Any:
            if use_aeq:
                PRECISIONS[Precision.FLOAT32].configure(converter, None, False)
            else:
                order = prepared.calibration_order
                representative = _representative(data, order) if data else None
                spec.configure(converter, representative, int8_io)
            return converter

        try:
            flatbuffer = _run(configured(prepared.converter), prec, use_aeq, keep_float, data)
        except ConversionError:
            if prepared.fallback is None:
                raise
            flatbuffer = _run(configured(prepared.fallback()), prec, use_aeq, keep_float, data)
    seconds = time.perf_counter() - started

    with atomic_path(out) as tmp:
        tmp.write_bytes(flatbuffer)
        result = None
        if check:
            _probe(tmp, prec)
            checked_on = (
                held_out or data or synthetic_data(specs, 8, max_id=vocabulary_bound(loaded.model))
            ).take(CHECK_SAMPLES)
            diff = compare_outputs(
                run_reference(loaded, checked_on), run_tflite(str(tmp), checked_on)
            )
            verdict = with_thresholds(diff, spec.min_sqnr_db, spec.min_cosine)
            if not verdict.passed:
                raise ValidationError(
                    f"{prec} model fails its numeric check: {verdict.failures[0]} "
                    "(pass --no-check to keep it anyway)"
                )
            result = verdict.to_dict()
    return ConvertResult(
        output=str(out),
        precision=prec.value,
        source=loaded.kind.value,
        size_bytes=len(flatbuffer),
        gzip_bytes=gzip_size(flatbuffer),
        seconds=round(seconds, 2),
        float_compute_ops=graph_summary(flatbuffer)["float_compute_ops"],
        check=result,
        seq_len=seq_len,
    )


def _convert_lm(
    loaded: LoadedModel,
    out: Path,
    prec: Precision,
    max_length: int,
    check: bool,
    use_aeq: bool = False,
    keep_float: tuple[str, ...] = (),
) -> ConvertResult:
    """A causal LM with prefill/decode signatures; checked on the prefill logits of a prompt."""
    from converters.lm import lm_converter

    if prec in (Precision.INT8, Precision.INT16X8):
        raise ConversionError(
            f"--lm supports float32, float16, dynamic (and w8/w4 with --quantizer aeq); {prec} needs "
            "per-signature calibration (use --precision dynamic)"
        )
    if loaded.kind is not SourceKind.KERAS3:
        raise ConversionError("--lm needs a keras-hub CausalLM (a Keras 3 model)")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="tfopt-") as work:
        converter = lm_converter(loaded.model, Path(work), max_length)
        PRECISIONS[Precision.FLOAT32 if use_aeq else prec].configure(converter, None, False)
        flatbuffer = _run(converter, prec, use_aeq, keep_float, None)
    seconds = time.perf_counter() - started
    with atomic_path(out) as tmp:
        tmp.write_bytes(flatbuffer)
        result = _check_lm(loaded.model, str(tmp), max_length, prec) if check else None
    return ConvertResult(
        output=str(out),
        precision=prec.value,
        source="keras3-lm" + ("+aeq" if use_aeq else ""),
        size_bytes=len(flatbuffer),
        gzip_bytes=gzip_size(flatbuffer),
        seconds=round(seconds, 2),
        float_compute_ops={},
        check=result,
    )


def _check_lm(model: Any, path: str, max_length: int, prec: Precision) -> dict[str, Any]:
    """Prefill logits of a realistic prompt, .tflite against Keras, within the tolerance."""
    from converters.lm import cache_spec
    from tfopt import keras_worlds

    tf = keras_worlds.tf()
    runner = LmRunner(path)
    prompt_len = min(16, max_length - 1)
    tokens = np.zeros((1, max_length), np.int32)
    tokens[0, :prompt_len] = np.random.default_rng(0).integers(
        0, min(runner.vocab, 100), prompt_len
    )
    shape, dtype = cache_spec(model, max_length)
    ref, _, _ = model.call_with_cache(tf.constant(tokens), tf.zeros(shape, dtype), 0)
    cand = runner._prefill(token_ids=tokens)["logits"]  # noqa: SLF001
    diff = compare_outputs(
        {"logits": np.asarray(ref)[:, :prompt_len]}, {"logits": cand[:, :prompt_len]}
    )
    spec = PRECISIONS[prec]
    verdict = with_thresholds(diff, spec.min_sqnr_db, spec.min_cosine)
    if not verdict.passed:
        raise ValidationError(
            f"{prec} LM fails its numeric check: {verdict.failures[0]} (pass --no-check to keep it)"
        )
    return verdict.to_dict()


def _probe(path: Path, prec: Precision) -> None:
    """Load and run the new file once in a child process: LiteRT aborts the process (instead
    of raising) on some graphs the converter writes, e.g. int16x8 ops without int16 kernels."""
    from tfopt.loading import probe_tflite

    try:
        probe_tflite(path)
    except ModelLoadError as exc:
        crash = str(exc).rsplit("(", 1)[-1].rstrip(")") if "crashed" in str(exc) else str(exc)
        hint = {
            Precision.INT16X8: "; an op has no int16x8 kernel: try --precision int8 or dynamic",
            Precision.INT8: "; try --precision dynamic or float16",
        }.get(prec, "")
        raise ConversionError(
            f"the {prec} model crashes LiteRT when it runs ({crash}){hint}"
        ) from exc


# Ops that crash TF 2.21's calibrator (a segfault that would take the whole process down).
_CALIBRATOR_CRASHES = {"WHILE": "an LSTM/GRU/RNN loop"}


def _may_loop(loaded: LoadedModel) -> bool:
    """True if the graph may hold a loop: a recurrent Keras layer, or an opaque SavedModel."""
    if loaded.kind is SourceKind.SAVED_MODEL:
        return True
    model = loaded.model
    flatten = getattr(model, "_flatten_layers", None)
    layers = list(flatten(include_self=False)) if callable(flatten) else []
    names = {c.__name__ for layer in layers for c in type(layer).__mro__}
    return bool(names & {"RNN", "Bidirectional", "LSTM", "GRU", "SimpleRNN", "ConvLSTM"})


def _refuse_loops(converter: Any, prec: Precision) -> None:
    """Convert to float first and refuse calibration of ops that crash the calibrator.

    The same converter is configured for `prec` afterwards; a float failure is left to the real
    conversion to report.
    """
    try:
        with _quiet_stderr():
            ops = graph_summary(converter.convert())["ops"]
    except Exception:  # noqa: BLE001 - the real conversion names the problem
        return
    bad = sorted(op for op in ops if op in _CALIBRATOR_CRASHES)
    if bad:
        what = ", ".join(f"{op} ({_CALIBRATOR_CRASHES[op]})" for op in bad)
        raise ConversionError(
            f"cannot convert to {prec} (ops at fault: {', '.join(bad)}): TF 2.21's calibrator "
            f"crashes on {what}; use --precision dynamic or float16"
        )


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """The MLIR converter prints pages of locations to fd 2; its exception carries the error.

    Kept only where asked (TFOPT_DEBUG=1, set by `--debug`).
    """
    if os.environ.get("TFOPT_DEBUG"):
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def _run(
    converter: Any,
    prec: Precision,
    use_aeq: bool,
    keep_float: tuple[str, ...],
    data: Dataset | None,
) -> bytes:
    """Convert (errors name the ops at fault), then quantize with the LiteRT quantizer if asked."""
    try:
        with _quiet_stderr():
            flatbuffer = converter.convert()
    except Exception as exc:  # noqa: BLE001 - ConverterError and friends
        raise _conversion_error(prec, exc) from exc
    return _aeq(flatbuffer, prec, keep_float, data) if use_aeq else flatbuffer


def _aeq(
    float_model: bytes, prec: Precision, keep_float: tuple[str, ...], data: Dataset | None
) -> bytes:
    """Quantize a float flatbuffer with the LiteRT quantizer; calibrate static schemes on `data`."""
    from converters.aeq import quantize

    calibration = None
    if data is not None:
        with tempfile.NamedTemporaryFile(suffix=".tflite") as f:
            f.write(float_model)
            f.flush()
            key = next(iter(make_interpreter(f.name).get_signature_list()))
        calibration = {key: [data.sample(i) for i in range(len(data))]}
    return quantize(float_model, prec, keep_float, calibration)
