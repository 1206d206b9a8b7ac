"""LM generation: prefill and decode signatures of an exported causal LM, time to first token
and decode speed (the one definition of both, used by `tfopt generate` and `bench --lm`)."""

from __future__ import annotations

import statistics
import time
from typing import Any

import numpy as np

from .feeding import make_interpreter
from .stats import peak_rss_mb, summarize


class LmRunner:
    """A causal LM exported with `prefill` and `decode` signatures (see converters/lm.py)."""

    def __init__(self, model_path: str, threads: int = 1, xnnpack: bool = True) -> None:
        self.interpreter = make_interpreter(model_path, threads, xnnpack)
        signatures = self.interpreter.get_signature_list()
        if not {"prefill", "decode"} <= set(signatures):
            raise ValueError(
                f"{model_path} has signatures {sorted(signatures)}; an LM needs prefill and decode "
                "(convert with --lm)"
            )
        self._prefill = self.interpreter.get_signature_runner("prefill")
        self._decode = self.interpreter.get_signature_runner("decode")
        self.max_length = int(self._prefill.get_input_details()["token_ids"]["shape"][1])
        self.vocab = int(self._prefill.get_output_details()["logits"]["shape"][-1])

    def check_prompt(self, prompt: list[int], new_tokens: int = 1) -> None:
        if not prompt:
            raise ValueError("the prompt is empty")
        if any(not isinstance(t, (int, np.integer)) for t in prompt):
            raise ValueError("token ids must be integers")
        if min(prompt) < 0 or max(prompt) >= self.vocab:
            raise ValueError(f"token ids must lie in [0, {self.vocab})")
        if len(prompt) + new_tokens > self.max_length:
            raise ValueError(
                f"{len(prompt)} prompt + {new_tokens} new tokens exceed the exported length "
                f"{self.max_length} (convert with a larger --max-length)"
            )

    def prefill(self, prompt: list[int]) -> tuple[np.ndarray, np.ndarray]:
        """Logits for the token after the prompt, and the filled cache."""
        tokens = np.zeros((1, self.max_length), np.int32)
        tokens[0, : len(prompt)] = prompt
        out = self._prefill(token_ids=tokens)
        return out["logits"][0, len(prompt) - 1], out["cache"]

    def decode(self, token: int, cache: np.ndarray, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Logits after feeding `token` at position `index`, and the updated cache."""
        out = self._decode(
            token_ids=np.array([[token]], np.int32),
            cache=cache,
            cache_update_index=np.array([index], np.int32),
        )
        return out["logits"][0, 0], out["cache"]

    def generate(
        self,
        prompt: list[int],
        new_tokens: int,
        top_k: int | None = None,
        seed: int = 0,
        stop: set[int] | None = None,
    ) -> tuple[list[int], dict[str, Any]]:
        """Greedy (top_k None) or seeded top-k sampling; returns tokens and per-step timings."""
        self.check_prompt(prompt, new_tokens)
        rng = np.random.default_rng(seed)

        def pick(logits: np.ndarray) -> int:
            if not top_k:
                return int(np.argmax(logits))
            top = np.argpartition(logits, -top_k)[-top_k:]
            p = np.exp(logits[top] - logits[top].max())
            return int(rng.choice(top, p=p / p.sum()))

        clock = time.perf_counter_ns
        t0 = clock()
        logits, cache = self.prefill(prompt)
        prefill_ms = (clock() - t0) / 1e6
        tokens, steps_us = [pick(logits)], []
        for index in range(len(prompt), len(prompt) + new_tokens - 1):
            if stop and tokens[-1] in stop:
                break
            t0 = clock()
            logits, cache = self.decode(tokens[-1], cache, index)
            steps_us.append((clock() - t0) / 1e3)
            tokens.append(pick(logits))
        return tokens, {"prefill_ms": prefill_ms, "decode_us": steps_us}


def ttft_ms(timing: dict[str, Any]) -> float:
    """Time to first token of one `generate` timing: prefill plus the first decode step."""
    steps = timing["decode_us"]
    return timing["prefill_ms"] + (steps[0] / 1e3 if steps else 0.0)


def tokens_per_s(decode_us: list[float]) -> float:
    """Decode speed over the given decode steps (microseconds each); 0.0 when there are none."""
    return len(decode_us) / (sum(decode_us) / 1e6) if decode_us else 0.0


def run_lm(
    model_path: str,
    threads: int = 1,
    xnnpack: bool = True,
    prompt_len: int = 16,
    new_tokens: int = 32,
    runs: int = 5,
    warmup: int = 1,
    seed: int = 0,
) -> dict[str, Any]:
    """Time to first token and decode speed of an exported LM (greedy, synthetic prompt)."""
    t0 = time.perf_counter_ns()
    lm = LmRunner(model_path, threads, xnnpack)
    load_ms = (time.perf_counter_ns() - t0) / 1e6
    prompt = [
        int(t) for t in np.random.default_rng(seed).integers(0, min(lm.vocab, 100), prompt_len)
    ]
    lm.check_prompt(prompt, new_tokens)
    for _ in range(warmup):
        lm.generate(prompt, new_tokens)
    ttft, prefill, decode = [], [], []
    for _ in range(max(1, runs)):
        _, t = lm.generate(prompt, new_tokens)
        ttft.append(ttft_ms(t))
        prefill.append(t["prefill_ms"])
        decode += t["decode_us"]
    per_token = summarize(decode) if decode else None
    return {
        "threads": threads,
        "xnnpack": xnnpack,
        "lm": True,
        "load_ms": round(load_ms, 3),
        "prompt_len": prompt_len,
        "new_tokens": new_tokens,
        "max_length": lm.max_length,
        "runs": max(1, runs),
        "prefill_ms": round(statistics.median(prefill), 3),
        "ttft_ms": round(statistics.median(ttft), 3),
        "decode_step_us": per_token,
        "decode_tokens_per_s": None
        if per_token is None
        else {
            "p50": round(1e6 / per_token["p50"], 1),
            "mean": round(tokens_per_s(decode), 1),
        },
        "latency_us": per_token,
        "peak_rss_mb": peak_rss_mb(),
    }
