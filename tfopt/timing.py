"""Time stage: run the single-file harness in a fresh child process per measurement.

A child process per (model, threads, repeat) keeps measurements independent and turns a model
that crashes the runtime into a clear error instead of a dead CLI. Nothing here imports
TensorFlow.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import statistics
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tfopt.errors import BenchError, InputError
from tfopt.inspection import read_tflite

HARNESS = Path(__file__).with_name("harness.py")
NOISY_SPREAD_PCT = 10.0


@dataclass(frozen=True)
class BenchSettings:
    """How to time: thread counts, run budget, warm-up, XNNPACK, repeats and input data."""

    threads: tuple[int, ...] = (1, 2)
    runs: int | None = None
    min_seconds: float = 1.0
    warmup: int = 5
    xnnpack: bool = True
    repeat: int = 1
    data: str | None = None
    timeout_s: float = 600.0
    lm: bool = False  # time prefill/decode of an exported LM
    prompt_len: int = 16
    new_tokens: int = 32

    def __post_init__(self) -> None:
        if not self.threads or any(t < 1 for t in self.threads):
            raise InputError("threads: give one or more positive thread counts, e.g. 1,2")
        if self.runs is not None and self.runs < 1:
            raise InputError("runs must be at least 1")
        if self.min_seconds <= 0:
            raise InputError("min_seconds must be positive")
        if self.warmup < 0:
            raise InputError("warmup cannot be negative")
        if self.repeat < 1:
            raise InputError("repeat must be at least 1")
        if self.lm and (self.prompt_len < 1 or self.new_tokens < 1):
            raise InputError("--prompt-len and --new-tokens must be at least 1")


@dataclass(frozen=True)
class BenchReport:
    model: str
    sha256: str
    size_bytes: int
    machine: dict[str, Any]
    results: list[dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _child(model: Path, threads: int, s: BenchSettings) -> dict[str, Any]:
    cmd = [sys.executable, str(HARNESS), str(model), "--threads", str(threads)]
    cmd += ["--warmup", str(s.warmup), "--min-seconds", str(s.min_seconds)]
    if s.runs is not None:
        cmd += ["--runs", str(s.runs)]
    if not s.xnnpack:
        cmd.append("--no-xnnpack")
    if s.data:
        cmd += ["--data", s.data]
    if s.lm:
        cmd += ["--lm", "--prompt-len", str(s.prompt_len), "--new-tokens", str(s.new_tokens)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=s.timeout_s)
    except subprocess.TimeoutExpired:
        raise BenchError(f"{model}: timing run exceeded {s.timeout_s:.0f} s") from None
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    doc = json.loads(lines[-1]) if lines else {}
    if proc.returncode < 0:
        name = signal.Signals(-proc.returncode).name
        raise BenchError(f"{model}: the LiteRT runtime crashed ({name}) while timing")
    if proc.returncode != 0 or "error" in doc or not doc:
        reason = doc.get("error") or (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise BenchError(f"{model}: timing failed: {reason}")
    return doc


def _merge(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One entry from K repeats: the run with the median p50, plus the spread of the p50s."""
    p50s = [r["latency_us"]["p50"] for r in runs]
    median = statistics.median(p50s)
    entry = dict(min(runs, key=lambda r: abs(r["latency_us"]["p50"] - median)))
    entry.pop("machine", None)
    entry.pop("harness_version", None)
    spread = (max(p50s) - min(p50s)) / median * 100 if median else 0.0
    entry["repeats"] = len(runs)
    entry["repeat_p50_us"] = p50s
    entry["p50_spread_pct"] = round(spread, 2)
    entry["noisy"] = len(runs) > 1 and spread > NOISY_SPREAD_PCT
    return entry


def bench(model: str | os.PathLike[str], settings: BenchSettings | None = None) -> BenchReport:
    """Time one `.tflite` file at each thread count; each measurement in a fresh process.

    Raises:
        InputError / ModelLoadError: not a readable `.tflite` file.
        BenchError: the runtime crashed, rejected the model, or timed out.
    """
    s = settings or BenchSettings()
    path = Path(model)
    data = read_tflite(path)
    if s.data and not Path(s.data).is_file():
        raise InputError(f"data not found: {s.data}")
    results: list[dict[str, Any]] = []
    machine: dict[str, Any] = {}
    for threads in s.threads:
        runs = [_child(path, threads, s) for _ in range(s.repeat)]
        machine = runs[0].get("machine", machine)
        results.append(_merge(runs))
    return BenchReport(
        model=str(path),
        sha256=hashlib.sha256(data).hexdigest(),
        size_bytes=len(data),
        machine=machine,
        results=results,
    )
