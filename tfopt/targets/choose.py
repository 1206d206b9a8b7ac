"""Which target a spec names ('local', 'ssh://user@host[:port]', 'adb[:SERIAL]'), and using one."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

from tfopt.errors import InputError, option
from tfopt.targets.adb import AdbTarget
from tfopt.targets.base import Target
from tfopt.targets.local import LocalTarget
from tfopt.targets.ssh import SshTarget


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
    raise InputError(f"{option('target')} {spec}: use local, ssh://user@host[:port], adb or adb:SERIAL")
