"""Convert a keras-hub BERT encoder to TFLite at a fixed sequence length, check it, time it.

    python examples/keras_hub_bert.py [--out bert_out] [--seq-len 64] [--layers 2]

The backbone is built from a config (random weights: fine for conversion and speed, not for
accuracy). Writes float32 and dynamic-int8 files, compares the two on realistic token ids and
prints size and latency for each.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

import tfopt
from tfopt import keras_worlds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bert_out")
    parser.add_argument("--seq-len", type=int, default=64)
    parser.add_argument("--layers", type=int, default=2)
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    hub = keras_worlds.keras_hub()
    backbone = hub.models.BertBackbone(
        vocabulary_size=30522,
        num_layers=args.layers,
        num_heads=4,
        hidden_dim=256,
        intermediate_dim=1024,
        max_sequence_length=512,
    )
    rng = np.random.default_rng(0)
    n, s = 32, args.seq_len
    mask = (np.arange(s)[None, :] < rng.integers(s // 4, s + 1, (n, 1))).astype(np.int32)
    data = out / "tokens.npz"
    np.savez(
        data,
        token_ids=rng.integers(1000, 30522, (n, s)).astype(np.int32) * mask,
        segment_ids=np.zeros((n, s), np.int32),
        padding_mask=mask,
    )

    for precision in ("float32", "dynamic"):
        path = out / f"bert_{precision}.tflite"
        result = tfopt.convert(
            backbone, path, precision, seq_len=s, check_data=data, overwrite=True
        )
        timing = tfopt.bench(path, tfopt.BenchSettings(threads=(1,), min_seconds=0.5))
        p50 = timing.results[0]["latency_us"]["p50"] / 1000
        worst = min(o["sqnr_db"] for o in result.check["outputs"])
        print(
            f"{precision:8s} {result.size_bytes / 1e6:6.2f} MB  "
            f"SQNR {worst:6.1f} dB  p50 {p50:.2f} ms"
        )

    cmp = tfopt.compare_files(
        str(out / "bert_float32.tflite"), str(out / "bert_dynamic.tflite"), str(data)
    )
    for o in cmp.outputs:
        print(f"dynamic vs float32, {o.name}: cosine {o.cosine:.5f}, max_abs {o.max_abs:.4f}")


if __name__ == "__main__":
    main()
