"""This machine: a fresh child process per measurement, running the runtime zipapp."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from tfopt.errors import BenchError, InputError, option
from tfopt.targets.base import RunSpec, Target, runtime_doc, runtime_zipapp
from tfopt.targets.softgpu import gpu_env


class LocalTarget(Target):
    """A fresh child process of this machine's python per measurement."""

    def measure(self, model: Path, spec: RunSpec, data: str | None, timeout: float) -> dict:
        if spec.accelerator == "nnapi":
            raise InputError(f"{option('accelerator')} nnapi exists on Android only ({option('target')} adb)")
        cmd = [sys.executable, str(runtime_zipapp()), str(model), *spec.runtime_args(data)]
        env = gpu_env() if spec.accelerator == "gpu" else None
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
        except subprocess.TimeoutExpired:
            raise BenchError(f"{model}: timing run exceeded {timeout:.0f} s") from None
        return runtime_doc(str(model), proc)

    def outputs(
        self, model: Path, x: dict[str, Any], threads: int, timeout: float
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        from tfopt.runtime.feeding import make_interpreter, run_samples
        from tfopt.runtime.stats import machine_info

        return run_samples(make_interpreter(str(model), threads), x), machine_info()
