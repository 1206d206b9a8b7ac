"""`tfopt convert`: a model in, a checked .tflite out."""

from __future__ import annotations

from typing import Any

import click

from tfopt.commands.options import (
    IMPORTS,
    INPUT_SHAPES,
    METADATA_OPTIONS,
    PRECISIONS,
    metadata_from,
)
from tfopt.commands.wrap import command, is_debug
from tfopt.report.registry import View


@click.command("convert")
@click.argument("model", type=click.Path())
@click.option("-o", "--output", type=click.Path(),
              help="The .tflite file to write (required unless --explain).")  # fmt: skip
@click.option(
    "--precision",
    type=click.Choice(PRECISIONS),
    default="float32",
    show_default=True,
    help="float32; float16 weights; dynamic (int8 weights); int8 (full integer, needs "
    "--calibration); int16x8 (int16 activations, needs --calibration).",
)
@click.option(
    "--calibration",
    type=click.Path(),
    help=".npz (arrays named after the model inputs, or x), .npy, or a folder of images.",
)
@click.option("--num-calibration", default=100, show_default=True, type=click.IntRange(min=1),
              help="Calibration samples used.")  # fmt: skip
@click.option(
    "--int8-io", is_flag=True, help="With int8: int8 inputs and outputs instead of float."
)
@click.option(
    "--seq-len", type=click.IntRange(min=1), help="Fix free (sequence) dimensions to this length."
)
@click.option(
    "--dynamic-length",
    is_flag=True,
    help="Keep free (sequence) dimensions free: the app resizes the inputs to each input's own "
    "length (resize_tensor_input), so a 20-token sentence costs 20 tokens, not --seq-len.",
)
@click.option("--overwrite", is_flag=True, help="Replace OUTPUT if it exists.")
@click.option("--unsafe", is_flag=True, help="Allow Lambda layers (runs code stored in the file).")
@click.option("--no-check", is_flag=True, help="Skip the numeric check against the source model.")
@click.option(
    "--check-data",
    type=click.Path(),
    help="Held-out data for the numeric check (default: calibration data).",
)
@click.option(
    "--lm",
    is_flag=True,
    help="A keras-hub causal LM: prefill signatures (buckets 32/128/512 up to --max-length) and a "
    "decode step whose per-layer KV cache stays in the runtime, updated in place.",
)
@click.option(
    "--max-length",
    default=128,
    show_default=True,
    type=click.IntRange(min=2),
    help="With --lm: prompt + generated tokens.",
)
@click.option(
    "--litertlm",
    is_flag=True,
    help="With --lm: write a .litertlm bundle (the model, its tokenizer, start/stop tokens, "
    "greedy sampling) that LiteRT-LM's engine loads on Android, iOS and desktop; checked by "
    "running that engine. Implied by an OUTPUT named *.litertlm.",
)
@click.option(
    "--tokenizer",
    type=click.Path(exists=True, file_okay=False),
    help="With --litertlm: the tokenizer to bundle, a keras-hub preset folder or GPT-2 "
    "vocab.json + merges.txt (default: the model's own preprocessor, else byte-level ids).",
)
@click.option(
    "--quantizer",
    type=click.Choice(["converter", "aeq"]),
    default="converter",
    show_default=True,
    help="converter: TFLiteConverter post-training quantization; aeq: the LiteRT quantizer "
    "(ai-edge-quantizer) on the float model: dynamic, int8 (a8w8), int16x8 (a16w8), w8, w4.",
)
@click.option(
    "--keep-float",
    multiple=True,
    metavar="REGEX",
    help="With --quantizer aeq: leave layers whose op output tensor name matches in float.",
)
@click.option(
    "--max-size",
    metavar="SIZE",
    help="The app's size budget (5MB, 800KB, 2MiB): a larger file is refused, and not written.",
)
@click.option(
    "--allowed-ops",
    metavar="builtin|OPS|FILE",
    help="The ops the app's runtime links: builtin (no custom or Flex ops), a comma-separated "
    "list of op names (CONV_2D,ADD,...), or a file of them (a selective build's list). A file "
    "needing others is refused, naming them.",
)
@click.option(
    "--explain",
    is_flag=True,
    help="Print the export plan (backend, mask export, int8 search, isolation, free inputs and "
    "their length, check data), each decision with its reason; convert and write nothing.",
)
@METADATA_OPTIONS
@IMPORTS
@INPUT_SHAPES
@command(working="converting")
def convert_cmd(
    no_check: bool, input_shapes: tuple[str, ...], explain: bool, **options: Any
) -> tuple[View, Any]:
    """Convert MODEL (.keras, .h5, SavedModel or keras-hub preset folder) to a .tflite file.

    The result is checked against MODEL on the calibration data (or realistic random inputs)
    with a per-precision tolerance before it is written; a failed check writes nothing. With
    --lm, a keras-hub causal LM becomes one file with prefill buckets and a decode step.
    """
    from tfopt.conversion import ConvertRequest, convert
    from tfopt.conversion import explain as plan
    from tfopt.loading import parse_input_shapes

    if not explain and not options["output"]:
        raise click.UsageError("Missing option '-o' / '--output'.")
    options.update(
        check=not no_check,
        input_shapes=parse_input_shapes(input_shapes),
        metadata=metadata_from(options),
        debug=is_debug(click.get_current_context()),
    )
    if explain:
        model, _ = options.pop("model"), options.pop("output")
        return View.PLAN, plan(model, ConvertRequest(**options))
    return View.CONVERT, convert(**options)
