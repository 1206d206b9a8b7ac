"""PNG views: grouped bar charts (matplotlib, imported only when a chart is drawn), and what every
plot shares: text any installed font can draw, short labels, readable log axes."""

from __future__ import annotations

import functools
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tfopt.fsutil import atomic_path

Panel = tuple[str, dict[str, Sequence[float]]]  # (y-label, {series: one value per label})

BASE_FONT = "DejaVu Sans"  # matplotlib's own, always there
# Fonts with CJK glyphs, used as a fallback where one is installed (fonts-noto-cjk,
# fonts-wqy-zenhei, ...); without one, characters no font has are drawn as '?'.
CJK_FONTS = ("Noto Sans CJK SC", "Noto Sans CJK JP", "Noto Sans CJK TC", "Noto Sans CJK KR",
             "Source Han Sans SC", "WenQuanYi Zen Hei", "WenQuanYi Micro Hei",
             "Droid Sans Fallback", "AR PL UMing CN", "Unifont")  # fmt: skip
LABEL_CHARS = 30


@functools.lru_cache(maxsize=1)
def _fonts() -> tuple[tuple[str, ...], frozenset[int]]:
    """The font families plots use (the base font, then any installed CJK one) and every
    character they can draw together."""
    from matplotlib import font_manager
    from matplotlib.ft2font import FT2Font

    installed = {f.name: f.fname for f in font_manager.fontManager.ttflist}
    families = [BASE_FONT, *(name for name in CJK_FONTS if name in installed)][:2]
    chars: set[int] = set()
    for name in families:
        path = installed.get(name) or font_manager.findfont(name, fallback_to_default=True)
        try:
            chars |= set(FT2Font(path).get_charmap())
        except (OSError, RuntimeError):  # a font file matplotlib lists but cannot open
            continue
    return tuple(families), frozenset(chars)


def plot_text(text: str) -> str:
    """`text` as the plot's fonts can draw it: characters none of them has become '?' (no
    "Glyph missing" warnings, no boxes), and '$' is literal rather than mathtext."""
    chars = _fonts()[1]
    drawn = "".join(c if ord(c) in chars or c in "\n\t" else "?" for c in str(text))
    return drawn.replace("$", r"\$")


def short_label(name: str, limit: int = LABEL_CHARS) -> str:
    """A long name shortened in the middle ('mobilenet_v2_...int8.tflite'), drawable; the full
    name stays in the JSON and Markdown views."""
    if len(name) > limit:
        keep = limit - 1
        name = name[: (keep + 1) // 2] + "\u2026" + name[len(name) - keep // 2 :]
    return plot_text(name)


def distinct_labels(names: Sequence[str], limit: int = LABEL_CHARS) -> list[str]:
    """`short_label` of each name, numbered where two would read the same."""
    labels = [short_label(n, limit) for n in names]
    return [f"{label} [{i + 1}]" if labels.count(label) > 1 else label
            for i, label in enumerate(labels)]  # fmt: skip


def style() -> dict[str, Any]:
    """rc settings every plot is drawn with (matplotlib.rc_context): the fonts above."""
    return {"font.family": list(_fonts()[0])}


def readable_log_axis(axis: Any) -> None:
    """A log axis with ticks at 1, 2 and 5 of every decade, labelled plainly ('0.2', '5', '50'),
    so a range below 1 (ms) or inside one decade still has labelled ticks."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())


def bar_chart_png(labels: Sequence[str], panels: Sequence[Panel], title: str) -> bytes:
    """Grouped bar charts side by side, one panel per (y-label, {series: values}), as PNG bytes.

    Long or non-ASCII labels are shortened and made drawable; long ones are slanted."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ticks = distinct_labels(labels)
    slanted = max((len(t) for t in ticks), default=0) > 12
    with matplotlib.rc_context(style()):
        fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4.6 if slanted else 4),
                                 squeeze=False)  # fmt: skip
        for ax, (ylabel, series) in zip(axes[0], panels, strict=True):
            _panel(ax, ticks, ylabel, series, slanted)
        fig.suptitle(plot_text(title))
        fig.tight_layout()
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=110)
        plt.close(fig)
    return buffer.getvalue()


def _panel(
    ax: Any, ticks: Sequence[str], ylabel: str, series: dict[str, Sequence[float]], slanted: bool
) -> None:
    width = 0.8 / max(1, len(series))
    for k, (name, values) in enumerate(series.items()):
        xs = [i + (k - (len(series) - 1) / 2) * width for i in range(len(ticks))]
        bars = ax.bar(xs, values, width, label=plot_text(name))
        ax.bar_label(bars, fmt="%.3g", fontsize=7)
    flat = [v for values in series.values() for v in values if v > 0]
    if flat and max(flat) / min(flat) > 20:  # one slow bar would flatten the rest
        ax.set_yscale("log")
        readable_log_axis(ax.yaxis)
    ax.set_xticks(range(len(ticks)), ticks)
    if slanted:
        ax.tick_params(axis="x", labelrotation=25, labelsize=8)
        for tick in ax.get_xticklabels():
            tick.set_horizontalalignment("right")
            tick.set_rotation_mode("anchor")
    ax.set_ylabel(plot_text(ylabel))
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)


def write_png(path: str | Path, png: bytes) -> None:
    """Write PNG bytes atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(png)


def bar_chart(path: str | Path, labels: Sequence[str], panels: Sequence[Panel], title: str) -> None:
    """`bar_chart_png` written to `path`."""
    write_png(path, bar_chart_png(labels, panels, title))
