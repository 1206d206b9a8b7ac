"""A free (sequence) dimension is the user's: convert fixes it in the written file (from the
data, --seq-len or --input-shape), and bench times it at the user's length or refuses.

The model is what a user brings: a 1-D CNN whose input length is free, `Input(shape=(None, 4))`,
trained briefly with `fit` and saved with `model.save`. Every shape is read back from the
written file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from tests.conftest import SEED, invoke

LENGTH = 300  # the data's own length


def _conv1d(k: Any) -> Any:
    k.utils.set_random_seed(SEED)
    model = k.Sequential(
        [
            k.Input((None, 4), name="signal"),  # auto names depend on test order
            k.layers.Conv1D(8, 5, activation="relu"),  # "valid": a length under 5 cannot run
            k.layers.GlobalAveragePooling1D(),
            k.layers.Dense(3, activation="softmax"),
        ]
    )
    model.compile("adam", "sparse_categorical_crossentropy")
    return model


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory, tf_keras: Any, keras3: Any) -> dict[str, Path]:
    """The CNN in both Keras worlds (.h5 from tf_keras, .keras from Keras 3), trained a few
    steps, a TF SavedModel with a free length, and data of length 300 (.npy)."""
    from tfopt import keras_worlds

    d = tmp_path_factory.mktemp("free")
    rng = np.random.default_rng(SEED)
    x = rng.random((16, LENGTH, 4), dtype=np.float32)
    y = rng.integers(0, 3, 16)
    paths = {"h5": d / "cnn.h5", "keras": d / "cnn.keras", "saved_model": d / "sm",
             "data": d / "x300.npy"}  # fmt: skip
    for k, path in ((tf_keras, paths["h5"]), (keras3, paths["keras"])):
        model = _conv1d(k)
        model.fit(x, y, epochs=2, batch_size=8, verbose=0)
        model.save(path)
    tf = keras_worlds.tf()

    class Pool(tf.Module):
        def __init__(self) -> None:
            self.w = tf.Variable(rng.random((4, 3), dtype=np.float32))

        @tf.function(input_signature=[tf.TensorSpec([None, None, 4], tf.float32, name="x")])
        def __call__(self, x: Any) -> Any:
            return {"y": tf.reduce_mean(tf.matmul(x, self.w), axis=1)}

    module = Pool()
    tf.saved_model.save(module, str(paths["saved_model"]), signatures={"serving_default": module.__call__})
    np.save(paths["data"], x)
    return paths


def _length(path: Path) -> list[int]:
    """The written file's input shape signature (-1 = free), batch aside."""
    from ai_edge_litert.interpreter import Interpreter

    (detail,) = Interpreter(model_path=str(path)).get_input_details()
    return [int(d) for d in detail["shape_signature"][1:]]


@pytest.mark.parametrize("source", ["h5", "keras", "saved_model"])
def test_convert_fixes_the_free_length_in_the_file(
    runner: CliRunner, sources: dict[str, Path], tmp_path: Path, source: str
) -> None:
    """--seq-len 200 and int8 calibrated on length-300 data: the file takes 200 and 300, and the
    note says what the file has."""
    model = sources[source]
    out = tmp_path / "seq200.tflite"
    res = invoke(runner, "convert", model, "-o", out, "--seq-len", "200")
    assert res.exit_code == 0, res.output
    assert _length(out) == [200, 4]
    assert "fixed to (200, 4) by --seq-len 200 in the written file" in res.stderr

    out = tmp_path / "int8.tflite"
    res = invoke(runner, "convert", model, "-o", out, "--precision", "int8",
                 "--calibration", sources["data"])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert _length(out) == [LENGTH, 4]
    assert f"fixed to ({LENGTH}, 4) from the data in the written file" in res.stderr


@pytest.mark.parametrize("source", ["h5", "keras"])
def test_convert_float_takes_the_length_of_the_check_data_or_input_shape(
    runner: CliRunner, sources: dict[str, Path], tmp_path: Path, source: str
) -> None:
    out = tmp_path / "data.tflite"
    res = invoke(runner, "convert", sources[source], "-o", out, "--check-data", sources["data"])
    assert res.exit_code == 0, res.output
    assert _length(out) == [LENGTH, 4]
    assert f"fixed to ({LENGTH}, 4) from the data in the written file" in res.stderr

    out = tmp_path / "shape.tflite"
    res = invoke(runner, "convert", sources[source], "-o", out, "--input-shape", "?,250,4")
    assert res.exit_code == 0, res.output
    assert _length(out) == [250, 4]


@pytest.fixture(scope="module")
def free_tflite(sources: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The CNN with its length left free (`--dynamic-length`): input [1, -1, 4]."""
    from tfopt.conversion import convert

    out = tmp_path_factory.mktemp("free_tflite") / "free.tflite"
    convert(sources["h5"], out, "float32", dynamic_length=True, check_data=sources["data"])
    assert _length(out) == [-1, 4]
    return out


def _bench(runner: CliRunner, model: Path, *args: Any) -> dict[str, Any]:
    res = invoke(runner, "bench", model, "--threads", "1", "--runs", "20", "--json", *args)
    assert res.exit_code == 0, res.output
    (entry,) = json.loads(res.stdout)["results"]
    return entry


def test_bench_refuses_a_free_length_without_one(runner: CliRunner, free_tflite: Path) -> None:
    res = invoke(runner, "bench", free_tflite, "--threads", "1", "--runs", "5")
    assert res.exit_code == 1
    (line,) = res.output.strip().splitlines()
    assert "input 'signal' leaves dimension 1 free" in line, line
    assert "--data" in line and "--seq-len" in line and "--input-shape signal=1,N,4" in line


def test_bench_times_the_users_length(
    runner: CliRunner, free_tflite: Path, sources: dict[str, Path]
) -> None:
    assert _bench(runner, free_tflite, "--seq-len", "500")["input_shapes"] == {"signal": [1, 500, 4]}
    by_data = _bench(runner, free_tflite, "--data", sources["data"])
    assert by_data["input_shapes"] == {"signal": [1, LENGTH, 4]}
    assert _bench(runner, free_tflite, "--input-shape", "1,700,4")["input_shapes"] == {
        "signal": [1, 700, 4]
    }
    # the length is really timed: 1000x the work is far slower
    short = _bench(runner, free_tflite, "--seq-len", "20")["latency_us"]["p50"]
    long = _bench(runner, free_tflite, "--seq-len", "20000")["latency_us"]["p50"]
    assert long > 10 * short, (short, long)
    table = invoke(runner, "bench", free_tflite, "--threads", "1", "--runs", "5", "--seq-len", "500")
    assert table.exit_code == 0 and "1x500x4" in table.stdout, table.output


def test_bench_shape_options_are_checked(
    runner: CliRunner, free_tflite: Path, sources: dict[str, Path]
) -> None:
    misfit = invoke(runner, "bench", free_tflite, "--input-shape", "signal=1,700,3")
    assert misfit.exit_code == 1 and "does not fit input 'signal'" in misfit.output
    both = invoke(runner, "bench", free_tflite, "--seq-len", "9", "--data", sources["data"])
    assert both.exit_code == 1 and "drop --seq-len" in both.output


def test_targets_pass_the_shape(free_tflite: Path) -> None:
    """The runtime gets --input-shape; benchmark_model on a phone gets its own input flags."""
    from tfopt.targets import AdbTarget, RunSpec
    from tfopt.targets.adb import input_layer_flags

    spec = RunSpec(accelerator="cpu", threads=1, warmup=0, min_seconds=1.0, runs=5, xnnpack=True,
                   pin=None, input_shapes=(("signal", (1, 500, 4)),))
    assert spec.runtime_args(None)[-2:] == ["--input-shape", "signal=1,500,4"]
    flags = input_layer_flags(free_tflite.read_bytes(), {"signal": (1, 500, 4)})
    assert flags == ["--input_layer=serving_default_signal:0", "--input_layer_shape=1,500,4"]
    target = AdbTarget("emulator-5554", "bm")
    assert flags[1] in target.command(f"{target.device_dir}/m.tflite", spec, flags)
