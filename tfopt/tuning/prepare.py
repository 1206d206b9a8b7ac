"""Before the first trial: the data split, the source model's outputs and the state folder.

DATA is an `.npz`. With a training split (`x_train`, `y_train`, `x_val`, `y_val`, as `tfopt
optimize` reads) the training inputs calibrate, the validation split is held out and recipes may
fine-tune. Without one (`x` or arrays named after the inputs, labels `y` optional) the first part
calibrates and the rest is held out, so no sample both calibrates and judges.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tfopt.data import Dataset, load_data
from tfopt.errors import DataError, InputError, OutputError, note, option
from tfopt.evaluation import Runtime
from tfopt.fsutil import check_output_dir, existing, write_text
from tfopt.tuning.result import OUTPUTS
from tfopt.tuning.space import Space

if TYPE_CHECKING:
    from tfopt.tuning.request import TuneRequest
    from tfopt.tuning.trial import Job

STATE = ".tune"
MIN_HELDOUT = 8


@dataclass(frozen=True)
class Setup:
    """A search ready to run: what the request became once the model and data were read."""

    model: str  # the source model's path, as trials on other nodes load it
    space: Space  # the request's, without recipes when they cannot run
    runtimes: tuple[Runtime, ...]
    out: Path
    state: Path  # OUT/.tune: the ledger, the files, the Ray experiments
    job: Job
    started: float  # time.perf_counter() at the start
    deadline: float | None  # no trial starts after it


def setup(request: TuneRequest) -> Setup:
    """Read the model and data, split them, run the source model once and open the state folder."""
    from tfopt.evaluation import Candidate, Evaluation
    from tfopt.loading import SourceKind, load
    from tfopt.tuning.goal import measurable, quality
    from tfopt.tuning.trial import Job
    from tfopt.validate import compare_outputs, run_reference

    limit = request.seconds
    model_path = model_arg(request.model)
    space = request.space or Space()
    out = check_output_dir(request.out_dir, OUTPUTS, request.overwrite or request.resume)
    started = time.perf_counter()
    loaded = load(model_path, unsafe=request.unsafe, imports=request.imports)
    if loaded.kind is SourceKind.TFLITE:
        raise InputError(f"{model_path} is a .tflite file; tune starts from its source model")
    parts = split(str(request.data), loaded, request.eval_samples, max(space.calibration_sizes))
    if parts.train_data is None or loaded.kind not in (SourceKind.TF_KERAS, SourceKind.KERAS3):
        space = replace(space, recipes=())
    reference = run_reference(loaded, parts.heldout)
    embedding = embedding_mode(loaded, parts.heldout, reference, request.pooling)
    itself = Evaluation(Candidate(model_path), 0, 0,
                        compare_outputs(reference, reference, parts.heldout.y))  # fmt: skip
    reachable = quality(itself, embedding, reference, reference)
    measurable(list(request.goals), parts.heldout.y is not None, embedding is not None, reachable)
    settings = {"goals": [str(g) for g in request.goals],
                "target": request.target, "space": asdict(space), "seq_len": request.seq_len,
                "pooling": request.pooling, "eval_samples": request.eval_samples,
                "epochs": request.epochs, "batch_size": request.batch_size,
                "min_seconds": request.min_seconds}  # fmt: skip
    fp = fingerprint(model_path, str(request.data), settings)
    state = state_dir(out, fp, request.resume, request.overwrite)
    runtimes = tuple(space.runtimes())
    job = Job(model=model_path, calibration=parts.calibration, heldout=parts.heldout,
              reference=reference, goals=request.goals, runtimes=runtimes, embedding=embedding,
              seq_len=request.seq_len, unsafe=request.unsafe, imports=request.imports,
              train_data=parts.train_data, epochs=request.epochs,
              batch_size=request.batch_size)  # fmt: skip
    return Setup(model_path, space, runtimes, out, state, job, started,
                 started + limit if limit else None)  # fmt: skip


@dataclass(frozen=True)
class Split:
    calibration: Dataset
    heldout: Dataset
    train_data: str | None  # the .npz, when it has a training split


def split(data: str, loaded: Any, eval_samples: int, calibration_max: int) -> Split:
    """Calibration and held-out data from DATA (see the module docstring)."""
    path = existing(data, "data")
    if path.suffix != ".npz":
        raise InputError(f"{option('data')} {data}: give an .npz (x and y, or x_train/y_train/x_val/y_val)")
    with np.load(path, allow_pickle=False) as z:
        names = set(z.files)
    if "x_train" in names or any(n.startswith("x_train.") for n in names):
        from tfopt.optimization import calibration_sample
        from tfopt.optimization.training import load_train_data

        train = load_train_data(str(path), loaded.inputs)
        # The samples `tfopt optimize` calibrates on, so that best.yaml rebuilds the same file.
        calibration = calibration_sample(train.train, calibration_max)
        return Split(calibration, train.val.take(eval_samples), str(path.resolve()))
    full = load_data(path, loaded.inputs)
    n_cal = min(calibration_max, len(full) // 2)
    if len(full) - n_cal < MIN_HELDOUT:
        raise DataError(f"{data}: {len(full)} samples are too few to calibrate and judge; "
                        f"give at least {2 * MIN_HELDOUT}")
    note(f"{data}: samples 0-{n_cal - 1} calibrate, the next {min(eval_samples, len(full) - n_cal)} "
         "are held out to judge")  # fmt: skip
    rest = Dataset({k: v[n_cal:] for k, v in full.x.items()},
                   None if full.y is None else full.y[n_cal:])  # fmt: skip
    return Split(full.take(n_cal), rest.take(eval_samples), None)


def embedding_mode(loaded: Any, heldout: Dataset, reference: dict[str, np.ndarray],
                   pooling: str) -> dict[str, Any] | None:  # fmt: skip
    """An encoder (a padding_mask input and a sequence output) is judged on sentence embeddings."""
    if "padding_mask" not in heldout.x or not any(v.ndim == 3 for v in reference.values()):
        return None
    return {"pooling": pooling, "mask": heldout.x["padding_mask"]}


def _file_id(path: str) -> dict[str, Any]:
    p = Path(path)
    files = sorted(p.rglob("*")) if p.is_dir() else [p]
    return {"path": str(p.resolve()),
            "files": [(str(f.relative_to(p)) if p.is_dir() else f.name, f.stat().st_size,
                       int(f.stat().st_mtime)) for f in files if f.is_file()]}  # fmt: skip


def fingerprint(model: str, data: str, settings: dict[str, Any]) -> str:
    """What a finished trial's result depends on: the model and data files and the settings."""
    doc = {"model": _file_id(model), "data": _file_id(data), **settings}
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()


def state_dir(out: Path, fingerprint_: str, resume: bool, overwrite: bool) -> Path:
    """The search's state folder in OUT: kept for --resume, replaced with --overwrite."""
    state = out / STATE
    stamp = state / "fingerprint"
    if state.exists():
        same = stamp.is_file() and stamp.read_text().strip() == fingerprint_
        if resume and (same or not overwrite):
            if not same:
                raise InputError(
                    f"{option('resume')}: {out} holds a search of another model, data, goal or "
                    f"target; rerun with {option('overwrite')} to start over"
                )
            return state
        if not overwrite:
            raise OutputError(f"{out} holds an earlier search ({option('resume')} continues it, "
                              f"{option('overwrite')} starts over)")
        shutil.rmtree(state)
    elif resume:
        note(f"--resume: {out} holds no earlier search; starting one")
    state.mkdir(parents=True)
    write_text(stamp, fingerprint_ + "\n")
    return state


def model_arg(model: Any) -> str:
    if not isinstance(model, (str, os.PathLike)):
        raise InputError("tune takes a model file or folder (.keras, .h5, SavedModel, keras-hub "
                         "preset): trials on other nodes load it from there")
    path = Path(model)
    return str(path.resolve()) if path.exists() else str(model)  # workers run elsewhere
