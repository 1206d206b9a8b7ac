"""One model of each family of the compatibility zoo (benchmarks/zoo.py), converted from its file.

Each model is built by the zoo's own builder, trained with `fit` on real data (digits, fortunes),
saved with `model.save` as users do, and converted FROM THE FILE in float32 and one quantized
precision, each checked numerically by tfopt against the Keras model. The whole matrix (every
family, both Keras worlds, keras.applications, five precisions) is `make bench-zoo`.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

import tfopt

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def _zoo() -> ModuleType:
    spec = importlib.util.spec_from_file_location("tfopt_zoo", ROOT / "benchmarks" / "zoo.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["tfopt_zoo"] = module
    spec.loader.exec_module(module)
    return module


zoo = _zoo()

# (case name in the zoo, quantized precision to try besides float32)
FAMILIES = [
    pytest.param("k3/seq_cnn.keras", "int8", id="keras3-sequential-cnn-keras"),
    pytest.param("tfk/text_gru.h5", "dynamic", id="tf_keras-text-gru-h5"),
    pytest.param("k3/multi_input.keras", "int8", id="keras3-functional-multi-input"),
    pytest.param("k3/subclassed.keras", "dynamic", id="keras3-subclassed-import"),
    pytest.param("k3/preproc_tabular.keras", "dynamic", id="keras3-normalization-categoryencoding"),
    pytest.param("tfk/preproc_image.h5", "int8", id="tf_keras-rescaling-resizing-h5"),
    pytest.param("k3/hub-bert_classifier.keras", "dynamic", id="keras-hub-bert-classifier"),
]


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("zoo") / "models"


def _built(case: Any, models: Path) -> tuple[Path, Path, Path]:
    """Build, fit and save the case's model (once), with its calibration and check data."""
    models.mkdir(parents=True, exist_ok=True)
    model_file, calib, check = zoo.paths(models, case)
    if not model_file.exists():
        zoo.build_worker(case, models)
    return model_file, calib, check


@pytest.mark.parametrize("name, quantized", FAMILIES)
def test_zoo_family_converts_from_its_file(name: str, quantized: str, models: Path) -> None:
    case = {c.name: c for c in zoo.cases("none")}[name]
    model_file, calib, check = _built(case, models)
    kwargs: dict[str, Any] = {}
    if case.options.get("imports"):
        kwargs = {"imports": [str(zoo.custom_module_path(models, case.world))], "unsafe": True}
    for precision in ("float32", quantized):
        out = models.parent / f"{model_file.stem}.{precision}.tflite"
        result = tfopt.convert(
            str(model_file), out, precision, calibration=str(calib), check_data=str(check),
            num_calibration=8, overwrite=True, **kwargs,
        )  # fmt: skip
        assert out.exists() and result.size_bytes == out.stat().st_size
        assert result.check is not None and result.check["passed"], result.check
        # Real inputs and trained weights: the outputs differ across samples.
        assert result.check["samples"] == 8


def test_zoo_case_list_covers_every_family_in_both_worlds() -> None:
    names = [c.name for c in zoo.cases("one-per-family")]
    families = {c.family for c in zoo.cases("none")} - {"keras-hub"}
    for family in families:
        assert f"k3/{family}.keras" in names
        assert f"tfk/{family}.keras" in names
    assert "k3/app-ResNet50.keras" in names and "tfk/app-RegNetX002.h5" in names
    assert "k3/app-RegNetX002.keras" not in names  # RegNet lives only in tf_keras
    # Each application family again, trained on photos (the rows that judge int8), both worlds.
    assert "k3/app-ResNet50+trained.keras" in names and "tfk/app-ResNet50+trained.h5" in names
    trained = [c for c in zoo.cases("one-per-family") if c.name.endswith(("+trained.keras",
                                                                          "+trained.h5"))]
    assert {zoo.paths(Path("m"), c)[0] for c in trained}.isdisjoint(
        zoo.paths(Path("m"), c)[0] for c in zoo.cases("one-per-family") if c not in trained
    )  # a trained row never overwrites the random-weight row's saved model
    assert len(set(names)) == len(names)


def test_data_dependent_init_moves_batchnorm_and_varies_the_softmax(keras3: Any) -> None:
    """Random weights + one training-mode pass on real images: outputs are not constant.

    (Real digits here, so `make test` needs no scikit-image; the zoo uses scikit-image photos.)
    """
    keras3.utils.set_random_seed(0)
    L = keras3.layers
    model = keras3.Sequential([
        keras3.Input((8, 8, 3)), L.Conv2D(8, 3), L.BatchNormalization(), L.ReLU(),
        L.GlobalAveragePooling2D(), L.Dense(10, activation="softmax"),
    ])  # fmt: skip
    images = np.repeat(zoo.digits()[0][:16], 3, axis=-1) / 8.0 - 1.0
    info = zoo.data_dependent_init(keras3, model, images)
    assert info["bn_layers"] == 1 and info["bn_updated"] == 1
    assert info["output_relative_spread"] > 1e-3
    assert model.layers[1].momentum == 0.99  # restored before saving
    bn = model.layers[1]
    features = np.asarray(model.layers[0](images))
    np.testing.assert_allclose(bn.moving_mean.numpy(), features.mean((0, 1, 2)), rtol=1e-4)
