"""`optimize`: run a recipe's training stages on a Keras model, then convert and evaluate.

Each stage goes to the runner registered for (stage kind, Keras world) in `stages.py`. The last
stage builds a `ConvertRequest`; the `.tflite` is measured through the evaluation spine
(`tfopt.evaluation`): size, gzip size, the comparison with the optimized Keras model on the
validation data, and latency at 1 thread (and under the recipe's own runtime, when it names one).
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tfopt.conversion import convert_request
from tfopt.data import Dataset
from tfopt.errors import InputError, first_line, option
from tfopt.evaluation import Candidate, Runtime, evaluate
from tfopt.fsutil import atomic_path, check_output_dir, staged_dir
from tfopt.inspection import weight_stats
from tfopt.loading import SourceKind, TensorSpec, from_keras, load
from tfopt.metadata import read_labels
from tfopt.optimization import training
from tfopt.optimization.channels import count_macs
from tfopt.optimization.context import Context, World, copy_model, kernel_stats, overall_sparsity
from tfopt.optimization.result import OptimizeReport
from tfopt.optimization.stages import run_stage
from tfopt.optimization.training import (
    TrainData,
    load_train_data,
    model_args,
    outputs_are_probabilities,
)
from tfopt.recipes import ConvertStage, Recipe, Stage, load_recipe
from tfopt.report import write_optimize_report
from tfopt.validate import run_reference

OUTPUTS = ["model.tflite", "optimized.keras", "report.json", "report.md"]
CHECK_SAMPLES = 256  # validation samples the conversion's numeric check runs on
MIN_SECONDS = 0.5  # timing budget per runtime


@dataclass(frozen=True)
class OptimizeOptions:
    """How `optimize` runs: fine-tune epochs per stage (a stage's own `epochs` wins) and batch
    size; `overwrite` earlier results; `unsafe` loading (Lambda layers); `check`: refuse a
    `.tflite` that misses its precision's tolerance (without it, keep it and report the
    difference)."""

    epochs: int = 2
    batch_size: int = 64
    overwrite: bool = False
    unsafe: bool = False
    check: bool = True

    def __post_init__(self) -> None:
        if self.epochs < 0 or self.batch_size < 1:
            raise InputError(f"{option('epochs')} must be >= 0 and {option('batch_size')} >= 1")


@dataclass(frozen=True)
class _Job:
    """What the last stage needs besides the trained model."""

    recipe: Recipe
    model: str  # how the report names the model
    inputs: tuple[TensorSpec, ...]
    train: TrainData
    out: Path
    check: bool


def _snapshot(ctx: Context, name: str, did: dict[str, Any], seconds: float) -> dict[str, Any]:
    stats = kernel_stats(ctx.model)
    val = ctx.data.val
    return {
        "stage": name,
        "did": did,
        "seconds": round(seconds, 1),
        "params": int(ctx.model.count_params()),
        "macs": count_macs(ctx.model),  # Conv/Dense multiply-adds per sample (None: uncountable)
        "sparsity": overall_sparsity(stats),
        "max_unique_per_kernel": max((s["unique"] for s in stats.values()), default=0),
        "val_accuracy": None if val.y is None else round(training.evaluate(ctx.model, val), 4),
    }


def _save_keras(model: Any, path: Path, probe: Dataset) -> str | None:
    """Save `model` only if the file reloads (safe mode) to the same outputs; else say why."""
    try:
        with tempfile.TemporaryDirectory() as tmp:
            tmp_file = Path(tmp) / "optimized.keras"
            model.save(tmp_file)
            again = load(tmp_file).model
            a = np.asarray(model(model_args(model, probe.x), training=False))
            b = np.asarray(again(model_args(again, probe.x), training=False))
            if not np.allclose(a, b, atol=1e-4):
                return (
                    "the saved file does not reload to the same model "
                    "(factorized layers inside keras-hub blocks do not survive get_config)"
                )
            with atomic_path(path) as final_path:
                final_path.write_bytes(tmp_file.read_bytes())
    except Exception as exc:  # noqa: BLE001 - report it; the .tflite is the product
        return first_line(exc, 200)
    return None


def calibration_sample(train: Dataset, n: int, ordered: bool = False) -> Dataset:
    """The samples a conversion calibrates on: a seeded random subset of a training split, or the
    first `n` of data that has none (what `tfopt tune` calibrates on, so its recipes reproduce)."""
    if ordered:
        return Dataset({k: v[:n] for k, v in train.x.items()})
    pick = np.random.default_rng(0).permutation(len(train))[:n]
    return Dataset({k: v[pick] for k, v in train.x.items()})


def _data_for(rec: Recipe, data: str, inputs: tuple[TensorSpec, ...]) -> TrainData:
    """A recipe that trains needs a training split; a convert-only recipe (as `tfopt tune` writes
    for an encoder) also takes plain data (x, optional y): the first samples calibrate and the
    second half is held out, as in the search."""
    from tfopt.data import load_data

    if len(rec.stages) > 1 or not str(data).endswith(".npz") or not Path(data).is_file():
        return load_train_data(data, inputs)
    with np.load(data, allow_pickle=False) as z:
        if any(n == "x_train" or n.startswith("x_train.") for n in z.files):
            return load_train_data(data, inputs)
    full = load_data(data, inputs)
    half = len(full) // 2
    rest = Dataset({k: v[half:] for k, v in full.x.items()}, None if full.y is None else full.y[half:])
    return TrainData(full, rest, ordered=True)


def _seq_len(specs: Any, data: Dataset) -> int | None:
    for s in specs:
        if any(d is None for d in s.shape[1:]):
            return int(data.x[s.name].shape[1])
    return None


def _recipe_folder(rec: Recipe) -> Path | None:
    """The folder of a recipe read from a file: its relative label paths start there."""
    return Path(rec.source).parent if rec.source and Path(rec.source).is_file() else None


def optimize(
    model: str | os.PathLike[str] | Any,
    recipe: str | Recipe,
    data: str,
    out_dir: str | os.PathLike[str],
    options: OptimizeOptions | None = None,
) -> OptimizeReport:
    """Run `recipe` on `model`, fine-tuning on `data`; write model.tflite, optimized.keras and the
    reports to `out_dir` (all together, or none). See `OptimizeOptions` for `options`."""
    opts = options or OptimizeOptions()
    rec = recipe if isinstance(recipe, Recipe) else load_recipe(recipe)
    final: ConvertStage = rec.stages[-1]  # type: ignore[assignment]
    meta = final.metadata(_recipe_folder(rec))
    if meta.labels is not None:
        read_labels(meta.labels)  # a bad label file fails before any training
    out = check_output_dir(out_dir, OUTPUTS, opts.overwrite)
    loaded = load(model, unsafe=opts.unsafe)
    if loaded.kind not in (SourceKind.TF_KERAS, SourceKind.KERAS3):
        raise InputError(
            f"optimize needs a Keras model (.keras, .h5 or in memory), not a {loaded.kind}"
        )
    world = World.TF_KERAS if loaded.kind is SourceKind.TF_KERAS else World.KERAS3
    train = _data_for(rec, data, loaded.inputs)
    needs_teacher = any(isinstance(s, Stage) and s.learns_from_teacher for s in rec.stages)
    ctx = Context(
        model=loaded.model,
        world=world,
        teacher=copy_model(loaded.model, world) if needs_teacher else None,
        data=train,
        epochs=opts.epochs,
        batch_size=opts.batch_size,
        from_logits=not outputs_are_probabilities(loaded.model, train.val),
    )
    stages = [_snapshot(ctx, "original", {}, 0.0)]
    for stage in rec.stages[:-1]:
        started = time.perf_counter()
        did = run_stage(ctx, stage)
        stages.append(_snapshot(ctx, stage.kind.value, did, time.perf_counter() - started))
    name = str(model) if isinstance(model, (str, os.PathLike)) else type(model).__name__
    job = _Job(rec, name, loaded.inputs, train, out, opts.check)
    with staged_dir(out, OUTPUTS) as staging:
        return _convert_and_report(ctx, job, stages, staging)


def _convert_and_report(
    ctx: Context, job: _Job, stages: list[dict[str, Any]], staging: Path
) -> OptimizeReport:
    """The last stage: convert, evaluate, save; every file goes to `staging` (moved to `out` by
    the caller only when all of them were written)."""
    rec, train = job.recipe, job.train
    final: ConvertStage = rec.stages[-1]  # type: ignore[assignment]
    request = final.request(
        _recipe_folder(rec),
        calibration=calibration_sample(train.train, final.num_calibration, train.ordered),
        seq_len=_seq_len(job.inputs, train.val),
        overwrite=True,
        check=job.check,
        check_data=train.val.take(CHECK_SAMPLES),
    )
    path = staging / "model.tflite"
    conv = convert_request(ctx.model, path, request)
    # At 1 thread, and under the runtime the recipe names (`tfopt tune` writes one).
    runtimes = [Runtime()] + ([rec.runtime] if rec.runtime not in (None, Runtime()) else [])
    reference = run_reference(from_keras(ctx.model), train.val)
    ev = evaluate(Candidate(path, request, rec.name), reference, train.val, runtimes,
                  min_seconds=MIN_SECONDS)  # fmt: skip
    notes = list(ctx.notes)
    if not job.check:
        notes.append("numeric check not enforced (--no-check); see tflite.check")
    notes += [n for s in stages for n in s["did"].get("notes", [])]
    saved = _save_keras(ctx.plain_model or ctx.model, staging / "optimized.keras", train.val.take(8))
    if saved:
        notes.append(f"optimized.keras not written: {saved}")
    report = OptimizeReport(
        recipe=rec,
        model=job.model,
        world=ctx.world.value,
        stages=stages,
        evaluation=ev,
        conversion=conv,
        check=conv.check if job.check else ev.comparison.to_dict(),  # type: ignore[union-attr]
        weights=weight_stats(path),
        layers=kernel_stats(ctx.model),
        notes=notes,
        out_dir=str(job.out),
        path=str(job.out / "model.tflite"),
    )
    write_optimize_report(staging, report)  # report.json, report.md
    return report
