"""LiteRT-LM's own engine on a `.litertlm` bundle: the greedy text it writes for a prompt, and
its benchmark (time to first token, prefill and decode tokens/s, peak RSS).

LiteRT-LM is the runtime apps ship for on-device LLMs; running tfopt's bundles through it is
the evidence that an app can load them. It runs as `python -m tfopt.runtime.litertlm` (one JSON
document out), so a native failure stays in a child process and comes back as one line. No
TensorFlow: this goes to devices.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from typing import Any

from .stats import peak_rss_mb


def _backend(threads: int) -> Any:
    from litert_lm import interfaces

    return interfaces.Backend.CPU(thread_count=threads)


def generate_text(
    bundle: str, prompt: str, new_tokens: int, threads: int = 1, timed: bool = False
) -> dict[str, Any]:
    """The text LiteRT-LM's engine generates after `prompt` (no chat template; the bundle's
    sampler, greedy for tfopt's bundles; its start token first, as the engine adds it), and
    with `timed` the engine's own prefill/decode timings."""
    import litert_lm

    with litert_lm.Engine(
        bundle, backend=_backend(threads), cache_dir=":nocache", enable_benchmark=timed
    ) as engine:
        session = engine.create_session(apply_prompt_template=False, max_output_tokens=new_tokens)
        with session:
            session.run_prefill([prompt])
            out: dict[str, Any] = {"text": session.run_decode().texts[0]}
            if timed:
                info = session.get_benchmark_info()
                out.update(
                    ttft_ms=round(info.time_to_first_token_in_second * 1e3, 3),
                    prompt_tokens=info.last_prefill_token_count,
                    prefill_tokens_per_s=round(info.last_prefill_tokens_per_second, 1),
                    decode_tokens=info.last_decode_token_count,
                    decode_tokens_per_s=round(info.last_decode_tokens_per_second, 1),
                )
            return out


def benchmark(bundle: str, prompt_len: int, new_tokens: int, threads: int = 1) -> dict[str, Any]:
    """LiteRT-LM's own benchmark: a `prompt_len`-token prefill and `new_tokens` decode steps,
    with its XNNPACK weight cache in a temporary folder (as an app keeps it beside the model)."""
    import litert_lm

    with tempfile.TemporaryDirectory(prefix="tfopt-litertlm-") as cache:
        info = litert_lm.Benchmark(
            model_path=bundle,
            backend=_backend(threads),
            prefill_tokens=prompt_len,
            decode_tokens=new_tokens,
            cache_dir=cache,
        ).run()
    return {
        "runtime": "litert-lm",
        "threads": threads,
        "prompt_len": prompt_len,
        "new_tokens": new_tokens,
        "init_s": round(info.init_time_in_second, 3),
        "ttft_ms": round(info.time_to_first_token_in_second * 1e3, 3),
        "prefill_tokens_per_s": round(info.last_prefill_tokens_per_second, 1),
        "decode_tokens_per_s": round(info.last_decode_tokens_per_second, 1),
        "peak_rss_mb": peak_rss_mb(),
    }


def lm_bench(bundle: str, prompt_len: int, new_tokens: int, threads: int = 1) -> dict[str, Any]:
    """LiteRT-LM's benchmark in `run_lm`'s keys (`bench --lm` on a `.litertlm`): the engine
    reports averages only, so each step's p50 is its mean."""
    b = benchmark(bundle, prompt_len, new_tokens, threads)
    step_us = round(1e6 / b["decode_tokens_per_s"], 1) if b["decode_tokens_per_s"] else None
    steps = None if step_us is None else {"p50": step_us, "mean": step_us}
    return {
        "threads": threads,
        "lm": True,
        "runtime": "litert-lm",
        "load_ms": round(b["init_s"] * 1e3, 3),
        "prompt_len": prompt_len,
        "new_tokens": new_tokens,
        "runs": 1,
        "prefill_ms": round(prompt_len / b["prefill_tokens_per_s"] * 1e3, 3),
        "ttft_ms": b["ttft_ms"],
        "decode_step_us": steps,
        "latency_us": steps,
        "decode_tokens_per_s": {"p50": b["decode_tokens_per_s"], "mean": b["decode_tokens_per_s"]},
        "peak_rss_mb": b["peak_rss_mb"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tfopt.runtime.litertlm")
    parser.add_argument("bundle")
    parser.add_argument("--prompt", help="generate greedy text after this prompt")
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--prompt-len", type=int, default=128, help="benchmark prefill tokens")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--timed", action="store_true", help="with --prompt: the engine's timings")
    args = parser.parse_args(argv)
    try:
        if args.prompt is not None:
            out = generate_text(
                args.bundle, args.prompt, args.max_new_tokens, args.threads, args.timed
            )
        else:
            out = benchmark(args.bundle, args.prompt_len, args.max_new_tokens, args.threads)
    except Exception as exc:  # noqa: BLE001 - the engine raises RuntimeError with no detail
        print(json.dumps({"error": f"{type(exc).__name__}: {exc}".partition("\n")[0]}))
        return 1
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
