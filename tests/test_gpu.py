"""The GPU path: LiteRT CompiledModel on a Vulkan device (the software one from `make soft-gpu`),
and which Vulkan device tfopt picks.

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
from tfopt.errors import BenchError
from tfopt.inspection import graph_summary
from tfopt.placement import with_op_placement
from tfopt.runtime.feeding import load_sample
from tfopt.runtime.gpu import LITERT_OP_TOTALS, CompiledRunner
from tfopt.targets import gpu_env, real_gpu_icds, soft_gpu_dir


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


def test_cnn_runs_fully_on_gpu_and_matches_cpu(
    runner: Any, tflite: dict[str, Path], soft_gpu: Path
) -> None:
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


def test_bert_partly_falls_back_with_litert_reasons(
    runner: Any, bert_tflite: Path, soft_gpu: Path
) -> None:
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


def test_inspect_gpu_gives_the_same_verdict_without_timing(
    runner: Any, bert_tflite: Path, soft_gpu: Path
) -> None:
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
    assert len(result.output.strip().splitlines()) == 1, result.output


def test_compiled_model_reads_quantized_outputs_as_real_values(tflite: dict[str, Path]) -> None:
    """int8 I/O through CompiledModel uses the same scale/zero-point handling as the Interpreter."""
    env = CompiledRunner(str(tflite["int8io"]), "cpu")
    sample = load_sample(None, env.inputs, seed=0)
    env.feed(sample)
    env.invoke()
    out = env.read()
    probs = next(iter(out.values()))
    assert probs.dtype == np.float32 and abs(float(probs.sum()) - 1.0) < 0.05


def test_placement_is_computed_on_the_host_in_the_runtimes_place(tflite: dict[str, Path]) -> None:
    """The runtime returns LiteRT's verdict and totals; the host replays the partitioning on the
    graph and puts the per-op placement where the totals were (same JSON keys and order)."""
    ops = graph_summary(tflite["float32"].read_bytes())["ops"]
    last = "SOFTMAX"
    n = sum(ops.values())
    doc = {
        "accelerator": "gpu",
        "threads": 1,
        "fully_accelerated": False,
        LITERT_OP_TOTALS: {"gpu": n - 1, "cpu": 1},
        "fallback_reasons": {last: "not supported here"},
        "gpu_device": None,
    }
    placed = with_op_placement(doc, tflite["float32"])
    assert list(placed) == [
        "accelerator",
        "threads",
        "fully_accelerated",
        "op_placement",
        "op_placement_exact",
        "gpu_op_count",
        "cpu_op_count",
        "fallback_reasons",
        "gpu_device",
    ]
    on_gpu = {k: v for k, v in ops.items() if k != last}
    assert placed["op_placement"] == {"gpu": on_gpu, "cpu": {last: 1}}
    assert placed["op_placement_exact"] is True
    assert (placed["gpu_op_count"], placed["cpu_op_count"]) == (n - 1, 1)
    cpu_result = {"accelerator": "cpu", "threads": 1}
    assert with_op_placement(cpu_result, tflite["float32"]) is cpu_result


# --- which Vulkan device: temporary ICD folders, device nodes and caches, no GPU needed ----------


def _icd(folder: Path, name: str, library: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(json.dumps({"file_format_version": "1.0.0",
                                "ICD": {"library_path": library, "api_version": "1.3"}}))  # fmt: skip
    return path


@pytest.fixture()
def machine(tmp_path: Path) -> dict[str, Any]:
    """Debian's Vulkan drivers (Intel, AMD, lavapipe), no GPU device, a soft GPU in the cache."""
    system = tmp_path / "usr/share/vulkan/icd.d"
    for name, lib in (("intel_icd.x86_64.json", "libvulkan_intel.so"),
                      ("radeon_icd.x86_64.json", "libvulkan_radeon.so"),
                      ("lvp_icd.x86_64.json", "libvulkan_lvp.so")):  # fmt: skip
        _icd(system, name, f"/usr/lib/x86_64-linux-gnu/{lib}")
    dev = tmp_path / "dev"
    dev.mkdir()
    cache = tmp_path / "cache"
    soft = cache / "tfopt" / "soft-gpu" / "root"
    _icd(soft / "usr/share/vulkan/icd.d", "lvp_icd.json", "libvulkan_lvp.so")
    (soft / "usr/lib/x86_64-linux-gnu").mkdir(parents=True)
    (soft / "usr/lib/x86_64-linux-gnu/libvulkan_lvp.so").write_bytes(b"")
    icd_dirs = (system, tmp_path / "etc/vulkan/icd.d")
    return {"icd_dirs": icd_dirs, "dev": dev, "env": {"XDG_CACHE_HOME": str(cache)},
            "soft_icd": str(soft / "usr/share/vulkan/icd.d/lvp_icd.json")}  # fmt: skip


def _chosen(m: dict[str, Any], **env: str) -> str | None:
    return gpu_env({**m["env"], **env}, m["icd_dirs"], m["dev"]).get("VK_ICD_FILENAMES")


def test_software_gpu_where_no_real_one_exists(machine: dict[str, Any]) -> None:
    """ICD files alone (Debian installs Intel/AMD ones everywhere) are not a GPU."""
    assert real_gpu_icds(machine["icd_dirs"], machine["dev"]) == []
    assert _chosen(machine) == machine["soft_icd"]
    env = gpu_env(machine["env"], machine["icd_dirs"], machine["dev"])
    assert env["LD_LIBRARY_PATH"].endswith("soft-gpu/root/usr/lib/x86_64-linux-gnu")


def test_a_real_gpu_wins(machine: dict[str, Any]) -> None:
    (machine["dev"] / "dri").mkdir()
    (machine["dev"] / "dri" / "renderD128").touch()
    found = real_gpu_icds(machine["icd_dirs"], machine["dev"])
    assert sorted(p.name for p in found) == ["intel_icd.x86_64.json", "radeon_icd.x86_64.json"]
    assert _chosen(machine) is None  # the Vulkan loader picks the real GPU
    assert _chosen(machine, TFOPT_SOFT_GPU="1") == machine["soft_icd"]  # unless asked


def test_nvidia_driver_in_etc_is_a_real_gpu(machine: dict[str, Any]) -> None:
    _icd(machine["icd_dirs"][1], "nvidia_icd.json", "libGLX_nvidia.so.0")
    assert _chosen(machine) == machine["soft_icd"]  # a driver without a device: no GPU
    (machine["dev"] / "nvidia0").touch()
    assert [p.name for p in real_gpu_icds(machine["icd_dirs"], machine["dev"])][-1:] == [
        "nvidia_icd.json"
    ]
    assert _chosen(machine) is None


def test_the_users_vulkan_choice_and_tfopt_soft_gpu_0_are_kept(machine: dict[str, Any]) -> None:
    assert _chosen(machine, VK_ICD_FILENAMES="/opt/my_icd.json") == "/opt/my_icd.json"
    assert _chosen(machine, VK_DRIVER_FILES="/opt/my_icd.json") is None
    assert _chosen(machine, TFOPT_SOFT_GPU="0") is None


def test_soft_gpu_lives_in_the_user_cache_not_the_source_tree(
    machine: dict[str, Any], tmp_path: Path
) -> None:
    empty = {"XDG_CACHE_HOME": str(tmp_path / "empty-cache")}
    assert soft_gpu_dir(empty) is None
    assert soft_gpu_dir(machine["env"]) == tmp_path / "cache" / "tfopt" / "soft-gpu"
    elsewhere = tmp_path / "cache" / "tfopt" / "soft-gpu"
    assert soft_gpu_dir({**empty, "TFOPT_SOFT_GPU": str(elsewhere)}) == elsewhere
    assert gpu_env(empty, machine["icd_dirs"], machine["dev"]).get("VK_ICD_FILENAMES") is None
    with pytest.raises(BenchError, match="asks for the software GPU.*make soft-gpu"):
        gpu_env({**empty, "TFOPT_SOFT_GPU": "1"}, machine["icd_dirs"], machine["dev"])
