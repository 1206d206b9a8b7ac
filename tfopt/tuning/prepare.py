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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tfopt.data import Dataset, load_data
from tfopt.errors import DataError, InputError, OutputError, note
from tfopt.fsutil import existing, write_text

STATE = ".tune"
MIN_HELDOUT = 8


@dataclass(frozen=True)
class Split:
    calibration: Dataset
    heldout: Dataset
    train_data: str | None  # the .npz, when it has a training split


def split(data: str, loaded: Any, eval_samples: int, calibration_max: int) -> Split:
    """Calibration and held-out data from DATA (see the module docstring)."""
    path = existing(data, "data")
    if path.suffix != ".npz":
        raise InputError(f"--data {data}: give an .npz (x and y, or x_train/y_train/x_val/y_val)")
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
                    f"--resume: {out} holds a search of another model, data, goal or target; "
                    "rerun with --overwrite to start over"
                )
            return state
        if not overwrite:
            raise OutputError(f"{out} holds an earlier search (--resume continues it, "
                              "--overwrite starts over)")
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
