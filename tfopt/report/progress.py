"""Progress on stderr while a command works: a bar over steps (`progress`) or, for one long
library call (a conversion, a compare), a spinner with the elapsed time (`spinner`).

Both draw only inside `shown(True)`, which the CLI enters when stderr is a terminal and the
command is not under --json; everywhere else (pipes, CI logs, JSON mode, the library called from
Python) they draw nothing. The CLI decides before it filters native log lines off fd 2, after which
stderr is a pipe and could not tell.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

_SHOWN = {"on": False}
SPINNER_DELAY_S = 1.0  # a call shorter than this shows nothing


@contextlib.contextmanager
def shown(on: bool) -> Iterator[None]:
    """Let `progress` and `spinner` draw (on) or not, for the length of the block."""
    before = _SHOWN["on"]
    _SHOWN["on"] = on
    try:
        yield
    finally:
        _SHOWN["on"] = before


@contextlib.contextmanager
def progress(desc: str, unit: str) -> Iterator[Callable[[int, int], None]]:
    """An `on_progress(done, total)` callback drawing a bar on stderr, only for more than one
    step and only where progress is `shown`."""
    bar: Any = None

    def update(done: int, total: int) -> None:
        nonlocal bar
        if total < 2 or not _SHOWN["on"]:
            return
        if bar is None:
            from tqdm import tqdm

            bar = tqdm(total=total, desc=desc, unit=unit, leave=False)
        bar.update(done - bar.n)

    try:
        yield update
    finally:
        if bar is not None:
            bar.close()


@contextlib.contextmanager
def spinner(desc: str) -> Iterator[None]:
    """'converting | 12s' on stderr while the block runs, from SPINNER_DELAY_S on, where shown;
    the line is cleared when the block ends."""
    if not _SHOWN["on"]:
        yield
        return
    from tqdm import tqdm

    stop = threading.Event()
    started = time.monotonic()

    def tick() -> None:
        if stop.wait(SPINNER_DELAY_S):
            return
        bar = tqdm(desc=desc, total=None, leave=False, bar_format="{desc}")
        for n in itertools.count():
            elapsed = time.monotonic() - started
            bar.set_description_str(f"{desc} {_FRAMES[n % len(_FRAMES)]} {elapsed:.0f}s")
            if stop.wait(0.25):
                break
        bar.close()  # leave=False: the line is cleared

    thread = threading.Thread(target=tick, name="tfopt-spinner", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


_FRAMES = "|/-\\"


def above_bars() -> contextlib.AbstractContextManager[Any]:
    """Wrap a write to stderr (a `note:` line) so an active bar or spinner is cleared first and
    redrawn after it, instead of the note landing at the end of the bar's line."""
    import sys

    tqdm_module = sys.modules.get("tqdm")
    if tqdm_module is None or not _SHOWN["on"]:
        return contextlib.nullcontext()
    result: contextlib.AbstractContextManager[Any] = tqdm_module.tqdm.external_write_mode(
        file=sys.stderr
    )
    return result
