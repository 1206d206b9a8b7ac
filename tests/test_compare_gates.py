"""compare's gates are applied to every output they fit or refused in one line, never skipped;
a quantized input fed data outside its range is named (issue 22, items 2 and 8)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from tests.conftest import SEED, invoke
from tfopt.runtime import feeding


def _scaled(x: np.ndarray) -> np.ndarray:
    """Digits pixels from [0, 1] to [-1, 1], the range the models here are trained on."""
    return (2.0 * x - 1.0).astype(np.float32)


@pytest.fixture(scope="module")
def two_heads(
    tmp_path_factory: pytest.TempPathFactory, tf_keras: Any, digits: dict[str, np.ndarray]
) -> dict[str, Path]:
    """A tf_keras classifier with two softmax heads (the digit, and the digit mod 3) fit on
    real digits in [-1, 1], saved as .h5; calibration/test data; its int8 and int8-I/O files
    converted by the CLI; and a one-output regression model of the digit's value."""
    d = tmp_path_factory.mktemp("gates")
    x_train, x_test = _scaled(digits["x_train"]), _scaled(digits["x_test"])
    y_train, y_test = digits["y_train"], digits["y_test"]
    tf_keras.utils.set_random_seed(SEED)
    inputs = tf_keras.Input((8, 8, 1), name="image")
    h = tf_keras.layers.Conv2D(8, 3, activation="relu")(inputs)
    h = tf_keras.layers.Flatten()(h)
    digit = tf_keras.layers.Dense(10, activation="softmax", name="digit")(h)
    group = tf_keras.layers.Dense(3, activation="softmax", name="group")(h)
    model = tf_keras.Model(inputs, [digit, group])
    model.compile("adam", ["sparse_categorical_crossentropy"] * 2)
    model.fit(x_train, [y_train, y_train % 3], epochs=8, batch_size=64, verbose=0)
    regression = tf_keras.Sequential(
        [tf_keras.Input((8, 8, 1), name="image"), tf_keras.layers.Flatten(),
         tf_keras.layers.Dense(16, activation="relu"), tf_keras.layers.Dense(1, name="value")]
    )  # fmt: skip
    regression.compile("adam", "mse")
    regression.fit(x_train, y_train.astype(np.float32), epochs=2, batch_size=64, verbose=0)
    paths = {
        "h5": d / "two_heads.h5",
        "regression": d / "regression.h5",
        "calib": d / "calib.npz",
        "test": d / "test.npz",
        "pixels": d / "pixels.npz",
        "int8": d / "two_heads_int8.tflite",
        "int8io": d / "two_heads_int8io.tflite",
        "regression_int8": d / "regression_int8.tflite",
    }
    model.save(paths["h5"])
    regression.save(paths["regression"])
    np.savez(paths["calib"], x=x_train[:100])
    np.savez(paths["test"], x=x_test, y=y_test)
    # What a user feeding raw pixels brings: 0..255 values for a model calibrated on [-1, 1).
    np.savez(paths["pixels"], x=(digits["x_test"] * 255).astype(np.float32), y=y_test)
    runner = CliRunner()
    for src, out, extra in [
        ("h5", "int8", ()),
        ("h5", "int8io", ("--int8-io",)),
        ("regression", "regression_int8", ()),
    ]:
        made = invoke(runner, "convert", paths[src], "-o", paths[out], "--precision", "int8",
                      "--calibration", paths["calib"], *extra)  # fmt: skip
        assert made.exit_code == 0, made.output
    return paths


def _compare(runner: CliRunner, paths: dict[str, Path], cand: str, data: str, *extra: str) -> Any:
    return invoke(runner, "compare", paths["h5"], paths[cand], "--data", paths[data], *extra)


def test_top1_per_output_in_json_and_text(runner: CliRunner, two_heads: dict[str, Path]) -> None:
    result = _compare(runner, two_heads, "int8", "test", "--min-top1", "0.5", "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    tops = {o["name"]: o["top1_agreement"] for o in doc["outputs"]}
    assert set(tops) == {"digit", "group"}
    assert all(0.9 <= t <= 1.0 for t in tops.values()), tops
    assert doc["top1_agreement"] == min(tops.values())
    # the labels (0-9) fit only the 10-class head: its accuracy, none for the other
    acc = {o["name"]: o["accuracy"] for o in doc["outputs"]}
    assert acc["group"] is None and acc["digit"]["reference"] > 0.8
    assert doc["accuracy"] == acc["digit"]
    assert doc["passed"] and doc["input_saturation"] == {}  # float I/O: nothing quantized to clip
    text = _compare(runner, two_heads, "int8", "test").stdout
    assert "output 'digit': top-1 agreement" in text and "output 'group': top-1 agreement" in text


def test_unreachable_top1_gate_fails_naming_the_output(
    runner: CliRunner, two_heads: dict[str, Path]
) -> None:
    result = _compare(runner, two_heads, "int8", "test", "--min-top1", "1.01", "--json")
    assert result.exit_code == 1
    doc = json.loads(result.stdout)
    assert doc["passed"] is False
    named = sorted(f.split("'")[1] for f in doc["failures"] if "top-1" in f)
    assert named == ["digit", "group"]
    assert "output 'digit': top-1 agreement" in result.stderr


def test_top1_gate_on_a_regression_model_is_refused(
    runner: CliRunner, two_heads: dict[str, Path]
) -> None:
    result = invoke(runner, "compare", two_heads["regression"], two_heads["regression_int8"],
                    "--data", two_heads["test"], "--min-top1", "0.9")  # fmt: skip
    assert result.exit_code == 1
    (line,) = result.stderr.strip().splitlines()
    assert "--min-top1" in line and "class scores" in line and "'value' (samples, 1)" in line
    without = invoke(runner, "compare", two_heads["regression"], two_heads["regression_int8"],
                     "--data", two_heads["test"], "--json")  # fmt: skip
    assert without.exit_code == 0 and json.loads(without.stdout)["top1_agreement"] is None


def test_gates_with_embedding_are_refused(runner: CliRunner, two_heads: dict[str, Path]) -> None:
    result = _compare(runner, two_heads, "int8", "test", "--embedding", "--min-cosine", "0.9")
    assert result.exit_code == 1
    assert "--min-cosine applies to plain compare, not --embedding" in result.stderr


def test_class_scores_among_several_outputs() -> None:
    from tfopt.validate import compare_outputs, with_thresholds

    rng = np.random.default_rng(SEED)
    logits = rng.normal(size=(50, 4)).astype(np.float32)
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    embedding = rng.normal(size=(50, 16)).astype(np.float32)
    ref = {"probs": probs, "embedding": embedding, "class_logits": logits}
    cand = {k: v + rng.normal(scale=0.01, size=v.shape).astype(np.float32) for k, v in ref.items()}
    diff = compare_outputs(ref, cand)
    tops = {d.name: d.top1_agreement for d in diff.outputs}
    assert tops["embedding"] is None
    assert tops["probs"] is not None and tops["class_logits"] is not None
    assert diff.top1_agreement == min(tops["probs"], tops["class_logits"])
    assert not with_thresholds(diff, min_top1=1.01).passed


def _input_range(path: Path) -> tuple[float, float, float]:
    inputs, _ = feeding.io_details(feeding.make_interpreter(str(path)))
    (detail,) = inputs.values()
    bounds = feeding.real_range(detail)
    assert bounds is not None
    return bounds[0], bounds[1], float(detail["quantization"][0])


def test_saturation_is_named(runner: CliRunner, two_heads: dict[str, Path]) -> None:
    lo, hi, step = _input_range(two_heads["int8io"])
    assert lo == pytest.approx(-1.0, abs=2 * step) and hi == pytest.approx(1.0, abs=2 * step)
    result = _compare(runner, two_heads, "int8io", "pixels", "--json")
    doc = json.loads(result.stdout)
    pixels = np.load(two_heads["pixels"])["x"]
    # every pixel above the input's top value (plus half a step, where rounding ends) clips
    expected = float(np.mean(pixels > hi + step / 2))
    assert expected > 0.4
    assert doc["input_saturation"]["image"] == pytest.approx(expected, abs=1e-3)
    (warning,) = doc["warnings"]
    assert warning.startswith("input 'image': ") and "outside the int8 input's range" in warning
    assert "scaled differently from the calibration data" in warning
    text = _compare(runner, two_heads, "int8io", "pixels").stdout
    assert "warning: input 'image'" in text


def test_data_in_range_does_not_saturate(runner: CliRunner, two_heads: dict[str, Path]) -> None:
    result = _compare(runner, two_heads, "int8io", "test", "--json", "--min-top1", "0.9")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["input_saturation"]["image"] < 0.01 and doc["warnings"] == []
    assert "warning" not in _compare(runner, two_heads, "int8io", "test").stdout
