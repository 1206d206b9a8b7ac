"""The export plan: each decision of a conversion, tested on its own through `plan_export` on real
models saved as users save them (nothing is converted, except in the last test)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.conftest import SEED
from tfopt.conversion import ConvertRequest, convert, explain, plan_export
from tfopt.conversion.plan import Backend, Mask
from tfopt.core import FAKE_QUANT_MARK, Precision
from tfopt.data import Dataset
from tfopt.errors import ConversionError, DataError, InputError
from tfopt.loading import from_keras, load


@pytest.fixture(scope="module")
def saved(keras3: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny Keras 3 models trained a few steps and saved as .keras, a SavedModel, and data."""
    from tfopt import keras_worlds

    d = tmp_path_factory.mktemp("plan")
    rng = np.random.default_rng(SEED)
    layers, paths = keras3.layers, {}

    def fit_save(name: str, model: Any, x: Any, y: Any) -> None:
        model.compile("adam", "sparse_categorical_crossentropy")
        model.fit(x, y, epochs=1, batch_size=16, verbose=0)
        paths[name] = d / f"{name}.keras"
        model.save(paths[name])

    keras3.utils.set_random_seed(SEED)
    x = rng.random((32, 8), dtype=np.float32)
    y = rng.integers(0, 3, 32)
    fit_save("dense", keras3.Sequential([keras3.Input((8,)), layers.Dense(3, activation="softmax")]), x, y)
    free = rng.random((32, 20, 4), dtype=np.float32)
    conv = keras3.Sequential([keras3.Input((None, 4), name="signal"), layers.Conv1D(4, 3),
                              layers.GlobalAveragePooling1D(), layers.Dense(3, activation="softmax")])
    fit_save("free", conv, free, y)
    tokens = rng.integers(0, 17, (32, 6)).astype(np.int32)
    lstm = keras3.Sequential([keras3.Input((6,), dtype="int32"), layers.Embedding(17, 4),
                              layers.LSTM(4), layers.Dense(3, activation="softmax")])
    fit_save("lstm", lstm, tokens, y)
    inp = keras3.Input((6, 8), name="tokens")
    h = layers.MultiHeadAttention(num_heads=2, key_dim=4)(inp, inp)
    out = layers.Dense(3, activation="softmax")(layers.GlobalAveragePooling1D()(h))
    fit_save("attention", keras3.Model(inp, out), rng.random((32, 6, 8), dtype=np.float32), y)
    np.savez(d / "dense.npz", x=x)
    np.save(d / "free20.npy", free)
    paths |= {"dense.npz": d / "dense.npz", "free20.npy": d / "free20.npy", "sm": d / "sm"}

    tf = keras_worlds.tf()

    class Affine(tf.Module):
        def __init__(self) -> None:
            self.w = tf.Variable(rng.random((8, 3), dtype=np.float32))

        @tf.function(input_signature=[tf.TensorSpec([None, 8], tf.float32, name="x")])
        def __call__(self, v: Any) -> Any:
            return {"y": tf.matmul(v, self.w)}

    module = Affine()
    tf.saved_model.save(module, str(paths["sm"]), signatures={"serving_default": module.__call__})
    return paths


def _plan(model: Any, **options: Any) -> Any:
    req = ConvertRequest(**options)
    return plan_export(req, load(model) if isinstance(model, Path) else from_keras(model))


# --- which backend ---------------------------------------------------------------------------


def test_backend_follows_the_source(saved: dict[str, Path], files: dict[str, Path]) -> None:
    assert _plan(saved["dense"]).backend is Backend.KERAS3
    assert _plan(files["h5"]).backend is Backend.TF_KERAS
    assert _plan(saved["sm"]).backend is Backend.SAVED_MODEL
    assert _plan(saved["attention"], lm=True).backend is Backend.LM


def test_a_float_tflite_goes_to_the_litert_quantizer(tflite: dict[str, Path]) -> None:
    plan = _plan(tflite["float32"], precision="dynamic", quantizer="aeq")
    assert plan.backend is Backend.TFLITE and plan.converter_precision is None
    assert plan.calibrated_by is None and "LiteRT quantizer" in plan.reasons["backend"]
    with pytest.raises(InputError, match="already a .tflite"):
        _plan(tflite["float32"], precision="dynamic")
    with pytest.raises(InputError, match="seq_len: a .tflite keeps the input shapes"):
        _plan(tflite["float32"], precision="dynamic", quantizer="aeq", seq_len=4)
    with pytest.raises(InputError, match="already quantized"):
        _plan(tflite["int8"], precision="dynamic", quantizer="aeq")


# --- calibration, quantizer, isolation -------------------------------------------------------


def test_who_calibrates(saved: dict[str, Path]) -> None:
    data = str(saved["dense.npz"])
    assert _plan(saved["dense"]).calibrated_by is None
    plan = _plan(saved["dense"], precision="int8", calibration=data)
    assert plan.calibrated_by == "converter" and plan.converter_precision is Precision.INT8
    plan = _plan(saved["dense"], precision="int8", calibration=data, quantizer="aeq")
    assert plan.calibrated_by == "aeq" and plan.converter_precision is Precision.FLOAT32
    with pytest.raises(DataError, match="int8 needs calibration data"):
        _plan(saved["dense"], precision="int8")


def test_conversions_that_may_crash_run_isolated_when_given_by_path(saved: dict[str, Path]) -> None:
    data = str(saved["dense.npz"])
    assert _plan(saved["dense"], precision="int8", calibration=data).isolated
    assert _plan(saved["dense"], precision="w8", quantizer="aeq").isolated
    assert not _plan(saved["dense"], precision="dynamic").isolated
    model = load(saved["dense"]).model  # in memory: the child could not load it again
    assert not _plan(model, precision="int8", calibration=data).isolated


def test_loops_are_looked_for_before_tfs_calibrator(saved: dict[str, Path]) -> None:
    data = str(saved["dense.npz"])
    assert _plan(saved["sm"], precision="int8", calibration=data).loop_check  # opaque graph
    assert not _plan(saved["dense"], precision="int8", calibration=data).loop_check
    assert not _plan(saved["sm"], precision="dynamic").loop_check  # nothing calibrates


# --- attention: mask and the int8 op-kind search ---------------------------------------------


@pytest.mark.parametrize(
    "options, mask, search",
    [
        ({}, Mask.ADDITIVE, False),
        ({"precision": "int8"}, Mask.ADDITIVE, True),
        ({"precision": "int8", "int8_io": True}, Mask.BOUNDED, False),
        ({"precision": "int8", "quantizer": "aeq"}, Mask.BOUNDED, False),
        ({"precision": "int16x8"}, Mask.BOUNDED, False),
    ],
    ids=["float32", "int8", "int8-io", "int8-aeq", "int16x8"],
)
def test_attention_mask_and_search(
    saved: dict[str, Path], options: dict[str, Any], mask: Mask, search: bool
) -> None:
    calibration = Dataset({"tokens": np.random.default_rng(0).random((4, 6, 8), np.float32)})
    if "precision" in options:
        options = {**options, "calibration": calibration}
    plan = _plan(saved["attention"], **options)
    assert plan.attention and plan.mask is mask and plan.int8_search is search
    assert "mask" in plan.reasons
    assert (plan.calibrated_by == "aeq") is (search or options.get("quantizer") == "aeq")


def test_a_model_without_attention_keeps_its_mask(saved: dict[str, Path]) -> None:
    plan = _plan(saved["dense"], precision="int8", calibration=str(saved["dense.npz"]))
    assert not plan.attention and plan.mask is Mask.NONE and not plan.int8_search


def test_a_qat_model_keeps_its_ranges(saved: dict[str, Path]) -> None:
    """optimize's qat marks the model: its fake-quant ranges go to the converter, no search."""
    model = load(saved["attention"]).model
    object.__setattr__(model, FAKE_QUANT_MARK, True)
    calibration = Dataset({"tokens": np.random.default_rng(0).random((4, 6, 8), np.float32)})
    plan = _plan(model, precision="int8", calibration=calibration)
    assert plan.qat and not plan.int8_search and plan.mask is Mask.BOUNDED
    assert plan.calibrated_by == "converter" and "qat" in plan.reasons


# --- recurrent models ------------------------------------------------------------------------


def test_a_keras3_lstm_at_int8_converts_its_tf_keras_twin(saved: dict[str, Path]) -> None:
    tokens = Dataset({next(iter(load(saved["lstm"]).input_names)):
                      np.random.default_rng(0).integers(0, 17, (4, 6)).astype(np.int32)})  # fmt: skip
    plan = _plan(saved["lstm"], precision="int8", calibration=tokens)
    assert plan.recurrent_twin and plan.backend is Backend.TF_KERAS
    assert "tf_keras" in plan.reasons["recurrent_twin"]
    plain = _plan(saved["lstm"], precision="dynamic")
    assert not plain.recurrent_twin and plain.backend is Backend.KERAS3
    with pytest.raises(ConversionError, match="int16x8 cannot calibrate integer inputs"):
        _plan(saved["lstm"], precision="int16x8", calibration=tokens)


# --- free lengths ----------------------------------------------------------------------------


def test_free_length_from_the_request(saved: dict[str, Path]) -> None:
    plan = _plan(saved["free"], seq_len=12)
    assert plan.seq_len == 12 and plan.length_from == "seq_len"
    assert plan.inputs[0].shape == (None, 12, 4) and plan.free_inputs == ("signal",)


def test_free_length_from_the_data(saved: dict[str, Path]) -> None:
    plan = _plan(saved["free"], check_data=str(saved["free20.npy"]))
    assert plan.seq_len == 20 and plan.length_from == "data"
    assert plan.inputs[0].shape == (None, 20, 4) and plan.check_data == "check_data"


def test_free_length_kept_free(saved: dict[str, Path]) -> None:
    plan = _plan(saved["free"], dynamic_length=True)
    assert plan.keep_free and plan.seq_len is None and plan.free_inputs == ()
    assert plan.inputs[0].shape == (None, None, 4) and plan.synthetic_free_length is not None
    assert any("left free" in n for n in plan.notes)


def test_a_length_for_a_model_without_a_free_one_changes_nothing(saved: dict[str, Path]) -> None:
    plan = _plan(saved["dense"], seq_len=12)
    assert plan.seq_len is None and plan.length_from is None and plan.free_inputs == ()
    assert any("changes nothing" in n for n in plan.notes)


# --- the check's data ------------------------------------------------------------------------


def test_what_the_check_runs_on(saved: dict[str, Path]) -> None:
    data = str(saved["dense.npz"])
    assert _plan(saved["dense"], check_data=data).check_data == "check_data"
    assert _plan(saved["dense"], precision="int8", calibration=data).check_data == "calibration"
    assert _plan(saved["dense"]).check_data == "synthetic"
    assert _plan(saved["dense"], check=False).check_data is None
    assert _plan(saved["attention"], lm=True).check_data == "prompt"
    noted = _plan(saved["dense"], precision="dynamic", calibration=data).notes
    assert any("serves the check only" in n for n in noted)


def test_an_lm_plan_refuses_calibrated_precisions(saved: dict[str, Path], files: dict[str, Path]) -> None:
    with pytest.raises(ConversionError, match="lm supports float32"):
        _plan(saved["attention"], lm=True, precision="int8")
    with pytest.raises(ConversionError, match="keras-hub CausalLM"):
        _plan(files["h5"], lm=True)


# --- explain and the result ------------------------------------------------------------------


def test_explain_plans_and_writes_nothing(saved: dict[str, Path], tmp_path: Path) -> None:
    req = ConvertRequest(precision="int8", calibration=str(saved["dense.npz"]))
    plan = explain(saved["dense"], req)
    assert plan == plan_export(req, load(saved["dense"])) and list(tmp_path.iterdir()) == []
    doc = json.loads(json.dumps(plan.to_dict()))
    assert doc["backend"] == "keras3" and doc["precision"] == "int8" and doc["mask"] == "none"
    assert doc["inputs"] == [{"name": plan.inputs[0].name, "shape": [None, 8], "dtype": "float32"}]


def test_the_convert_result_carries_its_plan(saved: dict[str, Path], tmp_path: Path) -> None:
    doc = convert(saved["free"], tmp_path / "m.tflite", "float32", seq_len=10).to_dict()
    assert doc["plan"]["backend"] == "keras3" and doc["plan"]["seq_len"] == doc["seq_len"] == 10
    assert doc["plan"]["check_data"] == doc["check"]["data"] == "synthetic"
    json.dumps(doc)


def test_convert_explain_prints_the_plan_and_writes_nothing(
    saved: dict[str, Path], tmp_path: Path
) -> None:
    from click.testing import CliRunner

    from tfopt.cli import cli

    runner = CliRunner()
    args = ["convert", str(saved["free"]), "--precision", "int8", "--calibration",
            str(saved["free20.npy"]), "--explain"]  # fmt: skip
    text = runner.invoke(cli, args)
    assert text.exit_code == 0, text.output
    assert "export plan" in text.output and "length_from" in text.output
    doc = json.loads(runner.invoke(cli, [*args, "--json"]).output)
    assert doc["free_inputs"] == ["signal"] and doc["seq_len"] == 20 and doc["length_from"] == "data"
    assert doc["calibrated_by"] == "converter" and doc["isolated"] is True
    assert not list(tmp_path.iterdir())
    missing = runner.invoke(cli, ["convert", str(saved["free"])])  # no -o and no --explain
    assert missing.exit_code == 2 and "Missing option '-o'" in missing.output
