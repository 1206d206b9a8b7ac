"""`tfopt compare`: a .tflite against its reference on the user's data, with optional gates."""

from __future__ import annotations

from typing import Any

import click

from tfopt.commands.options import IMPORTS
from tfopt.commands.wrap import command
from tfopt.errors import InputError
from tfopt.report.registry import View


@click.command("compare")
@click.argument("reference", type=click.Path())
@click.argument("candidate", type=click.Path())
@click.option(
    "--data",
    required=True,
    type=click.Path(),
    help=".npz (inputs, optional y), .npy or image folder.",
)
@click.option(
    "--max-samples",
    default=1000,
    show_default=True,
    type=click.IntRange(min=1),
    help="Compare at most this many samples.",
)
@click.option(
    "--embedding",
    is_flag=True,
    help="Compare sentence embeddings (encoders): mean/worst cosine, nearest-neighbour agreement.",
)
@click.option(
    "--pooling",
    type=click.Choice(["mean", "cls", "pooled"]),
    default="mean",
    show_default=True,
    help="With --embedding: mean over unmasked tokens (sentence-transformers), first token, or pooled_output.",
)
@click.option(
    "--min-sqnr",
    "min_sqnr_db",
    type=float,
    help="Fail (exit 1) if any output's SQNR (dB) is below.",
)
@click.option("--min-cosine", type=float, help="Fail (exit 1) if any output's cosine is below.")
@click.option(
    "--min-top1",
    type=float,
    help="Fail (exit 1) if any class-score output's top-1 agreement (0-1) is below; refused "
    "(exit 1) when no output gives class scores.",
)
@click.option("--unsafe", is_flag=True, help="Allow Lambda layers in a Keras REFERENCE.")
@click.option(
    "--target",
    help="Run CANDIDATE there instead of here: ssh://user@host[:port] (an ARM board's kernels; "
    "the reference still runs here).",
)
@click.option("--ssh-key", type=click.Path(), help="ssh target: identity file.")
@click.option(
    "--ssh-option", "ssh_options", multiple=True, help="ssh target: extra -o KEY=VALUE."
)
@click.option(
    "--remote-python",
    default="python3",
    show_default=True,
    help="ssh target: python with numpy and ai-edge-litert on the device.",
)
@IMPORTS
@command(working="comparing")
def compare_cmd(embedding: bool, pooling: str, **options: Any) -> tuple[View, Any]:
    """Compare CANDIDATE (.tflite) with REFERENCE (Keras model, SavedModel or .tflite) on DATA.

    Reports per output max/mean absolute error, SQNR and cosine; for each class-score output the
    top-1 agreement, and accuracy of both when DATA holds labels `y`; for quantized inputs, the
    share of DATA outside their range (a warning when data is scaled unlike the calibration
    data). Every gate holds for every output it applies to. With --target, CANDIDATE runs on
    that device: its kernels (ARM's, not x86's) produce the outputs compared.
    """
    from tfopt.validate import GateError, Gates, compare_embeddings, compare_files

    where = [options.pop(k) for k in ("target", "ssh_key", "ssh_options", "remote_python")]
    if not where[0] and (where[1] or where[2] or where[3] != "python3"):
        raise InputError("--ssh-key, --ssh-option and --remote-python need --target ssh://...")
    if where[0]:
        if embedding:
            raise InputError("--target applies to plain compare, not --embedding")
        from tfopt.targets import make_target

        options["target"] = make_target(where[0], where[1], where[2], where[3])
    gates = {"--min-sqnr": "min_sqnr_db", "--min-cosine": "min_cosine", "--min-top1": "min_top1"}
    if embedding:
        asked = [flag for flag, key in gates.items() if options.pop(key) is not None]
        if asked:  # a gate is applied or refused, never skipped
            verb = "apply" if len(asked) > 1 else "applies"
            raise InputError(f"{', '.join(asked)} {verb} to plain compare, not --embedding "
                             "(it reports embedding cosine and nearest-neighbour agreement)")  # fmt: skip
        return View.EMBEDDING, compare_embeddings(pooling=pooling, **options)
    options["gates"] = Gates(*(options.pop(key) for key in gates.values()))
    try:
        return View.COMPARE, compare_files(**options)
    except GateError as exc:
        flag = next(f for f, key in gates.items() if key == exc.gate)
        raise InputError(f"{flag}: {exc}") from None
