"""Views of a comparison (`CompareResult`) and of an embedding comparison (`--embedding`)."""

from __future__ import annotations

from typing import Any

from tfopt.report.registry import Format, View, renders
from tfopt.report.tables import markdown_table, text_table

HEADERS = ["output", "max_abs", "mean_abs", "sqnr_db", "cosine"]


def _rows(r: dict[str, Any]) -> list[list[Any]]:
    return [
        [o["name"], o["max_abs"], o["mean_abs"], o["sqnr_db"], o["cosine"]] for o in r["outputs"]
    ]


def _summary(r: dict[str, Any]) -> list[str]:
    lines = []
    if r["top1_agreement"] is not None:
        lines.append(f"top-1 agreement: {100 * r['top1_agreement']:.2f}%")
    if r["accuracy"]:
        a = r["accuracy"]
        lines.append(
            f"accuracy: reference {100 * a['reference']:.2f}%, "
            f"candidate {100 * a['candidate']:.2f}%"
        )
    m = r.get("candidate_machine")
    if m:
        lines.append(f"candidate ran on {m['target']} ({m.get('arch', '?')}, {m.get('cpu', '?')}, "
                     f"ai_edge_litert {m.get('ai_edge_litert', '?')})")  # fmt: skip
    return lines


@renders(View.COMPARE, Format.TEXT)
def text(r: dict[str, Any]) -> str:
    return "\n".join([f"{r['samples']} samples", text_table(HEADERS, _rows(r)), *_summary(r)])


@renders(View.COMPARE, Format.MARKDOWN)
def markdown(r: dict[str, Any]) -> str:
    failures = r.get("failures") or []
    return "\n".join(
        [
            f"# tfopt compare: {r['samples']} samples",
            "",
            markdown_table(HEADERS, _rows(r)),
            "",
            *(f"- {line}" for line in _summary(r)),
            *(f"- **failed**: {f}" for f in failures),
            "",
        ]
    )


def _embedding_lines(r: dict[str, Any]) -> list[str]:
    return [
        f"{r['samples']} samples, {r['pooling']} pooling",
        f"cosine to reference: mean {r['mean_cosine']:.5f}, worst {r['worst_cosine']:.5f}",
        f"nearest-neighbour agreement: {100 * r.get('neighbour_agreement', 1.0):.2f}%",
    ]


@renders(View.EMBEDDING, Format.TEXT)
def embedding_text(r: dict[str, Any]) -> str:
    return "\n".join(_embedding_lines(r))


@renders(View.EMBEDDING, Format.MARKDOWN)
def embedding_markdown(r: dict[str, Any]) -> str:
    first, *rest = _embedding_lines(r)
    return "\n".join([f"# tfopt compare --embedding: {first}", "", *(f"- {x}" for x in rest), ""])
