"""The GPU path: LiteRT CompiledModel on a Vulkan device (the software one from `make soft-gpu`).

Its op placement and numerics are real LiteRT results; its timings say nothing about real GPUs,
so nothing here checks speed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.conftest import invoke
from tfopt import harness
from tfopt.inspection import graph_summary
from tfopt.targets import soft_gpu_dir

pytestmark = pytest.mark.skipif(
    soft_gpu_dir() is None, reason="no software GPU: run `make soft-gpu` (make test does)"
)


@pytest.fixture(scope="module")
def bert_tflite(bert: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tfopt.conversion import convert

    path = tmp_path_factory.mktemp("gpu") / "bert.tflite"
    convert(bert, path, "float32", seq_len=32)
    return path


def _bench(runner: Any, model: Path, *extra: Any) -> dict[str, Any]:
    result = invoke(runner, "bench", model, "--accelerator", "cpu,gpu", "--threads", "1",
                    "--runs", "20", "--warmup", "2", "--json", *extra)  # fmt: skip
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_cnn_runs_fully_on_gpu_and_matches_cpu(runner: Any, tflite: dict[str, Path]) -> None:
    doc = _bench(runner, tflite["float32"])
    cpu, gpu = doc["results"]
    assert (cpu["accelerator"], gpu["accelerator"]) == ("cpu", "gpu")
    assert gpu["fully_accelerated"] is True
    assert gpu["software_gpu"] is True and "Vulkan" in gpu["gpu_device"]
    ops = graph_summary(tflite["float32"].read_bytes())["ops"]
    assert gpu["op_placement"] == {"gpu": ops, "cpu": {}}
    assert gpu["fallback_reasons"] == {}
    # Real GPU arithmetic (fp16 inside) against the CPU: close, but not bit-identical.
    assert 0 <= gpu["max_abs_vs_cpu"] < 1e-2
    assert gpu["runs"] == 20 and gpu["latency_us"]["p50"] > 0


def test_bert_partly_falls_back_with_litert_reasons(runner: Any, bert_tflite: Path) -> None:
    gpu = _bench(runner, bert_tflite)["results"][1]
    assert gpu["fully_accelerated"] is False
    assert "GATHER" in gpu["fallback_reasons"]
    assert "1D indices" in gpu["fallback_reasons"]["GATHER"]
    # The per-op split replays LiteRT's partitioning; it must reproduce LiteRT's own totals.
    assert gpu["op_placement_exact"] is True
    placed = gpu["op_placement"]
    assert sum(placed["gpu"].values()) == gpu["gpu_op_count"] > 0
    assert sum(placed["cpu"].values()) == gpu["cpu_op_count"] > 0
    assert placed["cpu"]["GATHER"] == graph_summary(bert_tflite.read_bytes())["ops"]["GATHER"]
    assert gpu["max_abs_vs_cpu"] < 5e-2


def test_inspect_gpu_gives_the_same_verdict_without_timing(runner: Any, bert_tflite: Path) -> None:
    result = invoke(runner, "inspect", bert_tflite, "--gpu", "--json")
    assert result.exit_code == 0, result.output
    gpu = json.loads(result.output)["gpu"]
    assert gpu["fully_accelerated"] is False and "latency_us" not in gpu
    text = invoke(runner, "inspect", bert_tflite, "--gpu").output
    assert "fallback GATHER: Only support 1D indices" in text
    assert "software GPU" in text


def test_no_vulkan_device_is_one_clear_line(
    runner: Any, tflite: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VK_ICD_FILENAMES", "/nonexistent/icd.json")
    result = invoke(runner, "bench", tflite["float32"], "--accelerator", "gpu", "--runs", "5")
    assert result.exit_code == 1
    assert "found no usable GPU" in result.output and "make soft-gpu" in result.output
    assert "Traceback" not in result.output


def test_compiled_model_reads_quantized_outputs_as_real_values(tflite: dict[str, Path]) -> None:
    """int8 I/O through CompiledModel uses the same scale/zero-point handling as the Interpreter."""
    env = harness.CompiledRunner(str(tflite["int8io"]), "cpu")
    sample = harness.load_sample(None, env.inputs, seed=0)
    env.feed(sample)
    env.invoke()
    out = env.read()
    probs = next(iter(out.values()))
    assert probs.dtype == np.float32 and abs(float(probs.sum()) - 1.0) < 0.05
