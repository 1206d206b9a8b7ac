"""What `optimize` returns: the stages it ran, and the `Evaluation` of the `.tflite` it kept."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tfopt.conversion import ConvertResult
from tfopt.evaluation import Evaluation, Runtime
from tfopt.recipes import Recipe


@dataclass(frozen=True)
class OptimizeReport:
    """The recipe, the Keras world it ran in, a snapshot per stage, the `.tflite`'s evaluation
    (size, gzip size, comparison with the optimized Keras model on the validation data, latency
    at 1 thread and under the recipe's own runtime), its conversion and its weights."""

    recipe: Recipe
    model: str
    world: str
    stages: list[dict[str, Any]]
    evaluation: Evaluation
    conversion: ConvertResult
    check: dict[str, Any] | None  # the conversion's check, or the comparison under check=False
    weights: dict[str, Any]
    layers: dict[str, dict[str, float]]
    notes: list[str]
    out_dir: str
    path: str  # where model.tflite is (the evaluation measured it before it was moved there)

    @property
    def tflite(self) -> dict[str, Any]:
        """The `.tflite`: the shared `Evaluation.row()` keys (size_bytes, gzip_bytes, p50_ms_by_runtime,
        p90_ms_by_runtime, quality, within_tolerance), and optimize's own (val_accuracy, p50_ms_1t, ...)."""
        ev, runtime = self.evaluation, self.recipe.runtime
        accuracy = ev.quality().get("accuracy")
        samples = ev.comparison.samples if ev.comparison is not None else 0
        return {
            "path": self.path,
            "precision": self.conversion.precision,
            **ev.row(),
            "val_accuracy": None if accuracy is None else round(accuracy, 4),
            "val_samples": samples,
            "p50_ms_1t": ev.p50_ms(Runtime()),
            "runtime": None if runtime is None else {**runtime.to_dict(), "p50_ms": ev.p50_ms(runtime)},
            "check": self.check,
            "metadata": self.conversion.metadata,
            "weights": self.weights,
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "recipe": self.recipe.to_dict(),
            "model": self.model,
            "world": self.world,
            "stages": self.stages,
            "tflite": self.tflite,
            "layers": self.layers,
            "notes": self.notes,
            "out_dir": self.out_dir,
        }
