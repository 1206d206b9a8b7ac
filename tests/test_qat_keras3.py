"""The `qat` stage on a Keras 3 keras-hub BERT: FakeQuant patched into the trained model's own
layers, fine-tuned, exported, converted to full int8 with the learned ranges. Real training,
real conversion, real interpreter runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tfopt.data import Dataset
from tfopt.optimization import OptimizeOptions, optimize
from tfopt.validate import run_tflite

SEQ = 16


def _split(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """Tokens with padding (so the attention softmax is masked) and a cue at position 1."""
    y = rng.integers(0, 3, n)
    tokens = rng.integers(10, 300, (n, SEQ)).astype(np.int32)
    tokens[:, 1] = 100 + y
    lengths = rng.integers(6, SEQ + 1, n)
    mask = (np.arange(SEQ)[None, :] < lengths[:, None]).astype(np.int32)
    return {"token_ids": tokens * mask, "segment_ids": np.zeros_like(tokens),
            "padding_mask": mask, "y": y}  # fmt: skip


@pytest.fixture(scope="module")
def trained_bert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A tiny keras-hub BertTextClassifier trained to read the cue, and its padded data."""
    from tfopt import keras_worlds

    hub = keras_worlds.keras_hub()
    keras = keras_worlds.module(keras_worlds.World.KERAS3)
    keras.utils.set_random_seed(0)
    backbone = hub.models.BertBackbone(
        vocabulary_size=300, num_layers=1, num_heads=2, hidden_dim=32, intermediate_dim=64,
        max_sequence_length=32,
    )  # fmt: skip
    model = hub.models.BertTextClassifier(backbone, num_classes=3, preprocessor=None)
    rng = np.random.default_rng(0)
    train, val = _split(rng, 384), _split(rng, 128)
    model.compile(
        optimizer=keras.optimizers.Adam(2e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    x = {k: v for k, v in train.items() if k != "y"}
    model.fit(x, train["y"], epochs=6, batch_size=32, verbose=0)
    folder = tmp_path_factory.mktemp("qat_bert")
    model.save(folder / "clf.keras")
    arrays = {f"x_{s}.{k}": v for s, d in (("train", train), ("val", val))
              for k, v in d.items() if k != "y"}  # fmt: skip
    np.savez(folder / "tokens.npz", y_train=train["y"], y_val=val["y"], **arrays)
    return folder / "clf.keras", folder / "tokens.npz"


@pytest.fixture(scope="module")
def qat_and_ptq(
    trained_bert: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory
) -> tuple[Any, Any]:
    """The qat-int8 recipe (numeric check on) and plain post-training int8 on the same model."""
    model, data = trained_bert
    out = tmp_path_factory.mktemp("qat_runs")
    qat = optimize(model, "qat-int8", str(data), out / "qat", OptimizeOptions(epochs=2, batch_size=32))
    ptq = optimize(model, "int8", str(data), out / "ptq",
                   OptimizeOptions(epochs=0, batch_size=32, check=False))
    return qat, ptq


def _ops(path: str) -> list[tuple[str, list[dict[str, Any]]]]:
    """(op name, input tensor details) for every op, as the interpreter holds them."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(path)
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
    return [
        (op["op_name"], [tensors[i] for i in op["inputs"] if i >= 0])
        for op in interpreter._get_ops_details()  # noqa: SLF001 - no public op listing
    ]


def test_qat_fine_tunes_a_keras_hub_bert_through_fake_quant(
    trained_bert: tuple[Path, Path], qat_and_ptq: tuple[Any, Any]
) -> None:
    from tfopt.loading import load

    report, _ = qat_and_ptq
    stage = report.stages[1]
    assert report.world == "keras3" and stage["stage"] == "qat"
    assert stage["did"]["implementation"] == "keras3 FakeQuant"
    assert set(stage["did"]["layer_types"]) == {
        "Dense", "EinsumDense", "LayerNormalization", "Softmax"
    }  # fmt: skip
    ranges = stage["did"]["ranges"]
    softmax = next(v for k, v in ranges.items() if "softmax" in k)
    assert softmax[0] < -12 < softmax[0] + 12  # the bounded mask fill: row min - 12, not -1e9
    # optimized.keras holds the fine-tuned float weights, without FakeQuant.
    before = load(trained_bert[0]).model.get_weights()
    after = load(Path(report.out_dir) / "optimized.keras").model.get_weights()
    assert any(not np.allclose(a, b) for a, b in zip(before, after, strict=True))


def test_qat_tflite_is_full_int8(qat_and_ptq: tuple[Any, Any]) -> None:
    report, _ = qat_and_ptq
    ops = _ops(report.tflite["path"])
    names = {name for name, _ in ops}
    assert {"FULLY_CONNECTED", "BATCH_MATMUL", "SOFTMAX"} <= names
    for name, inputs in ops:
        if name in ("FULLY_CONNECTED", "BATCH_MATMUL", "SOFTMAX"):
            assert inputs[0]["dtype"] == np.int8, name
            if name != "SOFTMAX":
                assert inputs[1]["dtype"] == np.int8, name
    assert report.tflite["check"]["passed"]  # int8's tolerance against the QAT model


def test_converter_takes_the_fake_quant_ranges(qat_and_ptq: tuple[Any, Any]) -> None:
    """The int8 scale of the softmax input and of the first matmul input are the learned
    ranges (FakeQuant nudges them by less than one step so that zero is exact)."""
    report, _ = qat_and_ptq
    ranges = report.stages[1]["did"]["ranges"]
    ops = _ops(report.tflite["path"])
    checked = 0
    for name, key in (("SOFTMAX", "softmax"), ("FULLY_CONNECTED", "embeddings_layer_norm")):
        lo, hi = next(v for k, v in ranges.items() if key in k)
        tensor = next(inputs[0] for op, inputs in ops if op == name)
        scale, zero_point = tensor["quantization"]
        assert scale == pytest.approx((hi - lo) / 255, rel=0.01), name
        assert (-128 - zero_point) * scale == pytest.approx(lo, abs=scale), name
        checked += 1
    assert checked == 2


def test_qat_int8_is_at_least_as_close_to_float_as_post_training_int8(
    trained_bert: tuple[Path, Path], qat_and_ptq: tuple[Any, Any]
) -> None:
    from tfopt.loading import load
    from tfopt.optimization.training import model_args

    qat, ptq = qat_and_ptq
    with np.load(trained_bert[1]) as z:
        x = {k.removeprefix("x_val."): z[k] for k in z.files if k.startswith("x_val.")}
        y = z["y_val"]
    model = load(trained_bert[0]).model
    float_pred = np.asarray(model(model_args(model, x), training=False)).argmax(-1)

    def agreement(report: Any) -> float:
        out = next(iter(run_tflite(report.tflite["path"], Dataset(x)).values()))
        return float(np.mean(out.argmax(-1) == float_pred))

    float_acc = float(np.mean(float_pred == y))
    assert float_acc > 0.6  # the base model learned the cue
    # Post-training int8 of a transformer now searches op kinds out of int8 (conversion.transformer)
    # and gets close too; QAT, all int8 with its own ranges, stays within 2 points of it.
    assert qat.tflite["val_accuracy"] >= ptq.tflite["val_accuracy"] - 0.02
    assert qat.tflite["val_accuracy"] >= float_acc - 0.05
    assert agreement(qat) >= 0.9


def test_qat_refuses_a_keras3_model_with_nothing_to_quantize(keras3: Any) -> None:
    from tfopt.optimization import StageError
    from tfopt.optimization.fakequant import patch

    model = keras3.Sequential([keras3.Input((4,)), keras3.layers.LayerNormalization()])
    with pytest.raises(StageError, match="no Dense or EinsumDense"):
        patch(model)
