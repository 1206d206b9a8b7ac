"""Pruning for XNNPACK's sparse inference: the prune stage's `policy: xnnpack` (tfmot's
PruneForLatencyOnXNNPack) prunes only 1x1 convolutions and refuses a layout XNNPACK's sparse NCHW
path cannot run. (Whether LiteRT then runs sparse is the file format's and the CPU's business:
benchmarks/sparse.py.)"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tfopt.optimization import OptimizeOptions, StageError, optimize
from tfopt.optimization.pruning import select_layers
from tfopt.recipes import PruneStage, Recipe, RecipeError, parse

RECIPE = "stages: [{stage: prune, sparsity: 0.8, policy: xnnpack}, {stage: convert, precision: float16}]"


def _model(tf_keras: Any, padded: bool) -> Any:
    """A tiny MobileNet-like CNN; `padded`: the stride-2 stem as XNNPACK's NCHW path wants it."""
    L = tf_keras.layers
    inputs = tf_keras.Input((8, 8, 3), name="image")
    if padded:
        h = L.Conv2D(16, 3, 2, padding="valid", name="stem")(L.ZeroPadding2D(1)(inputs))
    else:
        h = L.Conv2D(16, 3, 2, padding="same", name="stem")(inputs)
    h = L.Conv2D(32, 1, name="expand")(L.ReLU()(h))
    h = L.DepthwiseConv2D(3, padding="same", name="dw")(L.ReLU()(h))
    h = L.Conv2D(32, 1, name="project")(L.ReLU()(h))
    h = L.GlobalAveragePooling2D(keepdims=True)(L.ReLU()(h))
    outputs = L.Dense(10, activation="softmax", name="probs")(L.Flatten()(h))
    return tf_keras.Model(inputs, outputs)


@pytest.fixture(scope="module")
def rgb(tmp_path_factory: pytest.TempPathFactory, digits: dict[str, np.ndarray]) -> Path:
    """Real digits as 3-channel images: 480 training and 160 validation."""
    path = tmp_path_factory.mktemp("sparse") / "digits.npz"
    np.savez(
        path,
        x_train=np.repeat(digits["x_train"][:480], 3, axis=-1),
        y_train=digits["y_train"][:480],
        x_val=np.repeat(digits["x_test"][:160], 3, axis=-1),
        y_val=digits["y_test"][:160],
    )
    return path


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory, tf_keras: Any, rgb: Path) -> dict[str, Path]:
    """Both layouts, trained briefly and saved as users do (.h5)."""
    data = np.load(rgb)
    out = tmp_path_factory.mktemp("sparse_models")
    paths = {}
    for name, padded in (("padded", True), ("same", False)):
        tf_keras.utils.set_random_seed(0)
        model = _model(tf_keras, padded)
        model.compile(tf_keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy")
        model.fit(data["x_train"], data["y_train"], epochs=20, batch_size=32, verbose=0)
        paths[name] = out / f"{name}.h5"
        model.save(paths[name])
    return paths


def _kernels(path: Path) -> dict[str, np.ndarray]:
    from tfopt.loading import load

    model = load(path).model
    return {w.name.split("/")[0]: w.numpy() for w in model.weights if "kernel" in w.name}


def test_xnnpack_policy_prunes_only_1x1_convs(
    models: dict[str, Path], rgb: Path, tmp_path: Path
) -> None:
    report = optimize(
        models["padded"], parse(RECIPE, "t.yaml"), str(rgb), tmp_path,
        OptimizeOptions(epochs=2, batch_size=32),
    )  # fmt: skip
    assert sorted(report.stages[1]["did"]["pruned_layers"]) == ["expand", "project"]
    kernels = _kernels(tmp_path / "optimized.keras")
    for name in ("expand", "project"):
        assert abs(np.mean(kernels[name] == 0) - 0.8) <= 0.01, name
    for name in ("stem", "probs"):
        assert np.mean(kernels[name] == 0) < 0.05, name
    assert not any("2/3" in n for n in report.notes)
    # optimize checks the float16 file against the Keras model itself; it still classifies.
    assert report.stages[0]["val_accuracy"] > 0.85  # the trained original
    assert report.tflite["val_accuracy"] > 0.7


def test_xnnpack_policy_refuses_a_layout_without_the_padded_stem(
    models: dict[str, Path], rgb: Path, tmp_path: Path
) -> None:
    with pytest.raises(StageError, match=r"policy xnnpack.*Conv2D 3x3"):
        optimize(models["same"], parse(RECIPE, "t.yaml"), str(rgb), tmp_path,
                 OptimizeOptions(epochs=1, batch_size=32))  # fmt: skip


def test_select_layers_under_the_policy(tf_keras: Any) -> None:
    L = tf_keras.layers
    layers = [L.Conv2D(4, 1, name="pw"), L.Conv2D(4, 3, name="k3"), L.Dense(4, name="fc")]
    for layer in layers:
        layer.build((1, 8, 8, 4) if isinstance(layer, L.Conv2D) else (1, 4))
    candidates = [(x.name, x, 4) for x in layers]
    chosen, notes = select_layers(candidates, PruneStage(sparsity=0.5, policy="xnnpack"))
    assert [name for name, _ in chosen] == ["pw"]
    assert any("2/3" in n for n in notes)  # 50% keeps XNNPACK dense, and it says so
    chosen, _ = select_layers(candidates, PruneStage(sparsity=0.5))
    assert [name for name, _ in chosen] == ["pw", "k3", "fc"]


def test_policy_field_round_trips_and_is_checked() -> None:
    recipe = parse(RECIPE, "t.yaml")
    assert recipe.stages[0].policy == "xnnpack"
    assert Recipe.from_dict(recipe.to_dict()) == recipe
    with pytest.raises(RecipeError, match="policy"):
        PruneStage(policy="gpu")
