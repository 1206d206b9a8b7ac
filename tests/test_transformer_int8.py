"""Full int8 of keras-hub transformers by the default path: bounded masks and the op-kind search."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tfopt import keras_worlds
from tfopt.conversion import convert
from tfopt.conversion.transformer import kind_of
from tfopt.inspection import graph_summary


def test_bounded_masks_leave_float_outputs_unchanged(bert: Any, bert_data: Path) -> None:
    batch = {k: v[:4] for k, v in np.load(bert_data).items()}
    plain = bert(batch, training=False)
    with keras_worlds.bounded_softmax_masks(12.0):
        bounded = bert(batch, training=False)
    for name in plain:
        a, b = np.asarray(plain[name]), np.asarray(bounded[name])
        assert np.abs(a - b).max() < 1e-3 * max(1.0, np.abs(a).max()), name
    # and the patch is gone afterwards
    assert np.allclose(np.asarray(bert(batch, training=False)["pooled_output"]),
                       np.asarray(plain["pooled_output"]))


def test_kinds_drop_layer_numbers_and_the_op() -> None:
    a = kind_of("bert_backbone_1/transformer_layer_3_1/feedforward_layer_norm_1/moments/mean;x")
    b = kind_of("bert_backbone_1/transformer_layer_0_1/feedforward_layer_norm_1/add_2")
    assert a == b == "bert_backbone_#/transformer_layer_#_#/feedforward_layer_norm_#"
    assert kind_of("output") == ""


def test_default_int8_on_a_transformer_searches_and_says_so(
    bert: Any, bert_data: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    out = tmp_path / "bert_int8.tflite"
    result = convert(bert, out, "int8", calibration=bert_data, seq_len=32)
    assert result.check["passed"]
    found = result.sensitivity
    assert found is not None and found["cosine"] >= found["int8_cosine"]
    assert "mask is added to the scores" in caplog.text and "int8:" in caplog.text
    summary = graph_summary(out.read_bytes())
    # int8 where the search did not keep float; the attention matmuls, the masked scores and
    # the softmax stay float, where XNNPACK runs them, and no SELECT_V2 splits its graph
    assert summary["tensor_dtypes"].get("int8", 0) > 0
    assert summary["float_compute_ops"].get("BATCH_MATMUL", 0) == summary["ops"]["BATCH_MATMUL"]
    assert summary["float_compute_ops"].get("SOFTMAX", 0) == summary["ops"]["SOFTMAX"]
    assert "SELECT_V2" not in summary["ops"]


@pytest.mark.parametrize("free", [False, True], ids=["seq32", "dynamic-length"])
def test_score_chains_are_the_ops_between_attention_matmul_and_softmax(
    bert: Any, bert_data: Path, tmp_path: Path, free: bool
) -> None:
    """Also in a free-length graph, whose shape arithmetic (SHAPE, PACK, RESHAPE) reaches back
    into the layer norms: the walk follows float tensors only."""
    from tfopt.conversion.transformer import score_chains

    length = {"dynamic_length": True, "check_data": bert_data} if free else {"seq_len": 32}
    with keras_worlds.additive_softmax_masks():
        convert(bert, tmp_path / "f32.tflite", "float32", **length)
    chains = score_chains((tmp_path / "f32.tflite").read_bytes())
    # the mask's CAST, SUB and MUL (shared by the layers once deduplicated) and each layer's ADD;
    # nothing past a matmul
    for layer in (0, 1):
        assert any(f"transformer_layer_{layer}_" in r and "softmax" in r for r in chains), chains
    banned = ("query", "key", "value", "feedforward", "layer_norm")
    assert not any(b in r for r in chains for b in banned), chains


def test_a_classifier_softmax_keeps_no_chain(tflite: dict[str, Path]) -> None:
    from tfopt.conversion.transformer import score_chains
    from tfopt.inspection import graph_summary

    model = tflite["float32"].read_bytes()
    assert "SOFTMAX" in graph_summary(model)["ops"]  # Dense -> softmax: no attention matmul
    assert score_chains(model) == []


def test_search_keeps_kinds_out_of_int8_until_the_gate(
    bert: Any, bert_data: Path, tmp_path: Path
) -> None:
    """The tiny random BERT reaches 0.99 in plain int8, so ask for more: the search must run,
    keep some kinds out of int8 and never end worse than plain int8."""
    from tfopt.conversion.transformer import quantize_transformer
    from tfopt.data import Dataset

    with keras_worlds.bounded_softmax_masks(12.0):
        convert(bert, tmp_path / "f32.tflite", "float32", seq_len=32)
    data = Dataset(dict(np.load(bert_data)))
    model, found = quantize_transformer((tmp_path / "f32.tflite").read_bytes(), data, gate=0.99999)
    assert found.kept and found.alone and found.float_ops > 0
    assert found.cosine >= found.int8_cosine
    summary = graph_summary(model)
    assert summary["tensor_dtypes"].get("int8", 0) > 0 and "DEQUANTIZE" in summary["ops"]
    assert "kept" in found.summary() and found.to_dict()["kept_float"] == found.kept
