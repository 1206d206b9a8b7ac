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
    # A session of its own: the node's daemons inherit its process group, which `stop` kills.
    done = subprocess.run([str(RAY), *args], env=ENV, capture_output=True, text=True, timeout=120,
                          start_new_session=True)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]


def _processes() -> Iterator[tuple[int, int, str, bytes]]:
    """(pid, process group, state, command line) of every process."""
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            fields = (proc / "stat").read_text().rpartition(")")[2].split()
            yield int(proc.name), int(fields[2]), fields[0], (proc / "cmdline").read_bytes()
        except (OSError, IndexError, ValueError):
            continue


def _live(groups: set[int]) -> bool:
    return any(group in groups and state != "Z" for _, group, state, _ in _processes())


def stop(folder: Path, grace: float = 10.0) -> None:
    """SIGTERM to the process groups of the nodes started under `folder` (found by the folder in
    their gcs_server's, raylet's and monitors' command lines; their agents and client server,
    renamed, share the group), SIGKILL to what is left after `grace` s."""
    groups = {g for _, g, _, cmd in _processes() if str(folder).encode() in cmd} - {os.getpgrp()}
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for group in groups:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(group, sig)
        deadline = time.monotonic() + grace
        while _live(groups) and time.monotonic() < deadline:
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
