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
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

from tfopt import errors
from tfopt.conversion.request import ConvertRequest
from tfopt.conversion.result import ConvertResult
from tfopt.data import Dataset
from tfopt.errors import ConversionError, TfoptError, first_line, note

_STEP_FILE = "TFOPT_STEP_FILE"  # set in the child only: where it records its step


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


def _request(doc: dict[str, Any]) -> ConvertRequest:
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
    debug = bool(os.environ.get("TFOPT_DEBUG"))
    with tempfile.TemporaryDirectory(prefix="tfopt-child-") as tmp:
        work = Path(tmp)
        job = {"model": os.fspath(model), "output": os.fspath(output),
               "request": _request_doc(req, work)}  # fmt: skip
        (work / "job.json").write_text(json.dumps(job))
        step_file, log = work / "step", work / "stderr.log"
        env = dict(os.environ, **{_STEP_FILE: str(step_file)})
        with open(log, "wb") as sink:
            target = None if debug else sink
            proc = subprocess.run(
                [sys.executable, "-m", "tfopt.conversion.isolated", str(work)],
                env=env, stdout=target, stderr=target, check=False,
            )  # fmt: skip
        answer = work / "answer.json"
        if not answer.exists():
            raise _death(proc.returncode, step_file, log)
        doc = json.loads(answer.read_text())
    for line in doc.get("notes", []):
        note(line)
    if "error" in doc:
        kind = getattr(errors, doc["error"]["type"], None)
        cls = kind if isinstance(kind, type) and issubclass(kind, TfoptError) else ConversionError
        raise cls(doc["error"]["message"])
    return ConvertResult(**doc["result"])


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
        "there and wrote nothing (--debug shows the native output)"
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


def _main(work: Path) -> None:
    from tfopt.conversion.run import convert_request

    notes: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            notes.append(record.getMessage())

    logger = logging.getLogger("tfopt")
    logger.addHandler(Collect())
    logger.propagate = False
    job = json.loads((work / "job.json").read_text())
    answer: dict[str, Any]
    try:
        result = convert_request(job["model"], job["output"], _request(job["request"]))
        answer = {"result": result.to_dict()}
    except TfoptError as exc:
        answer = {"error": {"type": type(exc).__name__, "message": exc.format_message()}}
    except Exception as exc:  # noqa: BLE001 - any failure still ends in one line
        message = f"{type(exc).__name__}: {first_line(exc)}"
        answer = {"error": {"type": "ConversionError", "message": message}}
    answer["notes"] = notes
    (work / "answer.json").write_text(json.dumps(answer, default=str))


if __name__ == "__main__":
    _main(Path(sys.argv[1]))
