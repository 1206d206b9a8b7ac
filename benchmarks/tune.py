"""Evidence for `tfopt tune`: the winner against the shipped presets, and the search's cost.

    python benchmarks/tune.py minilm [--out tune-out]   # all-MiniLM-L6-v2 on fortunes, cosine>=0.995
    python benchmarks/tune.py fmnist [--out tune-out]   # Fashion-MNIST CNN, top1_drop<=0.005, recipes
    python benchmarks/tune.py cnn224 [--out tune-out]   # MobileNetV2 224 of peers.py, channel pruning
    python benchmarks/tune.py cost   [--out tune-out]   # trials/hour: 1 node vs a 2-node local cluster

Each mode runs `tfopt.tune` for real and copies its tune.json (every trial, the re-timed front
runners, the presets timed beside the winner at 1 and 2 threads) and tune.md to
benchmarks/results/tune_<mode>.{json,md}. Run on a quiet machine: the presets and the winner
are timed interleaved in one run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import tfopt  # noqa: E402
from tests.ray_nodes import local_cluster  # noqa: E402
from tfopt.recipes import shipped  # noqa: E402
from tfopt.tuning import Space  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def minilm(out: Path) -> dict[str, Any]:
    from benchmarks.minilm import minilm_folder, sentences, tokenize

    data = out / "minilm_fortunes.npz"
    if not data.exists():
        np.savez(data, **tokenize(sentences(300), 64))  # 100 calibrate, 200 judge
    return tfopt.tune(minilm_folder(), data, "cosine>=0.995", out / "minilm", overwrite=True, resume=True,
                      space=Space(calibration_sizes=(100,)), eval_samples=200,
                      min_seconds=0.5).to_dict()  # fmt: skip


def fmnist(out: Path, limit: int) -> dict[str, Any]:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples" / "fashion_mnist"))
    from run import load_fashion_mnist, train_cnn  # type: ignore[import-not-found]

    model, data = out / "fmnist_cnn.h5", out / "fmnist.npz"
    split = load_fashion_mnist(limit)
    if not model.exists():
        train_cnn(split, epochs=3).save(model)  # saved as users do: model.save
    np.savez(data, x_train=split["x_train"], y_train=split["y_train"],
             x_val=split["x_val"][:1000], y_val=split["y_val"][:1000])  # fmt: skip
    return tfopt.tune(model, data, "top1_drop<=0.005", out / "fmnist", overwrite=True, resume=True,
                      space=Space(calibration_sizes=(100, 400),
                                  recipes=tuple(shipped())),
                      epochs=1, eval_samples=1000, min_seconds=0.5).to_dict()  # fmt: skip


def cnn224(out: Path, peers_out: Path) -> dict[str, Any]:
    """The trained MobileNetV2 1.0 at 224 of `peers.py` (cached in PEERS_OUT/cnn224/, trained on
    first use, 21 min): converter precisions and the channel-pruning recipes of the peers table,
    fine-tuned as there, under its gate (accuracy within 1 point of the Keras model)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from peers_cnn import (  # type: ignore[import-not-found]
        CNN224_RECIPES,
        RECIPE_BATCH,
        RECIPE_EPOCHS,
        cached_model,
        fashion_mnist,
        recipe_data,
        train_cnn224,
    )

    folder, source, _ = cached_model(peers_out / "cnn224", "mobilenetv2_100_fmnist224.keras",
                                     train_cnn224, "MobileNetV2 1.0 at 224")  # fmt: skip
    data = recipe_data(folder, *fashion_mnist("train"))
    space = Space(precisions=("float32", "float16", "dynamic", "int8"), aeq_precisions=(),
                  calibration_sizes=(100,), recipes=tuple(CNN224_RECIPES), selective_float=False,
                  threads=(1, 2), xnnpack=(True,), cpu_option_sets=())  # fmt: skip
    return tfopt.tune(source, data, "top1_drop<=0.01", out / "cnn224", overwrite=True,
                      space=space, epochs=RECIPE_EPOCHS, batch_size=RECIPE_BATCH,
                      eval_samples=500, min_seconds=1.0).to_dict()  # fmt: skip


def _digits(out: Path) -> tuple[Path, Path]:
    from tfopt import keras_worlds
    from tfopt.demo import digits_split

    model, data = out / "digits.keras", out / "digits.npz"
    if not model.exists():
        keras = keras_worlds.module(keras_worlds.World.KERAS3)
        x_train, y_train, x_test, y_test = digits_split()
        keras.utils.set_random_seed(0)
        m = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(16, 3, activation="relu"),
                              keras.layers.Flatten(), keras.layers.Dense(64, activation="relu"),
                              keras.layers.Dense(10, activation="softmax")])  # fmt: skip
        m.compile("adam", "sparse_categorical_crossentropy")
        m.fit(x_train, y_train, epochs=10, batch_size=64, verbose=0)
        m.save(model)
        np.savez(data, x=x_test, y=y_test)
    return model, data


def _cli_tune(model: Path, data: Path, out: Path, *extra: str, env: dict[str, str]) -> dict[str, Any]:
    """One search as a user runs it, in its own process (one Ray session per process)."""
    args = [str(Path(sys.executable).parent / "tfopt"), "tune", str(model), "--data", str(data),
            "--goal", "top1_drop<=0.01", "-o", str(out), "--overwrite", "--json",
            "--calibration-sizes", "50,100", "--threads", "1", "--xnnpack", "on",
            "--no-selective-float", "--no-presets", "--repeats", "1", "--min-seconds", "0.1",
            *extra]  # fmt: skip
    done = subprocess.run(args, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.exit(done.stderr.strip().splitlines()[-1])
    return json.loads(done.stdout)


def cost(out: Path) -> dict[str, Any]:
    """The same search on one node (1 CPU) and on two nodes of 1 CPU each."""
    model, data = _digits(out)
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}
    runs = {"1 node, 1 CPU": _cli_tune(model, data, out / "cost-1node", "--ray-cpus", "1", env=env)}
    with local_cluster(nodes=2, object_store=200_000_000) as address:
        runs["2 nodes, 1 CPU each"] = _cli_tune(model, data, out / "cost-2nodes", "--ray-address",
                                                address, env=env)  # fmt: skip
    return {
        name: {"trials": r["trials_run"], "seconds": r["seconds"],
               "trials_per_hour": r["trials_per_hour"], "nodes_used": r["nodes_used"],
               "winner": r["winner"]["label"]}
        for name, r in runs.items()
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("mode", choices=["minilm", "fmnist", "cnn224", "cost"])
    parser.add_argument("--out", default="tune-out")
    parser.add_argument("--limit-train", type=int, default=12000)
    parser.add_argument("--peers-out", default="peers-out", help="cnn224: where peers.py keeps it")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    if args.mode == "minilm":
        doc = minilm(out)
    elif args.mode == "fmnist":
        doc = fmnist(out, args.limit_train)
    elif args.mode == "cnn224":
        doc = cnn224(out, Path(args.peers_out))
    else:
        doc = cost(out)
    doc = {"command": f"python benchmarks/tune.py {args.mode}", "wall_s": round(time.time() - started),
           "machine": f"{os.cpu_count()} cores", **doc}  # fmt: skip
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"tune_{args.mode}.json").write_text(json.dumps(doc, indent=1, default=float))
    if args.mode != "cost":
        shutil.copyfile(out / args.mode / "tune.md", RESULTS / f"tune_{args.mode}.md")
        shutil.copyfile(out / args.mode / "pareto.png", RESULTS / f"tune_{args.mode}_pareto.png")
    print(json.dumps({k: v for k, v in doc.items() if k not in ("trials",)}, default=float)[:3000])


if __name__ == "__main__":
    main()
