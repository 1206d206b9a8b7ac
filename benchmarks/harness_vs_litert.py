"""tfopt's timing harness against LiteRT's own benchmark tool, on the same models and threads.

For each model and thread count, alternate rounds of `tfopt bench` (fresh process, Interpreter +
XNNPACK) and `python -m ai_edge_litert.tools.benchmark_litert_model` (CompiledModel, CPU), and
compare the median of their per-round medians. Also measures the harness's own cost per invoke
on a one-op model.

LiteRT's tool fills integer inputs with values in [-128, 127]; negative token ids make a BERT's
GATHER fail, so for that tool we replace only its input filler (valid ids in [0, 100), masks in
{0, 1}); its timing loop runs unchanged.

    python benchmarks/harness_vs_litert.py [--rounds 3] [--runs 300]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tfopt import keras_worlds  # noqa: E402
from tfopt.conversion import convert  # noqa: E402
from tfopt.report import markdown_table  # noqa: E402
from tfopt.timing import BenchSettings, bench  # noqa: E402

LITERT_RUNNER = r"""
import sys, json, numpy as np
import ai_edge_litert.tools.benchmark_litert_model as blm
rng = np.random.default_rng(0)
def fill(buf, details):
    dtype = blm.get_numpy_dtype(details.get("dtype", "float32"))
    shape = details.get("shape", [1])
    if np.issubdtype(dtype, np.floating):
        buf.write(rng.random(shape).astype(dtype))
    else:
        name = str(details.get("name", "")).lower()
        high = 2 if any(k in name for k in ("mask", "segment", "type")) else 100
        buf.write(rng.integers(0, high, shape).astype(dtype))
blm.fill_random_input = fill
sys.argv = ["benchmark_litert_model"] + sys.argv[1:]
blm.main()
"""


def build_models(folder: Path) -> dict[str, Path]:
    """A small CNN (tf_keras, 160x160x3), a small keras-hub BERT (4 layers, hidden 256, seq 128),
    and a one-op model whose latency is the harness's own per-invoke cost."""
    keras = keras_worlds.module(keras_worlds.World.TF_KERAS)
    keras.utils.set_random_seed(0)
    x = inputs = keras.Input((160, 160, 3), name="image")
    for filters in (32, 64, 128, 256):
        x = keras.layers.Conv2D(filters, 3, strides=2, padding="same", activation="relu")(x)
        x = keras.layers.DepthwiseConv2D(3, padding="same", activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    cnn = keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(x))

    hub = keras_worlds.keras_hub()
    bert = hub.models.BertBackbone(
        vocabulary_size=30522,
        num_layers=4,
        num_heads=4,
        hidden_dim=256,
        intermediate_dim=1024,
        max_sequence_length=128,
    )
    a = keras.Input((1,), name="a")
    one_op = keras.Model(a, keras.layers.Add()([a, a]))

    paths = {
        "small CNN 160x160 (float32)": folder / "cnn.tflite",
        "keras-hub BERT L4 H256 seq128 (float32)": folder / "bert.tflite",
        "one-op model (ADD)": folder / "one_op.tflite",
    }
    convert(cnn, paths["small CNN 160x160 (float32)"], "float32")
    convert(bert, paths["keras-hub BERT L4 H256 seq128 (float32)"], "float32", seq_len=128)
    convert(one_op, paths["one-op model (ADD)"], "float32")
    return paths


def litert_median_ms(model: Path, threads: int, runs: int) -> float:
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        subprocess.run(
            [
                sys.executable,
                "-c",
                LITERT_RUNNER,
                "--model",
                str(model),
                "--num_threads",
                str(threads),
                "--num_runs",
                str(runs),
                "--warmup_runs",
                "5",
                "--result_json",
                out.name,
            ],
            check=True,
            capture_output=True,
            text=True,
        )
        return json.loads(Path(out.name).read_text())["latency"]["median_ms"]


def tfopt_median_ms(model: Path, threads: int, runs: int) -> float:
    report = bench(model, BenchSettings(threads=(threads,), runs=runs, warmup=5))
    return report.results[0]["latency_us"]["p50"] / 1000


def timer_overhead_us(n: int = 200_000) -> float:
    clock = time.perf_counter_ns
    samples = []
    for _ in range(n):
        t0 = clock()
        samples.append(clock() - t0)
    return statistics.median(samples) / 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--threads", default="1,2")
    parser.add_argument(
        "--out", default=str(ROOT / "benchmarks" / "results" / "harness_vs_litert.json")
    )
    args = parser.parse_args()
    threads = [int(t) for t in args.threads.split(",")]

    rows, records = [], []
    with tempfile.TemporaryDirectory() as tmp:
        models = build_models(Path(tmp))
        machine = bench(next(iter(models.values())), BenchSettings((1,), runs=10)).machine
        overhead_model = models.pop("one-op model (ADD)")
        overhead = {t: tfopt_median_ms(overhead_model, t, 20 * args.runs) * 1000 for t in threads}
        for name, path in models.items():
            for t in threads:
                ours, theirs = [], []
                for _ in range(args.rounds):  # alternate, so drift hits both sides alike
                    ours.append(tfopt_median_ms(path, t, args.runs))
                    theirs.append(litert_median_ms(path, t, args.runs))
                a, b = statistics.median(ours), statistics.median(theirs)
                ratio = a / b
                rows.append([name, t, round(a, 4), round(b, 4), round(ratio, 3)])
                records.append(
                    {
                        "model": name,
                        "threads": t,
                        "tfopt_p50_ms": ours,
                        "litert_median_ms": theirs,
                        "ratio": ratio,
                    }
                )
                print(
                    f"{name} t={t}: tfopt {a:.4f} ms, LiteRT {b:.4f} ms, ratio {ratio:.3f}",
                    file=sys.stderr,
                )
    timer = timer_overhead_us()
    doc = {
        "machine": machine,
        "rounds": args.rounds,
        "runs": args.runs,
        "timer_overhead_us": timer,
        "one_op_invoke_p50_us": overhead,
        "rows": records,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(doc, indent=2) + "\n")
    print(
        f"Machine: {machine['cpu']}, {machine['cores']} cores, ai-edge-litert "
        f"{machine['ai_edge_litert']}, numpy {machine['numpy']}\n"
    )
    print(
        markdown_table(
            ["model", "threads", "tfopt bench p50 (ms)", "LiteRT tool median (ms)", "ratio"], rows
        )
    )
    print(f"\nperf_counter_ns pair (timer) overhead: {timer:.3f} us per invoke")
    for t, us in overhead.items():
        print(
            f"one-op model, {t} thread(s): p50 {us:.2f} us per invoke (upper bound on harness cost)"
        )


if __name__ == "__main__":
    main()
