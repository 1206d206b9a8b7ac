"""Structured (channel) pruning: whole filters removed, a smaller dense model rebuilt, fine-tuned.

On models saved as users save them, in both Keras worlds: a Sequential CNN and a functional
network of inverted-residual blocks (expand, depthwise, project, Add), trained with `fit` on the
real digits.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from tests.conftest import invoke
from tfopt import keras_worlds
from tfopt.loading import load
from tfopt.optimization import OptimizeOptions, StageError, optimize
from tfopt.optimization.channels import count_macs, kept, plan_channels, read_model, rebuild
from tfopt.recipes import ChannelsStage, parse

World = keras_worlds.World
MODELS = ["tf_keras-sequential", "tf_keras-residual", "keras3-sequential", "keras3-residual"]


def sequential(k: Any) -> Any:
    L = k.layers
    return k.Sequential([
        k.Input((8, 8, 1), name="image"), L.Conv2D(32, 3, padding="same", name="conv_a"),
        L.BatchNormalization(momentum=0.9), L.ReLU(), L.DepthwiseConv2D(3, padding="same", name="dw"),
        L.BatchNormalization(momentum=0.9), L.ReLU(), L.Conv2D(48, 1, activation="relu", name="conv_b"),
        L.GlobalAveragePooling2D(), L.Dense(32, activation="relu", name="hidden"),
        L.Dense(10, activation="softmax", name="probs"),
    ])  # fmt: skip


def residual(k: Any) -> Any:
    """Two inverted-residual blocks (MobileNetV2's), so each Add joins a group of channels."""
    L = k.layers
    inputs = k.Input((8, 8, 1), name="image")
    x = L.Conv2D(32, 3, padding="same", use_bias=False, name="stem")(inputs)
    x = L.ReLU(6.0)(L.BatchNormalization(momentum=0.9)(x))
    for b in range(2):
        h = L.Conv2D(96, 1, use_bias=False, name=f"b{b}_expand")(x)
        h = L.ReLU(6.0)(L.BatchNormalization(momentum=0.9)(h))
        h = L.DepthwiseConv2D(3, padding="same", use_bias=False, name=f"b{b}_dw")(h)
        h = L.ReLU(6.0)(L.BatchNormalization(momentum=0.9)(h))
        h = L.BatchNormalization(momentum=0.9)(L.Conv2D(32, 1, use_bias=False, name=f"b{b}_project")(h))
        x = L.Add(name=f"b{b}_add")([x, h])
    x = L.GlobalAveragePooling2D()(x)
    return k.Model(inputs, L.Dense(10, activation="softmax", name="probs")(x))


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory, digits: dict[str, np.ndarray]) -> dict[str, Path]:
    """Each model trained with `fit` on the real digits and saved with `model.save`."""
    folder = tmp_path_factory.mktemp("channels")
    out = {}
    for name in MODELS:
        world, arch = name.split("-")
        k = keras_worlds.module(World(world))
        k.utils.set_random_seed(0)
        model = (sequential if arch == "sequential" else residual)(k)
        model.compile(k.optimizers.Adam(3e-3), "sparse_categorical_crossentropy")
        model.fit(digits["x_train"], digits["y_train"], epochs=15, batch_size=64, verbose=0)
        out[name] = folder / f"{name}.{'h5' if world == 'tf_keras' else 'keras'}"
        model.save(out[name])
    return out


@pytest.fixture(scope="module")
def opt_data(tmp_path_factory: pytest.TempPathFactory, digits: dict[str, np.ndarray]) -> Path:
    path = tmp_path_factory.mktemp("channels_data") / "digits.npz"
    np.savez(path, x_train=digits["x_train"], y_train=digits["y_train"],
             x_val=digits["x_test"], y_val=digits["y_test"])  # fmt: skip
    return path


def _kill(m: Any, stage: ChannelsStage) -> dict[int, set[int]]:
    """Make the first channels of every prunable group dead: their filters tiny (lowest norm),
    the rows that read them zero. Removing them must leave the outputs unchanged."""
    dead = {}
    for space in m.graph.prunable():
        n_dead = space.size - kept(space.size, stage.ratio, stage)
        dead[space.id] = set(range(n_dead))
        for name in space.producers:
            layer = m.model.get_layer(name)
            w = layer.get_weights()
            w[0][..., :n_dead] *= 1e-6
            layer.set_weights(w)
        for name in space.readers:
            layer = m.model.get_layer(name)
            w = layer.get_weights()
            w[0][..., :n_dead, :] = 0.0
            layer.set_weights(w)
    return dead


@pytest.mark.parametrize("name", MODELS)
def test_removing_dead_channels_keeps_the_outputs(
    name: str, saved: dict[str, Path], digits: dict[str, np.ndarray]
) -> None:
    model = load(saved[name]).model
    stage = ChannelsStage(ratio=0.25, multiple=1, min_channels=1, residual=True)
    m = read_model(model)
    if "residual" in name:  # stem + both projects are one group: the Adds join them
        (group,) = [s for s in m.graph.prunable() if "stem" in s.producers]
        assert set(group.producers) == {"stem", "b0_project", "b1_project"}
        alone = plan_channels(m, ChannelsStage(ratio=0.25, multiple=1, min_channels=1))
        assert group.id not in alone.keep and "residual group(s) kept whole" in alone.notes[0]
    dead = _kill(m, stage)
    plan = plan_channels(m, stage)
    assert set(plan.keep) == set(dead) and len(plan.keep) >= 2
    for space, keep in plan.keep.items():
        assert not dead[space] & set(keep.tolist())
    small = rebuild(m, plan)
    x = digits["x_test"][:32]
    np.testing.assert_allclose(np.asarray(small(x)), np.asarray(model(x)), atol=1e-5)
    assert count_macs(small) == plan.macs_after < plan.macs_before == count_macs(model)
    assert small.count_params() < model.count_params()


@pytest.mark.parametrize("name, alpha", [("tf_keras-sequential", 0.0), ("keras3-residual", 0.7)])
def test_optimize_cuts_macs_and_keeps_accuracy(
    name: str, alpha: float, saved: dict[str, Path], opt_data: Path, tmp_path: Path
) -> None:
    """Fine-tuned on the labels, or (alpha > 0) as the original model's student."""
    recipe = parse(f"stages: [{{stage: channels, macs: 0.35, alpha: {alpha}}}, "
                   "{stage: convert, precision: int8}]", "channels.yaml")  # fmt: skip
    report = optimize(saved[name], recipe, str(opt_data), tmp_path / "out",
                      OptimizeOptions(epochs=3, batch_size=32))  # fmt: skip
    original, pruned = report.stages[0], report.stages[1]
    did = pruned["did"]
    assert pruned["stage"] == "channels" and did["channels_removed"] > 0
    assert original["macs"] == did["macs_before"] and pruned["macs"] == did["macs_after"]
    assert did["macs_after"] <= 0.65 * did["macs_before"]
    assert did["distilled"] == ({"alpha": alpha, "temperature": 4.0} if alpha else None)
    assert pruned["params"] < original["params"]
    # The saved model and the .tflite are the smaller network, and it still classifies.
    again = load(tmp_path / "out" / "optimized.keras").model
    assert count_macs(again) == did["macs_after"]
    assert report.tflite["val_accuracy"] >= original["val_accuracy"] - 0.05
    assert "MMACs" in (tmp_path / "out" / "report.md").read_text()


def test_nothing_to_prune_is_one_clear_line(
    runner: CliRunner, tmp_path: Path, opt_data: Path, tf_keras: Any
) -> None:
    """A Conv whose channels go through Flatten into the output layer: no group can shrink."""
    L = tf_keras.layers
    model = tf_keras.Sequential([tf_keras.Input((8, 8, 1)), L.Conv2D(16, 3, name="conv"),
                                 L.Flatten(), L.Dense(10, activation="softmax")])  # fmt: skip
    model.compile("adam", "sparse_categorical_crossentropy")
    model.save(tmp_path / "flat.h5")
    with pytest.raises(StageError, match="no prunable channel group"):
        plan_channels(read_model(load(tmp_path / "flat.h5").model), ChannelsStage(ratio=0.5))
    result = invoke(runner, "optimize", tmp_path / "flat.h5", "--recipe", "channels30-int8",
                    "--data", opt_data, "-o", tmp_path / "out")  # fmt: skip
    assert result.exit_code == 1 and "no prunable channel group" in result.stderr
    assert result.stderr.strip().count("\n") == 0 and not (tmp_path / "out").exists()


def test_concatenate_keeps_its_inputs_whole_and_free_sizes_refuse_macs(keras3: Any) -> None:
    L = keras3.layers
    inputs = keras3.Input((None, None, 3))
    a = L.Conv2D(16, 3, padding="same", name="a")(inputs)
    b = L.Conv2D(16, 3, padding="same", name="b")(inputs)
    c = L.Conv2D(32, 1, activation="relu", name="c")(L.Concatenate()([a, b]))
    model = keras3.Model(inputs, L.Dense(4)(L.GlobalAveragePooling2D()(c)))
    m = read_model(model)
    assert [s.producers for s in m.graph.prunable()] == [["c"]]
    assert count_macs(model) is None
    with pytest.raises(StageError, match="fixed input sizes"):
        plan_channels(m, ChannelsStage(macs=0.3))
    plan = plan_channels(m, ChannelsStage(ratio=0.5))
    assert [len(k) for k in plan.keep.values()] == [16]
    assert any("Concatenate" in n for n in plan.notes)


def test_tune_searches_structured_pruning(
    saved: dict[str, Path], opt_data: Path, tmp_path: Path
) -> None:
    """A channels recipe is one more variant of the search, judged under the same gate, and the
    winner is shown beside the presets."""
    import tfopt
    from tfopt.tuning import Space

    space = Space(precisions=("int8",), aeq_precisions=(), calibration_sizes=(100,),
                  recipes=("channels30-int8",), selective_float=False, threads=(1,),
                  xnnpack=(True,), cpu_option_sets=())  # fmt: skip
    result = tfopt.tune(saved["tf_keras-sequential"], opt_data, "top1_drop<=0.1", tmp_path / "t",
                        space=space, final_repeats=1, min_seconds=0.1, epochs=3)  # fmt: skip
    (pruned,) = [r for r in result.trials if r["variant"]["recipe"] == "channels30-int8"]
    (dense,) = [r for r in result.trials if not r["variant"]["recipe"]]
    assert pruned["status"] == "ok" and pruned["passed"], pruned.get("reason")
    assert pruned["size_bytes"] < dense["size_bytes"]
    assert result.winner is not None and result.presets
