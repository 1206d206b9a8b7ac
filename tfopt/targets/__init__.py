"""Where a timing runs: this machine, a Linux device over ssh, or an Android phone over adb.

Local and ssh targets run the same runtime (`tfopt/runtime`, built into one zipapp): over ssh it
is copied to the device with the model and run with the device's python, so a remote number comes
from the same timing code as a local one. Android runs LiteRT's native `benchmark_model` (what app
developers use there) and its output is parsed into the same result shape.

Every failure a user can cause (unreachable host, refused key, no python or ai_edge_litert on the
device, no adb device) becomes one `BenchError` line, within a timeout.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

from tfopt.errors import InputError
from tfopt.targets.adb import AdbTarget, cpu_mask, parse_benchmark_output
from tfopt.targets.base import ACCELERATORS, RunSpec, Target, runtime_zipapp
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


@contextlib.contextmanager
def opened(target: Target) -> Iterator[Target]:
    """Use `target`, then close it. A failure to clean up is reported only when nothing else
    failed: it never hides the error that stopped the timing."""
    try:
        yield target
    except BaseException:
        with contextlib.suppress(Exception):
            target.close()
        raise
    target.close()


def make_target(
    spec: str,
    ssh_key: str | None = None,
    ssh_options: Sequence[str] = (),
    remote_python: str = "python3",
    benchmark_binary: str | None = None,
) -> Target:
    """'local', 'ssh://user@host[:port]', 'adb' or 'adb:SERIAL' -> a Target."""
    if spec in ("", "local"):
        return LocalTarget()
    if spec.startswith("ssh://"):
        return SshTarget(spec, ssh_key, ssh_options, remote_python)
    if spec == "adb" or spec.startswith("adb:"):
        return AdbTarget(spec[4:] or None, benchmark_binary)
    raise InputError(f"--target {spec}: use local, ssh://user@host[:port], adb or adb:SERIAL")
