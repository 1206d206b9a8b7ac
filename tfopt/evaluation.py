"""The evaluation spine: one `.tflite` candidate measured the one way demo, optimize and tune share.

    Runtime      how a file runs; the one place a setting becomes `BenchSettings` (`settings`)
    Candidate    a `.tflite` and the `ConvertRequest` that made it
    Timing       one runtime's latency, read through `timing.headline_us` (adb's mean included)
    Evaluation   size, gzip size, comparison, a `Timing` per `Runtime`; `row()`: the shared keys
    evaluate()   measures a candidate: size, gzip size, compare, time

Nothing here imports TensorFlow: the reference outputs are computed by the caller.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

    from tfopt.conversion.request import ConvertRequest
    from tfopt.data import Dataset
    from tfopt.targets import Target
    from tfopt.timing import BenchSettings
    from tfopt.validate import CompareResult


@dataclass(frozen=True)
class Runtime:
    """How a file is run on the target: threads, XNNPACK and its flags, the accelerator."""

    threads: int = 1
    xnnpack: bool = True
    accelerator: str = "cpu"
    cpu_options: tuple[str, ...] = ()  # LiteRT CPU options, KEY=VALUE (`tfopt bench --cpu-option`)

    def __post_init__(self) -> None:
        object.__setattr__(self, "cpu_options", tuple(self.cpu_options))

    @property
    def label(self) -> str:
        if self.accelerator != "cpu":
            return self.accelerator
        flags = f" {','.join(self.cpu_options)}" if self.cpu_options else ""
        return f"{self.threads}t" + ("" if self.xnnpack else " no-xnnpack") + flags

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "cpu_options": list(self.cpu_options)}

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> Runtime:
        """The runtime of a `to_dict` document, or of a partial one (a recipe's `runtime:
        {threads: 2}`): the fields it leaves out keep their defaults."""
        names = {f.name for f in fields(cls)}
        unknown = set(doc) - names
        if unknown:
            raise ValueError(f"runtime: unknown field(s) {', '.join(sorted(unknown))}")
        return cls(**doc)

    def settings(self, min_seconds: float = 1.0, **budget: Any) -> BenchSettings:
        """The `BenchSettings` that time a file under this runtime (`budget`: warmup, runs,
        repeat, ... as `BenchSettings` takes them)."""
        from tfopt.timing import BenchSettings

        return BenchSettings(threads=(self.threads,), xnnpack=self.xnnpack,
                             accelerators=(self.accelerator,), cpu_options=self.cpu_options,
                             min_seconds=min_seconds, **budget)  # fmt: skip


@dataclass(frozen=True)
class Candidate:
    """A `.tflite` file to evaluate, and the request that made it (its precision sets the
    tolerance the comparison is held to)."""

    path: Path
    request: ConvertRequest | None = None
    label: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))


def _ms(us: float | None) -> float | None:  # the runtime's µs as the reports' ms
    return None if us is None else round(us / 1000, 4)


@dataclass(frozen=True)
class Timing:
    """One runtime's latency in ms (`p50_ms` is the headline: p50, or the mean where the tool
    gives no median), or the one-line reason it could not be timed."""

    runtime: Runtime
    p50_ms: float | None
    p90_ms: float | None = None
    error: str | None = None
    machine: dict[str, Any] | None = field(default=None, compare=False, repr=False)

    @classmethod
    def from_result(
        cls, runtime: Runtime, entry: Mapping[str, Any], machine: dict[str, Any] | None = None
    ) -> Timing:
        """The timing of one `BenchReport.results` entry."""
        from tfopt.timing import headline_us

        return cls(runtime, _ms(headline_us(dict(entry))), _ms(entry["latency_us"].get("p90")),
                   machine=machine)  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        doc = {"runtime": self.runtime.to_dict(), "p50_ms": self.p50_ms, "p90_ms": self.p90_ms}
        return doc if self.error is None else {**doc, "error": self.error}


Timer = Callable[[Path, tuple[Runtime, ...]], tuple[Timing, ...]]


def bench_timer(min_seconds: float = 1.0, target: Target | None = None, **budget: Any) -> Timer:
    """A timer that runs `timing.bench` here (or on `target`) once per runtime; a failed
    measurement raises `BenchError`, as `bench` does."""
    from tfopt.timing import bench

    def time_all(path: Path, runtimes: tuple[Runtime, ...]) -> tuple[Timing, ...]:
        out = []
        for rt in runtimes:
            report = bench(path, rt.settings(min_seconds, **budget), target)
            out.append(Timing.from_result(rt, report.results[0], report.machine))
        return tuple(out)

    return time_all


@dataclass(frozen=True)
class Evaluation:
    """What one candidate measured: its size, gzip size (what pruning and clustering pay off
    in), its comparison with the reference, and its timing under each runtime."""

    candidate: Candidate
    size_bytes: int
    gzip_bytes: int
    comparison: CompareResult | None
    timings: tuple[Timing, ...] = ()

    def timing(self, runtime: Runtime) -> Timing:
        """The timing under `runtime` (KeyError when it was not timed)."""
        found = [t for t in self.timings if t.runtime == runtime]
        if not found:
            raise KeyError(runtime.label)
        return found[0]

    def p50_ms(self, runtime: Runtime | None = None) -> float | None:
        """The headline latency under `runtime` (the default one: 1 thread, XNNPACK)."""
        return self.timing(runtime or Runtime()).p50_ms

    @property
    def machine(self) -> dict[str, Any]:
        """The machine the timings ran on (as the runtime reports it)."""
        return next((t.machine for t in self.timings if t.machine), {})

    @property
    def passed(self) -> bool | None:
        """Whether the comparison met its tolerance (None: nothing was compared)."""
        return None if self.comparison is None else self.comparison.passed

    def quality(self) -> dict[str, float | None]:
        """The comparison's figures, by the names `tfopt tune` judges them with: worst SQNR and
        cosine over the outputs, top-1 agreement, accuracy and its drop against the reference."""
        c = self.comparison
        if c is None:
            return {}
        out: dict[str, float | None] = {
            "sqnr_db": round(min(d.sqnr_db for d in c.outputs), 3),
            "cosine": round(min(d.cosine for d in c.outputs), 6),
            "top1": c.top1_agreement,
            "accuracy": None,
            "top1_drop": None,
        }
        if c.accuracy is not None:
            out["accuracy"] = round(c.accuracy["candidate"], 6)
            out["top1_drop"] = round(c.accuracy["reference"] - c.accuracy["candidate"], 6)
        elif c.top1_agreement is not None:
            out["top1_drop"] = round(1.0 - c.top1_agreement, 6)
        return out

    def row(self) -> dict[str, Any]:
        """The shared row: the same keys, with the same meaning, in demo, optimize and tune."""
        return {
            "label": self.candidate.label,
            "size_bytes": self.size_bytes,
            "gzip_bytes": self.gzip_bytes,
            "p50_ms_by_runtime": {t.runtime.label: t.p50_ms for t in self.timings},
            "p90_ms_by_runtime": {t.runtime.label: t.p90_ms for t in self.timings},
            "quality": self.quality(),
            "within_tolerance": self.passed,
        }

    def to_dict(self) -> dict[str, Any]:
        """The row, plus the file, the whole comparison and each timing with its runtime."""
        return {
            **self.row(),
            "path": str(self.candidate.path),
            "comparison": None if self.comparison is None else self.comparison.to_dict(),
            "timings": [t.to_dict() for t in self.timings],
        }


def compare_candidate(
    candidate: Candidate, reference: Mapping[str, np.ndarray], data: Dataset
) -> CompareResult:
    """The candidate's outputs on `data` against `reference` (outputs on the same samples),
    held to its precision's tolerance when its request names one."""
    from tfopt.validate import compare_outputs, run_tflite, with_thresholds

    result = compare_outputs(dict(reference), run_tflite(str(candidate.path), data), data.y)
    if candidate.request is None:
        return result
    from converters import PRECISIONS

    spec = PRECISIONS[candidate.request.precision]
    return with_thresholds(result, spec.min_sqnr_db, spec.min_cosine)


def evaluate(
    candidate: Candidate,
    reference: Mapping[str, np.ndarray] | None,
    data: Dataset | None,
    runtimes: Iterable[Runtime] = (Runtime(),),
    *,
    min_seconds: float = 1.0,
    target: Target | None = None,
    timer: Timer | None = None,
) -> Evaluation:
    """Measure `candidate`: size, gzip size, its outputs on `data` compared with `reference`
    (the reference model's outputs on `data`; None: no comparison), and a `Timing` per runtime.

    `timer(path, runtimes)` times the file (tune times through its Ray actor); by default
    `timing.bench` runs here, or on `target`, for `min_seconds` per runtime.

    Raises:
        ValidationError: the outputs cannot be paired with the reference's.
        BenchError: the default timer could not time the file.
    """
    from tfopt.inspection import gzip_size

    flat = candidate.path.read_bytes()
    comparison = None
    if reference is not None and data is not None:
        comparison = compare_candidate(candidate, reference, data)
    time_all = timer or bench_timer(min_seconds, target)
    return Evaluation(candidate, len(flat), gzip_size(flat), comparison,
                      time_all(candidate.path, tuple(runtimes)))  # fmt: skip
