"""Safe file output: check before work, write to a temporary file, rename into place."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from tfopt.errors import InputError, OutputError, first_line, option


def existing(path: str | os.PathLike[str], what: str = "file") -> Path:
    """Return `path` as a Path, or raise InputError if it does not exist."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"{what} not found: {p}")
    return p


def check_output(path: str | os.PathLike[str], overwrite: bool) -> Path:
    """Fail early, before any work, if `path` is a folder, exists, or its folder is not writable."""
    p = Path(path)
    if p.is_dir():  # even with overwrite: a file is never written over a folder
        raise OutputError(f"{p} is a folder: give a file path")
    if p.exists() and not overwrite:
        raise OutputError(f"{p} already exists (use {option('overwrite')} to replace it)")
    folder = p.parent if str(p.parent) else Path(".")
    if not folder.is_dir():
        raise OutputError(f"output folder does not exist: {folder}")
    _probe_writable(folder)
    return p


def _probe_writable(folder: Path) -> None:
    """Create and remove a file: the only test that holds for root and odd filesystems too."""
    try:
        fd, probe = tempfile.mkstemp(prefix=".tfopt-probe-", dir=folder)
    except OSError:
        raise OutputError(f"output folder is not writable: {folder}") from None
    os.close(fd)
    os.unlink(probe)


def check_output_dir(path: str | os.PathLike[str], names: list[str], overwrite: bool) -> Path:
    """Fail early if `path` holds any of `names` (without overwrite) or cannot be created."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise OutputError(f"{p} exists and is not a folder")
    if p.is_dir():
        clash = [n for n in names if (p / n).exists()]
        if clash and not overwrite:
            raise OutputError(f"{p / clash[0]} already exists (use {option('overwrite')} to replace it)")
        folders = [n for n in clash if (p / n).is_dir()]
        if folders:
            raise OutputError(f"{p / folders[0]} is a folder; tfopt replaces only files")
        _probe_writable(p)
    else:
        parent = p.parent
        while not parent.exists():
            parent = parent.parent
        _probe_writable(parent)
    return p


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it into place only if the block succeeds."""
    final = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".part", dir=final.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o644)
        os.replace(tmp_path, final)
    finally:
        tmp_path.unlink(missing_ok=True)


def write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write `text` to `path` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


@contextlib.contextmanager
def staged_dir(path: str | os.PathLike[str], names: list[str]) -> Iterator[Path]:
    """Yield an empty temporary folder beside `path`; write a run's outputs there.

    When the block succeeds, the files in `names` move into `path` together: earlier files of
    those names are replaced, and an earlier one this run did not make is removed, so one run's
    outputs never sit beside another's. When the block fails (or a move does), `path` is left as
    it was and folders made for it are removed again.
    """
    final = Path(path)
    made = []
    parent = final.parent
    while not parent.exists():
        made.append(parent)
        parent = parent.parent
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".part", dir=final.parent))
    done = False
    try:
        yield staging
        _move_together(staging, final, names)
        done = True
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        for folder in [] if done else made:  # deepest first; stop at one that is not empty
            try:
                folder.rmdir()
            except OSError:
                break


def _move_together(staging: Path, final: Path, names: list[str]) -> None:
    created = not final.exists()
    final.mkdir(exist_ok=True)
    old_dir = staging / ".replaced"
    old_dir.mkdir()
    old: list[str] = []
    placed: list[str] = []
    try:
        for name in names:
            if (final / name).exists() or (final / name).is_symlink():
                os.replace(final / name, old_dir / name)
                old.append(name)
        for name in names:
            if (staging / name).exists():
                os.replace(staging / name, final / name)
                placed.append(name)
    except OSError as exc:
        for name in placed:
            os.replace(final / name, staging / name)
        for name in old:
            os.replace(old_dir / name, final / name)
        if created:
            final.rmdir()
        raise OutputError(f"cannot move the results into {final}: {first_line(exc)}") from None
