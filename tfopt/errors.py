"""Typed errors: every mistake a user can make ends as one line and exit code 1."""

from __future__ import annotations

import re
from collections.abc import Callable

# A parameter named in a message: `option("seq_len")`. The library speaks of parameters, the CLI
# of flags; the marks let each reader see its own word (seq_len / --seq-len).
_MARK, _ALT = "\x1f", "\x1e"
_MARKED = re.compile(f"{_MARK}([A-Za-z_][A-Za-z0-9_]*)(?:{_ALT}([^{_MARK}]*))?{_MARK}")


def option(name: str, python: str | None = None) -> str:
    """How a message names a parameter of the library (`seq_len`): a Python caller reads the name
    (or `python`, where the call spells it otherwise: option("no_check", "check=False")), the CLI
    reads the command's flag for `name` (`--seq-len`, see `TfoptError.render`)."""
    return f"{_MARK}{name}{_ALT}{python}{_MARK}" if python else f"{_MARK}{name}{_MARK}"


def plain(text: str) -> str:
    """`text` with each marked parameter written as a Python caller spells it."""
    return _MARKED.sub(lambda m: m.group(2) or m.group(1), text)


class TfoptError(Exception):
    """Base class of user-facing errors: one line naming the problem.

    The library knows nothing of the command line: a message names parameters with `option()`,
    and `tfopt.cli` renders them as its flags (`render`), prints `Error: <line>` and exits with
    `exit_code` (1).
    """

    exit_code = 1

    def __init__(self, message: str) -> None:
        self.marked = message
        self.message = plain(message)
        super().__init__(self.message)

    def format_message(self) -> str:
        return self.message

    def render(self, flag: Callable[[str], str]) -> str:
        """The message with each marked parameter written as `flag(name)` (the CLI's spelling)."""
        return _MARKED.sub(lambda m: flag(m.group(1)), self.marked)


class InputError(TfoptError):
    """A file or folder given on the command line is missing, unreadable or of the wrong kind."""


class ModelLoadError(TfoptError):
    """A model file could not be loaded (not a model, truncated, or refused in safe mode)."""


class DataError(TfoptError):
    """Calibration or evaluation data does not fit the model (names, shape, dtype, NaN)."""


class ConversionError(TfoptError):
    """The converter cannot reach the requested precision; the message names the ops at fault."""


class ValidationError(TfoptError):
    """A converted model disagrees with its reference beyond the precision's tolerance."""


class OutputError(TfoptError):
    """An output exists (without --overwrite) or its folder cannot be written."""


class BenchError(TfoptError):
    """A timing run failed: the runtime crashed or rejected the model."""


def first_line(exc: BaseException | str, limit: int = 300) -> str:
    """The first non-blank line of an error message, at most `limit` characters.

    An exception with an empty message (`ValueError()`) gives its type name instead, so a
    one-line error never ends in nothing or raises IndexError itself.
    """
    text = str(exc)
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    if not line:
        line = exc.__class__.__name__ if isinstance(exc, BaseException) else "no message"
    return line[:limit]


def note(message: str) -> None:
    """A one-line remark for the user (an input cast, a default chosen): on stderr, never stdout.

    Goes through the `tfopt` logger, so library users can route or silence it (they read
    parameter names); the CLI prints it as `note: ...` with its flags (the record's `marked`).
    """
    import logging

    logging.getLogger("tfopt").warning(plain(message), extra={"marked": message})
