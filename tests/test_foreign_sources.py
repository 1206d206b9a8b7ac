"""Sources from outside the Keras `model.save` path: SavedModels written by `tf.saved_model.save`
(a `tf.Module` holding its own variables, subclassed models of both Keras worlds), and files
tfopt does not convert (TF1 checkpoints, ONNX, PyTorch, frozen GraphDefs), which get one line
naming the format and the route to a convertible model.

Every Keras 3 model saved with `tf.saved_model.save` converts, through the converter's own
SavedModel path, to a file whose weights are uninitialized variables (every output 0); tfopt
converts those from the loaded serving signature instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from tests.conftest import SEED, invoke
from tfopt.inspection import graph_summary

VARIABLE_OPS = ("VAR_HANDLE", "READ_VARIABLE")


def _keras3_subclassed(keras3: Any, digits: dict[str, np.ndarray], samples: int | None = None) -> Any:
    class DigitNet(keras3.Model):
        def __init__(self) -> None:
            super().__init__()
            self.conv = keras3.layers.Conv2D(8, 3, activation="relu")
            self.flat = keras3.layers.Flatten()
            self.out = keras3.layers.Dense(10, activation="softmax")

        def call(self, x: Any) -> Any:
            return self.out(self.flat(self.conv(x)))

    keras3.utils.set_random_seed(SEED)
    model = DigitNet()
    model.compile("adam", "sparse_categorical_crossentropy")
    x, y = digits["x_train"][:samples], digits["y_train"][:samples]
    model.fit(x, y, epochs=3, batch_size=32, verbose=0)
    return model


def _tf_keras_subclassed(tf_keras: Any, digits: dict[str, np.ndarray]) -> Any:
    class DigitNet(tf_keras.Model):
        def __init__(self) -> None:
            super().__init__()
            self.conv = tf_keras.layers.Conv2D(8, 3, activation="relu")
            self.flat = tf_keras.layers.Flatten()
            self.out = tf_keras.layers.Dense(10, activation="softmax")

        def call(self, x: Any) -> Any:
            return self.out(self.flat(self.conv(x)))

    tf_keras.utils.set_random_seed(SEED)
    model = DigitNet()
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(digits["x_train"], digits["y_train"], epochs=3, batch_size=32, verbose=0)
    return model


def _trained_module(tf: Any, digits: dict[str, np.ndarray]) -> Any:
    """A two-layer MLP as a plain `tf.Module`, trained 200 steps of gradient descent."""
    init = tf.random.stateless_normal
    module = tf.Module()
    module.w1 = tf.Variable(init([64, 32], seed=[1, 2]) * 0.2)
    module.b1 = tf.Variable(tf.zeros([32]))
    module.w2 = tf.Variable(init([32, 10], seed=[3, 4]) * 0.2)
    module.b2 = tf.Variable(tf.zeros([10]))
    weights = [module.w1, module.b1, module.w2, module.b2]

    def logits(image: Any) -> Any:
        h = tf.nn.relu(tf.reshape(image, [-1, 64]) @ module.w1 + module.b1)
        return h @ module.w2 + module.b2

    x, y = tf.constant(digits["x_train"]), tf.constant(digits["y_train"])
    for _ in range(200):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(
                tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits(x))
            )
        for w, g in zip(weights, tape.gradient(loss, weights), strict=True):
            w.assign_sub(0.5 * g)

    @tf.function(input_signature=[tf.TensorSpec([None, 8, 8, 1], tf.float32, name="image")])
    def serve(image: Any) -> Any:
        return {"probs": tf.nn.softmax(logits(image))}

    module.serve = serve
    return module


@pytest.fixture(scope="module")
def saved(
    tmp_path_factory: pytest.TempPathFactory,
    keras3: Any,
    tf_keras: Any,
    digits: dict[str, np.ndarray],
) -> dict[str, Path]:
    """SavedModels as `tf.saved_model.save` writes them, and real digits as calibration data."""
    from tfopt import keras_worlds

    tf = keras_worlds.tf()
    root = tmp_path_factory.mktemp("foreign")
    paths = {name: root / name for name in ("keras3", "keras3_fit_batch", "tf_keras", "module")}
    image = tf.TensorSpec([None, 8, 8, 1], tf.float32, name="image")

    k3 = _keras3_subclassed(keras3, digits)
    # As TensorFlow's SavedModel guide writes a subclassed model's signature: a traced call.
    tf.saved_model.save(
        k3, str(paths["keras3"]), signatures=tf.function(k3.call).get_concrete_function(image)
    )
    # Without one, the signature takes the shape `fit` built the model at: with a sample count
    # that is a multiple of the batch size, a batch fixed at 32.
    tf.saved_model.save(_keras3_subclassed(keras3, digits, 1408), str(paths["keras3_fit_batch"]))
    tf.saved_model.save(_tf_keras_subclassed(tf_keras, digits), str(paths["tf_keras"]))
    module = _trained_module(tf, digits)
    tf.saved_model.save(module, str(paths["module"]), signatures={"serving_default": module.serve})

    x = digits["x_test"][:40]
    np.save(root / "digits.npy", x)  # one input: a bare array
    for name in ("keras3", "module"):
        np.savez(root / f"{name}.npz", image=x)
    np.savez(root / "tf_keras.npz", input_1=x)
    return {**paths, "npy": root / "digits.npy",
            **{f"{n}_npz": root / f"{n}.npz" for n in ("keras3", "module", "tf_keras")}}  # fmt: skip


def test_converter_leaves_keras3_weights_as_variables(saved: dict[str, Path]) -> None:
    """The defect tfopt works around: the converter's own SavedModel path keeps the weights of
    a Keras 3 model as uninitialized variables (so the tests below exercise the workaround)."""
    from converters.saved_model import from_folder, unfrozen_variables

    flatbuffer = from_folder(saved["keras3"]).converter.convert()
    assert unfrozen_variables(flatbuffer) == 4  # two kernels, two biases
    assert all(graph_summary(flatbuffer)["ops"].get(op) for op in VARIABLE_OPS)


CASES = [
    ("keras3", "float32"),
    ("keras3", "dynamic"),
    ("keras3", "int8"),
    ("module", "float32"),
    ("module", "int8"),
    ("tf_keras", "float32"),
    ("tf_keras", "int8"),
]


@pytest.mark.parametrize(("source", "precision"), CASES, ids=[f"{s}-{p}" for s, p in CASES])
def test_saved_model_converts_with_frozen_weights(
    source: str, precision: str, saved: dict[str, Path], runner: CliRunner, tmp_path: Path
) -> None:
    out = tmp_path / f"{source}.tflite"
    args = ["convert", saved[source], "-o", out, "--precision", precision]
    if precision == "int8":
        # keyed by the signature's input name, and as a bare array for the one input
        data = saved[f"{source}_npz"] if source != "keras3" else saved["npy"]
        args += ["--calibration", data]
    result = invoke(runner, *args)
    assert result.exit_code == 0, result.stderr
    assert "check passed" in result.stdout
    ops = graph_summary(out.read_bytes())["ops"]
    assert not any(op in ops for op in VARIABLE_OPS), ops
    assert ("variables frozen" in result.stderr) == (source == "keras3")
    # The file computes the model, not zeros: the digits are still told apart.
    from tfopt.runtime.feeding import make_interpreter

    interpreter = make_interpreter(str(out))
    runner_fn = interpreter.get_signature_runner()
    x = np.load(saved["npy"])[:20]
    (name,) = runner_fn.get_input_details()
    preds = [np.argmax(next(iter(runner_fn(**{name: x[i : i + 1]}).values()))) for i in range(20)]
    assert len(set(preds)) >= 5


def test_signature_fixed_at_the_fit_batch_is_refused(
    saved: dict[str, Path], runner: CliRunner, tmp_path: Path
) -> None:
    result = invoke(
        runner, "convert", saved["keras3_fit_batch"], "-o", tmp_path / "x.tflite"
    )
    assert result.exit_code == 1
    (line,) = [ln for ln in result.stderr.splitlines() if ln.startswith("Error:")]
    assert "fixes the batch at 32" in line and "(None, 8, 8, 1)" in line
    assert not (tmp_path / "x.tflite").exists()


def _onnx_model_proto() -> bytes:
    """A minimal valid ONNX ModelProto (ir_version 8, producer, an empty graph, opset 17),
    written field by field: the `onnx` package is not a dependency."""

    def message(field: int, payload: bytes) -> bytes:
        return bytes([(field << 3) | 2, len(payload)]) + payload

    opset = bytes([(2 << 3) | 0, 17])  # OperatorSetIdProto.version = 17
    return bytes([(1 << 3) | 0, 8]) + message(2, b"hand") + message(7, message(2, b"g")) + (
        message(8, opset)
    )


@pytest.fixture(scope="module")
def foreign(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Files users pass by mistake, each written the way its own tool writes it."""
    import pickle
    import zipfile

    from tfopt import keras_worlds

    tf = keras_worlds.tf()
    root = tmp_path_factory.mktemp("not_tfopt")
    tf.train.Checkpoint(w=tf.Variable(tf.ones([4, 4]))).save(str(root / "tf2_ckpt" / "ckpt"))
    with tf.Graph().as_default():
        tf.compat.v1.get_variable("w", [4, 4])
        with tf.compat.v1.Session() as session:
            session.run(tf.compat.v1.global_variables_initializer())
            tf.compat.v1.train.Saver().save(session, str(root / "tf1_ckpt" / "model.ckpt"))
    (root / "model.onnx").write_bytes(_onnx_model_proto())
    (root / "exported").write_bytes(_onnx_model_proto())  # no extension: told by its bytes
    (root / "broken.onnx").write_bytes(b"not even protobuf")
    with zipfile.ZipFile(root / "net.pt", "w") as z:  # torch.save's layout
        z.writestr("net/data.pkl", pickle.dumps({"weight": [0.0]}, protocol=2))
        z.writestr("net/version", "3\n")
    graph = tf.function(lambda x: x * 2).get_concrete_function(tf.TensorSpec([1])).graph
    (root / "frozen.pb").write_bytes(graph.as_graph_def().SerializeToString())
    return {p.name: p for p in root.iterdir()}


FOREIGN = [  # (file, what the line says it is, the route it names)
    ("tf2_ckpt", "is a TensorFlow checkpoint (weights only, no graph)", "tf.saved_model.save"),
    ("tf1_ckpt", "is a TensorFlow checkpoint (weights only, no graph)", "model.save"),
    ("model.onnx", "is an ONNX model", "onnx2tf (pip install onnx2tf)"),
    ("exported", "is an ONNX model", "onnx2tf"),
    ("broken.onnx", "is an ONNX model", "onnx2tf"),
    ("net.pt", "is a PyTorch model", "litert-torch"),
    ("frozen.pb", "is a TensorFlow GraphDef", "from_frozen_graph"),
]


def _error_line(result: Any) -> str:
    assert result.exit_code == 1, result.output
    (line,) = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert line.startswith("Error: ")
    return line


@pytest.mark.parametrize(("name", "says", "route"), FOREIGN, ids=[f[0] for f in FOREIGN])
def test_foreign_source_is_named_with_its_route(
    name: str,
    says: str,
    route: str,
    foreign: dict[str, Path],
    runner: CliRunner,
    tmp_path: Path,
) -> None:
    line = _error_line(invoke(runner, "convert", foreign[name], "-o", tmp_path / "x.tflite"))
    assert says in line and route in line
    assert not (tmp_path / "x.tflite").exists()


@pytest.mark.parametrize("command", ["inspect", "bench"])
def test_inspect_and_bench_name_the_format_too(
    command: str, foreign: dict[str, Path], runner: CliRunner, tmp_path: Path
) -> None:
    converted = _error_line(invoke(runner, "convert", foreign["model.onnx"], "-o", tmp_path / "x"))
    assert _error_line(invoke(runner, command, foreign["model.onnx"])) == converted
    assert "is a TensorFlow checkpoint" in _error_line(invoke(runner, command, foreign["tf2_ckpt"]))


def test_a_checkpoint_prefix_and_savedmodel_parts(
    foreign: dict[str, Path], saved: dict[str, Path], runner: CliRunner, tmp_path: Path
) -> None:
    """What tf.train.Checkpoint.save returns (a prefix naming no file) is a checkpoint too; a
    SavedModel's own files point to its folder."""
    out = tmp_path / "x.tflite"
    prefix = foreign["tf2_ckpt"] / "ckpt-1"
    assert "is a TensorFlow checkpoint" in _error_line(invoke(runner, "convert", prefix, "-o", out))
    for part in (saved["module"] / "saved_model.pb", saved["module"] / "variables"):
        line = _error_line(invoke(runner, "convert", part, "-o", out))
        assert f"is part of a SavedModel: pass its folder, {saved['module']}" in line
