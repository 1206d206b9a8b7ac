"""tf_keras GRU/SimpleRNN models (and LSTMs at int16x8) at calibrated precisions: TF 2.21 lowers
them to a WHILE loop its calibrator crashes on, so tfopt converts a clone with those layers
unrolled and checks the file against the model as saved (issue 22, item 7)."""

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
def saved(
    tf_keras: Any, digits: dict[str, np.ndarray], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Path]:
    """tf_keras recurrent classifiers trained on the real digits, saved as `.h5` as users do."""
    root = tmp_path_factory.mktemp("tfkrnn")
    pixels = (digits["x_train"].reshape(-1, 64) * 16).round()
    tokens = ((pixels[:, ::2] + pixels[:, 1::2]) // 2).astype(np.int32)
    rows = digits["x_train"].reshape(-1, 16, 4).astype(np.float32)  # 16 steps of 4 pixels
    K = tf_keras  # noqa: N806 - the usual alias
    models = {
        # A free time axis: the calibration data fixes it.
        "gru_tokens": (
            [K.Input((None,), dtype="int32"), K.layers.Embedding(17, 8), K.layers.GRU(16)],
            tokens,
        ),
        "lstm_features": ([K.Input((16, 4)), K.layers.LSTM(16)], rows),
    }
    paths: dict[str, Path] = {}
    for name, (body, x) in models.items():
        K.utils.set_random_seed(SEED)
        model = K.Sequential([*body, K.layers.Dense(10, activation="softmax")])
        model.compile(K.optimizers.Adam(0.01), "sparse_categorical_crossentropy")
        model.fit(x, digits["y_train"], epochs=6, batch_size=64, verbose=0)
        paths[name] = root / f"{name}.h5"
        model.save(paths[name])
        paths[f"{name}.npz"] = root / f"{name}.npz"
        np.savez(paths[f"{name}.npz"], x=x[:48])
    return paths


@pytest.fixture(scope="module")
def runner() -> CliRunner:
    return CliRunner()


def _convert(runner: CliRunner, saved: dict[str, Path], name: str, out: Path, *extra: Any) -> Any:
    return invoke(
        runner, "convert", saved[name], "-o", out, "--calibration", saved[f"{name}.npz"],
        "--json", *extra,
    )  # fmt: skip


def test_tf_keras_gru_h5_converts_to_full_int8_unrolled(
    runner: CliRunner, saved: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "gru.tflite"
    result = _convert(runner, saved, "gru_tokens", out, "--precision", "int8")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["source"] == "tf_keras" and doc["check"]["passed"]
    # Checked against the saved model on real digits: the classes agree.
    assert doc["check"]["data"] == "calibration" and doc["check"]["top1_agreement"] >= 0.9
    assert "1 GRU (unrolled)" in result.stderr and "the check runs the model as saved" in result.stderr
    summary = graph_summary(out.read_bytes())
    assert "WHILE" not in summary["ops"]
    assert summary["tensor_dtypes"].get("int8", 0) > 0
    assert not summary["float_compute_ops"]


def test_tf_keras_lstm_int16x8_is_unrolled(
    runner: CliRunner, saved: dict[str, Path], tmp_path: Path
) -> None:
    # TF 2.21 has no int16x8 fused LSTM and calibrates the tf_keras loop only by crashing.
    out = tmp_path / "lstm16.tflite"
    result = _convert(runner, saved, "lstm_features", out, "--precision", "int16x8")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["check"]["passed"]
    assert "1 LSTM (unrolled)" in result.stderr
    summary = graph_summary(out.read_bytes())
    assert not {"WHILE", "UNIDIRECTIONAL_SEQUENCE_LSTM"} & set(summary["ops"])
    assert summary["tensor_dtypes"].get("int16", 0) > 0


def test_free_length_tf_keras_gru_at_int8_asks_for_seq_len(
    runner: CliRunner, saved: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "gru.tflite"
    result = _convert(runner, saved, "gru_tokens", out, "--precision", "int8", "--dynamic-length")
    assert result.exit_code == 1
    error = json.loads(result.stdout)["error"]
    assert "needs a fixed sequence length" in error and "--seq-len" in error
    assert not out.exists()
