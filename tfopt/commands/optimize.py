"""`tfopt optimize`, `tfopt recipes` and `tfopt demo`: the whole pipeline on a recipe or the demo."""

from __future__ import annotations

from typing import Any

import click

from tfopt.commands.options import IMPORTS, MIN_SECONDS, TIMED_THREADS
from tfopt.commands.wrap import command
from tfopt.report.registry import View


@click.command("optimize")
@click.argument("model", type=click.Path())
@click.option(
    "--recipe",
    required=True,
    help="A shipped recipe name (see `tfopt recipes`) or a .yaml/.json file.",
)
@click.option(
    "--data", required=True, help=".npz with x_train, y_train, x_val, y_val, or module:function."
)
@click.option("-o", "--out", "out_dir", required=True, type=click.Path(), help="Output folder.")
@click.option(
    "--epochs",
    default=2,
    show_default=True,
    type=click.IntRange(min=0),
    help="Fine-tune epochs per stage (a stage's own 'epochs' wins).",
)
@click.option("--batch-size", default=64, show_default=True, type=click.IntRange(min=1))
@click.option("--overwrite", is_flag=True, help="Replace files from an earlier run in OUT.")
@click.option("--unsafe", is_flag=True, help="Allow Lambda layers (runs code stored in the file).")
@click.option(
    "--no-check", is_flag=True, help="Keep the .tflite even if it misses its numeric tolerance."
)
@IMPORTS
@command
def optimize_cmd(no_check: bool, imports: tuple[str, ...], **options: Any) -> tuple[View, Any]:
    """Optimize MODEL with a recipe (prune, 2:4, cluster, QAT, low-rank, distill), fine-tuned on DATA.

    Writes OUT/model.tflite, OUT/optimized.keras, OUT/report.json and OUT/report.md: per stage the
    sparsity, unique weights, parameters and validation accuracy; for the .tflite its size, gzip
    size, accuracy through the interpreter and CPU p50 latency.
    """
    from tfopt.optimization import OptimizeOptions, optimize
    from tfopt.userimports import import_user_code

    import_user_code(imports, options["unsafe"])  # registers custom classes before MODEL loads
    where = [options.pop(k) for k in ("model", "recipe", "data", "out_dir")]
    return View.OPTIMIZE, optimize(*where, OptimizeOptions(check=not no_check, **options))


@click.command("recipes")
@click.argument("name", required=False)
@command
def recipes_cmd(name: str | None) -> tuple[View, Any]:
    """List the shipped recipes, or show one as YAML (copy it to make your own)."""
    from tfopt.recipes import load_recipe, shipped

    if name:
        return View.RECIPE, load_recipe(name)
    return View.RECIPES, {n: load_recipe(n).description for n in shipped()}


@click.command("demo")
@click.option(
    "-o",
    "--out",
    "out_dir",
    default="demo-out",
    show_default=True,
    type=click.Path(),
    help="Output folder.",
)
@TIMED_THREADS
@MIN_SECONDS
@click.option("--overwrite", is_flag=True, help="Replace files from an earlier demo run.")
@command
def demo_cmd(threads: tuple[int, ...], **options: Any) -> tuple[View, Any]:
    """Train a CNN on real digits, convert to every precision, check, time, report."""
    from tfopt.demo import run_demo

    return View.DEMO, run_demo(threads=threads, **options)
