"""The `tfopt` command line: the group, --debug and the command registry.

Each command lives in `tfopt.commands.<name>` and is imported only when named, so `tfopt --help`
loads none of them. Exit codes and JSON mode: see `tfopt.commands.wrap`.
"""

from __future__ import annotations

import importlib
from typing import Any

import click


class _LazyGroup(click.Group):
    """Commands defined in `tfopt.commands.*`, imported when named (click's lazy subcommands)."""

    LAZY = {
        "bench": "tfopt.commands.bench:bench_cmd",
        "compare": "tfopt.commands.compare:compare_cmd",
        "convert": "tfopt.commands.convert:convert_cmd",
        "demo": "tfopt.commands.optimize:demo_cmd",
        "generate": "tfopt.commands.generate:generate_cmd",
        "inspect": "tfopt.commands.inspect:inspect_cmd",
        "metadata": "tfopt.commands.metadata:metadata_cmd",
        "optimize": "tfopt.commands.optimize:optimize_cmd",
        "recipes": "tfopt.commands.optimize:recipes_cmd",
        "tune": "tfopt.commands.tune:tune_cmd",
    }

    def invoke(self, ctx: click.Context) -> Any:
        """Run the subcommand; under --json any failure, a usage error (exit 2, raised while
        click parses the subcommand's flags) or a library error (exit 1), is one JSON document."""
        protected = getattr(ctx, "_protected_args", None)  # click >= 8.2; before, public
        protected = ctx.protected_args if protected is None else protected
        as_json = "--json" in [*protected, *ctx.args]  # the subcommand's arguments
        try:
            return super().invoke(ctx)
        except click.ClickException as exc:
            if as_json:
                from tfopt.commands.wrap import json_error

                json_error(exc)
            raise

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *self.LAZY])

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in self.LAZY:
            return super().get_command(ctx, name)
        module, attr = self.LAZY[name].split(":")
        cmd: click.Command = getattr(importlib.import_module(module), attr)
        return cmd


@click.group(
    cls=_LazyGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.option("--debug", is_flag=True, help="Show full tracebacks on errors.")
@click.version_option(package_name="tfopt")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """tfopt: a Keras model in, a verified and timed .tflite out.

    \b
    Typical flow:
      tfopt convert model.keras -o model.tflite --precision int8 --calibration calib.npz
      tfopt compare model.keras model.tflite --data test.npz
      tfopt inspect model.tflite
      tfopt bench model.tflite --threads 1,2
    Run `tfopt demo` to see all of it on a real digits CNN.
    """
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug
    _show_notes()


def _show_notes() -> None:
    """tfopt's one-line notes (an input cast, a default chosen) go to stderr as `note: ...`."""
    import logging

    from tfopt.commands.wrap import flag_of
    from tfopt.errors import TfoptError
    from tfopt.report.progress import above_bars

    class Notes(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            line, ctx = record.getMessage(), click.get_current_context(silent=True)
            if ctx is not None and hasattr(record, "marked"):  # names parameters: our flags
                line = TfoptError(record.marked).render(flag_of(ctx))
            with above_bars():  # a spinner or bar on the line is cleared first, then redrawn
                click.echo(f"note: {line}", err=True)  # the current stderr

    logger = logging.getLogger("tfopt")
    if not any(type(h).__name__ == "Notes" for h in logger.handlers):
        logger.addHandler(Notes())
    logger.propagate = False  # TensorFlow's absl handler on the root logger would repeat them


def main() -> None:
    cli(prog_name="tfopt")
