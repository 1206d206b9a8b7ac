"""A keras-hub BERT topic classifier on real text, through the transformer-capable recipes.

    python examples/bert_fortunes/run.py [--out bert-out] [--epochs 1] [--base-epochs 6]
        [--limit N] [--recipes a,b,...]

Needs Debian's `fortunes` (`make fortunes`). Trains a small keras-hub `BertTextClassifier`
(2 layers, hidden 128, built from a config; word-level tokens over the 4,000 most common training
words) from scratch to tell four fortune categories
apart (computers, politics, science, songs-poems: ~3,100 real texts), then runs `tfopt optimize`
with each recipe and measures every `.tflite` through the LiteRT interpreter on held-out texts:
accuracy, size, gzip size, p50 latency at 1 thread. Prints a Markdown table; writes results.md.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

import tfopt
from tfopt import keras_worlds
from tfopt.optimization import OptimizeOptions, optimize
from tfopt.report import markdown_table

FOLDER = Path("/usr/share/games/fortunes")
CATEGORIES = ("computers", "politics", "science", "songs-poems")
SEQ_LEN = 64
VOCAB = 4000
RECIPES = "prune50-int8,prune2of4-int8,lowrank-dynamic,distill-prune75-int8,qat-int8"


def read_fortunes(limit: int | None) -> tuple[list[str], np.ndarray]:
    if not FOLDER.is_dir():
        sys.exit(f"fortunes not found in {FOLDER}: run `make fortunes` (Debian package fortunes)")
    texts, labels = [], []
    for label, name in enumerate(CATEGORIES):
        entries = (FOLDER / name).read_text(encoding="utf-8", errors="replace").split("\n%\n")
        entries = [" ".join(e.split()) for e in entries if len(e.split()) >= 3]
        texts += entries[:limit]
        labels += [label] * len(entries[:limit])
    return texts, np.array(labels, dtype=np.int64)


def words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9']+", text.lower())


def build_vocabulary(texts: list[str]) -> dict[str, int]:
    """The VOCAB - 2 most common words; id 0 pads, id 1 is any other word."""
    counts = Counter(w for t in texts for w in words(t))
    return {w: i + 2 for i, (w, _) in enumerate(counts.most_common(VOCAB - 2))}


def word_tokens(texts: list[str], vocab: dict[str, int]) -> dict[str, np.ndarray]:
    """Word ids, padding mask and segment ids at a fixed length."""
    ids = np.zeros((len(texts), SEQ_LEN), np.int32)
    for i, text in enumerate(texts):
        row = [vocab.get(w, 1) for w in words(text)][:SEQ_LEN]
        ids[i, : len(row)] = row
    return {
        "token_ids": ids,
        "segment_ids": np.zeros_like(ids),
        "padding_mask": (ids > 0).astype(np.int32),
    }


def build_classifier() -> Any:
    hub = keras_worlds.keras_hub()
    keras = keras_worlds.module(keras_worlds.World.KERAS3)
    keras.utils.set_random_seed(0)
    backbone = hub.models.BertBackbone(
        vocabulary_size=VOCAB,
        num_layers=2,
        num_heads=4,
        hidden_dim=128,
        intermediate_dim=512,
        max_sequence_length=128,
    )
    model = hub.models.BertTextClassifier(backbone, num_classes=len(CATEGORIES), preprocessor=None)
    model.compile(
        optimizer=keras.optimizers.Adam(5e-4),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


def measure(path: Path, x: dict[str, np.ndarray], y: np.ndarray) -> dict[str, Any]:
    from tfopt.data import Dataset
    from tfopt.inspection import gzip_size
    from tfopt.validate import run_tflite

    out = run_tflite(str(path), Dataset(x))
    acc = float(np.mean(next(iter(out.values())).argmax(-1) == y))
    timing = tfopt.bench(path, tfopt.BenchSettings(threads=(1,), min_seconds=1.0, warmup=10))
    raw = path.read_bytes()
    return {
        "accuracy": round(100 * acc, 2),
        "size_kb": round(len(raw) / 1024, 1),
        "gzip_kb": round(gzip_size(raw) / 1024, 1),
        "p50_ms_1t": round(timing.results[0]["latency_us"]["p50"] / 1000, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bert-out")
    parser.add_argument("--epochs", type=int, default=1, help="fine-tune epochs per stage")
    parser.add_argument("--base-epochs", type=int, default=6)
    parser.add_argument("--limit", type=int, default=None, help="texts per category")
    parser.add_argument("--recipes", default=RECIPES)
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    texts, labels = read_fortunes(args.limit)
    order = np.random.default_rng(0).permutation(len(texts))
    texts = [texts[i] for i in order]
    y = labels[order]
    n_val = len(y) // 5
    x = word_tokens(texts, build_vocabulary(texts[n_val:]))  # vocabulary: training texts only
    arrays = {f"x_train.{k}": v[n_val:] for k, v in x.items()}
    arrays |= {f"x_val.{k}": v[:n_val] for k, v in x.items()}
    arrays |= {"y_train": y[n_val:], "y_val": y[:n_val]}
    np.savez(out / "fortunes_tokens.npz", **arrays)
    x_val = {k: v[:n_val] for k, v in x.items()}

    started = time.perf_counter()
    model = build_classifier()
    model.fit(
        {k: v[n_val:] for k, v in x.items()},
        y[n_val:],
        epochs=args.base_epochs,
        batch_size=32,
        verbose=0,
    )
    model.save(out / "bert_classifier.keras")
    print(
        f"base: {model.count_params():,} params, {time.perf_counter() - started:.0f} s",
        file=sys.stderr,
    )

    rows: dict[str, dict[str, Any]] = {}
    for precision in ("float32", "dynamic"):
        path = out / f"baseline_{precision}.tflite"
        tfopt.convert(
            out / "bert_classifier.keras", path, precision, seq_len=SEQ_LEN, overwrite=True
        )
        rows[precision] = measure(path, x_val, y[:n_val])
    for recipe in args.recipes.split(","):
        t0 = time.perf_counter()
        report = optimize(
            out / "bert_classifier.keras",
            recipe,
            str(out / "fortunes_tokens.npz"),
            out / recipe,
            # check=False keeps every .tflite: the table shows what int8 costs on this model
            OptimizeOptions(epochs=args.epochs, batch_size=32, overwrite=True, check=False),
        )
        rows[recipe] = measure(out / recipe / "model.tflite", x_val, y[:n_val])
        sqnr = min(o["sqnr_db"] for o in report.tflite["check"]["outputs"])
        rows[recipe] |= {
            "keras_accuracy": round(100 * report.stages[-1]["val_accuracy"], 2),
            "sqnr_db": round(sqnr, 1),
            "params": report.stages[-1]["params"],
            "sparsity": report.stages[-1]["sparsity"],
            "seconds": round(time.perf_counter() - t0, 1),
        }
        print(f"{recipe}: {rows[recipe]}", file=sys.stderr)

    table = markdown_table(
        [
            "model",
            "Keras val acc %",
            ".tflite val acc %",
            "logits SQNR dB",
            "size KB",
            "gzip KB",
            "p50 ms 1t",
            "Keras params",
            "sparsity",
        ],
        [
            [
                n,
                r.get("keras_accuracy", "-"),
                r["accuracy"],
                r.get("sqnr_db", "-"),
                r["size_kb"],
                r["gzip_kb"],
                r["p50_ms_1t"],
                r.get("params", "-"),
                r.get("sparsity", "-"),
            ]
            for n, r in rows.items()
        ],
    )
    text = f"{table}\n\n{len(y) - n_val} training / {n_val} held-out fortunes, categories: {', '.join(CATEGORIES)}\n"
    (out / "results.md").write_text(text)
    (out / "results.json").write_text(json.dumps(rows, indent=2))
    print(text)


if __name__ == "__main__":
    main()
