"""After the last trial: re-time the front runners, pick the winner, write OUT together, or say
why there is no winner."""

from __future__ import annotations

import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tfopt.errors import note
from tfopt.evaluation import Runtime
from tfopt.fsutil import staged_dir
from tfopt.tuning.goal import Goal, closeness
from tfopt.tuning.prepare import Setup
from tfopt.tuning.request import TuneRequest
from tfopt.tuning.result import OUTPUTS, NoWinner, TuneResult
from tfopt.tuning.search import Found
from tfopt.tuning.space import Variant

FINAL_MIN_SECONDS = 0.5  # the re-timing runs at least this long per cell, whatever the trials ran


@dataclass
class Verdict:
    """The re-timed front runners, the winner among them and the presets timed beside it."""

    final: list[dict[str, Any]] = field(default_factory=list)
    winner: dict[str, Any] | None = None
    presets: list[dict[str, Any]] = field(default_factory=list)


def best_quality(rows: list[dict[str, Any]], goals: list[Goal]) -> tuple[dict[str, Any] | None, str]:
    """The trial closest to meeting the goals, and its measures named by the goals."""
    scored = [r for r in rows if r["status"] == "ok" and "quality" in r]
    if not scored:
        return None, "no trial produced a file"
    best = min(scored, key=lambda r: closeness(goals, r["quality"]))
    shown = ", ".join(f"{g.measure} {best['quality'].get(g.measure)}" for g in goals)
    return best, f"{shown} ({best['variant']['label']})"


def finish(request: TuneRequest, setup: Setup, found: Found, cluster: dict[str, Any]) -> TuneResult:
    """Re-time, pick, write OUT (best.tflite, best.yaml, tune.json, tune.md, pareto.png) and
    return the result; raises `NoWinner` (after writing the reports) when no file won."""
    rows = list(found.rows.values())
    fresh = [r for r in rows if not r.get("resumed")]
    verdict = _verdict(request, setup, rows)
    result = TuneResult(
        model=setup.model, goals=[str(g) for g in request.goals], objective=request.objective,
        target=request.target, cluster=cluster,
        space={**asdict(setup.space), "runtimes": [r.to_dict() for r in setup.runtimes]},
        trials=rows, sensitivity=found.sensitivity, final=verdict.final, winner=verdict.winner,
        presets=verdict.presets, seconds=round(time.perf_counter() - setup.started, 1),
        trials_run=len(fresh), trials_resumed=len(rows) - len(fresh),
        nodes_used=len({r["node"] for r in fresh if r.get("node")}), out_dir=str(setup.out),
        notes=found.notes,
    )  # fmt: skip
    _write(result, setup)
    winner = verdict.winner
    if winner is None:
        raise _no_winner(request, setup.out, rows, verdict.final)
    note(f"winner {winner['label']} ({Runtime.from_dict(winner['runtime']).label}): "
         f"{winner['p50_ms']} ms p50")  # fmt: skip
    return result


def _verdict(request: TuneRequest, setup: Setup, rows: list[dict[str, Any]]) -> Verdict:
    from tfopt.targets import make_target, opened
    from tfopt.tuning import final

    files = setup.state / "files"
    fronts = final.front_runners(rows, request.objective)
    verdict = Verdict()
    if not fronts:
        return verdict
    timing = final.Retiming(request.final_repeats, max(request.min_seconds, FINAL_MIN_SECONDS))
    with opened(make_target(request.target, **dict(request.target_options or {}))) as where:
        timed = final.interleaved([(files / f"{r['key']}.tflite", rt) for r, rt in fronts],
                                  where, timing)  # fmt: skip
        for (r, rt), t in zip(fronts, timed, strict=True):
            verdict.final.append({"key": r["key"], "label": r["variant"]["label"],
                                  "runtime": rt.to_dict(), **t})  # fmt: skip
        ok = [f for f in verdict.final if f["p50_ms"] is not None]
        if not ok:
            return verdict
        pick = final.pick(ok, {r["key"]: r.get("size_bytes", 0) for r in rows})
        row = next(r for r in rows if r["key"] == pick["key"])
        verdict.winner = {**pick, "size_bytes": row["size_bytes"], "gzip_bytes": row["gzip_bytes"],
                          "quality": row["quality"], "variant": row["variant"]}  # fmt: skip
        if request.compare_presets:
            threads = tuple(sorted(set(setup.space.threads)))
            verdict.presets = final.presets(rows, row, Runtime.from_dict(pick["runtime"]), files, where,
                                            threads, timing)  # fmt: skip
    return verdict


def _write(result: TuneResult, setup: Setup) -> None:
    """OUT's files, all together (no winner: an earlier best.* goes too)."""
    from tfopt import recipes, report

    winner, files = result.winner, setup.state / "files"
    doc = result.to_dict()
    with staged_dir(setup.out, OUTPUTS) as staging:
        if winner:
            shutil.copyfile(files / f"{winner['key']}.tflite", staging / "best.tflite")
            variant = Variant.from_dict(winner["variant"])
            recipes.dump(variant.recipe_object(Runtime.from_dict(winner["runtime"])), staging / "best.yaml")
        report.write_json(staging / "tune.json", doc)
        (staging / "tune.md").write_text(report.render(report.View.TUNE, doc, "markdown"))
        (staging / "pareto.png").write_bytes(report.render(report.View.TUNE, doc, "png"))


def _no_winner(request: TuneRequest, out: Path, rows: list[dict[str, Any]],
               final_rows: list[dict[str, Any]]) -> NoWinner:  # fmt: skip
    goals = list(request.goals)
    gate = " and ".join(str(g) for g in goals)
    if any(r.get("passed") for r in rows):
        why = next((f.get("error") for f in final_rows if f.get("error")), None) or next(
            (r.get("reason") for r in rows if r.get("passed") and r.get("reason")), "no timing"
        )
        return NoWinner(f"files meet {gate} but none could be timed on {request.target}: {why}; "
                        f"{out / 'tune.json'} lists every trial")  # fmt: skip
    _, reached = best_quality(rows, goals)
    return NoWinner(f"no variant meets {gate}: the best reached {reached}; "
                    f"{out / 'tune.json'} lists every trial")  # fmt: skip
