"""A real OpenSSH server on 127.0.0.1 with throw-away keys (for tests and benchmarks/targets.py)."""

from __future__ import annotations

import contextlib
import getpass
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

SSHD = Path("/usr/sbin/sshd")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def keygen(path: Path) -> None:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True, timeout=30
    )


@dataclass
class Sshd:
    url: str
    key: Path
    known_hosts: Path
    folder: Path

    def args(self, key: Path | None = None) -> list[str]:
        """`tfopt bench` options that reach this server with a pinned host key."""
        return [
            "--target", self.url,
            "--ssh-key", str(key or self.key),
            "--ssh-option", f"UserKnownHostsFile={self.known_hosts}",
            "--ssh-option", "StrictHostKeyChecking=yes",
        ]  # fmt: skip


@contextlib.contextmanager
def local_sshd(folder: Path, root: Path | None = None) -> Iterator[Sshd]:
    """Start sshd on a free 127.0.0.1 port, accepting one fresh key for the current user.

    With `root` (a foreign userland such as the ARM64 board, `folder` inside it), the userland's
    own sshd runs chrooted there, in a private mount namespace with /proc and /dev mounted (gone
    with it); the user is root.
    """
    if root is None and not SSHD.exists():
        raise RuntimeError("openssh-server is not installed (make sshd)")
    folder.mkdir(parents=True, exist_ok=True)
    inner = folder if root is None else Path("/") / folder.relative_to(root)
    keygen(folder / "host")
    keygen(folder / "client")
    (folder / "authorized_keys").write_text((folder / "client.pub").read_text())
    port = free_port()
    (folder / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {inner / 'host'}\n"
        f"AuthorizedKeysFile {inner / 'authorized_keys'}\nPidFile {inner / 'sshd.pid'}\n"
        "StrictModes no\nUsePAM no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
        "PubkeyAuthentication yes\nPermitRootLogin prohibit-password\nLogLevel ERROR\n"
    )
    kind, key = (folder / "host.pub").read_text().split()[:2]
    (folder / "known_hosts").write_text(f"[127.0.0.1]:{port} {kind} {key}\n")
    command = [str(SSHD), "-D", "-e", "-f", str(inner / "sshd_config")]
    if root is not None:
        (root / "run/sshd").mkdir(exist_ok=True)
        # Not /sys: LiteRT's cpuinfo would then parse the host's x86 /proc/cpuinfo as ARM's and
        # crash under qemu-user; without it, it falls back to defaults.
        mounts = 'mount -t proc proc "$1/proc" && mount --rbind /dev "$1/dev" && exec chroot "$@"'
        # A pid namespace too: stopping unshare kills every process of the board's sessions
        # (--kill-child), and the namespace's mounts go with them.
        command = ["unshare", "--mount", "--propagation", "private", "--pid", "--fork",
                   "--kill-child", "--", "sh", "-c", mounts, "sh", str(root), *command]  # fmt: skip
    elif os.geteuid() == 0:
        Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege separation folder
    with open(folder / "sshd.log", "w") as log:
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=log)
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"sshd did not start: {(folder / 'sshd.log').read_text()}"
                    ) from None
                time.sleep(0.1)
        user = getpass.getuser() if root is None else "root"
        url = f"ssh://{user}@127.0.0.1:{port}"
        yield Sshd(url, folder / "client", folder / "known_hosts", folder)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
