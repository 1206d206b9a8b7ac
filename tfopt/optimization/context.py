"""What flows from stage to stage, and the per-layer weight statistics every stage reports."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tfopt import keras_worlds
from tfopt.errors import TfoptError
from tfopt.optimization.training import Fit, TrainData, class_loss, fine_tune

World = keras_worlds.World


class StageError(TfoptError):
    """A stage cannot apply to this model; the message names the layer types at fault."""


@dataclass
class Context:
    """The model being optimized, the untouched original (the distillation teacher), the data."""

    model: Any
    world: World
    teacher: Any
    data: TrainData
    epochs: int
    batch_size: int
    from_logits: bool
    pruned: bool = False
    clustered: bool = False
    notes: list[str] = field(default_factory=list)
    plain_model: Any = None  # what optimized.keras holds when `model` carries QAT wrappers

    def rebuild_as_tf_keras(self, stage: str) -> None:
        """Replace the Keras 3 model by the same network in tf_keras, so that tfmot can run
        `stage` (StageError naming the layer types it cannot rebuild)."""
        from tfopt.optimization.rebuild import to_tf_keras

        self.model = to_tf_keras(self.model, self.data.val, stage)
        self.world = World.TF_KERAS
        self.notes.append(f"rebuilt the Keras 3 model as tf_keras so that tfmot can run '{stage}'")

    def epochs_for(self, stage: Any) -> int:
        return self.epochs if stage.epochs is None else int(stage.epochs)

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(len(self.data.train) / self.batch_size)

    def fine_tune(
        self,
        model: Any,
        stage: Any,
        desc: str,
        loss: Any = None,
        callbacks: list[Any] | None = None,
        y: np.ndarray | None = None,
    ) -> None:
        """Fit `model` for the stage's epochs and learning rate (class loss unless given)."""
        loss = class_loss(self.world, self.from_logits) if loss is None else loss
        fit = Fit(self.epochs_for(stage), self.batch_size, stage.learning_rate, loss, desc)
        fine_tune(model, self.world, self.data, fit, callbacks=callbacks, y=y)


def _weight_name(w: Any) -> str:
    name = getattr(w, "path", None) or w.name
    return str(name).split(":")[0]


def kernel_stats(model: Any) -> dict[str, dict[str, float]]:
    """Per kernel: parameter count, fraction of zeros, number of unique values."""
    stats = {}
    for w in model.weights:
        name = _weight_name(w)
        if not name.endswith("kernel") or "quantize" in name:
            continue
        value = np.asarray(w.numpy() if hasattr(w, "numpy") else w)
        stats[name] = {
            "params": int(value.size),
            "sparsity": round(float(np.mean(value == 0)), 4),
            "unique": int(np.unique(value).size),
        }
    return stats


def overall_sparsity(stats: dict[str, dict[str, float]]) -> float:
    total = sum(s["params"] for s in stats.values())
    zeros = sum(s["params"] * s["sparsity"] for s in stats.values())
    return round(zeros / total, 4) if total else 0.0


def matches(pattern: str | None, name: str) -> bool:
    return bool(pattern) and re.search(pattern, name) is not None  # type: ignore[arg-type]


def copy_model(model: Any, world: World) -> Any:
    """An independent copy with the same weights (the teacher must not change with the student)."""
    keras = keras_worlds.module(world)
    if world is World.TF_KERAS:
        clone = keras.models.clone_model(model)
        clone.set_weights(model.get_weights())
        return clone
    return keras.models.clone_model(model) if _is_functional_plain(model) else _reload_copy(model)


def _is_functional_plain(model: Any) -> bool:
    return type(model).__name__ in ("Functional", "Sequential")


def _reload_copy(model: Any) -> Any:
    """Deep copy of a Keras 3 model of any class (keras-hub tasks too) through get_config."""
    clone = model.__class__.from_config(model.get_config())
    clone.set_weights(model.get_weights())
    return clone
