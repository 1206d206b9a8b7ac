"""Models as users bring them: trained with `fit`, saved with `model.save`, loaded from the file.

Every model here goes through the real CLI from its file (no in-memory shortcut): Keras 3
Sequential with and without `Input`, a text model whose token ids users hold as integers, a
subclassed model whose class lives in the user's own module, a SavedModel with a fixed batch of
1, and third-party `.tflite` files with custom ops.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from tests.conftest import invoke
from tfopt.conversion import convert
from tfopt.errors import InputError, ModelLoadError, ValidationError
from tfopt.inspection import inspect_tflite
from tfopt.loading import load, parse_input_shapes

SUBCLASS_MODULE = textwrap.dedent(
    """
    import keras


    @keras.saving.register_keras_serializable(package="user")
    class TinyNet(keras.Model):
        def __init__(self, units=10, **kwargs):
            super().__init__(**kwargs)
            self.units = units
            self.flat = keras.layers.Flatten()
            self.out = keras.layers.Dense(units, activation="softmax")

        def call(self, x):
            return self.out(self.flat(x))

        def get_config(self):
            return {**super().get_config(), "units": self.units}
    """
)


@pytest.fixture(scope="module")
def saved(
    tmp_path_factory: pytest.TempPathFactory, keras3: Any, tf_keras: Any, digits: dict[str, Any]
) -> dict[str, Path]:
    """Each model fitted on real digits (or token ids) and saved to a file, as a tutorial does."""
    root = tmp_path_factory.mktemp("user_models")
    x, y = digits["x_train"][:400], digits["y_train"][:400]
    keras3.utils.set_random_seed(0)
    paths: dict[str, Path] = {}

    def fit_save(model: Any, name: str, xs: np.ndarray, ys: np.ndarray, epochs: int = 8) -> None:
        model.compile("adam", "sparse_categorical_crossentropy")
        model.fit(xs, ys, epochs=epochs, batch_size=64, verbose=0)
        paths[name] = root / name
        model.save(paths[name])

    layers = keras3.layers
    fit_save(
        keras3.Sequential(
            [keras3.Input((8, 8, 1)), layers.Conv2D(8, 3, activation="relu"), layers.Flatten(),
             layers.Dense(10, activation="softmax")]
        ),
        "seq_input.keras", x, y,
    )  # fmt: skip
    fit_save(
        keras3.Sequential(
            [layers.Conv2D(8, 3, activation="relu"), layers.Flatten(),
             layers.Dense(10, activation="softmax")]
        ),
        "seq_no_input.keras", x, y,
    )  # fmt: skip
    # Token ids: digits pixel intensities 0..16 as a 64-token "sentence".
    tokens = (digits["x_train"][:400].reshape(400, 64) * 16).round().astype(np.int32)
    paths["tokens.npz"] = root / "tokens.npz"
    # 40 samples: fewer than the batch (64) that `fit` records in a Sequential without Input.
    np.savez(paths["tokens.npz"], x=tokens[:40])
    fit_save(
        keras3.Sequential(
            # LSTM(16) on 16 features: a 1,024-value kernel, the least dynamic range quantizes
            [layers.Embedding(17, 16), layers.LSTM(16), layers.Dense(10, activation="softmax")]
        ),
        "seq_lstm.keras", tokens, y, 1,
    )  # fmt: skip
    # tf_keras without an explicit Input: the Embedding's input defaults to float32.
    text = tf_keras.Sequential(
        [tf_keras.layers.Embedding(17, 16, input_length=64), tf_keras.layers.GRU(32),
         tf_keras.layers.Dense(10, activation="softmax")]
    )  # fmt: skip
    fit_save(text, "tfk_gru.h5", tokens.astype(np.float32), y, 1)

    module = root / "user_layers.py"
    module.write_text(SUBCLASS_MODULE)
    paths["module"] = module
    # The user's own training script, in its own process: this one must not know the class.
    np.savez(root / "train.npz", x=x, y=y)
    paths["subclassed.keras"] = root / "subclassed.keras"
    script = (
        "import keras, numpy as np, user_layers\n"
        "keras.utils.set_random_seed(0)\n"
        "d = np.load('train.npz')\n"
        "m = user_layers.TinyNet()\n"
        "m.compile('adam', 'sparse_categorical_crossentropy')\n"
        "m.fit(d['x'], d['y'], epochs=8, batch_size=64, verbose=0)\n"
        "m.save('subclassed.keras')\n"
    )
    subprocess.run(
        [sys.executable, "-c", script], cwd=root, check=True, env={**os.environ, "PYTHONPATH": ""}
    )
    paths["digits.npz"] = root / "digits.npz"
    np.savez(paths["digits.npz"], x=digits["x_test"][:64], y=digits["y_test"][:64])
    return paths


@pytest.mark.parametrize("name", ["seq_input.keras", "seq_no_input.keras"])
def test_keras3_sequential_from_its_file(
    runner: CliRunner, saved: dict[str, Path], tmp_path: Path, name: str
) -> None:
    out = tmp_path / "m.tflite"
    result = invoke(
        runner, "convert", saved[name], "-o", out, "--precision", "int8",
        "--calibration", saved["digits.npz"], "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["check"]["passed"]
    cmp = invoke(runner, "compare", saved[name], out, "--data", saved["digits.npz"], "--json")
    assert cmp.exit_code == 0, cmp.output
    doc = json.loads(cmp.stdout)
    assert doc["top1_agreement"] >= 0.95
    assert doc["accuracy"]["candidate"] >= doc["accuracy"]["reference"] - 0.03


def test_keras3_sequential_text_model_takes_integer_token_ids(
    runner: CliRunner, saved: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "lstm.tflite"
    result = invoke(
        runner, "convert", saved["seq_lstm.keras"], "-o", out, "--precision", "dynamic",
        "--calibration", saved["tokens.npz"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "note: " in result.stderr and "as float32 (exact)" in result.stderr


def test_tf_keras_float_embedding_input_takes_int_ids_and_rnn_converts(
    runner: CliRunner, saved: dict[str, Path], tmp_path: Path
) -> None:
    # from_keras_model cannot lower the GRU's tensor lists at a free batch size: tfopt retries
    # at batch 1, and int32 token ids are cast exactly to the float32 Embedding input.
    out = tmp_path / "gru.tflite"
    result = invoke(
        runner, "convert", saved["tfk_gru.h5"], "-o", out, "--precision", "dynamic",
        "--calibration", saved["tokens.npz"], "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["check"]["passed"]
    assert "expects floating-point" not in result.output


def test_subclassed_model_needs_import_and_unsafe(
    runner: CliRunner, saved: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "sub.tflite"
    model = saved["subclassed.keras"]
    plain = invoke(runner, "convert", model, "-o", out)
    assert plain.exit_code == 1 and "--import" in plain.stderr
    assert len(plain.stderr.strip().splitlines()) == 1
    no_unsafe = invoke(runner, "convert", model, "-o", out, "--import", saved["module"])
    assert no_unsafe.exit_code == 1 and "--unsafe" in no_unsafe.stderr
    assert not out.exists()
    ok = invoke(
        runner, "convert", model, "-o", out, "--import", saved["module"], "--unsafe",
        "--precision", "int8", "--calibration", saved["digits.npz"],
    )  # fmt: skip
    assert ok.exit_code == 0, ok.output
    cmp = invoke(
        runner, "compare", model, out, "--data", saved["digits.npz"], "--import",
        saved["module"], "--unsafe", "--json",
    )  # fmt: skip
    assert cmp.exit_code == 0, cmp.output
    # int8 may flip a few of 64 low-margin digits (how many depends on the CPU's kernels); a
    # broken conversion agrees on about 1 in 10
    assert json.loads(cmp.stdout)["top1_agreement"] >= 0.9


def test_import_that_fails_is_one_line(
    runner: CliRunner, saved: dict[str, Path], tmp_path: Path
) -> None:
    broken = tmp_path / "broken.py"
    broken.write_text("raise RuntimeError('boom')\n")
    for target in (broken, "no_such_module_anywhere"):
        result = invoke(
            runner, "convert", saved["subclassed.keras"], "-o", tmp_path / "x.tflite",
            "--import", target, "--unsafe",
        )  # fmt: skip
        assert result.exit_code == 1
        assert result.stderr.startswith("Error: cannot import")
        assert len(result.stderr.strip().splitlines()) == 1


def test_never_built_subclassed_model_asks_for_input_shape(keras3: Any, tmp_path: Path) -> None:
    class Net(keras3.Model):
        def __init__(self) -> None:
            super().__init__()
            self.dense = keras3.layers.Dense(3)

        def call(self, x: Any) -> Any:
            return self.dense(x)

    with pytest.raises(ModelLoadError, match="pass input_shapes"):
        load(Net())
    result = convert(Net(), tmp_path / "n.tflite", input_shapes=(1, 5))
    assert result.check is not None and result.check["passed"]
    assert inspect_tflite(tmp_path / "n.tflite")["inputs"][0]["shape"] == [1, 5]


def test_parse_input_shapes() -> None:
    assert parse_input_shapes(()) is None
    assert parse_input_shapes(["1,224,224,3"]) == (1, 224, 224, 3)
    assert parse_input_shapes(["ids=1,?", "mask=1,None"]) == {"ids": (1, None), "mask": (1, None)}
    for bad in (["1,x"], ["1,-2"], ["1,2", "3,4"], ["a=1", "1,2"]):
        with pytest.raises(InputError):
            parse_input_shapes(bad)


def test_saved_model_with_fixed_batch_of_one(tmp_path: Path) -> None:
    from tfopt import keras_worlds

    tf = keras_worlds.tf()
    module = tf.Module()
    module.w = tf.Variable(tf.random.stateless_normal([48 * 48 * 3, 4], seed=[1, 2]) * 0.02)

    @tf.function(input_signature=[tf.TensorSpec([1, 48, 48, 3], tf.float32, name="image")])
    def serve(image: Any) -> Any:
        return {"probs": tf.nn.softmax(tf.reshape(image, [1, -1]) @ module.w)}

    module.serve = serve
    tf.saved_model.save(module, str(tmp_path / "sm"), signatures={"serving_default": serve})
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "img.npz", image=rng.random((20, 48, 48, 3), dtype=np.float32))
    result = convert(
        tmp_path / "sm", tmp_path / "sm.tflite", "int8", calibration=tmp_path / "img.npz"
    )
    assert result.check is not None and result.check["samples"] == 20


@pytest.fixture(scope="module")
def custom_op_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Third-party style files with custom ops: one LiteRT resolves (AudioSpectrogram + Mfcc,
    as in speech front ends), one it does not (a TF op emitted as a custom op)."""
    from tfopt import keras_worlds

    tf = keras_worlds.tf()
    root = tmp_path_factory.mktemp("custom_ops")

    def save(fn: Any, spec: Any, name: str) -> Path:
        concrete = tf.function(fn).get_concrete_function(spec)
        converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete])
        converter.allow_custom_ops = True
        path = root / name
        path.write_bytes(converter.convert())
        return path

    def mfcc(x: Any) -> Any:
        spectrogram = tf.raw_ops.AudioSpectrogram(
            input=x, window_size=256, stride=128, magnitude_squared=True
        )
        return tf.raw_ops.Mfcc(spectrogram=spectrogram, sample_rate=16000)

    return {
        "resolved": save(mfcc, tf.TensorSpec([1000, 1], tf.float32), "mfcc.tflite"),
        "unresolved": save(
            lambda x: tf.math.special.bessel_i0e(x) * 2.0,
            tf.TensorSpec([1, 4], tf.float32),
            "bessel.tflite",
        ),
    }


def test_inspect_reads_custom_op_files_without_kernels(
    runner: CliRunner, custom_op_files: dict[str, Path]
) -> None:
    resolved = inspect_tflite(custom_op_files["resolved"])
    assert resolved["custom_ops"] == ["AudioSpectrogram", "Mfcc"]
    assert resolved["missing_kernels"] == []
    assert resolved["inputs"][0]["shape"] == [1000, 1]
    result = invoke(runner, "inspect", custom_op_files["unresolved"])
    assert result.exit_code == 0, result.output
    assert "custom ops: BesselI0e" in result.stdout
    assert "no kernel in this LiteRT for: BesselI0e" in result.stdout
    doc = json.loads(invoke(runner, "inspect", custom_op_files["unresolved"], "--json").stdout)
    assert doc["missing_kernels"] == ["BesselI0e"] and doc["inputs"][0]["shape"] == [1, 4]


def test_builtin_op_budget_names_custom_ops(custom_op_files: dict[str, Path]) -> None:
    """`--allowed-ops builtin`: custom ops, which an app links separately, are named."""
    from tfopt.conversion.budget import BudgetError, check

    with pytest.raises(BudgetError, match=r"link separately: BesselI0e \(custom\)"):
        check(Path(custom_op_files["unresolved"]).read_bytes(), "float32", None, ("builtin",))
    check(Path(custom_op_files["unresolved"]).read_bytes(), "float32", None, None)


def test_bench_runs_a_custom_op_file_litert_resolves(
    runner: CliRunner, custom_op_files: dict[str, Path]
) -> None:
    result = invoke(
        runner, "bench", custom_op_files["resolved"], "--threads", "1", "--runs", "3", "--json"
    )
    assert result.exit_code == 0, result.output


def test_constant_reference_is_named_as_the_cause(
    keras3: Any, digits: dict[str, Any], tmp_path: Path
) -> None:
    # An untrained 1000-class head: every sample gives the same softmax (0.001 each), which int8
    # output quantization (scale 1/256) rounds to 0 — SQNR 0 dB that says nothing about int8.
    inputs = keras3.Input((8, 8, 1))
    flat = keras3.layers.Flatten()(inputs)
    outputs = keras3.layers.Dense(1000, "softmax", kernel_initializer="zeros")(flat)
    np.savez(tmp_path / "calib.npz", x=digits["x_train"][:32])
    with pytest.raises(ValidationError, match="same output for every sample"):
        convert(
            keras3.Model(inputs, outputs), tmp_path / "m.tflite", "int8",
            calibration=tmp_path / "calib.npz",
        )  # fmt: skip
    assert not (tmp_path / "m.tflite").exists()


def test_optimize_a_keras3_sequential_file(
    runner: CliRunner, saved: dict[str, Path], digits: dict[str, Any], tmp_path: Path
) -> None:
    data = tmp_path / "opt.npz"
    np.savez(
        data, x_train=digits["x_train"][:320], y_train=digits["y_train"][:320],
        x_val=digits["x_test"][:96], y_val=digits["y_test"][:96],
    )  # fmt: skip
    result = invoke(
        runner, "optimize", saved["seq_no_input.keras"], "--recipe", "prune50-int8",
        "--data", data, "-o", tmp_path / "out", "--epochs", "1", "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["stages"][-1]["sparsity"] >= 0.45
    assert (tmp_path / "out" / "model.tflite").exists()


def test_free_lengths_follow_the_users_data(
    runner: CliRunner, tf_keras: Any, tmp_path: Path
) -> None:
    # A tf_keras text model saved without an Input: its time axis is free. The length comes from
    # the calibration data (no --seq-len needed), and the LSTM converts at that static length.
    model = tf_keras.Sequential(
        # Wide enough that dynamic range quantizes the kernels (1,024 values or more).
        [tf_keras.layers.Embedding(30, 32), tf_keras.layers.LSTM(32), tf_keras.layers.Dense(2)]
    )
    tokens = np.random.default_rng(0).integers(0, 30, (24, 12)).astype(np.int32)
    model.compile("adam", "mse")
    model.fit(tokens, np.zeros((24, 2)), epochs=1, verbose=0)
    model.save(tmp_path / "lstm.h5")
    np.savez(tmp_path / "tokens.npz", x=tokens)
    out = tmp_path / "lstm.tflite"
    result = invoke(
        runner, "convert", tmp_path / "lstm.h5", "-o", out, "--precision", "dynamic",
        "--calibration", tmp_path / "tokens.npz", "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "fixed to (12,) from the data" in result.stderr
    assert json.loads(result.stdout)["seq_len"] == 12


def test_tf_keras_multi_input_int8_calibrates_each_input_by_name(
    tf_keras: Any, digits: dict[str, Any], tmp_path: Path
) -> None:
    image = tf_keras.Input((8, 8, 1), name="image")
    stats = tf_keras.Input((4,), name="stats")
    h = tf_keras.layers.Flatten()(tf_keras.layers.Conv2D(4, 3)(image))
    joined = tf_keras.layers.Concatenate()([h, tf_keras.layers.Dense(4)(stats)])
    model = tf_keras.Model([image, stats], tf_keras.layers.Dense(10, "softmax")(joined))
    x = digits["x_train"][:32]
    np.savez(tmp_path / "c.npz", image=x, stats=x.reshape(32, -1)[:, :4])
    model.save(tmp_path / "mi.keras")  # as users do: the file, not the object in memory
    result = convert(
        tmp_path / "mi.keras", tmp_path / "m.tflite", "int8", calibration=tmp_path / "c.npz"
    )
    assert result.check is not None and result.check["passed"]
