"""Remote targets: a real OpenSSH server on 127.0.0.1, adb up to "no device", benchmark_model
output parsing on recorded real outputs, and CPU pinning."""

from __future__ import annotations

import getpass
import json
import os
import shlex
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import invoke
from tests.sshd import SSHD, Sshd, free_port, keygen, local_sshd
from tfopt.targets import (
    AdbTarget,
    RunSpec,
    cpu_mask,
    gpu_env,
    parse_benchmark_output,
    soft_gpu_dir,
)

RECORDED = Path(__file__).parent / "data" / "benchmark_model"


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sshd]:
    """A real sshd on 127.0.0.1 with a throw-away host key and client key."""
    if not SSHD.exists():
        pytest.skip("openssh-server is not installed (make test installs it)")
    with local_sshd(tmp_path_factory.mktemp("sshd")) as server:
        yield server


def test_ssh_target_returns_the_local_json_shape(
    runner: Any, sshd: Sshd, tflite: dict[str, Path], files: dict[str, Path]
) -> None:
    """Same harness, same input data (copied along), same JSON; the machine names the host."""
    common = ["--threads", "1", "--runs", "30", "--warmup", "2", "--data", files["calib"], "--json"]
    local = invoke(runner, "bench", tflite["int8"], *common)
    remote = invoke(
        runner, "bench", tflite["int8"], *common, *sshd.args(), "--remote-python", sys.executable
    )
    assert remote.exit_code == 0, remote.output
    l_doc, r_doc = json.loads(local.output), json.loads(remote.output)
    assert r_doc["target"] == sshd.url and l_doc["target"] == "local"
    assert r_doc["sha256"] == l_doc["sha256"]
    assert r_doc["machine"]["host"] == "127.0.0.1"
    assert r_doc["machine"]["ai_edge_litert"] == l_doc["machine"]["ai_edge_litert"]
    assert set(r_doc["results"][0]) == set(l_doc["results"][0])
    assert r_doc["results"][0]["runs"] == 30


def test_ssh_and_local_in_one_matrix(
    runner: Any, sshd: Sshd, tflite: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "report"
    result = invoke(
        runner, "bench", tflite["float32"], tflite["int8"], "--target", "local", *sshd.args(),
        "--remote-python", sys.executable, "--threads", "1", "--runs", "10", "--report", out,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    table = (out / "bench.md").read_text()
    assert f"p50 ms {sshd.url} cpu 1t" in table and "p50 ms cpu 1t" in table
    assert (out / "bench.png").stat().st_size > 0
    assert len(json.loads((out / "bench.json").read_text())["models"]) == 4


def test_ssh_cleans_up_the_device(runner: Any, sshd: Sshd, tflite: dict[str, Path]) -> None:
    before = set(Path("/tmp").glob("tfopt-bench.*"))
    result = invoke(runner, "bench", tflite["int8"], *sshd.args(), "--remote-python",
                    sys.executable, "--threads", "1", "--runs", "5")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert set(Path("/tmp").glob("tfopt-bench.*")) == before


@pytest.mark.skipif(soft_gpu_dir() is None, reason="no software GPU (make soft-gpu)")
def test_gpu_over_ssh(runner: Any, sshd: Sshd, tflite: dict[str, Path]) -> None:
    """The device's own Vulkan setup travels in --remote-python (here: the software GPU)."""
    env = gpu_env({})
    python = shlex.join(
        ["env", f"VK_ICD_FILENAMES={env['VK_ICD_FILENAMES']}",
         f"LD_LIBRARY_PATH={env['LD_LIBRARY_PATH']}", sys.executable]
    )  # fmt: skip
    result = invoke(runner, "bench", tflite["float32"], *sshd.args(), "--remote-python", python,
                    "--accelerator", "gpu", "--threads", "1", "--runs", "5", "--json")  # fmt: skip
    assert result.exit_code == 0, result.output
    gpu = json.loads(result.output)["results"][0]
    assert gpu["fully_accelerated"] is True and gpu["software_gpu"] is True
    assert gpu["max_abs_vs_cpu"] < 1e-2


@pytest.mark.parametrize(
    "case, expected",
    [
        ("refused_port", "connection refused"),
        ("wrong_key", "the key was refused"),
        ("no_python", "python not found on the device"),
        ("no_litert", "ai_edge_litert missing"),
    ],
)
def test_ssh_failures_are_one_clear_line(
    case: str, expected: str, runner: Any, sshd: Sshd, tflite: dict[str, Path], tmp_path: Path
) -> None:
    args = sshd.args()
    python = sys.executable
    if case == "refused_port":
        args[1] = f"ssh://{getpass.getuser()}@127.0.0.1:{free_port()}"
    elif case == "wrong_key":
        keygen(tmp_path / "other")
        args = sshd.args(key=tmp_path / "other")
    elif case == "no_python":
        python = "/nonexistent/python3"
    else:  # a real python on the device, without the LiteRT runtime
        base = getattr(sys, "_base_executable", sys.executable)
        subprocess.run([base, "-m", "venv", "--without-pip", tmp_path / "bare"], check=True)
        python = str(tmp_path / "bare" / "bin" / "python")
    started = time.monotonic()
    result = invoke(runner, "bench", tflite["int8"], *args, "--remote-python", python)
    assert result.exit_code == 1
    assert expected in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output
    assert time.monotonic() - started < 60


def test_ssh_host_that_never_answers_times_out(runner: Any, tflite: dict[str, Path]) -> None:
    """A port that accepts TCP but never speaks ssh: one line once ConnectTimeout passes."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(4)
        port = server.getsockname()[1]
        started = time.monotonic()
        result = invoke(runner, "bench", tflite["int8"], "--target", f"ssh://me@127.0.0.1:{port}",
                        "--ssh-option", "ConnectTimeout=2")  # fmt: skip
    assert result.exit_code == 1 and "connection timed out" in result.output, result.output
    assert time.monotonic() - started < 30


@pytest.mark.parametrize(
    "target, expected",
    [
        ("sftp://host", "use local, ssh://user@host[:port], adb or adb:SERIAL"),
        ("ssh://me@host:notaport", "the port is not a number"),
        ("ssh://me@host --ssh-option BatchMode", "expected KEY=VALUE"),
    ],
)
def test_bad_target_is_one_line(
    target: str, expected: str, runner: Any, tflite: dict[str, Path]
) -> None:
    result = invoke(runner, "bench", tflite["int8"], "--target", *target.split())
    assert result.exit_code == 1 and expected in result.output
    assert len(result.output.strip().splitlines()) == 1


@pytest.mark.parametrize("name", sorted(p.name for p in RECORDED.glob("*.txt")))
def test_benchmark_model_parser_on_recorded_outputs(name: str) -> None:
    text = (RECORDED / name).read_text()
    r = parse_benchmark_output(text)
    expected = {
        "cpu_4threads_peak_memory.txt": (0.855, 49.06, 33209.4, 50, 12.8672, None),
        "gpu_opencl_full.txt": (870.557, 130.565, 119375.0, 50, None, True),
        "nnapi_partial_logcat.txt": (126.059, 32.942, 12167.6, 75, None, False),
        "memory_delta.txt": (17.851, 2.104, 1039.66, 0, 12.1055, None),
    }[name]
    got = (r["load_ms"], r["first_ms"], r["latency_us"]["mean"], r["runs"], r["peak_memory_mb"],
           r.get("fully_accelerated"))  # fmt: skip
    assert got == expected
    assert r["latency_stat"] == "mean"


def test_benchmark_model_parser_rejects_output_without_timings() -> None:
    from tfopt.errors import BenchError

    with pytest.raises(BenchError, match="no timings.*Failed to load model"):
        parse_benchmark_output("STARTING!\nERROR: Failed to load model /data/local/tmp/x.tflite\n")


def test_adb_command_line_pins_and_picks_the_delegate() -> None:
    spec = RunSpec("gpu", 4, 3, 1.0, 50, True, "4,5,6,7")
    cmd = AdbTarget("emulator-5554", "bm").command("/data/local/tmp/tfopt/m.tflite", spec)
    assert cmd[:2] == ["taskset", "f0"]
    assert "--use_gpu=true" in cmd and "--use_nnapi=false" in cmd and "--use_xnnpack=false" in cmd
    assert "--num_threads=4" in cmd and "--num_runs=50" in cmd and "--warmup_runs=3" in cmd
    assert cpu_mask("0") == "1" and cpu_mask("0,2") == "5"


@pytest.mark.skipif(shutil.which("adb") is None, reason="adb not installed (make test installs it)")
def test_adb_without_a_device_is_one_clear_line(
    runner: Any, tflite: dict[str, Path], tmp_path: Path
) -> None:
    binary = tmp_path / "benchmark_model"
    binary.write_bytes(b"\x7fELF")
    result = invoke(
        runner, "bench", tflite["int8"], "--target", "adb", "--benchmark-binary", binary
    )
    assert result.exit_code == 1
    assert "no Android device ready" in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1


def test_pin_records_the_cpus(runner: Any, tflite: dict[str, Path]) -> None:
    cpu = sorted(os.sched_getaffinity(0))[0]
    result = invoke(runner, "bench", tflite["int8"], "--threads", "1", "--runs", "10",
                    "--pin", str(cpu), "--json")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["results"][0]["pinned_cpus"] == [cpu]
    bad = invoke(runner, "bench", tflite["int8"], "--runs", "5", "--pin", "4096")
    assert bad.exit_code == 1 and "CPUs available here are" in bad.output
