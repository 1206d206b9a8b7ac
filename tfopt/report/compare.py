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


def _pct(x: float) -> str:
    return f"{100 * x:.2f}%"


def _accuracy(a: dict[str, float]) -> str:
    return f"reference {_pct(a['reference'])}, candidate {_pct(a['candidate'])}"


def _summary(r: dict[str, Any]) -> list[str]:
    scored = [o for o in r["outputs"] if o.get("top1_agreement") is not None]
    lines = []
    if len(r["outputs"]) == 1 and r["top1_agreement"] is not None:
        lines.append(f"top-1 agreement: {_pct(r['top1_agreement'])}")
        if r["accuracy"]:
            lines.append(f"accuracy: {_accuracy(r['accuracy'])}")
    else:  # each class-score output of a multi-output model on its own line
        for o in scored:
            lines.append(f"output '{o['name']}': top-1 agreement {_pct(o['top1_agreement'])}")
            if o.get("accuracy"):
                lines.append(f"output '{o['name']}': accuracy {_accuracy(o['accuracy'])}")
    saturation = r.get("input_saturation") or {}
    if saturation:  # quantized inputs: the share of the data outside what they can represent
        shown = ", ".join(f"'{name}' {100 * f:.2f}%" for name, f in saturation.items())
        lines.append(f"input values outside the quantized range: {shown}")
    m = r.get("candidate_machine")
    if m:
        lines.append(f"candidate ran on {m['target']} ({m.get('arch', '?')}, {m.get('cpu', '?')}, "
                     f"ai_edge_litert {m.get('ai_edge_litert', '?')})")  # fmt: skip
    return lines


@renders(View.COMPARE, Format.TEXT)
def text(r: dict[str, Any]) -> str:
    warnings = [f"warning: {w}" for w in r.get("warnings") or []]
    return "\n".join(
        [f"{r['samples']} samples", text_table(HEADERS, _rows(r)), *_summary(r), *warnings]
    )


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
            *(f"- **warning**: {w}" for w in r.get("warnings") or []),
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
