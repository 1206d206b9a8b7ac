"""On-device LM speed: TFLite prefill/decode against keras-hub's own generate(), same CPU.

    python benchmarks/lm_decode.py MODEL.keras [--out lm-out] [--prompt-len 16] [--new-tokens 64]

MODEL is a keras-hub causal LM (e.g. from examples/gpt2_fortunes/train.py, byte-level tokens).
Measures at 1 and 2 threads:
- keras-hub generate() (greedy, compiled, batch 1): end-to-end tokens/s, in a child process with
  TensorFlow's thread pools set to the thread count;
- each `.tflite` variant (float32, dynamic int8, LiteRT-quantizer dynamic and w8): time to first
  token, decode tokens/s (p50 and mean) with `tfopt bench --lm`;
- greedy agreement on 20 real prompts (fortunes prefixes): float32 TFLite against keras-hub, and
  each quantized variant against float32 TFLite.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import tfopt  # noqa: E402
from tfopt.report import markdown_table  # noqa: E402
from tfopt.runtime.lm import LmRunner  # noqa: E402

VARIANTS = [
    ("float32", "float32", "converter"),
    ("dynamic", "dynamic", "converter"),
    ("dynamic (aeq)", "dynamic", "aeq"),
    ("w8 (aeq)", "w8", "aeq"),
]
KERAS_RUNNER = r"""
import json, sys, time, numpy as np, tensorflow as tf
threads, path, prompt_len, new_tokens, runs = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
tf.config.threading.set_intra_op_parallelism_threads(threads)
tf.config.threading.set_inter_op_parallelism_threads(threads)
import keras_hub, keras
model = keras.models.load_model(path, compile=False)
model.compile(sampler="greedy")
total = prompt_len + new_tokens
tokens = np.zeros((1, total), np.int32); tokens[0, :prompt_len] = np.arange(prompt_len) % 90 + 32
mask = np.zeros((1, total), bool); mask[0, :prompt_len] = True
model.generate({"token_ids": tokens, "padding_mask": mask}, stop_token_ids=None)  # compile
times = []
for _ in range(runs):
    t0 = time.perf_counter(); model.generate({"token_ids": tokens, "padding_mask": mask}, stop_token_ids=None)
    times.append(time.perf_counter() - t0)
print(json.dumps({"seconds": times}))
"""


def keras_generate_tokens_per_s(
    path: Path, threads: int, prompt_len: int, new_tokens: int
) -> float:
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            KERAS_RUNNER,
            str(threads),
            str(path),
            str(prompt_len),
            str(new_tokens),
            "5",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    seconds = json.loads(proc.stdout.strip().splitlines()[-1])["seconds"]
    return new_tokens / statistics.median(seconds)


def keras_greedy(model: object, prompt: list[int], new_tokens: int) -> list[int]:
    total = len(prompt) + new_tokens
    tokens = np.zeros((1, total), np.int32)
    mask = np.zeros((1, total), bool)
    tokens[0, : len(prompt)], mask[0, : len(prompt)] = prompt, True
    out = model.generate({"token_ids": tokens, "padding_mask": mask}, stop_token_ids=None)  # type: ignore[attr-defined]
    return [int(t) for t in out["token_ids"][0, len(prompt) :]]


def prompts(n: int, length: int) -> list[list[int]]:
    texts = []
    for name in ("computers", "science", "wisdom", "people"):
        raw = Path(f"/usr/share/games/fortunes/{name}").read_text(encoding="utf-8", errors="ignore")
        texts += [" ".join(e.split()) for e in raw.split("\n%\n") if len(e) > 2 * length]
    rng = np.random.default_rng(0)
    return [list(texts[i].encode("utf-8")[:length]) for i in rng.permutation(len(texts))[:n]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--out", default="lm-out")
    parser.add_argument("--prompt-len", type=int, default=16)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--prompts", type=int, default=20)
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    threads = [int(t) for t in args.threads.split(",")]

    model = tfopt.load(args.model).model
    paths = {}
    for label, precision, quantizer in VARIANTS:
        paths[label] = out / f"lm_{precision}_{quantizer}.tflite"
        started = time.perf_counter()
        tfopt.convert(
            model,
            paths[label],
            precision,
            lm=True,
            max_length=args.max_length,
            quantizer=quantizer,
            overwrite=True,
        )
        print(f"converted {label} in {time.perf_counter() - started:.0f} s", file=sys.stderr)

    # Greedy agreement on real prompts.
    test_prompts = prompts(args.prompts, args.prompt_len)
    new = min(32, args.max_length - args.prompt_len)
    runners = {label: LmRunner(str(p)) for label, p in paths.items()}
    outputs = {label: [r.generate(p, new)[0] for p in test_prompts] for label, r in runners.items()}
    model.compile(sampler="greedy")  # keras-hub samples top-k unless told otherwise
    keras_out = [keras_greedy(model, p, new) for p in test_prompts]
    same_as_keras = float(
        np.mean([a == b for a, b in zip(outputs["float32"], keras_out, strict=True)])
    )
    agreement = {}
    for label, outs in outputs.items():
        ref = outputs["float32"]
        agreement[label] = {
            "identical_prompts": float(np.mean([a == b for a, b in zip(outs, ref, strict=True)])),
            "token_agreement": float(
                np.mean(
                    [np.mean(np.array(a) == np.array(b)) for a, b in zip(outs, ref, strict=True)]
                )
            ),
        }

    rows, records = (
        [],
        {
            "keras_generate": {},
            "tflite": {},
            "agreement": agreement,
            "float32_equals_keras": same_as_keras,
        },
    )
    for t in threads:
        kps = keras_generate_tokens_per_s(Path(args.model), t, args.prompt_len, args.new_tokens)
        records["keras_generate"][t] = kps
        rows.append(["keras-hub generate()", t, "-", "-", round(kps, 1), "-", "-", "-"])
        for label, path in paths.items():
            settings = tfopt.BenchSettings(
                threads=(t,),
                runs=5,
                lm=True,
                prompt_len=args.prompt_len,
                new_tokens=args.new_tokens,
            )
            r = tfopt.bench(path, settings).results[0]
            e2e = args.new_tokens / (
                (r["prefill_ms"] + r["decode_step_us"]["mean"] * (args.new_tokens - 1) / 1000)
                / 1000
            )
            records["tflite"].setdefault(label, {})[t] = {**r, "end_to_end_tokens_per_s": e2e}
            a = agreement[label]
            rows.append(
                [
                    f"TFLite {label}",
                    t,
                    round(r["ttft_ms"], 2),
                    round(r["decode_tokens_per_s"]["p50"], 1),
                    round(e2e, 1),
                    round(path.stat().st_size / 1e6, 2),
                    f"{100 * a['identical_prompts']:.0f}%",
                    f"{100 * a['token_agreement']:.1f}%",
                ]
            )
    headers = [
        "runtime",
        "threads",
        "TTFT ms",
        "decode tok/s p50",
        "end-to-end tok/s",
        "size MB",
        "greedy = float32 (prompts)",
        "token agreement",
    ]
    machine = tfopt.bench(paths["float32"], tfopt.BenchSettings((1,), runs=3)).machine
    text = (
        f"{markdown_table(headers, rows)}\n\nprompt {args.prompt_len} tokens, {args.new_tokens} new tokens, "
        f"export length {args.max_length}; float32 TFLite greedy equals keras-hub generate() on "
        f"{100 * same_as_keras:.0f}% of {len(test_prompts)} real prompts ({new} tokens each); "
        f"machine: {machine['cpu']}, {machine['cores']} cores\n"
    )
    (out / "results.md").write_text(text)
    (out / "results.json").write_text(
        json.dumps({**records, "machine": machine}, indent=2, default=str)
    )
    print(text)


if __name__ == "__main__":
    main()
