"""Property-based fuzzing: mutants of real files through every command that reads files.

Each mutant (byte flips, truncation, inserted/deleted bytes, corrupted flatbuffer or HDF5 offsets,
edited `.keras` members and `.h5` attributes, wrong YAML types) must end in exit 0, or exit 1 with
one `Error:` line and no traceback, and leave a complete output or none. The commands run in a
worker process (`benchmarks/fuzz.py`), so a native crash fails the test with the mutant that
caused it instead of killing pytest. `make fuzz` runs the same with 10,000 mutants.
"""

from __future__ import annotations

import io
import itertools
import json
import random
import struct
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from benchmarks.fuzz import (
    Worker,
    build_seeds,
    check_outputs,
    mutate,
    mutate_tree,
    prepare,
)

# Fixed examples for a stable CI; no shrinking: a smaller rng seed is no simpler a mutant.
SETTINGS = settings(
    derandomize=True,
    phases=[Phase.explicit, Phase.generate],
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
RECIPES = ["int8.yaml", "prune50-int8.yaml", "qat-int8.yaml", "prune2of4-int8.yaml",
           "cluster16-qat-int8.yaml", "lowrank-dynamic.yaml", "distill-prune75-int8.yaml"]  # fmt: skip
TFLITE_JOBS = [
    (command, seed)
    for command in ("inspect", "compare", "bench", "generate")
    for seed in ("float32.tflite", "int8.tflite", "lm.tflite")
    if not (command == "compare" and seed == "lm.tflite")
] + [("inspect", "meta.tflite"), ("metadata", "meta.tflite"), ("metadata", "float32.tflite")]
MODEL_JOBS = [
    (command, seed)
    for command in ("convert", "compare")
    for seed in ("tf_keras.keras", "tf_keras.h5", "keras3.keras", "keras3.h5")
]
_ids = itertools.count()


@pytest.fixture(scope="module")
def seeds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return build_seeds(tmp_path_factory.mktemp("fuzz_seeds"))


@pytest.fixture(scope="module")
def worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    w = Worker(tmp_path_factory.mktemp("fuzz_worker") / "worker.log")
    yield w
    w.stop()


@pytest.fixture(scope="module")
def jobs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz_jobs")


def run_mutant(
    worker: Worker, seeds: dict[str, Path], root: Path, command: str, seed: str, rng: int
) -> None:
    job = prepare({"id": next(_ids), "command": command, "seed": seed, "rng": rng}, seeds, root)
    verdict = worker.run(job, timeout=300)
    assert "crash" not in verdict, (
        f"{command} on a mutant of {seed} ({job['how']}; rng={rng}): {verdict['crash']}"
    )


@settings(SETTINGS, max_examples=40)  # breadth is `make fuzz`: 10,000 mutants
@given(job=st.sampled_from(TFLITE_JOBS), rng=st.integers(0, 2**48))
def test_tflite_mutants(
    worker: Worker, seeds: dict[str, Path], jobs_dir: Path, job: tuple[str, str], rng: int
) -> None:
    run_mutant(worker, seeds, jobs_dir, *job, rng)


@settings(SETTINGS, max_examples=15)
@given(job=st.sampled_from(MODEL_JOBS), rng=st.integers(0, 2**48))
def test_keras_and_h5_mutants(
    worker: Worker, seeds: dict[str, Path], jobs_dir: Path, job: tuple[str, str], rng: int
) -> None:
    run_mutant(worker, seeds, jobs_dir, *job, rng)


@pytest.mark.slow  # a mutant that is still a valid recipe runs a whole optimize (seconds)
@settings(SETTINGS, max_examples=4)
@given(recipe=st.sampled_from(RECIPES), rng=st.integers(0, 2**48))
def test_recipe_mutants(
    worker: Worker, seeds: dict[str, Path], jobs_dir: Path, recipe: str, rng: int
) -> None:
    run_mutant(worker, seeds, jobs_dir, "optimize", recipe, rng)


def test_mutants_are_deterministic_and_differ(seeds: dict[str, Path]) -> None:
    for name in ("float32.tflite", "tf_keras.keras", "tf_keras.h5", "int8.yaml"):
        data = seeds[name].read_bytes()
        a = mutate(name, data, random.Random(7))
        assert a == mutate(name, data, random.Random(7))
        assert a[0] != data, name


def test_wrong_type_mutation_reaches_every_node() -> None:
    seen = set()
    for i in range(200):
        doc = {"stages": [{"stage": "prune", "sparsity": 0.5}]}
        seen.add(mutate_tree(doc, random.Random(i)).split(" at ")[0])
    assert {"wrong", "delete", "unknown", "swap"} <= seen


def test_oracle_flags_partial_outputs(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    assert check_outputs("convert", 1, tmp_path) is None
    (tmp_path / "out" / ".model.tflite.x.part").write_bytes(b"")
    assert "part" in (check_outputs("convert", 1, tmp_path) or "")
    assert check_outputs("inspect", 1, tmp_path) is not None
    (tmp_path / "out" / ".model.tflite.x.part").unlink()
    (tmp_path / "out" / "model.tflite").write_bytes(b"")
    assert check_outputs("optimize", 0, tmp_path) is not None  # three of four outputs missing


# Regression cases for what the fuzzer found, built from the seeds by hand.


def _rezip(path: Path, member: str, content: bytes) -> bytes:
    """A `.keras` file with one member replaced."""
    with zipfile.ZipFile(path) as z:
        members = {n: z.read(n) for n in z.namelist()}
    members[member] = content
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    return out.getvalue()


def _edit_keras(path: Path, edit: Any) -> bytes:
    """A `.keras` file with its config.json (parsed) changed by `edit`."""
    with zipfile.ZipFile(path) as z:
        config = json.loads(z.read("config.json"))
    edit(config)
    return _rezip(path, "config.json", json.dumps(config).encode())


def _set_inbound(value: Any) -> Any:
    def edit(config: dict[str, Any]) -> None:
        config["config"]["layers"][1]["inbound_nodes"] = value

    return edit


def _zip_with_bad_directory_offset(path: Path) -> bytes:
    """The end record points past the central directory: zipfile then seeks before byte 0."""
    data = bytearray(path.read_bytes())
    end = data.rindex(b"PK\x05\x06")
    (offset,) = struct.unpack_from("<I", data, end + 16)
    struct.pack_into("<I", data, end + 16, offset + 100)
    return bytes(data)


@pytest.mark.parametrize(
    ("command", "seed", "make", "fragment"),
    [
        # Both Keras worlds loop forever rebuilding a graph with a node nobody creates (was: hang).
        ("convert", "tf_keras.keras", lambda p: _edit_keras(p, _set_inbound({})), "not a list"),
        ("convert", "tf_keras.keras", lambda p: _edit_keras(p, _set_inbound([])), "never creates"),
        ("compare", "keras3.keras", lambda p: _edit_keras(p, _set_inbound([])), "never creates"),
        # Was an untyped "JSONDecodeError ... (rerun with --debug)".
        ("convert", "keras3.keras", lambda p: _rezip(p, "config.json", b"{"), "not valid JSON"),
        # Was an untyped "OSError: [Errno 22] Invalid argument".
        ("convert", "tf_keras.keras", _zip_with_bad_directory_offset, "not a Keras model"),
    ],
    ids=["inbound-not-list", "inbound-dangling", "keras3-dangling", "config-not-json", "zip-seek"],
)
def test_found_by_fuzzing(
    worker: Worker,
    seeds: dict[str, Path],
    jobs_dir: Path,
    command: str,
    seed: str,
    make: Any,
    fragment: str,
) -> None:
    job = {"id": next(_ids), "command": command, "seed": seed, "rng": 0}
    full = prepare(job, seeds, jobs_dir, data=make(seeds[seed]))
    verdict = worker.run(full, timeout=120)
    assert "crash" not in verdict, verdict["crash"]
    assert verdict["exit"] == 1 and not verdict["untyped"], verdict
    assert fragment in verdict["message"], verdict["message"]


def test_layer_graph_check_accepts_shared_and_nested_layers(tmp_path: Path) -> None:
    from tfopt import keras_worlds as kw

    for world in (kw.World.TF_KERAS, kw.World.KERAS3):
        k = kw.module(world)
        inner_in = k.Input((4,))
        inner = k.Model(inner_in, k.layers.Dense(3)(inner_in), name="inner")
        a, b = k.Input((4,), name="a"), k.Input((4,), name="b")
        shared = k.layers.Dense(4, name="shared")
        x, y = shared(a), shared(b)
        out = k.layers.Concatenate()([inner(x), inner(y), shared(x)])
        model = k.Model([a, b], {"o": out, "p": k.layers.Dense(2)(out)})
        for ext in (".keras", ".h5"):
            path = tmp_path / f"{world}{ext}"
            model.save(path)
            kw.check_layer_graph(kw.file_metadata(path)[1])


XNNPACK_SEGV = Path(__file__).parent / "data" / "fuzz_xnnpack_segv.tflite"


@pytest.mark.parametrize("command", ["inspect", "compare", "generate", "bench"])
def test_tflite_that_crashed_xnnpack(
    worker: Worker, seeds: dict[str, Path], jobs_dir: Path, command: str
) -> None:
    """An int8 model with 4 fuzzed bytes: XNNPACK segfaults preparing it. It killed tfopt when
    opened in-process (inspect, compare, generate); now each command reports it or describes it."""
    job = {"id": next(_ids), "command": command, "seed": "int8.tflite", "rng": 0}
    full = prepare(job, seeds, jobs_dir, data=XNNPACK_SEGV.read_bytes())
    verdict = worker.run(full, timeout=120)
    assert "crash" not in verdict, verdict["crash"]
    if command in ("compare", "bench"):
        assert verdict["exit"] == 1 and "crashed" in verdict["message"], verdict
