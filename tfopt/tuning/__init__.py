"""`tfopt tune`: the fastest (or smallest) `.tflite` that meets a quality gate, on the target,
searched on Ray Tune.

The search runs in phases, each one Ray Tune experiment over the variants the earlier phases
call for:
1. convert: every converter precision (calibrated ones at each calibration size), and each
   shipped recipe when DATA has a training split;
2. quantizer: the LiteRT quantizer's schemes on phase 1's float file;
3. selective float: for the fastest quantized schemes that miss the gate, a per-op sensitivity
   pass ranks op groups and the 1, 2, 4, ... most sensitive stay in float.
Every trial is judged on the real file through the interpreter against the source model on
held-out data, and timed on the target under each runtime setting (threads, XNNPACK, the
accelerator). Then the front runners are re-timed alone and the winner is written with a recipe
that reproduces it (`tfopt optimize --recipe best.yaml`), every trial, a report and a plot.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from tfopt.errors import InputError, TfoptError, note
from tfopt.fsutil import check_output_dir, staged_dir
from tfopt.tuning.goal import Goal, closeness, measurable, parse_goal
from tfopt.tuning.space import Runtime, Space, Variant

OUTPUTS = ["best.tflite", "best.yaml", "tune.json", "tune.md", "pareto.png"]
OBJECTIVES = ("latency", "size")

__all__ = ["OUTPUTS", "Space", "TuneResult", "tune"]


class NoWinner(TfoptError):
    """No variant meets the goal; the message names the best quality reached."""


class Interrupted(TfoptError):
    """The search was stopped (Ctrl-C, SIGTERM); finished trials are kept for --resume."""


@dataclass(frozen=True)
class TuneResult:
    model: str
    goals: list[str]
    objective: str
    target: str
    cluster: dict[str, Any]
    space: dict[str, Any]
    trials: list[dict[str, Any]]
    sensitivity: list[dict[str, Any]]
    final: list[dict[str, Any]]
    winner: dict[str, Any] | None
    presets: list[dict[str, Any]]
    seconds: float
    trials_run: int
    trials_resumed: int
    nodes_used: int
    out_dir: str
    notes: list[str]

    @property
    def trials_per_hour(self) -> float:
        return round(self.trials_run / self.seconds * 3600, 1) if self.seconds else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "trials_per_hour": self.trials_per_hour}


@contextlib.contextmanager
def _interruptible() -> Iterator[None]:
    """SIGTERM acts as Ctrl-C while the search runs, so both end in the same clean stop."""

    def stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _time_limit(text: str | float | None) -> float | None:
    if text is None:
        return None
    units = {"s": 1, "m": 60, "h": 3600}
    text = str(text).strip()
    try:
        seconds = float(text[:-1]) * units[text[-1]] if text[-1:] in units else float(text)
    except ValueError:
        seconds = -1.0
    if not seconds > 0:
        raise InputError(f"--time {text}: write seconds, or a number with s, m or h (30m)")
    return seconds


def tune(
    model: str | os.PathLike[str],
    data: str | os.PathLike[str],
    goal: str | Sequence[str],
    out_dir: str | os.PathLike[str],
    objective: str = "latency",
    target: str = "local",
    space: Space | None = None,
    budget: int | None = None,
    time_limit: str | float | None = None,
    ray_address: str | None = None,
    ray_cpus: int | None = None,
    resume: bool = False,
    overwrite: bool = False,
    unsafe: bool = False,
    imports: tuple[str, ...] = (),
    epochs: int = 1,
    seq_len: int | None = None,
    pooling: str = "mean",
    eval_samples: int = 500,
    min_seconds: float = 0.3,
    final_repeats: int = 3,
    compare_presets: bool = True,
    target_options: dict[str, Any] | None = None,
    on_progress: Callable[[dict[str, Any]], None] | None = None,
) -> TuneResult:
    """Search for the `.tflite` of `model` that meets every `goal` on `data` and is fastest on
    `target` (`objective="size"`: smallest); write OUT/best.tflite, best.yaml, tune.json, tune.md
    and pareto.png together.

    Raises:
        InputError: a malformed goal, option or path; ClusterError: Ray unreachable;
        NoWinner: no variant meets the goal (tune.json, tune.md and pareto.png are still written);
        Interrupted: stopped by Ctrl-C or SIGTERM (rerun with `resume=True`).
    """
    from tfopt.tuning import engine, prepare

    goals = [parse_goal(g) for g in ([goal] if isinstance(goal, str) else goal)]
    if not goals:
        raise InputError("give at least one --goal, e.g. cosine>=0.995")
    if objective not in OBJECTIVES:
        raise InputError(f"--objective {objective}: choose {' or '.join(OBJECTIVES)}")
    if budget is not None and budget < 1:
        raise InputError("--budget must be at least 1 trial")
    limit = _time_limit(time_limit)
    model_path = prepare.model_arg(model)
    space = space or Space()
    out = check_output_dir(out_dir, OUTPUTS, overwrite or resume)
    started = time.perf_counter()
    deadline = started + limit if limit else None

    from tfopt.loading import SourceKind, load
    from tfopt.validate import run_reference

    loaded = load(model_path, unsafe=unsafe, imports=imports)
    if loaded.kind is SourceKind.TFLITE:
        raise InputError(f"{model_path} is a .tflite file; tune starts from its source model")
    parts = prepare.split(str(data), loaded, eval_samples, max(space.calibration_sizes))
    keras = loaded.kind in (SourceKind.TF_KERAS, SourceKind.KERAS3)
    if parts.train_data is None or not keras:
        space = replace(space, recipes=())
    reference = run_reference(loaded, parts.heldout)
    embedding = prepare.embedding_mode(loaded, parts.heldout, reference, pooling)
    from tfopt.tuning.goal import quality

    reachable = quality(reference, reference, parts.heldout.y, embedding)
    measurable(goals, parts.heldout.y is not None, embedding is not None, reachable)
    runtimes = tuple(space.runtimes())
    settings = {"goals": [str(g) for g in goals], "target": target, "space": asdict(space),
                "seq_len": seq_len, "pooling": pooling, "eval_samples": eval_samples,
                "epochs": epochs, "min_seconds": min_seconds}  # fmt: skip
    fp = prepare.fingerprint(model_path, str(data), settings)
    state = prepare.state_dir(out, fp, resume, overwrite)
    del loaded  # trials load their own copy

    from tfopt.tuning.trial import Job

    job = Job(model_path, parts.calibration, parts.heldout, reference, tuple(goals), runtimes,
              embedding, seq_len, unsafe, tuple(imports), parts.train_data, epochs)  # fmt: skip
    notes: list[str] = []
    rows: dict[str, dict[str, Any]] = {}
    sensitivity: list[dict[str, Any]] = []
    try:
        cluster = engine.connect(ray_address, ray_cpus)
        # After ray.init, which installs a SIGTERM handler of its own that kills the driver.
        with _interruptible():
            try:
                import ray

                timer = engine.timer(state, cluster["driver_node"], target,
                                     target_options or {}, min_seconds, warmup=3)  # fmt: skip
                job_ref = ray.put(job)
                _search(space, job, job_ref, timer, state, rows, sensitivity, budget, deadline,
                        notes, objective, on_progress)  # fmt: skip
            finally:
                engine.shutdown()
    except KeyboardInterrupt:
        done = len(engine.Ledger(state).rows())
        raise Interrupted(f"interrupted after {done} finished trials; rerun with --resume "
                          "to continue without repeating them") from None  # fmt: skip
    trial_rows = list(rows.values())
    fresh = [r for r in trial_rows if not r.get("resumed")]
    result = dict(
        model=model_path, goals=[str(g) for g in goals], objective=objective, target=target,
        cluster=cluster, space={**asdict(space), "runtimes": [r.to_dict() for r in runtimes]},
        trials=trial_rows, sensitivity=sensitivity, seconds=0.0,
        trials_run=len(fresh), trials_resumed=len(trial_rows) - len(fresh),
        nodes_used=len({r["node"] for r in fresh if r.get("node")}), out_dir=str(out), notes=notes,
    )  # fmt: skip
    try:
        with _interruptible():
            return _finish(result, goals, state, out, target, target_options or {}, space,
                           objective, final_repeats, compare_presets, max(min_seconds, 0.5),
                           started)  # fmt: skip
    except KeyboardInterrupt:
        raise Interrupted("interrupted while re-timing the front runners; rerun with --resume "
                          "(every trial is kept)") from None  # fmt: skip


def _search(space: Space, job: Any, job_ref: Any, timer: Any, state: Path,
            rows: dict[str, dict[str, Any]], sensitivity: list[dict[str, Any]],
            budget: int | None, deadline: float | None, notes: list[str], objective: str,
            on_progress: Callable[[dict[str, Any]], None] | None) -> None:  # fmt: skip
    """The three phases (module docstring); `rows` fills as trials end."""
    import ray

    from tfopt.tuning import engine
    from tfopt.tuning import sensitivity as sens
    from tfopt.tuning import space as sp

    ledger = engine.Ledger(state)
    n_cal = len(job.calibration)

    def phase(name: str, variants: list[Variant], float_model: bytes | None = None) -> None:
        if budget is not None and len(variants) > budget - len(rows):
            notes.append(f"--budget {budget}: {len(variants) - max(0, budget - len(rows))} "
                         f"trial(s) of phase '{name}' not run")  # fmt: skip
            variants = variants[: max(0, budget - len(rows))]
        left = None if deadline is None else deadline - time.perf_counter()
        if not variants or (left is not None and left <= 0):
            if variants:
                notes.append(f"--time reached: phase '{name}' not run")
            return
        for row in engine.run_phase(name, variants, job_ref, timer, ledger, state, float_model,
                                    left, on_progress):  # fmt: skip
            rows[row["key"]] = row

    phase("convert", sp.base_variants(space, n_cal) + sp.recipe_variants(space))
    float_key = Variant("float32").key
    float_file = state / "files" / f"{float_key}.tflite"
    if float_key not in rows or not float_file.is_file():
        if space.aeq_precisions or space.selective_float:
            notes.append("no float32 file: the LiteRT quantizer and selective float were skipped")
        return
    float_model = float_file.read_bytes()
    phase("quantizer", sp.quantizer_variants(space, n_cal), float_model)
    if not space.selective_float:
        return
    # Worth a float island: a quantized scheme that misses the gate but beats every file that
    # meets it on the objective.
    measure = "size_bytes" if objective == "size" else "p50_ms"
    passing = [r[measure] for r in rows.values() if r.get("passed") and r.get(measure)]
    best = min(passing, default=float("inf"))
    missed = sorted(
        (r for r in rows.values()
         if r["status"] == "ok" and not r.get("passed") and r.get(measure, 1e18) < best
         and r["variant"]["precision"] in ("int8", "int16x8", "dynamic")
         and not r["variant"]["recipe"]),
        key=lambda r: r[measure],
    )  # fmt: skip
    schemes: list[tuple[str, int]] = []
    for r in missed:
        scheme = (r["variant"]["precision"], r["variant"]["num_calibration"])
        if scheme[0] not in [s for s, _ in schemes]:
            schemes.append(scheme)
    import json

    from tfopt.errors import first_line
    from tfopt.report import write_json

    ladders: list[Variant] = []
    for scheme, n in schemes[:2]:
        if (deadline is not None and time.perf_counter() >= deadline) or (
            budget is not None and len(rows) >= budget
        ):
            notes.append(f"--time/--budget reached: no sensitivity pass for {scheme}")
            break
        cached = state / f"sensitivity-{scheme}-{n}.json"
        if cached.is_file():
            ranked = json.loads(cached.read_text())
        else:
            task = ray.remote(num_cpus=1)(sens.rank)
            try:
                ranked = ray.get(task.remote(float_model, scheme, job.calibration.take(n),
                                             job.heldout))  # fmt: skip
            except Exception as exc:  # noqa: BLE001 - the quantizer cannot take this model
                ranked = {"scheme": scheme, "error": first_line(exc, 240)}
            write_json(cached, ranked)  # a failure is kept too: --resume does not retry it
        if "error" in ranked:
            notes.append(f"sensitivity pass for {scheme} failed: {ranked['error']}")
            continue
        sensitivity.append({k: v for k, v in ranked.items() if k != "groups"})
        ladders += sp.ladder(Variant(scheme, "aeq", n), ranked["groups"])
    phase("selective-float", ladders, float_model)


def best_quality(rows: list[dict[str, Any]], goals: list[Goal]) -> tuple[dict[str, Any] | None, str]:
    """The trial closest to meeting the goals, and its measures named by the goals."""
    scored = [r for r in rows if r["status"] == "ok" and "quality" in r]
    if not scored:
        return None, "no trial produced a file"
    best = min(scored, key=lambda r: closeness(goals, r["quality"]))
    shown = ", ".join(f"{g.measure} {best['quality'].get(g.measure)}" for g in goals)
    return best, f"{shown} ({best['variant']['label']})"


def _finish(result: dict[str, Any], goals: list[Goal], state: Path, out: Path, target: str,
            target_options: dict[str, Any], space: Space, objective: str, repeats: int,
            compare_presets: bool, min_seconds: float, started: float) -> TuneResult:  # fmt: skip
    from tfopt import recipes, report
    from tfopt.targets import make_target, opened
    from tfopt.tuning import final

    rows = result["trials"]
    files = state / "files"
    winner = None
    fronts = final.front_runners(rows, objective)
    final_rows: list[dict[str, Any]] = []
    preset_rows: list[dict[str, Any]] = []
    if fronts:
        with opened(make_target(target, **target_options)) as where:
            timed = final.interleaved([(files / f"{r['key']}.tflite", rt) for r, rt in fronts],
                                      where, repeats, min_seconds)  # fmt: skip
            for (r, rt), t in zip(fronts, timed, strict=True):
                final_rows.append({"key": r["key"], "label": r["variant"]["label"],
                                   "runtime": rt.to_dict(), **t})  # fmt: skip
            ok = [f for f in final_rows if f["p50_ms"] is not None]
            if ok:
                pick = final.pick(ok, {r["key"]: r.get("size_bytes", 0) for r in rows})
                row = next(r for r in rows if r["key"] == pick["key"])
                winner = {**pick, "size_bytes": row["size_bytes"], "gzip_bytes": row["gzip_bytes"],
                          "quality": row["quality"], "variant": row["variant"]}  # fmt: skip
                if compare_presets:
                    threads = tuple(sorted({t for t in space.threads}))
                    preset_rows = final.presets(rows, row, pick["runtime"], files, where,
                                                threads, repeats, min_seconds)  # fmt: skip
    result.update(final=final_rows, winner=winner, presets=preset_rows,
                  seconds=round(time.perf_counter() - started, 1))
    tr = TuneResult(**result)
    doc = tr.to_dict()
    with staged_dir(out, OUTPUTS) as staging:  # no winner: an earlier best.* goes too
        if winner:
            shutil.copyfile(files / f"{winner['key']}.tflite", staging / "best.tflite")
            variant = Variant.from_dict(winner["variant"])
            recipes.dump(variant.recipe_object(Runtime(**winner["runtime"])), staging / "best.yaml")
        report.write_json(staging / "tune.json", doc)
        (staging / "tune.md").write_text(report.render(report.View.TUNE, doc, "markdown"))
        (staging / "pareto.png").write_bytes(report.render(report.View.TUNE, doc, "png"))
    if winner is None:
        _, reached = best_quality(rows, goals)
        gate = " and ".join(str(g) for g in goals)
        if any(r.get("passed") for r in rows):
            why = next((f.get("error") for f in final_rows if f.get("error")), None) or next(
                (r.get("reason") for r in rows if r.get("passed") and r.get("reason")), "no timing"
            )
            raise NoWinner(f"files meet {gate} but none could be timed on {target}: {why}; "
                           f"{out / 'tune.json'} lists every trial")  # fmt: skip
        raise NoWinner(f"no variant meets {gate}: the best reached {reached}; "
                       f"{out / 'tune.json'} lists every trial")  # fmt: skip
    note(f"winner {winner['label']} ({Runtime(**winner['runtime']).label}): "
         f"{winner['p50_ms']} ms p50")
    return tr
