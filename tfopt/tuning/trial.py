"""One trial, run by a Ray worker on any node: build a `.tflite`, measure its quality, have it timed.

Everything a trial needs travels in a `Job` (sent once through Ray's object store, so a node needs
no copy of the data): the source model's path, calibration and held-out data, the source model's
outputs on the held-out data, the goals and the runtime settings. Timing goes to the `Timer` of the
target (see `engine.py`), which runs one measurement at a time and keeps the file on the driver's
machine. A trial never raises: a converter error, a failed check or a runtime crash becomes the
trial's status and one-line reason, and the search goes on.
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from tfopt.conversion.request import Quantizer
from tfopt.data import Dataset
from tfopt.errors import first_line
from tfopt.evaluation import Evaluation, Runtime, Timer, Timing
from tfopt.tuning.goal import Goal, quality
from tfopt.tuning.space import Variant


@dataclass(frozen=True)
class Job:
    """What every trial of one search shares."""

    model: str
    calibration: Dataset
    heldout: Dataset
    reference: dict[str, np.ndarray]
    goals: tuple[Goal, ...]
    runtimes: tuple[Runtime, ...]
    embedding: dict[str, Any] | None = None
    seq_len: int | None = None
    unsafe: bool = False
    imports: tuple[str, ...] = ()
    train_data: str | None = None  # an .npz with x_train/y_train/x_val/y_val, for recipes
    epochs: int = 1
    batch_size: int = 64


def build(variant: Variant, job: Job, float_model: bytes | None, work: Path) -> bytes:
    """The variant's flatbuffer: a recipe's training then conversion, the LiteRT quantizer on the
    float file of this search, or a conversion of the source model."""
    out = work / "model.tflite"
    if variant.recipe:
        from tfopt.optimization import OptimizeOptions, optimize

        assert job.train_data is not None
        options = OptimizeOptions(epochs=job.epochs, batch_size=job.batch_size, overwrite=True,
                                  unsafe=job.unsafe, check=False)  # fmt: skip
        optimize(job.model, variant.recipe_object(None), job.train_data, work / "recipe", options)
        return (work / "recipe" / "model.tflite").read_bytes()
    if variant.quantizer is Quantizer.AEQ and float_model is not None:
        from tfopt.conversion.guards import aeq

        calibration = job.calibration.take(variant.num_calibration)
        return aeq(float_model, variant.precision, variant.keep_float, calibration)
    from tfopt.conversion import convert_request

    request = variant.convert_request(job.calibration, seq_len=job.seq_len, unsafe=job.unsafe,
                                      imports=job.imports, overwrite=True, check=False)  # fmt: skip
    convert_request(job.model, out, request)
    return out.read_bytes()


def ray_timer(actor: Any, key: str) -> Timer:
    """An `evaluation.Timer` that times through the target's `Timer` actor (engine.py), which
    keeps the file as STATE/files/KEY.tflite on the driver's machine."""
    import ray

    def time_all(path: Path, runtimes: tuple[Runtime, ...]) -> tuple[Timing, ...]:
        return tuple(ray.get(actor.measure.remote(key, path.read_bytes(), runtimes)))

    return time_all


def judge(path: Path, job: Job, timer: Timer) -> tuple[Evaluation, dict[str, float | None]]:
    """The file measured on the spine against the source model on the held-out data, and its
    quality by the goals' measures. A file that misses the gate is timed once (for the plot);
    one that meets it under every runtime setting."""
    from tfopt.evaluation import Candidate, evaluate
    from tfopt.validate import run_tflite

    judged = evaluate(Candidate(path), job.reference, job.heldout, ())
    # An encoder's sentence embeddings need its outputs (a second pass over the held-out data).
    outputs = run_tflite(str(path), job.heldout) if job.embedding is not None else None
    measured = quality(judged, job.embedding, job.reference, outputs)
    runtimes = job.runtimes if all(g.met(measured) for g in job.goals) else job.runtimes[:1]
    return replace(judged, timings=timer(path, runtimes)), measured


def _timing_entry(t: Timing) -> dict[str, Any]:
    """A timing as a trial row lists it (`status`, and `reason` where it failed)."""
    if t.error is not None:
        return {"runtime": t.runtime.to_dict(), "status": "failed", "reason": t.error}
    return {"runtime": t.runtime.to_dict(), "status": "ok", "p50_ms": t.p50_ms, "p90_ms": t.p90_ms}


def run(
    config: dict[str, Any], job: Job, timer: Any, float_model: bytes | None = None
) -> dict[str, Any]:
    """The Ray Tune function trainable: one variant, its row as the trial's final result."""
    import ray

    variant = Variant.from_dict(config["variant"])
    row: dict[str, Any] = {
        "key": variant.key,
        "variant": variant.to_dict(),
        "node": ray.get_runtime_context().get_node_id(),
        "pid": os.getpid(),
        "status": "ok",
    }
    started = time.perf_counter()
    try:
        with tempfile.TemporaryDirectory(prefix="tfopt-trial-") as tmp:
            flat = build(variant, job, float_model, Path(tmp))
            row["build_s"] = round(time.perf_counter() - started, 2)
            path = Path(tmp) / "trial.tflite"
            path.write_bytes(flat)
            judged, measured = judge(path, job, ray_timer(timer, variant.key))
        shared = judged.row()  # the spine's keys, as demo and optimize write them
        row.update(size_bytes=judged.size_bytes, gzip_bytes=judged.gzip_bytes, quality=measured,
                   passed=all(g.met(measured) for g in job.goals),
                   p50_ms_by_runtime=shared["p50_ms_by_runtime"],
                   p90_ms_by_runtime=shared["p90_ms_by_runtime"],
                   timings=[_timing_entry(t) for t in judged.timings])  # fmt: skip
        ok = [t for t in judged.timings if t.error is None]
        if not ok:
            reason = row["timings"][0]["reason"] if row["timings"] else "no runtime setting to time"
            row.update(status="failed", reason=f"timing: {reason}")
        else:
            best = min(ok, key=lambda t: t.p50_ms or 0.0)
            row["p50_ms"], row["runtime"] = best.p50_ms, best.runtime.to_dict()
    except Exception as exc:  # noqa: BLE001 - any failure is the trial's result, not the search's
        row.update(status="failed", reason=f"{type(exc).__name__}: {first_line(exc, 240)}")
    row["seconds"] = round(time.perf_counter() - started, 2)
    return {"row": row}
