"""Report stage: tables for the terminal and Markdown, JSON documents, written atomically."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tfopt.fsutil import atomic_path, write_text

Cell = str | int | float | None


def _fmt(value: Cell) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.2f}" if abs(value) >= 1 or value == 0 else f"{value:.3g}"
    return str(value)


def text_table(headers: Sequence[str], rows: Sequence[Sequence[Cell]]) -> str:
    """A fixed-width table for the terminal; numbers right-aligned."""
    cells = [[_fmt(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    numeric = [
        all(isinstance(r[i], (int, float)) or r[i] is None for r in rows)
        for i in range(len(headers))
    ]

    def line(values: Sequence[str]) -> str:
        return "  ".join(
            v.rjust(w) if num else v.ljust(w)
            for v, w, num in zip(values, widths, numeric, strict=True)
        ).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(headers), rule, *(line(r) for r in cells)])


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub-flavoured Markdown table."""
    out = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    out += ["| " + " | ".join(_fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(out)


def to_json(doc: Any) -> str:
    return json.dumps(doc, indent=2, sort_keys=False, default=str)


def write_json(path: str | Path, doc: Any) -> None:
    write_text(path, to_json(doc) + "\n")


def bar_chart(
    path: str | Path,
    labels: Sequence[str],
    panels: Sequence[tuple[str, dict[str, Sequence[float]]]],
    title: str,
) -> None:
    """Grouped bar charts side by side (one panel per (y-label, {series: values})), as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4), squeeze=False)
    for ax, (ylabel, series) in zip(axes[0], panels, strict=True):
        width = 0.8 / max(1, len(series))
        for k, (name, values) in enumerate(series.items()):
            xs = [i + (k - (len(series) - 1) / 2) * width for i in range(len(labels))]
            bars = ax.bar(xs, values, width, label=name)
            ax.bar_label(bars, fmt="%.3g", fontsize=7)
        flat = [v for values in series.values() for v in values if v > 0]
        if flat and max(flat) / min(flat) > 20:  # one slow bar would flatten the rest
            ax.set_yscale("log")
        ax.set_xticks(range(len(labels)), labels)
        ax.set_ylabel(ylabel)
        ax.legend(fontsize=8)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


BENCH_REPORT_FILES = ["bench.json", "bench.md", "bench.png"]


def write_bench_report(out_dir: str | Path, docs: list[dict[str, Any]]) -> None:
    """One matrix for several timed models: JSON, a Markdown table and a p50 bar chart."""
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    threads = sorted({e["threads"] for d in docs for e in d["results"]})
    names = [Path(d["model"]).name for d in docs]
    if len(set(names)) < len(names):  # same file name in different folders
        names = [str(d["model"]) for d in docs]
    p50 = {
        name: {e["threads"]: e["latency_us"]["p50"] / 1000 for e in d["results"]}
        for name, d in zip(names, docs, strict=True)
    }
    headers = ["model", "size KB", *(f"p50 ms {t}t" for t in threads), "sha256"]
    rows = [
        [
            name,
            round(d["size_bytes"] / 1024, 1),
            *(p50[name].get(t) for t in threads),
            d["sha256"][:12],
        ]
        for name, d in zip(names, docs, strict=True)
    ]
    machine = docs[0].get("machine", {})
    write_json(folder / "bench.json", {"machine": machine, "models": docs})
    write_text(
        folder / "bench.md",
        f"# tfopt bench\n\nMachine: {machine.get('cpu')}, {machine.get('cores')} cores, "
        f"ai-edge-litert {machine.get('ai_edge_litert')}\n\n{markdown_table(headers, rows)}\n\n"
        "![p50 latency per model and thread count](bench.png)\n",
    )
    bar_chart(
        folder / "bench.png",
        names,
        [
            (
                "p50 latency (ms), batch 1",
                {f"{t} thread(s)": [p50[n].get(t, 0.0) for n in names] for t in threads},
            )
        ],
        f"tfopt bench on {machine.get('cpu')}",
    )
