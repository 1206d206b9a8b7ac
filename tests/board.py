"""The ARM64 board built by `make arm64-board` (tests/arm64_board.sh): where it is, whether it
can run, and its sshd (tests/sshd.py, chrooted into the board)."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from tests.sshd import Sshd, local_sshd

BOARD = Path(
    os.environ.get("TFOPT_ARM64_BOARD")
    or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "tfopt" / "arm64-board"
)
BINFMT = Path("/proc/sys/fs/binfmt_misc/qemu-aarch64")


def problem() -> str | None:
    """One line saying why the board cannot run here, or None."""
    failed = BOARD.with_name(BOARD.name + ".failed")
    if failed.is_file():
        return f"ARM64 board: {failed.read_text().strip()}"
    if not (BOARD / ".installed").is_file():
        return f"ARM64 board not built at {BOARD} (make arm64-board)"
    if not BINFMT.is_file() or "enabled" not in BINFMT.read_text():
        return "ARM64 board: binfmt_misc has no enabled qemu-aarch64 entry (make arm64-board)"
    if os.geteuid() != 0:
        return "ARM64 board: starting its sshd needs root (chroot, mount namespace)"
    return None


@contextlib.contextmanager
def board_sshd() -> Iterator[Sshd]:
    """The board's own (arm64) sshd on a free 127.0.0.1 port, with throw-away keys."""
    root = BOARD / "root"
    folder = Path(tempfile.mkdtemp(prefix="tfopt-board-", dir=root / "tmp"))
    try:
        with local_sshd(folder, root=root) as server:
            yield server
    finally:
        shutil.rmtree(folder, ignore_errors=True)
