"""What every target shares: the measurement spec, the Target base, reading the runtime's JSON
answer, and the runtime itself built into one zipapp (PEP 441) that local and ssh runs execute."""

from __future__ import annotations

import atexit
import io
import json
import shutil
import signal
import subprocess
import tempfile
import zipapp
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tfopt.errors import BenchError, option

ACCELERATORS = ("cpu", "gpu", "nnapi", "openvino")
RUNTIME_DIR = Path(__file__).resolve().parents[1] / "runtime"
ZIPAPP_NAME = "runtime.pyz"
# The zipapp's entry: the package keeps its relative imports, so it is `runtime` inside the zip.
_ZIPAPP_MAIN = "import sys\n\nfrom runtime.__main__ import main\n\nsys.exit(main())\n"


@dataclass(frozen=True, kw_only=True)
class RunSpec:
    """One measurement: accelerator, threads and the runtime's budget (keywords only: most
    fields are numbers or flags a position would not name)."""

    accelerator: str
    threads: int
    warmup: int
    min_seconds: float
    runs: int | None
    xnnpack: bool
    pin: str | None
    lm: bool = False
    prompt_len: int = 16
    new_tokens: int = 32
    lookup: int = 0
    placement_only: bool = False
    cpu_options: tuple[str, ...] = ()  # KEY=VALUE, as `tfopt.runtime.cpuopts` parses them
    profile: bool = False
    profile_runs: int = 20
    # (input name, shape) for inputs with a free dimension, timed at that shape (bench --seq-len,
    # --input-shape); the runtime feeds a synthetic sample of it
    input_shapes: tuple[tuple[str, tuple[int, ...]], ...] = ()

    def runtime_args(self, data: str | None) -> list[str]:
        args = ["--threads", str(self.threads), "--warmup", str(self.warmup)]
        args += ["--min-seconds", str(self.min_seconds)]
        if self.runs is not None:
            args += ["--runs", str(self.runs)]
        if not self.xnnpack:
            args.append("--no-xnnpack")
        if data:
            args += ["--data", data]
        for name, shape in self.input_shapes:
            args += ["--input-shape", f"{name}={','.join(map(str, shape))}"]
        if self.lm:
            args += ["--lm", "--prompt-len", str(self.prompt_len)]
            args += ["--new-tokens", str(self.new_tokens)]
            if self.lookup:
                args += ["--lookup", str(self.lookup)]
        if self.accelerator != "cpu":
            args += ["--accelerator", self.accelerator]
        if self.placement_only:
            args.append("--placement-only")
        if self.pin:
            args += ["--pin", self.pin]
        for opt in self.cpu_options:
            args += ["--cpu-option", opt]
        if self.profile:
            args += ["--profile", "--profile-runs", str(self.profile_runs)]
        return args


def build_zipapp() -> bytes:
    """`tfopt/runtime` as one runnable zipapp: `python runtime.pyz MODEL.tflite [options]`."""
    with tempfile.TemporaryDirectory(prefix="tfopt-zipapp-") as tmp:
        source = Path(tmp) / "app"
        ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
        shutil.copytree(RUNTIME_DIR, source / "runtime", ignore=ignore)
        (source / "__main__.py").write_text(_ZIPAPP_MAIN)
        archive = io.BytesIO()
        zipapp.create_archive(source, archive)
    return archive.getvalue()


_built: list[Path] = []  # this process's zipapp, once built


def runtime_zipapp() -> Path:
    """The runtime zipapp on this machine, built once per process into a private folder that is
    removed at exit (and built again should that folder vanish meanwhile)."""
    if not _built or not _built[0].is_file():
        folder = Path(tempfile.mkdtemp(prefix="tfopt-runtime-"))
        atexit.register(shutil.rmtree, folder, True)
        path = folder / ZIPAPP_NAME
        path.write_bytes(build_zipapp())
        _built[:] = [path]
    return _built[0]


def runtime_doc(label: str, proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    """The runtime prints one JSON line; turn a crash or an {"error"} into one clear line."""
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    try:
        doc = json.loads(lines[-1]) if lines else {}
    except json.JSONDecodeError:
        doc = {}
    if proc.returncode < 0:
        try:
            name = signal.Signals(-proc.returncode).name
        except ValueError:
            name = f"signal {-proc.returncode}"
        raise BenchError(f"{label}: the LiteRT runtime crashed ({name}) while timing")
    if proc.returncode != 0 or "error" in doc or not doc:
        reason = doc.get("error") or (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise BenchError(f"{label}: timing failed: {reason}")
    return doc


class Target:
    """Base: a place that can time a model. `name` is what reports show."""

    name = "local"

    def measure(self, model: Path, spec: RunSpec, data: str | None, timeout: float) -> dict:
        raise NotImplementedError

    def outputs(
        self, model: Path, x: dict[str, Any], threads: int, timeout: float
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Every sample of `x` ({input name: array}) through `model` on this target: the outputs
        in real values by output name (what `tfopt compare --target` compares), and the machine
        that computed them."""
        raise BenchError(f"{option('target')} {self.name}: compare runs on local and ssh targets")

    def close(self) -> None:
        """Remove whatever was copied to the device."""
