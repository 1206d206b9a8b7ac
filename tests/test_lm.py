"""Causal LMs with a KV cache: export, greedy equivalence with keras-hub, generate, LM timing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from tests.conftest import invoke
from tfopt.conversion import convert
from tfopt.errors import ConversionError
from tfopt.inspection import inspect_tflite, weight_bytes_per_run
from tfopt.runtime.lm import LmRunner

MAX_LEN = 40


@pytest.fixture(scope="session")
def gpt2_tflite(
    gpt2: tuple[Any, Path], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("gpt2_tflite")
    out = {}
    for precision in ("float32", "dynamic"):
        out[precision] = folder / f"gpt2_{precision}.tflite"
        convert(gpt2[1], out[precision], precision, lm=True, max_length=MAX_LEN)
    return out


def keras_greedy(model: Any, prompt: list[int], new_tokens: int) -> list[int]:
    model.compile(sampler="greedy")
    tokens = np.zeros((1, MAX_LEN), np.int32)
    mask = np.zeros((1, MAX_LEN), bool)
    tokens[0, : len(prompt)] = prompt
    mask[0, : len(prompt)] = True
    out = model.generate({"token_ids": tokens, "padding_mask": mask}, stop_token_ids=None)
    return [int(t) for t in out["token_ids"][0, len(prompt) : len(prompt) + new_tokens]]


def test_signatures(gpt2_tflite: dict[str, Path]) -> None:
    """LiteRT-LM's contract: every signature takes and returns the per-layer caches
    `[1, kv_heads, L, head_dim]`, with `tokens` and `input_pos`; decode and verify give logits."""
    info = inspect_tflite(gpt2_tflite["float32"])
    assert set(info["signatures"]) == {"prefill_32", "prefill_40", "verify_8", "decode"}
    caches = [f"kv_cache_{kind}_{i}" for kind in "kv" for i in range(2)]
    for name, signature in info["signatures"].items():
        assert sorted(signature["inputs"]) == sorted(["tokens", "input_pos", *caches])
        logits = [] if name.startswith("prefill") else ["logits"]
        assert sorted(signature["outputs"]) == sorted(caches + logits)
    runner = LmRunner(str(gpt2_tflite["float32"]))
    assert (runner.kv_heads, runner.max_length, runner.head_dim) == (2, MAX_LEN, 32)
    # The weights are stored once, not once per signature (2 layers, 64 wide: ~0.35 MB float).
    assert gpt2_tflite["float32"].stat().st_size < 0.6e6


@pytest.mark.parametrize(
    "prompt", [[5, 17, 42], [200, 3, 3, 3, 9, 120, 1, 77]], ids=["short", "longer"]
)
def test_greedy_tokens_equal_keras_hub(
    gpt2: tuple[Any, Path], gpt2_tflite: dict[str, Path], prompt: list[int]
) -> None:
    lm = LmRunner(str(gpt2_tflite["float32"]))
    tokens, timing = lm.generate(prompt, 12)
    assert tokens == keras_greedy(gpt2[0], prompt, 12)
    assert len(timing["decode_us"]) == 11 and timing["prefill_ms"] > 0


def test_long_prompt_takes_the_next_bucket(
    gpt2: tuple[Any, Path], gpt2_tflite: dict[str, Path]
) -> None:
    """A 35-token prompt does not fit bucket 32: prefill_40 runs, and greedy still equals
    keras-hub."""
    lm = LmRunner(str(gpt2_tflite["float32"]))
    prompt = [int(t) for t in np.random.default_rng(3).integers(0, 260, 35)]
    assert lm.buckets == [32, 40]
    assert lm.generate(prompt, 5)[0] == keras_greedy(gpt2[0], prompt, 5)


def test_cache_is_written_in_place(gpt2: tuple[Any, Path], gpt2_tflite: dict[str, Path]) -> None:
    """Decode logits follow keras-hub's full forward step by step, and the rows the graph wrote
    into the shared cache buffer are the keys keras-hub's own cache holds (first layer)."""
    model = gpt2[0]
    lm = LmRunner(str(gpt2_tflite["float32"]))
    seq = [7, 99, 3, 250, 18, 18, 64, 5, 31, 2]
    ref = np.asarray(model({"token_ids": np.array([seq]), "padding_mask": np.ones((1, 10))}))[0]
    got = [lm.prefill(seq[:4])] + [lm.decode(seq[p], p) for p in range(4, 10)]
    np.testing.assert_allclose(np.stack(got), ref[3:], atol=1e-4)
    _, _, cache = model.call_with_cache(
        np.array([seq + [0] * (MAX_LEN - 10)], np.int32),
        np.zeros([1, 2, 2, MAX_LEN, 2, 32], np.float32),
        0,
    )
    keys = np.asarray(cache)[0, 0, 0, :10]  # [rows, heads, dim]
    written = lm.cache("k", 0)  # [1, heads, L, dim]
    np.testing.assert_allclose(written[0, :, :10].transpose(1, 0, 2), keys, atol=1e-5)


def test_verify_equals_decode_steps(gpt2_tflite: dict[str, Path]) -> None:
    """One verify step gives the logits that decode steps one token at a time give."""
    seq = [7, 99, 3, 250, 18, 18, 64, 5, 31, 2]
    one = LmRunner(str(gpt2_tflite["float32"]))
    one.prefill(seq[:4])
    stepwise = [one.decode(seq[p], p) for p in range(4, 10)]
    many = LmRunner(str(gpt2_tflite["float32"]))
    many.prefill(seq[:4])
    np.testing.assert_allclose(many.verify(seq[4:10], 4), np.stack(stepwise), atol=1e-5)


def test_prompt_lookup_keeps_greedy_output(gpt2_tflite: dict[str, Path]) -> None:
    """Drafts from the prompt, checked in verify steps: the same tokens as plain greedy, with
    drafts actually taken (a repetitive prompt)."""
    prompt = [5, 17, 42, 9, 100, 3, 77, 8] * 3
    plain, _ = LmRunner(str(gpt2_tflite["float32"])).generate(prompt, 14)
    fast, timing = LmRunner(str(gpt2_tflite["float32"])).generate(prompt, 14, lookup=7)
    assert fast == plain
    assert timing["lookup"]["steps"] > 0 and len(timing["decode_us"]) == 13


FAMILIES = {
    "llama": ("Llama", {"num_query_heads": 4, "num_key_value_heads": 2}),
    "mistral": ("Mistral", {"num_query_heads": 4, "num_key_value_heads": 2, "sliding_window": 6}),
    "gemma": (
        "Gemma",
        {
            "num_query_heads": 4,
            "num_key_value_heads": 1,
            "head_dim": 16,
            "attention_logit_soft_cap": 50.0,
            "final_logit_soft_cap": 30.0,
            "use_sliding_window_attention": True,
            "sliding_window_size": 6,
            "use_post_attention_norm": True,
            "use_post_ffw_norm": True,
        },
    ),
    "qwen": ("Qwen", {"num_query_heads": 4, "num_key_value_heads": 2}),
}


@pytest.mark.parametrize("family", list(FAMILIES))
def test_families_equal_keras_hub(family: str, tmp_path: Path) -> None:
    """Grouped-query heads, rotary positions, sliding windows (shorter than the prompt) and soft
    caps: greedy tokens equal keras-hub generate(), and the convert check compares the logits of
    the prefill and three decode steps against the model's own forward."""
    from tfopt import keras_worlds

    hub = keras_worlds.keras_hub()
    keras_worlds.module(keras_worlds.World.KERAS3).utils.set_random_seed(1)
    prefix, kwargs = FAMILIES[family]
    backbone = getattr(hub.models, f"{prefix}Backbone")(
        vocabulary_size=260, num_layers=2, hidden_dim=64, intermediate_dim=128, **kwargs
    )
    model = getattr(hub.models, f"{prefix}CausalLM")(backbone=backbone, preprocessor=None)
    path = tmp_path / f"{family}.keras"
    model.save(path)  # what users bring: a saved file, loaded back by tfopt
    result = convert(path, tmp_path / f"{family}.tflite", "float32", lm=True, max_length=MAX_LEN)
    assert result.check["outputs"][0]["cosine"] > 0.99999
    prompt = [5, 17, 42, 9, 100, 3, 77, 8]
    tokens, _ = LmRunner(str(tmp_path / f"{family}.tflite")).generate(prompt, 16)
    assert tokens == keras_greedy(model, prompt, 16)


def test_dynamic_lm_is_smaller_and_close(gpt2_tflite: dict[str, Path]) -> None:
    assert gpt2_tflite["dynamic"].stat().st_size < 0.6 * gpt2_tflite["float32"].stat().st_size
    # What one decode step reads: int8 weights about a quarter of float32's (the tied embedding
    # counts in full, since the head reads all of it: test_decode_reads_the_tied_head_in_full).
    f32_read = weight_bytes_per_run(gpt2_tflite["float32"], "decode")
    int8_read = weight_bytes_per_run(gpt2_tflite["dynamic"], "decode")
    assert 0.2 < int8_read["weight_bytes"] / f32_read["weight_bytes"] < 0.4
    assert f32_read["table_bytes"] >= 260 * 64 * 4
    f32 = LmRunner(str(gpt2_tflite["float32"]))
    dyn = LmRunner(str(gpt2_tflite["dynamic"]))
    a = f32.prefill([5, 17, 42])
    b = dyn.prefill([5, 17, 42])
    assert np.corrcoef(a, b)[0, 1] > 0.99


def _matrix_sizes(model: Any) -> tuple[int, int]:
    """(elements of every kernel and embedding but the position table, of every weight)."""
    weights = [(w.path, int(np.prod(w.shape)), len(w.shape)) for w in model.weights]
    matrices = sum(
        n for path, n, rank in weights if rank >= 2 and "bias" not in path and "position" not in path
    )
    return matrices, sum(n for _, n, _ in weights)


def test_decode_reads_the_tied_head_in_full(
    gpt2: tuple[Any, Path], gpt2_tflite: dict[str, Path]
) -> None:
    # The token embedding is one buffer for the lookup (a row) and the head (all of it): a decode
    # step reads every matrix in full and one row of the position table, nothing more.
    matrices, everything = _matrix_sizes(gpt2[0])
    read = weight_bytes_per_run(gpt2_tflite["float32"], "decode")
    assert 4 * (matrices + 64) <= read["weight_bytes"] <= 4 * (everything - 64 * 64 + 64) + 1024
    assert read["tied_table_bytes"] >= 260 * 64 * 4 and read["scale_bytes"] == 0
    dynamic = weight_bytes_per_run(gpt2_tflite["dynamic"], "decode")
    assert dynamic["scale_bytes"] >= 4 * (2 * (4 * 64 + 128 + 64) + 260)  # one per out channel


def test_blockwise_int4_counts_its_scales(gpt2: tuple[Any, Path], tmp_path: Path) -> None:
    out = tmp_path / "w4b32.tflite"
    convert(gpt2[1], out, "w4b32", lm=True, max_length=MAX_LEN, quantizer="aeq", check=False)
    read = weight_bytes_per_run(out, "decode")
    # Every matrix is int4 here (the head too); the token lookup keeps a float copy: one row.
    int4, _ = _matrix_sizes(gpt2[0])
    assert read["scale_bytes"] >= 2 * int4 // 32  # one float16 (or wider) scale per block of 32
    assert int4 // 2 <= read["weight_bytes"] - read["scale_bytes"] < int4 // 2 + 4096


def test_top_k_is_seeded(gpt2_tflite: dict[str, Path]) -> None:
    lm = LmRunner(str(gpt2_tflite["float32"]))
    a, _ = lm.generate([1, 2, 3], 10, top_k=20, seed=7)
    b, _ = lm.generate([1, 2, 3], 10, top_k=20, seed=7)
    c, _ = lm.generate([1, 2, 3], 10, top_k=20, seed=8)
    assert a == b and a != c


def test_bench_lm_json(runner: CliRunner, gpt2_tflite: dict[str, Path]) -> None:
    result = invoke(
        runner,
        "bench",
        gpt2_tflite["dynamic"],
        "--lm",
        "--prompt-len",
        "8",
        "--new-tokens",
        "12",
        "--threads",
        "1",
        "--runs",
        "3",
        "--json",
    )
    assert result.exit_code == 0, result.output
    (r,) = json.loads(result.stdout)["results"]
    assert r["ttft_ms"] >= r["prefill_ms"] > 0
    assert set(r["decode_tokens_per_s"]) == {"p50", "mean"}
    # Rates follow from the measured step times (how fast is for benchmarks/lm_decode.py).
    rate = r["decode_tokens_per_s"]["p50"]
    assert rate == pytest.approx(1e6 / r["decode_step_us"]["p50"], rel=1e-2)
    assert r["peak_rss_mb"] > 10 and r["prompt_len"] == 8 and r["new_tokens"] == 12


def test_generate_cli(runner: CliRunner, gpt2_tflite: dict[str, Path]) -> None:
    result = invoke(
        runner,
        "generate",
        gpt2_tflite["float32"],
        "--prompt",
        "Hi",
        "--max-new-tokens",
        "5",
        "--json",
    )
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert len(doc["tokens"]) == 5 and doc["prompt_tokens"] == 2 and doc["ttft_ms"] > 0
    human = invoke(
        runner,
        "generate",
        gpt2_tflite["float32"],
        "--token-ids",
        "5,17,42",
        "--max-new-tokens",
        "4",
    )
    assert human.exit_code == 0 and "tokens/s" in human.stdout


def test_lookup_through_the_cli(runner: CliRunner, gpt2_tflite: dict[str, Path]) -> None:
    """generate --lookup gives the plain greedy tokens and says what it drafted; bench --lm
    --lookup reports the verify steps; --lookup with --top-k is refused."""
    ids = "5,17,42,9,5,17,42,9,5,17,42"
    base = ["generate", gpt2_tflite["float32"], "--token-ids", ids, "--max-new-tokens", "12", "--json"]
    plain = json.loads(invoke(runner, *base).stdout)
    fast = json.loads(invoke(runner, *base, "--lookup", "5").stdout)
    assert fast["tokens"] == plain["tokens"] and fast["lookup"]["steps"] > 0
    timed = invoke(
        runner, "bench", gpt2_tflite["float32"], "--lm", "--new-tokens", "16", "--lookup", "3", "--json"
    )
    assert timed.exit_code == 0, timed.output
    assert json.loads(timed.stdout)["results"][0]["lookup"]["max_draft"] == 3
    mixed = invoke(runner, *base, "--lookup", "3", "--top-k", "2")
    assert mixed.exit_code == 1 and "--top-k" in mixed.stderr


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--prompt", ""], "empty"),
        (["--token-ids", "1.5,2"], "integers"),
        (["--token-ids", "1,2,999"], "[0, 260)"),
        (["--prompt", "x" * 30, "--max-new-tokens", "20"], "exceed the exported length 40"),
        (["--prompt", "a", "--token-ids", "1"], "exactly one"),
    ],
    ids=["empty", "wrong-dtype", "out-of-vocab", "too-long", "both"],
)
def test_generate_bad_inputs(
    runner: CliRunner, gpt2_tflite: dict[str, Path], args: list[str], fragment: str
) -> None:
    result = invoke(runner, "generate", gpt2_tflite["float32"], *args)
    assert result.exit_code == 1
    assert fragment in result.stderr and result.stderr.strip().count("\n") == 0


def test_lm_errors(
    runner: CliRunner,
    gpt2: tuple[Any, Path],
    files: dict[str, Path],
    tflite: dict[str, Path],
    tmp_path: Path,
) -> None:
    with pytest.raises(ConversionError, match="dynamic"):
        convert(gpt2[1], tmp_path / "x.tflite", "int8", lm=True, max_length=MAX_LEN)
    with pytest.raises(ConversionError, match="position limit"):
        convert(gpt2[1], tmp_path / "x.tflite", "float32", lm=True, max_length=500)
    not_lm = invoke(runner, "convert", files["keras"], "-o", tmp_path / "y.tflite", "--lm")
    assert not_lm.exit_code == 1 and "CausalLM" in not_lm.stderr
    plain = invoke(runner, "generate", tflite["float32"], "--prompt", "hi")
    assert plain.exit_code == 1 and "prefill_N and decode" in plain.stderr


def test_generate_streams_text(gpt2_tflite: dict[str, Path], tmp_path: Path) -> None:
    """Text mode writes each token as it comes (before the speed line); a real process, so the
    stream goes through the real stdout file descriptor."""
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-m", "tfopt", "generate", str(gpt2_tflite["float32"]),
         "--token-ids", "5,17,42", "--max-new-tokens", "6"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    expected = LmRunner(str(gpt2_tflite["float32"])).generate([5, 17, 42], 6)[0]
    assert lines[0].split() == [str(t) for t in expected]
    assert "tokens/s" in lines[-1]


def _bpe_files(folder: Path) -> Path:
    """A GPT-2 BPE vocabulary in the real file formats (keras-hub's documented example, with the
    intermediate merges its loader checks for)."""
    folder.mkdir()
    pieces = ["<|endoftext|>", "a", "Ġ", "q", "u", "i", "c", "k", "f", "o", "x", "ui", "ck"]
    pieces += ["uick", "Ġq", "Ġquick", "Ġf", "ox", "Ġfox"]
    vocab = {piece: i for i, piece in enumerate(pieces)}
    (folder / "vocab.json").write_text(json.dumps(vocab))
    merges = ["Ġ q", "u i", "c k", "ui ck", "Ġq uick", "Ġ f", "o x", "Ġf ox"]
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    return folder


def test_generate_with_a_tokenizer(
    runner: CliRunner, gpt2_tflite: dict[str, Path], tmp_path: Path
) -> None:
    """--tokenizer: a bare GPT-2 BPE folder and the same tokenizer saved as a keras-hub preset
    give the same prompt ids, and the generated ids come back as the tokenizer's text."""
    from tfopt import keras_worlds

    bare = _bpe_files(tmp_path / "bpe")
    hub = keras_worlds.keras_hub()
    preset = tmp_path / "preset"
    hub.models.GPT2Tokenizer(
        vocabulary=str(bare / "vocab.json"), merges=str(bare / "merges.txt")
    ).save_to_preset(str(preset))
    docs = []
    for folder in (bare, preset):
        result = invoke(
            runner, "generate", gpt2_tflite["float32"], "--tokenizer", folder,
            "--prompt", "a quick fox", "--max-new-tokens", "4", "--json",
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        docs.append(json.loads(result.stdout))
    assert docs[0]["prompt_tokens"] == 3 and docs[0]["tokens"] == docs[1]["tokens"]
    assert "GPT2Tokenizer" in docs[1]["tokenizer"]
    empty = tmp_path / "empty"
    empty.mkdir()
    bad = invoke(runner, "generate", gpt2_tflite["float32"], "--tokenizer", empty, "--prompt", "a")
    assert bad.exit_code == 1 and "vocab.json" in bad.stderr
