"""The rough edges a new user hits (issue 22, item 9): exit codes, flag names, --json errors,
thread limits, table cells, full label lists, output paths, progress, quiet quantizer, plots."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.conftest import invoke

# (command line, the flag click names): each is refused while click parses, before any work.
BAD_VALUES = {
    "bench-runs": (["bench", "{m}", "--runs", "-5"], "--runs"),
    "bench-threads-0": (["bench", "{m}", "--threads", "0"], "--threads"),
    "bench-threads-huge": (["bench", "{m}", "--threads", "1,100000"], "--threads"),
    "bench-min-seconds": (["bench", "{m}", "--min-seconds", "0"], "--min-seconds"),
    "bench-warmup": (["bench", "{m}", "--warmup", "-1"], "--warmup"),
    "bench-profile-runs": (["bench", "{m}", "--profile-runs", "0"], "--profile-runs"),
    "compare-max-samples": (["compare", "{m}", "{m}", "--data", "d.npz", "--max-samples", "0"],
                            "--max-samples"),
    "convert-num-calibration": (["convert", "{m}", "-o", "x.tflite", "--num-calibration", "0"],
                                "--num-calibration"),
    "convert-seq-len": (["convert", "{m}", "-o", "x.tflite", "--seq-len", "0"], "--seq-len"),
    "generate-threads": (["generate", "{m}", "--threads", "1,2"], "--threads"),
    "tune-threads": (["tune", "{m}", "--data", "d.npz", "--goal", "top1>=0.9", "-o", "t",
                      "--threads", "257"], "--threads"),
    "tune-min-seconds": (["tune", "{m}", "--data", "d.npz", "--goal", "top1>=0.9", "-o", "t",
                          "--min-seconds", "-1"], "--min-seconds"),
    "optimize-batch-size": (["optimize", "{m}", "--recipe", "r", "--data", "d", "-o", "o",
                             "--batch-size", "0"], "--batch-size"),
    "demo-threads": (["demo", "--threads", "0"], "--threads"),
}  # fmt: skip


def _args(template: list[str], model: Path) -> list[str]:
    return [a.format(m=model) for a in template]


@pytest.mark.parametrize("case", list(BAD_VALUES))
def test_value_errors_are_usage_errors_naming_the_flag(
    runner: CliRunner, tflite: dict[str, Path], case: str
) -> None:
    template, flag = BAD_VALUES[case]
    result = invoke(runner, *_args(template, tflite["float32"]))
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"Error: Invalid value for '{flag}'"), result.stderr
    for python_name in ("min_seconds", "max_samples", "num_calibration", "batch_size"):
        assert python_name not in result.stderr


@pytest.mark.parametrize("case", ["bench-runs", "bench-threads-huge", "tune-threads"])
def test_usage_error_under_json_is_one_document(
    runner: CliRunner, tflite: dict[str, Path], case: str
) -> None:
    template, flag = BAD_VALUES[case]
    result = invoke(runner, *_args(template, tflite["float32"]), "--json")
    assert result.exit_code == 2
    doc = json.loads(result.stdout)  # exactly one document
    assert doc["exit_code"] == 2 and doc["error"].startswith(f"Invalid value for '{flag}'")


def test_unknown_flag_and_library_error_under_json(runner: CliRunner, tmp_path: Path) -> None:
    unknown = invoke(runner, "inspect", tmp_path / "m.tflite", "--bogus", "--json")
    assert unknown.exit_code == 2
    doc = json.loads(unknown.stdout)
    assert doc["exit_code"] == 2 and doc["error"].startswith("No such option '--bogus'")
    missing = invoke(runner, "inspect", tmp_path / "nope.tflite", "--json")
    assert missing.exit_code == 1
    doc = json.loads(missing.stdout)
    assert doc["exit_code"] == 1 and "not found" in doc["error"]


def test_failed_check_under_json_prints_only_its_result(
    runner: CliRunner, files: dict[str, Path], tflite: dict[str, Path]
) -> None:
    result = invoke(runner, "compare", tflite["float32"], tflite["int8"], "--data", files["test"],
                    "--max-samples", "20", "--min-sqnr", "90", "--json")  # fmt: skip
    assert result.exit_code == 1
    doc = json.loads(result.stdout)  # the result document, no second {"error": ...} after it
    assert doc["passed"] is False and "error" not in doc


def test_subprocess_usage_error_exit_code_and_json(tflite: dict[str, Path]) -> None:
    """A real process: the exit status a shell sees, and the one JSON document on stdout."""
    cmd = [sys.executable, "-m", "tfopt", "bench", str(tflite["float32"]), "--threads", "0"]
    plain = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert plain.returncode == 2 and plain.stdout == ""
    assert "Error: Invalid value for '--threads': 0 is not a thread count" in plain.stderr
    as_json = subprocess.run([*cmd, "--json"], capture_output=True, text=True, timeout=120)
    assert as_json.returncode == 2
    assert json.loads(as_json.stdout)["exit_code"] == 2


def test_library_refuses_a_thread_count_above_the_bound() -> None:
    from tfopt.errors import InputError
    from tfopt.timing import MAX_THREADS, BenchSettings

    BenchSettings(threads=(1, MAX_THREADS))
    with pytest.raises(InputError, match=f"more than {MAX_THREADS}"):
        BenchSettings(threads=(MAX_THREADS + 1,))
