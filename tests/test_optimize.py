"""Each optimization stage on tiny real models, asserting what it must achieve."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from tests.conftest import invoke
from tfopt.inspection import inspect_tflite, weight_stats
from tfopt.optimization import OptimizeOptions, StageError, optimize
from tfopt.recipes import parse


@pytest.fixture(scope="session")
def opt_data(tmp_path_factory: pytest.TempPathFactory, digits: dict[str, np.ndarray]) -> Path:
    """Real digits: 480 training and 160 validation images."""
    path = tmp_path_factory.mktemp("opt") / "digits.npz"
    np.savez(
        path,
        x_train=digits["x_train"][:480],
        y_train=digits["y_train"][:480],
        x_val=digits["x_test"][:160],
        y_val=digits["y_test"][:160],
    )
    return path


@pytest.fixture(scope="session")
def small_cnn(
    tmp_path_factory: pytest.TempPathFactory, tf_keras: Any, digits: dict[str, np.ndarray]
) -> Path:
    """A tf_keras CNN whose first conv has 1 input channel (so 2:4 must leave it dense)."""
    tf_keras.utils.set_random_seed(0)
    inputs = tf_keras.Input((8, 8, 1), name="image")
    h = tf_keras.layers.Conv2D(8, 3, activation="relu", name="conv_a")(inputs)
    h = tf_keras.layers.Conv2D(16, 3, activation="relu", name="conv_b")(h)
    h = tf_keras.layers.Flatten()(h)
    h = tf_keras.layers.Dense(64, activation="relu", name="hidden")(h)
    outputs = tf_keras.layers.Dense(10, activation="softmax", name="probs")(h)
    model = tf_keras.Model(inputs, outputs)
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(digits["x_train"], digits["y_train"], epochs=10, batch_size=64, verbose=0)
    path = tmp_path_factory.mktemp("cnn") / "cnn.keras"
    model.save(path)
    return path


def run(model: Any, text: str, data: Path, out: Path, epochs: int = 2) -> Any:
    return optimize(model, parse(text, "test.yaml"), str(data), out,
                    OptimizeOptions(epochs=epochs, batch_size=32))


def kernels(path: Path) -> dict[str, np.ndarray]:
    from tfopt.loading import load

    model = load(path).model
    return {w.name.split(":")[0]: w.numpy() for w in model.weights if "kernel" in w.name}


def test_prune_reaches_target_sparsity(small_cnn: Path, opt_data: Path, tmp_path: Path) -> None:
    report = run(
        small_cnn,
        "stages: [{stage: prune, sparsity: 0.6}, {stage: convert, precision: int8}]",
        opt_data,
        tmp_path,
    )
    for name, w in kernels(tmp_path / "optimized.keras").items():
        assert abs(np.mean(w == 0) - 0.6) <= 0.01, name
    assert report.stages[-1]["sparsity"] == pytest.approx(0.6, abs=0.01)
    # Sparsity survives int8 and pays after gzip.
    (hidden,) = [w for n, w in report.tflite["weights"].items() if "hidden" in n]
    assert hidden["sparsity"] >= 0.58
    assert report.tflite["gzip_bytes"] < 0.8 * report.tflite["size_bytes"]
    assert report.tflite["val_accuracy"] > 0.8


def test_prune_2_of_4(small_cnn: Path, opt_data: Path, tmp_path: Path) -> None:
    report = run(
        small_cnn,
        "stages: [{stage: prune, m_by_n: '2:4'}, {stage: convert, precision: int8}]",
        opt_data,
        tmp_path,
    )
    ks = kernels(tmp_path / "optimized.keras")
    for name in ("conv_b/kernel", "hidden/kernel", "probs/kernel"):
        w = np.moveaxis(ks[name], -2, -1).reshape(-1, 4)  # blocks of 4 along the input axis
        assert np.all(np.sum(w == 0, axis=1) >= 2), name
    assert np.mean(ks["conv_a/kernel"] == 0) < 0.1  # 1 input channel: left dense, and said so
    assert any("conv_a left dense" in n for n in report.notes)


def test_2_of_4_on_a_named_incompatible_layer_fails(
    small_cnn: Path, opt_data: Path, tmp_path: Path
) -> None:
    with pytest.raises(StageError, match="conv_a.*not a multiple of 4"):
        run(
            small_cnn,
            "stages: [{stage: prune, m_by_n: '2:4', layers: conv_a}, {stage: convert}]",
            opt_data,
            tmp_path,
        )


def test_cluster_then_cqat(small_cnn: Path, opt_data: Path, tmp_path: Path) -> None:
    report = run(
        small_cnn,
        "stages: [{stage: cluster, clusters: 8}, {stage: qat, epochs: 1}, {stage: convert, precision: int8}]",
        opt_data,
        tmp_path,
    )
    clustered = report.stages[1]
    assert clustered["stage"] == "cluster" and clustered["max_unique_per_kernel"] <= 8
    assert report.stages[2]["did"]["mode"] == "CQAT"
    for name, w in report.tflite["weights"].items():
        assert w["dtype"] == "int8" and w["unique_per_channel_max"] <= 8, name


def test_qat_gives_int8_model(small_cnn: Path, opt_data: Path, tmp_path: Path) -> None:
    report = run(
        small_cnn,
        "stages: [{stage: qat, epochs: 1}, {stage: convert, precision: int8}]",
        opt_data,
        tmp_path,
    )
    info = inspect_tflite(tmp_path / "model.tflite")
    assert info["tensor_dtypes"].get("int8", 0) >= 8 and info["float_compute_ops"] == {}
    assert report.stages[1]["did"]["mode"] == "QAT"
    assert report.tflite["val_accuracy"] > 0.8
    assert (tmp_path / "optimized.keras").exists()  # reloads under tfmot's quantize scope


def test_pqat_keeps_sparsity(small_cnn: Path, opt_data: Path, tmp_path: Path) -> None:
    report = run(
        small_cnn,
        "stages: [{stage: prune, sparsity: 0.5}, {stage: qat, epochs: 1}, {stage: convert, precision: int8}]",
        opt_data,
        tmp_path,
    )
    assert report.stages[2]["did"]["mode"] == "PQAT"
    (hidden,) = [w for n, w in weight_stats(tmp_path / "model.tflite").items() if "hidden" in n]
    assert hidden["sparsity"] >= 0.48


def test_lowrank_factorizes_dense(small_cnn: Path, opt_data: Path, tmp_path: Path) -> None:
    report = run(
        small_cnn,
        "stages: [{stage: lowrank, rank: 8}, {stage: convert, precision: dynamic}]",
        opt_data,
        tmp_path,
    )
    (done,) = [d for d in report.stages[1]["did"]["factorized"] if d["layer"] == "hidden"]
    assert done["shape"] == [256, 64] and done["rank"] == 8
    ks = kernels(tmp_path / "optimized.keras")
    assert ks["hidden_lr_u/kernel"].shape == (256, 8) and ks["hidden_lr_v/kernel"].shape == (8, 64)
    assert report.stages[1]["params"] < report.stages[0]["params"]


def test_distill_keeps_sparsity(small_cnn: Path, opt_data: Path, tmp_path: Path) -> None:
    report = run(
        small_cnn,
        "stages: [{stage: prune, sparsity: 0.75}, {stage: distill, temperature: 2.0}, {stage: convert, precision: int8}]",
        opt_data,
        tmp_path,
    )
    assert report.stages[2]["stage"] == "distill"
    assert report.stages[2]["sparsity"] == pytest.approx(0.75, abs=0.01)
    assert report.tflite["val_accuracy"] > 0.7


def test_keras3_cnn_is_rebuilt_for_tfmot(
    keras3: Any, digits: dict[str, np.ndarray], opt_data: Path, tmp_path: Path
) -> None:
    inputs = keras3.Input((8, 8, 1), name="image")
    h = keras3.layers.Conv2D(8, 3, activation="relu")(inputs)
    outputs = keras3.layers.Dense(10, activation="softmax")(keras3.layers.Flatten()(h))
    model = keras3.Model(inputs, outputs)
    report = run(
        model,
        "stages: [{stage: qat, epochs: 1}, {stage: convert, precision: int8}]",
        opt_data,
        tmp_path,
    )
    assert report.world == "tf_keras" and any("rebuilt" in n for n in report.notes)


@pytest.fixture(scope="session")
def bert_classifier(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A tiny keras-hub BERT classifier (random weights) and token data with a learnable cue."""
    from tfopt import keras_worlds

    hub = keras_worlds.keras_hub()
    keras_worlds.module(keras_worlds.World.KERAS3).utils.set_random_seed(0)
    backbone = hub.models.BertBackbone(
        vocabulary_size=300,
        num_layers=1,
        num_heads=2,
        hidden_dim=32,
        intermediate_dim=64,
        max_sequence_length=32,
    )
    model = hub.models.BertTextClassifier(backbone, num_classes=3, preprocessor=None)
    folder = tmp_path_factory.mktemp("bert_clf")
    model.save(folder / "clf.keras")
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", 192), ("val", 64)):
        y = rng.integers(0, 3, n)
        tokens = rng.integers(10, 300, (n, 16)).astype(np.int32)
        tokens[:, 1] = 100 + y
        arrays.update(
            {
                f"x_{split}.token_ids": tokens,
                f"x_{split}.segment_ids": np.zeros_like(tokens),
                f"x_{split}.padding_mask": np.ones_like(tokens),
                f"y_{split}": y,
            }
        )
    np.savez(folder / "tokens.npz", **arrays)
    return folder / "clf.keras", folder / "tokens.npz"


def test_keras_hub_prune_2_of_4(bert_classifier: tuple[Path, Path], tmp_path: Path) -> None:
    model, data = bert_classifier
    report = optimize(model, "prune2of4-int8", str(data), tmp_path,
                      OptimizeOptions(epochs=1, batch_size=32))
    assert report.world == "keras3"
    pruned = report.stages[1]["did"]["pruned_layers"]
    assert any("feedforward_intermediate_dense" in p for p in pruned)
    assert any("left dense" in n for n in report.notes)  # attention output: 2 heads, not 4
    assert inspect_tflite(tmp_path / "model.tflite")["inputs"][0]["shape"] == [1, 16]


def test_keras_hub_lowrank_and_distill(bert_classifier: tuple[Path, Path], tmp_path: Path) -> None:
    model, data = bert_classifier
    low = optimize(model, "lowrank-dynamic", str(data), tmp_path / "lr",
                   OptimizeOptions(epochs=1, batch_size=32))
    assert low.stages[1]["params"] < low.stages[0]["params"]
    assert any("feedforward" in d["layer"] for d in low.stages[1]["did"]["factorized"])
    distilled = optimize(
        model, "distill-prune75-int8", str(data), tmp_path / "d",
        OptimizeOptions(epochs=1, batch_size=32)
    )
    assert distilled.stages[-1]["sparsity"] == pytest.approx(0.75, abs=0.01)


def test_optimize_cli_json(
    runner: CliRunner, small_cnn: Path, opt_data: Path, tmp_path: Path
) -> None:
    out = tmp_path / "o"
    result = invoke(
        runner,
        "optimize",
        small_cnn,
        "--recipe",
        "prune50-int8",
        "--data",
        opt_data,
        "-o",
        out,
        "--epochs",
        "1",
        "--batch-size",
        "32",
        "--json",
    )
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert [s["stage"] for s in doc["stages"]] == ["original", "prune"]
    assert {"size_bytes", "gzip_bytes", "val_accuracy", "p50_ms_1t"} <= set(doc["tflite"])
    for name in ("model.tflite", "optimized.keras", "report.json", "report.md"):
        assert (out / name).exists(), name
    assert "| stage |" in (out / "report.md").read_text()
    again = invoke(
        runner, "optimize", small_cnn, "--recipe", "prune50-int8", "--data", opt_data, "-o", out
    )
    assert again.exit_code == 1 and "--overwrite" in again.stderr


def test_optimize_bad_data(
    runner: CliRunner, small_cnn: Path, digits: dict[str, np.ndarray], tmp_path: Path
) -> None:
    np.savez(tmp_path / "d.npz", x_train=digits["x_train"][:10], y_train=digits["y_train"][:10])
    result = invoke(
        runner,
        "optimize",
        small_cnn,
        "--recipe",
        "int8",
        "--data",
        tmp_path / "d.npz",
        "-o",
        tmp_path / "o",
    )
    assert result.exit_code == 1 and "x_val" in result.stderr


def test_no_check_keeps_the_tflite_and_reports_the_difference(
    small_cnn: Path, opt_data: Path, tmp_path: Path
) -> None:
    report = optimize(small_cnn, "int8", str(opt_data), tmp_path,
                      OptimizeOptions(epochs=0, check=False))
    assert (tmp_path / "model.tflite").exists()
    assert report.tflite["check"]["outputs"][0]["sqnr_db"] > 8
    assert any("not enforced" in n for n in report.notes)


def test_a_failed_run_leaves_no_output(
    runner: CliRunner, small_cnn: Path, opt_data: Path, tmp_path: Path
) -> None:
    """A report.json that cannot be replaced (a folder) used to fail after model.tflite was
    written; now the run refuses before any work and OUT is unchanged."""
    out = tmp_path / "o"
    (out / "report.json").mkdir(parents=True)
    result = invoke(runner, "optimize", small_cnn, "--recipe", "int8", "--data", opt_data,
                    "-o", out, "--epochs", "0", "--overwrite")  # fmt: skip
    assert result.exit_code == 1 and "is a folder" in result.stderr, result.output
    assert len(result.stderr.strip().splitlines()) == 1
    assert sorted(p.name for p in out.iterdir()) == ["report.json"]
    assert [p.name for p in tmp_path.iterdir()] == ["o"]  # no staging folder left beside OUT


def test_overwrite_never_mixes_two_runs(
    small_cnn: Path, opt_data: Path, tmp_path: Path, tf_keras: Any, digits: dict[str, np.ndarray]
) -> None:
    """A run whose optimized.keras cannot be saved (a Lambda layer does not reload in safe mode)
    must not leave the previous run's optimized.keras beside its new model.tflite."""
    out = tmp_path / "out"
    first = optimize(small_cnn, "int8", str(opt_data), out, OptimizeOptions(epochs=0))
    assert (out / "optimized.keras").exists() and not first.notes
    tf_keras.utils.set_random_seed(0)
    inputs = tf_keras.Input((8, 8, 1), name="image")
    h = tf_keras.layers.Lambda(lambda t: t * 2.0)(inputs)
    h = tf_keras.layers.Flatten()(h)
    model = tf_keras.Model(inputs, tf_keras.layers.Dense(10, activation="softmax")(h))
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(digits["x_train"], digits["y_train"], epochs=2, verbose=0)
    model.save(tmp_path / "lambda.h5")
    second = optimize(tmp_path / "lambda.h5", "int8", str(opt_data), out,
                      OptimizeOptions(epochs=0, overwrite=True, unsafe=True))  # fmt: skip
    assert any("optimized.keras not written" in n for n in second.notes)
    assert sorted(p.name for p in out.iterdir()) == ["model.tflite", "report.json", "report.md"]
    assert json.loads((out / "report.json").read_text())["tflite"]["path"] == str(
        out / "model.tflite"
    )


def test_native_prune_refuses_an_end_past_the_fine_tune(
    keras3: Any, opt_data: Path, tmp_path: Path
) -> None:
    # One schedule for both pruning paths: the Keras 3 (native) one used to accept this silently.
    inputs = keras3.Input((8, 8, 1), name="image")
    flat = keras3.layers.Flatten()(inputs)
    model = keras3.Model(inputs, keras3.layers.Dense(10, activation="softmax")(flat))
    recipe = "stages: [{stage: prune, sparsity: 0.5, end: 50}, {stage: convert}]"
    with pytest.raises(StageError, match="past the fine-tune"):
        run(model, recipe, opt_data, tmp_path / "out", epochs=1)
