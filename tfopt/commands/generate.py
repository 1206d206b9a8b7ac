"""`tfopt generate`: text from an LM exported by `convert --lm`, streamed as it is produced."""

from __future__ import annotations

import sys
from typing import Any

import click

from tfopt.commands.options import LOOKUP, Threads
from tfopt.commands.wrap import command
from tfopt.report.registry import View


@click.command("generate")
@click.argument("model", type=click.Path())
@click.option(
    "--prompt", help="Text: tokenized by --tokenizer, or as UTF-8 bytes (byte-level) without it."
)
@click.option("--token-ids", help="Comma-separated token ids instead of --prompt (any tokenizer).")
@click.option(
    "--tokenizer",
    type=click.Path(),
    help="A keras-hub preset folder's tokenizer (tokenizer.json + assets, any family), or a folder "
    "with GPT-2 BPE vocab.json and merges.txt. Default: byte-level (token id = UTF-8 byte).",
)
@click.option("--max-new-tokens", default=32, show_default=True, type=click.IntRange(min=1))
@click.option(
    "--top-k", type=click.IntRange(min=1), help="Sample from the top K tokens (default: greedy)."
)
@click.option("--seed", default=0, show_default=True, help="Seed for --top-k sampling.")
@LOOKUP
@click.option("--threads", default=1, show_default=True, type=Threads(many=False))
@command(streams=True)
def generate_cmd(stream: bool, **options: Any) -> tuple[View, Any]:
    """Generate text with an LM exported by `convert --lm`, through the TFLite signatures.

    Text streams to stdout as tokens are produced (greedy, or seeded top-k with --top-k); the
    speed line (prefill, time to first token, decode tokens/s) follows. --json prints one
    document at the end instead.
    """
    from tfopt.lm.generation import generate

    def show(piece: str) -> None:
        click.echo(piece, nl=False)
        sys.stdout.flush()

    return View.GENERATE, generate(**options, on_text=show if stream else None)
