"""Every shipped recipe on a small CNN trained on real Fashion-MNIST, against float32.

    python examples/fashion_mnist/run.py [--out fmnist-out] [--epochs 2] [--base-epochs 4]
        [--limit-train N] [--recipes a,b,...] [--threads 1,2]

Needs Debian's `dataset-fashion-mnist` (`make fashion-mnist` installs it). Trains a tf_keras CNN
on the 60,000 training images, then runs `tfopt optimize` with each recipe (fine-tuning on the
training set), and measures every `.tflite` through the LiteRT interpreter on the 10,000 test
images: accuracy, size, gzip size, p50 latency at 1 and 2 threads. Prints a Markdown table
and writes results.json / results.md into --out.
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

import tfopt
from tfopt import keras_worlds
from tfopt.optimization import OptimizeOptions, optimize
from tfopt.recipes import shipped
from tfopt.report import markdown_table

FOLDER = Path("/usr/share/datasets/fashion-mnist")


def read_idx(path: Path) -> np.ndarray:
    """IDX format: magic (2 zero bytes, dtype code, ndim), big-endian dims, then raw uint8 data."""
    with gzip.open(path, "rb") as f:
        raw = f.read()
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def load_fashion_mnist(limit: int | None) -> dict[str, np.ndarray]:
    if not FOLDER.is_dir():
        sys.exit(
            f"Fashion-MNIST not found in {FOLDER}: run `make fashion-mnist` (Debian dataset-fashion-mnist)"
        )
    split = {}
    for name, stem in (("train", "train"), ("val", "t10k")):
        x = read_idx(FOLDER / f"{stem}-images-idx3-ubyte.gz").astype(np.float32)[..., None] / 255.0
        y = read_idx(FOLDER / f"{stem}-labels-idx1-ubyte.gz").astype(np.int64)
        n = limit if name == "train" else (limit // 4 if limit else None)
        split[f"x_{name}"], split[f"y_{name}"] = x[:n], y[:n]
    return split


def train_cnn(data: dict[str, np.ndarray], epochs: int) -> Any:
    keras = keras_worlds.module(keras_worlds.World.TF_KERAS)
    keras.utils.set_random_seed(0)
    layers = keras.layers
    inputs = keras.Input((28, 28, 1), name="image")
    h = layers.Conv2D(32, 3, activation="relu")(inputs)
    h = layers.MaxPooling2D()(h)
    h = layers.Conv2D(64, 3, activation="relu")(h)
    h = layers.MaxPooling2D()(h)
    h = layers.Flatten()(h)
    h = layers.Dense(128, activation="relu")(h)
    outputs = layers.Dense(10, activation="softmax", name="probs")(h)
    model = keras.Model(inputs, outputs, name="fmnist_cnn")
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(data["x_train"], data["y_train"], epochs=epochs, batch_size=128, verbose=0)
    return model


def measure(path: Path, data: dict[str, np.ndarray], threads: tuple[int, ...]) -> dict[str, Any]:
    from tfopt.data import Dataset
    from tfopt.inspection import gzip_size
    from tfopt.validate import run_tflite

    out = run_tflite(str(path), Dataset({"image": data["x_val"]}))
    acc = float(np.mean(next(iter(out.values())).argmax(-1) == data["y_val"]))
    # 3 independent processes per setting: the median run's p50, and the spread of the three.
    timing = tfopt.bench(
        path, tfopt.BenchSettings(threads=threads, min_seconds=1.0, warmup=20, repeat=3)
    )
    raw = path.read_bytes()
    row = {
        "accuracy": round(100 * acc, 2),
        "size_kb": round(len(raw) / 1024, 1),
        "gzip_kb": round(gzip_size(raw) / 1024, 1),
    }
    for r in timing.results:
        row[f"p50_ms_{r['threads']}t"] = round(r["latency_us"]["p50"] / 1000, 4)
        row[f"spread_pct_{r['threads']}t"] = r["p50_spread_pct"]
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="fmnist-out")
    parser.add_argument("--epochs", type=int, default=2, help="fine-tune epochs per stage")
    parser.add_argument("--base-epochs", type=int, default=4)
    parser.add_argument("--limit-train", type=int, default=None)
    parser.add_argument("--recipes", default=",".join(shipped()))
    parser.add_argument("--threads", default="1,2")
    parser.add_argument(
        "--reuse", action="store_true", help="reuse --out's base model and finished recipes"
    )
    parser.add_argument("--redo", default="", help="with --reuse: recipes to run again")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    threads = tuple(int(t) for t in args.threads.split(","))

    data = load_fashion_mnist(args.limit_train)
    np.savez(out / "fashion_mnist.npz", **data)
    started = time.perf_counter()
    if not (args.reuse and (out / "cnn.keras").exists()):
        model = train_cnn(data, args.base_epochs)
        model.save(out / "cnn.keras")
        took = time.perf_counter() - started
        print(f"base CNN: {model.count_params():,} params, trained {took:.0f} s", file=sys.stderr)
    redo = set(filter(None, args.redo.split(",")))

    rows: dict[str, dict[str, Any]] = {}
    for precision in ("float32", "dynamic"):
        path = out / f"baseline_{precision}.tflite"
        if not (args.reuse and path.exists()):
            tfopt.convert(out / "cnn.keras", path, precision, overwrite=True)
        rows[precision] = measure(path, data, threads)
    # The recipes fine-tune for --epochs more; a fair float reference gets the same extra training.
    tuned = out / "baseline_float32_finetuned.tflite"
    if not (args.reuse and tuned.exists()):
        keras = keras_worlds.module(keras_worlds.World.TF_KERAS)
        model = tfopt.load(out / "cnn.keras").model
        model.compile(keras.optimizers.Adam(5e-4), "sparse_categorical_crossentropy")
        model.fit(data["x_train"], data["y_train"], epochs=args.epochs, batch_size=64, verbose=0)
        tfopt.convert(model, tuned, "float32", overwrite=True)
    rows["float32 + fine-tune"] = measure(tuned, data, threads)
    for recipe in args.recipes.split(","):
        t0 = time.perf_counter()
        done = out / recipe / "report.json"
        if args.reuse and done.exists() and recipe not in redo:
            report = json.loads(done.read_text())
        else:
            data_file = str(out / "fashion_mnist.npz")
            result = optimize(
                out / "cnn.keras",
                recipe,
                data_file,
                out / recipe,
                OptimizeOptions(epochs=args.epochs, overwrite=True),
            )
            report = result.to_dict()
            report["seconds"] = round(time.perf_counter() - t0, 1)
            done.write_text(json.dumps(report, indent=2, default=str))
        rows[recipe] = measure(out / recipe / "model.tflite", data, threads)
        rows[recipe]["optimize_seconds"] = report.get("seconds")
        rows[recipe]["sparsity"] = report["stages"][-1]["sparsity"]
        print(f"{recipe}: {rows[recipe]}", file=sys.stderr)

    f32 = rows["float32 + fine-tune"]  # accuracy reference: same training as the recipes
    checks = {}
    if "qat-int8" in rows:
        checks["qat-int8 within 0.5 pt of float32 + fine-tune"] = (
            f32["accuracy"] - rows["qat-int8"]["accuracy"] <= 0.5
        )
    if "prune50-qat-int8" in rows:
        checks["prune50-qat-int8 within 1.0 pt of float32 + fine-tune"] = (
            f32["accuracy"] - rows["prune50-qat-int8"]["accuracy"] <= 1.0
        )
    if "prune50-int8" in rows:
        ratio = rows["prune50-int8"]["gzip_kb"] / rows["float32"]["gzip_kb"]
        checks[f"prune50-int8 gzip <= 0.15x float32 gzip (is {ratio:.3f}x)"] = ratio <= 0.15
    if "lowrank-dynamic" in rows:
        lr, dyn = rows["lowrank-dynamic"], rows["dynamic"]
        checks["lowrank-dynamic smaller than dynamic"] = lr["size_kb"] < dyn["size_kb"]
        checks["lowrank-dynamic faster than dynamic (1 thread)"] = (
            lr["p50_ms_1t"] < dyn["p50_ms_1t"]
        )
        checks["lowrank-dynamic loses <= 1 pt vs float32 + fine-tune"] = (
            f32["accuracy"] - lr["accuracy"] <= 1.0
        )

    headers = [
        "model",
        "accuracy %",
        "size KB",
        "gzip KB",
        "gzip vs float32",
        *(f"p50 ms {t}t" for t in threads),
    ]
    table = markdown_table(
        headers,
        [
            [
                name,
                r["accuracy"],
                r["size_kb"],
                r["gzip_kb"],
                round(r["gzip_kb"] / rows["float32"]["gzip_kb"], 3),
                *(r[f"p50_ms_{t}t"] for t in threads),
            ]
            for name, r in rows.items()
        ],
    )
    targets = "\n".join(f"- [{'x' if ok else ' '}] {name}" for name, ok in checks.items())
    machine = tfopt.bench(
        out / "baseline_float32.tflite", tfopt.BenchSettings((1,), runs=5)
    ).machine
    text = (
        f"{table}\n\nTargets:\n{targets}\n\nMachine: {machine['cpu']}, {machine['cores']} cores\n"
    )
    (out / "results.md").write_text(text)
    (out / "results.json").write_text(
        json.dumps({"rows": rows, "checks": checks, "machine": machine}, indent=2)
    )
    print(text)


if __name__ == "__main__":
    main()
