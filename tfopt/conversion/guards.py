"""What stands between the converter and the user's process: its native output kept off stderr,
its errors named by op, and the crashes it or LiteRT would cause refused in one line.

TF 2.21's calibrator segfaults on WHILE loops (an LSTM/GRU), its quantizer aborts on some graphs,
and LiteRT aborts loading some int16x8 files: none of that may take tfopt down.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from converters.aeq import Session
from tfopt.conversion.isolated import step
from tfopt.core import CALIBRATED, LoadedModel, Precision, SourceKind
from tfopt.data import Dataset
from tfopt.errors import ConversionError, ModelLoadError, option
from tfopt.inspection import graph_summary
from tfopt.quiet import is_showing
from tfopt.runtime.feeding import make_interpreter

_OP_PATTERNS = (
    re.compile(r"'(?:tf|tfl)\.(\w+)' op"),
    re.compile(r"[Oo]p(?:eration)?[: ]+'?(\w+)'? (?:is not supported|not yet supported)"),
    re.compile(r"not yet supported for op: '?(\w+)'?"),
)


def conversion_error(precision: Precision, exc: BaseException) -> ConversionError:
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
        Precision.INT8: f"; try {option('precision')} dynamic or float16",
        Precision.INT16X8: f"; try {option('precision')} int8 or dynamic",
        Precision.DYNAMIC: f"; try {option('precision')} float16 or float32",
        Precision.FLOAT16: f"; try {option('precision')} float32",
    }.get(precision, "")
    at_fault = f" (ops at fault: {', '.join(ops)})" if ops else ""
    return ConversionError(f"cannot convert to {precision}{at_fault}: {reason}{hint}")


def probe(path: Path, prec: Precision) -> None:
    """Load and run the new file once in a child process: LiteRT aborts the process (instead
    of raising) on some graphs the converter writes, e.g. int16x8 ops without int16 kernels."""
    from tfopt.loading import probe_tflite

    try:
        probe_tflite(path)
    except ModelLoadError as exc:
        crash = str(exc).rsplit("(", 1)[-1].rstrip(")") if "crashed" in str(exc) else str(exc)
        hint = {
            Precision.INT16X8: f"; an op has no int16x8 kernel: try {option('precision')} int8 or dynamic",
            Precision.INT8: f"; try {option('precision')} dynamic or float16",
        }.get(prec, "")
        raise ConversionError(
            f"the {prec} model crashes LiteRT when it runs ({crash}){hint}"
        ) from exc


# Ops that crash TF 2.21's calibrator (a segfault that would take the whole process down).
_CALIBRATOR_CRASHES = {"WHILE": "an LSTM/GRU/RNN loop"}


def may_loop(loaded: LoadedModel) -> bool:
    """True if the graph may hold a loop: a recurrent Keras layer, or an opaque SavedModel."""
    if loaded.kind is SourceKind.SAVED_MODEL:
        return True
    model = loaded.model
    flatten = getattr(model, "_flatten_layers", None)
    layers = list(flatten(include_self=False)) if callable(flatten) else []
    names = {c.__name__ for layer in layers for c in type(layer).__mro__}
    return bool(names & {"RNN", "Bidirectional", "LSTM", "GRU", "SimpleRNN", "ConvLSTM"})


def refuse_loops(converter: Any, prec: Precision, debug: bool = False) -> None:
    """Convert to float first and refuse calibration of ops that crash the calibrator.

    The same converter is configured for `prec` afterwards. A converter that cannot even reach
    float raises its own error (`conversion_error`), never passes: calibrating a graph nobody
    looked at is how the calibrator's segfault reached users.
    """
    step(f"converting to float32 to look for loops before calibrating {prec}")
    try:
        with quiet_stderr(debug), _converts_again(converter):
            ops = graph_summary(converter.convert())["ops"]
    except Exception as exc:  # noqa: BLE001 - ConverterError and friends
        raise conversion_error(prec, exc) from exc
    bad = sorted(op for op in ops if op in _CALIBRATOR_CRASHES)
    if bad:
        what = ", ".join(f"{op} ({_CALIBRATOR_CRASHES[op]})" for op in bad)
        raise ConversionError(
            f"cannot convert to {prec} (ops at fault: {', '.join(bad)}): TF 2.21's calibrator "
            f"crashes on {what}; use {option('precision')} dynamic or float16"
        )


@contextlib.contextmanager
def _converts_again(converter: Any) -> Iterator[None]:
    """The converter as it was before a conversion inside. TF 2.21's concrete-function converter
    converts only once: the first `convert()` swaps in a SavedModel it then deletes, and a second
    fails with "'NoneType' object has no attribute 'node'", hiding the real outcome."""
    state = dict(vars(converter))
    try:
        yield
    finally:
        vars(converter).clear()
        vars(converter).update(state)


@contextlib.contextmanager
def quiet_stderr(debug: bool = False) -> Iterator[None]:
    """The MLIR converter prints pages of locations to fd 2; its exception carries the error.

    Kept only where asked (`debug`: `ConvertRequest.debug`, or a command run with `--debug`).
    """
    if debug or is_showing():
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


def run_converter(
    converter: Any,
    prec: Precision,
    use_aeq: bool,
    keep_float: tuple[str, ...],
    data: Dataset | None,
    debug: bool = False,
) -> bytes:
    """Convert (errors name the ops at fault), then quantize with the LiteRT quantizer if asked."""
    calibrating = prec in CALIBRATED and not use_aeq
    step(f"converting to {prec}" + (" (TF's converter and calibrator)" if calibrating else ""))
    try:
        with quiet_stderr(debug):
            flatbuffer = converter.convert()
    except Exception as exc:  # noqa: BLE001 - ConverterError and friends
        raise conversion_error(prec, exc) from exc
    return aeq(flatbuffer, prec, keep_float, data) if use_aeq else flatbuffer


def aeq(
    float_model: bytes, prec: Precision, keep_float: tuple[str, ...], data: Dataset | None
) -> bytes:
    """Quantize a float flatbuffer with the LiteRT quantizer; calibrate static schemes on `data`.
    (One scheme: `aeq_session` quantizes many from one calibration.)"""
    step(f"quantizing to {prec} with the LiteRT quantizer")
    return aeq_session(float_model, prec, data).quantize(prec, keep_float)


def aeq_session(float_model: bytes, prec: Precision, data: Dataset | None) -> Session:
    """The LiteRT quantizer's session on a float flatbuffer, calibrating on `data` (by the
    model's signature) for the calibrated `prec`; loops it cannot calibrate are refused."""
    if prec not in CALIBRATED:
        return Session(float_model)
    loops = sorted(op for op in graph_summary(float_model)["ops"] if op in _CALIBRATOR_CRASHES)
    if loops:  # its calibration runs the graph op by op and finds no data in loop bodies
        what = ", ".join(f"{op} ({_CALIBRATOR_CRASHES[op]})" for op in loops)
        raise ConversionError(
            f"cannot quantize to {prec} with the LiteRT quantizer (ops at fault: "
            f"{', '.join(loops)}): it cannot calibrate {what}; use {option('precision')} dynamic or w8"
        )
    if data is None:
        return Session(float_model)
    with tempfile.NamedTemporaryFile(suffix=".tflite") as f:
        f.write(float_model)
        f.flush()
        key = next(iter(make_interpreter(f.name).get_signature_list()), None)
    if key is None:
        raise ConversionError(
            f"the LiteRT quantizer calibrates {prec} through a signature, and this .tflite has "
            "none (dynamic, w8 and w4 need no calibration; or convert the source model)"
        )
    return Session(float_model, {key: [data.sample(i) for i in range(len(data))]})
