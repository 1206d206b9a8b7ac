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


def _table_rows(text: str, header: str) -> list[list[str]]:
    """The rows under the fixed-width table whose header line starts with `header`."""
    lines = text.splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith(header))
    rows = []
    for line in lines[start + 2 :]:
        if not line.strip() or line.startswith(("not in", "Per-op")):
            break
        rows.append(line.split())
    return rows


def _column(text: str, column: str) -> list[str]:
    """The cells of `column` in the bench table (cells are aligned under their header)."""
    lines = text.splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith("accel"))
    header = lines[start]
    names = header.split()
    left = header.index(column)
    after = names.index(column) + 1
    right = header.index(names[after], left) if after < len(names) else None
    cells = []
    for line in lines[start + 2 :]:
        if not line.strip():
            break
        cells.append(line[left:right].strip())
    return cells


def test_spread_is_blank_for_one_repeat(runner: CliRunner, tflite: dict[str, Path]) -> None:
    one = invoke(runner, "bench", tflite["float32"], "--threads", "1", "--runs", "5")
    assert one.exit_code == 0, one.output
    assert _column(one.stdout, "spread") == ["-"]  # one repeat has no spread (was "0.0%")
    two = invoke(runner, "bench", tflite["float32"], "--threads", "1", "--runs", "5", "--repeat", "2")
    (cell,) = _column(two.stdout, "spread")
    assert cell.split()[0].endswith("%"), cell


def test_profile_op_counts_are_integers(runner: CliRunner, tflite: dict[str, Path]) -> None:
    result = invoke(runner, "bench", tflite["float32"], "--threads", "1", "--runs", "5",
                    "--profile", "--profile-runs", "3")  # fmt: skip
    assert result.exit_code == 0, result.output
    rows = _table_rows(result.stdout[result.stdout.index("Per-op profile"):], "op ")
    assert rows
    for row in rows:  # op names hold spaces ("Convolution (NHWC, F32) IGEMM"): count follows where
        where = next(i for i, cell in enumerate(row) if cell in ("xnnpack", "tflite"))
        assert row[where + 1].isdigit(), row  # "1", not "1.00"


def test_inspect_json_lists_every_label(
    runner: CliRunner, tflite: dict[str, Path], tmp_path: Path
) -> None:
    names = [f"class {i}" for i in range(10)]
    (tmp_path / "labels.txt").write_text("\n".join(names) + "\n", encoding="utf-8")
    out = tmp_path / "labelled.tflite"
    made = invoke(runner, "metadata", tflite["float32"], "--labels", tmp_path / "labels.txt",
                  "-o", out)  # fmt: skip
    assert made.exit_code == 0, made.output
    doc = json.loads(invoke(runner, "inspect", out, "--json").stdout)
    (labels,) = doc["metadata"]["outputs"][0]["files"]
    assert labels["count"] == 10 and labels["labels"] == names
    text = invoke(runner, "inspect", out).stdout
    assert "(10: class 0, class 1, class 2, class 3, class 4, ...)" in text


@pytest.mark.parametrize("overwrite", [False, True], ids=["plain", "overwrite"])
def test_output_folder_is_refused_before_any_work(
    runner: CliRunner, files: dict[str, Path], tflite: dict[str, Path], tmp_path: Path,
    overwrite: bool,
) -> None:  # fmt: skip
    folder = tmp_path / "out"
    folder.mkdir()
    flags = ["--overwrite"] if overwrite else []
    convert = invoke(runner, "convert", files["keras"], "-o", folder, *flags)
    assert convert.exit_code == 1 and convert.stdout == ""
    assert convert.stderr.strip() == f"Error: {folder} is a folder: give a file path"
    meta = invoke(runner, "metadata", tflite["float32"], "--model-name", "m", "-o", folder, *flags)
    assert meta.exit_code == 1 and "is a folder: give a file path" in meta.stderr
    assert list(folder.iterdir()) == []


@pytest.mark.parametrize("debug", [False, True], ids=["quiet", "debug"])
def test_litert_quantizer_chatter_only_with_debug(
    files: dict[str, Path], tflite: dict[str, Path], tmp_path: Path, debug: bool
) -> None:
    """A real process (the quantizer may run in a child process, writing to the real fds)."""
    cmd = [sys.executable, "-m", "tfopt", *(["--debug"] if debug else []), "convert",
           str(tflite["float32"]), "-o", str(tmp_path / "q.tflite"), "--quantizer", "aeq",
           "--precision", "int8", "--calibration", str(files["calib"])]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    chatter = ("Original model size", "Quantized model size", "Running Calibration")
    both = proc.stdout + proc.stderr
    assert any(c in both for c in chatter) is debug, both[-2000:]
    assert "wrote" in proc.stdout


def test_litert_quantizer_call_prints_nothing_in_process(
    tflite: dict[str, Path], digits: dict, capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    """The backend itself, wherever it runs (a conversion's child process, a tune trial)."""
    from converters.aeq import quantize
    from tfopt.core import Precision

    samples = [{"image": digits["x_train"][i : i + 1]} for i in range(40)]  # 40 x 4 ops >= 100
    model = quantize(tflite["float32"].read_bytes(), Precision.INT8,
                     calibration={"serving_default": samples})  # fmt: skip
    assert model[4:8] == b"TFL3"
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == "", captured


def _on_terminal(*args: object) -> tuple[int, str, str]:
    """Run tfopt with stderr on a pseudo-terminal (as in a shell); (exit code, stdout, stderr)."""
    import os
    import pty

    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "tfopt", *map(str, args)],
                            stdout=subprocess.PIPE, stderr=slave)  # fmt: skip
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: every writer has closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    assert proc.stdout is not None
    out = proc.stdout.read().decode()
    return proc.wait(timeout=300), out, b"".join(chunks).decode(errors="replace")


def test_progress_on_a_terminal_only(
    files: dict[str, Path], tflite: dict[str, Path], tmp_path: Path
) -> None:
    code, out, err = _on_terminal("convert", files["keras"], "-o", tmp_path / "a.tflite")
    assert code == 0 and "wrote" in out, err
    assert "converting" in err and "\r" in err, err  # the spinner, redrawn in place
    assert "\x1b[A" not in err  # tqdm's leave=False clears its line; nothing left above
    code, out, err = _on_terminal("compare", files["keras"], tflite["float32"], "--data",
                                  files["test"])  # fmt: skip
    assert code == 0 and "comparing" in err, err
    code, out, err = _on_terminal("convert", files["keras"], "-o", tmp_path / "b.tflite", "--json")
    assert code == 0 and json.loads(out)["precision"] == "float32"
    assert "converting" not in err, err  # --json: silent
    piped = subprocess.run([sys.executable, "-m", "tfopt", "convert", str(files["keras"]), "-o",
                            str(tmp_path / "c.tflite")], capture_output=True, text=True,
                           timeout=300)  # fmt: skip
    assert piped.returncode == 0 and "converting" not in piped.stderr  # not a terminal: silent


LONG = "mobilenet_v3_large_imagenet_224_finetuned_on_user_photos_export_final_v2_int8.tflite"
CJK = "模型.tflite"


def test_bench_png_long_and_non_ascii_names(
    runner: CliRunner, tflite: dict[str, Path], tmp_path: Path
) -> None:
    """No matplotlib warning (as errors here: "Glyph missing" used to print pages), names
    shortened and drawable in the PNG, full names kept in JSON."""
    import shutil
    import warnings

    from tfopt import report

    models = [tmp_path / LONG, tmp_path / CJK]
    shutil.copy(tflite["float32"], models[0])
    shutil.copy(tflite["int8"], models[1])
    out = tmp_path / "report"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = invoke(runner, "bench", *models, "--threads", "1", "--runs", "5", "--report", out)
        assert result.exit_code == 0, result.output
        doc = json.loads((out / "bench.json").read_text())
        assert [Path(m["model"]).name for m in doc["models"]] == [LONG, CJK]
        doc["models"][1]["results"][0]["latency_us"]["p50"] *= 1000  # a log axis, below 1 ms too
        png = report.render(report.View.BENCH, doc, "png")
    assert png[:4] == b"\x89PNG"
    (tmp_path / "log.png").write_bytes(png)
    print("bench charts:", out / "bench.png", tmp_path / "log.png")


def _tune_doc(name: str) -> dict:
    """A search result as `tune` writes it: the winner at the top right of the plot (where the
    legend used to sit), the other trials below and left of it."""
    def trial(label: str, kb: float, ms: float, q: float, passed: bool) -> dict:
        return {"variant": {"label": label}, "status": "ok", "passed": passed, "p50_ms": ms,
                "size_bytes": int(kb * 1024), "quality": {"cosine": q}, "phase": "precision",
                "runtime": {"threads": 1, "xnnpack": True, "accelerator": "cpu"}}  # fmt: skip

    trials = [trial("float32", 90, 0.9, 1.0, True), trial("dynamic", 25, 0.5, 0.999, True),
              trial("int8 cal100 keep " + "x" * 60, 22, 0.3, 0.97, False),
              trial("w4", 12, 0.35, 0.98, False), trial("float16", 45, 2.0, 0.9999, True)]  # fmt: skip
    winner = dict(trials[-1]["variant"], size_bytes=trials[-1]["size_bytes"], p50_ms=2.0,
                  runtime=trials[-1]["runtime"], quality={"cosine": 0.9999})  # fmt: skip
    return {"model": name, "goals": ["cosine>=0.99"], "trials": trials, "winner": winner,
            "target": "local"}  # fmt: skip


def test_pareto_png_legend_clear_of_the_winner_and_non_ascii_model(tmp_path: Path) -> None:
    import warnings

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tfopt import report
    from tfopt.report.tune import pareto_figure

    doc = _tune_doc(f"/data/{CJK}")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        png = report.render(report.View.TUNE, doc, "png")
        fig = pareto_figure(doc)
        fig.canvas.draw()
    (tmp_path / "pareto.png").write_bytes(png)
    print("pareto:", tmp_path / "pareto.png")
    ax = fig.axes[0]
    legend = ax.get_legend().get_window_extent()
    w = doc["winner"]
    x, y = ax.transData.transform((w["size_bytes"] / 1024, w["p50_ms"]))
    assert not legend.contains(x, y)
    assert legend.y1 < ax.get_window_extent().y0  # below the axes altogether
    plt.close(fig)
    assert "?" in fig.axes[0].get_title() or "模型" in fig.axes[0].get_title()


def test_plot_text_and_labels() -> None:
    from tfopt.report.chart import distinct_labels, plot_text, short_label

    assert short_label(LONG) == LONG[:15] + "\u2026" + LONG[-14:] and len(short_label(LONG)) == 30
    assert plot_text("cost $5") == r"cost \$5"  # not mathtext
    drawn = plot_text(CJK)
    assert drawn.endswith(".tflite") and len(drawn) == len(CJK)
    assert distinct_labels(["ab", "ab", "c"]) == ["ab [1]", "ab [2]", "c"]
