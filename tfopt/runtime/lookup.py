"""Prompt-lookup drafts: the tokens that followed the latest n-gram where it occurred before.

Speculative decoding without a draft model (Saxena, "Prompt Lookup Decoding", 2023): when the
output copies from the prompt (summaries, edits, code), the text after an earlier occurrence of
the last few tokens is a good guess of what comes next; the model checks all guessed tokens in
one multi-token step and keeps the ones it would have produced itself, so greedy output is
unchanged. No TensorFlow: this goes to devices.
"""

from __future__ import annotations


def draft(history: list[int], limit: int, longest: int = 3, shortest: int = 1) -> list[int]:
    """Up to `limit` tokens that followed the most recent earlier occurrence of the longest
    suffix n-gram of `history` (n from `longest` down to `shortest`); [] when none recurs."""
    if limit <= 0:
        return []
    size = len(history)
    for n in range(min(longest, size - 1), shortest - 1, -1):
        tail = history[size - n :]
        for start in range(size - n - 1, -1, -1):  # latest earlier occurrence first
            if history[start : start + n] == tail:
                # the continuation runs on over the tokens drafted so far, so a repeating
                # stretch drafts `limit` tokens, not only up to where the text ends
                out: list[int] = []
                for index in range(start + n, start + n + limit):
                    out.append(history[index] if index < size else out[index - size])
                return out
    return []


def accepted(drafted: list[int], picks: list[int]) -> int:
    """How many drafted tokens the model confirms: `picks[i]` is its own choice after the
    current token and the first i drafted ones."""
    count = 0
    while count < len(drafted) and picks[count] == drafted[count]:
        count += 1
    return count
