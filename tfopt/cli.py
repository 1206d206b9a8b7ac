"""The `tfopt` command line: each command parses, calls one library function, prints the result.

Exit codes: 0 ok, 1 user error (one line on stderr; traceback only with --debug), 2 usage.
With --json a command prints exactly one JSON document on stdout (an {"error": ...} document on
failure); everything else (progress, converter chatter) goes to stderr.
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

PRECISIONS = ["float32", "float16", "dynamic", "int8", "int16x8", "w8", "w4", "w4b32"]


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


def _emit(as_json: bool, doc: Any, human: Callable[[Any], str]) -> None:
    if as_json:
        click.echo(json.dumps(doc, indent=2, default=str))
    else:
        click.echo(human(doc))


def command(fn: Callable[..., tuple[Any, Callable[[Any], str]]]) -> Callable[..., None]:
    """Wrap a command body: JSON mode, quiet stdout, errors as one line and exit code 1."""

    @click.option("--json", "as_json", is_flag=True, help="Print one JSON document on stdout.")
    @click.pass_context
    @functools.wraps(fn)
    def wrapper(ctx: click.Context, as_json: bool, **kwargs: Any) -> None:
        debug = bool(ctx.obj and ctx.obj.get("debug"))
        try:
            with quiet(debug), _stdout_to_stderr():
                doc, human = fn(**kwargs)
        except TfoptError as exc:
            if debug:
                traceback.print_exc()
            if as_json:
                click.echo(json.dumps({"error": exc.format_message()}))
            raise
        except click.exceptions.Exit:
            raise
        except Exception as exc:  # noqa: BLE001 - any other failure still ends in one line
            if debug:
                raise
            message = first_line(exc)
            if as_json:
                click.echo(json.dumps({"error": f"{type(exc).__name__}: {message}"}))
            raise TfoptError(f"{type(exc).__name__}: {message} (rerun with --debug)") from exc
        _emit(as_json, doc, human)
        if isinstance(doc, dict) and doc.get("passed") is False:
            raise TfoptError(f"check failed: {'; '.join(doc['failures'])}")

    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
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
    if debug:
        os.environ["TFOPT_DEBUG"] = "1"  # the library then keeps native converter output too
    _show_notes()


def _show_notes() -> None:
    """tfopt's one-line notes (an input cast, a default chosen) go to stderr as `note: ...`."""
    import logging

    class Notes(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            click.echo(f"note: {record.getMessage()}", err=True)  # the current stderr

    logger = logging.getLogger("tfopt")
    if not any(type(h).__name__ == "Notes" for h in logger.handlers):
        logger.addHandler(Notes())


_IMPORTS = click.option(
    "--import",
    "imports",
    multiple=True,
    metavar="MODULE_OR_FILE",
    help="Import a module or .py file first, so the custom layers and models it defines "
    "(e.g. registered with keras.saving.register_keras_serializable) load. It runs that code: "
    "needs --unsafe. Repeatable.",
)
_INPUT_SHAPES = click.option(
    "--input-shape",
    "input_shapes",
    multiple=True,
    metavar="[NAME=]DIMS",
    help="Input shape for a model that does not record one (a subclassed model never built), "
    "e.g. 1,224,224,3, or NAME=1,128 per input; ? leaves a size free. Repeatable.",
)


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
@click.option("--num-calibration", default=100, show_default=True, help="Calibration samples used.")
@click.option(
    "--int8-io", is_flag=True, help="With int8: int8 inputs and outputs instead of float."
)
@click.option("--seq-len", type=int, help="Fix free (sequence) dimensions to this length.")
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
    help="A keras-hub causal LM: export prefill and decode signatures with a KV cache.",
)
@click.option(
    "--max-length", default=128, show_default=True, help="With --lm: prompt + generated tokens."
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
@_IMPORTS
@_INPUT_SHAPES
@command
def convert_cmd(
    model: str,
    output: str,
    precision: str,
    calibration: str | None,
    num_calibration: int,
    int8_io: bool,
    seq_len: int | None,
    overwrite: bool,
    unsafe: bool,
    no_check: bool,
    check_data: str | None,
    lm: bool,
    max_length: int,
    quantizer: str,
    keep_float: tuple[str, ...],
    imports: tuple[str, ...],
    input_shapes: tuple[str, ...],
) -> tuple[Any, Callable[[Any], str]]:
    """Convert MODEL (.keras, .h5, SavedModel or keras-hub preset folder) to a .tflite file.

    The result is checked against MODEL on the calibration data (or realistic random inputs)
    with a per-precision tolerance before it is written; a failed check writes nothing. With
    --lm, a keras-hub causal LM becomes one file with prefill and decode signatures.
    """
    from tfopt.conversion import convert
    from tfopt.loading import parse_input_shapes

    result = convert(
        model,
        output,
        precision,
        calibration=calibration,
        num_calibration=num_calibration,
        int8_io=int8_io,
        seq_len=seq_len,
        overwrite=overwrite,
        unsafe=unsafe,
        check=not no_check,
        check_data=check_data,
        lm=lm,
        max_length=max_length,
        quantizer=quantizer,
        keep_float=tuple(keep_float),
        imports=tuple(imports),
        input_shapes=parse_input_shapes(input_shapes),
    ).to_dict()

    def human(r: dict[str, Any]) -> str:
        lines = [
            f"wrote {r['output']}: {r['precision']}, {r['size_bytes'] / 1024:.1f} KB "
            f"({r['gzip_bytes'] / 1024:.1f} KB gzipped), {r['seconds']:.1f} s"
        ]
        if r["check"]:
            worst = min(r["check"]["outputs"], key=lambda o: o["sqnr_db"])
            lines.append(
                f"check passed on {r['check']['samples']} samples: "
                f"SQNR {worst['sqnr_db']:.1f} dB, cosine {worst['cosine']:.5f}"
            )
        if r["precision"] in ("int8", "int16x8") and r["float_compute_ops"]:
            ops = ", ".join(f"{k} x{v}" for k, v in r["float_compute_ops"].items())
            lines.append(f"ops left in float: {ops}")
        return "\n".join(lines)

    return result, human


def _placement_lines(r: dict[str, Any]) -> list[str]:
    """GPU verdict as text: fully accelerated or not, op counts per side, fallback reasons."""

    def ops(side: dict[str, int]) -> str:
        return ", ".join(f"{k} x{v}" for k, v in side.items()) or "none"

    soft = " (software GPU: placement and numerics are real, timings are not)"
    lines = [
        f"GPU: {r.get('gpu_device')}{soft if r.get('software_gpu') else ''}",
        f"fully accelerated: {'yes' if r['fully_accelerated'] else 'no'} - "
        f"{r['gpu_op_count']} ops on GPU, {r['cpu_op_count']} on CPU"
        + ("" if r["op_placement_exact"] else " (per-op split approximate)"),
        f"  on GPU: {ops(r['op_placement']['gpu'])}",
        f"  on CPU: {ops(r['op_placement']['cpu'])}",
    ]
    lines += [
        f"  fallback {op}: {why or '(LiteRT gives no reason)'}"
        for op, why in r["fallback_reasons"].items()
    ]
    return lines


@cli.command("inspect")
@click.argument("model", type=click.Path())
@click.option(
    "--gpu",
    is_flag=True,
    help="Also ask LiteRT's GPU accelerator which ops it takes and which fall back to the CPU, "
    "and why (needs a Vulkan device; `make soft-gpu` gives a software one).",
)
@command
def inspect_cmd(model: str, gpu: bool) -> tuple[Any, Callable[[Any], str]]:
    """Show a .tflite file's inputs, outputs, signatures, ops, dtypes and sizes.

    --gpu adds the GPU op-placement verdict (no timing; `tfopt bench --accelerator gpu` times it).
    """
    from tfopt.inspection import inspect_tflite

    def human(r: dict[str, Any]) -> str:
        def io(t: dict[str, Any]) -> str:
            q = t["quantization"]
            qs = f"  scale={q['scale']:.6g} zero_point={q['zero_point']}" if q else ""
            return f"  {t['name']}: {t['dtype']}{t['shape']}{qs}"

        ops = ", ".join(f"{k} x{v}" for k, v in r["ops"].items())
        dtypes = ", ".join(f"{k} x{v}" for k, v in r["tensor_dtypes"].items())
        return "\n".join(
            [
                f"{r['model']}: {r['size_bytes']:,} bytes ({r['gzip_bytes']:,} gzipped), "
                f"{r['subgraphs']} subgraph(s), signatures: {', '.join(r['signatures']) or '-'}",
                "inputs:",
                *map(io, r["inputs"]),
                "outputs:",
                *map(io, r["outputs"]),
                f"ops: {ops}",
                f"tensor dtypes: {dtypes}",
                f"custom ops: {', '.join(r['custom_ops']) or 'none'}",
                *(
                    [
                        "no kernel in this LiteRT for: "
                        + ", ".join(r["missing_kernels"])
                        + " (the app must register them to run the model)"
                    ]
                    if r.get("missing_kernels")
                    else []
                ),
                *(_placement_lines(r["gpu"]) if "gpu" in r else []),
            ]
        )

    doc = inspect_tflite(model)
    if gpu:
        from tfopt.timing import gpu_placement

        doc["gpu"] = gpu_placement(model)
    return doc, human


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
    "--max-samples", default=1000, show_default=True, help="Compare at most this many samples."
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
@click.option("--min-sqnr", type=float, help="Fail (exit 1) if any output's SQNR (dB) is below.")
@click.option("--min-cosine", type=float, help="Fail (exit 1) if any output's cosine is below.")
@click.option("--min-top1", type=float, help="Fail (exit 1) if top-1 agreement (0-1) is below.")
@click.option("--unsafe", is_flag=True, help="Allow Lambda layers in a Keras REFERENCE.")
@_IMPORTS
@command
def compare_cmd(
    reference: str,
    candidate: str,
    data: str,
    max_samples: int,
    min_sqnr: float | None,
    min_cosine: float | None,
    min_top1: float | None,
    unsafe: bool,
    embedding: bool,
    pooling: str,
    imports: tuple[str, ...],
) -> tuple[Any, Callable[[Any], str]]:
    """Compare CANDIDATE (.tflite) with REFERENCE (Keras model, SavedModel or .tflite) on DATA.

    Reports per output max/mean absolute error, SQNR and cosine; for classifiers the top-1
    agreement, and accuracy of both when DATA holds labels `y`.
    """
    from tfopt.validate import compare_embeddings, compare_files

    if embedding:
        emb = compare_embeddings(
            reference, candidate, data, max_samples, pooling, unsafe, tuple(imports)
        )
        return emb, lambda r: "\n".join(
            [
                f"{r['samples']} samples, {r['pooling']} pooling",
                f"cosine to reference: mean {r['mean_cosine']:.5f}, worst {r['worst_cosine']:.5f}",
                f"nearest-neighbour agreement: {100 * r.get('neighbour_agreement', 1.0):.2f}%",
            ]
        )
    result = compare_files(
        reference,
        candidate,
        data,
        max_samples,
        min_sqnr,
        min_cosine,
        min_top1,
        unsafe,
        tuple(imports),
    )
    doc = result.to_dict()

    def human(r: dict[str, Any]) -> str:
        from tfopt.report import text_table

        rows = [
            [o["name"], o["max_abs"], o["mean_abs"], o["sqnr_db"], o["cosine"]]
            for o in r["outputs"]
        ]
        lines = [
            f"{r['samples']} samples",
            text_table(["output", "max_abs", "mean_abs", "sqnr_db", "cosine"], rows),
        ]
        if r["top1_agreement"] is not None:
            lines.append(f"top-1 agreement: {100 * r['top1_agreement']:.2f}%")
        if r["accuracy"]:
            a = r["accuracy"]
            lines.append(
                f"accuracy: reference {100 * a['reference']:.2f}%, "
                f"candidate {100 * a['candidate']:.2f}%"
            )
        return "\n".join(lines)

    return doc, human


@cli.command("bench")
@click.argument("models", nargs=-1, required=True, type=click.Path())
@click.option("--threads", default="1,2", show_default=True, help="Comma-separated thread counts.")
@click.option("--runs", type=int, help="Timed invocations per setting (default: --min-seconds).")
@click.option(
    "--min-seconds", default=1.0, show_default=True, help="Time each setting at least this long."
)
@click.option("--warmup", default=5, show_default=True, help="Untimed invocations first.")
@click.option("--no-xnnpack", is_flag=True, help="Use the built-in kernels only.")
@click.option("--repeat", default=1, show_default=True, help="Independent processes per setting.")
@click.option("--data", type=click.Path(), help="Use the first sample of this .npz/.npy as input.")
@click.option(
    "--lm", is_flag=True, help="An LM from `convert --lm`: time to first token, decode tokens/s."
)
@click.option("--prompt-len", default=16, show_default=True, help="With --lm: prompt tokens.")
@click.option(
    "--new-tokens", default=32, show_default=True, help="With --lm: tokens generated per run."
)
@click.option(
    "--accelerator",
    default="cpu",
    show_default=True,
    help="Comma-separated: cpu (Interpreter + XNNPACK), gpu (LiteRT CompiledModel; reports op "
    "placement, fallbacks and max |GPU - CPU|), nnapi (adb only).",
)
@click.option(
    "--target",
    "targets",
    multiple=True,
    help="Where to run (repeatable): local (default), ssh://user@host[:port] (copies the model "
    "and the harness, runs the device's python), adb or adb:SERIAL (LiteRT's benchmark_model).",
)
@click.option("--pin", help="Pin the timed process to these CPU ids, e.g. 0 or 4,5,6,7.")
@click.option("--ssh-key", type=click.Path(), help="ssh targets: identity file.")
@click.option(
    "--ssh-option",
    "ssh_options",
    multiple=True,
    help="ssh targets: extra -o KEY=VALUE (repeatable).",
)
@click.option(
    "--remote-python",
    default="python3",
    show_default=True,
    help="ssh targets: python with numpy and ai-edge-litert on the device (a command prefix "
    "such as 'env VK_ICD_FILENAMES=... python3' works too).",
)
@click.option(
    "--benchmark-binary",
    type=click.Path(),
    help="adb targets: LiteRT's benchmark_model built for the phone's ABI.",
)
@click.option(
    "--report",
    type=click.Path(),
    help="Also write the matrix to this folder: bench.json, bench.md, bench.png.",
)
@click.option("--overwrite", is_flag=True, help="Replace an earlier report in --report.")
@command
def bench_cmd(
    models: tuple[str, ...],
    threads: str,
    runs: int | None,
    min_seconds: float,
    warmup: int,
    no_xnnpack: bool,
    repeat: int,
    data: str | None,
    lm: bool,
    prompt_len: int,
    new_tokens: int,
    accelerator: str,
    targets: tuple[str, ...],
    pin: str | None,
    ssh_key: str | None,
    ssh_options: tuple[str, ...],
    remote_python: str,
    benchmark_binary: str | None,
    report: str | None,
    overwrite: bool,
) -> tuple[Any, Callable[[Any], str]]:
    """Time MODELS (.tflite) with LiteRT, one fresh process per measurement.

    Reports load time, first-invoke time, p50/p90/p99 latency and peak RSS per accelerator and
    thread count, with the machine, library versions and the model's sha256. On the GPU it also
    reports which ops run there, which fall back to the CPU and why, and the largest difference
    of the outputs against a CPU run. Several models and targets give one matrix; --report DIR
    also writes it as bench.json, bench.md and a bench.png bar chart.

    \b
      tfopt bench m.tflite --accelerator cpu,gpu
      tfopt bench m.tflite --target ssh://pi@raspberrypi.local --threads 1,4
      tfopt bench m.tflite --target adb --benchmark-binary ./benchmark_model --pin 4,5,6,7
    """
    from tfopt.errors import InputError
    from tfopt.targets import make_target, opened
    from tfopt.timing import BenchSettings, bench

    try:
        thread_list = tuple(int(t) for t in threads.split(","))
    except ValueError:
        raise InputError(f"--threads must be comma-separated integers, got '{threads}'") from None
    settings = BenchSettings(
        thread_list,
        runs,
        min_seconds,
        warmup,
        not no_xnnpack,
        repeat,
        data,
        lm=lm,
        prompt_len=prompt_len,
        new_tokens=new_tokens,
        accelerators=tuple(a.strip() for a in accelerator.split(",") if a.strip()),
        pin=pin,
    )
    from tfopt.fsutil import check_output_dir
    from tfopt.report import BENCH_REPORT_FILES, write_bench_report

    if report:
        check_output_dir(report, BENCH_REPORT_FILES, overwrite)
    from tqdm import tqdm

    docs = []
    specs = targets or ("local",)
    # A bar only for a matrix; disable=None also hides it when stderr is not a terminal.
    bar = tqdm(total=len(specs) * len(models), desc="timing", unit="model", disable=None,
               leave=False) if len(specs) * len(models) > 1 else None  # fmt: skip
    try:
        for spec in specs:
            target = make_target(spec, ssh_key, ssh_options, remote_python, benchmark_binary)
            with opened(target) as where:
                for m in models:
                    docs.append(bench(m, settings, where).to_dict())
                    if bar is not None:
                        bar.update()
    finally:
        if bar is not None:
            bar.close()
    if report:
        write_bench_report(report, docs)

    def human(r: dict[str, Any]) -> str:
        if lm:
            return _lm_table(r)
        from tfopt.report import text_table

        def ms(e: dict[str, Any], key: str) -> float | None:
            value = e["latency_us"].get(key)
            return None if value is None else round(value / 1000, 3)

        m = r["machine"]
        rows = [
            [
                e["accelerator"] + (" (sw)" if e.get("software_gpu") else ""),
                e["threads"],
                e["runs"],
                e["load_ms"],
                e["first_ms"],
                ms(e, "p50") if e.get("latency_stat", "p50") == "p50" else f"{ms(e, 'mean')} (avg)",
                ms(e, "p90"),
                ms(e, "p99"),
                e.get("peak_rss_mb", e.get("peak_memory_mb")),
                e.get("max_abs_vs_cpu"),
                f"{e['p50_spread_pct']:.1f}%" + (" NOISY" if e["noisy"] else ""),
            ]
            for e in r["results"]
        ]
        headers = ["accel", "threads", "runs", "load_ms", "first_ms", "p50_ms", "p90_ms"]
        headers += ["p99_ms", "mem_mb", "max|gpu-cpu|", "spread"]
        where = m.get("cpu") or m.get("device")
        pinned = r["results"][0].get("pinned_cpus") if r["results"] else None
        gpu = next((e for e in r["results"] if "op_placement" in e), None)
        return "\n".join(
            [
                f"{r['model']} (sha256 {r['sha256'][:12]}) on {r['target']}: {where}, "
                f"{m.get('cores', '?')} cores, ai-edge-litert {m.get('ai_edge_litert', '?')}"
                + (f", pinned to CPUs {pinned}" if pinned else ""),
                text_table(headers, rows),
                *(_placement_lines(gpu) if gpu else []),
            ]
        )

    if len(docs) > 1:
        return {"models": docs}, lambda r: "\n\n".join(human(d) for d in r["models"])
    return docs[0], human


@cli.command("optimize")
@click.argument("model", type=click.Path())
@click.option(
    "--recipe",
    required=True,
    help="A shipped recipe name (see `tfopt recipes`) or a .yaml/.json file.",
)
@click.option(
    "--data", required=True, help=".npz with x_train, y_train, x_val, y_val, or module:function."
)
@click.option("-o", "--out", required=True, type=click.Path(), help="Output folder.")
@click.option(
    "--epochs",
    default=2,
    show_default=True,
    help="Fine-tune epochs per stage (a stage's own 'epochs' wins).",
)
@click.option("--batch-size", default=64, show_default=True)
@click.option("--overwrite", is_flag=True, help="Replace files from an earlier run in OUT.")
@click.option("--unsafe", is_flag=True, help="Allow Lambda layers (runs code stored in the file).")
@click.option(
    "--no-check", is_flag=True, help="Keep the .tflite even if it misses its numeric tolerance."
)
@_IMPORTS
@command
def optimize_cmd(
    model: str,
    recipe: str,
    data: str,
    out: str,
    epochs: int,
    batch_size: int,
    overwrite: bool,
    unsafe: bool,
    no_check: bool,
    imports: tuple[str, ...],
) -> tuple[Any, Callable[[Any], str]]:
    """Optimize MODEL with a recipe (prune, 2:4, cluster, QAT, low-rank, distill), fine-tuned on DATA.

    Writes OUT/model.tflite, OUT/optimized.keras, OUT/report.json and OUT/report.md: per stage the
    sparsity, unique weights, parameters and validation accuracy; for the .tflite its size, gzip
    size, accuracy through the interpreter and CPU p50 latency.
    """
    from tfopt.loading import import_user_code
    from tfopt.optimization import optimize

    import_user_code(imports, unsafe)  # registers custom classes before MODEL loads
    report = optimize(
        model, recipe, data, out, epochs, batch_size, overwrite, unsafe, not no_check
    ).to_dict()

    def human(r: dict[str, Any]) -> str:
        from tfopt.report import text_table

        rows = [
            [
                s["stage"],
                s["params"],
                100 * s["sparsity"],
                s["max_unique_per_kernel"],
                100 * s["val_accuracy"],
                s["seconds"],
            ]
            for s in r["stages"]
        ]
        t = r["tflite"]
        return "\n".join(
            [
                text_table(
                    ["stage", "params", "sparsity_%", "max_unique", "val_acc_%", "seconds"], rows
                ),
                f"model.tflite: {t['precision']}, {t['size_bytes'] / 1024:.1f} KB ({t['gzip_bytes'] / 1024:.1f} KB gzipped), "
                f"val accuracy {100 * t['val_accuracy']:.2f}% (interpreter), p50 {t['p50_ms_1t']} ms at 1 thread",
                *(f"note: {n}" for n in r["notes"]),
                f"report: {r['out_dir']}/report.md",
            ]
        )

    return report, human


@cli.command("recipes")
@click.argument("name", required=False)
@command
def recipes_cmd(name: str | None) -> tuple[Any, Callable[[Any], str]]:
    """List the shipped recipes, or show one as YAML (copy it to make your own)."""
    from tfopt.recipes import load_recipe, shipped

    if name:
        import yaml

        doc = load_recipe(name).to_dict()
        return doc, lambda d: yaml.safe_dump(d, sort_keys=False).rstrip()
    doc = {n: load_recipe(n).description for n in shipped()}
    return doc, lambda d: "\n".join(f"{k:22s} {v}" for k, v in d.items())


def _lm_table(r: dict[str, Any]) -> str:
    from tfopt.report import text_table

    rows = [
        [
            e["threads"],
            e["prompt_len"],
            e["new_tokens"],
            e["prefill_ms"],
            e["ttft_ms"],
            e["decode_step_us"]["p50"] / 1000,
            e["decode_tokens_per_s"]["p50"],
            e["decode_tokens_per_s"]["mean"],
            e["peak_rss_mb"],
        ]
        for e in r["results"]
    ]
    headers = [
        "threads",
        "prompt",
        "new",
        "prefill_ms",
        "ttft_ms",
        "step_ms_p50",
        "tok/s_p50",
        "tok/s_mean",
        "rss_mb",
    ]
    return f"{r['model']} (sha256 {r['sha256'][:12]})\n" + text_table(headers, rows)


@cli.command("generate")
@click.argument("model", type=click.Path())
@click.option("--prompt", help="Text, tokenized as UTF-8 bytes (the byte-level tokenizer).")
@click.option("--token-ids", help="Comma-separated token ids instead of --prompt (any tokenizer).")
@click.option("--max-new-tokens", default=32, show_default=True)
@click.option("--top-k", type=int, help="Sample from the top K tokens (default: greedy).")
@click.option("--seed", default=0, show_default=True, help="Seed for --top-k sampling.")
@click.option("--threads", default=1, show_default=True)
@command
def generate_cmd(
    model: str,
    prompt: str | None,
    token_ids: str | None,
    max_new_tokens: int,
    top_k: int | None,
    seed: int,
    threads: int,
) -> tuple[Any, Callable[[Any], str]]:
    """Generate text with an LM exported by `convert --lm`, through the TFLite signatures."""
    from tfopt.generation import generate

    doc = generate(model, prompt, token_ids, max_new_tokens, top_k, seed, threads)

    def human(r: dict[str, Any]) -> str:
        text = r["text"] if r["text"] is not None else " ".join(map(str, r["tokens"]))
        return (
            f"{text}\n\n{len(r['tokens'])} tokens; prefill {r['prefill_ms']:.2f} ms, "
            f"time to first token {r['ttft_ms']:.2f} ms, decode {r['decode_tokens_per_s']:.1f} tokens/s"
        )

    return doc, human


@cli.command("demo")
@click.option(
    "-o", "--out", default="demo-out", show_default=True, type=click.Path(), help="Output folder."
)
@click.option("--threads", default="1,2", show_default=True, help="Comma-separated thread counts.")
@click.option(
    "--min-seconds", default=1.0, show_default=True, help="Time each setting at least this long."
)
@click.option("--overwrite", is_flag=True, help="Replace files from an earlier demo run.")
@command
def demo_cmd(
    out: str, threads: str, min_seconds: float, overwrite: bool
) -> tuple[Any, Callable[[Any], str]]:
    """Train a CNN on real digits, convert to every precision, check, time, report."""
    from tfopt.demo import run_demo
    from tfopt.errors import InputError

    try:
        thread_list = tuple(int(t) for t in threads.split(","))
    except ValueError:
        raise InputError(f"--threads must be comma-separated integers, got '{threads}'") from None
    report = run_demo(out, thread_list, min_seconds, overwrite)
    doc = {"out_dir": report.out_dir, "rows": report.rows}
    return (
        doc,
        lambda _: (
            f"{report.table}\n\nreport: {report.out_dir}/report.json, {report.out_dir}/report.md"
        ),
    )


def main() -> None:
    cli(prog_name="tfopt")
