"""Keep a command's own output readable: TensorFlow's start-up chatter only when debugging.

TensorFlow, XLA and LiteRT log from C++ straight to file descriptor 2 (absl's "All log messages
before absl::InitializeLog()", "Could not find cuda drivers", "failed call to cuInit", oneDNN and
CPU-feature notices, "Created TensorFlow Lite XNNPACK delegate"); `TF_CPP_MIN_LOG_LEVEL` silences
only part of it. So, for the length of a command, fd 2 goes through a small filter process that
drops those log lines and passes everything else on as it comes. A process, not a thread: if the
command dies in native code, the filter still forwards what was written before the crash.

Python-side noise is scoped the same way: warnings from known third-party packages and the
`tensorflow`/`absl` loggers below ERROR are silenced while the command runs, nothing more; a
chatty library call (the LiteRT quantizer's tqdm bars and size report) runs inside `silenced`.
"""

from __future__ import annotations

import contextlib
import contextvars
import io
import logging
import os
import subprocess
import sys
import warnings
from collections.abc import Iterator

# Lines C++ logging writes: absl/glog ("I0000 00:00:1795329797.138262   13391 file.cc:31] ..."),
# TF's older format ("2026-01-02 03:04:05.678901: I tensorflow/...:12] ..."), plus fixed notices.
# Fatal ("F...") lines are never dropped.
NOISE = (
    rb"^(?:[IWE]\d{4} \d\d:\d\d:\d+\.\d+ +\d+ [^\]\n]+\] "
    rb"|\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: [IWE] [^\]\n]+\] "
    rb"|WARNING: All log messages before absl::InitializeLog\(\) is called"
    rb"|INFO: Created TensorFlow Lite XNNPACK delegate for CPU"
    rb"|To enable the following instructions: .* rebuild TensorFlow"
    rb"|oneDNN custom operations are on)"
)

# The filter process: line by line from stdin to stdout; a partial line is held back only while
# it could still become a log line, so progress bars ("\r...") pass at once.
_FILTER = rf"""
import os, re
noise = re.compile({NOISE!r})
held = b""
def send(data):
    while data:
        data = data[os.write(1, data):]
while True:
    chunk = os.read(0, 65536)
    if not chunk:
        break
    held += chunk
    while True:
        ends = [i for i in (held.find(b"\n"), held.find(b"\r")) if i >= 0]
        if not ends:
            break
        cut = min(ends) + 1
        line, held = held[:cut], held[cut:]
        if not noise.match(line):
            send(line)
    if held and held[:1] not in b"IWEFT0123456789":
        send(held)
        held = b""
if held and not noise.match(held):
    send(held)
"""

NOISY_MODULES = (
    r"(tensorflow|tf_keras|keras|keras_hub|keras_nlp|tensorflow_model_optimization|ai_edge_litert"
    r"|ai_edge_quantizer|absl|google\.protobuf|h5py|flatbuffers|jax|ml_dtypes|tensorflow_text)"
    r"(\.|$)"
)
NOISY_LOGGERS = ("tensorflow", "absl", "h5py")
# Whether the running command shows everything (`tfopt --debug`): set by `quiet(debug)` or
# `showing(debug)` for the calls made inside them, never through the environment.
_SHOWING = contextvars.ContextVar("tfopt_showing", default=False)


def is_showing() -> bool:
    """Whether the running command shows everything (`tfopt --debug`, `showing(True)`)."""
    return _SHOWING.get()


@contextlib.contextmanager
def showing(debug: bool) -> Iterator[None]:
    """Within this block, `silenced` lets third-party output through when `debug`."""
    token = _SHOWING.set(debug)
    try:
        yield
    finally:
        _SHOWING.reset(token)


@contextlib.contextmanager
def quiet(debug: bool) -> Iterator[None]:
    """Run a command with third-party noise filtered out (everything shown when `debug`)."""
    if debug:
        with showing(True):
            yield
        return
    with _python_quiet(), _native_filter():
        yield


@contextlib.contextmanager
def silenced() -> Iterator[None]:
    """Drop what a third-party call prints from Python (print, tqdm bars on sys.stderr) unless
    the command shows everything (`showing`, `tfopt --debug`). Its exceptions still propagate;
    fd-level output is `quiet`'s."""
    if _SHOWING.get():
        yield
        return
    sink = io.StringIO()
    with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        yield


@contextlib.contextmanager
def _python_quiet() -> Iterator[None]:
    saved_env = os.environ.get("TF_CPP_MIN_LOG_LEVEL")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # read when TensorFlow loads
    loggers = [logging.getLogger(name) for name in NOISY_LOGGERS]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", module=NOISY_MODULES)
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)
        if saved_env is None and "tensorflow" not in sys.modules:
            os.environ.pop("TF_CPP_MIN_LOG_LEVEL", None)


def _stderr_is_fd2() -> bool:
    """False in-process under click's CliRunner (sys.stderr is a buffer there)."""
    try:
        return sys.stderr.fileno() == 2
    except (AttributeError, OSError, ValueError):
        return False


@contextlib.contextmanager
def _native_filter() -> Iterator[None]:
    if not _stderr_is_fd2():
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        proc = subprocess.Popen(
            [sys.executable, "-S", "-c", _FILTER], stdin=subprocess.PIPE, stdout=saved
        )
    except OSError:
        os.close(saved)
        yield
        return
    assert proc.stdin is not None
    os.dup2(proc.stdin.fileno(), 2)
    proc.stdin.close()
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)  # the filter sees end-of-file once no one else holds the pipe
        os.close(saved)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:  # a child that inherited fd 2 still holds it
            proc.kill()
            proc.wait()
