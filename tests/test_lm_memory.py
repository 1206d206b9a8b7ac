"""Weights in memory once: XNNPACK's weight cache packs an LM's weights once for all signatures,
is built once per model file and reused, follows the file when it changes, and leaves outputs
unchanged (tfopt/runtime/weightcache.py; the RSS figures are in BENCHMARKS.md section 19)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tfopt.conversion import convert
from tfopt.flatbuffer import model_root
from tfopt.runtime import weightcache

MAX_LEN = 40


@pytest.fixture(scope="module")
def lm_files(gpt2: tuple[Any, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The tiny GPT-2 exported as an LM (prefill buckets, verify, decode) in float32 and int8."""
    folder = tmp_path_factory.mktemp("lm_memory")
    out = {}
    for precision in ("float32", "dynamic"):
        out[precision] = folder / f"gpt2_{precision}.tflite"
        convert(gpt2[1], out[precision], precision, lm=True, max_length=MAX_LEN)
    return out


def constant_bytes(path: Path) -> int:
    """Bytes of every constant buffer the file holds (each shared buffer once)."""
    model = model_root(path.read_bytes())
    buffers = (model.Buffers(i) for i in range(model.BuffersLength()))
    return sum(b.DataLength() or b.Size() for b in buffers)


def outputs(path: Path, cache: str) -> dict[str, np.ndarray]:
    """Every signature run on the same inputs (seeded small ids and values), outputs by
    signature/name."""
    model = weightcache.compiled_model(str(path), 1, cache)
    rng = np.random.default_rng(0)
    got = {}
    for key, names in model.get_signature_list().items():
        details = model.get_input_tensor_details(key)
        inputs = {n: model.create_input_buffer_by_name(key, n) for n in names["inputs"]}
        for name, buffer in inputs.items():
            detail = details[name]
            size = int(np.prod(detail["shape"]))
            dtype = np.dtype(detail["dtype"])
            values = rng.integers(0, 8, size) if dtype.kind == "i" else rng.random(size)
            buffer.write(values.astype(dtype))
        outs = {n: model.create_output_buffer_by_name(key, n) for n in names["outputs"]}
        model.run_by_name(key, inputs, outs)
        out_details = model.get_output_tensor_details(key)
        for name, buffer in outs.items():
            detail = out_details[name]
            size = int(np.prod(detail["shape"]))
            got[f"{key}/{name}"] = buffer.read(size, np.dtype(detail["dtype"]))
    return got


@pytest.mark.parametrize("precision", ["float32", "dynamic"])
def test_weights_packed_once_for_all_signatures(lm_files: dict[str, Path], precision: str) -> None:
    path = lm_files[precision]
    cache = Path(weightcache.weight_cache(str(path)))
    assert cache.parent == path.parent and cache.name.endswith(weightcache.SUFFIX)
    signatures = len(weightcache.compiled_model(str(path), 1, "").get_signature_list())
    assert signatures >= 3  # prefill bucket(s), verify, decode: each packed its own copy before
    # One packed copy of the weights (packing pads tiles and adds biases), not one per signature.
    assert cache.stat().st_size < 1.5 * constant_bytes(path)


def test_cache_built_once_then_reused(lm_files: dict[str, Path]) -> None:
    path = str(lm_files["float32"])
    first = weightcache.weight_cache(path)
    built = os.stat(first).st_mtime_ns
    assert weightcache.weight_cache(path) == first
    assert os.stat(first).st_mtime_ns == built  # loaded, not built again
    assert weightcache.weight_cache(path, build=False) == first


def test_outputs_unchanged_by_the_cache(lm_files: dict[str, Path]) -> None:
    path = lm_files["float32"]
    plain = outputs(path, "")
    cached = outputs(path, weightcache.weight_cache(str(path)))
    assert plain.keys() == cached.keys()
    for key, values in plain.items():
        # The same kernels on the same packed weights: equal up to float32 rounding.
        np.testing.assert_allclose(cached[key], values, rtol=1e-5, atol=1e-5, err_msg=key)


def test_a_rewritten_model_gets_a_new_cache(lm_files: dict[str, Path], tmp_path: Path) -> None:
    """XNNPACK does not check that a cache belongs to the model: a cache kept across a
    re-export would feed the old weights. The cache follows the file's identity instead."""
    path = tmp_path / "model.tflite"
    shutil.copy(lm_files["float32"], path)
    old = weightcache.weight_cache(str(path))
    shutil.copy(lm_files["dynamic"], path)
    new = weightcache.weight_cache(str(path))
    assert new != old and not os.path.exists(old)
    plain, cached = outputs(path, ""), outputs(path, new)
    for key, values in plain.items():
        np.testing.assert_allclose(cached[key], values, rtol=1e-5, atol=1e-5, err_msg=key)


def test_without_building_the_cache_is_in_memory(lm_files: dict[str, Path], tmp_path: Path) -> None:
    """No file yet and no build (or a folder it cannot write): XNNPACK's in-process cache, which
    still packs once for all signatures, gives the same outputs."""
    path = tmp_path / "model.tflite"
    shutil.copy(lm_files["float32"], path)
    assert weightcache.weight_cache(str(path), build=False) == weightcache.IN_MEMORY
    assert not list(tmp_path.glob(f"*{weightcache.SUFFIX}"))
    plain, cached = outputs(path, ""), outputs(path, weightcache.IN_MEMORY)
    for key, values in plain.items():
        np.testing.assert_allclose(cached[key], values, rtol=1e-5, atol=1e-5, err_msg=key)
