"""Training data and fine-tuning shared by every stage, in either Keras world.

Fine-tuning always goes through `model.fit`, so tfmot's callbacks, our mask-keeping callback and
the progress bar all plug in the same way. Callbacks are built from the model's own Keras module.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tfopt import keras_worlds
from tfopt.data import Dataset, check_array
from tfopt.errors import DataError, InputError
from tfopt.loading import TensorSpec, from_keras


@dataclass(frozen=True)
class TrainData:
    """Training and validation arrays; inputs keyed by model input name."""

    train: Dataset
    val: Dataset
    ordered: bool = False  # plain data without a split: calibrate on the first samples


def _split_arrays(
    arrays: dict[str, np.ndarray], split: str, specs: tuple[TensorSpec, ...], source: str
) -> dict[str, np.ndarray]:
    if split in arrays and len(specs) == 1:
        return {specs[0].name: arrays[split]}
    named = {s.name: arrays.get(f"{split}.{s.name}") for s in specs}
    missing = [f"{split}.{n}" for n, v in named.items() if v is None]
    if missing:
        raise DataError(
            f"{source}: no array {missing[0]} (an .npz for optimize holds x_train, y_train, x_val, "
            f"y_val; for several inputs x_train.<input name>)"
        )
    return {k: v for k, v in named.items() if v is not None}


def _checked(
    x: dict[str, np.ndarray], y: Any, specs: tuple[TensorSpec, ...], source: str
) -> Dataset:
    if y is None:
        raise DataError(f"{source}: labels are missing")
    y = np.asarray(y)
    if not np.issubdtype(y.dtype, np.integer):
        raise DataError(f"{source}: labels must be integer class ids, got {y.dtype}")
    out = {s.name: check_array(s.name, np.asarray(x[s.name]), s, Path(source)) for s in specs}
    if any(len(v) != len(y) for v in out.values()) or len(y) == 0:
        raise DataError(
            f"{source}: inputs and labels must hold the same, non-zero number of samples"
        )
    return Dataset(out, y.astype(np.int64))


def load_train_data(spec: str, specs: tuple[TensorSpec, ...]) -> TrainData:
    """Read an `.npz` (x_train, y_train, x_val, y_val) or call a `module:function` factory.

    A factory returns `(train, val)`, each a tf.data dataset of `(x, y)` batches or a pair of arrays;
    it is materialized once into arrays so that every stage sees the same data.
    """
    if ":" in spec and not Path(spec).exists():
        module_name, _, fn_name = spec.partition(":")
        try:
            fn: Callable[[], Any] = getattr(importlib.import_module(module_name), fn_name)
        except (ImportError, AttributeError) as exc:
            raise InputError(f"cannot import data factory '{spec}': {exc}") from None
        train, val = fn()
        return TrainData(_materialize(train, specs, spec), _materialize(val, specs, spec))
    path = Path(spec)
    if not path.is_file() or path.suffix != ".npz":
        raise InputError(f"data not found or not an .npz: {spec} (or give module:function)")
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    return TrainData(
        _checked(_split_arrays(arrays, "x_train", specs, spec), arrays.get("y_train"), specs, spec),
        _checked(_split_arrays(arrays, "x_val", specs, spec), arrays.get("y_val"), specs, spec),
    )


def _materialize(part: Any, specs: tuple[TensorSpec, ...], source: str) -> Dataset:
    if isinstance(part, tuple) and len(part) == 2:
        x, y = part
    else:
        xs, ys = [], []
        for xb, yb in part:
            xs.append(xb if isinstance(xb, dict) else {specs[0].name: xb})
            ys.append(np.asarray(yb))
        x = {k: np.concatenate([np.asarray(b[k]) for b in xs]) for k in xs[0]}
        y = np.concatenate(ys)
    if not isinstance(x, dict):
        x = {specs[0].name: x}
    return _checked(x, y, specs, source)


def model_args(model: Any, x: dict[str, np.ndarray]) -> Any:
    """Arrange named arrays the way the model is called (dict, list or a single array)."""
    return from_keras(model).call_args(x)


def outputs_are_probabilities(model: Any, data: Dataset) -> bool:
    """True if the model ends in a softmax (rows in [0, 1] summing to 1), else logits."""
    out = np.asarray(model(model_args(model, data.take(16).x), training=False))
    return bool(out.min() >= 0 and np.allclose(out.sum(-1), 1.0, atol=1e-3))


def evaluate(model: Any, data: Dataset, batch_size: int = 256) -> float:
    """Top-1 accuracy of a Keras model on `data`."""
    preds = []
    for start in range(0, len(data), batch_size):
        x = {k: v[start : start + batch_size] for k, v in data.x.items()}
        preds.append(np.asarray(model(model_args(model, x), training=False)).argmax(-1))
    return float(np.mean(np.concatenate(preds) == data.y))


def callback_base(world: keras_worlds.World) -> type:
    return keras_worlds.module(world).callbacks.Callback  # type: ignore[no-any-return]


def progress_callback(world: keras_worlds.World, desc: str, steps: int) -> Any:
    """A tqdm bar per epoch on stderr (quiet when stderr is not a terminal)."""
    from tqdm import tqdm

    class Progress(callback_base(world)):  # type: ignore[misc]
        def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
            self.bar = tqdm(
                total=steps,
                desc=f"{desc} epoch {epoch + 1}",
                unit="step",
                leave=False,
                disable=None,
            )

        def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
            self.bar.update(1)
            if logs and "loss" in logs:
                self.bar.set_postfix(loss=f"{float(logs['loss']):.4f}", refresh=False)

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            self.bar.close()

    return Progress()


@dataclass(frozen=True)
class Fit:
    """How one stage fine-tunes: epochs, batch size, learning rate, loss and its progress label."""

    epochs: int
    batch_size: int
    learning_rate: float
    loss: Any
    desc: str


def fine_tune(
    model: Any,
    world: keras_worlds.World,
    data: TrainData,
    fit: Fit,
    callbacks: list[Any] | None = None,
    y: np.ndarray | None = None,
) -> None:
    """Compile and fit `model` on the training split (labels `y` override the split's)."""
    if fit.epochs == 0:
        return
    keras = keras_worlds.module(world)
    # metrics=[]: keras-hub tasks otherwise add an accuracy metric that distillation's packed
    # targets would break.
    model.compile(optimizer=keras.optimizers.Adam(fit.learning_rate), loss=fit.loss, metrics=[])
    steps = math.ceil(len(data.train) / fit.batch_size)
    model.fit(
        model_args(model, data.train.x),
        data.train.y if y is None else y,
        epochs=fit.epochs,
        batch_size=fit.batch_size,
        shuffle=True,
        verbose=0,
        callbacks=[progress_callback(world, fit.desc, steps), *(callbacks or [])],
    )


def class_loss(world: keras_worlds.World, from_logits: bool) -> Any:
    keras = keras_worlds.module(world)
    return keras.losses.SparseCategoricalCrossentropy(from_logits=from_logits)
