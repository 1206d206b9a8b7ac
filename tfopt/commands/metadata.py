"""`tfopt metadata`: show a .tflite file's TFLite metadata, or write a copy with it changed."""

from __future__ import annotations

from typing import Any

import click

from tfopt.commands.options import METADATA_OPTIONS, metadata_from
from tfopt.commands.wrap import command
from tfopt.report.registry import View


@click.command("metadata")
@click.argument("model", type=click.Path())
@click.option("-o", "--output", type=click.Path(), help="Write the changed model here.")
@click.option(
    "--set",
    "sets",
    multiple=True,
    metavar="KEY=VALUE",
    help="Change one field: name, description, version, author, license, labels (a file) or "
    "normalize (MEAN,STD). Repeatable.",
)
@METADATA_OPTIONS
@click.option("--overwrite", is_flag=True, help="Replace OUTPUT if it exists.")
@command
def metadata_cmd(
    model: str, output: str | None, sets: tuple[str, ...], overwrite: bool, **options: Any
) -> tuple[View, Any]:
    """Show MODEL's TFLite metadata (name, version, normalization, labels, packed files), or
    write a copy with fields changed: the metadata Android Studio's ML Model Binding, the TFLite
    Task Library and MediaPipe Tasks read, so an app needs no hand-written pre/post-processing.

    \b
      tfopt metadata m.tflite
      tfopt metadata m.tflite --labels labels.txt --normalize 0,255 --set author=me -o m2.tflite
    """
    from tfopt.metadata.edit import edit

    return View.METADATA, edit(model, metadata_from(options, sets), output, overwrite)
