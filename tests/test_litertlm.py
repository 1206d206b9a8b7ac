"""`.litertlm` bundles run by LiteRT-LM's own engine: GPT-2, Llama, Gemma and Qwen, saved by the
user with their tokenizer; the engine's greedy text equals keras-hub generate() on real prompts."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from tests.conftest import invoke
from tfopt import keras_worlds
from tfopt.lm.bundle import TokenizerFile, byte_chars
from tfopt.lm.engine import Codec, engine_text

FORTUNES = Path("/usr/share/games/fortunes")
MAX_LEN = 48
NEW = 10


def real_lines(count: int) -> list[str]:
    """Short real English lines from the fortunes corpus (ASCII letters and spaces)."""
    lines = []
    for path in sorted(FORTUNES.glob("*")):
        if path.suffix or not path.is_file():
            continue
        for line in path.read_text("latin-1").splitlines():
            clean = line.strip()
            if 20 < len(clean) < 60 and clean.isascii() and clean.replace(" ", "").isalpha():
                lines.append(clean)
        if len(lines) > 400:
            break
    return lines[:count]


def ascii_bpe(folder: Path) -> Path:
    """A byte-level BPE vocabulary of printable ASCII, a few merges and <|endoftext|>: every
    token is whole text, so generated text compares exactly."""
    folder.mkdir(parents=True, exist_ok=True)
    chars = byte_chars()
    vocab = {chars[b]: i for i, b in enumerate(range(32, 127))}
    merges = ["Ġ t", "h e", "Ġt he", "i n", "Ġ a", "e r", "o u"]
    for merge in merges:
        vocab[merge.replace(" ", "")] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    return folder


def sentencepiece_proto(specials: list[str]) -> bytes:
    """A small SentencePiece model trained on real text, with the family's special tokens."""
    import sentencepiece

    out = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(real_lines(400)), model_writer=out, vocab_size=150,
        model_type="bpe", character_coverage=1.0, unk_id=0, bos_id=-1, eos_id=-1, pad_id=-1,
        user_defined_symbols=specials,
    )  # fmt: skip
    return out.getvalue()


def family_model(family: str, folder: Path) -> Any:
    """A random-init causal LM of the family with its real tokenizer class and preprocessor."""
    hub = keras_worlds.keras_hub()
    keras_worlds.module(keras_worlds.World.KERAS3).utils.set_random_seed(2)
    sizes = {"num_layers": 2, "hidden_dim": 64, "intermediate_dim": 128}
    if family in ("gpt2", "qwen"):
        bpe = ascii_bpe(folder / "bpe")
        files = {"vocabulary": str(bpe / "vocab.json"), "merges": str(bpe / "merges.txt")}
        if family == "gpt2":
            tokenizer = hub.models.GPT2Tokenizer(**files)
            backbone = hub.models.GPT2Backbone(
                vocabulary_size=tokenizer.vocabulary_size(), num_heads=2,
                max_sequence_length=64, **sizes,
            )  # fmt: skip
        else:
            tokenizer = hub.models.QwenTokenizer(**files)
            backbone = hub.models.QwenBackbone(
                vocabulary_size=tokenizer.vocabulary_size(), num_query_heads=4,
                num_key_value_heads=2, **sizes,
            )  # fmt: skip
    elif family == "llama":
        tokenizer = hub.models.LlamaTokenizer(proto=sentencepiece_proto(["<s>", "</s>"]))
        backbone = hub.models.LlamaBackbone(
            vocabulary_size=tokenizer.vocabulary_size(), num_query_heads=4,
            num_key_value_heads=2, **sizes,
        )  # fmt: skip
    else:
        tokenizer = hub.models.GemmaTokenizer(
            proto=sentencepiece_proto(["<bos>", "<eos>", "<pad>"])
        )
        backbone = hub.models.GemmaBackbone(
            vocabulary_size=tokenizer.vocabulary_size(), num_query_heads=4,
            num_key_value_heads=1, head_dim=16, **sizes,
        )  # fmt: skip
    prefix = {"gpt2": "GPT2", "qwen": "Qwen", "llama": "Llama", "gemma": "Gemma"}[family]
    preprocessor = getattr(hub.models, f"{prefix}CausalLMPreprocessor")(tokenizer=tokenizer)
    return getattr(hub.models, f"{prefix}CausalLM")(backbone=backbone, preprocessor=preprocessor)


def keras_greedy(model: Any, ids: list[int], new_tokens: int, stops: tuple[int, ...]) -> list[int]:
    """keras-hub generate() from token ids, greedy, up to (not including) a stop token."""
    model.compile(sampler="greedy")
    tokens = np.zeros((1, MAX_LEN), np.int32)
    mask = np.zeros((1, MAX_LEN), bool)
    tokens[0, : len(ids)], mask[0, : len(ids)] = ids, True
    saved, model.preprocessor = model.preprocessor, None  # ids in, ids out
    try:
        out = model.generate({"token_ids": tokens, "padding_mask": mask}, stop_token_ids=None)
    finally:
        model.preprocessor = saved
    new = [int(t) for t in np.asarray(out["token_ids"])[0, len(ids) : len(ids) + new_tokens]]
    ends = [i for i, t in enumerate(new) if t in stops]
    return new[: ends[0]] if ends else new


@pytest.mark.parametrize("family", ["gpt2", "llama", "gemma", "qwen"])
def test_engine_equals_keras_hub(family: str, runner: CliRunner, tmp_path: Path) -> None:
    """The user's saved model (with its preprocessor) becomes a bundle through the CLI; the
    convert check already ran LiteRT-LM's engine; then, on real prompts, the engine's greedy
    text equals keras-hub generate() from the same ids, and the bundled tokenizer gives the ids
    keras-hub's own tokenizer gives."""
    model = family_model(family, tmp_path)
    source = tmp_path / f"{family}.keras"
    model.save(source)
    bundle = tmp_path / f"{family}.litertlm"
    result = invoke(
        runner, "convert", source, "--lm", "--max-length", str(MAX_LEN), "-o", bundle, "--json"
    )
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["check"]["litert_lm"]["equal"] is True and doc["source"].endswith("+litertlm")
    work = tmp_path / "tok"
    work.mkdir()
    from tfopt.lm.bundle import tokenizer_file

    tokens: TokenizerFile = tokenizer_file(model.preprocessor.tokenizer, 0, work)
    codec = Codec(tokens)
    for line in real_lines(2):
        words = line.split(" ")
        while len(codec.encode(" ".join(words))) > 30:  # under the smallest bucket (32)
            words.pop()
        prompt = " ".join(words)
        ids = codec.encode(prompt)
        own = [int(t) for t in np.asarray(model.preprocessor.tokenizer(prompt)).reshape(-1)]
        assert ids[len(ids) - len(own) :] == own
        expected = codec.decode(keras_greedy(model, ids, NEW, tokens.stops))
        text = engine_text(bundle, prompt, NEW)
        assert text == expected and text.strip() and "\ufffd" not in text


def test_bundle_needs_lm_and_a_fitting_tokenizer(runner: CliRunner, gpt2: Any, tmp_path: Path) -> None:
    """--litertlm without --lm, --tokenizer without a bundle: one line each, nothing written."""
    out = tmp_path / "x.litertlm"
    plain = invoke(runner, "convert", gpt2[1], "--litertlm", "-o", out)
    assert plain.exit_code == 1 and "--lm" in plain.stderr and not out.exists()
    bpe = ascii_bpe(tmp_path / "bpe")
    loose = invoke(runner, "convert", gpt2[1], "--lm", "--tokenizer", bpe, "-o", tmp_path / "x.tflite")
    assert loose.exit_code == 1 and "--litertlm" in loose.stderr


def test_bench_times_the_bundle_in_litert_lm(runner: CliRunner, gpt2: Any, tmp_path: Path) -> None:
    """`bench --lm` on a .litertlm runs LiteRT-LM's own engine (byte-level bundle of the tiny
    GPT-2, no tokenizer of its own) and reports it in the LM table's keys."""
    bundle = tmp_path / "gpt2.litertlm"
    made = invoke(runner, "convert", gpt2[1], "--lm", "--max-length", "64", "--litertlm", "-o", bundle)
    assert made.exit_code == 0, made.output
    result = invoke(
        runner, "bench", bundle, "--lm", "--prompt-len", "20", "--new-tokens", "12", "--json"
    )
    assert result.exit_code == 0, result.output
    entry = json.loads(result.stdout)["results"][0]
    assert entry["runtime"] == "litert-lm" and entry["prompt_len"] == 20
    assert entry["decode_tokens_per_s"]["p50"] > 0 and entry["ttft_ms"] > 0
    shown = json.loads(invoke(runner, "inspect", bundle, "--json").stdout)
    assert {"decode", "verify_8"} <= set(shown["signatures"]) and shown["bundle"]["tokenizer"] == "HF_Tokenizer"
    assert "stop_tokens" in shown["bundle"]["llm_metadata"] and shown["size_bytes"] == bundle.stat().st_size
    bad = tmp_path / "not.litertlm"
    bad.write_bytes(b"nonsense")
    for command in (["bench", bad, "--lm"], ["inspect", bad]):
        refused = invoke(runner, *command)
        assert refused.exit_code == 1 and "LITERTLM" in refused.stderr


def test_generate_runs_a_bundle_in_litert_lm(runner: CliRunner, tmp_path: Path) -> None:
    """`generate` on a .litertlm: LiteRT-LM's engine with the bundled tokenizer, the text equal
    to the engine's greedy text and its own timings; ids or sampling options are refused."""
    model = family_model("gpt2", tmp_path)
    source = tmp_path / "gpt2.keras"
    model.save(source)
    bundle = tmp_path / "gpt2.litertlm"
    made = invoke(runner, "convert", source, "--lm", "--max-length", "40", "-o", bundle, "--no-check")
    assert made.exit_code == 0, made.output
    result = invoke(runner, "generate", bundle, "--prompt", "the", "--max-new-tokens", "6", "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["runtime"] == "litert-lm" and doc["text"] == engine_text(bundle, "the", 6)
    assert doc["decode_tokens_per_s"] > 0 and doc["prompt_tokens"] >= 1
    refused = invoke(runner, "generate", bundle, "--token-ids", "1,2")
    assert refused.exit_code == 1 and "--token-ids" in refused.stderr
