"""The wrapper every command body runs in: JSON mode, quiet stdout, errors as one line.

Exit codes: 0 ok, 1 user error (one line on stderr; traceback only with --debug), 2 usage (an
unknown flag, or a flag's value out of range: click names the flag). With --json a command prints
exactly one JSON document on stdout (`{"error": ..., "exit_code": N}` on any failure); everything
else (progress, converter chatter) goes to stderr.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import sys
import traceback
from collections.abc import Callable, Iterator
from typing import Any

import click

from tfopt.errors import TfoptError, first_line
from tfopt.quiet import quiet
from tfopt.report.progress import shown, spinner
from tfopt.report.registry import View


@contextlib.contextmanager
def _stdout_to_stderr() -> Iterator[None]:
    """Send fd 1 to stderr while work runs, so native libraries cannot pollute JSON output."""
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def is_debug(ctx: click.Context) -> bool:
    """Whether the group's --debug was given (full tracebacks, native converter output)."""
    return bool(ctx.obj and ctx.obj.get("debug"))


def command(
    fn: Callable[..., tuple[View, Any]] | None = None,
    *,
    streams: bool = False,
    working: str | None = None,
) -> Any:
    """Wrap a command body: JSON mode, quiet stdout, errors as one line and exit code 1.

    The body returns (view, result); the report stage renders it as text, or JSON with --json.
    A body that `streams` gets `stream=True` in text mode and may write to stdout as it works
    (fd 1 stays stdout then; with --json it is kept for the one document, as everywhere).
    Progress (bars, and a `working` spinner such as 'converting' over the whole body) is drawn
    on stderr only when it is a terminal and the command is not under --json.
    """
    if fn is None:
        return functools.partial(command, streams=streams, working=working)

    @click.option("--json", "as_json", is_flag=True, help="Print one JSON document on stdout.")
    @click.pass_context
    @functools.wraps(fn)
    def wrapper(ctx: click.Context, as_json: bool, **kwargs: Any) -> None:
        debug = is_debug(ctx)
        try:
            live = streams and not as_json
            if streams:
                kwargs["stream"] = live
            terminal = not as_json and _is_terminal(sys.stderr)  # before quiet pipes fd 2
            with shown(terminal), quiet(debug), _stdout_to_stderr() if not live else _nothing():
                with spinner(working) if working else _nothing():
                    view, result = fn(**kwargs)
        except TfoptError as exc:
            if debug:
                traceback.print_exc()
            raise click.ClickException(exc.render(flag_of(ctx))) from exc
        except (click.exceptions.Exit, click.ClickException):
            raise  # a usage error found in the body: exit 2, flag named
        except Exception as exc:  # noqa: BLE001 - any other failure still ends in one line
            if debug:
                raise
            raise click.ClickException(
                f"{type(exc).__name__}: {first_line(exc)} (rerun with --debug)"
            ) from exc
        from tfopt import report

        doc = report.document(result)
        click.echo(report.render(view, doc, report.Format.JSON if as_json else report.Format.TEXT))
        if isinstance(doc, dict) and doc.get("passed") is False:
            raise Reported(f"check failed: {'; '.join(doc['failures'])}")

    return wrapper


def flag_of(ctx: click.Context) -> Callable[[str], str]:
    """How this command spells a library parameter: its option's longest flag (the library's
    plural `accelerators` is the command's `--accelerator` where only that exists), else --name."""
    flags = {p.name: max(p.opts, key=len) for p in ctx.command.params if isinstance(p, click.Option)}

    def flag(name: str) -> str:
        for alias in (name, name.removesuffix("s"), name + "s"):
            if alias in flags:
                return flags[alias]
        return "--" + name.replace("_", "-")

    return flag


def _nothing() -> contextlib.AbstractContextManager[None]:
    return contextlib.nullcontext()


def _is_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


class Reported(click.ClickException):
    """A failure whose JSON document is already on stdout (a failed check prints its result)."""


def json_error(exc: click.ClickException) -> None:
    """The one JSON document of a failed command under --json: what failed and the exit code."""
    if not isinstance(exc, Reported):
        message = first_line(exc.format_message(), 1000)
        click.echo(json.dumps({"error": message, "exit_code": exc.exit_code}))
