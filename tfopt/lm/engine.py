"""The bundle checked by LiteRT-LM's own engine: the greedy text the engine writes for a prompt
is the text tfopt's runner writes from the same ids (the runner itself is checked against the
Keras model's logits). The engine runs in a child process (`tfopt.runtime.litertlm`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tfopt.errors import ValidationError, option
from tfopt.lm.bundle import TokenizerFile
from tfopt.lm.generation import engine_text
from tfopt.runtime.lm import LmRunner

PROMPT = "The quick brown fox jumps over the lazy dog."


class Codec:
    """Text <-> ids with the very tokenizer file the bundle carries."""

    def __init__(self, tokens: TokenizerFile) -> None:
        self.tokens = tokens
        if tokens.kind == "sp":
            import sentencepiece

            self._sp = sentencepiece.SentencePieceProcessor(model_file=str(tokens.path))
        else:
            from tokenizers import Tokenizer

            self._hf = Tokenizer.from_file(str(tokens.path))

    def encode(self, text: str) -> list[int]:
        """The ids the engine feeds for `text`: the start token, then the text's."""
        ids = self._sp.encode(text) if self.tokens.kind == "sp" else self._hf.encode(text).ids
        start = [] if self.tokens.start is None else [self.tokens.start]
        return start + [int(i) for i in ids]

    def decode(self, ids: list[int]) -> str:
        return self._sp.decode(ids) if self.tokens.kind == "sp" else self._hf.decode(ids)


def _fitting(codec: Codec, room: int) -> tuple[str, list[int]]:
    """The longest leading words of PROMPT whose ids fit in `room` (at least one word)."""
    words = PROMPT.split(" ")
    for count in range(len(words), 0, -1):
        text = " ".join(words[:count])
        ids = codec.encode(text)
        if len(ids) <= room:
            break
    return text, ids


def check_engine(
    bundle: Path, model_file: Path, tokens: TokenizerFile, exact: bool, new_tokens: int = 8
) -> dict[str, Any]:
    """Greedy text from the engine against tfopt's runner on the same ids. `exact` (float
    weights) refuses any difference; quantized weights may differ on a near-tie between two
    builds of the int8 kernels, which the result reports instead."""
    codec = Codec(tokens)
    runner = LmRunner(str(model_file))
    # LiteRT-LM 0.18.1 refuses a first prefill as long as the smallest bucket when the exported
    # length is under 64 ("exceeds available state entries"): the check prompt stays shorter.
    prompt, ids = _fitting(codec, min(runner.max_length - new_tokens, runner.buckets[0] - 2))
    ours = runner.generate(ids, new_tokens, stop=set(tokens.stops))[0]
    expected = codec.decode([t for t in ours if t not in tokens.stops])
    text = engine_text(bundle, prompt, new_tokens)

    equal = text == expected
    if exact and not equal:
        raise ValidationError(
            f"LiteRT-LM's engine writes {text!r} where tfopt's runner writes {expected!r} "
            f"(pass {option('no_check', 'check=False')} to keep it)"
        )
    return {"prompt": prompt, "engine_text": text, "runner_text": expected, "equal": equal}
