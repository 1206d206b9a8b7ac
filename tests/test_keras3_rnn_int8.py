"""Keras 3 LSTM/GRU/SimpleRNN models at int8 and int16x8: converted through their tf_keras twin
(fused LSTM, unrolled GRU), checked against the Keras 3 model itself (issue 22, item 7)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from tests.conftest import SEED, invoke
from tfopt.inspection import graph_summary

TOKENS = 32  # a digit's 64 pixels, pairs averaged: a 32-token "sentence" of ids 0..16


@pytest.fixture(scope="module")
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture(scope="module")
def saved(
    keras3: Any, digits: dict[str, np.ndarray], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Path]:
    """Three Keras 3 recurrent classifiers trained on the real digits, saved as users save them."""
    root = tmp_path_factory.mktemp("k3rnn")
    pixels = (digits["x_train"].reshape(-1, 64) * 16).round()
    tokens = ((pixels[:, ::2] + pixels[:, 1::2]) // 2).astype(np.int32)
    rows = digits["x_train"].reshape(-1, 16, 4).astype(np.float32)  # 16 steps of 4 pixels
    y = digits["y_train"]
    layers = keras3.layers
    models = {
        "lstm_tokens": (
            [keras3.Input((TOKENS,), dtype="int32"), layers.Embedding(17, 8), layers.LSTM(16)],
            tokens,
        ),
        # A free time axis: the calibration data fixes it (and --dynamic-length cannot).
        "gru_tokens": (
            [keras3.Input((None,), dtype="int32"), layers.Embedding(17, 8), layers.GRU(16)],
            tokens,
        ),
        "lstm_features": ([keras3.Input((16, 4)), layers.LSTM(16)], rows),
    }
    paths: dict[str, Path] = {}
    for name, (body, x) in models.items():
        keras3.utils.set_random_seed(SEED)
        model = keras3.Sequential([*body, layers.Dense(10, activation="softmax")])
        model.compile(keras3.optimizers.Adam(0.01), "sparse_categorical_crossentropy")
        model.fit(x, y, epochs=6, batch_size=64, verbose=0)
        paths[name] = root / f"{name}.keras"
        model.save(paths[name])
        paths[f"{name}.npz"] = root / f"{name}.npz"
        np.savez(paths[f"{name}.npz"], x=x[:48])
    return paths


def _convert(runner: CliRunner, saved: dict[str, Path], name: str, out: Path, *extra: Any) -> Any:
    return invoke(
        runner, "convert", saved[name], "-o", out, "--calibration", saved[f"{name}.npz"],
        "--json", *extra,
    )  # fmt: skip


@pytest.mark.parametrize("name", ["lstm_tokens", "gru_tokens", "lstm_features"])
def test_keras3_recurrent_model_converts_to_full_int8(
    runner: CliRunner, saved: dict[str, Path], tmp_path: Path, name: str
) -> None:
    out = tmp_path / f"{name}.tflite"
    result = _convert(runner, saved, name, out, "--precision", "int8")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["source"] == "keras3"
    assert doc["check"]["passed"] and doc["check"]["data"] == "calibration"
    # Checked against the Keras 3 model on real digits: the classes agree.
    assert doc["check"]["top1_agreement"] >= 0.9
    assert "rebuilt the Keras 3 model in tf_keras" in result.stderr
    summary = graph_summary(out.read_bytes())
    assert "WHILE" not in summary["ops"]
    fused = summary["ops"].get("UNIDIRECTIONAL_SEQUENCE_LSTM", 0)
    assert fused == (1 if name.startswith("lstm") else 0)
    assert summary["tensor_dtypes"].get("int8", 0) > 0
    assert not summary["float_compute_ops"]


def test_keras3_lstm_int16x8_is_unrolled(
    runner: CliRunner, saved: dict[str, Path], tmp_path: Path
) -> None:
    # TF 2.21 has no int16x8 fused LSTM: the twin's LSTM is unrolled, and the file calibrates.
    out = tmp_path / "lstm16.tflite"
    result = _convert(runner, saved, "lstm_features", out, "--precision", "int16x8")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["check"]["passed"]
    assert "1 LSTM (unrolled)" in result.stderr
    summary = graph_summary(out.read_bytes())
    assert not {"WHILE", "UNIDIRECTIONAL_SEQUENCE_LSTM"} & set(summary["ops"])
    assert summary["tensor_dtypes"].get("int16", 0) > 0


@pytest.mark.parametrize("precision", ["float32", "dynamic"])
def test_keras3_lstm_float_and_dynamic_keep_the_keras3_export(
    runner: CliRunner, saved: dict[str, Path], tmp_path: Path, precision: str
) -> None:
    out = tmp_path / f"lstm.{precision}.tflite"
    result = _convert(runner, saved, "lstm_tokens", out, "--precision", precision)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["check"]["passed"]
    assert "rebuilt" not in result.stderr
    assert "WHILE" in graph_summary(out.read_bytes())["ops"]  # Keras 3's own loop, uncalibrated


def test_free_length_recurrent_int8_asks_for_seq_len(
    runner: CliRunner, saved: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "gru.tflite"
    result = invoke(
        runner, "convert", saved["gru_tokens"], "-o", out, "--precision", "int8",
        "--calibration", saved["gru_tokens.npz"], "--dynamic-length",
    )  # fmt: skip
    assert result.exit_code == 1
    assert "needs a fixed sequence length" in result.output and "--seq-len" in result.output
    assert not out.exists()


def test_masked_keras3_rnn_at_int8_is_refused_naming_the_layer(
    runner: CliRunner, keras3: Any, saved: dict[str, Path], tmp_path: Path
) -> None:
    # Keras 3 computes an Embedding's padding mask with a NotEqual op node, which has no tf_keras
    # layer to become (and a masked LSTM would not fuse): one line, and nothing written.
    keras3.utils.set_random_seed(SEED)
    layers = keras3.layers
    model = keras3.Sequential(
        [keras3.Input((TOKENS,), dtype="int32"), layers.Embedding(17, 8, mask_zero=True),
         layers.LSTM(8), layers.Dense(10, activation="softmax")]
    )  # fmt: skip
    model.compile("adam", "sparse_categorical_crossentropy")
    tokens = np.load(saved["lstm_tokens.npz"])["x"]
    model.fit(tokens, np.arange(len(tokens)) % 10, epochs=1, verbose=0)
    model.save(tmp_path / "masked.keras")
    out = tmp_path / "masked.tflite"
    result = invoke(
        runner, "convert", tmp_path / "masked.keras", "-o", out, "--precision", "int8",
        "--calibration", saved["lstm_tokens.npz"],
    )  # fmt: skip
    assert result.exit_code == 1
    assert "(NotEqual) has no tf_keras twin" in result.output and "dynamic" in result.output
    assert not out.exists()


def test_int16x8_of_a_float_fed_text_lstm_names_the_cast(
    runner: CliRunner, keras3: Any, saved: dict[str, Path], tmp_path: Path
) -> None:
    # With no Input, the Embedding takes float32 ids and casts them: CAST has no 16x8 kernel.
    # The child process reported "'NoneType' object has no attribute 'node'" instead: TF 2.21's
    # fallback (concrete-function) converter converts only once, and the loop check had used it.
    keras3.utils.set_random_seed(SEED)
    layers = keras3.layers
    model = keras3.Sequential(
        [layers.Embedding(17, 8), layers.LSTM(8), layers.Dense(10, activation="softmax")]
    )
    model.compile("adam", "sparse_categorical_crossentropy")
    tokens = np.load(saved["lstm_tokens.npz"])["x"]
    model.fit(tokens, np.arange(len(tokens)) % 10, epochs=1, verbose=0)
    model.save(tmp_path / "no_input.keras")
    out = tmp_path / "lstm16.tflite"
    result = invoke(
        runner, "convert", tmp_path / "no_input.keras", "-o", out, "--precision", "int16x8",
        "--calibration", saved["lstm_tokens.npz"], "--json",
    )  # fmt: skip
    assert result.exit_code == 1, result.output
    error = json.loads(result.stdout)["error"]
    assert "CAST" in error and "NoneType" not in error, error
    assert not out.exists()
