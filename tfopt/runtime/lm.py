"""LM generation: the prefill buckets, verify and decode steps of an exported causal LM
(converters/lm.py, LiteRT-LM's contract), time to first token and decode speed (the one
definition of both, used by `tfopt generate` and `bench --lm`). No TensorFlow: this goes to
devices.

It runs on LiteRT's CompiledModel, the API LiteRT-LM itself uses, the way LiteRT-LM runs it on
CPU: one buffer per layer cache, bound as both the input and the output of every signature, so
the graph's cache update writes only the new rows in place and prefill, verify and decode share
one cache. Like LiteRT-LM, a prompt's last token goes through decode (prefill carries no
logits). With `lookup`, greedy generation drafts tokens by prompt lookup (`lookup.py`) and
checks them in one verify step.
"""

from __future__ import annotations

import atexit
import functools
import os
import statistics
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from .lookup import accepted, draft
from .stats import peak_rss_mb, summarize

DECODE, PREFILL, VERIFY = "decode", "prefill_", "verify_"
TOKENS, POSITIONS, LOGITS, CACHE = "tokens", "input_pos", "logits", "kv_cache_"


def _sizes(signatures: dict[str, Any], prefix: str) -> list[int]:
    tails = (key[len(prefix) :] for key in signatures if key.startswith(prefix))
    return sorted(int(tail) for tail in tails if tail.isdigit())


@contextmanager
def _native_quiet() -> Iterator[None]:
    """LiteRT's C++ side logs every accelerator it registers to stderr; keep that off the
    user's terminal (TFOPT_NATIVE_LOGS=1 shows it)."""
    if os.environ.get("TFOPT_NATIVE_LOGS"):
        yield
        return
    saved = os.dup(2)
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)


@functools.cache
def _quiet_exit() -> None:
    """Silence fd 2 once Python has finished (after any traceback) and before LiteRT's static
    destructors log."""

    def silence() -> None:
        sys.stderr.flush()
        os.dup2(os.open(os.devnull, os.O_WRONLY), 2)

    if not os.environ.get("TFOPT_NATIVE_LOGS"):
        atexit.register(silence)


class LmRunner:
    """A causal LM exported with `prefill_B`, `verify_K` and `decode` (converters/lm.py)."""

    def __init__(
        self, model_path: str, threads: int = 1, xnnpack: bool = True, weight_cache: bool = True
    ) -> None:
        with _native_quiet():  # LiteRT's native side logs every environment and accelerator
            self._open(model_path, threads, xnnpack, weight_cache)
        _quiet_exit()  # its static environment logs again at process exit

    def _open(self, model_path: str, threads: int, xnnpack: bool, weight_cache: bool) -> None:
        """The CompiledModel, with XNNPACK's weight cache (weights packed once for every
        signature, `weightcache.py`) unless `weight_cache` is off."""
        from ai_edge_litert.compiled_model import CompiledModel
        from ai_edge_litert.cpu_kernel_mode import CpuKernelMode
        from ai_edge_litert.options import CpuOptions, Options

        from .weightcache import weight_cache as cache_for

        kernels = None if xnnpack else CpuKernelMode.BUILTIN
        packed = cache_for(model_path, threads) if weight_cache and xnnpack else ""
        self.weight_cache = packed
        cpu = CpuOptions(num_threads=threads, kernel_mode=kernels, xnnpack_weight_cache_path=packed)
        self.model = CompiledModel.from_file(model_path, options=Options(cpu_options=cpu))
        signatures = self.model.get_signature_list()
        self.buckets = _sizes(signatures, PREFILL)
        verify = _sizes(signatures, VERIFY)
        caches = [n for n in signatures.get(DECODE, {}).get("inputs", []) if n.startswith(CACHE)]
        if not self.buckets or not caches:
            raise ValueError(
                f"{model_path} has signatures {sorted(signatures)}; an LM needs prefill_N and "
                "decode taking kv_cache_* inputs (convert with --lm)"
            )
        self.verify_steps = verify[-1] if verify else 0
        details = self.model.get_input_tensor_details(DECODE)
        _, self.kv_heads, self.max_length, self.head_dim = details[caches[0]]["shape"]
        self.layers = len(caches) // 2
        self.vocab = int(self.model.get_output_tensor_details(DECODE)[LOGITS]["shape"][-1])
        self.cache_bytes = sum(4 * int(np.prod(details[n]["shape"])) for n in caches)
        self._caches = {n: self.model.create_input_buffer_by_name(DECODE, n) for n in caches}
        for buffer in self._caches.values():
            buffer.write(np.zeros(self.kv_heads * self.max_length * self.head_dim, np.float32))
        self._io: dict[str, tuple[dict, dict]] = {}


    def close(self) -> None:
        """Release the model and its buffers (quietly: LiteRT logs each accelerator it frees)."""
        with _native_quiet():
            self._io, self._caches, self.model = {}, {}, None

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001, S110 - interpreter shutdown: nothing left to tell
            pass

    def _run(self, signature: str, tokens: list[int], start: int, steps: int) -> Any:
        """Run `signature` (`steps` slots) on `tokens` at positions `start...`; the padding
        slots hold token 0 at position 0, LiteRT-LM's convention. Returns the output buffers."""
        if signature not in self._io:
            ins = {n: self.model.create_input_buffer_by_name(signature, n) for n in (TOKENS, POSITIONS)}
            names = self.model.get_signature_list()[signature]["outputs"]
            outs = {n: self.model.create_output_buffer_by_name(signature, n) for n in names if n == LOGITS}
            self._io[signature] = (ins, outs)
        ins, outs = self._io[signature]
        ids = np.zeros(steps, np.int32)
        ids[: len(tokens)] = tokens
        positions = np.zeros(steps, np.int32)
        positions[: len(tokens)] = np.arange(start, start + len(tokens))
        ins[TOKENS].write(ids)
        ins[POSITIONS].write(positions)
        self.model.run_by_name(signature, {**ins, **self._caches}, {**outs, **self._caches})
        return outs

    def cache(self, kind: str, layer: int) -> np.ndarray:
        """A copy of one layer's cache `[1, kv_heads, L, head_dim]` (kind "k" or "v")."""
        shape = (1, self.kv_heads, self.max_length, self.head_dim)
        buffer = self._caches[f"{CACHE}{kind}_{layer}"]
        return buffer.read(int(np.prod(shape)), np.float32).reshape(shape)

    def _logits(self, outs: dict, rows: int) -> np.ndarray:
        return outs[LOGITS].read(rows * self.vocab, np.float32).reshape(rows, self.vocab)

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

    def fill(self, tokens: list[int], start: int = 0) -> None:
        """Write the cache rows of `tokens` at positions `start...` through the prefill
        buckets: the smallest that fits, or the largest ones in turn for a longer run."""
        while tokens:
            room = self.max_length - start
            fitting = [b for b in self.buckets if b <= room]
            if not fitting:
                raise ValueError(f"{len(tokens)} tokens at {start} exceed the exported length")
            bucket = next((b for b in fitting if b >= len(tokens)), fitting[-1])
            chunk, tokens = tokens[:bucket], tokens[bucket:]
            self._run(f"{PREFILL}{bucket}", chunk, start, bucket)
            start += len(chunk)

    def prefill(self, prompt: list[int]) -> np.ndarray:
        """Logits for the token after the prompt; the cache holds the prompt afterwards. The
        prompt but its last token fills the cache through the smallest bucket that fits (a
        short prompt costs a short prefill); the last token is a decode step."""
        self.fill(list(prompt[:-1]))
        return self.decode(prompt[-1], len(prompt) - 1)

    def decode(self, token: int, position: int) -> np.ndarray:
        """Logits after feeding `token` at `position` (the number of tokens already cached)."""
        return self._logits(self._run(DECODE, [token], position, 1), 1)[0]

    def verify(self, tokens: list[int], position: int) -> np.ndarray:
        """Logits `[len(tokens), V]` after each of `tokens` fed at `position...` in one step
        (at most `verify_steps` tokens, and `position + verify_steps` within the length)."""
        steps = self.verify_steps
        outs = self._run(f"{VERIFY}{steps}", tokens, position, steps)
        return self._logits(outs, steps)[: len(tokens)]

    def stream(
        self,
        prompt: list[int],
        new_tokens: int,
        top_k: int | None = None,
        seed: int = 0,
        stop: set[int] | None = None,
        timing: dict[str, Any] | None = None,
        lookup: int = 0,
    ) -> Iterator[int]:
        """Yield tokens as they are produced: greedy (top_k None) or seeded top-k sampling.
        `lookup` > 0, greedy only: draft up to that many tokens by prompt lookup and check them
        in one verify step (the output is what plain greedy gives). `timing`, when given,
        receives `prefill_ms`, `decode_us` (one entry per token after the first: its step's
        time shared among the tokens the step gave) and `lookup` (steps, drafted, accepted)."""
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
        timing["lookup"] = tally = {"steps": 0, "drafted": 0, "accepted": 0}
        limit = 0 if top_k else min(lookup, self.verify_steps - 1)
        history = [*prompt, token]
        yield token
        while len(history) - len(prompt) < new_tokens and not (stop and token in stop):
            position = len(history) - 1
            t0 = clock()
            room = new_tokens - (len(history) - len(prompt)) - 1
            guess = draft(history, min(limit, room))
            if guess and position + self.verify_steps <= self.max_length:
                picks = [pick(row) for row in self.verify([token, *guess], position)]
                count = accepted(guess, picks)
                new = [*guess[:count], picks[count]]
                tally["steps"] += 1
                tally["drafted"] += len(guess)
                tally["accepted"] += count
            else:
                new = [pick(self.decode(token, position))]
            spent = (clock() - t0) / 1e3
            steps.extend([spent / len(new)] * len(new))
            for token in new:  # noqa: B007 - the last one is the next step's input
                history.append(token)
                yield token
                if stop and token in stop:
                    return

    def generate(
        self,
        prompt: list[int],
        new_tokens: int,
        top_k: int | None = None,
        seed: int = 0,
        stop: set[int] | None = None,
        lookup: int = 0,
    ) -> tuple[list[int], dict[str, Any]]:
        """All tokens of `stream` and its timings."""
        timing: dict[str, Any] = {}
        tokens = list(self.stream(prompt, new_tokens, top_k, seed, stop, timing, lookup))
        return tokens, timing


def ttft_ms(timing: dict[str, Any]) -> float:
    """Time to first token of one `generate` timing: the prefill (it yields the first token)."""
    return timing["prefill_ms"]


def tokens_per_s(decode_us: list[float]) -> float:
    """Decode speed over the given decode steps (microseconds each); 0.0 when there are none."""
    return len(decode_us) / (sum(decode_us) / 1e6) if decode_us else 0.0


@dataclass(frozen=True)
class LmBench:
    """What `run_lm` times: greedy generation of `new_tokens` after a synthetic `prompt_len`
    prompt, `runs` times after `warmup` runs; `lookup` > 0 drafts by prompt lookup."""

    threads: int = 1
    xnnpack: bool = True
    prompt_len: int = 16
    new_tokens: int = 32
    runs: int = 5
    warmup: int = 1
    seed: int = 0
    lookup: int = 0


def run_lm(model_path: str, spec: LmBench | None = None, **fields: Any) -> dict[str, Any]:
    """Time to first token and decode speed of an exported LM (greedy, synthetic prompt);
    `fields` override `spec`'s."""
    s = replace(spec or LmBench(), **fields)
    t0 = time.perf_counter_ns()
    lm = LmRunner(model_path, s.threads, s.xnnpack)
    load_ms = (time.perf_counter_ns() - t0) / 1e6
    rng = np.random.default_rng(s.seed)
    prompt = [int(t) for t in rng.integers(0, min(lm.vocab, 100), s.prompt_len)]
    lm.check_prompt(prompt, s.new_tokens)
    for _ in range(s.warmup):
        lm.generate(prompt, s.new_tokens, lookup=s.lookup)
    ttft, prefill, decode = [], [], []
    tally = {"steps": 0, "drafted": 0, "accepted": 0}
    for _ in range(max(1, s.runs)):
        _, t = lm.generate(prompt, s.new_tokens, lookup=s.lookup)
        ttft.append(ttft_ms(t))
        prefill.append(t["prefill_ms"])
        decode += t["decode_us"]
        tally = {k: tally[k] + t["lookup"][k] for k in tally}
    per_token = summarize(decode) if decode else None
    return {
        "threads": s.threads,
        "xnnpack": s.xnnpack,
        "lm": True,
        "load_ms": round(load_ms, 3),
        "prompt_len": s.prompt_len,
        "new_tokens": s.new_tokens,
        "max_length": lm.max_length,
        "runs": max(1, s.runs),
        "prefill_ms": round(statistics.median(prefill), 3),
        "ttft_ms": round(statistics.median(ttft), 3),
        "decode_step_us": per_token,
        "decode_tokens_per_s": None
        if per_token is None
        else {"p50": round(1e6 / per_token["p50"], 1), "mean": round(tokens_per_s(decode), 1)},
        "latency_us": per_token,
        "lookup": {"max_draft": s.lookup, **tally} if s.lookup else None,
        "weight_cache": os.path.basename(lm.weight_cache) or None,
        "peak_rss_mb": peak_rss_mb(),
    }
