"""Rendering: a result of a view in a format, through the renderer its view module registered.

Importing this module imports every view module, so each has registered (`@renders`) before the
first `render`.
"""

from __future__ import annotations

from typing import Any

from tfopt.lm import report as lm
from tfopt.report import bench, compare, convert, demo, inspection, optimize, recipes, tune
from tfopt.report.registry import RENDERERS, Format, View
from tfopt.report.tables import to_json

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
