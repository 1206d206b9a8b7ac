"""Train a small keras-hub GPT-2 on real text (Debian fortunes), byte-level, for a few minutes.

    python examples/gpt2_fortunes/train.py [--out gpt2-out] [--minutes 4] [--layers 4] [--hidden 256]

The tokenizer is the byte-level one (token id = UTF-8 byte, vocabulary 256), so the same ids come
back from `tfopt generate --prompt`. Writes gpt2_fortunes.keras and prints a greedy sample from
keras-hub's own generate(). Then:

    tfopt convert gpt2-out/gpt2_fortunes.keras -o gpt2.tflite --lm --max-length 128
    tfopt generate gpt2.tflite --prompt "The computer " --max-new-tokens 60
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from tfopt import keras_worlds

FORTUNES = Path("/usr/share/games/fortunes")


def corpus() -> bytes:
    if not FORTUNES.is_dir():
        sys.exit(f"fortunes not found in {FORTUNES}: run `make fortunes` (Debian package fortunes)")
    parts = []
    for path in sorted(FORTUNES.iterdir()):
        if path.is_file() and path.suffix == "" and not path.name.endswith((".dat", ".u8")):
            text = path.read_text(encoding="utf-8", errors="ignore")
            parts += [" ".join(e.split()) for e in text.split("\n%\n") if e.strip()]
    return "\n".join(parts).encode("utf-8")


def build(layers: int, hidden: int, max_len: int) -> Any:
    hub = keras_worlds.keras_hub()
    keras = keras_worlds.module(keras_worlds.World.KERAS3)
    keras.utils.set_random_seed(0)
    backbone = hub.models.GPT2Backbone(
        vocabulary_size=256,
        num_layers=layers,
        num_heads=max(1, hidden // 64),
        hidden_dim=hidden,
        intermediate_dim=4 * hidden,
        max_sequence_length=max_len,
    )
    model = hub.models.GPT2CausalLM(backbone=backbone, preprocessor=None)
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        sampler="greedy",
    )
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="gpt2-out")
    parser.add_argument("--minutes", type=float, default=4.0)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    data = np.frombuffer(corpus(), dtype=np.uint8).astype(np.int32)
    model = build(args.layers, args.hidden, max_len=256)
    rng = np.random.default_rng(0)
    n = args.seq_len + 1
    started, steps, losses = time.perf_counter(), 0, []
    while time.perf_counter() - started < 60 * args.minutes:
        starts = rng.integers(0, len(data) - n, 50 * args.batch_size)
        windows = np.stack([data[s : s + n] for s in starts])
        x = {
            "token_ids": windows[:, :-1],
            "padding_mask": np.ones_like(windows[:, :-1], dtype=bool),
        }
        history = model.fit(x, windows[:, 1:], batch_size=args.batch_size, epochs=1, verbose=0)
        steps += 50
        losses.append(float(history.history["loss"][-1]))
        print(
            f"{steps} steps, {time.perf_counter() - started:.0f} s, loss {losses[-1]:.3f} nats/byte",
            file=sys.stderr,
        )
    model.save(out / "gpt2_fortunes.keras")

    prompt = list(b"The computer ")
    tokens = np.zeros((1, 64), np.int32)
    mask = np.zeros((1, 64), bool)
    tokens[0, : len(prompt)], mask[0, : len(prompt)] = prompt, True
    sample = model.generate({"token_ids": tokens, "padding_mask": mask}, stop_token_ids=None)
    text = bytes(int(t) for t in sample["token_ids"][0]).decode("utf-8", errors="replace")
    print(
        f"{data.size:,} bytes of fortunes; {model.count_params():,} parameters; {steps} steps; "
        f"final loss {losses[-1]:.3f} nats/byte"
    )
    print(f"greedy sample: {text!r}")


if __name__ == "__main__":
    main()
