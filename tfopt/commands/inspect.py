"""`tfopt inspect`: what a .tflite file holds (and, asked, what LiteRT's GPU accelerator takes)."""

from __future__ import annotations

from typing import Any

import click

from tfopt.commands.wrap import command
from tfopt.report.registry import View


@click.command("inspect")
@click.argument("model", type=click.Path())
@click.option(
    "--gpu",
    is_flag=True,
    help="Also ask LiteRT's GPU accelerator which ops it takes and which fall back to the CPU, "
    "and why (needs a Vulkan device; `make soft-gpu` gives a software one).",
)
@command
def inspect_cmd(model: str, gpu: bool) -> tuple[View, Any]:
    """Show a .tflite file's inputs, outputs, signatures, ops, dtypes and sizes (of a .litertlm
    bundle: its model's, and the bundle's sections, tokenizer and LlmMetadata).

    --gpu adds the GPU op-placement verdict (no timing; `tfopt bench --accelerator gpu` times it).
    """
    from tfopt.inspection import inspect_tflite

    if str(model).endswith(".litertlm"):
        from tfopt.lm.bundle import inspect_bundle

        if gpu:
            raise click.UsageError("--gpu inspects a .tflite; a .litertlm runs in LiteRT-LM")
        return View.INSPECT, inspect_bundle(model)
    doc = inspect_tflite(model)
    if gpu:
        from tfopt.timing import gpu_placement

        doc["gpu"] = gpu_placement(model)
    return View.INSPECT, doc
