"""Optimize stage: run a recipe's stages on a Keras model, fine-tuned on the user's data.

Each stage goes to the runner registered for (stage kind, Keras world): tfmot for tf_keras
models, native implementations for Keras 3 ones (keras-hub included). A Keras 3 chain of standard
layers is rebuilt as tf_keras when a stage needs tfmot. The last stage converts; the `.tflite` is
measured through the interpreter: size, gzip size, validation accuracy and CPU latency.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tfopt.conversion import convert
from tfopt.data import Dataset
from tfopt.errors import InputError, first_line
from tfopt.fsutil import atomic_path, check_output_dir, staged_dir
from tfopt.inspection import weight_stats
from tfopt.loading import SourceKind, TensorSpec, from_keras, load
from tfopt.metadata import read_labels
from tfopt.optimization import lowrank, native, qat_keras3, tfmot_stages
from tfopt.optimization.context import (
    Context,
    StageError,
    World,
    copy_model,
    kernel_stats,
    overall_sparsity,
)
from tfopt.optimization.rebuild import to_tf_keras
from tfopt.optimization.training import (
    TrainData,
    evaluate,
    load_train_data,
    model_args,
    outputs_are_probabilities,
)
from tfopt.recipes import ConvertStage, Recipe, StageKind, load_recipe
from tfopt.report import write_optimize_report
from tfopt.timing import BenchSettings, bench
from tfopt.validate import compare_outputs, run_reference, run_tflite

OUTPUTS = ["model.tflite", "optimized.keras", "report.json", "report.md"]
Runner = Callable[[Context, Any], dict[str, Any]]
RUNNERS: dict[tuple[StageKind, World], Runner] = {
    (StageKind.PRUNE, World.TF_KERAS): tfmot_stages.prune,
    (StageKind.PRUNE, World.KERAS3): native.prune,
    (StageKind.CLUSTER, World.TF_KERAS): tfmot_stages.cluster,
    (StageKind.QAT, World.TF_KERAS): tfmot_stages.qat,
    (StageKind.QAT, World.KERAS3): qat_keras3.qat,
    (StageKind.LOWRANK, World.TF_KERAS): lowrank.lowrank,
    (StageKind.LOWRANK, World.KERAS3): lowrank.lowrank,
    (StageKind.DISTILL, World.TF_KERAS): native.distill,
    (StageKind.DISTILL, World.KERAS3): native.distill,
}

__all__ = ["OptimizeReport", "StageError", "calibration_sample", "optimize"]


@dataclass(frozen=True)
class OptimizeReport:
    recipe: dict[str, Any]
    model: str
    world: str
    stages: list[dict[str, Any]]
    tflite: dict[str, Any]
    layers: dict[str, dict[str, float]]
    notes: list[str]
    out_dir: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _runner(ctx: Context, kind: StageKind) -> Runner:
    if (kind, ctx.world) not in RUNNERS and ctx.world is World.KERAS3:
        ctx.model = to_tf_keras(ctx.model, ctx.data.val, str(kind))
        ctx.world = World.TF_KERAS
        ctx.notes.append(f"rebuilt the Keras 3 model as tf_keras so that tfmot can run '{kind}'")
    return RUNNERS[(kind, ctx.world)]


def _snapshot(ctx: Context, name: str, did: dict[str, Any], seconds: float) -> dict[str, Any]:
    stats = kernel_stats(ctx.model)
    return {
        "stage": name,
        "did": did,
        "seconds": round(seconds, 1),
        "params": int(ctx.model.count_params()),
        "sparsity": overall_sparsity(stats),
        "max_unique_per_kernel": max((s["unique"] for s in stats.values()), default=0),
        "val_accuracy": None if ctx.data.val.y is None else round(evaluate(ctx.model, ctx.data.val), 4),
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
    from pathlib import Path

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


def optimize(
    model: str | os.PathLike[str] | Any,
    recipe: str | Recipe,
    data: str,
    out_dir: str | os.PathLike[str],
    epochs: int = 2,
    batch_size: int = 64,
    overwrite: bool = False,
    unsafe: bool = False,
    check: bool = True,
) -> OptimizeReport:
    """Run `recipe` on `model`, fine-tuning on `data`; write model.tflite, optimized.keras, reports.

    With `check` (the default) a `.tflite` that misses its precision's numeric tolerance against
    the optimized Keras model is refused (ValidationError); without it, it is kept and the
    report holds the measured difference.
    """
    if epochs < 0 or batch_size < 1:
        raise InputError("epochs must be >= 0 and batch_size >= 1")
    rec = recipe if isinstance(recipe, Recipe) else load_recipe(recipe)
    meta = rec.stages[-1].metadata(_recipe_folder(rec))  # type: ignore[union-attr]
    if meta.labels is not None:
        read_labels(meta.labels)  # a bad label file fails before any training
    out = check_output_dir(out_dir, OUTPUTS, overwrite)
    loaded = load(model, unsafe=unsafe)
    if loaded.kind not in (SourceKind.TF_KERAS, SourceKind.KERAS3):
        raise InputError(
            f"optimize needs a Keras model (.keras, .h5 or in memory), not a {loaded.kind}"
        )
    world = World.TF_KERAS if loaded.kind is SourceKind.TF_KERAS else World.KERAS3
    train = _data_for(rec, data, loaded.inputs)
    needs_teacher = any(s.kind is StageKind.DISTILL for s in rec.stages)
    ctx = Context(
        model=loaded.model,
        world=world,
        teacher=copy_model(loaded.model, world) if needs_teacher else None,
        data=train,
        epochs=epochs,
        batch_size=batch_size,
        from_logits=not outputs_are_probabilities(loaded.model, train.val),
    )
    stages = [_snapshot(ctx, "original", {}, 0.0)]
    for stage in rec.stages[:-1]:
        started = time.perf_counter()
        did = _runner(ctx, stage.kind)(ctx, stage)
        stages.append(_snapshot(ctx, stage.kind.value, did, time.perf_counter() - started))

    final: ConvertStage = rec.stages[-1]  # type: ignore[assignment]
    with staged_dir(out, OUTPUTS) as staging:
        report = _convert_and_report(ctx, rec, final, model, loaded.inputs, train, stages, out,
                                     staging, check)  # fmt: skip
    return report


def _recipe_folder(rec: Recipe) -> Path | None:
    """The folder of a recipe read from a file: its relative label paths start there."""
    return Path(rec.source).parent if rec.source and Path(rec.source).is_file() else None


def _convert_and_report(
    ctx: Context,
    rec: Recipe,
    final: ConvertStage,
    model: Any,
    inputs: tuple[TensorSpec, ...],
    train: TrainData,
    stages: list[dict[str, Any]],
    out: Path,
    staging: Path,
    check: bool,
) -> OptimizeReport:
    """The last stage: convert, measure, save; every file goes to `staging` (moved to `out` by
    the caller only when all of them were written)."""
    calibration = calibration_sample(train.train, final.num_calibration, train.ordered)
    held_out = train.val.take(256)
    tflite_path = staging / "model.tflite"
    conv = convert(
        ctx.model,
        tflite_path,
        final.precision,
        calibration=calibration,
        int8_io=final.int8_io,
        quantizer=final.quantizer,
        keep_float=final.keep_float,
        metadata=final.metadata(_recipe_folder(rec)) or None,
        seq_len=_seq_len(inputs, train.val),
        overwrite=True,
        check=check,
        check_data=held_out,
    )
    outputs = run_tflite(str(tflite_path), train.val)
    conv_check: dict[str, Any] | None = conv.check
    if not check:
        reference = run_reference(from_keras(ctx.model), held_out)
        conv_check = compare_outputs(reference, run_tflite(str(tflite_path), held_out)).to_dict()
        ctx.notes.append("numeric check not enforced (--no-check); see tflite.check")
    val_acc = (
        None
        if train.val.y is None
        else round(float(np.mean(next(iter(outputs.values())).argmax(-1) == train.val.y)), 4)
    )
    timing = bench(tflite_path, BenchSettings(threads=(1,), min_seconds=0.5))
    runtime = None
    if rec.runtime:  # the recipe names how its file runs best (`tfopt tune` writes one)
        rt = {"threads": 1, "xnnpack": True, "accelerator": "cpu", "cpu_options": [],
              **rec.runtime}  # fmt: skip
        settings = BenchSettings(threads=(rt["threads"],), xnnpack=rt["xnnpack"],
                                 accelerators=(rt["accelerator"],), min_seconds=0.5,
                                 cpu_options=tuple(rt["cpu_options"]))  # fmt: skip
        runtime = {**rt, "p50_ms": round(bench(tflite_path, settings).results[0]["latency_us"]
                                         ["p50"] / 1000, 4)}
    notes = list(ctx.notes) + [n for s in stages for n in s["did"].get("notes", [])]
    saved = _save_keras(
        ctx.plain_model or ctx.model, staging / "optimized.keras", train.val.take(8)
    )
    if saved:
        notes.append(f"optimized.keras not written: {saved}")
    report = OptimizeReport(
        recipe=rec.to_dict(),
        model=str(model) if isinstance(model, (str, os.PathLike)) else type(model).__name__,
        world=ctx.world.value,
        stages=stages,
        tflite={
            "path": str(out / "model.tflite"),
            "precision": conv.precision,
            "size_bytes": conv.size_bytes,
            "gzip_bytes": conv.gzip_bytes,
            "val_accuracy": val_acc,
            "val_samples": len(train.val),
            "p50_ms_1t": round(timing.results[0]["latency_us"]["p50"] / 1000, 4),
            "runtime": runtime,
            "check": conv_check,
            "metadata": conv.metadata,
            "weights": weight_stats(tflite_path),
        },
        layers=kernel_stats(ctx.model),
        notes=notes,
        out_dir=str(out),
    )
    write_optimize_report(staging, report)  # report.json, report.md
    return report
