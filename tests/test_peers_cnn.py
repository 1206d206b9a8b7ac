"""benchmarks/peers_cnn.py: the MAC count that bench-peers reports for its CNNs, read from the
`.tflite` itself (so a channel-pruned file reports its own), against the count by hand."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

import tfopt

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from peers_cnn import tflite_macs  # noqa: E402 - benchmarks/ is not a package


@pytest.fixture(scope="module")
def small_cnn(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tf_keras CNN with one layer of each counted kind, trained briefly and saved as .h5."""
    from tfopt import keras_worlds

    keras = keras_worlds.module(keras_worlds.World.TF_KERAS)
    keras.utils.set_random_seed(0)
    inp = keras.Input((12, 12, 3), name="image")
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu")(inp)  # 6x6x8
    x = keras.layers.DepthwiseConv2D(3, padding="same", activation="relu")(x)  # 6x6x8
    x = keras.layers.Conv2D(16, 1, activation="relu")(x)  # 6x6x16
    x = keras.layers.GlobalAveragePooling2D()(x)
    out = keras.layers.Dense(5, activation="softmax")(x)
    model = keras.Model(inp, out)
    model.compile("adam", "sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    model.fit(rng.normal(size=(64, 12, 12, 3)).astype(np.float32), rng.integers(0, 5, 64),
              epochs=1, verbose=0)  # fmt: skip
    path = tmp_path_factory.mktemp("peers_cnn") / "cnn.h5"
    model.save(path)
    return path


# 6*6*8 * 3*3*3 + 6*6*8 * 3*3 + 6*6*16 * 8 + 16*5
EXPECTED = 7776 + 2592 + 4608 + 80


@pytest.mark.parametrize("precision", ["float32", "float16", "int8"])
def test_tflite_macs_counts_conv_depthwise_dense(small_cnn: Path, tmp_path: Path, precision: str) -> None:
    from tfopt.data import Dataset

    out = tmp_path / f"cnn_{precision}.tflite"
    images = np.random.default_rng(1).normal(size=(16, 12, 12, 3)).astype(np.float32)
    calibration = {"calibration": Dataset({"image": images})} if precision == "int8" else {}
    tfopt.convert(small_cnn, out, precision, **calibration)
    assert tflite_macs(out) == EXPECTED
