"""Time stage: one fresh runtime process per measurement, on a target (see `tfopt.targets`).

A child process per (model, accelerator, threads, repeat) keeps measurements independent and turns
a model that crashes the runtime into a clear error instead of a dead CLI. Nothing here imports
TensorFlow.
"""

from __future__ import annotations

import hashlib
import os
import statistics
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tfopt.errors import InputError, option
from tfopt.inspection import read_tflite
from tfopt.placement import with_op_placement
from tfopt.runtime.cpuopts import COMPILED, parse_cpu_options
from tfopt.runtime.stats import parse_cpus
from tfopt.targets import ACCELERATORS, AdbTarget, LocalTarget, RunSpec, Target
from tfopt.timed_shapes import TimedShapes, parse_shapes, timed_shapes

NOISY_SPREAD_PCT = 10.0
_SHAPES = f"{option('seq_len')}/{option('input_shapes')}"  # the options that set a timed shape
# More threads than any phone, board or server this times has cores: a count above it is a typo
# (LiteRT would only crash on it, after the model was copied and loaded).
MAX_THREADS = 256


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
    lookup: int = 0  # with lm: prompt-lookup draft tokens per verify step (0: plain decode)
    accelerators: tuple[str, ...] = ("cpu",)
    pin: str | None = None  # CPU ids, e.g. "0" or "4,5,6,7"
    cpu_options: tuple[str, ...] = ()  # LiteRT CPU options, KEY=VALUE (tfopt.runtime.cpuopts)
    profile: bool = False  # add LiteRT's per-op profile of each CPU setting
    profile_runs: int = 20
    # A free (sequence) dimension is timed at the length of `data`, or of these (`timed_shapes`)
    seq_len: int | None = None
    input_shapes: tuple[str, ...] = ()  # [NAME=]DIMS, as convert's --input-shape

    def __post_init__(self) -> None:
        bad = [a for a in self.accelerators if a not in ACCELERATORS]
        if not self.accelerators or bad:
            raise InputError(f"accelerator: choose from {', '.join(ACCELERATORS)}")
        if self.pin is not None:
            try:
                parse_cpus(self.pin)
            except ValueError as exc:
                raise InputError(str(exc)) from None
        if self.lm and self.accelerators != ("cpu",):
            raise InputError(f"{option('lm')} timing runs on the CPU interpreter only")
        self._check_cpu_options()
        self._check_shapes()
        if not self.threads or any(t < 1 for t in self.threads):
            raise InputError("threads: give one or more positive thread counts, e.g. 1,2")
        if max(self.threads) > MAX_THREADS:
            raise InputError(f"threads: {max(self.threads)} is more than {MAX_THREADS}")
        if self.runs is not None and self.runs < 1:
            raise InputError("runs must be at least 1")
        if self.min_seconds <= 0:
            raise InputError("min_seconds must be positive")
        if self.warmup < 0:
            raise InputError("warmup cannot be negative")
        if self.repeat < 1:
            raise InputError("repeat must be at least 1")
        if self.lm and (self.prompt_len < 1 or self.new_tokens < 1):
            raise InputError(f"{option('prompt_len')} and {option('new_tokens')} must be at least 1")
        if self.lookup and not self.lm or self.lookup < 0:
            raise InputError(f"{option('lookup')} (draft tokens, >= 0) applies to {option('lm')} timing")

    def _check_shapes(self) -> None:
        if self.seq_len is not None and self.seq_len < 1:
            raise InputError(f"{option('seq_len')} must be at least 1")
        if self.data and (self.seq_len is not None or self.input_shapes):
            raise InputError(f"{option('data')} sets the timed shapes itself: drop {_SHAPES}")
        if self.lm and (self.seq_len is not None or self.input_shapes):
            raise InputError(f"{option('lm')} timing takes {option('prompt_len')}, not {_SHAPES}")
        parse_shapes(self.input_shapes)

    def _check_cpu_options(self) -> None:
        try:
            cpu = parse_cpu_options(self.cpu_options)
        except ValueError as exc:
            raise InputError(str(exc)) from None
        if (self.cpu_options or self.profile) and "cpu" not in self.accelerators:
            raise InputError(f"{option('cpu_options')} and {option('profile')} apply to "
                             f"{option('accelerators')} cpu")
        if self.lm and (self.cpu_options or self.profile):
            raise InputError(f"{option('lm')} timing takes neither {option('cpu_options')} nor "
                             f"{option('profile')}")
        if not self.xnnpack and cpu["api"] == COMPILED:
            raise InputError(
                f"{option('no_xnnpack')} is the Interpreter's; with api=compiled use "
                f"{option('cpu_options')} kernel_mode=builtin"
            )
        if self.profile_runs < 1:
            raise InputError(f"{option('profile_runs')} must be at least 1")


@dataclass(frozen=True)
class BenchReport:
    model: str
    sha256: str
    size_bytes: int
    target: str
    machine: dict[str, Any]
    results: list[dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def headline_us(entry: dict[str, Any]) -> float:
    """The latency a result is ranked by: p50, or the mean where the tool gives no median
    (benchmark_model on Android; such entries say `latency_stat: mean`)."""
    return float(entry["latency_us"][entry.get("latency_stat", "p50")])


def _merge(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One entry from K repeats: the run with the median p50, plus the spread of the p50s."""
    p50s = [headline_us(r) for r in runs]
    median = statistics.median(p50s)
    closest = min(runs, key=lambda r: abs(headline_us(r) - median))
    entry = dict(closest)
    entry.pop("machine", None)
    entry.pop("harness_version", None)
    spread = (max(p50s) - min(p50s)) / median * 100 if median else 0.0
    entry["repeats"] = len(runs)
    entry["repeat_p50_us"] = p50s
    entry["p50_spread_pct"] = round(spread, 2)
    entry["noisy"] = len(runs) > 1 and spread > NOISY_SPREAD_PCT
    return entry


def _spec(
    s: BenchSettings, accelerator: str, threads: int, shapes: TimedShapes | None = None
) -> RunSpec:
    return RunSpec(
        accelerator=accelerator,
        threads=threads,
        warmup=s.warmup,
        min_seconds=s.min_seconds,
        runs=s.runs,
        xnnpack=s.xnnpack,
        pin=s.pin,
        lm=s.lm,
        prompt_len=s.prompt_len,
        new_tokens=s.new_tokens,
        lookup=s.lookup,
        cpu_options=s.cpu_options if accelerator == "cpu" else (),
        profile=s.profile and accelerator == "cpu",
        profile_runs=s.profile_runs,
        input_shapes=shapes.given if shapes else (),
    )


def _measure(
    where: Target, path: Path, spec: RunSpec, data: str | None, timeout: float
) -> dict[str, Any]:
    """One measurement on `where`; a GPU verdict gains its per-op placement here, on the host."""
    return with_op_placement(where.measure(path, spec, data, timeout), path)


def _read_bundle(path: Path) -> bytes:
    """A `.litertlm` bundle, timed by LiteRT-LM's own engine (`bench --lm`)."""
    if not path.is_file():
        raise InputError(f"model not found: {path}")
    data = path.read_bytes()
    if data[:8] != b"LITERTLM":
        raise InputError(f"{path}: not a LiteRT-LM bundle (no LITERTLM header)")
    return data


def bench(
    model: str | os.PathLike[str],
    settings: BenchSettings | None = None,
    target: Target | None = None,
) -> BenchReport:
    """Time one `.tflite` file per accelerator and thread count; each measurement is a fresh
    process on `target` (default: this machine).

    Raises:
        InputError / ModelLoadError: not a readable `.tflite` file.
        BenchError: the target is unreachable, or the runtime crashed, rejected the model, or
            timed out.
    """
    s = settings or BenchSettings()
    where = target or LocalTarget()
    path = Path(model)
    data = _read_bundle(path) if s.lm and path.suffix == ".litertlm" else read_tflite(path)
    if s.data and not Path(s.data).is_file():
        raise InputError(f"data not found: {s.data}")
    if isinstance(where, AdbTarget) and (s.profile or s.cpu_options):
        raise InputError(
            f"{option('profile')} and {option('cpu_options')} drive LiteRT's Python runtime; an "
            "adb target runs benchmark_model (use a local or ssh target)"
        )
    shapes = None if s.lm else timed_shapes(path, data, s.seq_len, s.input_shapes, bool(s.data))
    results: list[dict[str, Any]] = []
    machine: dict[str, Any] = {}
    for accelerator in s.accelerators:
        for threads in s.threads:
            spec = _spec(s, accelerator, threads, shapes)
            runs = [_measure(where, path, spec, s.data, s.timeout_s) for _ in range(s.repeat)]
            machine = runs[0].get("machine", machine)
            results.append(_merge(runs))
            if shapes and shapes.expected is not None:  # a runtime that does not report them
                results[-1].setdefault("input_shapes", shapes.expected)
    return BenchReport(
        model=str(path),
        sha256=hashlib.sha256(data).hexdigest(),
        size_bytes=len(data),
        target=where.name,
        machine=machine,
        results=results,
    )


def gpu_placement(model: str | os.PathLike[str], target: Target | None = None) -> dict[str, Any]:
    """Which ops LiteRT's GPU accelerator takes and which fall back to the CPU, without timing."""
    path = Path(model)
    read_tflite(path)
    spec = RunSpec(accelerator="gpu", threads=1, warmup=0, min_seconds=1.0, runs=None,
                   xnnpack=True, pin=None, placement_only=True)  # fmt: skip
    doc = _measure(target or LocalTarget(), path, spec, None, 300)
    for key in ("threads", "accelerator", "harness_version"):
        doc.pop(key, None)
    return doc


@dataclass(frozen=True)
class BenchMatrix:
    """Several models timed on several targets: one `BenchReport` per (target, model), in the
    order they ran (targets outer, models inner)."""

    reports: list[BenchReport]

    def to_dict(self) -> dict[str, Any]:
        return {"models": [r.to_dict() for r in self.reports]}


def bench_matrix(
    models: Sequence[str | os.PathLike[str]],
    targets: Sequence[str | Target] = ("local",),
    settings: BenchSettings | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    **target_options: Any,
) -> BenchMatrix:
    """Time every model on every target (`bench` per cell), one target open at a time.

    A target given as a spec ('local', 'ssh://user@host[:port]', 'adb[:SERIAL]') is made with
    `make_target(spec, **target_options)` (ssh_key, ssh_options, remote_python,
    benchmark_binary). Every target is closed after its models, removing what was copied there.
    `on_progress(done, total)` is called before the first cell and after each one.

    Raises:
        InputError / ModelLoadError / BenchError: as `bench`, or a target spec that is not one.
    """
    from tfopt.targets import make_target, opened

    if not models:
        raise InputError("bench_matrix: give at least one model")
    targets = targets or ("local",)
    total = len(models) * len(targets)
    reports: list[BenchReport] = []
    if on_progress is not None:
        on_progress(0, total)
    for spec in targets:
        target = make_target(spec, **target_options) if isinstance(spec, str) else spec
        with opened(target) as where:
            for model in models:
                reports.append(bench(model, settings, where))
                if on_progress is not None:
                    on_progress(len(reports), total)
    return BenchMatrix(reports)
