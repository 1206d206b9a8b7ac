"""The user's text for metadata: `KEY=VALUE` pairs, a normalization `MEAN,STD`, a label file."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from tfopt.errors import DataError, InputError, option


def parse_sets(sets: Iterable[str], keys: Iterable[str]) -> dict[str, str]:
    """`KEY=VALUE` pairs (`tfopt metadata --set`) as {key: value}; KEY is one of `keys` (a dash
    reads as an underscore)."""
    known = list(keys)
    values = {}
    for item in sets:
        key, sep, value = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or key not in known:
            raise InputError(f"{option('sets')} {item}: expected KEY=VALUE with KEY one of "
                             f"{', '.join(known)}")  # fmt: skip
        values[key] = value
    return values


def parse_normalize(text: str) -> tuple[list[float], list[float]]:
    """'127.5,127.5' or '0.485:0.456:0.406,0.229:0.224:0.225' -> (mean, std)."""
    parts = text.split(",")
    flag = option("normalize")
    try:
        if len(parts) != 2:
            raise ValueError
        mean, std = ([float(v) for v in p.split(":")] for p in parts)
    except ValueError:
        raise InputError(
            f"{flag} {text}: expected MEAN,STD (numbers, or one per channel joined by ':')"
        ) from None
    if len(mean) != len(std):
        raise InputError(f"{flag} {text}: {len(mean)} means but {len(std)} stds")
    if any(s == 0 for s in std):
        raise InputError(f"{flag} {text}: a std of 0 divides by zero")
    return mean, std


def read_labels(path: str | os.PathLike[str]) -> list[str]:
    """A label file's class names: UTF-8 text, one per line (trailing blank lines ignored)."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"label file not found: {p}")
    try:
        text = p.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{p} is not UTF-8 text (byte {exc.start}); save the labels as UTF-8") from None
    labels = text.removeprefix("\ufeff").rstrip("\r\n").splitlines()
    if not labels or not any(line.strip() for line in labels):
        raise DataError(f"{p} is empty: expected one class name per line")
    blank = [i + 1 for i, line in enumerate(labels) if not line.strip()]
    if blank:
        raise DataError(f"{p}: line {blank[0]} is blank; every line names one class")
    return labels
