"""A benchmark's child process and its own peak RSS (`os.wait4` from a small launcher: measured
from the parent, every child would show the parent's RSS, which Linux carries through exec)."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

RSS_WRAPPER = (
    "import os, subprocess, sys\n"
    "proc = subprocess.Popen(sys.argv[2:])\n"
    "_, status, usage = os.wait4(proc.pid, 0)\n"
    "open(sys.argv[1], 'w').write(str(usage.ru_maxrss))\n"
    "sys.exit(os.waitstatus_to_exitcode(status))\n"
)


def child(cmd: list[str]) -> tuple[str, float]:
    """Run `cmd`; its stdout and its own peak RSS in MB."""
    with tempfile.TemporaryDirectory() as tmp:
        rss = Path(tmp) / "maxrss_kb"
        proc = subprocess.run([sys.executable, "-c", RSS_WRAPPER, str(rss), *cmd],
                              capture_output=True, text=True)  # fmt: skip
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd[:5])}... exited {proc.returncode}: {proc.stderr[-2000:]}")
        return proc.stdout, int(rss.read_text()) / 1024
