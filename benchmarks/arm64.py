"""ARM64 against x86: the same .tflite files run on this machine and on the ARM64 board
(`make arm64-board`: Debian arm64 under qemu-user, reached over ssh like any Linux board), on
real data, per precision. BENCHMARKS.md section 15.

    python benchmarks/arm64.py [--board DIR] [--images 1000] [--sentences 32]  (make bench-arm64)

1. A Fashion-MNIST CNN (the example's, trained 2 epochs on 20,000 real images), float32,
   float16, dynamic, int8 and int16x8: max and mean |ARM - x86| of the class probabilities,
   top-1 agreement, and accuracy on each machine over the first test images.
2. The real all-MiniLM-L6-v2 on fortunes sentences (seq 128), float32, float16 and dynamic:
   max |ARM - x86| of the token vectors and the cosine of the mean-pooled sentence embeddings.

ARM timings are taken under emulation and are printed only as "not meaningful": qemu-user
translates every NEON instruction, so they say nothing about a real board's speed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "examples" / "fashion_mnist"))

import tfopt  # noqa: E402
from tests import board  # noqa: E402
from tfopt.report import markdown_table  # noqa: E402
from tfopt.targets import SshTarget  # noqa: E402
from tfopt.targets.base import RunSpec  # noqa: E402
from tfopt.validate import run_tflite, sentence_embeddings  # noqa: E402

CNN_PRECISIONS = ("float32", "float16", "dynamic", "int8", "int16x8")
LM_PRECISIONS = ("float32", "float16", "dynamic")


def build(out: Path, images: int, sentences: int) -> list[dict[str, Any]]:
    """[{model, precision, path, x}] for both models, every precision."""
    import minilm
    from run import load_fashion_mnist, train_cnn  # type: ignore[import-not-found]

    data = load_fashion_mnist(20000)
    cnn = train_cnn(data, epochs=2)
    np.savez(out / "calib.npz", x=data["x_train"][:200])
    x_cnn = {"image": data["x_val"][:images].astype(np.float32)}
    jobs = []
    for precision in CNN_PRECISIONS:
        path = out / f"fmnist_{precision}.tflite"
        tfopt.convert(cnn, path, precision, calibration=out / "calib.npz", overwrite=True)
        jobs.append({"model": "Fashion-MNIST CNN", "precision": precision, "path": path,
                     "x": x_cnn, "y": data["y_val"][:images]})  # fmt: skip
    tokens = minilm.tokenize(minilm.sentences(sentences), 128)
    bert = tfopt.load(minilm.minilm_folder()).model
    for precision in LM_PRECISIONS:
        path = out / f"minilm_{precision}.tflite"
        tfopt.convert(bert, path, precision, seq_len=128, overwrite=True, check=False)
        jobs.append({"model": "all-MiniLM-L6-v2", "precision": precision, "path": path,
                     "x": tokens, "y": None})  # fmt: skip
    return jobs


def measure(job: dict[str, Any], target: SshTarget, floats: dict[str, Any]) -> dict[str, Any]:
    """One file on both machines; `floats` keeps each model's float32 x86 outputs (the quality
    reference of the later precisions)."""
    from tfopt.data import Dataset

    x86 = run_tflite(str(job["path"]), Dataset(job["x"]), threads=1)
    arm, _ = target.outputs(job["path"], job["x"], threads=1, timeout=3600)
    reference = floats.setdefault(job["model"], x86)
    row: dict[str, Any] = {"model": job["model"], "precision": job["precision"],
                           "samples": len(next(iter(job["x"].values())))}  # fmt: skip
    if job["y"] is not None:
        (a,), (b,) = x86.values(), arm.values()
        row.update(
            max_abs=float(np.max(np.abs(a - b))),
            mean_abs=float(np.mean(np.abs(a - b))),
            identical=bool(np.array_equal(a, b)),
            top1_agreement=float(np.mean(a.argmax(-1) == b.argmax(-1))),
            accuracy_x86=float(np.mean(a.argmax(-1) == job["y"])),
            accuracy_arm=float(np.mean(b.argmax(-1) == job["y"])),
        )
    else:
        mask = job["x"]["padding_mask"]
        ea, eb = sentence_embeddings(x86, mask, "mean"), sentence_embeddings(arm, mask, "mean")
        seq_a, seq_b = x86["sequence_output"], arm["sequence_output"]
        ef = sentence_embeddings(reference, mask, "mean")  # float32 on x86: the quality bar
        row.update(
            x86_cosine_to_float32=float(np.mean(np.sum(ea * ef, axis=1))),
            arm_cosine_to_float32=float(np.mean(np.sum(eb * ef, axis=1))),
        )
        row.update(
            max_abs=float(np.max(np.abs(seq_a - seq_b))),
            mean_abs=float(np.mean(np.abs(seq_a - seq_b))),
            identical=bool(np.array_equal(seq_a, seq_b)),
            min_cosine=float(np.min(np.sum(ea * eb, axis=1))),
            mean_cosine=float(np.mean(np.sum(ea * eb, axis=1))),
        )
    spec = RunSpec(accelerator="cpu", threads=1, warmup=1, min_seconds=0.01, runs=5, xnnpack=True, pin=None)
    timed = target.measure(job["path"], spec, None, timeout=3600)
    row["arm_emulated_p50_ms"] = round(timed["latency_us"]["p50"] / 1000, 3)
    row["arm_machine"] = timed["machine"]
    return row


def report(rows: list[dict[str, Any]]) -> str:
    cnn = [r for r in rows if "top1_agreement" in r]
    lm = [r for r in rows if "min_cosine" in r]
    lines = [
        markdown_table(
            ["model", "precision", "samples", "max abs ARM-x86", "mean abs", "bit-identical",
             "top-1 agreement", "accuracy x86", "accuracy ARM", "ARM p50 ms (emulated, not meaningful)"],
            [[r["model"], r["precision"], r["samples"], f"{r['max_abs']:.3g}", f"{r['mean_abs']:.3g}",
              "yes" if r["identical"] else "no", f"{r['top1_agreement']:.4f}",
              f"{r['accuracy_x86']:.4f}", f"{r['accuracy_arm']:.4f}", r["arm_emulated_p50_ms"]]
             for r in cnn],
        ),  # fmt: skip
        "",
        markdown_table(
            ["model", "precision", "sentences", "max abs ARM-x86 (tokens)", "mean abs",
             "bit-identical", "sentence cosine ARM-x86 min", "mean",
             "mean cosine to float32: x86", "ARM", "ARM p50 ms (emulated, not meaningful)"],
            [[r["model"], r["precision"], r["samples"], f"{r['max_abs']:.3g}", f"{r['mean_abs']:.3g}",
              "yes" if r["identical"] else "no", f"{r['min_cosine']:.6f}", f"{r['mean_cosine']:.6f}",
              f"{r['x86_cosine_to_float32']:.6f}", f"{r['arm_cosine_to_float32']:.6f}",
              r["arm_emulated_p50_ms"]] for r in lm],
        ),  # fmt: skip
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--board", type=Path, default=board.BOARD)
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--sentences", type=int, default=32)
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()
    os.environ["TFOPT_ARM64_BOARD"] = str(args.board)
    board.BOARD = args.board
    reason = board.problem()
    if reason:
        sys.exit(reason)
    with tempfile.TemporaryDirectory(prefix="tfopt-arm64-") as tmp:
        jobs = build(Path(tmp), args.images, args.sentences)
        rows: list[dict[str, Any]] = []
        floats: dict[str, Any] = {}
        with board.board_sshd() as server:
            target = SshTarget(server.url, str(server.key), [
                f"UserKnownHostsFile={server.known_hosts}", "StrictHostKeyChecking=yes"])  # fmt: skip
            try:
                for job in jobs:
                    rows.append(measure(job, target, floats))
                    print(json.dumps({k: v for k, v in rows[-1].items() if k != "arm_machine"}),
                          flush=True)  # fmt: skip
            finally:
                target.close()
    doc = {"host": {"machine": platform.machine(), "processor": platform.processor()},
           "command": "make bench-arm64", "rows": rows}  # fmt: skip
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "arm64.json").write_text(json.dumps(doc, indent=2) + "\n")
    (args.results / "arm64.md").write_text(report(rows))
    print(report(rows))


if __name__ == "__main__":
    main()
