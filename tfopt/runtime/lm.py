"""LM generation: the prefill buckets and the decode step of an exported causal LM
(converters/lm.py), time to first token and decode speed (the one definition of both, used by
`tfopt generate` and `bench --lm`). No TensorFlow: this goes to devices.

The KV cache lives in the decode signature's own input buffers, one `[kv_heads, L, head_dim]`
pair per layer: after each step only the new row is written there (a numpy view of the buffer,
no copy of the cache), and nothing else of the cache crosses into Python.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterator
from typing import Any

import numpy as np

from .feeding import make_interpreter
from .stats import peak_rss_mb, summarize

DECODE = "decode"
PREFILL = "prefill_"


class LmRunner:
    """A causal LM exported with `prefill_B` signatures and `decode` (see converters/lm.py)."""

    def __init__(
        self,
        model_path: str,
        threads: int = 1,
        xnnpack: bool = True,
        options: dict[str, bool] | None = None,
    ) -> None:
        self.interpreter = make_interpreter(model_path, threads, xnnpack, options)
        signatures = self.interpreter._get_full_signature_list()  # noqa: SLF001
        buckets = sorted(
            int(k[len(PREFILL) :])
            for k in signatures
            if k.startswith(PREFILL) and k[len(PREFILL) :].isdigit()
        )
        if DECODE not in signatures or not buckets:
            raise ValueError(
                f"{model_path} has signatures {sorted(signatures)}; an LM needs prefill_N and "
                "decode (convert with --lm)"
            )
        self._w = self.interpreter._interpreter  # noqa: SLF001 - the wrapper, for subgraph I/O
        self.buckets = buckets
        self._prefill = {}
        for bucket in buckets:
            sig = signatures[f"{PREFILL}{bucket}"]
            index = self._w.GetSubgraphIndexFromSignature(f"{PREFILL}{bucket}")
            self._w.AllocateTensors(index)
            self._prefill[bucket] = (index, sig["inputs"], sig["outputs"])
        sig = signatures[DECODE]
        self._decode = self._w.GetSubgraphIndexFromSignature(DECODE)
        self._w.AllocateTensors(self._decode)
        self._in, self._out = sig["inputs"], sig["outputs"]
        self.layers = sum(1 for name in self._in if name.startswith("k_"))
        self._caches = [self._in[f"{kind}_{i}"] for i in range(self.layers) for kind in "kv"]
        shape = self._w.TensorSize(self._in["k_0"], self._decode)
        self.kv_heads, self.max_length, self.head_dim = (int(d) for d in shape)
        self.vocab = int(self._w.TensorSize(self._out["logits"], self._decode)[-1])
        self.cache_bytes = 2 * self.layers * int(np.prod(shape)) * 4

    def _write_rows(self, rows: np.ndarray, start: int) -> None:
        """Copy new K/V rows `[layers, 2, kv_heads, T, head_dim]` into the cache at `start`."""
        count = rows.shape[3]
        for j, index in enumerate(self._caches):
            view = self._w.tensor(self.interpreter, index, self._decode)
            view[:, start : start + count, :] = rows[j // 2, j % 2]

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

    def prefill(self, prompt: list[int]) -> np.ndarray:
        """Logits for the token after the prompt; the cache holds the prompt afterwards. The
        smallest bucket that fits runs (a short prompt costs a short prefill)."""
        bucket = next(b for b in self.buckets if b >= len(prompt))
        index, ins, outs = self._prefill[bucket]
        tokens = np.zeros((1, bucket), np.int32)
        tokens[0, : len(prompt)] = prompt
        self._w.SetTensor(ins["token_ids"], tokens, index)
        self._w.SetTensor(ins["length"], np.array([len(prompt)], np.int32), index)
        self._w.Invoke(index)
        rows = self._w.GetTensor(outs["kv"], index)
        self._write_rows(rows[:, :, :, : len(prompt)], 0)
        return self._w.GetTensor(outs["logits"], index)[0]

    def decode(self, token: int, position: int) -> np.ndarray:
        """Logits after feeding `token` at `position` (the number of tokens already cached)."""
        self._w.SetTensor(self._in["token_ids"], np.array([[token]], np.int32), self._decode)
        self._w.SetTensor(self._in["position"], np.array([position], np.int32), self._decode)
        self._w.Invoke(self._decode)
        self._write_rows(self._w.GetTensor(self._out["kv"], self._decode), position)
        return self._w.GetTensor(self._out["logits"], self._decode)[0]

    def stream(
        self,
        prompt: list[int],
        new_tokens: int,
        top_k: int | None = None,
        seed: int = 0,
        stop: set[int] | None = None,
        timing: dict[str, Any] | None = None,
    ) -> Iterator[int]:
        """Yield tokens as they are produced: greedy (top_k None) or seeded top-k sampling.
        `timing`, when given, receives `prefill_ms` and the per-step `decode_us`."""
        self.check_prompt(prompt, new_tokens)
        rng = np.random.default_rng(seed)
        timing = {} if timing is None else timing

        def pick(logits: np.ndarray) -> int:
            if not top_k:
                return int(np.argmax(logits))
            top = np.argpartition(logits, -top_k)[-top_k:]
            p = np.exp(logits[top] - logits[top].max())
            return int(rng.choice(top, p=p / p.sum()))

        clock = time.perf_counter_ns
        t0 = clock()
        token = pick(self.prefill(prompt))
        timing["prefill_ms"] = (clock() - t0) / 1e6
        timing["decode_us"] = steps = []
        yield token
        for position in range(len(prompt), len(prompt) + new_tokens - 1):
            if stop and token in stop:
                return
            t0 = clock()
            logits = self.decode(token, position)
            steps.append((clock() - t0) / 1e3)
            token = pick(logits)
            yield token

    def generate(
        self,
        prompt: list[int],
        new_tokens: int,
        top_k: int | None = None,
        seed: int = 0,
        stop: set[int] | None = None,
    ) -> tuple[list[int], dict[str, Any]]:
        """All tokens of `stream` and its timings."""
        timing: dict[str, Any] = {}
        tokens = list(self.stream(prompt, new_tokens, top_k, seed, stop, timing))
        return tokens, timing


def ttft_ms(timing: dict[str, Any]) -> float:
    """Time to first token of one `generate` timing: the prefill (it yields the first token)."""
    return timing["prefill_ms"]


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
