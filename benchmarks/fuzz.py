"""Fuzz every file-reading command with mutants of real files; count crashes.

    python benchmarks/fuzz.py [--mutants 10000] [--workers 2] [--seed 0] [--out fuzz-out]

Seeds are real files made by real tools, built once into `<out>/seeds`: a tf_keras and a Keras 3
CNN trained with `fit` on scikit-learn's digits and saved with `model.save` (.keras and .h5),
their `.tflite` files (float32 and int8, from `tfopt.convert`), a tiny keras-hub GPT-2 exported
with `--lm`, the data files and the shipped recipes. Each mutant (byte flips, truncation, inserted
or deleted bytes, corrupted flatbuffer/HDF5 offsets, edited members of a `.keras` zip, edited
HDF5 attributes, wrong YAML/JSON types) goes through one command: `inspect`, `bench`, `compare`,
`convert`, `generate` or `optimize`.

The oracle: exit code 0, or 1 with one `Error: ...` line on stderr and no traceback; no Python
exception escapes click; the command's output is complete or absent (no temp or partial files);
the process survives (each command runs in a worker process, so a native crash or a hang is
recorded against the mutant that caused it, the mutant is kept under `<out>/crashes`, and a
fresh worker takes over). Writes `benchmarks/results/fuzz.json`.
"""

from __future__ import annotations

import argparse
import collections
import copy
import io
import json
import os
import random
import re
import select
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "fuzz.json"
SEED_VERSION = 2

# ---------------------------------------------------------------------------------------- seeds


def _digits() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    from tfopt.demo import digits_split

    return digits_split()


def _cnn(k: Any, x: np.ndarray, y: np.ndarray) -> Any:
    k.utils.set_random_seed(0)
    inputs = k.Input((8, 8, 1), name="image")
    h = k.layers.Conv2D(4, 3, activation="relu")(inputs)
    h = k.layers.Flatten()(h)
    outputs = k.layers.Dense(10, activation="softmax", name="probs")(h)
    model = k.Model(inputs, outputs)
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=2, batch_size=64, verbose=0)
    return model


def _tiny_lm(path: Path) -> None:
    from tfopt import keras_worlds

    hub = keras_worlds.keras_hub()
    keras_worlds.module(keras_worlds.World.KERAS3).utils.set_random_seed(0)
    backbone = hub.models.GPT2Backbone(
        vocabulary_size=260,
        num_layers=1,
        num_heads=2,
        hidden_dim=32,
        intermediate_dim=64,
        max_sequence_length=32,
    )
    hub.models.GPT2CausalLM(backbone=backbone, preprocessor=None).save(path)


def build_seeds(folder: Path, lm: bool = True) -> dict[str, Path]:
    """Real seed files in `folder`, built once (a manifest marks a complete build)."""
    manifest = folder / "seeds.json"
    if manifest.is_file():
        doc = json.loads(manifest.read_text())
        paths = {k: folder / v for k, v in doc["files"].items()}
        if doc.get("version") == SEED_VERSION and doc.get("lm") == lm:
            if all(p.exists() for p in paths.values()):
                return paths
    from tfopt import keras_worlds
    from tfopt.conversion import convert

    folder.mkdir(parents=True, exist_ok=True)
    x, y, xt, yt = _digits()
    files = {
        "tf_keras.keras": "tf_keras.keras",
        "tf_keras.h5": "tf_keras.h5",
        "keras3.keras": "keras3.keras",
        "keras3.h5": "keras3.h5",
        "float32.tflite": "float32.tflite",
        "int8.tflite": "int8.tflite",
        "calib.npz": "calib.npz",
        "test.npz": "test.npz",
        "train.npz": "train.npz",
    }
    np.savez(folder / "calib.npz", x=x[:32])
    np.savez(folder / "test.npz", x=xt[:32], y=yt[:32])
    np.savez(folder / "train.npz", x_train=x[:256], y_train=y[:256], x_val=xt[:64], y_val=yt[:64])
    tfk = _cnn(keras_worlds.module(keras_worlds.World.TF_KERAS), x, y)
    tfk.save(folder / "tf_keras.keras")
    tfk.save(folder / "tf_keras.h5")
    k3 = _cnn(keras_worlds.module(keras_worlds.World.KERAS3), x, y)
    k3.save(folder / "keras3.keras")
    k3.save(folder / "keras3.h5")
    convert(folder / "tf_keras.keras", folder / "float32.tflite", "float32", overwrite=True)
    convert(
        folder / "tf_keras.keras",
        folder / "int8.tflite",
        "int8",
        calibration=folder / "calib.npz",
        overwrite=True,
    )
    from tfopt.metadata import Metadata, attach  # a file carrying metadata and packed labels

    (folder / "labels.txt").write_text("".join(f"digit {i}\n" for i in range(10)))
    meta = Metadata(name="digits", labels=str(folder / "labels.txt"), normalize="0,1")
    (folder / "meta.tflite").write_bytes(attach((folder / "float32.tflite").read_bytes(), meta))
    files["meta.tflite"] = "meta.tflite"
    if lm:
        _tiny_lm(folder / "gpt2.keras")
        convert(folder / "gpt2.keras", folder / "lm.tflite", "dynamic", lm=True, max_length=16,
                overwrite=True)  # fmt: skip
        files["lm.tflite"] = "lm.tflite"
    for recipe in sorted((ROOT / "tfopt" / "recipe_files").glob("*.yaml")):
        shutil.copy(recipe, folder / recipe.name)
        files[recipe.name] = recipe.name
    manifest.write_text(json.dumps({"version": SEED_VERSION, "lm": lm, "files": files}))
    return {k: folder / v for k, v in files.items()}


# ------------------------------------------------------------------------------------- mutators

BOUNDARY32 = [0, 1, 0x7F, 0x80, 0xFF, 0xFFFF, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF]


def _flip(b: bytearray, rng: random.Random) -> str:
    n = rng.choice([1, 1, 2, 4, 8, 32])
    for _ in range(n):
        p = rng.randrange(len(b))
        b[p] ^= 1 << rng.randrange(8)
    return f"flip {n} bits"


def _set_bytes(b: bytearray, rng: random.Random) -> str:
    n = rng.choice([1, 2, 4, 16])
    for _ in range(n):
        b[rng.randrange(len(b))] = rng.choice([0, 0xFF, 0x7F, 0x80, rng.randrange(256)])
    return f"set {n} bytes"


def _truncate(b: bytearray, rng: random.Random) -> str:
    cut = rng.choice([0, 4, 8, 16, rng.randrange(len(b)), len(b) - rng.randrange(1, 64)])
    cut = max(0, min(cut, len(b) - 1))
    del b[cut:]
    return f"truncate to {cut}"


def _insert(b: bytearray, rng: random.Random) -> str:
    p, n = rng.randrange(len(b) + 1), rng.choice([1, 3, 4, 16, 256])
    b[p:p] = bytes(rng.randrange(256) for _ in range(n))
    return f"insert {n} at {p}"


def _delete(b: bytearray, rng: random.Random) -> str:
    p, n = rng.randrange(len(b)), rng.choice([1, 3, 4, 16, 256])
    del b[p : p + n]
    return f"delete {n} at {p}"


def _offset(b: bytearray, rng: random.Random, width: int = 4) -> str:
    """Overwrite an aligned uint32 (flatbuffer offsets, lengths) or uint64 (HDF5 addresses)."""
    if len(b) < 2 * width:
        return _flip(b, rng)
    hits = []
    for _ in range(rng.choice([1, 1, 2, 3])):
        # Flatbuffer structure (root table, vtables, vectors of offsets) sits mostly in the first
        # and last kilobytes; weights fill the middle.
        zone = rng.random()
        if zone < 0.4:
            p = rng.randrange(0, min(len(b), 1024) - width + 1)
        elif zone < 0.7:
            p = rng.randrange(max(0, len(b) - 2048), len(b) - width + 1)
        else:
            p = rng.randrange(0, len(b) - width + 1)
        p -= p % width
        fmt = "<I" if width == 4 else "<Q"
        old = struct.unpack_from(fmt, b, p)[0]
        top = (1 << (8 * width)) - 1
        v = rng.choice(
            BOUNDARY32
            + [top, len(b), len(b) - width, len(b) + 4, rng.getrandbits(8 * width)]
            + [old + d for d in (-8, -4, -1, 1, 4, 8, 1 << 16)]
        )
        struct.pack_into(fmt, b, p, v & top)
        hits.append(p)
    return f"offset{width * 8} at {hits}"


RAW_MUTATORS = {
    "flip": _flip,
    "set": _set_bytes,
    "truncate": _truncate,
    "insert": _insert,
    "delete": _delete,
    "offset": _offset,
}

WRONG_VALUES: list[Any] = [
    None, True, False, 0, -1, -7, 2**31, 2**63, 1e308, -0.5, 0.5, 1.5, float("nan"),
    "", "x", "2:4", "int8", "^$", "(", [], [1, 2], [[]], {}, {"unknown": 1}, {"stage": "prune"},
]  # fmt: skip


def mutate_tree(doc: Any, rng: random.Random) -> str:
    """Mutate a parsed JSON/YAML document in place: wrong types, missing or unknown keys."""
    nodes: list[tuple[Any, Any]] = []  # (container, key)

    def walk(node: Any) -> None:
        items = node.items() if isinstance(node, dict) else enumerate(node)
        for key, value in list(items):
            nodes.append((node, key))
            if isinstance(value, (dict, list)):
                walk(value)

    if not isinstance(doc, (dict, list)) or not doc:
        return "empty doc"
    walk(doc)
    container, key = rng.choice(nodes)
    op = rng.choice(["wrong", "wrong", "wrong", "delete", "unknown", "duplicate", "swap"])
    if op == "wrong":
        container[key] = rng.choice(WRONG_VALUES)
    elif op == "delete":
        del container[key]
    elif op == "unknown" and isinstance(container, dict):
        container[rng.choice(["bogus", "stages", "name", "sparsity", "epochs"]) + "_x"] = 1
    elif op == "duplicate" and isinstance(container, list):
        container.append(container[key])
    else:
        other_container, other_key = rng.choice(nodes)
        container[key] = copy.deepcopy(other_container[other_key])  # a copy: no cycles
    return f"{op} at {key!r}"


def _mutate_json_bytes(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    try:
        doc = json.loads(data)
    except ValueError:
        b = bytearray(data)
        return bytes(b), _flip(b, rng)
    how = mutate_tree(doc, rng)
    return json.dumps(doc).encode(), how


def mutate_keras_zip(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    """Mutate one member of a `.keras` zip (JSON edits, raw bytes in the weights), then rezip."""
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        members = {n: z.read(n) for n in z.namelist()}
    name = rng.choice(sorted(members))
    op = rng.random()
    if op < 0.08:
        del members[name]
        how = f"drop {name}"
    elif name.endswith(".json") and op < 0.75:
        members[name], how = _mutate_json_bytes(members[name], rng)
        how = f"{name}: {how}"
    else:
        b = bytearray(members[name])
        kind = rng.choice(list(RAW_MUTATORS))
        how = f"{name}: " + (_offset(b, rng, 8) if kind == "offset" else RAW_MUTATORS[kind](b, rng))
        members[name] = bytes(b)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        for n, content in members.items():
            z.writestr(n, content)
    return out.getvalue(), how


def mutate_h5_attrs(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    """Edit the model config / version attributes or one weight array of a legacy `.h5` file."""
    import h5py

    with tempfile.NamedTemporaryFile(suffix=".h5", delete=False) as f:
        f.write(data)
        tmp = f.name
    try:
        with h5py.File(tmp, "r+") as h5:
            op = rng.random()
            if op < 0.55 and "model_config" in h5.attrs:
                raw = h5.attrs["model_config"]
                text = raw.decode() if isinstance(raw, bytes) else str(raw)
                new, how = _mutate_json_bytes(text.encode(), rng)
                h5.attrs["model_config"] = new.decode()
                how = f"model_config: {how}"
            elif op < 0.7:
                key = rng.choice(["keras_version", "backend", "training_config", "model_config"])
                h5.attrs[key] = rng.choice(["", "1.0", "9.9.9", "{}", "not json", "3.0.0"])
                how = f"attr {key}"
            else:
                datasets: list[str] = []
                h5.visit(lambda n: datasets.append(n) if isinstance(h5[n], h5py.Dataset) else None)
                name = rng.choice(datasets)
                shape = h5[name].shape
                del h5[name]
                new_shape = rng.choice([(), (1,), tuple(s + 1 for s in shape), shape[::-1]])
                h5[name] = np.full(new_shape, rng.choice([0.0, np.nan, 1e30]), np.float32)
                how = f"dataset {name} {shape} -> {new_shape}"
        return Path(tmp).read_bytes(), how
    except (OSError, KeyError, ValueError, IndexError):
        b = bytearray(data)
        return bytes(b), _flip(b, rng)
    finally:
        os.unlink(tmp)


def mutate_yaml(text: bytes, rng: random.Random) -> tuple[bytes, str]:
    import yaml

    if rng.random() < 0.25:
        b = bytearray(text)
        return bytes(b), RAW_MUTATORS[rng.choice(["flip", "truncate", "insert", "delete"])](b, rng)
    doc = yaml.safe_load(text)
    hows = [mutate_tree(doc, rng) for _ in range(rng.choice([1, 1, 2]))]
    return yaml.safe_dump(doc, sort_keys=False).encode(), "; ".join(hows)


def mutate(seed_name: str, data: bytes, rng: random.Random) -> tuple[bytes, str]:
    """One mutant of a seed file, chosen by its type; returns the bytes and what was done."""
    if seed_name.endswith(".yaml"):
        return mutate_yaml(data, rng)
    r = rng.random()
    if seed_name.endswith(".keras") and r < 0.6:
        return mutate_keras_zip(data, rng)
    if seed_name.endswith(".h5") and r < 0.45:
        return mutate_h5_attrs(data, rng)
    b = bytearray(data)
    kind = rng.choice(list(RAW_MUTATORS) + ["offset"] * (2 if seed_name.endswith(".tflite") else 0))
    if kind == "offset":
        how = _offset(b, rng, 8 if seed_name.endswith(".h5") else 4)
    else:
        how = RAW_MUTATORS[kind](b, rng)
    return bytes(b), how


# ------------------------------------------------------------------------------------ the jobs

# Which seed files each command reads, and how much of the budget it gets.
PLAN: dict[str, tuple[float, list[str]]] = {
    "inspect": (0.55, ["float32.tflite", "int8.tflite", "lm.tflite", "meta.tflite"]),
    "metadata": (0.05, ["meta.tflite", "float32.tflite"]),
    "compare": (0.16, ["float32.tflite", "int8.tflite", "tf_keras.keras", "tf_keras.h5",
                       "keras3.keras", "keras3.h5"]),
    "generate": (0.10, ["lm.tflite"]),
    "bench": (0.06, ["float32.tflite", "int8.tflite", "lm.tflite"]),
    "convert": (0.06, ["tf_keras.keras", "tf_keras.h5", "keras3.keras", "keras3.h5"]),
    "optimize": (0.02, ["*.yaml", "tf_keras.keras", "keras3.keras", "tf_keras.h5"]),
}  # fmt: skip

OPTIMIZE_OUTPUTS = {"model.tflite", "optimized.keras", "report.json", "report.md"}


def command_args(command: str, seed: str, mutant: Path, seeds: dict[str, Path]) -> list[str]:
    """The command line for one mutant; outputs go to ./out (the worker runs in a fresh folder)."""
    s = {k: str(v) for k, v in seeds.items()}
    m = str(mutant)
    if command == "inspect":
        return ["inspect", m, "--json"]
    if command == "bench":
        lm = ["--lm", "--prompt-len", "4", "--new-tokens", "2"] if seed == "lm.tflite" else []
        return ["bench", m, "--runs", "1", "--warmup", "0", "--threads", "1", *lm]
    if command == "generate":
        return ["generate", m, "--prompt", "Hi", "--max-new-tokens", "3"]
    if command == "compare":
        if seed.endswith(".tflite"):
            return ["compare", s["float32.tflite"], m, "--data", s["test.npz"]]
        return ["compare", m, s["float32.tflite"], "--data", s["test.npz"]]
    if command == "convert":
        return ["convert", m, "-o", "out/model.tflite", "--calibration", s["calib.npz"]]
    if command == "metadata":
        return ["metadata", m, "--set", "author=fuzz", "--set", "version=2", "-o", "out/model.tflite"]
    if command == "optimize":
        model, recipe = (s["tf_keras.keras"], m) if seed.endswith(".yaml") else (m, "int8")
        return ["optimize", model, "--recipe", recipe, "--data", s["train.npz"], "-o", "out",
                "--epochs", "1", "--batch-size", "64"]  # fmt: skip
    raise ValueError(command)


def check_outputs(command: str, exit_code: int, cwd: Path) -> str | None:
    """None if the folder holds a complete output or none; else what is partial or left over."""
    left = sorted(str(p.relative_to(cwd)) for p in cwd.rglob("*") if not p.name.startswith("in."))
    if command in ("convert", "metadata"):
        expected = ["out", "out/model.tflite"] if exit_code == 0 else ["out"]
    elif command == "optimize":
        full = ["out", *(f"out/{n}" for n in sorted(OPTIMIZE_OUTPUTS))]
        expected = full if exit_code == 0 else []
        if exit_code != 0 and left == ["out"]:
            left = []  # an empty folder is no partial output
    else:
        expected = []
    return None if left == expected else f"files after exit {exit_code}: {left}"


# ---------------------------------------------------------------------------------- the worker


def judge(result: Any, command: str, cwd: Path) -> dict[str, Any]:
    """Apply the oracle to one click Result (run with the working folder `cwd`)."""
    out: dict[str, Any] = {"exit": result.exit_code}
    problems = []
    exc = result.exception
    if exc is not None and not isinstance(exc, SystemExit):
        problems.append(f"uncaught {type(exc).__name__}: {str(exc)[:200]}")
    if result.exit_code not in (0, 1):
        problems.append(f"exit code {result.exit_code}")
    stderr = result.stderr
    if "Traceback (most recent call last)" in stderr + result.stdout:
        problems.append("traceback printed")
    lines = [ln for ln in stderr.strip().splitlines() if ln.strip()]
    if result.exit_code == 1:
        if not lines or not lines[-1].startswith("Error: "):
            problems.append(f"no 'Error:' line: {(lines or [''])[-1][:200]!r}")
        else:
            out["message"] = lines[-1][7:][:300]
            out["untyped"] = out["message"].endswith("(rerun with --debug)")
        if len(lines) > 1:
            out["extra_stderr_lines"] = len(lines) - 1
            out["first_extra"] = lines[0][:200]
    leftover = check_outputs(command, result.exit_code, cwd)
    if leftover:
        problems.append(leftover)
    if problems:
        out["crash"] = "; ".join(problems)
    return out


def worker_main(result_fd: int) -> None:
    """Read jobs (JSON lines) on stdin, run each through the CLI in-process, answer on result_fd."""
    import faulthandler

    from click.testing import CliRunner

    from tfopt.cli import cli

    faulthandler.enable()  # a native crash leaves the Python stack in the worker's log
    answers = os.fdopen(result_fd, "w", buffering=1)
    runner = CliRunner()
    for line in sys.stdin:
        job = json.loads(line)
        cwd = Path(job["cwd"])
        os.chdir(cwd)
        start = time.perf_counter()
        result = runner.invoke(cli, job["args"], catch_exceptions=True)
        os.chdir(ROOT)
        verdict = judge(result, job["command"], cwd)
        verdict["seconds"] = round(time.perf_counter() - start, 3)
        answers.write(json.dumps({"id": job["id"], **verdict}) + "\n")


class Worker:
    """A child process running jobs with TensorFlow imported once; survives nothing itself, so
    a native crash or a hang is pinned on the job that caused it and a new worker starts."""

    def __init__(self, log: Path) -> None:
        self.log_path = log
        self.proc: subprocess.Popen[str] | None = None
        self._buf = b""

    def _start(self) -> None:
        read_fd, write_fd = os.pipe()
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONFAULTHANDLER="1")
        self.log = open(self.log_path, "ab")  # noqa: SIM115 - lives as long as the process
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--worker", str(write_fd)],
            stdin=subprocess.PIPE,
            stdout=self.log,
            stderr=self.log,
            pass_fds=(write_fd,),
            cwd=ROOT,
            env=env,
            text=True,
        )
        os.close(write_fd)
        self.read_fd = read_fd
        self._buf = b""

    def stop(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait()
            os.close(self.read_fd)
            self.log.close()
            self.proc = None

    def run(self, job: dict[str, Any], timeout: float) -> dict[str, Any]:
        if self.proc is None or self.proc.poll() is not None:
            self.stop()
            self._start()
        assert self.proc is not None and self.proc.stdin is not None
        log_start = self.log_path.stat().st_size
        self.proc.stdin.write(json.dumps(job) + "\n")
        self.proc.stdin.flush()
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self.read_fd], [], [], max(0.0, left))
            if not ready:
                self.stop()
                return {"exit": None, "crash": f"hang: no answer in {timeout:.0f} s"}
            chunk = os.read(self.read_fd, 65536)
            if not chunk:  # the worker died
                code = self.proc.wait()
                tail = self.log_path.read_bytes()[log_start:].decode(errors="replace")
                self.stop()
                return {"exit": code, "crash": f"process died ({code}): {_crash_reason(tail)}"}
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        return json.loads(line)


def _crash_reason(log_tail: str) -> str:
    """The fatal error line and the innermost tfopt/library frames from a faulthandler dump."""
    lines = log_tail.strip().splitlines()
    fatal = next((ln for ln in lines if ln.startswith("Fatal Python error")), "")
    frames = [ln.strip() for ln in lines if ln.strip().startswith("File ")][:3]
    return " | ".join([fatal, *frames]) or (lines[-1] if lines else "no output")


# ------------------------------------------------------------------------------------ the runner


@dataclass
class Tally:
    mutants: int = 0
    exit0: int = 0
    exit1: int = 0
    crashes: int = 0
    untyped_errors: int = 0
    noisy_errors: int = 0
    seconds: float = 0.0
    crash_examples: list[dict[str, Any]] = field(default_factory=list)
    untyped_examples: collections.Counter[str] = field(default_factory=collections.Counter)
    messages: collections.Counter[str] = field(default_factory=collections.Counter)


def make_jobs(seeds: dict[str, Path], total: int, seed: int) -> list[dict[str, Any]]:
    """`total` jobs spread over the commands by PLAN, each with its mutation recipe."""
    rng = random.Random(seed)
    recipes = sorted(k for k in seeds if k.endswith(".yaml"))
    jobs = []
    for command, (share, sources) in PLAN.items():
        names = [n for s in sources for n in (recipes if s == "*.yaml" else [s]) if n in seeds]
        if not names:
            continue
        for i in range(max(1, round(share * total))):
            name = names[i % len(names)] if not sources[0] == "*.yaml" else (
                rng.choice(recipes) if rng.random() < 0.8 else rng.choice(names))  # fmt: skip
            jobs.append({"command": command, "seed": name, "rng": rng.getrandbits(48)})
    rng.shuffle(jobs)
    for i, job in enumerate(jobs):
        job["id"] = i
    return jobs


def prepare(
    job: dict[str, Any], seeds: dict[str, Path], root: Path, data: bytes | None = None
) -> dict[str, Any]:
    """Write the job's mutant (or `data`) into a fresh folder; return the job as the worker
    receives it."""
    cwd = root / f"job{job['id']}"
    cwd.mkdir(parents=True)
    name = job["seed"]
    if data is None:
        data, how = mutate(name, seeds[name].read_bytes(), random.Random(job["rng"]))
    else:
        how = job.get("how", "given bytes")
    mutant = cwd / f"in.{name}"
    mutant.write_bytes(data)
    if job["command"] in ("convert", "metadata"):
        (cwd / "out").mkdir()
    args = command_args(job["command"], name, mutant, seeds)
    return {**job, "cwd": str(cwd), "args": args, "how": how, "mutant": str(mutant)}


def run_fuzz(
    total: int, workers: int, seed: int, out: Path, timeout: float, results: Path
) -> dict[str, Any]:
    """Run the mutants; rewrite `results` every 250 mutants (finished: false) and at the end."""
    seeds = build_seeds(out / "seeds")
    jobs = make_jobs(seeds, total, seed)
    work = Path(tempfile.mkdtemp(prefix="tfopt-fuzz-"))
    crashes_dir = out / "crashes"
    tallies: dict[str, Tally] = collections.defaultdict(Tally)
    lock = threading.Lock()
    queue = list(reversed(jobs))
    started = time.perf_counter()

    def loop(n: int) -> None:
        worker = Worker(out / f"worker{n}.log")
        try:
            while True:
                with lock:
                    if not queue:
                        return
                    job = queue.pop()
                try:
                    full = prepare(job, seeds, work)
                except Exception as exc:  # noqa: BLE001 - a mutator bug must not end the run
                    print(f"mutator failed on {job}: {exc!r}", file=sys.stderr, flush=True)
                    continue
                verdict = worker.run(full, timeout)
                record(full, verdict)
                shutil.rmtree(full["cwd"], ignore_errors=True)
        finally:
            worker.stop()

    def record(job: dict[str, Any], verdict: dict[str, Any]) -> None:
        with lock:
            t = tallies[job["command"]]
            t.mutants += 1
            t.seconds += verdict.get("seconds", 0.0)
            if "crash" in verdict:
                t.crashes += 1
                crashes_dir.mkdir(parents=True, exist_ok=True)
                kept = crashes_dir / f"{job['id']}-{job['command']}-{job['seed']}"
                shutil.copy(job["mutant"], kept)
                if len(t.crash_examples) < 10:
                    t.crash_examples.append(
                        {
                            "seed": job["seed"],
                            "mutation": job["how"],
                            "reason": verdict["crash"],
                            "mutant": str(kept.relative_to(out)),
                        }  # fmt: skip
                    )
                print(f"CRASH {job['command']} {job['seed']} ({job['how']}): {verdict['crash']}",
                      file=sys.stderr, flush=True)  # fmt: skip
            elif verdict["exit"] == 0:
                t.exit0 += 1
            else:
                t.exit1 += 1
                message = verdict.get("message", "").replace(job["cwd"] + "/", "")
                t.messages[re.sub(r"\d+", "N", message)[:90]] += 1
                if verdict.get("untyped"):
                    t.untyped_errors += 1
                    t.untyped_examples[verdict["message"].split(":")[0]] += 1
                if verdict.get("extra_stderr_lines"):
                    t.noisy_errors += 1
            done = sum(x.mutants for x in tallies.values())
            if done % 250 == 0:
                rate = done / (time.perf_counter() - started)
                print(f"{done}/{len(jobs)} mutants, {rate:.1f}/s, crashes "
                      f"{sum(x.crashes for x in tallies.values())}", file=sys.stderr, flush=True)  # fmt: skip

    def summary(finished: bool) -> dict[str, Any]:
        per_command = {}
        for command in PLAN:
            t = tallies.get(command, Tally())
            per_command[command] = {
                "mutants": t.mutants,
                "exit_0": t.exit0,
                "exit_1": t.exit1,
                "crashes": t.crashes,
                "untyped_errors": t.untyped_errors,
                "untyped_error_types": dict(t.untyped_examples.most_common(8)),
                "errors_with_extra_stderr": t.noisy_errors,
                "top_errors": dict(t.messages.most_common(12)),
                "mean_seconds": round(t.seconds / t.mutants, 3) if t.mutants else None,
                "crash_examples": t.crash_examples,
            }
        return {
            "finished": finished,
            "planned": len(jobs),
            "mutants": sum(v["mutants"] for v in per_command.values()),
            "crashes": sum(v["crashes"] for v in per_command.values()),
            "seed": seed,
            "workers": workers,
            "wall_seconds": round(time.perf_counter() - started, 1),
            "seeds": sorted(seeds),
            "machine": _machine(),
            "commands": per_command,
        }

    def save(finished: bool) -> dict[str, Any]:
        doc = summary(finished)
        results.parent.mkdir(parents=True, exist_ok=True)
        tmp = results.with_suffix(".json.part")
        tmp.write_text(json.dumps(doc, indent=2) + "\n")
        tmp.replace(results)
        return doc

    saver = threading.Event()
    threads = [threading.Thread(target=loop, args=(n,), daemon=True) for n in range(workers)]
    for th in threads:
        th.start()
    while any(th.is_alive() for th in threads):
        saver.wait(30)
        with lock:
            save(False)
    shutil.rmtree(work, ignore_errors=True)
    with lock:
        return save(True)


def _machine() -> dict[str, Any]:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "python": sys.version.split()[0]}


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        sys.path.insert(0, str(ROOT))
        worker_main(int(sys.argv[2]))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mutants", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=180.0, help="Seconds per mutant.")
    parser.add_argument("--out", type=Path, default=ROOT / "fuzz-out")
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    doc = run_fuzz(
        args.mutants, args.workers, args.seed, args.out.resolve(), args.timeout, args.results
    )
    print(json.dumps({k: doc[k] for k in ("mutants", "crashes", "wall_seconds")}))
    for command, v in doc["commands"].items():
        print(f"{command:9s} {v['mutants']:6d} mutants  exit0 {v['exit_0']:5d}  exit1 "
              f"{v['exit_1']:5d}  crashes {v['crashes']}  ({v['mean_seconds']} s each)")  # fmt: skip


if __name__ == "__main__":
    main()
