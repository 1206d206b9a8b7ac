"""keras-hub encoders from preset folders, and compare's embedding mode."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from tests.conftest import invoke
from tfopt.validate import embedding_agreement, sentence_embeddings


@pytest.fixture(scope="session")
def bert_preset(tmp_path_factory: pytest.TempPathFactory, bert: Any) -> Path:
    folder = tmp_path_factory.mktemp("preset") / "tiny_bert"
    bert.save_to_preset(str(folder))
    return folder


def test_preset_folder_converts_and_compares(
    runner: CliRunner, bert_preset: Path, bert_data: Path, tmp_path: Path
) -> None:
    out = tmp_path / "enc.tflite"
    converted = invoke(
        runner,
        "convert",
        bert_preset,
        "-o",
        out,
        "--precision",
        "dynamic",
        "--seq-len",
        "32",
        "--json",
    )
    assert converted.exit_code == 0, converted.output
    assert json.loads(converted.stdout)["source"] == "keras3"
    result = invoke(
        runner, "compare", bert_preset, out, "--data", bert_data, "--embedding", "--json"
    )
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["samples"] == 16 and doc["pooling"] == "mean"
    assert 0.99 < doc["mean_cosine"] <= 1.0 + 1e-6 and doc["worst_cosine"] <= doc["mean_cosine"]
    assert doc["neighbour_agreement"] >= 0.8
    pooled = invoke(
        runner,
        "compare",
        bert_preset,
        out,
        "--data",
        bert_data,
        "--embedding",
        "--pooling",
        "pooled",
    )
    assert pooled.exit_code == 0 and "nearest-neighbour agreement" in pooled.stdout


def test_not_a_preset_folder(runner: CliRunner, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    result = invoke(runner, "convert", tmp_path / "empty", "-o", tmp_path / "x.tflite")
    assert result.exit_code == 1 and "neither a SavedModel" in result.stderr


def test_embedding_metrics_on_known_vectors() -> None:
    rng = np.random.default_rng(0)
    seq = rng.normal(size=(6, 5, 8)).astype(np.float32)
    mask = np.ones((6, 5), np.int32)
    mask[:, 3:] = 0
    a = sentence_embeddings({"sequence_output": seq}, mask, "mean")
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, rtol=1e-5)
    # Padding positions must not count: changing them changes nothing.
    seq2 = seq.copy()
    seq2[:, 3:] = 100.0
    np.testing.assert_allclose(
        sentence_embeddings({"sequence_output": seq2}, mask, "mean"), a, rtol=1e-5
    )
    same = embedding_agreement(a, a)
    assert same["mean_cosine"] == pytest.approx(1.0) and same["neighbour_agreement"] == 1.0
    flipped = embedding_agreement(a, -a)
    assert flipped["worst_cosine"] == pytest.approx(-1.0)


@pytest.mark.parametrize("precision", ["float32", "dynamic"])
def test_attention_masks_are_added_not_selected(
    precision: str, bert: Any, bert_data: Path, tmp_path: Path
) -> None:
    """Float and dynamic exports add the padding mask to the scores (ADD, which XNNPACK runs)
    instead of SELECT_V2 (which it does not): no cut per layer, and the padded positions still
    weigh nothing (the check against Keras runs on data with 8 of 32 tokens padded)."""
    from tfopt.conversion import convert
    from tfopt.inspection import graph_summary
    from tfopt.runtime.cpuopts import parse_cpu_options
    from tfopt.runtime.profile import profile_ops

    out = tmp_path / f"bert_{precision}.tflite"
    result = convert(bert, out, precision, check_data=bert_data, seq_len=32)
    assert result.check is not None and result.check["passed"]
    assert "SELECT_V2" not in graph_summary(out.read_bytes())["ops"]
    profile = profile_ops(str(out), threads=1, runs=2, warmup=1, cpu=parse_cpu_options([]),
                          data_path=str(bert_data), seed=0)  # fmt: skip
    # Two XNNPACK graphs: the embedding lookup (GATHER, LESS, SELECT) sits before them on the
    # TFLite kernels; with SELECT_V2 masks each attention layer cut the graph again.
    assert profile["xnnpack_partitions"] <= 2, profile


def test_dynamic_length_runs_each_input_at_its_own_length(
    runner: CliRunner, bert: Any, bert_data: Path, tmp_path: Path
) -> None:
    """`--dynamic-length` keeps the sequence free: a sentence of 24 tokens runs at 24, and its
    outputs are the Keras model's on the padded 32 (the mask hides the padding)."""
    from tfopt.conversion import convert
    from tfopt.runtime import feeding

    out = tmp_path / "bert_free.tflite"
    result = convert(bert, out, "float32", dynamic_length=True, check_data=bert_data)
    assert result.check["passed"] and result.seq_len is None
    interp = feeding.make_interpreter(str(out), 1)
    inputs, _ = feeding.io_details(interp)
    assert all(list(d["shape_signature"]) == [1, -1] for d in inputs.values())

    tokens = dict(np.load(bert_data))  # 16 x 32, the last 8 positions padding
    padded = bert({k: v[:2] for k, v in tokens.items()}, training=False)
    for length in (24, 8, 24):  # grow, shrink and grow again: each feed resizes
        sample = {k: v[:1, :length] for k, v in tokens.items()}
        got = feeding.run_samples(interp, sample)
        seq = got["sequence_output"]
        assert seq.shape == (1, length, 64)
        if length == 24:  # all 24 real tokens: the same as the padded run's first 24 positions
            want = np.asarray(padded["sequence_output"])[:1, :24]
            assert np.abs(seq - want).max() < 1e-3
            assert np.abs(got["pooled_output"] - np.asarray(padded["pooled_output"])[:1]).max() < 1e-3

    short = tmp_path / "short.npz"
    np.savez(short, **{k: v[:4, :24] for k, v in tokens.items()})
    res = invoke(runner, "bench", out, "--threads", "1", "--runs", "5", "--data", short, "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["results"][0]["latency_us"]["p50"] > 0
    # LiteRT's profiler (CompiledModel, C API) resizes too; its outputs are sized by hand
    prof = invoke(runner, "bench", out, "--threads", "1", "--runs", "3", "--data", short,
                  "--profile", "--profile-runs", "3", "--json")  # fmt: skip
    assert prof.exit_code == 0, prof.output
    ops = json.loads(prof.stdout)["results"][0]["op_profile"]
    assert ops["ops"] and ops["xnnpack_partitions"] >= 1
    # compare reads the free length from the file: 24-token data fits it
    same = invoke(runner, "compare", out, out, "--data", short, "--json")
    assert same.exit_code == 0, same.output
    # CompiledModel's fixed buffers cannot follow a free length: one line says so
    compiled = invoke(runner, "bench", out, "--threads", "1", "--runs", "3", "--data", short,
                      "--cpu-option", "api=compiled")  # fmt: skip
    assert compiled.exit_code == 1 and "free-length model" in compiled.output

    clash = invoke(runner, "convert", tmp_path / "x.keras", "-o", tmp_path / "y.tflite",
                   "--dynamic-length", "--seq-len", "32")  # fmt: skip
    assert clash.exit_code == 1 and "drop --seq-len" in clash.output
