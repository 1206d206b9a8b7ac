"""The main job on the embedded default: a real digits CNN through the whole pipeline.

Trains a small tf_keras CNN on scikit-learn's bundled handwritten digits (1,797 real 8x8 images),
converts it to every precision, checks each `.tflite` against the Keras model on held-out digits,
times each on the CPU; the report stage writes `report.json`, `report.md` and `report.png`.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from converters import PRECISIONS
from tfopt import keras_worlds
from tfopt.conversion import convert
from tfopt.core import CONVERTER_PRECISIONS
from tfopt.data import Dataset
from tfopt.fsutil import check_output_dir, staged_dir
from tfopt.loading import from_keras
from tfopt.report import write_demo_report
from tfopt.timing import BenchSettings, bench
from tfopt.validate import compare_outputs, run_reference, run_tflite

SEED = 0
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
    """One row per precision (size, accuracy, agreement, SQNR, latency per thread count) and
    what the rows were measured on; `tfopt.report` renders it (View.DEMO)."""

    out_dir: str
    rows: list[dict[str, Any]]
    keras_accuracy: float
    parameters: int
    train_samples: int
    test_samples: int
    train_seconds: float
    machine: dict[str, Any]
    threads: tuple[int, ...]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


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
    and the report files to `out_dir` (all together, or none). Returns the rows."""
    names = OUTPUT_NAMES + [f"digits_{p}.tflite" for p in CONVERTER_PRECISIONS]
    settings = BenchSettings(threads=threads, min_seconds=min_seconds, warmup=10)  # checks first
    out = check_output_dir(out_dir, names, overwrite)
    with staged_dir(out, names) as staging:  # all files appear together, or none
        report = _run_in(staging, str(out), settings)
        write_demo_report(staging, report)
    return report


def _run_in(out: Path, out_dir: str, settings: BenchSettings) -> DemoReport:
    from tqdm import tqdm

    x_train, y_train, x_test, y_test = digits_split()
    started = time.perf_counter()
    model = train_digits_cnn(x_train, y_train)
    train_s = time.perf_counter() - started
    # Write the model and data as files too, so every step can be rerun from the CLI.
    keras_path = out / "digits_cnn.keras"
    model.save(keras_path, overwrite=True)
    calib = out / "digits_calibration.npz"
    np.savez(calib, x=x_train[:200])
    np.savez(out / "digits_test.npz", x=x_test, y=y_test)

    test = Dataset({"image": x_test}, y_test)
    reference = run_reference(from_keras(model), test)
    rows = []
    for precision in tqdm(
        list(CONVERTER_PRECISIONS), desc="precisions", unit="model", disable=None
    ):
        path = out / f"digits_{precision}.tflite"
        # Calibrated precisions calibrate on the data; the others are checked on it.
        data = "calibration" if PRECISIONS[precision].needs_calibration else "check_data"
        conv = convert(model, path, precision, overwrite=True, **{data: calib})
        diff = compare_outputs(reference, run_tflite(str(path), test), y_test)
        timing = bench(path, settings)
        assert diff.accuracy is not None
        row: dict[str, Any] = {
            "precision": str(precision),
            "size_kb": round(conv.size_bytes / 1024, 1),
            "gzip_kb": round(conv.gzip_bytes / 1024, 1),
            "accuracy": round(100 * diff.accuracy["candidate"], 2),
            "top1_agreement": round(100 * (diff.top1_agreement or 0.0), 2),
            "sqnr_db": round(diff.outputs[0].sqnr_db, 1),
        }
        for r in timing.results:
            row[f"p50_ms_{r['threads']}t"] = round(r["latency_us"]["p50"] / 1000, 4)
            row[f"p90_ms_{r['threads']}t"] = round(r["latency_us"]["p90"] / 1000, 4)
        rows.append(row)

    keras_acc = round(100 * float(np.mean(reference["probs"].argmax(1) == y_test)), 2)
    return DemoReport(
        out_dir=out_dir,
        rows=rows,
        keras_accuracy=keras_acc,
        parameters=model.count_params(),
        train_samples=len(x_train),
        test_samples=len(x_test),
        train_seconds=train_s,
        machine=timing.machine,
        threads=settings.threads,
    )
