"""Against the runtimes users would pick instead: ONNX Runtime and OpenVINO, on the same models.

    python benchmarks/peers.py [--models cnn,cnn224,minilm,minilm-own] [--threads 1,2]
                               [--rounds 10] [--out peers-out] [--results-name peers] [--quick]

A user with a Keras model could also export it to ONNX and run it with ONNX Runtime or OpenVINO;
tfopt is only worth it if its `.tflite` is at least as fast at the same quality. Real models,
each from ONE source Keras model (the CNNs: `peers_cnn.py`):

- cnn: a tf_keras MobileNetV2 (alpha 0.35, 96x96x3) trained here on real Fashion-MNIST (cached
  in OUT/cnn/); quality is held-out accuracy, the gate is "within 1 point of the Keras model".
- cnn224: a tf_keras MobileNetV2 (alpha 1.0, 224x224x3, the size apps run) trained here on the
  same data upsampled (progressive resizing, cached in OUT/cnn224/ with its training log); the
  same gate; besides the plain conversions, tfopt variants from `tfopt.optimize` with the
  recipes of `peers_cnn.CNN224_RECIPES` that this tfopt ships (channel pruning, sparsity).
- minilm: the real all-MiniLM-L6-v2 (keras-hub BertBackbone) at sequence length 128 on real
  fortunes sentences; quality is the cosine of mean-pooled embeddings to the Keras model's, the
  gate is a mean cosine of at least 0.99.
- minilm-own: the same MiniLM and sentences, each run at its own length, as
  an app runs one sentence at a time: tfopt converts with `--dynamic-length`, tf2onnx exports a
  free sequence axis. Every runtime resizes per sentence; a round times set + invoke of the same
  SENTENCES real sentences per variant and its figure is their mean.

tfopt's variants come from `tfopt.convert` with its defaults (check on; a refused variant is
recorded and, where it converts, timed from a `check=False` copy that never counts as tfopt's).
The peers: tf2onnx (opset 17) from the same Keras model; ONNX Runtime fp32, `quantize_dynamic`
QInt8/QUInt8 and `quantize_static` QDQ calibrated on the same real samples; OpenVINO on the fp32
ONNX, on the fp32 `.tflite` (its TFLite frontend) and on the QDQ models (its int8 path without
NNCF, which does not install here). Every variant's quality is measured on held-out real data.

Timing: batch 1, one child process per thread count (no TensorFlow loaded there), every variant
loaded once and warmed up, then interleaved rounds: each round times every variant `runs` times
(order rotated per round); the figure is the median of the round medians. Writes OUT/ (models,
a cache) and benchmarks/results/peers.{json,md} (`--results-name`: another name, for a partial
run). The variants: `peers_variants.py`; the child processes: `peers_timing.py`.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

RESULTS = ROOT / "benchmarks" / "results"
RUNS = {"cnn": 100, "cnn224": 20, "minilm": 10, "minilm-own": 1}  # timed invokes (own: passes)
N_EVAL = {"cnn": 3000, "cnn224": 1000, "minilm": 300, "minilm-own": 300}  # held-out samples
N_EVAL_QUICK = {"cnn": 300, "cnn224": 200, "minilm": 40, "minilm-own": 40}

from peers_cnn import prepare_cnn, prepare_cnn224  # noqa: E402 - after the path set-up
from peers_timing import child, key, run_child  # noqa: E402
from peers_variants import (  # noqa: E402
    CALIBRATION,
    SEQ_LEN,
    Variant,
    log,
    peer_variants,
    tfopt_variants,
    to_onnx,
)


def minilm_tokens(n_eval: int) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Tokenized real fortunes: `n_eval` held-out sentences and CALIBRATION others.

    Calibration takes the first sentences, so it is the same whatever `n_eval` is and never
    overlaps the evaluation set of another run that reuses the cached quantized models.
    """
    from minilm import sentences, tokenize

    tokens = tokenize(sentences(CALIBRATION + n_eval), SEQ_LEN)
    return (
        {k: v[CALIBRATION:] for k, v in tokens.items()},
        {k: v[:CALIBRATION] for k, v in tokens.items()},
    )



def prepare_minilm(out: Path, n_eval: int, own: bool = False) -> tuple[list[Variant], dict[str, Any]]:
    """The real MiniLM: every variant's file; held-out tokens and the Keras embeddings. `own`:
    the files take each sentence at its own length (minilm-own)."""
    from minilm import minilm_folder

    import tfopt
    from tfopt import keras_worlds
    from tfopt.validate import sentence_embeddings

    name = "minilm-own" if own else "minilm"
    folder = out / name
    folder.mkdir(parents=True, exist_ok=True)
    tf = keras_worlds.tf()
    model = tfopt.load(minilm_folder()).model
    evals, calib = minilm_tokens(n_eval)
    outputs: dict[str, list[np.ndarray]] = {}
    for start in range(0, n_eval, 32):
        batch = {k: v[start : start + 32] for k, v in evals.items()}
        for name_, value in model(batch, training=False).items():
            outputs.setdefault(name_, []).append(np.asarray(value))
    reference = sentence_embeddings(
        {k: np.concatenate(v) for k, v in outputs.items()}, evals["padding_mask"], "mean"
    )
    plans = [("float32", "float32", "converter"), ("dynamic", "dynamic", "converter"),
             ("int8", "int8", "converter"), ("dynamic (aeq)", "dynamic", "aeq"),
             ("int8 (aeq)", "int8", "aeq")]  # fmt: skip
    if own:  # the peers' static int8 fails the gate at 128 already; no statics here either
        plans = plans[:3]
    variants = tfopt_variants(model, name, folder, calib, plans)
    if not (folder / "model.onnx").exists():
        fn = tf.function(
            lambda token_ids, segment_ids, padding_mask: model(
                {"token_ids": token_ids, "segment_ids": segment_ids,
                 "padding_mask": padding_mask}, training=False)
        )  # fmt: skip
        length = None if own else SEQ_LEN
        signature = [tf.TensorSpec((1, length), tf.int32, name=k) for k in evals]
        to_onnx(fn, signature, folder / "model.onnx")
    variants += peer_variants(name, folder, calib, variants[0].path, statics=not own)
    np.savez(folder / "eval.npz", reference=reference, **evals)
    return variants, {"eval": str(folder / "eval.npz"), "own_length": own}



# ------------------------------------------------------------------ report


def quality_text(v: dict[str, Any]) -> str:
    q = v["quality"]
    if not q:
        return ""
    if "accuracy" in q:
        return f"acc {q['accuracy']:.2f}%"
    return f"cos {q['mean_cosine']:.4f} (worst {q['worst_cosine']:.4f})"


def macs_text(v: dict[str, Any]) -> str:
    return f"{v['macs'] / 1e6:.0f}M MACs" if v.get("macs") else ""


def summarize(doc: dict[str, Any]) -> list[list[Any]]:
    """Per model and thread count: the fastest passing variant of tfopt, ORT and OpenVINO."""
    rows = []
    for name, m in doc["models"].items():
        for threads in doc["threads"]:
            best = {}
            for fam in ("tfopt", "onnxruntime", "openvino"):
                timed = [(v["ms"][str(threads)], v["label"]) for v in m["variants"]
                         if v["family"] == fam and v["passes"] and str(threads) in v["ms"]]  # fmt: skip
                best[fam] = min(timed) if timed else None
            peers = [b for f, b in best.items() if f != "tfopt" and b]
            cells = [f"{b[0]:.2f} ({b[1]})" if b else "-" for b in best.values()]
            ratio = (
                f"{min(peers)[0] / best['tfopt'][0]:.2f}" if peers and best["tfopt"] else "-"
            )
            rows.append([name, threads, *cells, ratio])
    return rows


def markdown(doc: dict[str, Any]) -> str:
    from tfopt.report.tables import markdown_table

    rows = []
    for name, m in doc["models"].items():
        for threads in doc["threads"]:
            for v in m["variants"]:
                ms = v["ms"].get(str(threads))
                gate = "no (tfopt refused)" if v["tfopt_refused"] else (
                    "yes" if v["passes"] else "no")  # fmt: skip
                rows.append([name, threads, v["label"], v["family"],
                             f"{ms:.2f}" if ms is not None else "-",
                             "; ".join(filter(None, [quality_text(v), macs_text(v), v["error"]])),
                             gate])  # fmt: skip
    table = markdown_table(
        ["model", "threads", "variant", "runtime", "ms", "quality", "passes gate"], rows
    )
    summary = markdown_table(
        ["model", "threads", "tfopt best ms", "ONNX Runtime best ms", "OpenVINO best ms",
         "tfopt best / best peer (>1: tfopt faster)"], summarize(doc)  # fmt: skip
    )
    about = "".join(f"\n- {name}: {m['info']['about']}" for name, m in doc["models"].items()
                    if m["info"].get("about"))  # fmt: skip
    m = doc["machine"]
    load = ", ".join(f"{k} {a}->{b}" for k, (a, b) in doc["load_avg_1min"].items())
    return (
        f"{summary}\n\n{table}\n{about}\n\nMachine: {m['cpu']}, {m['cores']} cores; {m['versions']}; "
        f"{doc['date']}; `{doc['command']}`; {doc['rounds']} rounds; 1-min load average before->"
        f"after each timing process: {load}\n"
    )


def machine() -> dict[str, Any]:
    from importlib.metadata import version

    cpu = next((line.split(":", 1)[1].strip() for line in subprocess.run(
        ["lscpu"], capture_output=True, text=True, check=False).stdout.splitlines()
        if line.startswith("Model name")), platform.processor())  # fmt: skip
    names = ("tensorflow", "ai-edge-litert", "onnxruntime", "tf2onnx", "openvino")
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "versions": ", ".join(f"{n} {version(n)}" for n in names),
    }


def run_model(name: str, out: Path, args: argparse.Namespace, doc: dict[str, Any]) -> None:
    """One model: prepare its variants, measure their quality, time them at each thread count."""

    def prepare_own(out: Path, n_eval: int) -> tuple[list[Variant], dict[str, Any]]:
        return prepare_minilm(out, n_eval, own=True)

    prepare = {"cnn": prepare_cnn, "cnn224": prepare_cnn224, "minilm": prepare_minilm,
               "minilm-own": prepare_own}  # fmt: skip
    n_eval = (N_EVAL_QUICK if args.quick else N_EVAL)[name]
    log(f"{name}: preparing every variant ({n_eval} held-out samples)")
    variants, info = prepare[name](out, n_eval)
    runs = max(3, RUNS[name] // 4) if args.quick else RUNS[name]
    spec = out / name / "spec.json"
    todo = [v for v in variants if v.path]
    spec.write_text(json.dumps({"variants": [asdict(v) for v in todo], "info": info,
                                "runs": runs}))  # fmt: skip
    log(f"{name}: quality of {len(todo)} variants")
    measured = {key(v): v for v in run_child("quality", spec)}
    rows = [measured.get(key(v), asdict(v)) for v in variants]
    spec.write_text(json.dumps({"variants": [r for r in rows if r["path"] and not (
        r["error"] and not r["tfopt_refused"])], "info": info, "runs": runs}))  # fmt: skip
    for row in rows:
        row["ms"] = {}
    for t in doc["threads"]:
        log(f"{name}: timing at {t} thread(s), {doc['rounds']} rounds x {runs} runs")
        load = os.getloadavg()[0]  # the machine is shared: say how busy it was
        timings = run_child("time", spec, t, doc["rounds"])
        doc["load_avg_1min"][f"{name}@{t}"] = [round(load, 2), round(os.getloadavg()[0], 2)]
        for label, timing in timings.items():
            row = next(r for r in rows if key(r) == label)
            row["ms"][str(t)] = timing["ms"]
            row.setdefault("round_medians_ms", {})[str(t)] = timing["round_medians_ms"]
    doc["models"][name] = {"info": info, "runs_per_round": runs, "variants": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="cnn,cnn224,minilm,minilm-own")
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--out", default="peers-out")
    parser.add_argument("--results-name", default="peers",
                        help="writes benchmarks/results/NAME.{json,md} (a partial run: another name)")
    parser.add_argument("--quick", action="store_true", help="3 rounds, few samples (development)")
    parser.add_argument("--child", choices=("quality", "time"), help=argparse.SUPPRESS)
    parser.add_argument("--spec", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)
    started = time.perf_counter()
    doc: dict[str, Any] = {
        "command": "python benchmarks/peers.py " + " ".join(sys.argv[1:]),
        "date": datetime.date.today().isoformat(),
        "machine": machine(),
        "threads": [int(t) for t in args.threads.split(",")],
        "rounds": 3 if args.quick else args.rounds,
        "load_avg_1min": {},  # before and after each timing child
        "models": {},
    }
    for name in args.models.split(","):
        run_model(name, Path(args.out), args, doc)
    doc["minutes"] = round((time.perf_counter() - started) / 60, 1)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.results_name}.json").write_text(json.dumps(doc, indent=2))
    text = markdown(doc)
    (RESULTS / f"{args.results_name}.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
