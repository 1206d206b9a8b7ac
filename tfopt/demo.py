"""The main job on the embedded default: a real digits CNN through the whole pipeline.

Trains a small tf_keras CNN on scikit-learn's bundled handwritten digits (1,797 real 8x8 images),
converts it to every precision, checks each `.tflite` against the Keras model on held-out digits,
times each on the CPU; the report stage writes `report.json`, `report.md` and `report.png`.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from converters import PRECISIONS
from tfopt import keras_worlds
from tfopt.conversion import ConvertRequest, convert_request
from tfopt.core import CONVERTER_PRECISIONS, Precision
from tfopt.data import Dataset
from tfopt.evaluation import Candidate, Evaluation, Runtime, bench_timer, evaluate
from tfopt.fsutil import check_output_dir, staged_dir
from tfopt.loading import from_keras
from tfopt.report import write_demo_report
from tfopt.validate import run_reference

SEED = 0
WARMUP = 10  # runs before the timed ones
OUTPUT_NAMES = [
    "report.json",
    "report.png",
    "report.md",
    "digits_cnn.keras",
    "digits_test.npz",
    "digits_calibration.npz",
]


@dataclass(frozen=True)
class DemoReport:
    """One `Evaluation` per precision (size, accuracy, agreement, SQNR, latency per thread count)
    and what they were measured on; `tfopt.report` renders it (View.DEMO)."""

    out_dir: str
    evaluations: tuple[Evaluation, ...]
    keras_accuracy: float
    parameters: int
    train_samples: int
    test_samples: int
    train_seconds: float
    machine: dict[str, Any]
    threads: tuple[int, ...]

    @property
    def rows(self) -> list[dict[str, Any]]:
        """A row per precision: the demo's own columns, then the shared `Evaluation.row()`."""
        return [_row(ev) for ev in self.evaluations]

    def to_dict(self) -> dict[str, Any]:
        doc = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "evaluations"}
        return {**doc, "rows": self.rows, "threads": list(self.threads)}


def _row(ev: Evaluation) -> dict[str, Any]:
    """The demo's columns (sizes in KB, percentages, latency per thread count) beside the
    shared keys of `Evaluation.row()` (sizes in bytes, `p50_ms_by_runtime`, `quality`)."""
    diff = ev.comparison
    assert diff is not None and diff.accuracy is not None
    row: dict[str, Any] = {
        "precision": ev.candidate.label,
        "size_kb": round(ev.size_bytes / 1024, 1),
        "gzip_kb": round(ev.gzip_bytes / 1024, 1),
        "accuracy": round(100 * diff.accuracy["candidate"], 2),
        "top1_agreement": round(100 * (diff.top1_agreement or 0.0), 2),
        "sqnr_db": round(diff.outputs[0].sqnr_db, 1),
    }
    for t in ev.timings:
        row[f"p50_ms_{t.runtime.threads}t"] = t.p50_ms
        row[f"p90_ms_{t.runtime.threads}t"] = t.p90_ms
    return {**row, **ev.row()}


def digits_split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Stratified 80/20 split of the real digits, scaled to [0, 1], shaped (N, 8, 8, 1)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[..., None]
    y = digits.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=0.2, random_state=SEED, stratify=y
    )
    return x_train, y_train, x_test, y_test


def train_digits_cnn(x: np.ndarray, y: np.ndarray, epochs: int = 40) -> Any:
    """A small tf_keras CNN; about 3 s of training on two cores."""
    keras = keras_worlds.module(keras_worlds.World.TF_KERAS)
    keras.utils.set_random_seed(SEED)
    layers = keras.layers
    inputs = keras.Input((8, 8, 1), name="image")
    h = layers.Conv2D(32, 3, padding="same", activation="relu")(inputs)
    h = layers.Conv2D(64, 3, padding="same", activation="relu")(h)
    h = layers.MaxPooling2D()(h)
    h = layers.Flatten()(h)
    h = layers.Dense(128, activation="relu")(h)
    outputs = layers.Dense(10, activation="softmax", name="probs")(h)
    model = keras.Model(inputs, outputs, name="digits_cnn")
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=epochs, batch_size=64, verbose=0)
    return model


def run_demo(
    out_dir: str | os.PathLike[str] = "demo-out",
    threads: tuple[int, ...] = (1, 2),
    min_seconds: float = 1.0,
    overwrite: bool = False,
) -> DemoReport:
    """Train, convert to every precision, check, time; write the model, data, every `.tflite`
    and the report files to `out_dir` (all together, or none). Returns the evaluations."""
    names = OUTPUT_NAMES + [f"digits_{p}.tflite" for p in CONVERTER_PRECISIONS]
    runtimes = tuple(Runtime(t) for t in threads)
    for rt in runtimes:  # a bad setting fails before any work
        rt.settings(min_seconds, warmup=WARMUP)
    out = check_output_dir(out_dir, names, overwrite)
    with staged_dir(out, names) as staging:  # all files appear together, or none
        report = _run_in(staging, str(out), runtimes, min_seconds)
        write_demo_report(staging, report)
    return report


def _request(precision: Precision, digits: Path) -> ConvertRequest:
    """Calibrated precisions calibrate on the digits; the others are checked on them."""
    data = "calibration" if PRECISIONS[precision].needs_calibration else "check_data"
    return ConvertRequest(precision=precision, overwrite=True, **{data: digits})


def _run_in(
    out: Path, out_dir: str, runtimes: tuple[Runtime, ...], min_seconds: float
) -> DemoReport:
    from tqdm import tqdm

    x_train, y_train, x_test, y_test = digits_split()
    started = time.perf_counter()
    model = train_digits_cnn(x_train, y_train)
    train_s = time.perf_counter() - started
    # Write the model and data as files too, so every step can be rerun from the CLI.
    model.save(out / "digits_cnn.keras", overwrite=True)
    calib = out / "digits_calibration.npz"
    np.savez(calib, x=x_train[:200])
    np.savez(out / "digits_test.npz", x=x_test, y=y_test)

    test = Dataset({"image": x_test}, y_test)
    reference = run_reference(from_keras(model), test)
    timer = bench_timer(min_seconds, warmup=WARMUP)
    evaluations = []
    for precision in tqdm(
        list(CONVERTER_PRECISIONS), desc="precisions", unit="model", disable=None
    ):
        path, request = out / f"digits_{precision}.tflite", _request(precision, calib)
        convert_request(model, path, request)
        candidate = Candidate(path, request, str(precision))
        evaluations.append(evaluate(candidate, reference, test, runtimes, timer=timer))

    keras_acc = round(100 * float(np.mean(reference["probs"].argmax(1) == y_test)), 2)
    return DemoReport(
        out_dir=out_dir,
        evaluations=tuple(evaluations),
        keras_accuracy=keras_acc,
        parameters=model.count_params(),
        train_samples=len(x_train),
        test_samples=len(x_test),
        train_seconds=train_s,
        machine=evaluations[-1].machine,
        threads=tuple(rt.threads for rt in runtimes),
    )
