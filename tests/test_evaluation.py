"""The evaluation spine: a real model saved as users save it, converted by tfopt, then measured."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tfopt.conversion import ConvertRequest, convert
from tfopt.data import Dataset
from tfopt.evaluation import Candidate, Evaluation, Runtime, Timing, evaluate
from tfopt.loading import load
from tfopt.validate import run_reference

SEED = 0


@pytest.fixture(scope="module")
def converted(
    tmp_path_factory: pytest.TempPathFactory, keras3: Any
) -> tuple[Candidate, dict[str, np.ndarray], Dataset]:
    """A small Keras 3 classifier trained one epoch with fit, saved as .keras, converted by path."""
    rng = np.random.default_rng(SEED)
    x = rng.normal(size=(256, 12)).astype(np.float32)
    y = (x[:, :4].sum(1) > 0).astype(np.int64) + 2 * (x[:, 4:8].sum(1) > 0)
    keras3.utils.set_random_seed(SEED)
    model = keras3.Sequential([keras3.Input((12,), name="x"), keras3.layers.Dense(32, "relu"),
                               keras3.layers.Dense(4, "softmax")])  # fmt: skip
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=1, batch_size=32, verbose=0)
    folder = tmp_path_factory.mktemp("evaluation")
    model.save(folder / "model.keras")
    held_out = Dataset({"x": x[:64]}, y[:64])
    np.savez(folder / "check.npz", x=x[:64])
    request = ConvertRequest(precision="float32", check_data=str(folder / "check.npz"))
    convert(folder / "model.keras", folder / "model.tflite", "float32",
            check_data=str(folder / "check.npz"))  # fmt: skip
    reference = run_reference(load(folder / "model.keras"), held_out)
    return Candidate(folder / "model.tflite", request, "float32"), reference, held_out


def test_evaluate_measures_size_quality_and_each_runtime(converted: Any) -> None:
    candidate, reference, data = converted
    runtimes = (Runtime(1), Runtime(2))
    ev = evaluate(candidate, reference, data, runtimes, min_seconds=0.05)
    assert ev.size_bytes == candidate.path.stat().st_size > 0
    assert 0 < ev.gzip_bytes < ev.size_bytes
    assert [t.runtime for t in ev.timings] == list(runtimes)
    assert all(t.p50_ms and t.p50_ms > 0 and t.p90_ms >= t.p50_ms for t in ev.timings)
    assert ev.p50_ms(Runtime(2)) == ev.timing(Runtime(2)).p50_ms
    assert ev.machine.get("cores")
    assert ev.comparison is not None and ev.comparison.passed and ev.passed
    quality = ev.quality()
    assert quality["sqnr_db"] > 40 and quality["top1"] == 1.0 and quality["top1_drop"] == 0.0
    row = ev.row()
    assert set(row["p50_ms_by_runtime"]) == {"1t", "2t"} and row["size_bytes"] == ev.size_bytes
    assert ev.to_dict()["timings"][1]["runtime"]["threads"] == 2
    with pytest.raises(KeyError):
        ev.timing(Runtime(4))


def test_a_wrong_reference_fails_the_comparison(converted: Any) -> None:
    candidate, reference, data = converted
    shuffled = {k: v[::-1].copy() for k, v in reference.items()}  # outputs of other samples
    ev = evaluate(candidate, shuffled, data, (), min_seconds=0.05)
    assert ev.timings == () and ev.passed is False
    assert "SQNR" in ev.comparison.failures[0]  # type: ignore[union-attr]
    # With no request there is no tolerance to hold it to: figures, but no verdict of failure.
    bare = evaluate(Candidate(candidate.path), shuffled, data, (), min_seconds=0.05)
    assert bare.passed is True and bare.quality()["sqnr_db"] < 10


def test_a_custom_timer_times_the_file(converted: Any) -> None:
    """tune times through its own actor: evaluate hands it the path and the runtimes."""
    candidate, _, _ = converted
    seen: list[tuple[Path, tuple[Runtime, ...]]] = []

    def timer(path: Path, runtimes: tuple[Runtime, ...]) -> tuple[Timing, ...]:
        seen.append((path, runtimes))
        return tuple(Timing(rt, None, error="busy") for rt in runtimes)

    ev = evaluate(candidate, None, None, [Runtime(xnnpack=False)], timer=timer)
    assert seen == [(candidate.path, (Runtime(xnnpack=False),))]
    assert ev.comparison is None and ev.quality() == {} and ev.passed is None
    assert ev.to_dict()["timings"][0]["error"] == "busy"
    assert isinstance(ev, Evaluation)


def test_runtime_round_trip_label_and_settings() -> None:
    rt = Runtime.from_dict({"threads": 2, "cpu_options": ["api=compiled"]})
    assert rt == Runtime(2, True, "cpu", ("api=compiled",))
    assert Runtime.from_dict(rt.to_dict()) == rt and rt.label == "2t api=compiled"
    assert Runtime(1, False).label == "1t no-xnnpack" and Runtime(accelerator="gpu").label == "gpu"
    s = rt.settings(0.25, warmup=10)
    assert (s.threads, s.xnnpack, s.accelerators, s.cpu_options, s.min_seconds, s.warmup) == (
        (2,), True, ("cpu",), ("api=compiled",), 0.25, 10)  # fmt: skip
    with pytest.raises(ValueError, match="cores"):
        Runtime.from_dict({"cores": 2})


def test_timing_reads_the_headline_adb_gives() -> None:
    """benchmark_model on Android gives a mean and no median: the headline is the mean."""
    entry = {"latency_us": {"mean": 2500.0, "p50": None}, "latency_stat": "mean"}
    assert Timing.from_result(Runtime(), entry).p50_ms == 2.5
    plain = {"latency_us": {"p50": 1234.5, "p90": 2000.0}}
    assert Timing.from_result(Runtime(), plain) == Timing(Runtime(), 1.2345, 2.0)
