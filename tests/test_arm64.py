"""The ARM64 board (make arm64-board): a Debian arm64 userland under qemu-user with its own sshd.
`bench` and `compare` reach it through the ordinary ssh target, so the LiteRT kernels that run
are ARM's (XNNPACK's NEON paths), not x86's. Timings under emulation mean nothing; numerics do."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import board
from tests.conftest import REQUIRE_ALL, invoke
from tests.sshd import Sshd

PRECISIONS = ("float32", "dynamic", "int8")


@pytest.fixture(scope="module")
def arm64() -> Iterator[Sshd]:
    reason = board.problem()
    if reason is not None:
        if REQUIRE_ALL:
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    with board.board_sshd() as server:
        yield server


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory, fashion_app: dict[str, Path]) -> dict[str, Path]:
    """The app's Fashion-MNIST classifier (Keras 3 Sequential, fit + save) at three precisions."""
    from tfopt.conversion import convert

    d = tmp_path_factory.mktemp("arm64_models")
    out = {p: d / f"fashion_{p}.tflite" for p in PRECISIONS}
    for precision, path in out.items():
        calibration = fashion_app["calib"] if precision == "int8" else None
        convert(str(fashion_app["keras"]), path, precision, calibration=calibration)
    return out


def test_bench_runs_on_arm64_kernels(runner: Any, arm64: Sshd, models: dict[str, Path]) -> None:
    result = invoke(runner, "bench", *models.values(), *arm64.args(), "--threads", "1", "--runs", "20",
                    "--warmup", "2", "--min-seconds", "0.01", "--json")  # fmt: skip
    assert result.exit_code == 0, result.output
    reports = json.loads(result.output)["models"]
    assert [Path(r["model"]).name for r in reports] == [p.name for p in models.values()]
    for report in reports:
        assert report["target"] == arm64.url
        assert report["machine"]["arch"] == "aarch64" and report["machine"]["host"] == "127.0.0.1"
        (row,) = report["results"]
        assert row["runs"] == 20 and row["latency_us"]["p50"] > 0


@pytest.mark.parametrize("precision", PRECISIONS)
def test_compare_arm64_against_x86(
    precision: str, runner: Any, arm64: Sshd, models: dict[str, Path], fashion_app: dict[str, Path]
) -> None:
    """The same .tflite: reference on this x86 machine, candidate on the ARM board, 200 real
    images. ARM's kernels may round differently, but they must agree on the classes."""
    model = models[precision]
    result = invoke(runner, "compare", model, model, "--data", fashion_app["data"],
                    *arm64.args(), "--min-top1", "0.98", "--json")  # fmt: skip
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    (out,) = doc["outputs"]
    assert doc["candidate_machine"]["arch"] == "aarch64"  # the candidate really ran on ARM
    assert doc["candidate_machine"]["target"] == arm64.url
    assert doc["samples"] == 200 and doc["passed"]
    assert doc["top1_agreement"] >= 0.98
    # float kernels differ only in rounding; int8 by at most a few quantization steps (1/256).
    assert out["max_abs"] < (1e-4 if precision == "float32" else 0.05), out


def test_compare_on_arm64_against_the_keras_model(
    runner: Any, arm64: Sshd, models: dict[str, Path], fashion_app: dict[str, Path]
) -> None:
    """Keras on x86 against the int8 file on ARM, with the real labels: both accuracies."""
    result = invoke(runner, "compare", fashion_app["keras"], models["int8"], "--data",
                    fashion_app["data"], "--max-samples", "100", *arm64.args(), "--json")  # fmt: skip
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert doc["candidate_machine"]["arch"] == "aarch64"
    assert doc["samples"] == 100 and doc["top1_agreement"] >= 0.95
    assert doc["accuracy"]["candidate"] > 0.6
