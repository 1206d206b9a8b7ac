"""TFLite metadata: written by convert / optimize / `tfopt metadata`, shown by inspect, read by a
mobile runtime's own API (MediaPipe Tasks' ImageClassifier, in its own venv) on real images."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.conftest import FASHION_LABELS, invoke, require
from tfopt.metadata import read
from tfopt.validate import run_tflite

ROOT = Path(__file__).resolve().parents[1]
MEDIAPIPE = ROOT / ".venv-mediapipe" / "bin" / "python"
TOOL = ROOT / "tests" / "mediapipe_tool.py"
APP_FLAGS = ["--normalize", "0,255", "--model-name", "fashion", "--description",
             "Clothing from a photo", "--version", "3", "--author", "tfopt tests"]  # fmt: skip


def _convert(runner: Any, app: dict[str, Path], out: Path, *extra: Any) -> Any:
    result = invoke(runner, "convert", app["keras"], "-o", out, "--labels", app["labels"],
                    *APP_FLAGS, *extra)  # fmt: skip
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture(scope="module")
def app_models(
    tmp_path_factory: pytest.TempPathFactory, fashion_app: dict[str, Path]
) -> dict[str, Path]:
    """The app's classifier as float32, dynamic and full int8, each with labels + normalization;
    and the float32 .tflite quantized by the LiteRT quantizer with no metadata flags (it keeps
    what the float file carries)."""
    from click.testing import CliRunner

    d = tmp_path_factory.mktemp("app_models")
    runner = CliRunner()
    out = {p: d / f"fashion_{p}.tflite" for p in ("float32", "dynamic", "int8")}
    for precision, path in out.items():
        extra = ["--calibration", fashion_app["calib"]] if precision == "int8" else []
        _convert(runner, fashion_app, path, "--precision", precision, *extra)
    out["aeq_dynamic_from_tflite"] = d / "fashion_aeq_dynamic.tflite"
    result = invoke(runner, "convert", out["float32"], "-o", out["aeq_dynamic_from_tflite"],
                    "--quantizer", "aeq", "--precision", "dynamic")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "note: metadata kept from fashion_float32.tflite (labels.txt)" in result.output
    # The quantizer's int8 (a8w8) takes int8 images, which MediaPipe's image APIs cannot feed.
    result = invoke(runner, "convert", out["float32"], "-o", d / "a8w8.tflite", "--quantizer",
                    "aeq", "--precision", "int8", "--calibration", fashion_app["calib"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "feed uint8 or float32 inputs, not this model's INT8" in result.output
    return out


def test_convert_writes_metadata_and_inspect_shows_it(
    runner: Any, fashion_app: dict[str, Path], app_models: dict[str, Path], tmp_path: Path
) -> None:
    meta = read(app_models["float32"].read_bytes())
    assert meta is not None
    assert (meta["name"], meta["version"], meta["author"]) == ("fashion", "3", "tfopt tests")
    assert meta["description"] == "Clothing from a photo"
    (inp,), (out,) = meta["inputs"], meta["outputs"]
    assert inp["content"] == "image RGB"
    assert inp["normalization"] == {"mean": [0.0], "std": [255.0]}
    assert inp["range"] == [[0.0], [1.0]]
    (labels,) = out["files"]
    assert labels == {"name": "labels.txt", "type": "TENSOR_AXIS_LABELS", "count": 10,
                      "labels": FASHION_LABELS, "packed": True}  # fmt: skip
    shown = invoke(runner, "inspect", app_models["float32"])
    assert shown.exit_code == 0
    assert "metadata: name=fashion, version=3, author=tfopt tests" in shown.output
    assert "normalize (x - 0) / 255" in shown.output
    assert "TENSOR_AXIS_LABELS labels.txt (10: T-shirt/top, Trouser" in shown.output
    doc = json.loads(invoke(runner, "inspect", app_models["int8"], "--json").output)
    assert doc["metadata"]["outputs"][0]["files"][0]["count"] == 10
    # The metadata changes no number: the same file without it gives identical outputs.
    plain = tmp_path / "plain.tflite"
    assert invoke(runner, "convert", fashion_app["keras"], "-o", plain).exit_code == 0
    assert read(plain.read_bytes()) is None
    assert "metadata: none" in invoke(runner, "inspect", plain).output
    from tfopt.data import load_data
    from tfopt.loading import load

    data = load_data(str(fashion_app["data"]), load(str(plain)).inputs, limit=20)
    a, b = run_tflite(str(plain), data), run_tflite(str(app_models["float32"]), data)
    assert all(np.array_equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("precision", ["float32", "dynamic", "int8", "aeq_dynamic_from_tflite"])
def test_mediapipe_image_classifier_reads_labels_and_normalization(
    precision: str, fashion_app: dict[str, Path], app_models: dict[str, Path]
) -> None:
    """MediaPipe Tasks' own ImageClassifier opens tfopt's file, normalizes real uint8 photos by
    the metadata and names classes from the packed labels: the same classes and scores as
    tfopt's interpreter run on pixels / 255."""
    require(MEDIAPIPE.exists(), "the MediaPipe venv (make mediapipe)")
    model = app_models[precision]
    proc = subprocess.run([str(MEDIAPIPE), str(TOOL), "classify", str(model),
                           str(fashion_app["images"])], capture_output=True, text=True,
                          timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    found = json.loads(proc.stdout.splitlines()[-1])
    from tfopt.data import load_data
    from tfopt.loading import load

    data = load_data(str(fashion_app["data"]), load(str(model)).inputs)
    probs = next(iter(run_tflite(str(model), data).values()))
    y = data.y
    assert len(found) == len(probs) == 200
    # MediaPipe normalizes the uint8 pixels itself; tfopt feeds pixels / 255. Float32 agrees to
    # rounding; a quantized model may put one activation a quantization step apart, so its
    # scores agree to one int8 step of a [0, 1] score (1/256), whatever the CPU's kernels.
    tolerance = 1e-4 if precision == "float32" else 1 / 256
    for image, p in zip(found, probs, strict=True):
        top = image[0]
        assert top["name"] == FASHION_LABELS[top["index"]]  # names come from the packed file
        assert p[top["index"]] == pytest.approx(float(p.max()), abs=1e-6)  # int8 scores can tie
        assert top["score"] == pytest.approx(float(p.max()), abs=tolerance)
    accuracy = np.mean([image[0]["index"] for image in found] == y)
    assert accuracy > 0.6  # a real classifier on real photos, not chance (0.1)


def test_a_tflite_keeps_its_metadata_through_the_litert_quantizer(
    runner: Any, app_models: dict[str, Path], tmp_path: Path
) -> None:
    """The quantizer rewrites the flatbuffer and drops the zip of packed files; tfopt puts back
    what the float file carried, and flags given now change only their fields."""
    source = read(app_models["float32"].read_bytes())
    kept = read(app_models["aeq_dynamic_from_tflite"].read_bytes())
    assert source is not None and kept is not None
    assert kept == source
    out = tmp_path / "renamed.tflite"
    result = invoke(runner, "convert", app_models["float32"], "-o", out, "--quantizer", "aeq",
                    "--precision", "dynamic", "--model-name", "clothes", "--version", "5")  # fmt: skip
    assert result.exit_code == 0, result.output
    renamed = read(out.read_bytes())
    assert renamed is not None and (renamed["name"], renamed["version"]) == ("clothes", "5")
    assert renamed["outputs"] == source["outputs"] and renamed["author"] == source["author"]
    plain = invoke(runner, "convert", app_models["float32"], "-o", tmp_path / "x.tflite")
    assert plain.exit_code == 1 and "quantize it with --quantizer aeq" in plain.output


def test_optimize_writes_the_recipe_metadata(
    runner: Any, fashion_app: dict[str, Path], tmp_path: Path
) -> None:
    """A recipe's convert stage names the same keys; a relative label path is read beside the
    recipe file; the optimized file carries them."""
    recipe_dir = tmp_path / "app"
    recipe_dir.mkdir()
    (recipe_dir / "labels.txt").write_text(fashion_app["labels"].read_text(encoding="utf-8"))
    (recipe_dir / "ship.yaml").write_text(
        "name: ship\nstages:\n  - stage: convert\n    precision: dynamic\n"
        "    labels: labels.txt\n    normalize: 0,255\n    model_name: fashion\n    version: 4\n"
    )
    out = tmp_path / "opt"
    result = invoke(runner, "optimize", fashion_app["keras"], "--recipe", recipe_dir / "ship.yaml",
                    "--data", fashion_app["data"], "-o", out)  # fmt: skip
    assert result.exit_code == 0, result.output
    meta = read((out / "model.tflite").read_bytes())
    assert meta is not None and (meta["name"], meta["version"]) == ("fashion", "4")
    assert meta["outputs"][0]["files"][0]["count"] == 10
    report = json.loads((out / "report.json").read_text())
    size = len(fashion_app["labels"].read_bytes())
    assert report["tflite"]["metadata"]["packed_files"] == [{"name": "labels.txt", "bytes": size}]


def test_metadata_command_edits_a_copy_and_keeps_the_packed_labels(
    runner: Any, app_models: dict[str, Path], tmp_path: Path
) -> None:
    source = app_models["dynamic"]
    before = source.read_bytes()
    out = tmp_path / "edited.tflite"
    result = invoke(runner, "metadata", source, "--set", "author=someone else",
                    "--set", "license=Apache-2.0", "--description", "v5", "-o", out)  # fmt: skip
    assert result.exit_code == 0, result.output
    assert source.read_bytes() == before  # the input is never modified
    meta = read(out.read_bytes())
    assert meta is not None
    assert (meta["author"], meta["license"], meta["description"]) == (
        "someone else", "Apache-2.0", "v5")  # fmt: skip
    assert (meta["name"], meta["version"]) == ("fashion", "3")  # untouched fields stay
    assert meta["outputs"][0]["files"][0]["labels"][:2] == ["T-shirt/top", "Trouser"]
    assert meta["inputs"][0]["normalization"]["std"] == [255.0]
    shown = json.loads(invoke(runner, "metadata", out, "--json").output)
    assert shown["metadata"]["author"] == "someone else"
    again = invoke(runner, "metadata", source, "--set", "author=x", "-o", out)
    assert again.exit_code == 1 and "--overwrite" in again.output


def _bad_labels(kind: str, folder: Path) -> Path:
    path = folder / f"{kind}.txt"
    content = {
        "too_few": "\n".join(FASHION_LABELS[:9]).encode(),
        "empty": b"",
        "not_utf8": "\n".join(FASHION_LABELS).encode("utf-16"),
        "blank_line": ("\n".join(FASHION_LABELS[:5]) + "\n\n" + "\n".join(FASHION_LABELS[5:9])).encode(),
    }[kind]
    path.write_bytes(content)
    return path


@pytest.mark.parametrize(
    "kind, expected",
    [
        ("too_few", "has 9 labels; output"),
        ("empty", "is empty: expected one class name per line"),
        ("not_utf8", "is not UTF-8 text"),
        ("blank_line", "line 6 is blank"),
    ],
)
def test_bad_label_files_are_one_line(
    kind: str, expected: str, runner: Any, fashion_app: dict[str, Path],
    app_models: dict[str, Path], tmp_path: Path,
) -> None:  # fmt: skip
    labels = _bad_labels(kind, tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    for args in (
        ["convert", fashion_app["keras"], "-o", out / "m.tflite", "--labels", labels],
        ["metadata", app_models["float32"], "--labels", labels, "-o", out / "m.tflite"],
    ):
        result = invoke(runner, *args)
        assert result.exit_code == 1, result.output
        line = result.output.strip()
        assert "\n" not in line and expected in line, line
    assert list(out.iterdir()) == []


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--normalize", "0"], "expected MEAN,STD"),
        (["--normalize", "0,0"], "a std of 0"),
        (["--normalize", "1:2,3:4"], "2 values per statistic; input"),
        (["--set", "colour=red"], "expected KEY=VALUE with KEY one of"),
        ([], "nothing to change"),
    ],
)
def test_bad_metadata_edits_are_one_line(
    args: list[str], expected: str, runner: Any, app_models: dict[str, Path], tmp_path: Path
) -> None:
    result = invoke(runner, "metadata", app_models["float32"], *args, "-o", tmp_path / "x.tflite")
    assert result.exit_code == 1
    line = result.output.strip()
    assert "\n" not in line and expected in line, line
    assert not (tmp_path / "x.tflite").exists()


def test_normalize_and_labels_find_the_image_input_and_the_class_output(
    runner: Any, keras3: Any, tmp_path: Path
) -> None:
    """Two inputs (the converter orders them by name: 'a_stats' before 'image') and two
    outputs: --normalize lands on the image, --labels on the output with that many classes."""
    image = keras3.Input((8, 8, 3), name="image")
    stats = keras3.Input((4,), name="a_stats")
    h = keras3.layers.Concatenate()([keras3.layers.Flatten()(image), stats])
    probs = keras3.layers.Dense(5, activation="softmax", name="probs")(h)
    box = keras3.layers.Dense(4, name="box")(h)
    model = keras3.Model([image, stats], [box, probs])
    model.save(tmp_path / "two.keras")
    (tmp_path / "labels.txt").write_text("a\nb\nc\nd\ne\n")
    out = tmp_path / "two.tflite"
    result = invoke(runner, "convert", tmp_path / "two.keras", "-o", out, "--normalize", "0,255",
                    "--labels", tmp_path / "labels.txt")  # fmt: skip
    assert result.exit_code == 0, result.output
    meta = read(out.read_bytes())
    assert meta is not None
    described = {t["name"]: t for t in meta["inputs"]}
    (image_name,) = [n for n in described if "image" in n]
    assert described[image_name]["content"] == "image RGB"
    assert all("normalization" not in t for n, t in described.items() if n != image_name)
    labelled = [t for t in meta["outputs"] if "files" in t]
    assert len(labelled) == 1 and labelled[0]["files"][0]["count"] == 5
    (tmp_path / "four.txt").write_text("a\nb\nc\nd\n")  # as many as the box output: still one
    again = invoke(runner, "metadata", out, "--labels", tmp_path / "four.txt", "-o", tmp_path / "x.tflite")
    assert again.exit_code == 0, again.output
    (tmp_path / "three.txt").write_text("a\nb\nc\n")
    bad = invoke(runner, "metadata", out, "--labels", tmp_path / "three.txt", "-o", tmp_path / "y.tflite")
    assert bad.exit_code == 1 and "0 of the outputs have that many classes" in bad.output


def test_unreadable_metadata_is_shown_not_fatal_and_never_replaced(
    runner: Any, app_models: dict[str, Path], tmp_path: Path
) -> None:
    from tfopt.metadata.write import _with_buffer

    foreign = tmp_path / "foreign.tflite"
    foreign.write_bytes(_with_buffer(app_models["float32"].read_bytes(), b"\0" * 4 + b"XYZ1", {}))
    shown = invoke(runner, "inspect", foreign)
    assert shown.exit_code == 0, shown.output
    assert "metadata: unreadable (the model's TFLITE_METADATA is not a metadata flatbuffer" in shown.output
    edited = invoke(runner, "metadata", foreign, "--set", "author=me", "-o", tmp_path / "x.tflite")
    assert edited.exit_code == 1 and "will not replace another tool's data" in edited.output
    assert not (tmp_path / "x.tflite").exists()


def test_tflite_sources_refused_in_one_line(
    runner: Any, app_models: dict[str, Path], tmp_path: Path
) -> None:
    source = app_models["float32"]
    before = source.read_bytes()
    own = invoke(runner, "convert", source, "-o", source, "--quantizer", "aeq", "--precision",
                 "dynamic", "--overwrite")  # fmt: skip
    assert own.exit_code == 1 and "-o is MODEL itself" in own.output
    assert source.read_bytes() == before
    quantized = invoke(runner, "convert", app_models["int8"], "-o", tmp_path / "q.tflite",
                       "--quantizer", "aeq", "--precision", "dynamic")  # fmt: skip
    assert quantized.exit_code == 1 and "is already quantized (int8 tensors)" in quantized.output


@pytest.mark.parametrize("value, expected", [("1.10", "quote it"), ("yes", "quote it")])
def test_recipe_metadata_values_that_yaml_would_change_are_refused(
    value: str, expected: str, tmp_path: Path
) -> None:
    from tfopt.recipes import RecipeError, load_recipe

    path = tmp_path / "r.yaml"
    path.write_text(f"name: r\nstages:\n  - stage: convert\n    precision: dynamic\n    version: {value}\n")
    with pytest.raises(RecipeError, match=expected):
        load_recipe(path)


def test_tf_keras_h5_gets_metadata_too(runner: Any, files: dict[str, Path], tmp_path: Path) -> None:
    """The other Keras world, as users save it (a tf_keras model trained with `fit`, `.h5`): a
    1-channel digits classifier gets the same metadata, and a note that MediaPipe's image APIs
    take RGB inputs only."""
    (tmp_path / "digits.txt").write_text("".join(f"{i}\n" for i in range(10)))
    out = tmp_path / "digits.tflite"
    result = invoke(runner, "convert", files["h5"], "-o", out, "--precision", "dynamic",
                    "--labels", tmp_path / "digits.txt", "--normalize", "0,1")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "read RGB inputs only" in result.output
    meta = read(out.read_bytes())
    assert meta is not None and meta["inputs"][0]["content"] == "image GRAYSCALE"
    assert meta["outputs"][0]["files"][0]["labels"] == [str(i) for i in range(10)]
