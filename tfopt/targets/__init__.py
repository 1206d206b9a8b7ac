"""Where a timing runs: this machine, a Linux device over ssh, or an Android phone over adb.

Local and ssh targets run the same runtime (`tfopt/runtime`, built into one zipapp): over ssh it
is copied to the device with the model and run with the device's python, so a remote number comes
from the same timing code as a local one. Android runs LiteRT's native `benchmark_model` (what app
developers use there) and its output is parsed into the same result shape.

Every failure a user can cause (unreachable host, refused key, no python or ai_edge_litert on the
device, no adb device) becomes one `BenchError` line, within a timeout.
"""

from __future__ import annotations

from tfopt.targets.adb import AdbTarget, cpu_mask, parse_benchmark_output
from tfopt.targets.base import ACCELERATORS, RunSpec, Target, runtime_zipapp
from tfopt.targets.choose import make_target, opened
from tfopt.targets.local import LocalTarget
from tfopt.targets.softgpu import SOFT_GPU_ENV, gpu_env, real_gpu_icds, soft_gpu_dir, soft_gpu_home
from tfopt.targets.ssh import SshTarget

__all__ = [
    "ACCELERATORS",
    "SOFT_GPU_ENV",
    "AdbTarget",
    "LocalTarget",
    "RunSpec",
    "SshTarget",
    "Target",
    "cpu_mask",
    "gpu_env",
    "make_target",
    "opened",
    "parse_benchmark_output",
    "real_gpu_icds",
    "runtime_zipapp",
    "soft_gpu_dir",
    "soft_gpu_home",
]
