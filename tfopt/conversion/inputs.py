"""The data a conversion works on: fixed input specs, calibration and check sets, synthetic data."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from tfopt import keras_worlds
from tfopt.core import LoadedModel, TensorSpec
from tfopt.data import Dataset, check_array, load_data
from tfopt.errors import ConversionError, option
from tfopt.runtime.feeding import synthetic_input

CHECK_SAMPLES = 32


def fixed_specs(inputs: tuple[TensorSpec, ...], seq_len: int | None) -> tuple[TensorSpec, ...]:
    """Input specs with free non-batch dimensions set to `seq_len` (when given)."""
    if seq_len is None:
        return inputs
    return tuple(
        TensorSpec(
            s.name, (s.shape[0], *(seq_len if d is None else d for d in s.shape[1:])), s.dtype
        )
        for s in inputs
    )


def specs_from_data(
    inputs: tuple[TensorSpec, ...], data: Dataset | None
) -> tuple[tuple[TensorSpec, ...], list[str]]:
    """Free non-batch dimensions fixed to the sizes the user's data has, input by input (a
    text model's time axis, a masked LM's `mask_positions`), and a note for each one fixed."""
    if data is None:
        return inputs, []
    fixed, notes = [], []
    for s in inputs:
        arr = data.x.get(s.name)
        if arr is None or arr.ndim != len(s.shape) or all(d is not None for d in s.shape[1:]):
            fixed.append(s)
            continue
        shape = (
            s.shape[0],
            *(a if d is None else d for d, a in zip(s.shape[1:], arr.shape[1:], strict=True)),
        )
        fixed.append(TensorSpec(s.name, shape, s.dtype))
        notes.append(f"input '{s.name}' fixed to {tuple(shape[1:])} from the data")
    return tuple(fixed), notes


def written_input_notes(
    flatbuffer: bytes, free: list[str], seq_len: int | None, data: Dataset | None
) -> list[str]:
    """One note per input that left a (sequence) dimension `free`, saying the shape the written
    file takes, read back from it: fixed by `seq_len`, from the data's own shape, or (the file
    keeping it free) that it stayed free. A note never claims a shape the file does not have."""
    from tfopt.inspection import flatbuffer_io

    written = {d["name"]: [int(v) for v in d["shape"]] for d in flatbuffer_io(flatbuffer)["inputs"]}
    notes = []
    for name in free:
        shape = written.get(name) or (next(iter(written.values())) if len(written) == 1 else None)
        if shape is None:
            continue
        if -1 in shape[1:]:
            notes.append(f"input '{name}' stays free in the written file (shape {shape})")
            continue
        arr = data.x.get(name) if data is not None else None
        origin = (
            f" by {option('seq_len')} {seq_len}" if seq_len is not None
            else " from the data" if arr is not None and list(arr.shape[1:]) == shape[1:]
            else ""
        )  # fmt: skip
        notes.append(f"input '{name}' fixed to {tuple(shape[1:])}{origin} in the written file")
    return notes


def vocabulary_bound(model: Any) -> int | None:
    """The smallest embedding table of a Keras model: synthetic token ids must stay below it."""
    flatten = getattr(model, "_flatten_layers", None)
    if not callable(flatten):
        return None
    sizes = [
        getattr(layer, "input_dim", None) or getattr(layer, "vocabulary_size", None)
        for layer in flatten(include_self=False)
        if "Embedding" in type(layer).__name__
    ]
    sizes = [int(v) for v in sizes if isinstance(v, int) and v > 0]
    return min(sizes) if sizes else None


# The length synthetic values take along a free dimension (`convert --dynamic-length`) when the
# model names none of its own: 128, the common encoder length.
FREE_LENGTH = 128


def synthetic_data(
    inputs: tuple[TensorSpec, ...],
    n: int,
    seed: int = 0,
    max_id: int | None = None,
    free_length: int | None = None,
) -> Dataset:
    """`n` realistic random samples (the runtime's rule: floats in [0,1), small ids for ints;
    ids below `max_id` when the model's embedding table is smaller than that). Free dimensions
    (a `--dynamic-length` model) take `free_length`."""
    rng = np.random.default_rng(seed)
    x: dict[str, list[np.ndarray]] = {s.name: [] for s in inputs}
    for _ in range(n):
        for s in inputs:
            if any(d is None for d in s.shape[1:]) and free_length is None:
                raise ConversionError(
                    f"input '{s.name}' has a free dimension; pass {option('seq_len')} N"
                )
            detail = {
                "shape": [1, *(free_length if d is None else d for d in s.shape[1:])],
                "dtype": np.dtype(s.dtype),
                "quantization": (0, 0),
            }
            value = synthetic_input(s.name, detail, rng)
            if max_id is not None and np.issubdtype(value.dtype, np.integer):
                value = value % max_id
            x[s.name].append(value)
    return Dataset({k: np.concatenate(v) for k, v in x.items()})


def dataset(
    source: str | os.PathLike[str] | Dataset | None, specs: tuple[TensorSpec, ...], limit: int
) -> Dataset | None:
    """Data for `specs` from a path (checked and cast by `load_data`) or an in-memory Dataset
    (checked against `specs` too: its arrays may come from before the free sizes were fixed)."""
    if source is None:
        return None
    if isinstance(source, Dataset):
        where = Path("the data")
        for spec in specs:
            if spec.name in source.x:
                check_array(spec.name, source.x[spec.name], spec, where)
        return source.take(limit)
    return load_data(source, specs, limit=limit)


def representative(data: Dataset, order: list[str] | None) -> Any:
    from tqdm import tqdm

    def gen() -> Iterator[Any]:
        for i in tqdm(
            range(len(data)), desc="calibrating", unit="sample", leave=False, disable=None
        ):
            sample = data.sample(i)
            yield [sample[n] for n in order] if order is not None else sample

    return gen


def check_sample(
    held_out: Any, data: Any, synthetic: Any, text: Any = None
) -> tuple[str, Any]:
    """What the check runs on: the check data, else the calibration data, else real sentences
    through the model's own tokenizer (`text()`), else synthetic values (`synthetic()`)."""
    if held_out is not None:
        return "check_data", held_out
    if data is not None:
        return "calibration", data
    sentences = text() if text is not None else None
    if sentences is not None:
        return "sentences", sentences
    return "synthetic", synthetic()


def preset_sentences(loaded: LoadedModel, specs: tuple[Any, ...]) -> Any:
    """The shipped public-domain sentences through a keras-hub preset's own preprocessor, at
    the model's fixed length; None when the model is no such text model."""
    if loaded.path is None or not (Path(loaded.path) / "config.json").exists():
        return None
    lengths = {d for s in specs for d in s.shape[1:2]}
    if len(lengths) != 1 or None in lengths:
        return None
    from importlib.resources import files

    text = files("tfopt").joinpath("text/sentences.txt").read_text(encoding="utf-8")
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    arrays = keras_worlds.preset_text_inputs(Path(loaded.path), lines, lengths.pop())
    if arrays is None or any(s.name not in arrays for s in specs):
        return None
    return Dataset({s.name: np.asarray(arrays[s.name]).astype(s.dtype) for s in specs})
