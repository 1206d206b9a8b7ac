"""The `tfopt` command line: each command parses, calls one library function, prints the result.

Exit codes: 0 ok, 1 user error (one line on stderr; traceback only with --debug), 2 usage (an
unknown flag, or a flag's value out of range: click names the flag). With --json a command prints
exactly one JSON document on stdout (`{"error": ..., "exit_code": N}` on any failure); everything
else (progress, converter chatter) goes to stderr.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import json
import os
import sys
import traceback
from collections.abc import Callable, Iterator
from typing import Any

import click

from tfopt.core import Precision
from tfopt.errors import InputError, TfoptError, first_line
from tfopt.quiet import quiet
from tfopt.report.progress import above_bars, shown, spinner
from tfopt.report.registry import View

PRECISIONS = [p.value for p in Precision]


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
        debug = bool(ctx.obj and ctx.obj.get("debug"))
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
            raise click.ClickException(exc.render(_flag_of(ctx))) from exc
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
            raise _Reported(f"check failed: {'; '.join(doc['failures'])}")

    return wrapper


def _flag_of(ctx: click.Context) -> Callable[[str], str]:
    """How this command spells a library parameter: its option's longest flag, else --name."""
    flags = {p.name: max(p.opts, key=len) for p in ctx.command.params if isinstance(p, click.Option)}
    return lambda name: flags.get(name) or "--" + name.replace("_", "-")


def _nothing() -> contextlib.AbstractContextManager[None]:
    return contextlib.nullcontext()


def _is_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


class _Reported(click.ClickException):
    """A failure whose JSON document is already on stdout (a failed check prints its result)."""


def _json_error(exc: click.ClickException) -> None:
    """The one JSON document of a failed command under --json: what failed and the exit code."""
    if not isinstance(exc, _Reported):
        message = first_line(exc.format_message(), 1000)
        click.echo(json.dumps({"error": message, "exit_code": exc.exit_code}))


class _LazyGroup(click.Group):
    """Commands defined in `tfopt.commands.*`, imported when named (click's lazy subcommands)."""

    LAZY = {
        "bench": "tfopt.commands.bench:bench_cmd",
        "optimize": "tfopt.commands.optimize:optimize_cmd",
        "recipes": "tfopt.commands.optimize:recipes_cmd",
        "demo": "tfopt.commands.optimize:demo_cmd",
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
                _json_error(exc)
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
    if debug and "TFOPT_DEBUG" not in os.environ:
        os.environ["TFOPT_DEBUG"] = "1"  # the library then keeps native converter output too
        # for this command only: an in-process caller (CliRunner, a notebook) keeps its own
        ctx.call_on_close(lambda: os.environ.pop("TFOPT_DEBUG", None))
    _show_notes()


def _show_notes() -> None:
    """tfopt's one-line notes (an input cast, a default chosen) go to stderr as `note: ...`."""
    import logging

    class Notes(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            with above_bars():  # a spinner or bar on the line is cleared first, then redrawn
                click.echo(f"note: {record.getMessage()}", err=True)  # the current stderr

    logger = logging.getLogger("tfopt")
    if not any(type(h).__name__ == "Notes" for h in logger.handlers):
        logger.addHandler(Notes())
    logger.propagate = False  # TensorFlow's absl handler on the root logger would repeat them


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


METADATA_FLAGS = {"labels": "labels", "normalize": "normalize", "model_name": "name",
                  "description": "description", "model_version": "version", "author": "author",
                  "license": "license"}  # fmt: skip


def METADATA_OPTIONS(f: Any) -> Any:  # noqa: N802 - a decorator, named like the others
    """The TFLite metadata flags (convert and metadata)."""
    options = [
        click.option("--labels", type=click.Path(), help="Class names, one per line (UTF-8), "
                     "packed into the file for the first output; their count must match it."),
        click.option("--normalize", metavar="MEAN,STD", help="Input normalization an app applies "
                     "before feeding pixels: (x - MEAN) / STD, e.g. 127.5,127.5 or 0,255; per "
                     "channel with ':' (0.485:0.456:0.406,0.229:0.224:0.225)."),
        click.option("--model-name", help="Metadata: the model's name."),
        click.option("--description", help="Metadata: what the model does."),
        click.option("--version", "model_version", metavar="V", help="Metadata: the model's version."),
        click.option("--author", help="Metadata: who made it."),
        click.option("--license", help="Metadata: its license."),
    ]  # fmt: skip
    for option in reversed(options):
        f = option(f)
    return f


@cli.command("convert")
@click.argument("model", type=click.Path())
@click.option("-o", "--output", required=True, type=click.Path(), help="The .tflite file to write.")
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
@METADATA_OPTIONS
@IMPORTS
@INPUT_SHAPES
@command(working="converting")
def convert_cmd(no_check: bool, input_shapes: tuple[str, ...], **options: Any) -> tuple[View, Any]:
    """Convert MODEL (.keras, .h5, SavedModel or keras-hub preset folder) to a .tflite file.

    The result is checked against MODEL on the calibration data (or realistic random inputs)
    with a per-precision tolerance before it is written; a failed check writes nothing. With
    --lm, a keras-hub causal LM becomes one file with prefill buckets and a decode step.
    """
    from tfopt.conversion import convert
    from tfopt.loading import parse_input_shapes

    shapes = parse_input_shapes(input_shapes)
    meta = _metadata(options)
    return View.CONVERT, convert(check=not no_check, input_shapes=shapes, metadata=meta, **options)


def _metadata(options: dict[str, Any], sets: tuple[str, ...] = ()) -> Any:
    """Pop the metadata flags out of `options` into one `tfopt.metadata.Metadata` (or None)."""
    from tfopt.metadata import Metadata

    given = {key: options.pop(flag) for flag, key in METADATA_FLAGS.items()}
    meta = Metadata.from_sets(sets, **given)
    return meta or None


@cli.command("inspect")
@click.argument("model", type=click.Path())
@click.option(
    "--gpu",
    is_flag=True,
    help="Also ask LiteRT's GPU accelerator which ops it takes and which fall back to the CPU, "
    "and why (needs a Vulkan device; `make soft-gpu` gives a software one).",
)
@command
def inspect_cmd(model: str, gpu: bool) -> tuple[View, Any]:
    """Show a .tflite file's inputs, outputs, signatures, ops, dtypes and sizes.

    --gpu adds the GPU op-placement verdict (no timing; `tfopt bench --accelerator gpu` times it).
    """
    from tfopt.inspection import inspect_tflite

    doc = inspect_tflite(model)
    if gpu:
        from tfopt.timing import gpu_placement

        doc["gpu"] = gpu_placement(model)
    return View.INSPECT, doc


@cli.command("metadata")
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

    return View.METADATA, edit(model, _metadata(options, sets), output, overwrite)


@cli.command("compare")
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
    from tfopt.validate import GateError, compare_embeddings, compare_files

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
    try:
        return View.COMPARE, compare_files(**options)
    except GateError as exc:
        flag = next(f for f, key in gates.items() if key == exc.gate)
        raise InputError(f"{flag}: {exc}") from None


@cli.command("generate")
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
@click.option("--threads", default=1, show_default=True, type=Threads(many=False))
@command(streams=True)
def generate_cmd(stream: bool, **options: Any) -> tuple[View, Any]:
    """Generate text with an LM exported by `convert --lm`, through the TFLite signatures.

    Text streams to stdout as tokens are produced (greedy, or seeded top-k with --top-k); the
    speed line (prefill, time to first token, decode tokens/s) follows. --json prints one
    document at the end instead.
    """
    from tfopt.generation import generate

    def show(piece: str) -> None:
        click.echo(piece, nl=False)
        sys.stdout.flush()

    return View.GENERATE, generate(**options, on_text=show if stream else None)


def main() -> None:
    cli(prog_name="tfopt")
