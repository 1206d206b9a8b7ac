"""The LiteRT quantizer backend: every scheme, per-layer float overrides, LMs, bad combinations."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from tests.conftest import invoke
from tfopt.conversion import convert
from tfopt.errors import InputError
from tfopt.inspection import inspect_tflite, weight_stats
from tfopt.validate import compare_files

# scheme -> (dtype of the big weight tensor, calibrated?)
SCHEMES = {
    "dynamic": ("int8", False),
    "w8": ("int8", False),
    "w4": ("int4", False),
    "w4b32": ("int4", False),
    "int8": ("int8", True),
    "int16x8": ("int8", True),
}


@pytest.mark.parametrize("scheme", list(SCHEMES), ids=list(SCHEMES))
def test_every_scheme(scheme: str, cnn: Any, files: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / f"{scheme}.tflite"
    dtype, calibrated = SCHEMES[scheme]
    result = convert(
        cnn, out, scheme, quantizer="aeq", calibration=files["calib"] if calibrated else None
    )
    assert result.check is not None and result.check["passed"]
    info = inspect_tflite(out)
    assert dtype in info["tensor_dtypes"], info["tensor_dtypes"]
    cmp = compare_files(str(files["keras"]), str(out), str(files["test"]))
    assert cmp.top1_agreement is not None and cmp.top1_agreement >= 0.97


def test_w4_is_smallest(cnn: Any, tmp_path: Path) -> None:
    sizes = {}
    for scheme in ("w8", "w4"):
        convert(cnn, tmp_path / f"{scheme}.tflite", scheme, quantizer="aeq")
        sizes[scheme] = (tmp_path / f"{scheme}.tflite").stat().st_size
    convert(cnn, tmp_path / "f.tflite", "float32")
    assert (
        sizes["w4"] < sizes["w8"] < 0.5 * (tmp_path / "f.tflite").stat().st_size
    )  # tiny model: overhead


def test_keep_float_overrides_a_layer(cnn: Any, files: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "k.tflite"
    result = convert(
        cnn, out, "int8", quantizer="aeq", calibration=files["calib"], keep_float=("probs",)
    )
    assert result.float_compute_ops.get("FULLY_CONNECTED") == 1
    dtypes = {name: w["dtype"] for name, w in weight_stats(out).items()}
    assert any("probs" in n and d == "float32" for n, d in dtypes.items()), dtypes
    assert any("probs" not in n and d == "int8" for n, d in dtypes.items()), dtypes


def test_lm_with_aeq(tmp_path: Path) -> None:
    from tests.test_lm import MAX_LEN
    from tfopt import keras_worlds
    from tfopt.runtime.lm import LmRunner

    hub = keras_worlds.keras_hub()
    keras_worlds.module(keras_worlds.World.KERAS3).utils.set_random_seed(0)
    backbone = hub.models.GPT2Backbone(
        vocabulary_size=260,
        num_layers=1,
        num_heads=2,
        hidden_dim=64,
        intermediate_dim=128,
        max_sequence_length=64,
    )
    lm = hub.models.GPT2CausalLM(backbone=backbone, preprocessor=None)
    out = tmp_path / "lm_w8.tflite"
    result = convert(lm, out, "w8", quantizer="aeq", lm=True, max_length=MAX_LEN)
    assert result.source == "keras3-lm+aeq" and result.check["passed"]
    tokens, _ = LmRunner(str(out)).generate([1, 2, 3], 5)
    assert len(tokens) == 5 and all(0 <= t < 260 for t in tokens)


def test_bad_combinations(
    runner: CliRunner, cnn: Any, files: dict[str, Path], tmp_path: Path
) -> None:
    with pytest.raises(InputError, match="needs quantizer aeq"):
        convert(cnn, tmp_path / "a.tflite", "w4")
    with pytest.raises(InputError, match="aeq quantizes"):
        convert(cnn, tmp_path / "a.tflite", "float32", quantizer="aeq")
    with pytest.raises(InputError, match="keep_float needs"):
        convert(cnn, tmp_path / "a.tflite", "dynamic", keep_float=("x",))
    result = invoke(
        runner,
        "convert",
        files["keras"],
        "-o",
        tmp_path / "b.tflite",
        "--quantizer",
        "aeq",
        "--precision",
        "int8",
    )
    assert result.exit_code == 1 and "calibration" in result.stderr
    np.testing.assert_equal(list(tmp_path.glob("*.tflite")), [])
