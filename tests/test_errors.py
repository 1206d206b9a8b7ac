"""Every bad input a user can give: one clear line, exit code 1, no partial output."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from tests.conftest import invoke


def assert_one_line_error(result: Any, *fragments: str) -> None:
    assert result.exit_code == 1, result.output
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: ")
    assert result.stdout == ""  # nothing half-done on stdout; the error is on stderr only
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.fixture()
def bad_files(tmp_path: Path, tflite: dict[str, Path]) -> dict[str, Path]:
    good = tflite["float32"].read_bytes()
    rng = np.random.default_rng(0)
    files = {
        "text.keras": b"this is not a model\n",
        "text.h5": b"this is not a model\n",
        "notes.txt": b"hello\n",
        "random.tflite": rng.bytes(4096),
        "truncated.tflite": good[: len(good) // 2],
        "header_only.tflite": good[:64],
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    return {name: tmp_path / name for name in files}


@pytest.mark.parametrize(
    ("command", "fragment"),
    [
        (["convert", "{missing}", "-o", "{out}"], "not found"),
        (["inspect", "{missing}"], "not found"),
        (["bench", "{missing}"], "not found"),
        (["compare", "{missing}", "{missing}", "--data", "{missing}"], "not found"),
    ],
    ids=["convert", "inspect", "bench", "compare"],
)
def test_missing_file(runner: CliRunner, tmp_path: Path, command: list[str], fragment: str) -> None:
    args = [a.format(missing=tmp_path / "nope.keras", out=tmp_path / "o.tflite") for a in command]
    assert_one_line_error(invoke(runner, *args), fragment)
    assert not (tmp_path / "o.tflite").exists()


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ("text.keras", "not a Keras model file"),
        ("text.h5", "not a Keras model file"),
        ("notes.txt", "unknown model format"),
        ("random.tflite", "not a TFLite flatbuffer"),
    ],
)
def test_convert_rejects_non_models(
    runner: CliRunner, bad_files: dict[str, Path], tmp_path: Path, name: str, fragment: str
) -> None:
    out = tmp_path / "out.tflite"
    assert_one_line_error(invoke(runner, "convert", bad_files[name], "-o", out), fragment)
    assert not out.exists()


@pytest.mark.parametrize(
    "name", ["random.tflite", "truncated.tflite", "header_only.tflite", "text.keras"]
)
@pytest.mark.parametrize("command", ["inspect", "bench"])
def test_broken_tflite(
    runner: CliRunner, bad_files: dict[str, Path], command: str, name: str
) -> None:
    result = (
        invoke(runner, command, bad_files[name], "--runs", "5")
        if command == "bench"
        else invoke(runner, command, bad_files[name])
    )
    assert_one_line_error(result)
    assert any(k in result.stderr for k in ("TFLite", "broken", "crashed", "failed"))


def test_compare_broken_candidate(
    runner: CliRunner, bad_files: dict[str, Path], files: dict[str, Path]
) -> None:
    result = invoke(
        runner, "compare", files["keras"], bad_files["truncated.tflite"], "--data", files["test"]
    )
    assert_one_line_error(result, "broken")


@pytest.mark.parametrize(
    ("make", "fragment"),
    [
        (lambda d: {"x": d[:10, :4]}, "shape"),
        (lambda d: {"x": d[:10, :, :, 0]}, "shape"),
        # Integers are cast to a float input only where exact: 2**40 + 1 is not in float32.
        (lambda d: {"x": np.full(d[:10].shape, 2**40 + 1, np.int64)}, "dtype int64"),
        (
            lambda d: {
                "x": np.where(np.arange(d[:10].size).reshape(d[:10].shape) == 3, np.nan, d[:10])
            },
            "NaN",
        ),
        (lambda d: {"pixels": d[:10]}, "no array for input 'image'"),
        (lambda d: {"x": d[:0]}, "non-zero"),
    ],
    ids=["wrong-shape", "wrong-rank", "wrong-dtype", "nan", "wrong-name", "empty"],
)
def test_bad_calibration_data(
    runner: CliRunner,
    files: dict[str, Path],
    digits: dict[str, np.ndarray],
    tmp_path: Path,
    make: Any,
    fragment: str,
) -> None:
    np.savez(tmp_path / "bad.npz", **make(digits["x_train"]))
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
        tmp_path / "bad.npz",
    )
    assert_one_line_error(result, fragment)
    assert not out.exists()


def test_calibration_not_numpy(
    runner: CliRunner, files: dict[str, Path], bad_files: dict[str, Path], tmp_path: Path
) -> None:
    (tmp_path / "junk.npz").write_bytes(b"junk")
    result = invoke(
        runner,
        "convert",
        files["keras"],
        "-o",
        tmp_path / "m.tflite",
        "--precision",
        "int8",
        "--calibration",
        tmp_path / "junk.npz",
    )
    assert_one_line_error(result, "cannot read")


def test_output_exists_without_overwrite(
    runner: CliRunner, files: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "m.tflite"
    out.write_bytes(b"precious")
    assert_one_line_error(
        invoke(runner, "convert", files["keras"], "-o", out), "already exists", "--overwrite"
    )
    assert out.read_bytes() == b"precious"
    assert invoke(runner, "convert", files["keras"], "-o", out, "--overwrite").exit_code == 0
    assert out.read_bytes()[4:8] == b"TFL3"


def test_output_folder_missing_or_not_writable(
    runner: CliRunner, files: dict[str, Path], tmp_path: Path
) -> None:
    assert_one_line_error(
        invoke(runner, "convert", files["keras"], "-o", tmp_path / "no" / "m.tflite"),
        "does not exist",
    )
    # /proc refuses new files even for root, so this holds whoever runs the tests.
    assert_one_line_error(
        invoke(runner, "convert", files["keras"], "-o", "/proc/m.tflite"), "not writable"
    )
    if os.geteuid() != 0:
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        assert_one_line_error(
            invoke(runner, "convert", files["keras"], "-o", locked / "m.tflite"), "not writable"
        )


def test_lambda_layer_refused_in_safe_mode(
    runner: CliRunner, keras3: Any, tf_keras: Any, tmp_path: Path
) -> None:
    for world, name in ((keras3, "k3.keras"), (tf_keras, "k2.h5")):
        inputs = world.Input((4,), name="x")
        model = world.Model(inputs, world.layers.Lambda(lambda t: t * 2.0)(inputs))
        model.save(tmp_path / name)
        out = tmp_path / f"{name}.tflite"
        before = (tmp_path / name).read_bytes()
        assert_one_line_error(
            invoke(runner, "convert", tmp_path / name, "-o", out), "Lambda", "--unsafe"
        )
        assert not out.exists()
        result = invoke(runner, "convert", tmp_path / name, "-o", out, "--unsafe")
        assert result.exit_code == 0, result.output
        assert (tmp_path / name).read_bytes() == before


def test_int16x8_integer_inputs_cli(
    runner: CliRunner, bert: Any, bert_data: Path, tmp_path: Path
) -> None:
    bert.save(tmp_path / "bert.keras")
    result = invoke(
        runner,
        "convert",
        tmp_path / "bert.keras",
        "-o",
        tmp_path / "b.tflite",
        "--precision",
        "int16x8",
        "--calibration",
        bert_data,
        "--seq-len",
        "32",
    )
    assert_one_line_error(result, "int16x8", "token_ids")


def assert_usage_error(result: Any, flag: str) -> None:
    """A flag's bad value is a usage error (issue 22): exit 2, click's last line names the flag."""
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"Error: Invalid value for '{flag}'"), result.stderr


def test_bad_options(runner: CliRunner, tflite: dict[str, Path]) -> None:
    assert_usage_error(invoke(runner, "bench", tflite["float32"], "--threads", "one"), "--threads")
    assert_usage_error(invoke(runner, "bench", tflite["float32"], "--threads", "0"), "--threads")
    assert_usage_error(invoke(runner, "bench", tflite["float32"], "--repeat", "0"), "--repeat")
    usage = invoke(runner, "convert", "x.keras", "-o", "y.tflite", "--precision", "int3")
    assert usage.exit_code == 2


@pytest.mark.parametrize("threads", ["a", "1,x", "0"])
def test_demo_bad_threads_is_one_line_before_any_work(
    runner: CliRunner, tmp_path: Path, threads: str
) -> None:
    out = tmp_path / "demo"
    assert_usage_error(invoke(runner, "demo", "--out", out, "--threads", threads), "--threads")
    assert list(tmp_path.iterdir()) == []


def test_staged_dir_moves_all_or_nothing(tmp_path: Path) -> None:
    from tfopt.fsutil import staged_dir

    out = tmp_path / "a" / "b" / "out"
    names = ["model.tflite", "report.json", "optimized.keras"]
    with pytest.raises(RuntimeError), staged_dir(out, names) as staging:
        (staging / "model.tflite").write_text("new")
        raise RuntimeError("a later step failed")
    assert list(tmp_path.iterdir()) == []  # nothing moved; the folders it made are gone

    out.mkdir(parents=True)
    for name in names:
        (out / name).write_text("old")
    (out / "notes.txt").write_text("the user's")
    with pytest.raises(RuntimeError), staged_dir(out, names) as staging:
        (staging / "model.tflite").write_text("new")
        raise RuntimeError("a later step failed")
    assert {p.name: p.read_text() for p in out.iterdir()} == {
        **dict.fromkeys(names, "old"), "notes.txt": "the user's"
    }
    with staged_dir(out, names) as staging:  # success: this run's files only, no stale one
        (staging / "model.tflite").write_text("new")
        (staging / "report.json").write_text("new")
    assert {p.name: p.read_text() for p in out.iterdir()} == {
        "model.tflite": "new", "report.json": "new", "notes.txt": "the user's"
    }
    assert sorted(p.name for p in out.parent.iterdir()) == ["out"]  # no staging folder left


def test_bench_data_that_does_not_fit(
    runner: CliRunner, tflite: dict[str, Path], tmp_path: Path
) -> None:
    np.savez(tmp_path / "d.npz", other=np.zeros((1, 8, 8, 1), np.float32))
    result = invoke(
        runner,
        "bench",
        tflite["float32"],
        "--threads",
        "1",
        "--runs",
        "5",
        "--data",
        tmp_path / "d.npz",
    )
    assert_one_line_error(result, "timing failed", "image")


def test_json_mode_error_is_one_document(runner: CliRunner, tmp_path: Path) -> None:
    result = invoke(runner, "inspect", tmp_path / "nope.tflite", "--json")
    assert result.exit_code == 1
    assert "not found" in json.loads(result.stdout)["error"]


def test_debug_shows_traceback(runner: CliRunner, tmp_path: Path) -> None:
    result = invoke(runner, "--debug", "inspect", tmp_path / "nope.tflite")
    assert result.exit_code == 1 and "Traceback" in result.stderr


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (ValueError(""), "ValueError"),
        (ValueError("\n  \n"), "ValueError"),
        (OSError("\nsecond line first\nthird"), "second line first"),
        (RuntimeError("  padded  "), "padded"),
        ("", "no message"),
    ],
    ids=["empty", "blank-lines", "leading-newline", "padded", "empty-str"],
)
def test_first_line_of_an_error(exc: BaseException | str, expected: str) -> None:
    from tfopt.errors import first_line

    assert first_line(exc) == expected


def test_no_bare_first_line_indexing_left() -> None:
    """`str(exc).splitlines()[0]` raises IndexError on an empty message: use errors.first_line."""
    root = Path(__file__).parents[1]
    offenders = [
        f"{path.relative_to(root)}:{n}"
        for folder in ("tfopt", "converters")
        for path in sorted((root / folder).rglob("*.py"))
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if "splitlines()[0]" in line
    ]
    assert offenders == []


def test_library_messages_name_parameters_and_the_cli_names_flags():
    from tfopt.errors import InputError, option

    exc = InputError(f"{option('seq_len')} must be at least 1; drop {option('dynamic_length')}")
    assert str(exc) == "seq_len must be at least 1; drop dynamic_length"
    assert exc.render(lambda n: "--" + n.replace("_", "-")) == (
        "--seq-len must be at least 1; drop --dynamic-length"
    )
