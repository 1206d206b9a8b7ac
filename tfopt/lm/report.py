"""Views of language-model results: `bench --lm` (time to first token, tokens/s) and `generate`."""

from __future__ import annotations

from typing import Any

from tfopt.report.registry import Format, View, renders
from tfopt.report.tables import markdown_table, text_table

HEADERS = [
    "runtime",
    "threads",
    "prompt",
    "new",
    "prefill_ms",
    "ttft_ms",
    "step_ms_p50",
    "tok/s_p50",
    "tok/s_mean",
    "rss_mb",
]


def _rows(r: dict[str, Any]) -> list[list[Any]]:
    return [
        [
            e.get("runtime", "tfopt") + (f" lookup {e['lookup']['max_draft']}" if e.get("lookup") else ""),
            e["threads"],
            e["prompt_len"],
            e["new_tokens"],
            e["prefill_ms"],
            e["ttft_ms"],
            e["decode_step_us"]["p50"] / 1000,
            e["decode_tokens_per_s"]["p50"],
            e["decode_tokens_per_s"]["mean"],
            e["peak_rss_mb"],
        ]
        for e in r["results"]
    ]


def _reports(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return doc["models"] if "models" in doc else [doc]


@renders(View.LM_BENCH, Format.TEXT)
def bench_text(doc: dict[str, Any]) -> str:
    return "\n\n".join(
        f"{r['model']} (sha256 {r['sha256'][:12]})\n" + text_table(HEADERS, _rows(r))
        for r in _reports(doc)
    )


@renders(View.LM_BENCH, Format.MARKDOWN)
def bench_markdown(doc: dict[str, Any]) -> str:
    return "\n".join(
        f"## {r['model']} (sha256 {r['sha256'][:12]})\n\n{markdown_table(HEADERS, _rows(r))}\n"
        for r in _reports(doc)
    )


def _generated(r: dict[str, Any]) -> str:
    return r["text"] if r["text"] is not None else " ".join(map(str, r["tokens"]))


def _speed(r: dict[str, Any]) -> str:
    count = r.get("decode_tokens", len(r["tokens"]))
    engine = " (LiteRT-LM's engine)" if r.get("runtime") == "litert-lm" else ""
    return (
        f"{count} tokens{engine}; prefill {r['prefill_ms']:.2f} ms, "
        f"time to first token {r['ttft_ms']:.2f} ms, decode {r['decode_tokens_per_s']:.1f} tokens/s"
    )


@renders(View.GENERATE, Format.TEXT)
def generate_text(r: dict[str, Any]) -> str:
    if r.get("streamed"):  # the text is already on stdout
        return f"\n{_speed(r)}"
    return f"{_generated(r)}\n\n{_speed(r)}"


@renders(View.GENERATE, Format.MARKDOWN)
def generate_markdown(r: dict[str, Any]) -> str:
    return f"```text\n{_generated(r)}\n```\n\n{_speed(r)}\n"
