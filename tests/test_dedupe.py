"""Constants stored once: the LiteRT quantizer's per-signature copies of an LM's weights deduped,
outputs bit-identical, and a file with nothing repeated left as it was."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tfopt.conversion import convert
from tfopt.conversion.dedupe import dedupe_buffers
from tfopt.runtime.lm import LmRunner

MAX_LEN = 40


@pytest.fixture(scope="module")
def raw(gpt2: tuple[Any, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """The LM's float32 flatbuffer and its w4 quantization, before any dedupe pass."""
    from converters.aeq import quantize
    from converters.lm import lm_converter
    from tfopt.core import Precision

    work = tmp_path_factory.mktemp("lm_work")
    float32 = bytes(lm_converter(gpt2[0], work, MAX_LEN).convert())
    return {"float32": float32, "w4": quantize(float32, Precision.W4)}


def buffer_bytes(flatbuffer: bytes) -> int:
    """Bytes of constant data the file holds (buffers stored inline or by offset)."""
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(flatbuffer))
    return sum(len(b.data) for b in model.buffers if b.data is not None)


def written(tmp_path: Path, name: str, data: bytes) -> str:
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


def test_w4_lm_weights_stored_once(raw: dict[str, bytes], tmp_path: Path) -> None:
    before, after = raw["w4"], dedupe_buffers(raw["w4"])
    print(f"w4 LM: {len(before)} -> {len(after)} bytes; float32 {len(raw['float32'])}")
    assert len(after) < 0.8 * len(before)
    assert buffer_bytes(after) < 0.8 * buffer_bytes(before)
    assert len(after) < len(raw["float32"])  # int4 weights: smaller than the float file now
    old = LmRunner(written(tmp_path, "before.tflite", before))
    new = LmRunner(written(tmp_path, "after.tflite", after))
    prompt = [5, 17, 42, 200, 3]
    assert np.array_equal(old.prefill(prompt), new.prefill(prompt))  # bit-identical logits
    assert np.array_equal(old.decode(9, len(prompt)), new.decode(9, len(prompt)))
    assert old.generate(prompt, 12)[0] == new.generate(prompt, 12)[0]
    assert dedupe_buffers(after) == after  # a second pass finds nothing left


def test_float32_lm_already_shares_its_weights(raw: dict[str, bytes]) -> None:
    assert dedupe_buffers(raw["float32"]) == raw["float32"]


def test_lm_export_writes_the_deduped_file(
    gpt2: tuple[Any, Path], raw: dict[str, bytes], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    out = tmp_path / "gpt2_w4.tflite"
    with caplog.at_level(logging.WARNING, logger="tfopt"):
        result = convert(gpt2[1], out, "w4", lm=True, max_length=MAX_LEN, quantizer="aeq")
    assert result.size_bytes == out.stat().st_size < 0.8 * len(raw["w4"])
    assert "weights stored once" in caplog.text
    prompt = [5, 17, 42]
    expected = LmRunner(written(tmp_path, "raw.tflite", raw["w4"])).generate(prompt, 10)[0]
    assert LmRunner(str(out)).generate(prompt, 10)[0] == expected


def test_one_signature_file_is_unchanged(tmp_path: Path) -> None:
    """A plain model (trained briefly, saved as users do) has no constant twice."""
    from tfopt import keras_worlds

    keras = keras_worlds.module(keras_worlds.World.KERAS3)
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(64, 12)).astype(np.float32), rng.integers(0, 3, 64)
    model = keras.Sequential(
        [keras.Input((12,)), keras.layers.Dense(16, activation="relu"), keras.layers.Dense(3)]
    )
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, epochs=2, verbose=0)
    model.save(tmp_path / "mlp.keras")
    for precision, quantizer in (("float32", "converter"), ("w8", "aeq")):
        out = tmp_path / f"mlp_{precision}.tflite"
        convert(tmp_path / "mlp.keras", out, precision, quantizer=quantizer)
        data = out.read_bytes()
        assert dedupe_buffers(data) == data
