"""A conversion in a child process: a native crash becomes one line naming the step.

TF's calibrator segfaults on some graphs (loops it cannot fuse), its quantizer aborts on others,
and either may die under memory pressure. Run in-process, that kills tfopt itself: exit 139 and no
message. Here the conversion runs in a fresh Python (`python -m tfopt.conversion.isolated`): the
child records the step it is in (`step`), returns its result, notes and typed errors as JSON, and
a death by signal becomes `ConversionError` naming the signal and the step.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import traceback
from dataclasses import asdict, fields, replace
from pathlib import Path
from typing import Any

from tfopt.conversion.request import ConvertRequest
from tfopt.conversion.result import ConvertResult
from tfopt.data import Dataset
from tfopt.errors import ConversionError, TfoptError, first_line, note, option
from tfopt.quiet import is_showing

_STEP_FILE = "TFOPT_STEP_FILE"  # set in the child only: where it records its step
# What the child runs (`-c`, not `-m`: the package imports this module first, which `-m` warns of).
_CHILD = "import sys; from tfopt.conversion.isolated import main; main(sys.argv[1])"
_PARENT = "TFOPT_PARENT_PID"  # the child dies with its parent (a killed tfopt leaves no orphan)


def step(what: str) -> None:
    """Record the step the conversion is in (read by the parent if the child dies)."""
    path = os.environ.get(_STEP_FILE)
    if path:
        Path(path).write_text(what)


def in_child() -> bool:
    return _STEP_FILE in os.environ


def _portable(value: Any, work: Path, name: str) -> Any:
    """A request field as JSON: in-memory datasets go to an .npz in `work`."""
    if isinstance(value, Dataset):
        path = work / f"{name}.npz"
        import numpy as np

        np.savez(path, **value.x)
        return str(path)
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if hasattr(value, "value") and not isinstance(value, (str, int, float)):
        return value.value  # an enum
    return value


def _request_doc(req: ConvertRequest, work: Path) -> dict[str, Any]:
    doc: dict[str, Any] = {}
    for f in fields(req):
        value = getattr(req, f.name)
        if f.name == "metadata" and value is not None:
            value = {k: os.fspath(v) if isinstance(v, os.PathLike) else v
                     for k, v in asdict(value).items()}  # fmt: skip
        doc[f.name] = _portable(value, work, f.name)
    return doc


def _request(doc: dict[str, Any], work: Path) -> ConvertRequest:
    for key in ("calibration", "check_data"):
        if doc.get(key) == str(work / f"{key}.npz"):  # the caller's in-memory Dataset, as given
            import numpy as np

            with np.load(doc[key], allow_pickle=False) as z:
                doc[key] = Dataset({k: z[k] for k in z.files})
    shapes = doc.get("input_shapes")
    if isinstance(shapes, list):
        doc["input_shapes"] = tuple(shapes)
    elif isinstance(shapes, dict):
        doc["input_shapes"] = {k: tuple(v) for k, v in shapes.items()}
    for key in ("keep_float", "imports"):
        doc[key] = tuple(doc.get(key) or ())
    if isinstance(doc.get("allowed_ops"), list):
        doc["allowed_ops"] = tuple(doc["allowed_ops"])
    return ConvertRequest(**doc)


def convert_in_child(
    model: str | os.PathLike[str], output: str | os.PathLike[str], req: ConvertRequest
) -> ConvertResult:
    """`convert_request` in a child process; the same result, notes and typed errors."""
    # `req.debug` (or a command run with --debug, `quiet.showing`) travels in the job
    debug = req.debug or is_showing()
    with tempfile.TemporaryDirectory(prefix="tfopt-child-") as tmp:
        work = Path(tmp)
        job = {"model": os.fspath(model), "output": os.fspath(output),
               "request": _request_doc(replace(req, debug=debug), work)}  # fmt: skip
        (work / "job.json").write_text(json.dumps(job))
        step_file, log = work / "step", work / "stderr.log"
        # The caller's import path, not the current folder first (`-P`): the same tfopt, Keras
        # and user modules as in this process.
        path = os.pathsep.join(p for p in sys.path if p)
        env = dict(os.environ, **{_STEP_FILE: str(step_file), "PYTHONPATH": path,
                                  _PARENT: str(os.getpid())})  # fmt: skip
        with open(log, "wb") as sink:
            target = None if debug else sink
            proc = subprocess.Popen(
                [sys.executable, "-P", "-c", _CHILD, str(work)],
                env=env, stdout=target, stderr=target,
            )  # fmt: skip
            try:
                returncode = proc.wait()
            except BaseException:  # Ctrl-C or SIGTERM here: the child goes too
                proc.kill()
                proc.wait()
                _drop_partial(Path(output))
                raise
        answer = work / "answer.json"
        if not answer.exists():
            _drop_partial(Path(output))
            raise _death(returncode, step_file, log)
        doc = json.loads(answer.read_text())
    for line in doc.get("notes", []):
        note(line)
    if "error" in doc:
        raise _error_class(doc["error"]["type"])(doc["error"]["message"])
    return ConvertResult(**doc["result"])


def _error_class(name: str) -> type[TfoptError]:
    """The tfopt error class of that name (any subclass, wherever defined); ConversionError for
    an error that was not tfopt's own."""
    found, todo = {}, [TfoptError]
    while todo:
        cls = todo.pop()
        found[cls.__name__] = cls
        todo.extend(cls.__subclasses__())
    return found.get(name, ConversionError)


def _drop_partial(out: Path) -> None:
    """What a dead child leaves of its atomic write (`fsutil.atomic_path`'s `.NAME.*.part`)."""
    for part in out.parent.glob(f".{out.name}.*.part"):
        part.unlink(missing_ok=True)


def _death(returncode: int, step_file: Path, log: Path) -> ConversionError:
    where = step_file.read_text() if step_file.exists() else "starting the conversion"
    if returncode < 0:
        try:
            how = f"crashed ({signal.Signals(-returncode).name})"
        except ValueError:
            how = f"died of signal {-returncode}"
    else:
        how = f"exited with code {returncode} and no result"
    said = _last_native_line(log)
    return ConversionError(
        f"the conversion {how} while {where}{f': {said}' if said else ''}; tfopt stopped it "
        f"there and wrote nothing ({option('debug')} shows the native output)"
    )


def _last_native_line(log: Path) -> str:
    """The native library's own last word before dying (absl's 'Check failed: ...'), if any."""
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    keys = ("Check failed", "Fatal", "fatal", "terminate called", "Aborted", "what():")
    said = [ln.strip() for ln in lines if any(k in ln for k in keys)]
    return first_line(said[-1], 200) if said else ""


def _die_with_parent() -> None:
    """Linux: SIGKILL this process when the parent dies (prctl PR_SET_PDEATHSIG)."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)
    except (OSError, AttributeError):
        return  # not Linux: an orphan finishes its conversion and exits
    if str(os.getppid()) != os.environ.get(_PARENT):  # the parent died before prctl
        os._exit(1)


def main(work: str | os.PathLike[str]) -> None:
    """The child: run the job in `work`, write `answer.json` there."""
    _main(Path(work))


def _main(work: Path) -> None:
    _die_with_parent()
    from tfopt.conversion.run import convert_request
    from tfopt.quiet import showing

    notes: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            notes.append(getattr(record, "marked", record.getMessage()))  # flags for the CLI

    logger = logging.getLogger("tfopt")
    logger.addHandler(Collect())
    logger.propagate = False
    job = json.loads((work / "job.json").read_text())
    debug = bool(job["request"].get("debug"))
    answer: dict[str, Any]
    try:
        with showing(debug):  # the LiteRT quantizer's own chatter too, under --debug
            result = convert_request(job["model"], job["output"], _request(job["request"], work))
        answer = {"result": result.to_dict()}
    except TfoptError as exc:
        if debug:
            traceback.print_exc()  # --debug: the child's stderr is the user's
        # the marked message: the CLI still names its own flag for each parameter (`option`)
        answer = {"error": {"type": type(exc).__name__, "message": exc.marked}}
    except Exception as exc:  # noqa: BLE001 - any failure still ends in one line
        if debug:
            traceback.print_exc()
        message = f"{type(exc).__name__}: {first_line(exc)} (rerun with {option('debug')})"
        answer = {"error": {"type": "ConversionError", "message": message}}
    answer["notes"] = notes
    (work / "answer.json").write_text(json.dumps(answer, default=str))
