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
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import invoke, require
from tests.sshd import SSHD, Sshd, free_port, keygen, local_sshd
from tfopt.targets import (
    AdbTarget,
    RunSpec,
    cpu_mask,
    gpu_env,
    parse_benchmark_output,
)

RECORDED = Path(__file__).parent / "data" / "benchmark_model"


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sshd]:
    """A real sshd on 127.0.0.1 with a throw-away host key and client key."""
    require(SSHD.exists(), "openssh-server (make sshd)")
    with local_sshd(tmp_path_factory.mktemp("sshd")) as server:
        yield server


def test_ssh_target_returns_the_local_json_shape(
    runner: Any, sshd: Sshd, tflite: dict[str, Path], files: dict[str, Path]
) -> None:
    """Same runtime zipapp, same input data (copied along), same JSON; the machine names the host."""
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


def test_gpu_over_ssh(runner: Any, sshd: Sshd, tflite: dict[str, Path], soft_gpu: Path) -> None:
    """The device's own Vulkan setup travels in --remote-python (here: the software GPU)."""
    env = gpu_env({"TFOPT_SOFT_GPU": str(soft_gpu)})
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
    result = invoke(runner, "bench", tflite["int8"], *args, "--remote-python", python)
    assert result.exit_code == 1
    assert expected in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1


def test_ssh_host_that_never_answers_times_out(runner: Any, tflite: dict[str, Path]) -> None:
    """A port that accepts TCP but never speaks ssh: one line once ConnectTimeout passes."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(4)
        port = server.getsockname()[1]
        result = invoke(runner, "bench", tflite["int8"], "--target", f"ssh://me@127.0.0.1:{port}",
                        "--ssh-option", "ConnectTimeout=2")  # fmt: skip
    # ssh's own ConnectTimeout fired (tfopt's answer timeout would say "no answer within").
    assert result.exit_code == 1 and "connection timed out" in result.output, result.output


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
        "memory_delta.txt": (17.851, 2.104, 1039.66, None, 12.1055, None),
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
    spec = RunSpec(accelerator="gpu", threads=4, warmup=3, min_seconds=1.0, runs=50, xnnpack=True,
                   pin="4,5,6,7")
    target = AdbTarget("emulator-5554", "bm")
    cmd = target.command(f"{target.device_dir}/m.tflite", spec)
    assert cmd[:3] == ["taskset", "f0", f"{target.device_dir}/benchmark_model"]
    assert "--use_gpu=true" in cmd and "--use_nnapi=false" in cmd and "--use_xnnpack=false" in cmd
    assert "--num_threads=4" in cmd and "--num_runs=50" in cmd and "--warmup_runs=3" in cmd
    assert cpu_mask("0") == "1" and cpu_mask("0,2") == "5"


def test_adb_without_a_device_is_one_clear_line(
    runner: Any, tflite: dict[str, Path], tmp_path: Path
) -> None:
    require(shutil.which("adb") is not None, "adb (make adb)")
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


# --- adb bookkeeping, against a stand-in for adb ----------------------------------------------------
# Without a phone, `adb` here is a small script: `push` copies, `shell` runs the joined words in
# this machine's /bin/sh (as adb does on the device) with /data/local/tmp mapped into a folder.
# "benchmark_model" is a shell script that records the sha256 of the graph it was given.

FAKE_ADB = """#!{python}
import os, shutil, subprocess, sys
root = os.environ["FAKE_ADB_ROOT"]
args = sys.argv[1:]
if args[:1] == ["-s"]:
    args = args[2:]
with open(os.path.join(root, "commands.log"), "a") as log:
    log.write(" ".join(args) + "\\n")
def dev(text):
    return text.replace("/data/local/tmp", root + "/data/local/tmp")
if args == ["get-state"]:
    print("device")
    sys.exit(0)
if args[0] == "push":
    shutil.copy(args[1], dev(args[2]))
    sys.exit(0)
line = " ".join(args[1:])
fail = os.environ.get("FAKE_ADB_FAIL")
if fail and line.startswith(fail):
    print(fail.split()[0] + ": Permission denied", file=sys.stderr)
    sys.exit(1)
if args[1] == "getprop":
    print({{"ro.product.model": "Fake", "ro.product.cpu.abi": "arm64-v8a"}}.get(args[2], "14"))
    sys.exit(0)
sys.exit(subprocess.run(["sh", "-c", dev(line)]).returncode)
"""

FAKE_BENCHMARK_MODEL = """#!/bin/sh
for a in "$@"; do case "$a" in --graph=*) graph="${a#--graph=}";; esac; done
sha256sum "$graph" | cut -d' ' -f1 >> "$FAKE_ADB_ROOT/graphs.log"
[ -n "$FAKE_BENCHMARK_FAIL" ] && { echo "ERROR: Failed to load model $graph"; exit 1; }
echo "count=5 first=1100 curr=1000 min=900 max=1100 avg=1000 std=50"
echo "Inference timings in us: Init: 900, First inference: 1100, Warmup (avg): 1050, \\
Inference (avg): 1000"
"""


@pytest.fixture()
def fake_adb(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    root = tmp_path / "phone"
    (root / "data/local/tmp").mkdir(parents=True)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "adb").write_text(FAKE_ADB.format(python=sys.executable))
    binary = tmp_path / "benchmark_model"
    binary.write_text(FAKE_BENCHMARK_MODEL)
    for script in (bin_dir / "adb", binary):
        script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_ADB_ROOT", str(root))
    return {"root": root, "tmp": root / "data/local/tmp", "binary": binary}


def _adb_bench(runner: Any, fake: dict[str, Path], *args: Any) -> Any:
    return invoke(runner, "bench", *args, "--target", "adb", "--benchmark-binary",
                  fake["binary"], "--threads", "1")  # fmt: skip


def test_adb_keys_models_by_content_not_name(
    runner: Any, fake_adb: dict[str, Path], tflite: dict[str, Path], tmp_path: Path
) -> None:
    """a/m.tflite, b/m.tflite, a/m.tflite: each timing runs the bytes its sha256 names."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    shutil.copy(tflite["float32"], tmp_path / "a" / "m.tflite")
    shutil.copy(tflite["int8"], tmp_path / "b" / "m.tflite")
    models = [tmp_path / "a" / "m.tflite", tmp_path / "b" / "m.tflite", tmp_path / "a" / "m.tflite"]
    result = _adb_bench(runner, fake_adb, *models, "--json")
    assert result.exit_code == 0, result.output
    reported = [d["sha256"] for d in json.loads(result.stdout)["models"]]
    timed = (fake_adb["root"] / "graphs.log").read_text().split()
    assert timed == reported and reported[0] == reported[2] != reported[1]
    pushes = [ln for ln in (fake_adb["root"] / "commands.log").read_text().splitlines()
              if ln.startswith("push") and ln.endswith(".tflite")]  # fmt: skip
    assert len(pushes) == 2  # the same bytes go to the phone once


def test_adb_runs_in_its_own_folder_and_removes_only_it(
    runner: Any, fake_adb: dict[str, Path], tflite: dict[str, Path]
) -> None:
    """Another run's folder (or the old fixed one) survives; ours is gone afterwards."""
    others = [fake_adb["tmp"] / "tfopt", fake_adb["tmp"] / "tfopt-0123456789ab"]
    for folder in others:
        folder.mkdir()
        (folder / "m.tflite").write_bytes(b"another run's model")
    assert AdbTarget().device_dir != AdbTarget().device_dir
    result = _adb_bench(runner, fake_adb, tflite["int8"])
    assert result.exit_code == 0, result.output
    assert sorted(fake_adb["tmp"].iterdir()) == others
    assert all((folder / "m.tflite").exists() for folder in others)


@pytest.mark.parametrize(
    "fail, expected",
    [("mkdir", "making /data/local/tmp/tfopt-"), ("chmod", "making benchmark_model executable")],
)
def test_adb_mkdir_and_chmod_failures_are_one_line(
    fail: str,
    expected: str,
    runner: Any,
    fake_adb: dict[str, Path],
    tflite: dict[str, Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FAKE_ADB_FAIL", fail)
    result = _adb_bench(runner, fake_adb, tflite["int8"])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], result.output
    assert f"failed: {fail}: Permission denied" in lines[0]


def test_adb_cleanup_failure_never_hides_the_timing_failure(
    runner: Any, fake_adb: dict[str, Path], tflite: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_ADB_FAIL", "rm -rf")
    monkeypatch.setenv("FAKE_BENCHMARK_FAIL", "1")
    result = _adb_bench(runner, fake_adb, tflite["int8"])
    assert result.exit_code == 1
    assert "Failed to load model" in result.output and "removing" not in result.output
    # With nothing else wrong, the failed cleanup is the error (files were left on the phone).
    monkeypatch.delenv("FAKE_BENCHMARK_FAIL")
    result = _adb_bench(runner, fake_adb, tflite["int8"])
    assert result.exit_code == 1 and "removing /data/local/tmp/tfopt-" in result.output


def test_adb_report_labels_means_as_means(
    runner: Any, fake_adb: dict[str, Path], tflite: dict[str, Path], tmp_path: Path
) -> None:
    """benchmark_model reports a mean, not a median: bench.md must not call it p50."""
    out = tmp_path / "report"
    result = invoke(runner, "bench", tflite["int8"], "--target", "local", "--target", "adb",
                    "--benchmark-binary", fake_adb["binary"], "--threads", "1", "--runs", "5",
                    "--report", out)  # fmt: skip
    assert result.exit_code == 0, result.output
    table = (out / "bench.md").read_text()
    assert "| mean ms adb cpu 1t |" in table and "p50 ms adb" not in table
    assert "| p50 ms cpu 1t |" in table


# --- crashes over ssh ---------------------------------------------------------------------------


def test_ssh_crash_is_reported_as_a_crash(
    runner: Any, sshd: Sshd, tflite: dict[str, Path], tmp_path: Path
) -> None:
    """A python on the device that segfaults in the runtime: the local crash message."""
    wrapper = tmp_path / "crashing-python"
    wrapper.write_text(
        "#!/bin/sh\n"
        f'case "$*" in *runtime.pyz*) exec {sys.executable} -c '
        '"import ctypes; ctypes.string_at(0)";; esac\n'
        f'exec {sys.executable} "$@"\n'
    )
    wrapper.chmod(0o755)
    result = invoke(runner, "bench", tflite["int8"], *sshd.args(), "--remote-python", wrapper,
                    "--threads", "1", "--runs", "5")  # fmt: skip
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert "the LiteRT runtime crashed (SIGSEGV) while timing" in lines[0]
