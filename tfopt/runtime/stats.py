"""Statistics of a timing run and facts about the machine: percentiles, peak memory, CPU model
and library versions, and CPU pinning."""

from __future__ import annotations

import os
import platform
import resource
import statistics
import sys
from typing import Any

import numpy as np


def _percentile(sorted_values: list[float], p: float) -> float:
    k = (len(sorted_values) - 1) * p / 100.0
    lo = int(k)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (k - lo) * (sorted_values[hi] - sorted_values[lo])


def summarize(latencies_us: list[float]) -> dict[str, float]:
    """p50/p90/p99/mean/std/min/max of a list of microsecond latencies."""
    s = sorted(latencies_us)
    return {
        "p50": round(_percentile(s, 50), 2),
        "p90": round(_percentile(s, 90), 2),
        "p99": round(_percentile(s, 99), 2),
        "mean": round(statistics.fmean(s), 2),
        "std": round(statistics.pstdev(s), 2),
        "min": round(s[0], 2),
        "max": round(s[-1], 2),
    }


def peak_rss_mb() -> float:
    """Peak resident set size of this process (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (1024 * 1024 if sys.platform == "darwin" else 1024), 1)


def machine_info() -> dict[str, Any]:
    """CPU model, core count and library versions of the machine running the runtime."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith(("model name", "Hardware", "Model")):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        from importlib.metadata import version

        litert = version("ai-edge-litert")
    except Exception:  # noqa: BLE001 - a device may carry the runtime without metadata
        litert = "unknown"
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "arch": platform.machine(),
        "system": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "numpy": np.__version__,
        "ai_edge_litert": litert,
    }


def parse_cpus(cpus: str) -> list[int]:
    """'4,5,6,7' -> [4, 5, 6, 7]; the one parser of --pin (host, runtime and adb's taskset)."""
    try:
        wanted = sorted({int(c) for c in cpus.split(",") if c.strip()})
    except ValueError:
        wanted = []
    if not wanted or wanted[0] < 0:
        raise ValueError(f"--pin {cpus}: give CPU ids like 0 or 4,5,6,7")
    return wanted


def pin(cpus: str) -> list[int]:
    """Pin this process (and the runtime threads it starts) to the given CPU ids."""
    wanted = parse_cpus(cpus)
    if not hasattr(os, "sched_setaffinity"):
        raise ValueError("--pin needs Linux (sched_setaffinity)")
    allowed = sorted(os.sched_getaffinity(0))
    bad = [c for c in wanted if c not in allowed]
    if bad:
        raise ValueError(f"--pin {cpus}: CPUs available here are {allowed}")
    os.sched_setaffinity(0, wanted)
    return wanted
