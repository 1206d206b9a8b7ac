"""A mobile runtime reads tfopt's metadata: MediaPipe Tasks' ImageClassifier (the same C++ graph
as on Android and iOS, through its Python API in the `make mediapipe` venv) on tfopt's files of a
Keras 3 Sequential trained on real Fashion-MNIST. BENCHMARKS.md section 15.

    python benchmarks/mediapipe_metadata.py [--images 1000]     (make bench-mediapipe)

Per file: MediaPipe normalizes real uint8 RGB photos by the metadata and names classes from the
packed labels; against tfopt's own interpreter run on pixels / 255: agreement of the top class,
the largest score difference, accuracy of each, the label names MediaPipe returned, and the
bytes the metadata added to the file.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "examples" / "fashion_mnist"))

import tfopt  # noqa: E402
from tfopt import keras_worlds  # noqa: E402
from tfopt.report import markdown_table  # noqa: E402

MEDIAPIPE = ROOT / ".venv-mediapipe" / "bin" / "python"
TOOL = ROOT / "tests" / "mediapipe_tool.py"
LABELS = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
          "Bag", "Ankle boot"]  # fmt: skip
FLAGS = {"labels": None, "normalize": "0,255", "name": "fashion", "version": "1"}


def train(folder: Path, images: int) -> dict[str, Path]:
    from run import read_idx  # type: ignore[import-not-found]

    src = Path("/usr/share/datasets/fashion-mnist")
    x = read_idx(src / "train-images-idx3-ubyte.gz")[:20000]
    y = read_idx(src / "train-labels-idx1-ubyte.gz")[:20000].astype(np.int64)
    xt = read_idx(src / "t10k-images-idx3-ubyte.gz")[:images]
    yt = read_idx(src / "t10k-labels-idx1-ubyte.gz")[:images].astype(np.int64)
    rgb, rgbt = (np.repeat(a[..., None], 3, axis=-1) for a in (x, xt))
    keras = keras_worlds.module(keras_worlds.World.KERAS3)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((28, 28, 3)), keras.layers.Conv2D(16, 3, activation="relu"),
        keras.layers.MaxPooling2D(), keras.layers.Conv2D(32, 3, activation="relu"),
        keras.layers.MaxPooling2D(), keras.layers.Flatten(),
        keras.layers.Dense(10, activation="softmax"),
    ])  # fmt: skip
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(rgb / 255.0, y, epochs=3, batch_size=64, verbose=0)
    paths = {k: folder / v for k, v in (("keras", "fashion.keras"), ("labels", "labels.txt"),
             ("images", "images.npy"), ("data", "test.npz"), ("calib", "calib.npz"))}  # fmt: skip
    model.save(paths["keras"])
    paths["labels"].write_text("\n".join(LABELS) + "\n", encoding="utf-8")
    np.save(paths["images"], rgbt.astype(np.uint8))
    np.savez(paths["data"], x=(rgbt / 255.0).astype(np.float32), y=yt)
    np.savez(paths["calib"], x=(rgb[:200] / 255.0).astype(np.float32))
    return paths


def files(folder: Path, app: dict[str, Path]) -> dict[str, tuple[Path, int]]:
    """{variant: (file with metadata, bytes the metadata added)}."""
    meta = dict(FLAGS, labels=str(app["labels"]))
    out = {}
    for precision in ("float32", "dynamic", "int8"):
        calib = app["calib"] if precision == "int8" else None
        plain, with_meta = folder / f"{precision}_plain.tflite", folder / f"{precision}.tflite"
        tfopt.convert(str(app["keras"]), plain, precision, calibration=calib)
        tfopt.convert(str(app["keras"]), with_meta, precision, calibration=calib, metadata=meta)
        out[precision] = (with_meta, with_meta.stat().st_size - plain.stat().st_size)
    requant = folder / "aeq_dynamic_from_tflite.tflite"
    tfopt.convert(str(out["float32"][0]), requant, "dynamic", quantizer="aeq")
    out["LiteRT quantizer dynamic, from the float32 .tflite"] = (requant, 0)
    return out


def measure(path: Path, app: dict[str, Path]) -> dict[str, Any]:
    from tfopt.data import load_data
    from tfopt.loading import load
    from tfopt.validate import run_tflite

    proc = subprocess.run([str(MEDIAPIPE), str(TOOL), "classify", str(path), str(app["images"])],
                          capture_output=True, text=True, check=True)  # fmt: skip
    found = json.loads(proc.stdout.splitlines()[-1])
    data = load_data(str(app["data"]), load(str(path)).inputs)
    probs = next(iter(run_tflite(str(path), data).values()))
    mp_top = np.array([image[0]["index"] for image in found])
    mp_score = np.array([image[0]["score"] for image in found])
    names_ok = all(image[0]["name"] == LABELS[image[0]["index"]] for image in found)
    return {
        "images": len(found),
        "top1_agreement": float(np.mean(mp_top == probs.argmax(-1))),
        # int8 scores are quantized: two classes can tie, and MediaPipe may name the other one
        "top1_agreement_ties": float(np.mean(probs[np.arange(len(probs)), mp_top] >= probs.max(-1) - 1e-6)),
        "max_score_diff": float(np.max(np.abs(mp_score - probs.max(-1)))),
        "accuracy_mediapipe": float(np.mean(mp_top == data.y)),
        "accuracy_tfopt": float(np.mean(probs.argmax(-1) == data.y)),
        "names_from_packed_labels": names_ok,
        "first_names": sorted({image[0]["name"] for image in found})[:4],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()
    if not MEDIAPIPE.exists():
        sys.exit("the MediaPipe venv is missing: make mediapipe")
    rows = []
    with tempfile.TemporaryDirectory(prefix="tfopt-mediapipe-") as tmp:
        app = train(Path(tmp), args.images)
        for variant, (path, added) in files(Path(tmp), app).items():
            rows.append({"variant": variant, "metadata_bytes": added, **measure(path, app)})
            print(json.dumps(rows[-1]), flush=True)
    table = markdown_table(
        ["file", "images", "top-1 = tfopt's", "same top score (ties)", "max |score diff|", "accuracy MediaPipe",
         "accuracy tfopt", "names from packed labels", "metadata bytes"],
        [[r["variant"], r["images"], f"{r['top1_agreement']:.4f}", f"{r['top1_agreement_ties']:.4f}",
          f"{r['max_score_diff']:.2g}",
          f"{r['accuracy_mediapipe']:.4f}", f"{r['accuracy_tfopt']:.4f}",
          "yes" if r["names_from_packed_labels"] else "NO", r["metadata_bytes"] or "-"]
         for r in rows],
    )  # fmt: skip
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "mediapipe.json").write_text(json.dumps(rows, indent=2) + "\n")
    (args.results / "mediapipe.md").write_text(table + "\n")
    print(table)


if __name__ == "__main__":
    main()
