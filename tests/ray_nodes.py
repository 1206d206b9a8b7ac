"""A real Ray cluster of one-CPU nodes on 127.0.0.1 (for tests/test_tune.py and benchmarks/tune.py).

Stopped by killing the process groups of its own nodes only: `ray stop --force` kills every Ray
process on the machine, and with it the local instance of a search that runs beside it (pytest -n 2
ran `tests/test_channels.py`'s tune in the other worker: "Raylet is terminated").
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from tests.sshd import free_port

RAY = Path(sys.executable).parent / "ray"
ENV = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}


def _ray(*args: str) -> None:
    done = subprocess.run([str(RAY), *args], env=ENV, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]


def _groups(folder: Path) -> set[int]:
    """Process groups of the processes started with `folder` in their command lines (`ray start`
    puts each node's gcs_server, raylet, monitors and agents in one group of their own)."""
    groups = set()
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if str(folder).encode() in (proc / "cmdline").read_bytes():
                groups.add(os.getpgid(int(proc.name)))
        except (OSError, ProcessLookupError):
            continue
    return groups - {os.getpgrp()}


def stop(folder: Path, grace: float = 10.0) -> None:
    """SIGTERM to the nodes started under `folder`, SIGKILL to what is left after `grace` s."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        groups = _groups(folder)
        for group in groups:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(group, sig)
        deadline = time.monotonic() + grace
        while groups and _groups(folder) and time.monotonic() < deadline:
            time.sleep(0.2)


@contextlib.contextmanager
def local_cluster(nodes: int = 2, object_store: int = 80_000_000) -> Iterator[str]:
    """`ray start --head`, then `nodes - 1` more joining it, each with one CPU and its own temp dir
    (short: Ray's socket paths must fit in 107 bytes); yields the address HOST:PORT."""
    port = free_port()
    address = f"127.0.0.1:{port}"
    common = ["--num-cpus", "1", "--object-store-memory", str(object_store),
              "--disable-usage-stats", "--node-ip-address", "127.0.0.1"]  # fmt: skip
    folder = Path(tempfile.mkdtemp(prefix="ray", dir="/tmp"))
    try:
        _ray("start", "--head", "--port", str(port), "--include-dashboard", "false",
             "--temp-dir", str(folder / "n0"), *common)  # fmt: skip
        for n in range(1, nodes):
            _ray("start", "--address", address, "--temp-dir", str(folder / f"n{n}"), *common)
        yield address
    finally:
        stop(folder)
        shutil.rmtree(folder, ignore_errors=True)
