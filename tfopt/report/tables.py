"""Plain formats every view shares: fixed-width text tables, Markdown tables, JSON."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tfopt.fsutil import write_text

Cell = str | int | float | None


def fmt_cell(value: Cell) -> str:
    """One cell as text: '-' for missing, two decimals (or three significant digits) for floats."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.2f}" if abs(value) >= 1 or value == 0 else f"{value:.3g}"
    return str(value)


def text_table(headers: Sequence[str], rows: Sequence[Sequence[Cell]]) -> str:
    """A fixed-width table for the terminal; numbers right-aligned."""
    cells = [[fmt_cell(v) for v in row] for row in rows]
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
    out += ["| " + " | ".join(fmt_cell(v) for v in row) + " |" for row in rows]
    return "\n".join(out)


def counts(items: dict[str, int]) -> str:
    """{'ADD': 2, 'MUL': 1} -> 'ADD x2, MUL x1'."""
    return ", ".join(f"{k} x{v}" for k, v in items.items())


def to_json(doc: Any) -> str:
    return json.dumps(doc, indent=2, sort_keys=False, default=str)


def write_json(path: str | Path, doc: Any) -> None:
    write_text(path, to_json(doc) + "\n")
