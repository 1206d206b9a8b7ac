"""Generate with an exported LM through its TFLite signatures (no TensorFlow involved)."""

from __future__ import annotations

import os
from typing import Any

from tfopt.errors import InputError, ModelLoadError, first_line
from tfopt.inspection import read_tflite
from tfopt.loading import probe_tflite
from tfopt.runtime.lm import LmRunner, tokens_per_s, ttft_ms


def parse_prompt(prompt: str | None, token_ids: str | None) -> tuple[list[int], bool]:
    """Token ids from text (UTF-8 bytes) or an explicit id list; True if text was given."""
    if (prompt is None) == (token_ids is None):
        raise InputError("give exactly one of --prompt and --token-ids")
    if prompt is not None:
        if not prompt:
            raise InputError("the prompt is empty")
        return list(prompt.encode("utf-8")), True
    try:
        ids = [int(t) for t in token_ids.split(",") if t.strip()]  # type: ignore[union-attr]
    except ValueError:
        raise InputError(
            f"--token-ids must be comma-separated integers, got '{token_ids}'"
        ) from None
    if not ids:
        raise InputError("the prompt is empty")
    return ids, False


def generate(
    model: str | os.PathLike[str],
    prompt: str | None = None,
    token_ids: str | None = None,
    max_new_tokens: int = 32,
    top_k: int | None = None,
    seed: int = 0,
    threads: int = 1,
) -> dict[str, Any]:
    """Greedy or seeded top-k generation; returns tokens, text (byte prompts) and timings."""
    read_tflite(model)
    ids, is_text = parse_prompt(prompt, token_ids)
    if max_new_tokens < 1:
        raise InputError("--max-new-tokens must be at least 1")
    if top_k is not None and top_k < 1:
        raise InputError("--top-k must be at least 1")
    broken = f"{model} is a broken .tflite file"
    probe_tflite(model)
    try:
        lm = LmRunner(str(model), threads)
    except ValueError as exc:  # LmRunner names the file when the signatures are wrong
        msg = first_line(exc)
        raise ModelLoadError(msg if msg.startswith(str(model)) else f"{broken}: {msg}") from None
    except (RuntimeError, KeyError, IndexError) as exc:  # a damaged graph, found by the runtime
        raise ModelLoadError(f"{broken}: {type(exc).__name__}: {first_line(exc)}") from None
    try:
        tokens, timing = lm.generate(ids, max_new_tokens, top_k, seed)
    except ValueError as exc:  # the prompt does not fit the model
        raise InputError(first_line(exc)) from None
    except (RuntimeError, KeyError, IndexError) as exc:
        raise ModelLoadError(f"{broken}: {type(exc).__name__}: {first_line(exc)}") from None
    text = (
        bytes(t for t in tokens if t < 256).decode("utf-8", errors="replace") if is_text else None
    )
    return {
        "model": str(model),
        "prompt_tokens": len(ids),
        "tokens": tokens,
        "text": text,
        "prefill_ms": round(timing["prefill_ms"], 3),
        "ttft_ms": round(ttft_ms(timing), 3),
        "decode_tokens_per_s": round(tokens_per_s(timing["decode_us"]), 1),
    }
