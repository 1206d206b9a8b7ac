"""`tfopt metadata`: show a .tflite file's metadata, or write a copy with it changed."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from tfopt.errors import InputError, ModelLoadError, first_line, option
from tfopt.fsutil import atomic_path, check_output
from tfopt.inspection import read_tflite
from tfopt.metadata import Metadata, attach, read
from tfopt.runtime.feeding import make_interpreter


def edit(
    model: str | os.PathLike[str],
    changes: Metadata | None = None,
    output: str | os.PathLike[str] | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """The metadata of `model`; with `changes`, also a copy at `output` carrying them (the input
    is never modified; the copy is loaded by LiteRT before it is kept).

    Raises:
        InputError: changes without an output, an output without changes, output == model.
        ModelLoadError: not a .tflite file.
        DataError: a bad label file.
    """
    data = read_tflite(model)
    if not changes:
        if output is not None:
            raise InputError(f"nothing to change: give {option('sets')} KEY=VALUE, "
                             f"{option('labels')} or {option('normalize')}")  # fmt: skip
        return {"model": str(model), "metadata": read(data)}
    if output is None:
        raise InputError("-o OUTPUT is needed to write the changed model (MODEL is never modified)")
    if Path(output).resolve() == Path(model).resolve():
        raise InputError("-o is MODEL itself: write the changed model to another path")
    out = check_output(output, overwrite)
    new = attach(data, changes)
    loads = _loads(Path(model))  # a file with custom ops the app registers does not load here
    with atomic_path(out) as tmp:
        tmp.write_bytes(new)
        if loads is None and (problem := _loads(tmp)) is not None:
            raise ModelLoadError(f"the changed model does not load in LiteRT: {problem}")
    return {"model": str(model), "output": str(out), "size_bytes": len(new), "metadata": read(new)}


def _loads(path: Path) -> str | None:
    """None if LiteRT loads the file, else why not (one line)."""
    try:
        make_interpreter(str(path), 1).allocate_tensors()
    except Exception as exc:  # noqa: BLE001 - LiteRT refuses a broken file in many ways
        return first_line(exc, 200)
    return None
