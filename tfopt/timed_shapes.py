"""The input shapes a timing runs at. A model that leaves a non-batch dimension free (a sequence
length) costs what its length costs, so it is timed at the user's length: the data's own shape
(`bench --data`), or `--seq-len N` / `--input-shape NAME=DIMS`; never at a default nobody feeds.
Nothing here imports TensorFlow.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tfopt.errors import InputError, ModelLoadError, first_line, note, option
from tfopt.inspection import flatbuffer_io

Shape = tuple[int, ...]


@dataclass(frozen=True)
class TimedShapes:
    """`given`: the shapes the runtime is told to time (inputs with a free dimension);
    `expected`: every input's timed shape where it is known before the run (None where the
    data's own shape decides: the runtime reports it)."""

    given: tuple[tuple[str, Shape], ...]
    expected: dict[str, list[int]] | None


def parse_shapes(values: tuple[str, ...]) -> dict[str, Shape] | Shape | None:
    """`--input-shape` values as convert takes them (`1,500,4` for the one input, or NAME=DIMS
    per input), every size given."""
    from tfopt.loading import parse_input_shapes

    shapes = parse_input_shapes(values)
    given = shapes.values() if isinstance(shapes, dict) else [shapes] if shapes else []
    if any(d is None for shape in given for d in shape):
        raise InputError(f"{option('input_shapes')}: bench times one shape, give every size (no ?)")
    return shapes  # type: ignore[return-value]


def _fixed(name: str, signature: list[int], shape: Shape) -> Shape:
    if len(shape) != len(signature) or any(
        s != -1 and s != d for s, d in zip(signature, shape, strict=True)
    ):
        raise InputError(
            f"{option('input_shapes')} {name}={','.join(map(str, shape))} does not fit input '{name}' "
            f"of shape {signature} (-1 = free)"
        )
    return shape


def _refusal(model: str, name: str, signature: list[int]) -> InputError:
    free = [i for i, s in enumerate(signature) if i and s == -1]
    example = ",".join("N" if i in free else "1" if s == -1 else str(s) for i, s in enumerate(signature))
    return InputError(
        f"{model}: input '{name}' leaves dimension {free[0]} free (shape {signature}): time it at "
        f"your length with {option('data')} DATA, {option('seq_len')} N or {option('input_shapes')} {name}={example}"
    )


def timed_shapes(
    path: Path, model: bytes, seq_len: int | None, input_shapes: tuple[str, ...], data: bool
) -> TimedShapes:
    """The shapes `model` is timed at (see the module's docstring); batch 1 where it is free.

    Raises:
        InputError: a free non-batch dimension and neither `data`, `seq_len` nor a shape for
            it; a shape that does not fit its input.
    """
    try:
        inputs: list[dict[str, Any]] = flatbuffer_io(model)["inputs"]
    except Exception as exc:  # noqa: BLE001 - the flatbuffer reader raises many types
        raise ModelLoadError(f"{path}: a broken TFLite flatbuffer ({first_line(exc)})") from None
    shapes = parse_shapes(input_shapes)
    if isinstance(shapes, tuple):
        if len(inputs) != 1:
            names = ", ".join(d["name"] for d in inputs)
            raise InputError(f"the model has {len(inputs)} inputs ({names}): give {option('input_shapes')} "
                             "NAME=DIMS for each")  # fmt: skip
        shapes = {inputs[0]["name"]: shapes}
    shapes = shapes or {}
    unknown = sorted(set(shapes) - {d["name"] for d in inputs})
    if unknown:
        have = ", ".join(d["name"] for d in inputs)
        raise InputError(f"{option('input_shapes')} names unknown inputs {', '.join(unknown)} (the model "
                         f"has {have})")  # fmt: skip
    given: list[tuple[str, Shape]] = []
    timed: dict[str, Shape | None] = {}
    for d in inputs:
        name, signature = d["name"], [int(s) for s in d["shape"]]
        free = any(s == -1 for s in signature[1:])
        if name in shapes:
            shape = _fixed(name, signature, shapes[name])
        elif free and seq_len is not None:
            shape = tuple(seq_len if i and s == -1 else 1 if s == -1 else s
                          for i, s in enumerate(signature))  # fmt: skip
        elif free and not data:
            raise _refusal(path.name, name, signature)
        else:  # its own shape (batch 1), or the data's (the runtime reports it)
            timed[name] = None if free else tuple(1 if s == -1 else s for s in signature)
            continue
        given.append((name, shape))
        timed[name] = shape
    known = all(v is not None for v in timed.values())
    expected = {n: list(v) for n, v in timed.items() if v is not None} if known else None
    if seq_len is not None and not any(-1 in d["shape"][1:] for d in inputs):
        note(f"{path.name} has no free (sequence) dimension: {option('seq_len')} changes nothing")
    return TimedShapes(tuple(given), expected)
