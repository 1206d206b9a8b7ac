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


def _column(doc: dict[str, Any], entry: dict[str, Any]) -> str:
    """Matrix column: target / accelerator / threads, e.g. 'local gpu (sw) 1t'."""
    accel = entry.get("accelerator", "cpu") + (" (sw)" if entry.get("software_gpu") else "")
    target = doc.get("target", "local")
    return f"{'' if target == 'local' else target + ' '}{accel} {entry['threads']}t"


def _latency_ms(entry: dict[str, Any]) -> float:
    from tfopt.timing import headline_us

    return round(headline_us(entry) / 1000, 4)


def write_bench_report(out_dir: str | Path, docs: list[dict[str, Any]]) -> None:
    """One matrix for several models x targets x accelerators: JSON, Markdown, bar chart.

    Columns are labelled by what they hold: `p50` from the harness, `mean` where only a mean
    exists (LiteRT's benchmark_model on Android)."""
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    names = [Path(d["model"]).name for d in docs]
    if len({d["model"] for d in docs}) > len(set(names)):  # same file name in other folders
        names = [str(d["model"]) for d in docs]
    by_model: dict[str, dict[str, Any]] = {}
    columns: list[str] = []
    stats: dict[
        str, set[str]
    ] = {}  # column -> what its numbers are: p50, or benchmark_model's mean
    for name, d in zip(names, docs, strict=True):
        row = by_model.setdefault(name, {"size": d["size_bytes"], "sha": d["sha256"], "p50": {}})
        for e in d["results"]:
            column = _column(d, e)
            if column not in columns:
                columns.append(column)
            stats.setdefault(column, set()).add(e.get("latency_stat", "p50"))
            row["p50"][column] = _latency_ms(e)
    models = list(by_model)
    labels = {c: "/".join(sorted(stats[c])) for c in columns}
    headers = ["model", "size KB", *(f"{labels[c]} ms {c}" for c in columns), "sha256"]
    rows = [
        [
            m,
            round(by_model[m]["size"] / 1024, 1),
            *(by_model[m]["p50"].get(c) for c in columns),
            by_model[m]["sha"][:12],
        ]
        for m in models
    ]
    machines = {d.get("target", "local"): d.get("machine", {}) for d in docs}
    described = "\n".join(
        f"- {t}: {m.get('cpu') or m.get('device')}, {m.get('cores', '?')} cores, "
        f"ai-edge-litert {m.get('ai_edge_litert', '?')}"
        for t, m in machines.items()
    )
    placement = [
        f"- {Path(d['model']).name} on {d.get('target', 'local')}: "
        f"{e['gpu_op_count']} ops on GPU, {e['cpu_op_count']} on CPU, "
        f"max |GPU-CPU| {e.get('max_abs_vs_cpu')}"
        + (f"; falls back: {', '.join(e['fallback_reasons'])}" if e["fallback_reasons"] else "")
        for d in docs
        for e in d["results"]
        if "op_placement" in e and e["threads"] == d["results"][0]["threads"]
    ]
    software = any(e.get("software_gpu") for d in docs for e in d["results"])
    note = "\n(sw) = software GPU: its op placement and numerics are real, its timings are not.\n"
    write_json(folder / "bench.json", {"machines": machines, "models": docs})
    write_text(
        folder / "bench.md",
        f"# tfopt bench\n\nMachines:\n{described}\n\n{markdown_table(headers, rows)}\n"
        + (note if software else "")
        + ("\nGPU placement:\n" + "\n".join(placement) + "\n" if placement else "")
        + "\n![latency per model and target/accelerator](bench.png)\n",
    )
    bar_chart(
        folder / "bench.png",
        models,
        [
            (
                f"{'/'.join(sorted(set(labels.values())))} latency (ms), batch 1",
                {c: [by_model[m]["p50"].get(c, 0.0) for m in models] for c in columns},
            )
        ],
        "tfopt bench: " + ", ".join(machines),
    )
