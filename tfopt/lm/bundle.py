"""A `.litertlm` bundle: the LM export with its tokenizer and LlmMetadata, packed by LiteRT-LM's
own builder (`litert-lm-builder`) into the file apps load with LiteRT-LM's Engine on Android,
iOS and desktop.

The export is already in LiteRT-LM's contract (converters/lm.py). The tokenizer comes from
`--tokenizer` (a keras-hub preset folder or GPT-2 BPE files), else from the model's own
preprocessor, else byte-level ids (token id = UTF-8 byte, as tfopt's `generate` defaults to):
a byte-pair tokenizer (GPT-2, Qwen, ...) becomes a Hugging Face `tokenizer.json` (byte-level
BPE, the same GPT-2 split), a SentencePiece one (Llama, Gemma, Mistral) its model proto.
LlmMetadata carries the start and stop tokens, the exported length and greedy sampling
(LiteRT-LM's CPU sampler is top-p: k=1 is greedy).
"""

from __future__ import annotations

import contextlib
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tfopt import keras_worlds
from tfopt.errors import ConversionError, first_line, note, option


@dataclass(frozen=True)
class TokenizerFile:
    """The tokenizer as LiteRT-LM reads it: `kind` "hf" (tokenizer.json) or "sp"
    (SentencePiece model), its start/stop token ids, and what it was made from."""

    kind: str
    path: Path
    start: int | None
    stops: tuple[int, ...]
    source: str


def byte_chars() -> dict[int, str]:
    """GPT-2's byte -> printable character map (what a byte-level BPE vocabulary spells)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1)]
    printable += range(ord("®"), ord("ÿ") + 1)
    chars, extra = {}, 0
    for byte in range(256):
        if byte in printable:
            chars[byte] = chr(byte)
        else:
            chars[byte] = chr(256 + extra)
            extra += 1
    return chars


def _hf_json(vocab: dict[str, int], merges: list[str], specials: list[str], path: Path) -> None:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    pairs = [tuple(m.split(" ")) for m in merges if m and not m.startswith("#version")]
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=pairs))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.add_special_tokens([s for s in specials if s in vocab])
    tokenizer.save(str(path))


def _ids(tokenizer: Any, *names: str) -> list[int]:
    found = (getattr(tokenizer, f"{name}_token_id", None) for name in names)
    return [int(i) for i in found if i is not None]


def tokenizer_file(tokenizer: Any, vocab: int, folder: Path) -> TokenizerFile:
    """Write `tokenizer` (a keras-hub tokenizer, or None for byte-level ids) under `folder`."""
    hub = keras_worlds.keras_hub()
    name = type(tokenizer).__name__
    if tokenizer is None or isinstance(tokenizer, hub.tokenizers.ByteTokenizer):
        if vocab < 256:
            raise ConversionError(
                f"the LM's vocabulary has {vocab} ids, too few for byte-level tokens; pass the "
                f"model's tokenizer with {option('tokenizer')}"
            )
        path = folder / "tokenizer.json"
        _hf_json({c: b for b, c in byte_chars().items()}, [], [], path)
        # LiteRT-LM requires a stop token; byte-level ids have no end token, and NUL (id 0)
        # is a byte no text holds, so generation runs to its length as in tfopt's runner.
        return TokenizerFile("hf", path, None, (0,), "byte-level ids (token id = UTF-8 byte)")
    start = _ids(tokenizer, "start")
    stops = _ids(tokenizer, "end")
    if isinstance(tokenizer, hub.tokenizers.SentencePieceTokenizer):
        path = folder / "tokenizer.model"
        proto = tokenizer.proto
        path.write_bytes(proto if isinstance(proto, bytes) else bytes(proto))
        return TokenizerFile("sp", path, (start or [None])[0], tuple(stops), name)
    if isinstance(tokenizer, hub.tokenizers.BytePairTokenizer):
        path = folder / "tokenizer.json"
        specials = list(getattr(tokenizer, "unsplittable_tokens", None) or [])
        _hf_json(dict(tokenizer.vocabulary), list(tokenizer.merges), specials, path)
        return TokenizerFile("hf", path, (start or [None])[0], tuple(stops), name)
    raise ConversionError(
        f"{name}: LiteRT-LM reads byte-pair (tokenizer.json) and SentencePiece tokenizers; "
        "this one is neither"
    )


def model_tokenizer(model: Any, folder: str | os.PathLike[str] | None) -> Any:
    """The tokenizer to bundle: `folder`'s, else the model's preprocessor's, else None."""
    if folder is not None:
        from tfopt.lm.generation import HubTokenizer

        return HubTokenizer(folder).tokenizer
    preprocessor = getattr(model, "preprocessor", None)
    return getattr(preprocessor, "tokenizer", None)


def metadata_text(tokens: TokenizerFile, max_length: int) -> str:
    """LlmMetadata as a text proto: start and stop tokens, length, greedy sampling."""
    lines = []
    if tokens.start is not None:
        lines.append(f"start_token {{ token_ids {{ ids: {tokens.start} }} }}")
    lines += [f"stop_tokens {{ token_ids {{ ids: {i} }} }}" for i in tokens.stops]
    lines += [
        f"max_num_tokens: {max_length}",
        "sampler_params { type: TOP_P k: 1 p: 1.0 temperature: 1.0 }",
        "llm_model_type { generic_model {} }",
    ]
    return "\n".join(lines) + "\n"


def pack(tflite: Path, tokens: TokenizerFile, max_length: int, out: Path) -> None:
    """Write the `.litertlm` bundle to `out` with LiteRT-LM's builder."""
    from litert_lm_builder import DType, LitertLmFileBuilder, Metadata, TfLiteModelType

    meta = tflite.parent / "llm_metadata.pbtxt"
    meta.write_text(metadata_text(tokens, max_length), encoding="utf-8")
    builder = LitertLmFileBuilder()
    quiet = contextlib.redirect_stdout(io.StringIO())
    with quiet:  # the builder prints each part it adds
        builder.add_system_metadata(Metadata(key="Authors", value="tfopt", dtype=DType.STRING))
        builder.add_llm_metadata(str(meta))
        # float32 activations, as checked (LiteRT-LM defaults a text decoder to float16)
        model = TfLiteModelType.PREFILL_DECODE
        builder.add_tflite_model(str(tflite), model, prefer_activation_type="fp32")
        if tokens.kind == "sp":
            builder.add_sentencepiece_tokenizer(str(tokens.path))
        else:
            builder.add_hf_tokenizer(str(tokens.path))
    try:
        with open(out, "wb") as stream, contextlib.redirect_stdout(io.StringIO()):
            builder.build(stream)  # the builder prints what it adds
    except Exception as exc:  # noqa: BLE001 - the builder raises many types
        raise ConversionError(f"cannot pack the .litertlm bundle: {first_line(exc)}") from exc
    note(f"bundled for LiteRT-LM with the tokenizer: {tokens.source}")


def inspect_bundle(path: str | os.PathLike[str]) -> dict[str, Any]:
    """`inspect` of a `.litertlm`: its model described as a `.tflite` is, plus the bundle's
    sections, its tokenizer and its LlmMetadata (unpacked by LiteRT-LM's own builder)."""
    import tempfile

    from litert_lm_builder import unpack

    from tfopt.errors import InputError
    from tfopt.inspection import inspect_tflite

    source = Path(path)
    if not source.is_file():
        raise InputError(f"model not found: {source}")
    if source.read_bytes()[:8] != b"LITERTLM":
        raise InputError(f"{source}: not a LiteRT-LM bundle (no LITERTLM header)")
    with tempfile.TemporaryDirectory(prefix="tfopt-unpack-") as work:
        with contextlib.redirect_stdout(io.StringIO()):
            unpack(str(source), work)
        files = sorted(p.name for p in Path(work).iterdir())
        models = [f for f in files if f.endswith(".tflite")]
        if not models:
            raise InputError(f"{source}: the bundle holds no TFLite model")
        doc = inspect_tflite(Path(work) / models[0])
        meta = Path(work) / "LlmMetadataProto.pbtext"
        doc["bundle"] = {
            "sections": [f.split(".")[0] for f in files if f != "model.toml"],
            "tokenizer": next((k for k in ("HF_Tokenizer", "SP_Tokenizer") if any(k in f for f in files)), None),
            "llm_metadata": meta.read_text(encoding="utf-8") if meta.is_file() else None,
        }
    from tfopt.inspection import gzip_size

    data = source.read_bytes()
    doc.update(model=str(source), size_bytes=len(data), gzip_bytes=gzip_size(data))
    return doc
