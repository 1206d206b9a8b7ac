"""An Android phone over adb: LiteRT's native `benchmark_model` (what app developers use there),
its output parsed into the runtime's result shape."""

from __future__ import annotations

import hashlib
import re
import secrets
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

from tfopt.errors import BenchError, InputError, option
from tfopt.runtime.stats import parse_cpus
from tfopt.targets.base import RunSpec, Target

_TIMINGS = re.compile(
    r"Inference timings in us: Init: ([\d.]+), First inference: ([\d.]+), "
    r"Warmup \(avg\): ([\d.e+]+), Inference \(avg\): ([\d.e+]+)"
)
_MEMORY = re.compile(
    r"(Peak memory footprint|Memory footprint delta[^:]*) \(MB\): init=([\d.]+) overall=([\d.]+)"
)
_COUNT_LINE = re.compile(r"^count=\d+ .*", re.M)
_PREFIX = re.compile(r"^(.*?\btflite\s*:\s|INFO:\s+)")


def parse_benchmark_output(text: str) -> dict[str, Any]:
    """Parse what LiteRT's native `benchmark_model` prints into the runtime's result shape.

    Times in the tool's summary are microseconds: Init, First inference, Warmup (avg) and
    Inference (avg); the last `count=... min=... max=... avg=... std=...` line is the timed runs.
    Peak memory is the tool's "Peak memory footprint" if printed, else its footprint delta.
    """
    # Drop logcat prefixes ("05-30 15:16:44.857 3380 3380 I tflite  : ") and newer "INFO: " ones.
    lines = [_PREFIX.sub("", ln) for ln in text.splitlines()]
    text = "\n".join(lines)
    m = _TIMINGS.search(text)
    if not m:
        tail = [ln for ln in lines if ln.strip()][-1:] or ["no output"]
        raise BenchError(f"benchmark_model printed no timings; its last line: {tail[0].strip()}")
    init_us, first_us, warmup_us, avg_us = (float(g) for g in m.groups())
    stats: dict[str, float] = {}
    counts = _COUNT_LINE.findall(text)
    if counts:
        for pair in counts[-1].split():
            key, _, value = pair.partition("=")
            try:
                stats[key] = float(value)
            except ValueError:
                continue
    latency = {"mean": round(avg_us, 2)}
    for key, name in (("median", "p50"), ("p95", "p95"), ("min", "min"), ("max", "max")):
        if key in stats:
            latency[name] = stats[key]
    if "std" in stats:
        latency["std"] = stats["std"]
    memory: dict[str, float] = {}
    for kind, _init, overall in _MEMORY.findall(text):
        memory["peak" if kind.startswith("Peak") else "delta"] = float(overall)
    accelerated = None
    if "completely executed by the delegate" in text:
        accelerated = True
    elif "partially executed by the delegate" in text or "will not be executed" in text:
        accelerated = False
    result: dict[str, Any] = {
        "load_ms": round(init_us / 1000, 3),
        "first_ms": round(first_us / 1000, 3),
        "warmup_avg_ms": round(warmup_us / 1000, 3),
        "runs": int(stats["count"]) if "count" in stats else None,
        "latency_us": latency,
        "latency_stat": "p50" if "p50" in latency else "mean",
        "peak_memory_mb": memory.get("peak", memory.get("delta")),
    }
    if accelerated is not None:
        result["fully_accelerated"] = accelerated
    return result


def input_layer_flags(model: bytes, shapes: dict[str, tuple[int, ...]]) -> list[str]:
    """benchmark_model's `--input_layer`/`--input_layer_shape`, which it resizes the inputs to:
    every graph input in the graph's order, by tensor name; `shapes` are keyed by input name
    (signature names where the file has one), other inputs keep their own shape (batch 1)."""
    from tfopt.flatbuffer import model_root
    from tfopt.inspection import flatbuffer_io

    by_tensor = {d["tensor"]: d for d in flatbuffer_io(model)["inputs"]}
    graph = model_root(model).Subgraphs(0)
    tensors = [(graph.Tensors(int(i)).Name() or b"").decode() for i in graph.InputsAsNumpy()]
    if any("," in t or t not in by_tensor for t in tensors):
        raise InputError(
            "an adb target cannot time this model at a chosen input shape (benchmark_model "
            "cannot name its inputs): use a local or ssh target"
        )
    dims = []
    for t in tensors:
        d = by_tensor[t]
        dims.append(shapes.get(d["name"]) or [1 if s == -1 else s for s in d["shape"]])
    return [
        f"--input_layer={','.join(tensors)}",
        "--input_layer_shape=" + ":".join(",".join(map(str, s)) for s in dims),
    ]


def cpu_mask(cpus: str) -> str:
    """'4,5,6,7' -> 'f0' (taskset's hex mask)."""
    return format(sum(1 << c for c in parse_cpus(cpus)), "x")


class AdbTarget(Target):
    """An Android device: push the model and `benchmark_model`, run it in `adb shell`.

    Each run works in its own folder under /data/local/tmp (a random name, created with a plain
    `mkdir` that fails rather than reuse another run's folder) and removes only that folder.
    Models are stored there under their sha256, so two files with one name stay apart.
    """

    DEVICE_BASE = "/data/local/tmp"
    _OK = "tfopt-ok"

    def __init__(self, serial: str | None = None, binary: str | None = None) -> None:
        self.name = f"adb:{serial}" if serial else "adb"
        self.serial = serial
        self.binary = binary
        self.device_dir = f"{self.DEVICE_BASE}/tfopt-{secrets.token_hex(6)}"
        self.created = False
        self.ready = False
        self.pushed: set[str] = set()
        self.machine: dict[str, Any] = {}

    def _adb(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        cmd = ["adb", *(["-s", self.serial] if self.serial else []), *args]
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise BenchError(f"{self.name}: adb gave no answer within {timeout:.0f} s") from None

    def _shell(self, what: str, *cmd: str, timeout: float = 60) -> None:
        """Run `cmd` on the device; raise one line unless it succeeded. Older adb versions
        always exit 0, so success is also read from an echo that runs only after it."""
        proc = self._adb("shell", shlex.join(cmd), "&&", "echo", self._OK, timeout=timeout)
        if proc.returncode != 0 or self._OK not in proc.stdout:
            said = (proc.stderr.strip() or proc.stdout.strip()).splitlines()
            reason = said[-1] if said else f"exit code {proc.returncode}"
            raise BenchError(f"{self.name}: {what} failed: {reason}")

    def _push(self, local: str, remote: str, what: str) -> None:
        pushed = self._adb("push", local, remote, timeout=600)
        if pushed.returncode != 0:
            said = (pushed.stderr.strip() or pushed.stdout.strip()).splitlines()
            reason = said[-1] if said else f"exit code {pushed.returncode}"
            raise BenchError(f"{self.name}: pushing {what} failed: {reason}")

    def _prepare(self) -> None:
        if self.ready:
            return
        if shutil.which("adb") is None:
            raise BenchError("adb not found on PATH (Debian/Ubuntu: apt-get install adb)")
        state = self._adb("get-state", timeout=30)
        if state.returncode != 0 or state.stdout.strip() != "device":
            said = (state.stderr.strip() or state.stdout.strip() or "no device").splitlines()[-1]
            raise BenchError(f"{self.name}: no Android device ready: {said}")
        props = {}
        for prop in ("ro.product.model", "ro.product.cpu.abi", "ro.build.version.release"):
            props[prop] = self._adb("shell", "getprop", prop).stdout.strip()
        abi = props["ro.product.cpu.abi"]
        self.machine = {
            "device": props["ro.product.model"],
            "abi": abi,
            "android": props["ro.build.version.release"],
        }
        if not self.binary:
            raise BenchError(
                f"{self.name}: give {option('benchmark_binary')}: LiteRT's benchmark_model built for {abi}"
            )
        if not Path(self.binary).is_file():
            raise InputError(f"{option('benchmark_binary')} not found: {self.binary}")
        self._shell(f"making {self.device_dir}", "mkdir", self.device_dir)
        self.created = True
        binary = f"{self.device_dir}/benchmark_model"
        self._push(self.binary, binary, "benchmark_model")
        self._shell("making benchmark_model executable", "chmod", "755", binary)
        self.ready = True

    def command(self, graph: str, spec: RunSpec, inputs: list[str] | None = None) -> list[str]:
        """The `adb shell` command line for one measurement (kept separate so tests can read it);
        `inputs`: `input_layer_flags` for a model timed at chosen input shapes."""
        cmd = [f"{self.device_dir}/benchmark_model", f"--graph={graph}", *(inputs or [])]
        cmd += [f"--num_threads={spec.threads}", f"--warmup_runs={spec.warmup}"]
        cmd += [f"--min_secs={spec.min_seconds}"]
        if spec.runs is not None:
            cmd += [f"--num_runs={spec.runs}"]
        cmd += [f"--use_gpu={str(spec.accelerator == 'gpu').lower()}"]
        cmd += [f"--use_nnapi={str(spec.accelerator == 'nnapi').lower()}"]
        cmd += [f"--use_xnnpack={str(spec.xnnpack and spec.accelerator == 'cpu').lower()}"]
        if spec.pin:
            cmd = ["taskset", cpu_mask(spec.pin), *cmd]
        return cmd

    def measure(self, model: Path, spec: RunSpec, data: str | None, timeout: float) -> dict:
        if spec.lm:
            raise InputError(f"{option('lm')} timing runs through the Python runtime: use a local/ssh target")
        if data:
            raise InputError(f"{option('data')} is not passed to benchmark_model; it feeds random inputs")
        graph_bytes = model.read_bytes()
        shapes = dict(spec.input_shapes)
        inputs = input_layer_flags(graph_bytes, shapes) if shapes else None
        self._prepare()
        sha = hashlib.sha256(graph_bytes).hexdigest()
        graph = f"{self.device_dir}/{sha}.tflite"
        if sha not in self.pushed:
            self._push(str(model), graph, model.name)
            self.pushed.add(sha)
        proc = self._adb("shell", shlex.join(self.command(graph, spec, inputs)), timeout=timeout)
        result = parse_benchmark_output(proc.stdout + "\n" + proc.stderr)
        result = {"accelerator": spec.accelerator, "threads": spec.threads, **result}
        if spec.pin:
            result["pinned_cpus"] = parse_cpus(spec.pin)
        result["machine"] = self.machine
        return result

    def close(self) -> None:
        """Remove this run's folder (and only it) from the device."""
        if self.created:
            self.created = self.ready = False
            self.pushed.clear()
            self._shell(f"removing {self.device_dir}", "rm", "-rf", self.device_dir, timeout=30)
