"""`bench --profile` (LiteRT's own per-op profiler) and `bench --cpu-option` (LiteRT's CPU
runtime options as data): real conversions, real LiteRT runs, no mocks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.conftest import invoke
from tfopt.errors import InputError
from tfopt.placement import model_graph
from tfopt.runtime.cpuopts import (
    XNN_DISABLE_DYNAMICALLY_QUANTIZED_OPS,
    XNN_FORCE_FP16,
    XNN_QS8_QU8,
    cpu_option_args,
    parse_cpu_options,
    xnnpack_flags,
)
from tfopt.runtime.profile import (
    DELEGATE_PROFILED_OPERATOR_INVOKE_EVENT,
    OPERATOR_INVOKE_EVENT,
    profile_ops,
    summarize_events,
)
from tfopt.targets import AdbTarget
from tfopt.timing import BenchSettings, bench

PROFILE_KEYS = {"tool", "runs", "run_ms", "profiled_ms", "xnnpack_partitions", "ms_by_place"}
PROFILE_KEYS |= {"ops_by_place", "top", "ops"}


def test_profile_of_the_int8_cnn_names_real_ops(tflite: dict[str, Path]) -> None:
    """Every op LiteRT ran on the default kernels is an op of the graph; XNNPACK ran the rest."""
    p = profile_ops(str(tflite["int8"]), threads=1, runs=5, warmup=1)
    assert set(p) == PROFILE_KEYS and p["runs"] == 5 and p["run_ms"] > 0
    assert p["ops"] and {o["where"] for o in p["ops"]} <= {"xnnpack", "tflite"}
    graph_ops = {op[0] for nodes in model_graph(tflite["int8"]) for op in nodes}
    assert {o["op"] for o in p["ops"] if o["where"] == "tflite"} <= graph_ops
    assert p["ops_by_place"]["xnnpack"] >= 1 and p["xnnpack_partitions"] >= 1
    assert [o["total_ms"] for o in p["ops"]] == sorted(
        (o["total_ms"] for o in p["ops"]), reverse=True
    )


def test_profile_without_xnnpack_runs_everything_on_tflite_kernels(tflite: dict[str, Path]) -> None:
    p = profile_ops(str(tflite["float32"]), runs=3, warmup=1, cpu={"kernel_mode": "builtin"})
    graph_ops = [op[0] for nodes in model_graph(tflite["float32"]) for op in nodes]
    assert p["xnnpack_partitions"] == 0 and p["ops_by_place"]["xnnpack"] == 0
    assert p["ops_by_place"]["tflite"] == len(graph_ops)
    assert {o["op"] for o in p["ops"]} == set(graph_ops)


def test_summarize_events_per_run_and_partitions() -> None:
    """Two runs of a graph with two XNNPACK partitions around one TFLite op (LiteRT's event
    shapes: (tag, type, elapsed us, op index within its partition))."""
    xnn, tfl = DELEGATE_PROFILED_OPERATOR_INVOKE_EVENT, OPERATOR_INVOKE_EVENT
    one_run = [("Invoke", 1, 1000, 0), ("FC", xnn, 600, 0), ("Add", xnn, 100, 1)]
    one_run += [("SOFTMAX", tfl, 200, 3), ("FC", xnn, 50, 0)]
    p = summarize_events(one_run * 2, runs=2, top=5)
    assert p["run_ms"] == 1.0 and p["xnnpack_partitions"] == 2
    assert p["ops"][0] == {
        "op": "FC",
        "where": "xnnpack",
        "count": 2,
        "total_ms": 0.65,
        "pct": 65.0,
    }
    assert p["ms_by_place"] == {"xnnpack": 0.75, "tflite": 0.2}
    assert p["ops_by_place"] == {"xnnpack": 3, "tflite": 1}


def test_bench_profile_json_and_table(runner: CliRunner, tflite: dict[str, Path]) -> None:
    args = ["bench", tflite["int8"], "--threads", "1", "--runs", "5", "--profile"]
    result = invoke(runner, *args, "--profile-runs", "3", "--json")
    assert result.exit_code == 0, result.output
    entry = json.loads(result.stdout)["results"][0]
    assert set(entry["op_profile"]) == PROFILE_KEYS and entry["op_profile"]["runs"] == 3
    assert entry["cpu_options"] == {"api": "interpreter"}
    text = invoke(runner, *args, "--profile-runs", "3").stdout
    assert "Per-op profile, 1 thread(s), 3 runs" in text and "% of run" in text
    assert entry["op_profile"]["ops"][0]["op"] in text


@pytest.mark.parametrize(
    ("items", "expected"),
    [
        pytest.param([], {"api": "interpreter"}, id="default"),
        pytest.param(
            ["latest_features=true", "clustering=off"],
            {"api": "interpreter", "clustering": False, "latest_features": True},
            id="interpreter-keys",
        ),
        pytest.param(
            ["force_fp16=1", "transient_indirection=yes"],
            {"api": "compiled", "force_fp16": True, "transient_indirection": True},
            id="compiled-only-keys-pick-compiled",
        ),
        pytest.param(
            ["api=compiled", "kernel-mode=builtin"],
            {"api": "compiled", "kernel_mode": "builtin"},
            id="dash-spelling",
        ),
    ],
)
def test_cpu_options_parse_and_round_trip(items: list[str], expected: dict) -> None:
    parsed = parse_cpu_options(items)
    assert parsed == expected
    assert parse_cpu_options(cpu_option_args(parsed)[1::2]) == parsed


@pytest.mark.parametrize(
    ("item", "says"),
    [
        pytest.param("bogus=1", "KEY one of api, latest_features", id="unknown-key"),
        pytest.param("force_fp16", "use KEY=VALUE", id="no-value"),
        pytest.param("force_fp16=maybe", "give true or false", id="bad-bool"),
        pytest.param(
            "kernel_mode=gpu", "choose from delegate, builtin, reference", id="bad-choice"
        ),
    ],
)
def test_bad_cpu_option_is_one_line_and_exit_1(
    runner: CliRunner, tflite: dict[str, Path], item: str, says: str
) -> None:
    result = invoke(runner, "bench", tflite["int8"], "--threads", "1", "--cpu-option", item)
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: --cpu-option") and says in lines[0]


def test_cpu_options_that_contradict_are_refused() -> None:
    with pytest.raises(InputError, match="cannot be combined with api=compiled"):
        BenchSettings(cpu_options=("clustering=false", "force_fp16=true"))
    with pytest.raises(InputError, match="kernel_mode=builtin"):
        BenchSettings(cpu_options=("api=compiled",), xnnpack=False)
    with pytest.raises(InputError, match="aborts XNNPACK"):
        BenchSettings(cpu_options=("force_fp16=true", "weight_cache=/tmp/w.bin"))
    with pytest.raises(InputError, match="apply to accelerators cpu"):
        BenchSettings(profile=True, accelerators=("gpu",))


def test_xnnpack_flags_start_from_the_int8_defaults() -> None:
    assert xnnpack_flags({"api": "compiled"}) is None
    assert xnnpack_flags({"force_fp16": True}) == XNN_QS8_QU8 | XNN_FORCE_FP16
    assert xnnpack_flags({"dynamic_quantized": False}) == (
        XNN_QS8_QU8 | XNN_DISABLE_DYNAMICALLY_QUANTIZED_OPS
    )
    assert xnnpack_flags({"dynamic_quantized": True}) == XNN_QS8_QU8


def test_cpu_options_are_recorded_in_the_result(
    runner: CliRunner, tflite: dict[str, Path], tmp_path: Path
) -> None:
    cache = tmp_path / "weights.cache"
    result = invoke(
        runner,
        *("bench", tflite["float32"], "--threads", "1", "--runs", "5", "--json"),
        *("--cpu-option", "latest_features=true", "--cpu-option", f"weight_cache={cache}"),
    )
    assert result.exit_code == 0, result.output
    entry = json.loads(result.stdout)["results"][0]
    assert entry["cpu_options"] == {
        "api": "compiled",
        "latest_features": True,
        "weight_cache": str(cache),
    }
    assert entry["runs"] == 5 and entry["latency_us"]["p50"] > 0
    assert cache.is_file()  # XNNPACK wrote its weight cache there


def test_profile_is_refused_on_adb_in_one_line(tflite: dict[str, Path]) -> None:
    with pytest.raises(InputError, match="adb target runs benchmark_model"):
        bench(tflite["int8"], BenchSettings(profile=True), AdbTarget())


def test_openvino_dispatch_runs_or_says_why_in_one_line(
    runner: CliRunner, tflite: dict[str, Path]
) -> None:
    """LiteRT's OpenVINO plugin needs OpenVINO 2026.3 libraries: with them the float CNN runs
    whole on OpenVINO and matches the CPU; without them, one line says what is missing."""
    args = ["bench", tflite["float32"], "--threads", "1", "--runs", "5"]
    result = invoke(runner, *args, "--accelerator", "openvino", "--json")
    if result.exit_code == 1:
        lines = result.output.strip().splitlines()
        assert "needs OpenVINO 2026.3 (libopenvino.so.2631)" in lines[-1]
        assert len([ln for ln in lines if ln.startswith("Error:")]) == 1
        return
    entry = json.loads(result.stdout)["results"][0]
    assert entry["accelerator"] == "openvino" and entry["fully_accelerated"] is True
    assert entry["openvino_partitions"] == 1 and entry["cpu_ops"] == 0
    assert entry["max_abs_vs_cpu"] < 1e-4


def test_openvino_line_flags_outputs_identical_to_the_cpu_run(tflite: dict[str, Path]) -> None:
    """A dispatch that reports OpenVINO partitions but returns LiteRT's CPU outputs to the bit
    did not run on OpenVINO (measured on MiniLM, BENCHMARKS.md §11); the report says so."""
    from tfopt.report.bench import text

    doc = bench(tflite["float32"], BenchSettings(threads=(1,), runs=3)).to_dict()
    entry = doc["results"][0]
    entry.update(openvino_ops=7, cpu_ops=0, openvino_partitions=1, device="CPU", float_outputs=True)
    entry["max_abs_vs_cpu"] = 0.0
    assert "did not execute the partitions" in text(doc)
    entry["max_abs_vs_cpu"] = 2e-8
    assert "did not execute" not in text(doc)
