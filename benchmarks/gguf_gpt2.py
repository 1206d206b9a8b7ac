"""A keras-hub GPT-2 causal LM written to GGUF (F32) for llama.cpp, from its numpy weights.

    python benchmarks/gguf_gpt2.py --self-check      (tiny model, no llama.cpp needed)

The layout is llama.cpp's GPT-2 (its `conversion/gpt2.py` and `src/models/gpt2.cpp`): token and
position embeddings, per block a pre-norm (`attn_norm`), one fused QKV projection (`attn_qkv`,
rows Q then K then V), `attn_output`, `ffn_norm`, `ffn_up` and `ffn_down`, all with biases;
`output_norm`; no `output` tensor, so llama.cpp ties the head to `token_embd` as keras-hub does.
Matrices are stored `[out, in]` (numpy order; GGUF lists the dimensions reversed), so keras'
`[in, out]` kernels are transposed.

The tokenizer section is a GPT-2 byte-level BPE that llama.cpp's loader accepts for any vocabulary
of at least 257 entries: the 256 byte symbols, then tokens made by merging two byte symbols (one
merge rule each), then `<|endoftext|>` as the last id (BOS = EOS, as GPT-2). The parity check and
the timings feed token ids directly, so only the loader has to accept it.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def byte_symbols() -> list[str]:
    """GPT-2's printable stand-in for each byte value (its `bytes_to_unicode`), by byte: the map
    tfopt's LiteRT-LM bundles spell byte-level vocabularies with."""
    from tfopt.lm.bundle import byte_chars

    chars = byte_chars()
    return [chars[b] for b in range(256)]


def bpe_vocab(vocab_size: int) -> tuple[list[str], list[int], list[str]]:
    """Tokens, token types and merge rules of a byte-level BPE with `vocab_size` entries."""
    if vocab_size < 257:
        raise ValueError(f"vocab_size {vocab_size} < 257: a byte-level BPE needs 256 bytes + EOS")
    import gguf

    symbols = byte_symbols()
    merges = [
        f"{a} {b}" for a in symbols for b in symbols if not (a == " " or b == " ")
    ][: vocab_size - 257]
    if len(merges) < vocab_size - 257:
        raise ValueError(f"vocab_size {vocab_size} exceeds the {257 + len(merges)} this BPE makes")
    tokens = symbols + [m.replace(" ", "") for m in merges] + ["<|endoftext|>"]
    types = [int(gguf.TokenType.NORMAL)] * (vocab_size - 1) + [int(gguf.TokenType.CONTROL)]
    return tokens, types, merges


def gpt2_tensors(backbone: Any) -> dict[str, np.ndarray]:
    """llama.cpp's GPT-2 tensors (name -> float32 array, `[out, in]`) from a GPT2Backbone."""
    import gguf

    def name(kind: gguf.MODEL_TENSOR, suffix: str, bid: int | None = None) -> str:
        base = gguf.TENSOR_NAMES[kind]
        return (base.format(bid=bid) if bid is not None else base) + f".{suffix}"

    weights = {w.path: np.asarray(w.numpy(), np.float32) for w in backbone.weights}
    hidden = weights["token_embedding/embeddings"].shape[1]
    t = gguf.MODEL_TENSOR
    out = {
        name(t.TOKEN_EMBD, "weight"): weights["token_embedding/embeddings"],
        name(t.POS_EMBD, "weight"): weights["position_embedding/embeddings"],
        name(t.OUTPUT_NORM, "weight"): weights["layer_norm/gamma"],
        name(t.OUTPUT_NORM, "bias"): weights["layer_norm/beta"],
    }
    for i in range(backbone.num_layers):
        p = f"transformer_layer_{i}/"
        a = p + "self_attention/"
        qkv_w = [weights[f"{a}{k}/kernel"].reshape(hidden, hidden).T for k in ("query", "key", "value")]
        qkv_b = [weights[f"{a}{k}/bias"].reshape(hidden) for k in ("query", "key", "value")]
        out |= {
            name(t.ATTN_NORM, "weight", i): weights[p + "self_attention_layer_norm/gamma"],
            name(t.ATTN_NORM, "bias", i): weights[p + "self_attention_layer_norm/beta"],
            name(t.ATTN_QKV, "weight", i): np.concatenate(qkv_w, axis=0),
            name(t.ATTN_QKV, "bias", i): np.concatenate(qkv_b),
            name(t.ATTN_OUT, "weight", i): weights[a + "attention_output/kernel"].reshape(hidden, hidden).T,
            name(t.ATTN_OUT, "bias", i): weights[a + "attention_output/bias"],
            name(t.FFN_NORM, "weight", i): weights[p + "feedforward_layer_norm/gamma"],
            name(t.FFN_NORM, "bias", i): weights[p + "feedforward_layer_norm/beta"],
            name(t.FFN_UP, "weight", i): weights[p + "feedforward_intermediate_dense/kernel"].T,
            name(t.FFN_UP, "bias", i): weights[p + "feedforward_intermediate_dense/bias"],
            name(t.FFN_DOWN, "weight", i): weights[p + "feedforward_output_dense/kernel"].T,
            name(t.FFN_DOWN, "bias", i): weights[p + "feedforward_output_dense/bias"],
        }
    return {k: np.ascontiguousarray(v) for k, v in out.items()}


def write_gguf(backbone: Any, path: Path) -> Path:
    """Write `backbone` (a keras-hub GPT2Backbone) to `path` as an F32 GGUF llama.cpp loads."""
    import gguf

    tensors = gpt2_tensors(backbone)
    vocab, hidden = tensors["token_embd.weight"].shape
    writer = gguf.GGUFWriter(str(path), gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.GPT2])
    writer.add_name("keras-hub GPT2CausalLM")
    writer.add_block_count(backbone.num_layers)
    writer.add_context_length(tensors["position_embd.weight"].shape[0])
    writer.add_embedding_length(hidden)
    writer.add_feed_forward_length(tensors["blk.0.ffn_up.weight"].shape[0])
    writer.add_head_count(backbone.num_heads)
    writer.add_layer_norm_eps(1e-5)  # keras-hub GPT2Backbone's layer_norm_epsilon
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    tokens, types, merges = bpe_vocab(vocab)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("gpt-2")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    writer.add_bos_token_id(vocab - 1)
    writer.add_eos_token_id(vocab - 1)
    for name, array in tensors.items():
        writer.add_tensor(name, array)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def numpy_logits(tensors: dict[str, np.ndarray], heads: int, ids: list[int]) -> np.ndarray:
    """Logits of every position by the GGUF tensors alone, the way llama.cpp's GPT-2 graph reads
    them (fused QKV split Q, K, V; tanh GELU; head tied to token_embd), in plain numpy."""

    def norm(x: np.ndarray, prefix: str) -> np.ndarray:
        x = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-5)
        return x * tensors[prefix + ".weight"] + tensors[prefix + ".bias"]

    def dense(x: np.ndarray, prefix: str) -> np.ndarray:
        return x @ tensors[prefix + ".weight"].T + tensors[prefix + ".bias"]

    n, hidden = len(ids), tensors["token_embd.weight"].shape[1]
    h = tensors["token_embd.weight"][ids] + tensors["position_embd.weight"][:n]
    causal = np.triu(np.full((n, n), -np.inf), 1)
    for i in range(sum(k.endswith("attn_qkv.weight") for k in tensors)):
        q, k, v = np.split(dense(norm(h, f"blk.{i}.attn_norm"), f"blk.{i}.attn_qkv"), 3, axis=-1)
        q, k, v = (a.reshape(n, heads, -1).transpose(1, 0, 2) for a in (q, k, v))
        scores = q @ k.transpose(0, 2, 1) / np.sqrt(hidden // heads) + causal
        weights = np.exp(scores - scores.max(-1, keepdims=True))
        attended = (weights / weights.sum(-1, keepdims=True)) @ v
        h = h + dense(attended.transpose(1, 0, 2).reshape(n, hidden), f"blk.{i}.attn_output")
        up = dense(norm(h, f"blk.{i}.ffn_norm"), f"blk.{i}.ffn_up")
        gelu = 0.5 * up * (1 + np.tanh(np.sqrt(2 / np.pi) * (up + 0.044715 * up**3)))
        h = h + dense(gelu, f"blk.{i}.ffn_down")
    return norm(h, "output_norm") @ tensors["token_embd.weight"].T


def self_check() -> None:
    """A tiny GPT-2 to GGUF and back with gguf's reader: every tensor present with llama.cpp's
    shape and bytes, the head tied, and a numpy forward from the stored tensors alone gives
    keras-hub's logits (so orientation, the QKV fusion and the tie are as llama.cpp reads them)."""
    import gguf

    from tfopt import keras_worlds

    hub = keras_worlds.keras_hub()
    keras_worlds.module(keras_worlds.World.KERAS3).utils.set_random_seed(0)
    backbone = hub.models.GPT2Backbone(
        vocabulary_size=300, num_layers=2, num_heads=2, hidden_dim=8, intermediate_dim=32,
        max_sequence_length=16,
    )  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        path = write_gguf(backbone, Path(tmp) / "tiny.gguf")
        reader = gguf.GGUFReader(str(path))
        stored = {t.name: np.array(t.data) for t in reader.tensors}
        arch = reader.fields["general.architecture"]
        assert bytes(arch.parts[arch.data[0]]).decode() == "gpt2"
        n_tokens = len(reader.fields["tokenizer.ggml.tokens"].data)
    expected = gpt2_tensors(backbone)
    assert sorted(stored) == sorted(expected), sorted(set(stored) ^ set(expected))
    assert "output.weight" not in stored and n_tokens == 300  # the head is token_embd, tied
    for name, array in expected.items():
        assert stored[name].shape == array.shape, (name, stored[name].shape, array.shape)
        np.testing.assert_array_equal(stored[name], array, err_msg=name)
    ids = [5, 17, 256, 299, 3, 42, 7]
    model = hub.models.GPT2CausalLM(backbone=backbone, preprocessor=None)
    batch = {"token_ids": np.array([ids], np.int32), "padding_mask": np.ones((1, len(ids)), bool)}
    want = np.asarray(model(batch))[0]
    got = numpy_logits(stored, backbone.num_heads, ids)
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-4)
    print(f"GGUF writer self-check: {len(stored)} tensors, {n_tokens} tokens; numpy forward from "
          f"the GGUF = keras-hub logits (max abs diff {np.abs(got - want).max():.1e})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--self-check", action="store_true", help="write a tiny model and check it")
    args = parser.parse_args()
    if args.self_check:
        self_check()
    else:
        parser.print_help()


if __name__ == "__main__":
    main()
