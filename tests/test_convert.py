"""Real conversions of every source kind to every precision, checked through the interpreter."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tfopt.conversion import convert
from tfopt.errors import ConversionError, DataError, ValidationError
from tfopt.inspection import inspect_tflite
from tfopt.loading import SourceKind, load
from tfopt.validate import compare_files

# precision -> a tensor dtype the converted graph must contain
PRECISION_MARKERS = {
    "float32": "float32",
    "float16": "float16",
    "dynamic": "int8",
    "int8": "int8",
    "int16x8": "int16",
}


@pytest.mark.parametrize("precision", list(PRECISION_MARKERS), ids=list(PRECISION_MARKERS))
def test_every_precision_on_tf_keras_cnn(
    precision: str, cnn: Any, files: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / f"{precision}.tflite"
    result = convert(cnn, out, precision, calibration=files["calib"])
    info = inspect_tflite(out)
    assert result.source == "tf_keras"
    assert PRECISION_MARKERS[precision] in info["tensor_dtypes"]
    assert result.check is not None and result.check["passed"]
    # The real digits classifier keeps its accuracy through the interpreter.
    cmp = compare_files(str(files["keras"]), str(out), str(files["test"]))
    assert cmp.accuracy is not None
    assert cmp.accuracy["candidate"] >= cmp.accuracy["reference"] - 0.02
    assert cmp.top1_agreement is not None and cmp.top1_agreement >= 0.97


def test_int8_is_a_quarter_of_float32(tflite: dict[str, Path]) -> None:
    f32, i8 = tflite["float32"].stat().st_size, tflite["int8"].stat().st_size
    assert i8 < 0.45 * f32  # the tiny CNN carries fixed flatbuffer overhead
    info = inspect_tflite(tflite["int8"])
    assert info["inputs"][0]["dtype"] == "float32"
    assert "QUANTIZE" in info["ops"] and "DEQUANTIZE" in info["ops"]
    assert info["float_compute_ops"] == {}


def test_int8_io_has_quantized_inputs_and_outputs(
    tflite: dict[str, Path], files: dict[str, Path]
) -> None:
    info = inspect_tflite(tflite["int8io"])
    for tensor in info["inputs"] + info["outputs"]:
        assert tensor["dtype"] == "int8"
        assert tensor["quantization"]["scale"] > 0
    # Compare dequantizes the int8 outputs: agreement with the float Keras model stays high.
    cmp = compare_files(str(files["keras"]), str(tflite["int8io"]), str(files["test"]))
    assert cmp.top1_agreement is not None and cmp.top1_agreement >= 0.97


@pytest.mark.parametrize("fmt", ["keras", "h5"], ids=["dot-keras", "h5"])
def test_files_load_in_their_own_world(fmt: str, files: dict[str, Path], tmp_path: Path) -> None:
    loaded = load(files[fmt])
    assert loaded.kind is SourceKind.TF_KERAS
    result = convert(files[fmt], tmp_path / "m.tflite", "dynamic")
    assert result.source == "tf_keras"


def test_keras3_file_and_saved_model(
    keras3: Any, digits: dict[str, np.ndarray], tmp_path: Path
) -> None:
    inputs = keras3.Input((8, 8, 1), name="image")
    h = keras3.layers.Conv2D(4, 3, activation="relu")(inputs)
    outputs = keras3.layers.Dense(10, activation="softmax")(keras3.layers.Flatten()(h))
    model = keras3.Model(inputs, outputs)
    model.save(tmp_path / "k3.keras")
    assert load(tmp_path / "k3.keras").kind is SourceKind.KERAS3
    result = convert(tmp_path / "k3.keras", tmp_path / "k3.tflite", "float16")
    assert result.source == "keras3" and result.check["passed"]

    model.export(str(tmp_path / "sm"), format="tf_saved_model", verbose=False)
    assert load(tmp_path / "sm").kind is SourceKind.SAVED_MODEL
    np.savez(tmp_path / "cal.npz", image=digits["x_train"][:20])
    result = convert(
        tmp_path / "sm", tmp_path / "sm.tflite", "int8", calibration=tmp_path / "cal.npz"
    )
    assert result.source == "saved_model" and result.check["passed"]


@pytest.mark.parametrize("precision", ["float32", "float16", "dynamic", "int8"])
def test_keras_hub_bert(precision: str, bert: Any, bert_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "bert.tflite"
    result = convert(bert, out, precision, calibration=bert_data, seq_len=32)
    assert result.source == "keras3"
    info = inspect_tflite(out)
    assert {t["name"] for t in info["inputs"]} == {"token_ids", "segment_ids", "padding_mask"}
    assert all(t["shape"] == [1, 32] for t in info["inputs"])
    assert {t["name"] for t in info["outputs"]} == {"pooled_output", "sequence_output"}
    assert result.check["passed"]


def test_keras_nlp_alias_converts(bert_data: Path, tmp_path: Path) -> None:
    import keras_nlp

    model = keras_nlp.models.BertBackbone(
        vocabulary_size=1000,
        num_layers=1,
        num_heads=2,
        hidden_dim=32,
        intermediate_dim=64,
        max_sequence_length=64,
    )
    assert convert(model, tmp_path / "nlp.tflite", "float32", seq_len=32).check["passed"]


def test_keras_hub_seq_len_defaults_to_the_models_own(
    bert: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    result = convert(bert, tmp_path / "b.tflite", "float32")
    assert result.seq_len == bert.max_sequence_length == 64
    assert inspect_tflite(tmp_path / "b.tflite")["inputs"][0]["shape"] == [1, 64]
    assert "seq_len 64: the model's own sequence length" in caplog.text  # a parameter, not a flag


def test_free_length_without_a_known_one_asks_for_seq_len(keras3: Any, tmp_path: Path) -> None:
    tokens = keras3.Input((None,), dtype="int32")
    model = keras3.Model(tokens, keras3.layers.Embedding(50, 4)(tokens))
    with pytest.raises(ConversionError, match="seq_len"):
        convert(model, tmp_path / "b.tflite", "float32")
    assert not (tmp_path / "b.tflite").exists()


def test_int16x8_on_integer_inputs_names_them(bert: Any, bert_data: Path, tmp_path: Path) -> None:
    with pytest.raises(ConversionError, match="token_ids.*int8 or dynamic"):
        convert(bert, tmp_path / "b.tflite", "int16x8", calibration=bert_data, seq_len=32)


def test_int8_needs_calibration(cnn: Any, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="pass calibration"):
        convert(cnn, tmp_path / "m.tflite", "int8")


def test_calibration_from_npy_and_image_folder(
    cnn: Any, files: dict[str, Path], digits: dict[str, np.ndarray], tmp_path: Path
) -> None:
    assert convert(cnn, tmp_path / "a.tflite", "int8", calibration=files["npy"]).check["passed"]
    import tensorflow as tf

    folder = tmp_path / "images"
    folder.mkdir()
    for i, img in enumerate(digits["x_train"][:12]):
        png = tf.io.encode_png(tf.cast(img * 255, tf.uint8)).numpy()
        (folder / f"{i}.png").write_bytes(png)
    result = convert(cnn, tmp_path / "b.tflite", "int8", calibration=folder, num_calibration=10)
    assert result.check["passed"] and result.check["samples"] == 10


def test_failed_check_leaves_nothing(tf_keras: Any, tmp_path: Path) -> None:
    """A model whose int8 output range the calibration data does not cover fails its check."""
    inputs = tf_keras.Input((4,), name="x")
    model = tf_keras.Model(inputs, tf_keras.layers.Dense(3, kernel_initializer="ones")(inputs))
    np.savez(tmp_path / "narrow.npz", x=np.full((8, 4), 1e-3, np.float32))
    np.savez(tmp_path / "wide.npz", x=np.linspace(-50, 50, 32, dtype=np.float32).reshape(8, 4))
    out = tmp_path / "m.tflite"
    with pytest.raises(ValidationError, match="numeric check"):
        convert(
            model,
            out,
            "int8",
            calibration=tmp_path / "narrow.npz",
            check_data=tmp_path / "wide.npz",
        )
    assert not out.exists() and list(tmp_path.glob("*.part")) == []


def test_inputs_are_never_modified(files: dict[str, Path], tmp_path: Path) -> None:
    before = {k: p.read_bytes() for k, p in files.items()}
    convert(files["keras"], tmp_path / "x.tflite", "int8", calibration=files["calib"])
    assert {k: p.read_bytes() for k, p in files.items()} == before


def test_unsupported_ops_are_named(tf_keras: Any, tmp_path: Path) -> None:
    import tensorflow as tf

    class Determinant(tf_keras.layers.Layer):
        def call(self, x: Any) -> Any:
            return tf.linalg.det(tf.reshape(x, (-1, 2, 2)))[:, None] * x

    inputs = tf_keras.Input((4,), name="x")
    model = tf_keras.Model(inputs, tf_keras.layers.Dense(2)(Determinant()(inputs)))
    with pytest.raises(ConversionError, match="no TFLite builtin kernel: MatrixDeterminant"):
        convert(model, tmp_path / "m.tflite", "float32")
    assert not (tmp_path / "m.tflite").exists()


def test_int16x8_that_would_crash_litert_is_refused_in_one_line(
    tf_keras: Any, tmp_path: Path
) -> None:
    # LiteRT aborts the process loading this int16x8 LayerNormalization (no int16 kernel): the
    # new file is first run in a child process, so the abort becomes an error, not a crash.
    inputs = tf_keras.Input((16,))
    h = tf_keras.layers.LayerNormalization()(tf_keras.layers.Dense(16)(inputs))
    model = tf_keras.Model(inputs, tf_keras.layers.Dense(4, activation="softmax")(h))
    np.savez(tmp_path / "x.npz", x=np.random.default_rng(0).random((32, 16), dtype=np.float32))
    with pytest.raises(ConversionError, match=r"crashes LiteRT .*SIGABRT.*int16x8 kernel"):
        convert(model, tmp_path / "m.tflite", "int16x8", calibration=tmp_path / "x.npz")
    assert not (tmp_path / "m.tflite").exists()


def test_int8_of_an_rnn_loop_names_the_op(tf_keras: Any, tmp_path: Path) -> None:
    # A ConvLSTM becomes a WHILE loop, on which TF 2.21's calibrator segfaults (a GRU, SimpleRNN or
    # LSTM of either Keras world is unrolled or fused instead: tests/test_tf_keras_rnn_int8.py).
    frames = tf_keras.Input((6, 8, 2))
    h = tf_keras.layers.ConvLSTM1D(32, 3)(frames)  # 12,288 recurrent weights: dynamic quantizes them
    model = tf_keras.Model(frames, tf_keras.layers.Dense(2)(tf_keras.layers.Flatten()(h)))
    np.savez(tmp_path / "t.npz", x=np.random.default_rng(0).random((16, 6, 8, 2), np.float32))
    with pytest.raises(ConversionError, match=r"ops at fault: WHILE.*precision dynamic"):
        convert(model, tmp_path / "m.tflite", "int8", calibration=tmp_path / "t.npz")
    assert convert(model, tmp_path / "d.tflite", "dynamic").check["passed"]


def test_fused_lstm_state_does_not_leak_between_check_samples(
    tf_keras: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # tf_keras's LSTM becomes UNIDIRECTIONAL_SEQUENCE_LSTM, whose state tensors are variables
    # that persist across invoke(): without a reset the second sample started from the first
    # one's state and float32 read 32 dB instead of exact.
    tf_keras.utils.set_random_seed(0)
    inputs = tf_keras.Input((8, 8))
    model = tf_keras.Model(inputs, tf_keras.layers.Dense(10)(tf_keras.layers.LSTM(16)(inputs)))
    np.savez(tmp_path / "x.npz", x=np.random.default_rng(0).random((16, 8, 8), dtype=np.float32))
    result = convert(model, tmp_path / "m.tflite", "float32", check_data=tmp_path / "x.npz")
    assert result.check is not None and result.check["outputs"][0]["sqnr_db"] > 100
    assert "reset_all_variables()" in caplog.text


BUDGETS = {
    "too-big": (["--max-size", "4KB"], "over --max-size 4.0 KB"),
    "ops-outside": (["--allowed-ops", "CONV_2D,RESHAPE"], "needs ops outside --allowed-ops: FULLY_CONNECTED"),
    "bad-size": (["--max-size", "5 bananas"], "write a size such as 5MB"),
}


@pytest.mark.parametrize("case", list(BUDGETS), ids=list(BUDGETS))
def test_app_budget_refuses_in_one_line_and_writes_nothing(
    case: str, files: dict[str, Path], tmp_path: Path
) -> None:
    from click.testing import CliRunner

    from tests.conftest import invoke

    args, says = BUDGETS[case]
    out = tmp_path / "m.tflite"
    result = invoke(CliRunner(), "convert", files["keras"], "-o", out, *args)
    assert result.exit_code == 1
    assert says in result.output and len(result.output.strip().splitlines()) == 1
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_app_budget_passes_a_file_that_fits(files: dict[str, Path], tmp_path: Path) -> None:
    ops = tmp_path / "selective_build_ops.txt"  # as a selectively built runtime lists its ops
    ops.write_text("CONV_2D\nRESHAPE\nFULLY_CONNECTED\nSOFTMAX\nQUANTIZE\nDEQUANTIZE\n")
    result = convert(files["keras"], tmp_path / "m.tflite", "dynamic", max_size="1MB",
                     allowed_ops=str(ops))  # fmt: skip
    assert result.size_bytes < 10**6
    convert(files["keras"], tmp_path / "b.tflite", allowed_ops="builtin")


def test_dynamic_length_without_a_free_dimension_says_so(
    cnn: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    out = tmp_path / "cnn.tflite"
    convert(cnn, out, "float32", dynamic_length=True)
    assert "changes nothing" in caplog.text
    from tfopt.runtime import feeding

    inputs, _ = feeding.io_details(feeding.make_interpreter(str(out)))
    assert [list(d["shape_signature"])[1:] for d in inputs.values()] == [[8, 8, 1]]
