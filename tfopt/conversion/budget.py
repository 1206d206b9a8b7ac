"""An app's budget for the file it embeds: a size ceiling and the ops its runtime links.

`--max-size 5MB` refuses a file that would be larger; `--allowed-ops builtin` refuses custom and
Flex ops (an app must link their kernels separately), and `--allowed-ops CONV_2D,ADD,...` (or a
file of op names, one per line or comma-separated, as a selectively built runtime lists them)
refuses every op outside the list. The check runs on the flatbuffer before anything is written,
so a file over budget never reaches the disk.
"""

from __future__ import annotations

import re
from pathlib import Path

from tfopt.errors import TfoptError, option

_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "kib": 2**10, "mib": 2**20,
          "gib": 2**30}  # fmt: skip
BUILTIN = "builtin"


class BudgetError(TfoptError):
    """The converted file exceeds the app's size budget or needs ops the app does not link."""


def parse_size(text: str) -> int:
    """'5MB' -> 5000000, '512KiB' -> 524288, '1000' -> 1000 bytes."""
    from tfopt.errors import InputError

    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", str(text))
    unit = m.group(2).lower() if m else ""
    if not m or unit not in _UNITS or float(m.group(1)) <= 0:
        raise InputError(f"{option('max_size')} {text}: write a size such as 5MB, 800KB or 2MiB")
    return int(float(m.group(1)) * _UNITS[unit])


def parse_ops(text: str) -> tuple[str, ...]:
    """'builtin', a comma-separated list of op names, or a file of them."""
    from tfopt.errors import InputError

    if text.strip().lower() == BUILTIN:
        return (BUILTIN,)
    path = Path(text)
    if path.is_file():
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(f"{option('allowed_ops')} {path}: cannot read it ({exc})") from None
    names = tuple(sorted({n.strip().upper() for n in re.split(r"[,\s]+", text) if n.strip()}))
    if not names:
        raise InputError(
            f"{option('allowed_ops')} {text!r}: give builtin, op names (CONV_2D,ADD) or a file"
        )
    return names


def _show(n: int) -> str:
    return f"{n / 1e6:.2f} MB" if n >= 10**6 else f"{n / 1e3:.1f} KB"


def check(flatbuffer: bytes, precision: str, max_size: int | None,
          allowed_ops: tuple[str, ...] | None) -> None:  # fmt: skip
    """Raise BudgetError, naming the size or the ops, when the file does not fit."""
    from tfopt.inspection import graph_summary

    if max_size is not None and len(flatbuffer) > max_size:
        raise BudgetError(
            f"the {precision} file would be {_show(len(flatbuffer))}, over {option('max_size')} "
            f"{_show(max_size)}; a smaller precision (dynamic, int8, w4b32) or a pruning "
            "recipe may fit"
        )
    if not allowed_ops:
        return
    summary = graph_summary(flatbuffer)
    custom = set(summary["custom_ops"])
    if allowed_ops == (BUILTIN,):
        if custom:
            flex = sorted(o for o in custom if o.startswith("Flex"))
            other = sorted(custom - set(flex))
            kinds = [f"{', '.join(flex)} (Flex)"] * bool(flex) + [f"{', '.join(other)} (custom)"] * bool(other)
            raise BudgetError(f"the file needs ops an app must link separately: {'; '.join(kinds)} "
                              f"({option('allowed_ops')} builtin)")  # fmt: skip
        return
    outside = sorted(op for op in summary["ops"] if op.upper() not in allowed_ops)
    if outside:
        raise BudgetError(f"the {precision} file needs ops outside {option('allowed_ops')}: "
                          f"{', '.join(outside)}")  # fmt: skip
