"""Report stage: every view of every result, one renderer per (result type, format).

A result (a library dataclass or its JSON document) goes in; text for the terminal, Markdown,
JSON or PNG bytes come out. Each view module registers its renderers with `@renders`, the way
ruff keeps one emitter per output format over one diagnostic type; JSON is the document itself
unless a view says otherwise. Commands and the demo never format output themselves:

    from tfopt import report
    print(report.render(report.View.COMPARE, tfopt.compare_files(...), "markdown"))
"""

from __future__ import annotations

from typing import Any

from tfopt.report import bench, compare, convert, demo, inspection, lm, optimize, recipes, tune
from tfopt.report.bench import BENCH_REPORT_FILES, write_bench_report
from tfopt.report.chart import bar_chart, bar_chart_png, write_png
from tfopt.report.demo import write_demo_report
from tfopt.report.optimize import write_optimize_report
from tfopt.report.progress import progress, spinner
from tfopt.report.registry import RENDERERS, Format, View, renders
from tfopt.report.tables import markdown_table, text_table, to_json, write_json

_VIEWS = (bench, compare, convert, demo, inspection, lm, optimize, recipes, tune)  # they register


def document(result: Any) -> Any:
    """The JSON document of a result: its `to_dict()`, or the result when it is one already."""
    return result.to_dict() if hasattr(result, "to_dict") else result


def formats(view: View | str) -> list[Format]:
    """The formats `view` renders to (JSON always)."""
    v = View(view)
    return [f for f in Format if f is Format.JSON or (v, f) in RENDERERS]


def render(view: View | str, result: Any, fmt: Format | str = Format.TEXT) -> Any:
    """`result` of type `view` as `fmt`: str for text, Markdown and JSON; bytes for PNG.

    Raises:
        ValueError: `view` has no renderer for `fmt`.
    """
    v, f = View(view), Format(fmt)
    doc = document(result)
    fn = RENDERERS.get((v, f))
    if fn is not None:
        return fn(doc)
    if f is Format.JSON:
        return to_json(doc)
    raise ValueError(f"no {f.value} view of a {v.value} result")


__all__ = [
    "BENCH_REPORT_FILES",
    "Format",
    "View",
    "bar_chart",
    "bar_chart_png",
    "document",
    "formats",
    "markdown_table",
    "progress",
    "render",
    "renders",
    "spinner",
    "text_table",
    "to_json",
    "write_bench_report",
    "write_demo_report",
    "write_json",
    "write_optimize_report",
    "write_png",
]
