"""The search's three phases (see `tfopt.tuning`), each one Ray Tune experiment over the variants
the earlier phases call for; every trial's row lands in `Found` as it ends.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from tfopt.tuning import engine
from tfopt.tuning import space as sp
from tfopt.tuning.space import Space, Variant
from tfopt.tuning.trial import Job

# Schemes whose misses may earn a float island (the LiteRT quantizer re-quantizes them).
ISLAND_SCHEMES = ("int8", "int16x8", "dynamic")


@dataclass
class Found:
    """What the search has found so far: a row per trial (by key), sensitivity passes, notes."""

    rows: dict[str, dict[str, Any]] = field(default_factory=dict)
    sensitivity: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Search:
    """One search's settings and the place its phases run."""

    space: Space
    job: Job
    phases: engine.Phases
    objective: str = "latency"
    budget: int | None = None
    deadline: float | None = None  # time.perf_counter() after which no phase starts

    def time_left(self) -> float | None:
        return None if self.deadline is None else self.deadline - time.perf_counter()

    def spent(self, found: Found) -> bool:
        """The time or the trial budget is used up."""
        left = self.time_left()
        return (left is not None and left <= 0) or (
            self.budget is not None and len(found.rows) >= self.budget
        )


def run(search: Search, found: Found) -> None:
    """Phase 1 (converter precisions, recipes), 2 (the LiteRT quantizer on the float file) and
    3 (op groups kept in float for the fastest schemes that miss the gate)."""
    space, n_cal = search.space, len(search.job.calibration)
    _phase(search, found, "convert", sp.base_variants(space, n_cal) + sp.recipe_variants(space))
    float_key = Variant("float32").key
    float_file = search.phases.state / "files" / f"{float_key}.tflite"
    if float_key not in found.rows or not float_file.is_file():
        if space.aeq_precisions or space.selective_float:
            found.notes.append("no float32 file: the LiteRT quantizer and selective float were "
                               "skipped")  # fmt: skip
        return
    float_model = float_file.read_bytes()
    _phase(search, found, "quantizer", sp.quantizer_variants(space, n_cal), float_model)
    if not space.selective_float:
        return
    ladders: list[Variant] = []
    for scheme, n in missed_schemes(found.rows, search.objective)[:2]:
        if search.spent(found):
            found.notes.append(f"--time/--budget reached: no sensitivity pass for {scheme}")
            break
        ranked = _ranked(search, scheme, n, float_model)
        if "error" in ranked:
            found.notes.append(f"sensitivity pass for {scheme} failed: {ranked['error']}")
            continue
        found.sensitivity.append({k: v for k, v in ranked.items() if k != "groups"})
        ladders += sp.ladder(Variant(scheme, "aeq", n), ranked["groups"])
    _phase(search, found, "selective-float", ladders, float_model)


def _phase(search: Search, found: Found, name: str, variants: list[Variant],
           float_model: bytes | None = None) -> None:  # fmt: skip
    """One phase, cut to the trial budget and skipped past the deadline."""
    budget, rows = search.budget, found.rows
    if budget is not None and len(variants) > budget - len(rows):
        found.notes.append(f"--budget {budget}: {len(variants) - max(0, budget - len(rows))} "
                           f"trial(s) of phase '{name}' not run")  # fmt: skip
        variants = variants[: max(0, budget - len(rows))]
    left = search.time_left()
    if not variants or (left is not None and left <= 0):
        if variants:
            found.notes.append(f"--time reached: phase '{name}' not run")
        return
    for row in engine.run_phase(name, variants, search.phases, float_model, left):
        rows[row["key"]] = row


def missed_schemes(rows: dict[str, dict[str, Any]], objective: str) -> list[tuple[str, int]]:
    """Worth a float island: each quantized converter scheme (precision, calibration size) that
    misses the gate but beats every file that meets it on the objective, best first."""
    measure = "size_bytes" if objective == "size" else "p50_ms"
    passing = [r[measure] for r in rows.values() if r.get("passed") and r.get(measure)]
    best = min(passing, default=float("inf"))
    missed = sorted(
        (r for r in rows.values()
         if r["status"] == "ok" and not r.get("passed") and r.get(measure, 1e18) < best
         and r["variant"]["precision"] in ISLAND_SCHEMES and not r["variant"]["recipe"]),
        key=lambda r: r[measure],
    )  # fmt: skip
    schemes: list[tuple[str, int]] = []
    for r in missed:
        scheme = (r["variant"]["precision"], r["variant"]["num_calibration"])
        if scheme[0] not in [s for s, _ in schemes]:
            schemes.append(scheme)
    return schemes


def _ranked(search: Search, scheme: str, n: int, float_model: bytes) -> dict[str, Any]:
    """The sensitivity pass of `scheme` calibrated on `n` samples, run once as a Ray task and
    kept in the state folder (a failure too: --resume does not retry it)."""
    import ray

    from tfopt.errors import first_line
    from tfopt.report import write_json
    from tfopt.tuning import sensitivity as sens

    cached = search.phases.state / f"sensitivity-{scheme}-{n}.json"
    if cached.is_file():
        ranked: dict[str, Any] = json.loads(cached.read_text())
        return ranked
    task = ray.remote(num_cpus=1)(sens.rank)
    job = search.job
    try:
        ranked = ray.get(task.remote(float_model, scheme, job.calibration.take(n), job.heldout))
    except Exception as exc:  # noqa: BLE001 - the quantizer cannot take this model
        ranked = {"scheme": scheme, "error": first_line(exc, 240)}
    write_json(cached, ranked)
    return ranked
