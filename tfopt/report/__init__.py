"""Report stage: every view of every result, one renderer per (result type, format).

A result (a library dataclass or its JSON document) goes in; text for the terminal, Markdown,
JSON or PNG bytes come out. Each view module registers its renderers with `@renders`, the way
ruff keeps one emitter per output format over one diagnostic type; JSON is the document itself
unless a view says otherwise (rendering.py). Commands and the demo never format output themselves:

    from tfopt import report
    print(report.render(report.View.COMPARE, tfopt.compare_files(...), "markdown"))
"""

from __future__ import annotations

from tfopt.report.bench import BENCH_REPORT_FILES, write_bench_report
from tfopt.report.chart import bar_chart, bar_chart_png, write_png
from tfopt.report.demo import write_demo_report
from tfopt.report.optimize import write_optimize_report
from tfopt.report.progress import progress, spinner
from tfopt.report.registry import Format, View, renders
from tfopt.report.rendering import document, formats, render
from tfopt.report.tables import markdown_table, text_table, to_json, write_json

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
