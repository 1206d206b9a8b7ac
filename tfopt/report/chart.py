"""PNG views: grouped bar charts (matplotlib, imported only when a chart is drawn)."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

from tfopt.fsutil import atomic_path

Panel = tuple[str, dict[str, Sequence[float]]]  # (y-label, {series: one value per label})


def bar_chart_png(labels: Sequence[str], panels: Sequence[Panel], title: str) -> bytes:
    """Grouped bar charts side by side, one panel per (y-label, {series: values}), as PNG bytes."""
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
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return buffer.getvalue()


def write_png(path: str | Path, png: bytes) -> None:
    """Write PNG bytes atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(png)


def bar_chart(path: str | Path, labels: Sequence[str], panels: Sequence[Panel], title: str) -> None:
    """`bar_chart_png` written to `path`."""
    write_png(path, bar_chart_png(labels, panels, title))
