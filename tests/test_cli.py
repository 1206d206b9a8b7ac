"""Every command in-process through click's CliRunner, plus one real subprocess smoke test."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.conftest import invoke


def test_help_lists_commands(runner: CliRunner) -> None:
    """Read the names from the Commands: section itself (the group's docstring names them too)."""
    result = invoke(runner, "--help")
    assert result.exit_code == 0
    section = result.output.split("\nCommands:\n", 1)[1]
    listed = {line.split()[0] for line in section.splitlines() if line.startswith("  ")}
    expected = {"convert", "inspect", "compare", "bench", "optimize", "recipes", "generate", "demo"}
    assert expected <= listed, listed


def test_convert_json(runner: CliRunner, files: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "m.tflite"
    result = invoke(
        runner,
        "convert",
        files["keras"],
        "-o",
        out,
        "--precision",
        "int8",
        "--calibration",
        files["calib"],
        "--check-data",
        files["test"],
        "--json",
    )
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["precision"] == "int8" and doc["size_bytes"] == out.stat().st_size
    assert doc["check"]["passed"] and doc["check"]["samples"] == 32


def test_convert_human(runner: CliRunner, files: dict[str, Path], tmp_path: Path) -> None:
    result = invoke(
        runner, "convert", files["h5"], "-o", tmp_path / "m.tflite", "--precision", "float16"
    )
    assert result.exit_code == 0
    assert "wrote" in result.stdout and "check passed" in result.stdout


def test_inspect_json_keys(runner: CliRunner, tflite: dict[str, Path]) -> None:
    result = invoke(runner, "inspect", tflite["int8io"], "--json")
    assert result.exit_code == 0
    doc = json.loads(result.stdout)
    for key in (
        "inputs",
        "outputs",
        "signatures",
        "ops",
        "tensor_dtypes",
        "size_bytes",
        "gzip_bytes",
        "custom_ops",
    ):
        assert key in doc
    (inp,) = doc["inputs"]
    assert inp["name"] == "image" and inp["shape"] == [-1, 8, 8, 1] and inp["dtype"] == "int8"
    assert set(inp["quantization"]) == {"scale", "zero_point"}
    assert doc["signatures"] == {"serving_default": {"inputs": ["image"], "outputs": ["probs"]}}
    assert doc["ops"]["CONV_2D"] == 1 and doc["custom_ops"] == []
    assert doc["gzip_bytes"] < doc["size_bytes"]


def test_inspect_float_model_has_null_quantization(
    runner: CliRunner, tflite: dict[str, Path]
) -> None:
    doc = json.loads(invoke(runner, "inspect", tflite["float32"], "--json").stdout)
    assert doc["inputs"][0]["quantization"] is None
    human = invoke(runner, "inspect", tflite["float32"]).stdout
    (line,) = [ln for ln in human.splitlines() if ln.startswith("  image:")]
    assert "scale=" not in line and "scale=" in invoke(runner, "inspect", tflite["int8io"]).stdout


def test_compare_keras_vs_int8_with_labels(
    runner: CliRunner, files: dict[str, Path], tflite: dict[str, Path]
) -> None:
    result = invoke(
        runner, "compare", files["keras"], tflite["int8io"], "--data", files["test"], "--json"
    )
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    (out,) = doc["outputs"]
    assert set(out) >= {"name", "max_abs", "mean_abs", "sqnr_db", "cosine"}
    assert doc["samples"] == 360
    assert doc["top1_agreement"] > 0.97
    assert abs(doc["accuracy"]["reference"] - doc["accuracy"]["candidate"]) < 0.02
    assert doc["accuracy"]["reference"] > 0.85


def test_compare_tflite_vs_tflite_and_threshold_failure(
    runner: CliRunner, files: dict[str, Path], tflite: dict[str, Path]
) -> None:
    ok = invoke(
        runner,
        "compare",
        tflite["float32"],
        tflite["int8"],
        "--data",
        files["test"],
        "--max-samples",
        "50",
    )
    assert ok.exit_code == 0 and "top-1 agreement" in ok.stdout
    bad = invoke(
        runner,
        "compare",
        tflite["float32"],
        tflite["int8"],
        "--data",
        files["test"],
        "--max-samples",
        "50",
        "--min-sqnr",
        "90",
        "--json",
    )
    assert bad.exit_code == 1
    doc = json.loads(bad.stdout)  # still exactly one JSON document
    assert doc["passed"] is False and "SQNR" in doc["failures"][0]
    assert "check failed" in bad.stderr


def test_compare_non_classifier_has_null_top1(
    runner: CliRunner, bert: object, bert_data: Path, tmp_path: Path
) -> None:
    from tfopt.conversion import convert

    a, b = tmp_path / "a.tflite", tmp_path / "b.tflite"
    convert(bert, a, "float32", seq_len=32)
    convert(bert, b, "dynamic", seq_len=32)
    doc = json.loads(invoke(runner, "compare", a, b, "--data", bert_data, "--json").stdout)
    assert doc["top1_agreement"] is None and doc["accuracy"] is None
    assert {o["name"] for o in doc["outputs"]} == {"pooled_output", "sequence_output"}


def test_bench_json(runner: CliRunner, tflite: dict[str, Path]) -> None:
    result = invoke(runner, "bench", tflite["int8"], "--threads", "1,2", "--runs", "50", "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert len(doc["sha256"]) == 64 and doc["machine"]["cores"] >= 1
    assert {"cpu", "ai_edge_litert", "numpy", "python"} <= set(doc["machine"])
    assert [r["threads"] for r in doc["results"]] == [1, 2]
    for r in doc["results"]:
        assert r["runs"] == 50 and r["xnnpack"] is True
        lat = r["latency_us"]
        assert set(lat) == {"p50", "p90", "p99", "mean", "std", "min", "max"}
        assert 0 < lat["min"] <= lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"]
        assert r["load_ms"] > 0 and r["first_ms"] > 0 and r["peak_rss_mb"] > 10


def test_bench_no_xnnpack_repeat_and_data(
    runner: CliRunner, tflite: dict[str, Path], files: dict[str, Path]
) -> None:
    result = invoke(
        runner,
        "bench",
        tflite["float32"],
        "--threads",
        "1",
        "--min-seconds",
        "0.05",
        "--no-xnnpack",
        "--repeat",
        "2",
        "--data",
        files["calib"],
        "--json",
    )
    assert result.exit_code == 0, result.output
    (r,) = json.loads(result.stdout)["results"]
    assert r["xnnpack"] is False and r["repeats"] == 2 and len(r["repeat_p50_us"]) == 2
    assert r["runs"] >= 10


def test_bench_human(runner: CliRunner, tflite: dict[str, Path]) -> None:
    result = invoke(runner, "bench", tflite["float32"], "--threads", "1", "--runs", "20")
    assert result.exit_code == 0 and "p50_ms" in result.stdout


@pytest.mark.slow
def test_demo_end_to_end(runner: CliRunner, tmp_path: Path) -> None:
    out = tmp_path / "demo"
    result = invoke(
        runner, "demo", "--out", out, "--threads", "1", "--min-seconds", "0.05", "--json"
    )
    assert result.exit_code == 0, result.output
    rows = {r["precision"]: r for r in json.loads(result.stdout)["rows"]}
    assert set(rows) == {"float32", "float16", "dynamic", "int8", "int16x8"}
    assert rows["int8"]["accuracy"] >= rows["float32"]["accuracy"] - 1.0
    assert rows["int8"]["size_kb"] <= 0.30 * rows["float32"]["size_kb"]
    assert rows["float32"]["accuracy"] > 90
    report = json.loads((out / "report.json").read_text())
    assert report["rows"] == list(rows.values())
    assert "| precision |" in (out / "report.md").read_text()
    assert (out / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # The demo's files work with the CLI: rerun the compare step by hand.
    again = invoke(
        runner,
        "compare",
        out / "digits_cnn.keras",
        out / "digits_int8.tflite",
        "--data",
        out / "digits_test.npz",
        "--json",
    )
    assert json.loads(again.stdout)["accuracy"]["candidate"] * 100 == pytest.approx(
        rows["int8"]["accuracy"], abs=0.01
    )
    # A second run without --overwrite refuses to touch the earlier results.
    refused = invoke(runner, "demo", "--out", out)
    assert refused.exit_code == 1 and "--overwrite" in refused.stderr


def test_subprocess_json_stdout_is_clean(files: dict[str, Path], tmp_path: Path) -> None:
    """A real process: TensorFlow and the converter print nothing on stdout in --json mode."""
    out = tmp_path / "m.tflite"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "tfopt",
            "convert",
            str(files["keras"]),
            "-o",
            str(out),
            "--precision",
            "int8",
            "--calibration",
            str(files["calib"]),
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout)["precision"] == "int8"
    # TensorFlow's start-up chatter (absl, CUDA probing, oneDNN, XNNPACK notices) stays hidden.
    for word in ("absl", "cuInit", "cuda", "oneDNN", "XNNPACK", "tensorflow/", "] "):
        assert word not in proc.stderr, proc.stderr[-2000:]


NATIVE_NOISE = (
    "import os, sys\n"
    "from tfopt.quiet import quiet\n"
    "with quiet(sys.argv[1] == 'debug'):\n"
    "    os.write(2, b'WARNING: All log messages before absl::InitializeLog() is called are written"
    " to STDERR\\n')\n"
    "    os.write(2, b'I0000 00:00:1795329797.138262   13391 cudart_stub.cc:31] Could not find cuda"
    " drivers\\n')\n"
    "    os.write(2, b'E0000 00:00:1795329805.081757   13391 cuda_platform.cc:52] failed call to"
    " cuInit\\n')\n"
    "    os.write(2, b'2026-01-02 03:04:05.678901: I tensorflow/core/util/port.cc:153] oneDNN custom"
    " operations are on.\\n')\n"
    "    os.write(2, b'INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\\n')\n"
    "    os.write(2, b'a line of our own\\n\\rtiming: 50%')\n"
    "    sys.stderr.write('\\rtiming: 100%\\n')\n"
    "    os.write(2, b'F0000 00:00:1.2 1 x.cc:1] Check failed: fatal lines always pass\\n')\n"
)


@pytest.mark.parametrize("mode", ["quiet", "debug"])
def test_native_log_lines_only_with_debug(mode: str) -> None:
    """fd-2 output of native code: log lines dropped, our own lines and progress bars kept."""
    proc = subprocess.run([sys.executable, "-c", NATIVE_NOISE, mode], capture_output=True,
                          timeout=60)  # fmt: skip
    stderr = proc.stderr.decode()  # bytes: text mode would turn "\r" into "\n"
    assert proc.returncode == 0, stderr
    kept = ["a line of our own\n", "\rtiming: 50%", "\rtiming: 100%\n"]
    fatal = "F0000 00:00:1.2 1 x.cc:1] Check failed: fatal lines always pass\n"
    if mode == "quiet":
        assert stderr == "".join(kept) + fatal
    else:
        assert stderr.count("\n") == 8 and "cuInit" in stderr and "oneDNN" in stderr


def test_warnings_are_not_switched_off_for_everyone(
    runner: CliRunner, tflite: dict[str, Path]
) -> None:
    """A command leaves the process's warning filters as it found them."""
    import warnings

    before = list(warnings.filters)
    assert invoke(runner, "inspect", tflite["float32"]).exit_code == 0
    assert warnings.filters == before
    with pytest.warns(DeprecationWarning):
        warnings.warn("still shown", DeprecationWarning, stacklevel=1)


def test_bench_matrix_report(runner: CliRunner, tflite: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "report"
    result = invoke(
        runner,
        "bench",
        tflite["float32"],
        tflite["int8"],
        "--threads",
        "1,2",
        "--runs",
        "20",
        "--report",
        out,
        "--json",
    )
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert [Path(m["model"]).name for m in doc["models"]] == [
        "cnn_float32.tflite",
        "cnn_int8.tflite",
    ]
    saved = json.loads((out / "bench.json").read_text())
    assert len(saved["models"]) == 2 and saved["machines"]["local"]["cores"] >= 1
    table = (out / "bench.md").read_text()
    assert "| cnn_int8.tflite |" in table and "p50 ms cpu 2t" in table
    assert (out / "bench.png").read_bytes()[:4] == b"\x89PNG"
    human = invoke(
        runner, "bench", tflite["float32"], tflite["int8"], "--threads", "1", "--runs", "10"
    )
    assert human.exit_code == 0 and human.stdout.count("sha256") == 2
    again = invoke(runner, "bench", tflite["float32"], "--runs", "5", "--report", out)
    assert again.exit_code == 1 and "--overwrite" in again.stderr


def test_every_view_renders_text_markdown_and_json() -> None:
    """The report stage owns the views: each result type has a terminal and a Markdown view;
    the bench matrix and the demo a PNG too."""
    from tfopt import report

    for view in report.View:
        assert {"text", "markdown", "json"} <= set(report.formats(view)), view
    assert "png" in report.formats("bench") and "png" in report.formats("demo")
    doc = {"samples": 3, "pooling": "mean", "mean_cosine": 0.99, "worst_cosine": 0.9}
    assert "worst 0.90000" in report.render("embedding", doc)
    assert report.render("embedding", doc, "markdown").startswith("# tfopt compare --embedding")
    with pytest.raises(ValueError, match="no png view of a convert result"):
        report.render("convert", {}, "png")


def test_bench_matrix_from_python(tflite: dict[str, Path]) -> None:
    """What `tfopt bench A B` does, from the library: a matrix result the report stage renders."""
    import tfopt
    from tfopt import report

    seen: list[tuple[int, int]] = []
    matrix = tfopt.bench_matrix(
        [tflite["float32"], tflite["int8"]],
        settings=tfopt.BenchSettings(threads=(1,), runs=5, warmup=1),
        on_progress=lambda done, total: seen.append((done, total)),
    )
    assert [Path(r.model).name for r in matrix.reports] == ["cnn_float32.tflite", "cnn_int8.tflite"]
    assert seen == [(0, 2), (1, 2), (2, 2)]
    table = report.render(report.View.BENCH, matrix, "markdown")
    assert "| cnn_int8.tflite |" in table and "p50 ms cpu 1t" in table
    assert report.render(report.View.BENCH, matrix, "png")[:4] == b"\x89PNG"
    assert json.loads(report.render(report.View.BENCH, matrix.reports[0], "json"))["results"]
