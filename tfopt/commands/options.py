"""Options more than one command takes, defined once: --import, --input-shape, --threads,
--min-seconds and the TFLite metadata flags."""

from __future__ import annotations

from typing import Any

import click

from tfopt.core import Precision

PRECISIONS = [p.value for p in Precision]

IMPORTS = click.option(
    "--import",
    "imports",
    multiple=True,
    metavar="MODULE_OR_FILE",
    help="Import a module or .py file first, so the custom layers and models it defines "
    "(e.g. registered with keras.saving.register_keras_serializable) load. It runs that code: "
    "needs --unsafe. Repeatable.",
)
INPUT_SHAPES = click.option(
    "--input-shape",
    "input_shapes",
    multiple=True,
    metavar="[NAME=]DIMS",
    help="Input shape for a model that does not record one (a subclassed model never built), "
    "e.g. 1,224,224,3, or NAME=1,128 per input; ? leaves a size free. Repeatable.",
)


class Threads(click.ParamType):
    """--threads: '1,2' -> (1, 2) (or one int when not `many`), each in 1..MAX_THREADS, checked
    while click parses, so a bad count is a usage error (exit 2) before any work."""

    def __init__(self, many: bool = True) -> None:
        self.many = many
        self.name = "N[,N...]" if many else "N"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        from tfopt.timing import MAX_THREADS

        if isinstance(value, (int, tuple)):
            counts = value if isinstance(value, tuple) else (value,)
        else:
            try:
                counts = tuple(int(t) for t in str(value).split(","))
            except ValueError:
                self.fail(f"give comma-separated counts, e.g. 1,2 (got '{value}')", param, ctx)
        if not self.many and len(counts) != 1:
            self.fail(f"give one thread count (got '{value}')", param, ctx)
        bad = [t for t in counts if not 1 <= t <= MAX_THREADS]
        if bad:
            self.fail(f"{bad[0]} is not a thread count in 1..{MAX_THREADS}", param, ctx)
        return counts if self.many else counts[0]


THREADS = Threads()
# The timing options `bench` and `optimize` share.
TIMED_THREADS = click.option(
    "--threads", default="1,2", show_default=True, type=THREADS,
    help="Comma-separated thread counts."
)  # fmt: skip
MIN_SECONDS = click.option(
    "--min-seconds",
    default=1.0,
    show_default=True,
    type=click.FloatRange(min=0, min_open=True),
    help="Time each setting at least this long.",
)


LOOKUP = click.option(
    "--lookup",
    default=0,
    show_default=True,
    type=click.IntRange(min=0, max=7),
    help="Prompt-lookup decoding (greedy, LMs): draft up to this many tokens from earlier text "
    "and check them in one verify step; the output is the same, faster where it repeats itself "
    "or its prompt.",
)


def METADATA_OPTIONS(f: Any) -> Any:  # noqa: N802 - a decorator, named like the others
    """The TFLite metadata flags (convert and metadata): one per field of `Metadata`, named by
    its key (--model-name for `name`)."""
    from dataclasses import fields

    from tfopt.metadata import Metadata

    for field in reversed(fields(Metadata)):
        key, info = field.metadata.get("key", field.name), field.metadata
        option = click.option(
            "--" + key.replace("_", "-"),
            key,
            type=click.Path() if info.get("kind") == "path" else None,
            metavar=info.get("metavar"),
            help=info["help"],
        )
        f = option(f)
    return f


def metadata_from(options: dict[str, Any], sets: tuple[str, ...] = ()) -> Any:
    """Pop the metadata flags out of `options` into one `tfopt.metadata.Metadata` (or None)."""
    from tfopt.metadata import OPTION_KEYS, Metadata

    given = {name: options.pop(key) for key, name in OPTION_KEYS.items()}
    meta = Metadata.from_sets(sets, **given)
    return meta or None
