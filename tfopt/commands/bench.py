"""`tfopt bench`: time models on targets (the matrix), render or write the report."""

from __future__ import annotations

from typing import Any

import click

from tfopt.commands.options import LOOKUP, MIN_SECONDS, TIMED_THREADS
from tfopt.commands.wrap import command
from tfopt.report.registry import View
from tfopt.runtime.cpuopts import CPU_KEYS


def _kind(kind: Any) -> str:
    return "true/false" if kind is bool else kind if isinstance(kind, str) else "|".join(kind)


@click.command("bench")
@click.argument("models", nargs=-1, required=True, type=click.Path())
@TIMED_THREADS
@click.option(
    "--runs", type=click.IntRange(min=1),
    help="Timed invocations per setting (default: --min-seconds)."
)  # fmt: skip
@MIN_SECONDS
@click.option(
    "--warmup", default=5, show_default=True, type=click.IntRange(min=0),
    help="Untimed invocations first."
)  # fmt: skip
@click.option("--no-xnnpack", is_flag=True, help="Use the built-in kernels only.")
@click.option(
    "--repeat", default=1, show_default=True, type=click.IntRange(min=1),
    help="Independent processes per setting."
)  # fmt: skip
@click.option(
    "--data",
    type=click.Path(),
    help="Use the first sample of this .npz/.npy as input; a free (sequence) dimension is timed "
    "at its length.",
)
@click.option(
    "--seq-len",
    type=click.IntRange(min=1),
    help="Time free (sequence) dimensions at this length (a synthetic sample); a model with "
    "one needs --data, --seq-len or --input-shape.",
)
@click.option(
    "--input-shape",
    "input_shapes",
    multiple=True,
    metavar="[NAME=]DIMS",
    help="Time this input at this shape, e.g. 1,500,4 or NAME=1,128 per input. Repeatable.",
)
@click.option(
    "--lm",
    is_flag=True,
    help="An LM from `convert --lm` (.tflite: tfopt's runner; .litertlm: LiteRT-LM's own engine): "
    "time to first token, decode tokens/s, peak RSS.",
)
@click.option(
    "--prompt-len", default=16, show_default=True, type=click.IntRange(min=1),
    help="With --lm: prompt tokens."
)  # fmt: skip
@click.option(
    "--new-tokens",
    default=32,
    show_default=True,
    type=click.IntRange(min=1),
    help="With --lm: tokens generated per run.",
)
@LOOKUP
@click.option(
    "--accelerator",
    default="cpu",
    show_default=True,
    help="Comma-separated: cpu (Interpreter + XNNPACK), gpu (LiteRT CompiledModel; reports op "
    "placement, fallbacks and max |GPU - CPU|), nnapi (adb only), openvino (LiteRT's OpenVINO "
    "compiler plugin + dispatch on OpenVINO's CPU device; needs OpenVINO 2026.3 libraries, "
    "TFOPT_OPENVINO_LIBS).",
)
@click.option(
    "--target",
    "targets",
    multiple=True,
    help="Where to run (repeatable): local (default), ssh://user@host[:port] (copies the model "
    "and the harness, runs the device's python), adb or adb:SERIAL (LiteRT's benchmark_model).",
)
@click.option("--pin", help="Pin the timed process to these CPU ids, e.g. 0 or 4,5,6,7.")
@click.option(
    "--cpu-option",
    "cpu_options",
    multiple=True,
    metavar="KEY=VALUE",
    help="LiteRT CPU option (repeatable), recorded in the result: "
    + "; ".join(f"{k} ({_kind(v.kind)})" for k, v in CPU_KEYS.items())
    + ". Keys only CompiledModel takes switch api to compiled.",
)
@click.option(
    "--profile",
    is_flag=True,
    help="Add LiteRT's per-op profile of each CPU setting: time per op type and whether it ran "
    "in XNNPACK or on the default TFLite kernels.",
)
@click.option(
    "--profile-runs",
    default=20,
    show_default=True,
    type=click.IntRange(min=1),
    help="With --profile: profiled invocations.",
)
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
    threads: tuple[int, ...],
    no_xnnpack: bool,
    accelerator: str,
    targets: tuple[str, ...],
    report: str | None,
    overwrite: bool,
    **options: Any,
) -> tuple[View, Any]:
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
      tfopt bench m.tflite --threads 1 --profile
      tfopt bench free_length.tflite --seq-len 11000
      tfopt bench m.tflite --cpu-option api=compiled --cpu-option force_fp16=true
    """
    from tfopt.fsutil import check_output_dir
    from tfopt.report import BENCH_REPORT_FILES, progress, write_bench_report
    from tfopt.timing import BenchSettings, bench_matrix

    where = {
        k: options.pop(k) for k in ("ssh_key", "ssh_options", "remote_python", "benchmark_binary")
    }
    settings = BenchSettings(
        threads=threads,
        xnnpack=not no_xnnpack,
        accelerators=tuple(a.strip() for a in accelerator.split(",") if a.strip()),
        **options,
    )
    if report:
        check_output_dir(report, BENCH_REPORT_FILES, overwrite)
    with progress("timing", unit="model") as on_progress:
        matrix = bench_matrix(models, targets, settings, on_progress, **where)
    if report:
        write_bench_report(report, matrix)
    return (View.LM_BENCH if settings.lm else View.BENCH), matrix
