"""Generate with an exported LM through its TFLite signatures, streaming text as it is produced.

Tokenizers: byte-level (token id = UTF-8 byte, no files), or a `tokenizer` folder: a keras-hub
preset folder (its `tokenizer.json` and assets: GPT-2 BPE, SentencePiece for Gemma/Llama, ...)
or a bare folder with GPT-2's `vocab.json` and `merges.txt`. Tokenizers load through keras-hub
(TensorFlow) on the host; the decode loop itself is LiteRT only.
"""

from __future__ import annotations

import codecs
import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tfopt.errors import InputError, ModelLoadError, ValidationError, first_line, option
from tfopt.inspection import read_tflite
from tfopt.loading import probe_tflite
from tfopt.runtime.lm import LmRunner, tokens_per_s, ttft_ms


class ByteTokenizer:
    """Token id = UTF-8 byte; ids of 256 and above (specials) print nothing."""

    name = "byte-level"

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def decoder(self) -> Callable[[int], str]:
        incremental = codecs.getincrementaldecoder("utf-8")(errors="replace")
        return lambda t: incremental.decode(bytes([t])) if t < 256 else ""


class HubTokenizer:
    """A keras-hub tokenizer; streaming detokenizes the ids so far and prints what is new, so
    merges and multi-byte characters come out whole."""

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        path = Path(folder)
        if not path.is_dir():
            raise InputError(f"{option('tokenizer')} {folder}: not a folder")
        from tfopt import keras_worlds

        hub = keras_worlds.keras_hub()
        try:
            if (path / "tokenizer.json").is_file():  # how keras-hub's preset loader reads it
                keras = keras_worlds.module(keras_worlds.World.KERAS3)
                config = json.loads((path / "tokenizer.json").read_text(encoding="utf-8"))
                self.tokenizer = keras.saving.deserialize_keras_object(config)
                self.tokenizer.load_preset_assets(str(path))
            elif (path / "vocab.json").is_file() and (path / "merges.txt").is_file():
                self.tokenizer = hub.models.GPT2Tokenizer(
                    vocabulary=str(path / "vocab.json"), merges=str(path / "merges.txt")
                )
            else:
                raise InputError(
                    f"{option('tokenizer')} {folder}: no tokenizer.json (a keras-hub preset) and no "
                    "vocab.json + merges.txt (GPT-2 BPE) in it"
                )
        except InputError:
            raise
        except Exception as exc:  # noqa: BLE001 - keras-hub raises many types on bad files
            raise InputError(f"{option('tokenizer')} {folder}: cannot load: {first_line(exc)}") from None
        self.name = f"{type(self.tokenizer).__name__} ({path.name})"

    def encode(self, text: str) -> list[int]:
        return [int(t) for t in np.asarray(self.tokenizer.tokenize(text)).reshape(-1)]

    def decoder(self) -> Callable[[int], str]:
        ids: list[int] = []
        shown = [""]

        def piece(token: int) -> str:
            ids.append(token)
            text = self.tokenizer.detokenize([ids])
            text = text.numpy()[0] if hasattr(text, "numpy") else text[0]
            text = text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text)
            if text.endswith("\ufffd"):  # a character still incomplete: wait for its bytes
                return ""
            new, shown[0] = text[len(shown[0]) :], text
            return new

        return piece


def parse_prompt(
    prompt: str | None, token_ids: str | None, tokenizer: Any = None
) -> tuple[list[int], bool]:
    """Token ids from text (the tokenizer, byte-level by default) or an explicit id list; True if
    text was given."""
    if (prompt is None) == (token_ids is None):
        raise InputError(f"give exactly one of {option('prompt')} and {option('token_ids')}")
    if prompt is not None:
        if not prompt:
            raise InputError("the prompt is empty")
        ids = (tokenizer or ByteTokenizer()).encode(prompt)
        if not ids:
            raise InputError("the prompt is empty after tokenization")
        return ids, True
    try:
        ids = [int(t) for t in token_ids.split(",") if t.strip()]  # type: ignore[union-attr]
    except ValueError:
        raise InputError(
            f"{option('token_ids')} must be comma-separated integers, got '{token_ids}'"
        ) from None
    if not ids:
        raise InputError("the prompt is empty")
    return ids, False


@dataclass(frozen=True)
class GenerateRequest:
    """One generation: the exported LM, the prompt (text or token ids), how many tokens and how
    they are chosen (greedy, or seeded top-k), the CPU threads and the tokenizer folder."""

    model: str | os.PathLike[str]
    prompt: str | None = None
    token_ids: str | None = None
    max_new_tokens: int = 32
    top_k: int | None = None
    seed: int = 0
    threads: int = 1
    tokenizer: str | os.PathLike[str] | None = None
    lookup: int = 0  # prompt-lookup draft tokens per verify step (greedy only)

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise InputError(f"{option('max_new_tokens')} must be at least 1")
        if self.top_k is not None and self.top_k < 1:
            raise InputError(f"{option('top_k')} must be at least 1")
        if self.lookup < 0 or (self.lookup and self.top_k is not None):
            raise InputError(
                f"{option('lookup')} (draft tokens, >= 0) keeps greedy output: not with {option('top_k')}"
            )


def engine_text(bundle: Path, prompt: str, new_tokens: int, threads: int = 1) -> str:
    """LiteRT-LM's greedy text after `prompt`; a failure of the engine is one line."""
    return engine_run(bundle, prompt, new_tokens, threads)["text"]


def engine_run(
    bundle: Path, prompt: str, new_tokens: int, threads: int = 1, timed: bool = False
) -> dict[str, Any]:
    """LiteRT-LM's engine on `bundle` in a child process: its text after `prompt` and, with
    `timed`, its own timings (`tfopt.runtime.litertlm.generate_text`)."""
    proc = subprocess.run(
        [sys.executable, "-m", "tfopt.runtime.litertlm", str(bundle), "--prompt", prompt,
         "--max-new-tokens", str(new_tokens), "--threads", str(threads)]
        + (["--timed"] if timed else []),
        capture_output=True, text=True, check=False, timeout=900,
    )  # fmt: skip
    lines = proc.stdout.strip().splitlines()
    doc = json.loads(lines[-1]) if lines else {}
    if proc.returncode != 0 or "text" not in doc:
        said = [line.split("] ", 1)[-1] for line in proc.stderr.splitlines() if "Failed to" in line]
        why = (said or [doc.get("error") or "no output"])[-1]
        raise ValidationError(f"LiteRT-LM's engine cannot run {bundle.name}: {why}")
    return doc


# The LM loop's own load and one decode step, in the child process that `probe_tflite` runs:
# a damaged file can crash CompiledModel's native code where the Interpreter's probe passes.
LM_PROBE = (
    "import sys\nfrom tfopt.runtime.lm import LmRunner\n"
    "try:\n    LmRunner(sys.argv[1], weight_cache=False).decode(0, 0)\nexcept Exception:\n    pass\n"
)


def _in_litert_lm(req: GenerateRequest, on_text: Callable[[str], None] | None) -> dict[str, Any]:
    """A `.litertlm` bundle generates through LiteRT-LM's own engine: text in (its bundled
    tokenizer), greedy text out, the engine's own timings."""
    given = [n for n in ("token_ids", "tokenizer", "top_k") if getattr(req, n) is not None]
    given += ["lookup"] if req.lookup else []
    if req.prompt is None or given:
        dropped = f": drop {', '.join(option(n) for n in given)}" if given else ""
        raise InputError(
            f"a .litertlm bundle generates from {option('prompt')} text with its own tokenizer "
            f"and sampler{dropped}"
        )
    if not Path(req.model).is_file():
        raise InputError(f"model not found: {req.model}")
    try:
        doc = engine_run(Path(req.model), req.prompt, req.max_new_tokens, req.threads, timed=True)
    except ValidationError as exc:
        raise ModelLoadError(first_line(exc)) from None
    if on_text:
        on_text(doc["text"] + "\n")
    prefill = doc["prompt_tokens"] / doc["prefill_tokens_per_s"] * 1e3 if doc["prefill_tokens_per_s"] else 0.0
    return {
        "model": str(req.model),
        "runtime": "litert-lm",
        "tokenizer": "the bundle's",
        "prompt_tokens": doc["prompt_tokens"],
        "tokens": [],
        "text": doc["text"],
        "streamed": on_text is not None,
        "prefill_ms": round(prefill, 3),
        "ttft_ms": doc["ttft_ms"],
        "decode_tokens_per_s": doc["decode_tokens_per_s"],
        "decode_tokens": doc["decode_tokens"],
        "lookup": None,
    }


def generate(
    model: GenerateRequest | str | os.PathLike[str],
    *args: Any,
    on_text: Callable[[str], None] | None = None,
    **options: Any,
) -> dict[str, Any]:
    """Greedy or seeded top-k generation; returns tokens, text and timings. `on_text` receives
    the text of each token as it is produced (streaming).

    `model` is a `GenerateRequest`, or the model of one whose other fields follow
    (`generate(model, prompt=..., max_new_tokens=...)`).
    """
    req = model if isinstance(model, GenerateRequest) else GenerateRequest(model, *args, **options)
    if isinstance(model, GenerateRequest) and (args or options):
        raise TypeError("generate(request) takes no further arguments")
    model = req.model
    if str(model).endswith(".litertlm"):
        return _in_litert_lm(req, on_text)
    read_tflite(model)
    tok = HubTokenizer(req.tokenizer) if req.tokenizer else ByteTokenizer()
    ids, is_text = parse_prompt(req.prompt, req.token_ids, tok)
    broken = f"{model} is a broken .tflite file"
    probe_tflite(model, script=LM_PROBE)  # CompiledModel, as LmRunner loads it
    try:
        lm = LmRunner(str(model), req.threads)
    except ValueError as exc:  # LmRunner names the file when the signatures are wrong
        msg = first_line(exc)
        raise ModelLoadError(msg if msg.startswith(str(model)) else f"{broken}: {msg}") from None
    except (RuntimeError, KeyError, IndexError) as exc:  # a damaged graph, found by the runtime
        raise ModelLoadError(f"{broken}: {type(exc).__name__}: {first_line(exc)}") from None
    readable = is_text or req.tokenizer is not None
    piece = tok.decoder() if readable else (lambda t: f"{t} ")
    pieces: list[str] = []
    tokens: list[int] = []
    timing: dict[str, Any] = {}
    try:
        stream = lm.stream(
            ids, req.max_new_tokens, req.top_k, req.seed, timing=timing, lookup=req.lookup
        )
        for token in stream:
            tokens.append(token)
            text = piece(token)
            pieces.append(text)
            if on_text and text:
                on_text(text)
    except ValueError as exc:  # the prompt does not fit the model
        raise InputError(first_line(exc)) from None
    except (RuntimeError, KeyError, IndexError) as exc:
        raise ModelLoadError(f"{broken}: {type(exc).__name__}: {first_line(exc)}") from None
    if on_text:
        on_text("\n")
    return {
        "model": str(model),
        "tokenizer": tok.name,
        "prompt_tokens": len(ids),
        "tokens": tokens,
        "text": "".join(pieces) if readable else None,
        "streamed": on_text is not None,
        "prefill_ms": round(timing["prefill_ms"], 3),
        "ttft_ms": round(ttft_ms(timing), 3),
        "decode_tokens_per_s": round(tokens_per_s(timing["decode_us"]), 1),
        "lookup": {"max_draft": req.lookup, **timing["lookup"]} if req.lookup else None,
    }
