"""Tiny real models and real data, built once per session. No mocks, no downloads."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from tfopt import keras_worlds
from tfopt.cli import cli

SEED = 0
# `make test` sets this: a test whose prerequisite (the software GPU, sshd, adb) is missing then
# fails instead of being skipped, so a green `make test` means every target path ran.
REQUIRE_ALL = os.environ.get("TFOPT_REQUIRE_ALL") == "1"


def require(available: bool, what: str) -> None:
    """Skip the calling test when `what` is missing, or fail it under TFOPT_REQUIRE_ALL=1."""
    if available:
        return
    if REQUIRE_ALL:
        pytest.fail(f"{what} is missing and TFOPT_REQUIRE_ALL=1 (make test installs it)", pytrace=False)
    pytest.skip(f"{what} is missing (make test installs it)")


@pytest.fixture()
def soft_gpu(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The software Vulkan device from `make soft-gpu`, chosen even where a real GPU exists."""
    from tfopt.targets import soft_gpu_dir

    folder = soft_gpu_dir()
    require(folder is not None, "the software GPU (make soft-gpu)")
    assert folder is not None
    monkeypatch.setenv("TFOPT_SOFT_GPU", str(folder))
    monkeypatch.delenv("VK_ICD_FILENAMES", raising=False)
    monkeypatch.delenv("VK_DRIVER_FILES", raising=False)
    yield folder


@pytest.fixture(scope="session")
def tf_keras() -> Any:
    return keras_worlds.module(keras_worlds.World.TF_KERAS)


@pytest.fixture(scope="session")
def keras3() -> Any:
    return keras_worlds.module(keras_worlds.World.KERAS3)


@pytest.fixture(scope="session")
def digits() -> dict[str, np.ndarray]:
    """Real scikit-learn digits, 8x8x1 in [0, 1]: 1,437 train / 360 test."""
    from tfopt.demo import digits_split

    x_train, y_train, x_test, y_test = digits_split()
    return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}


@pytest.fixture(scope="session")
def cnn(tf_keras: Any, digits: dict[str, np.ndarray]) -> Any:
    """A tiny tf_keras CNN trained for a few epochs on the real digits."""
    tf_keras.utils.set_random_seed(SEED)
    inputs = tf_keras.Input((8, 8, 1), name="image")
    h = tf_keras.layers.Conv2D(8, 3, activation="relu")(inputs)
    h = tf_keras.layers.Flatten()(h)
    outputs = tf_keras.layers.Dense(10, activation="softmax", name="probs")(h)
    model = tf_keras.Model(inputs, outputs)
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(digits["x_train"], digits["y_train"], epochs=8, batch_size=64, verbose=0)
    return model


@pytest.fixture(scope="session")
def files(
    tmp_path_factory: pytest.TempPathFactory, cnn: Any, digits: dict[str, np.ndarray]
) -> dict[str, Path]:
    """The CNN as .keras and .h5, plus calibration and test data files."""
    d = tmp_path_factory.mktemp("files")
    paths = {
        "keras": d / "cnn.keras",
        "h5": d / "cnn.h5",
        "calib": d / "calib.npz",
        "test": d / "test.npz",
        "npy": d / "calib.npy",
    }
    cnn.save(paths["keras"])
    cnn.save(paths["h5"])
    np.savez(paths["calib"], x=digits["x_train"][:50])
    np.save(paths["npy"], digits["x_train"][:50])
    np.savez(paths["test"], x=digits["x_test"], y=digits["y_test"])
    return paths


@pytest.fixture(scope="session")
def tflite(
    tmp_path_factory: pytest.TempPathFactory, cnn: Any, files: dict[str, Path]
) -> dict[str, Path]:
    """The CNN converted to float32 and int8 (float I/O and int8 I/O), once per session."""
    from tfopt.conversion import convert

    d = tmp_path_factory.mktemp("tflite")
    out = {
        "float32": d / "cnn_float32.tflite",
        "int8": d / "cnn_int8.tflite",
        "int8io": d / "cnn_int8io.tflite",
    }
    convert(cnn, out["float32"], "float32")
    convert(cnn, out["int8"], "int8", calibration=files["calib"])
    convert(cnn, out["int8io"], "int8", calibration=files["calib"], int8_io=True)
    return out


@pytest.fixture(scope="session")
def bert() -> Any:
    """A tiny keras-hub BERT backbone (random weights; fine for conversion, not accuracy)."""
    hub = keras_worlds.keras_hub()
    keras_worlds.module(keras_worlds.World.KERAS3).utils.set_random_seed(SEED)
    return hub.models.BertBackbone(
        vocabulary_size=1000,
        num_layers=2,
        num_heads=2,
        hidden_dim=64,
        intermediate_dim=128,
        max_sequence_length=64,
    )


@pytest.fixture(scope="session")
def bert_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rng = np.random.default_rng(SEED)
    path = tmp_path_factory.mktemp("bert") / "tokens.npz"
    mask = np.ones((16, 32), np.int32)
    mask[:, 24:] = 0
    np.savez(
        path,
        token_ids=rng.integers(1, 1000, (16, 32)).astype(np.int32) * mask,
        segment_ids=np.zeros((16, 32), np.int32),
        padding_mask=mask,
    )
    return path


@pytest.fixture()
def runner() -> CliRunner:
    return CliRunner()


def invoke(runner: CliRunner, *args: Any) -> Any:
    """Run the CLI in-process; return click's Result."""
    return runner.invoke(cli, [str(a) for a in args], catch_exceptions=False)


FASHION_LABELS = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                  "Sneaker", "Bag", "Ankle boot"]  # fmt: skip


@pytest.fixture(scope="session")
def fashion() -> dict[str, np.ndarray]:
    """Real Fashion-MNIST from Debian (make fashion-mnist) as uint8 28x28: 3,000 train images,
    200 test images (the first of t10k), with labels."""
    import importlib.util

    folder = Path("/usr/share/datasets/fashion-mnist")
    require(folder.is_dir(), "Fashion-MNIST (make fashion-mnist)")
    example = Path(__file__).resolve().parents[1] / "examples" / "fashion_mnist" / "run.py"
    spec = importlib.util.spec_from_file_location("fashion_mnist_example", example)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)

    def read(stem: str, n: int) -> tuple[np.ndarray, np.ndarray]:
        x = module.read_idx(folder / f"{stem}-images-idx3-ubyte.gz")[:n]
        return x, module.read_idx(folder / f"{stem}-labels-idx1-ubyte.gz")[:n].astype(np.int64)

    (x_train, y_train), (x_test, y_test) = read("train", 3000), read("t10k", 200)
    return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}


@pytest.fixture(scope="session")
def fashion_app(
    tmp_path_factory: pytest.TempPathFactory, keras3: Any, fashion: dict[str, np.ndarray]
) -> dict[str, Path]:
    """What an app developer brings: a Keras 3 Sequential RGB classifier trained with `fit` on
    real Fashion-MNIST (pixels / 255, as the tutorials do), saved with `model.save`; the class
    names as labels.txt; RGB test images as uint8 (.npy) and as the model's float input (.npz)."""
    d = tmp_path_factory.mktemp("fashion_app")
    keras3.utils.set_random_seed(SEED)
    model = keras3.Sequential(
        [
            keras3.Input((28, 28, 3)),
            keras3.layers.Conv2D(8, 3, activation="relu"),
            keras3.layers.MaxPooling2D(),
            keras3.layers.Flatten(),
            keras3.layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    rgb = {k: np.repeat(v[..., None], 3, axis=-1) for k, v in fashion.items() if k[0] == "x"}
    model.fit(rgb["x_train"] / 255.0, fashion["y_train"], epochs=2, batch_size=64, verbose=0)
    paths = {
        "keras": d / "fashion.keras",
        "labels": d / "labels.txt",
        "images": d / "images.npy",
        "data": d / "test.npz",
        "calib": d / "calib.npz",
    }
    model.save(paths["keras"])
    paths["labels"].write_text("\n".join(FASHION_LABELS) + "\n", encoding="utf-8")
    np.save(paths["images"], rgb["x_test"].astype(np.uint8))
    np.savez(paths["data"], x=(rgb["x_test"] / 255.0).astype(np.float32), y=fashion["y_test"])
    np.savez(paths["calib"], x=(rgb["x_train"][:100] / 255.0).astype(np.float32))
    return paths


# The tiny keras-hub GPT-2 the LM tests share (test_lm, test_dedupe, test_lm_embedding).
GPT2_VOCAB, GPT2_HIDDEN = 260, 64


@pytest.fixture(scope="session")
def gpt2(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Path]:
    """A tiny keras-hub GPT-2 causal LM (random weights; 2 layers, hidden 64), saved as a user
    saves it; the model and its .keras file."""
    hub = keras_worlds.keras_hub()
    keras_worlds.module(keras_worlds.World.KERAS3).utils.set_random_seed(0)
    backbone = hub.models.GPT2Backbone(
        vocabulary_size=GPT2_VOCAB,
        num_layers=2,
        num_heads=2,
        hidden_dim=GPT2_HIDDEN,
        intermediate_dim=128,
        max_sequence_length=64,
    )
    model = hub.models.GPT2CausalLM(backbone=backbone, preprocessor=None)
    path = tmp_path_factory.mktemp("gpt2") / "gpt2.keras"
    model.save(path)
    return model, path
