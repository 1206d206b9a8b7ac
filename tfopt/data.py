"""Calibration and evaluation data: `.npz`, `.npy` or a folder of images, checked against a model.

An `.npz` holds one array per model input, named after the input (or `x` for a single-input
model), and optionally labels `y`. Every array is checked before any work starts: sample shape,
dtype family (floats for float inputs, integers for integer inputs) and NaN/inf values.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tfopt.errors import DataError, first_line, note
from tfopt.fsutil import existing
from tfopt.loading import TensorSpec

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif")


@dataclass(frozen=True)
class Dataset:
    """Named input arrays with a leading sample axis, and optional labels."""

    x: dict[str, np.ndarray]
    y: np.ndarray | None = None

    def __len__(self) -> int:
        return len(next(iter(self.x.values())))

    def sample(self, i: int) -> dict[str, np.ndarray]:
        """Sample `i` as a batch of one."""
        return {name: arr[i : i + 1] for name, arr in self.x.items()}

    def take(self, n: int) -> Dataset:
        y = None if self.y is None else self.y[:n]
        return Dataset({k: v[:n] for k, v in self.x.items()}, y)


def _read_arrays(path: Path) -> dict[str, np.ndarray]:
    try:
        if path.suffix == ".npy":
            return {"x": np.load(path, allow_pickle=False)}
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (ValueError, OSError, EOFError) as exc:
        raise DataError(f"cannot read {path} as numpy data: {first_line(exc)}") from exc


def _read_images(folder: Path, spec: TensorSpec) -> dict[str, np.ndarray]:
    """Decode, resize to the input's H x W and scale to [0, 1]."""
    from tfopt import keras_worlds

    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DataError(f"{folder} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    if len(spec.shape) != 4 or spec.shape[1] is None or spec.shape[2] is None:
        raise DataError(
            f"an image folder needs a model input of shape (batch, H, W, C); "
            f"input '{spec.name}' has shape {spec.shape}"
        )
    tf = keras_worlds.tf()
    h, w, c = spec.shape[1], spec.shape[2], spec.shape[3] or 3
    images = []
    for f in files:
        try:
            img = tf.io.decode_image(f.read_bytes(), channels=c, expand_animations=False)
        except Exception as exc:  # noqa: BLE001 - tf raises InvalidArgumentError
            raise DataError(f"cannot decode image {f}") from exc
        img = tf.image.resize(tf.cast(img, tf.float32) / 255.0, (h, w))
        images.append(img.numpy())
    return {"x": np.stack(images).astype(np.float32)}


def check_array(name: str, arr: np.ndarray, spec: TensorSpec, source: Path) -> np.ndarray:
    want = spec.shape[1:]
    got = arr.shape[1:]
    mismatch = any(w is not None and w != g for w, g in zip(want, got, strict=False))
    if arr.ndim != len(spec.shape) or mismatch:
        shown = tuple("?" if d is None else d for d in want)
        raise DataError(
            f"{source}: array '{name}' has samples of shape {got}, "
            f"but input '{spec.name}' expects {shown}"
        )
    if spec.is_float:
        if np.issubdtype(arr.dtype, np.integer) or arr.dtype == np.bool_:
            cast = arr.astype(spec.dtype)
            if np.array_equal(cast.astype(arr.dtype), arr):
                # Token ids for a tf_keras Embedding whose input defaulted to float32.
                note(
                    f"{source}: integer array '{name}' fed to float input '{spec.name}' "
                    f"as {spec.dtype} (exact)"
                )
                return cast
        if not np.issubdtype(arr.dtype, np.floating):
            raise DataError(
                f"{source}: array '{name}' has dtype {arr.dtype}, but input '{spec.name}' "
                f"expects floating-point values ({spec.dtype})"
            )
        if not np.isfinite(arr).all():
            bad = int((~np.isfinite(arr)).sum())
            raise DataError(f"{source}: array '{name}' holds {bad} NaN or infinite values")
        return arr.astype(spec.dtype, copy=False)
    if not (np.issubdtype(arr.dtype, np.integer) or arr.dtype == np.bool_):
        raise DataError(
            f"{source}: array '{name}' has dtype {arr.dtype}, but input '{spec.name}' "
            f"expects integers ({spec.dtype})"
        )
    return arr.astype(spec.dtype, copy=False)


def load_data(
    path: str | os.PathLike[str],
    inputs: tuple[TensorSpec, ...] | list[TensorSpec],
    limit: int | None = None,
) -> Dataset:
    """Read data for `inputs` from `path`, checked and cast to the inputs' dtypes.

    Raises:
        DataError: an input has no array, or an array has the wrong shape, dtype or NaN values.
    """
    source = existing(path, "data")
    if source.is_dir():
        if len(inputs) != 1:
            raise DataError(f"an image folder can feed only a single-input model ({len(inputs)})")
        arrays = _read_images(source, inputs[0])
    elif source.suffix in (".npz", ".npy"):
        arrays = _read_arrays(source)
    else:
        raise DataError(f"{source}: data must be .npz, .npy or a folder of images")

    x: dict[str, np.ndarray] = {}
    for spec in inputs:
        key = spec.name if spec.name in arrays else None
        if key is None and len(inputs) == 1 and "x" in arrays:
            key = "x"
        if key is None:
            have = ", ".join(sorted(arrays)) or "none"
            raise DataError(
                f"{source}: no array for input '{spec.name}' (arrays: {have}; "
                f"name arrays after the model's inputs{', or x' if len(inputs) == 1 else ''})"
            )
        x[spec.name] = check_array(key, np.asarray(arrays[key]), spec, source)
    counts = {len(a) for a in x.values()}
    if len(counts) != 1 or 0 in counts:
        raise DataError(f"{source}: input arrays must hold the same, non-zero number of samples")
    y = arrays.get("y")
    if y is not None and len(y) != len(next(iter(x.values()))):
        raise DataError(f"{source}: labels 'y' hold {len(y)} samples, inputs {counts.pop()}")
    data = Dataset(x, None if y is None else np.asarray(y))
    return data.take(limit) if limit else data
