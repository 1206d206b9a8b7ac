"""`tfopt tune` on real Ray: a two-node cluster on 127.0.0.1, SIGTERM and --resume, bad inputs.

The model is what a user brings: a Keras 3 Sequential trained with `fit` on the real digits and
saved with `model.save`. Every trial is a real conversion, a real interpreter run and a real timing.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import tfopt
from tests.conftest import SEED, invoke
from tests.ray_nodes import local_cluster
from tfopt.recipes import load_recipe
from tfopt.tuning import Space
from tfopt.tuning.goal import parse_goal

BIN = Path(sys.executable).parent
# A small space: three converter files, one quantizer scheme, and the selective-float ladder
# (objective size: the int8 file that misses the gate is smaller than every file that meets it).
SPACE = dict(precisions=("float32", "dynamic", "int8"), aeq_precisions=("int8",),
             calibration_sizes=(100,), recipes=(), threads=(1,), xnnpack=(True,),
             cpu_option_sets=(("api=compiled",),))  # fmt: skip
CLI_SPACE = ["--precisions", "float32,dynamic,int8", "--aeq-precisions", "int8",
             "--calibration-sizes", "100", "--recipes", "none", "--threads", "1",
             "--xnnpack", "on", "--cpu-option-set", "none", "--no-presets", "--repeats", "1", "--min-seconds", "0.1"]  # fmt: skip
GOAL = "sqnr_db>=30"


@pytest.fixture(scope="module")
def user_files(keras3: Any, digits: dict[str, np.ndarray], tmp_path_factory: Any) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tune")
    keras3.utils.set_random_seed(SEED)
    model = keras3.Sequential([
        keras3.Input((8, 8, 1)),
        keras3.layers.Conv2D(8, 3, activation="relu"),
        keras3.layers.Flatten(),
        keras3.layers.Dense(32, activation="relu"),
        keras3.layers.Dense(10, activation="softmax"),
    ])  # fmt: skip
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(digits["x_train"], digits["y_train"], epochs=6, batch_size=64, verbose=0)
    files = {"model": root / "digits.keras", "data": root / "digits.npz"}
    model.save(files["model"])
    np.savez(files["data"], x=digits["x_test"], y=digits["y_test"])
    return files


@pytest.fixture(scope="module")
def two_nodes() -> Iterator[str]:
    """A real two-node Ray cluster on 127.0.0.1: `ray start --head`, then a second node joining
    it, each with one CPU; stopped without touching other Ray instances on the machine."""
    with local_cluster(nodes=2) as address:
        yield address


@pytest.fixture(scope="module")
def cluster_run(user_files: dict[str, Path], two_nodes: str, tmp_path_factory: Any) -> Any:
    """One search on the two-node cluster; also the uninterrupted run the resume test matches."""
    out = tmp_path_factory.mktemp("cluster") / "tuned"
    saved = os.environ.get("RAY_AUTH_MODE")
    os.environ["RAY_AUTH_MODE"] = "disabled"  # as the cluster was started
    try:
        result = tfopt.tune(user_files["model"], user_files["data"], GOAL, out, objective="size",
                            space=Space(**SPACE), ray_address=two_nodes, final_repeats=1,
                            min_seconds=0.1, compare_presets=False)  # fmt: skip
    finally:
        if saved is None:
            os.environ.pop("RAY_AUTH_MODE")
        else:
            os.environ["RAY_AUTH_MODE"] = saved
    return result, out


def test_tune_spreads_trials_over_a_two_node_cluster(
    cluster_run: Any, user_files: dict[str, Path]
) -> None:
    result, out = cluster_run
    assert result.cluster["nodes"] == 2
    assert result.nodes_used == 2, [r.get("node") for r in result.trials]
    phases = {r["phase"] for r in result.trials}
    assert {"convert", "quantizer", "selective-float"} <= phases, phases
    assert result.sensitivity and result.sensitivity[0]["ranking"]
    timed = {tuple(t["runtime"]["cpu_options"]) for r in result.trials if r.get("passed")
             for t in r["timings"] if t["status"] == "ok"}  # fmt: skip
    assert timed == {(), ("api=compiled",)}  # the LiteRT CompiledModel API is a runtime setting
    assert all(r["status"] == "ok" for r in result.trials), [r.get("reason") for r in result.trials]
    # The winner meets the goal when measured again, from the files on disk.
    again = tfopt.compare_files(str(user_files["model"]), str(out / "best.tflite"),
                                str(user_files["data"]))  # fmt: skip
    assert min(o.sqnr_db for o in again.outputs) >= 30
    doc = json.loads((out / "tune.json").read_text())
    assert doc["winner"]["key"] == result.winner["key"]
    smallest = min(r["size_bytes"] for r in result.trials if r.get("passed"))
    assert result.winner["size_bytes"] == smallest
    assert (out / "pareto.png").read_bytes()[:4] == b"\x89PNG"
    recipe = load_recipe(out / "best.yaml")
    assert recipe.stages[-1].precision == result.winner["variant"]["precision"]
    assert recipe.runtime is not None and recipe.runtime.to_dict() == result.winner["runtime"]


def test_best_yaml_rebuilds_the_winner_with_optimize(
    cluster_run: Any, user_files: dict[str, Path], runner: Any, tmp_path: Path
) -> None:
    """`tfopt optimize MODEL --recipe best.yaml --data DATA` makes the winner's bytes again."""
    _, out = cluster_run
    result = invoke(runner, "optimize", user_files["model"], "--recipe", out / "best.yaml",
                    "--data", user_files["data"], "-o", tmp_path / "again")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert (tmp_path / "again" / "model.tflite").read_bytes() == (out / "best.tflite").read_bytes()


def _tune_cli(out: Path, files: dict[str, Path], *extra: str) -> subprocess.Popen[str]:
    args = [str(BIN / "tfopt"), "tune", str(files["model"]), "--data", str(files["data"]),
            "--goal", GOAL, "-o", str(out), "--objective", "size", "--ray-cpus", "1",
            *CLI_SPACE, *extra]  # fmt: skip
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _starts(out: Path) -> list[str]:
    log = out / ".tune" / "starts.jsonl"
    return [json.loads(line)["key"] for line in log.read_text().splitlines()] if log.exists() else []


def test_sigterm_then_resume_repeats_no_trial(
    user_files: dict[str, Path], cluster_run: Any, tmp_path: Path
) -> None:
    reference = cluster_run[0].to_dict()  # the same search, uninterrupted

    out = tmp_path / "cut"
    first = _tune_cli(out, user_files)
    trials = out / ".tune" / "trials"
    deadline = time.time() + 240
    while time.time() < deadline and len(list(trials.glob("*.json"))) < 2:
        time.sleep(0.2)
    first.send_signal(signal.SIGTERM)
    _, err = first.communicate(timeout=120)
    assert first.returncode == 1, err[-2000:]
    assert "rerun with --resume" in err.strip().splitlines()[-1]
    finished = {p.stem for p in trials.glob("*.json")}
    assert finished and not (out / "best.tflite").exists()
    starts_before = len(_starts(out))

    second = _tune_cli(out, user_files, "--resume", "--json")
    stdout, stderr = second.communicate(timeout=300)
    assert second.returncode == 0, stderr[-2000:]
    resumed = json.loads(stdout)
    again = _starts(out)[starts_before:]
    assert not finished & set(again), "a finished trial ran again"
    assert resumed["trials_resumed"] >= len(finished)
    passing = {r["key"] for r in reference["trials"] if r.get("passed")}
    assert {r["key"] for r in resumed["trials"] if r.get("passed")} == passing
    assert resumed["winner"]["key"] == reference["winner"]["key"]


def test_tune_takes_a_tf_keras_h5_file(files: dict[str, Path], tmp_path: Path) -> None:
    """The other Keras world: a tf_keras model trained with `fit` and saved as .h5, on local Ray."""
    out = tmp_path / "h5"
    result = tfopt.tune(files["h5"], files["test"], "top1_drop<=0.02", out, ray_cpus=1,
                        space=Space(precisions=("float32", "dynamic"), aeq_precisions=(),
                                    threads=(1,), xnnpack=(True,), cpu_option_sets=(),
                                    selective_float=False),
                        final_repeats=1, min_seconds=0.1, compare_presets=False)  # fmt: skip
    assert {r["variant"]["label"] for r in result.trials} == {"float32", "dynamic"}
    assert all(r["status"] == "ok" and r["passed"] for r in result.trials)
    assert (out / "best.tflite").read_bytes()[4:8] == b"TFL3"


def test_unreachable_ray_address_is_one_line(user_files: dict[str, Path], runner: Any,
                                             tmp_path: Path) -> None:  # fmt: skip
    result = invoke(runner, "tune", user_files["model"], "--data", user_files["data"], "--goal",
                    GOAL, "-o", tmp_path / "o", "--ray-address", "127.0.0.1:1", *CLI_SPACE)  # fmt: skip
    assert result.exit_code == 1
    assert "cannot reach the Ray cluster at 127.0.0.1:1" in result.output
    assert len(result.output.strip().splitlines()) <= 2  # the note on the data split, the error


def test_goal_no_variant_meets_names_the_best_reached(user_files: dict[str, Path], runner: Any,
                                                      tmp_path: Path) -> None:  # fmt: skip
    out = tmp_path / "o"
    result = invoke(runner, "tune", user_files["model"], "--data", user_files["data"], "--goal",
                    "sqnr_db>=500", "-o", out, "--ray-cpus", "1", "--no-selective-float",
                    "--precisions", "dynamic", "--aeq-precisions", "none", "--recipes", "none",
                    "--threads", "1", "--xnnpack", "on")  # fmt: skip
    assert result.exit_code == 1
    last = result.output.strip().splitlines()[-1]
    assert "no variant meets sqnr_db>=500: the best reached sqnr_db" in last, last
    assert "(dynamic)" in last
    assert (out / "tune.json").exists() and not (out / "best.tflite").exists()


@pytest.mark.parametrize(
    "goal, says",
    [
        ("cosine=0.99", "write MEASURE>=NUMBER"),
        ("cosine>=", "write MEASURE>=NUMBER"),
        ("speed>=2", "unknown measure 'speed'"),
        ("cosine<=0.99", "cosine is a floor; write cosine>=0.99"),
        ("top1_drop>=0.01", "top1_drop is a ceiling; write top1_drop<=0.01"),
    ],
    ids=["no-operator", "no-number", "unknown", "floor-as-ceiling", "ceiling-as-floor"],
)
def test_malformed_goal_is_one_line(goal: str, says: str, runner: Any, tmp_path: Path) -> None:
    result = invoke(runner, "tune", tmp_path / "m.keras", "--data", tmp_path / "d.npz",
                    "--goal", goal, "-o", tmp_path / "o")  # fmt: skip
    assert result.exit_code == 1
    assert says in result.output and len(result.output.strip().splitlines()) == 1


def test_report_draws_a_strict_goal_and_a_single_trial() -> None:
    """The views take every goal form parse_goal accepts, and a search with one timed trial."""
    from tfopt import report

    row = {"key": "k", "variant": {"label": "dynamic"}, "phase": "convert", "status": "ok",
           "passed": True, "quality": {"sqnr_db": 40.0}, "size_bytes": 2048, "p50_ms": 0.5,
           "runtime": {"threads": 1, "xnnpack": True, "accelerator": "cpu", "cpu_options": []}}
    doc = {"model": "m.keras", "goals": ["sqnr_db>30"], "objective": "latency", "target": "local",
           "cluster": {"address": "local", "nodes": 1}, "trials": [row], "sensitivity": [],
           "final": [], "winner": None, "presets": [], "seconds": 1.0, "trials_run": 1,
           "trials_resumed": 0, "nodes_used": 1, "trials_per_hour": 3600.0, "out_dir": "o",
           "notes": []}  # fmt: skip
    assert report.render(report.View.TUNE, doc, "png")[:4] == b"\x89PNG"
    assert "no variant meets sqnr_db>30" in report.render(report.View.TUNE, doc, "markdown")


def test_goal_parses_and_judges() -> None:
    g = parse_goal(" top1_drop <= 0.005 ")
    assert g.met({"top1_drop": 0.004}) and not g.met({"top1_drop": 0.006})
    assert not g.met({"top1_drop": None})
    assert str(parse_goal("sqnr_db>=30")) == "sqnr_db>=30"


@pytest.mark.parametrize(
    "option_set, says",
    [("force_fp16=true", "force_fp16 changes the numbers"), ("speed=max", "--cpu-option-set speed=max")],
    ids=["numeric", "unknown"],
)
def test_cpu_option_set_is_checked_before_any_work(
    option_set: str, says: str, runner: Any, tmp_path: Path
) -> None:
    result = invoke(runner, "tune", tmp_path / "m.keras", "--data", tmp_path / "d.npz", "--goal",
                    GOAL, "-o", tmp_path / "o", "--cpu-option-set", option_set)  # fmt: skip
    assert result.exit_code == 1
    assert says in result.output and len(result.output.strip().splitlines()) == 1
