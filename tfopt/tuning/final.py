"""After the search: re-time the front runners alone, pick the winner, time the presets beside it.

Trial timings are taken while other trials convert on the same machine, so they rank but do not
decide. The few fastest files that meet the gate are timed again under every runtime setting once every
trial has ended, interleaved (A B C A B C ...) so that drift hits all alike, and the winner is the
lowest median (within 2% of it, the smaller file).
The presets (each precision `tfopt convert` ships at its defaults, and each shipped recipe, that
meets the same gate) are timed the same way at each thread count, beside the winner's file.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tfopt.core import CALIBRATED
from tfopt.errors import TfoptError, first_line
from tfopt.evaluation import Runtime

FRONT_RUNNERS = 3  # files; each is re-timed under every runtime setting
TIE = 0.02  # re-timed medians this close count as the same speed


@dataclass(frozen=True)
class Retiming:
    """How the front runners and presets are timed again: interleaved rounds, each cell's length."""

    repeats: int = 3
    min_seconds: float = 0.5


def _p50_ms(path: Path, rt: Runtime, target: Any, min_seconds: float) -> float:
    from tfopt.timing import bench, headline_us

    return headline_us(bench(path, rt.settings(min_seconds), target).results[0]) / 1000


def interleaved(cells: list[tuple[Path, Runtime]], target: Any,
                timing: Retiming) -> list[dict[str, Any]]:  # fmt: skip
    """Median p50 of each (file, runtime) over `timing.repeats` interleaved rounds."""
    times: list[list[float]] = [[] for _ in cells]
    errors: list[str | None] = [None for _ in cells]
    for _ in range(timing.repeats):
        for i, (path, rt) in enumerate(cells):
            if errors[i] is None:
                try:
                    times[i].append(_p50_ms(path, rt, target, timing.min_seconds))
                except TfoptError as exc:
                    errors[i] = first_line(exc.message)
                except Exception as exc:  # noqa: BLE001 - a target that breaks mid-way
                    errors[i] = f"{type(exc).__name__}: {first_line(exc)}"
    return [
        {"p50_ms": round(statistics.median(t), 4), "repeat_p50_ms": [round(x, 4) for x in t]}
        if t else {"p50_ms": None, "error": e}
        for t, e in zip(times, errors, strict=True)
    ]


def front_runners(rows: list[dict[str, Any]], objective: str) -> list[tuple[dict[str, Any], Runtime]]:
    """The files that meet the gate and come first by trial timing (or are the smallest), each
    under every runtime setting it ran with: a trial's timing of several threads suffers most
    from the conversions running beside it, so only the quiet re-timing may rule them out."""
    passing = [r for r in rows if r.get("passed") and r["status"] == "ok" and r.get("p50_ms")]
    if objective == "size" and passing:
        smallest = min(r["size_bytes"] for r in passing)
        passing = [r for r in passing if r["size_bytes"] == smallest]
    passing.sort(key=lambda r: r["p50_ms"])
    return [(r, Runtime.from_dict(t["runtime"])) for r in passing[:FRONT_RUNNERS]
            for t in r["timings"] if t["status"] == "ok"]  # fmt: skip


def _plain(rt: dict[str, Any]) -> int:
    """How many settings differ from the default run (1 thread aside): fewer is simpler to ship."""
    return (not rt["xnnpack"]) + bool(rt.get("cpu_options")) + (rt["accelerator"] != "cpu")


def pick(timed: list[dict[str, Any]], sizes: dict[str, int]) -> dict[str, Any]:
    """The lowest median; within `TIE` of it, the smaller file, then the plainer runtime (the
    same speed, less to ship and to configure)."""
    fastest = min(f["p50_ms"] for f in timed)
    close = [f for f in timed if f["p50_ms"] <= fastest * (1 + TIE)]
    return min(close, key=lambda f: (sizes[f["key"]], _plain(f["runtime"]), f["p50_ms"]))


def is_preset(row: dict[str, Any]) -> bool:
    """What a user gets without tfopt tune: a shipped precision at its defaults, or a shipped
    recipe as it stands."""
    v = row["variant"]
    if v["recipe"]:
        return True
    if v["keep_float"] or row.get("phase") == "selective-float":
        return False
    return v["precision"] not in CALIBRATED or v["num_calibration"] == 100


def presets(rows: list[dict[str, Any]], winner: dict[str, Any], won: Runtime, files: Path,
            target: Any, threads: tuple[int, ...], timing: Retiming) -> list[dict[str, Any]]:  # fmt: skip
    """Each preset that meets the gate beside the winner's file (run as `won`, keeping its XNNPACK
    setting and flags), at each thread count."""
    chosen = [r for r in rows if r.get("passed") and r["status"] == "ok" and is_preset(r)]
    chosen = [winner] + [r for r in chosen if r["key"] != winner["key"]]
    cells = [(files / f"{r['key']}.tflite",
              Runtime(t, won.xnnpack, "cpu", won.cpu_options) if i == 0 else Runtime(t))
             for i, r in enumerate(chosen) for t in threads]  # fmt: skip
    timed = interleaved(cells, target, timing)
    out = []
    for i, r in enumerate(chosen):
        p50 = {str(t): timed[i * len(threads) + j]["p50_ms"] for j, t in enumerate(threads)}
        out.append({"key": r["key"], "label": r["variant"]["label"], "winner": i == 0,
                    "runtime": cells[i * len(threads)][1].label,
                    "size_bytes": r["size_bytes"], "quality": r["quality"],
                    # By thread count; every other p50_ms of tune is one number (ms), so the
                    # dict has its own name, and p50_ms stays as the old key.
                    "p50_ms_by_threads": p50, "p50_ms": p50})
    base = out[0]["p50_ms_by_threads"]
    for entry in out:
        entry["ratio_to_winner"] = {
            t: round(v / base[t], 3) if v and base[t] else None
            for t, v in entry["p50_ms_by_threads"].items()
        }
    return out
