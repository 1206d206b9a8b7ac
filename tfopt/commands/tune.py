"""`tfopt tune`: search for the fastest file that keeps the user's accuracy, on Ray Tune."""

from __future__ import annotations

from typing import Any

import click

from tfopt.commands.options import IMPORTS, THREADS
from tfopt.commands.wrap import command
from tfopt.report.registry import View


def _csv(value: str | None, cast: Any = str) -> tuple[Any, ...] | None:
    if value is None:
        return None
    from tfopt.errors import InputError

    items = [v.strip() for v in value.split(",") if v.strip()]
    if value.strip().lower() == "none":
        return ()
    try:
        return tuple(cast(v) for v in items)
    except ValueError:
        raise InputError(f"expected a comma-separated list, got '{value}'") from None


@click.command("tune")
@click.argument("model", type=click.Path())
@click.option("--data", required=True, type=click.Path(),
              help=".npz: x (and labels y) to calibrate and judge on, or x_train/y_train/x_val/y_val "
              "(then recipes fine-tune on the training split and x_val judges).")  # fmt: skip
@click.option("--goal", "goals", required=True, multiple=True, metavar="MEASURE>=NUMBER",
              help="Quality gate on the real .tflite against MODEL on held-out data (repeatable, all "
              "must hold): top1_drop<=0.005, accuracy>=0.9, top1>=0.99, cosine>=0.995, sqnr_db>=30, "
              "same_nearest>=0.95 (encoders).")  # fmt: skip
@click.option("-o", "--out", "out_dir", required=True, type=click.Path(),
              help="Folder for best.tflite, best.yaml, tune.json, tune.md, pareto.png (and the "
              "search state in .tune/, which --resume reads).")  # fmt: skip
@click.option("--objective", type=click.Choice(["latency", "size"]), default="latency",
              show_default=True, help="What the winner minimizes among files that meet the goal.")
@click.option("--target", default="local", show_default=True,
              help="Where files are timed: local, ssh://user@host[:port], adb or adb:SERIAL.")
@click.option("--accelerator", "accelerators", default="cpu", show_default=True,
              help="Comma-separated accelerators in the space: cpu, gpu (LiteRT's GPU accelerator).")
@click.option("--threads", default="1,2", show_default=True, type=THREADS,
              help="Thread counts in the space.")  # fmt: skip
@click.option("--xnnpack", type=click.Choice(["both", "on"]), default="both", show_default=True,
              help="Time with XNNPACK on and off, or on only.")
@click.option("--cpu-option-set", "cpu_option_sets", multiple=True, metavar="KEY=VALUE[,...]",
              help="LiteRT CPU options timed as one more runtime setting (repeatable; as tfopt "
              "bench --cpu-option, e.g. api=compiled or latest_features=true; none: only the "
              "defaults). Default: api=compiled.")  # fmt: skip
@click.option("--precisions", help="Converter precisions in the space (comma-separated; none: "
              "skip). Default: float32,float16,dynamic,int8,int16x8.")  # fmt: skip
@click.option("--aeq-precisions", help="LiteRT quantizer schemes (comma-separated; none: skip). "
              "Default: dynamic,int8,int16x8,w8,w4,w4b32.")  # fmt: skip
@click.option("--calibration-sizes", default="100,400", show_default=True,
              help="Calibration sample counts tried for int8 and int16x8.")
@click.option("--recipes", help="Shipped recipes tried when DATA has a training split "
              "(comma-separated; none: skip). Default: every shipped recipe.")  # fmt: skip
@click.option("--epochs", default=1, show_default=True, type=click.IntRange(min=0),
              help="Fine-tune epochs per recipe stage.")  # fmt: skip
@click.option("--batch-size", default=64, show_default=True, type=click.IntRange(min=1),
              help="Fine-tune batch size of the recipes.")  # fmt: skip
@click.option("--no-selective-float", is_flag=True,
              help="Skip the per-op sensitivity pass and the kept-in-float variants.")
@click.option("--budget", type=click.IntRange(min=1), help="At most this many trials.")
@click.option("--time", "time_limit", metavar="DURATION",
              help="Stop starting trials after this long: 900, 900s, 30m, 2h.")
@click.option("--ray-address", metavar="HOST:PORT",
              help="Join a running Ray cluster (ray start --head) instead of starting Ray here; "
              "trials then spread over its nodes (MODEL and DATA at the same path on each).")  # fmt: skip
@click.option("--ray-cpus", type=click.IntRange(min=1),
              help="CPUs of the local Ray instance (default: all).")  # fmt: skip
@click.option("--resume", is_flag=True, help="Continue the search in OUT; finished trials are kept.")
@click.option("--overwrite", is_flag=True, help="Start over, replacing an earlier search in OUT.")
@click.option("--seq-len", type=click.IntRange(min=1),
              help="Fix free (sequence) dimensions to this length.")  # fmt: skip
@click.option("--pooling", type=click.Choice(["mean", "cls", "pooled"]), default="mean",
              show_default=True, help="Encoders: how sentence embeddings are pooled.")
@click.option("--eval-samples", default=500, show_default=True, type=click.IntRange(min=1),
              help="Held-out samples each trial is judged on.")
@click.option("--min-seconds", default=0.3, show_default=True,
              type=click.FloatRange(min=0, min_open=True),
              help="Time each trial's setting at least this long.")
@click.option("--repeats", "final_repeats", default=3, show_default=True,
              type=click.IntRange(min=1),
              help="Interleaved rounds when the front runners and presets are re-timed.")
@click.option("--no-presets", is_flag=True, help="Do not time the shipped presets beside the winner.")
@click.option("--unsafe", is_flag=True, help="Allow Lambda layers (runs code stored in the file).")
@click.option("--ssh-key", type=click.Path(), help="ssh targets: identity file.")
@click.option("--remote-python", default="python3", show_default=True,
              help="ssh targets: python with numpy and ai-edge-litert on the device.")
@IMPORTS
@command
def tune_cmd(**o: Any) -> tuple[View, Any]:
    """Find the fastest .tflite of MODEL that meets --goal on DATA, on the target.

    \b
    The search (Ray Tune; local Ray by default, a cluster with --ray-address) covers converter
    precisions and LiteRT quantizer schemes with calibration sizes, op groups kept in float
    (ranked by a per-op sensitivity pass), shipped recipes when DATA has a training split, and
    runtime settings: threads, XNNPACK, accelerator. Each trial is judged on the real file
    against MODEL; trials timing on one target never overlap, and the front runners are re-timed
    alone. Example:
      tfopt tune model.keras --data data.npz --goal top1_drop<=0.005 -o tuned
    """
    from tfopt.tuning import Space, TuneRequest, tune

    defaults = Space()
    precisions, aeq_precisions = o.pop("precisions"), o.pop("aeq_precisions")
    space = Space(
        precisions=defaults.precisions if precisions is None else _csv(precisions),
        aeq_precisions=defaults.aeq_precisions if aeq_precisions is None else _csv(aeq_precisions),
        calibration_sizes=_csv(o.pop("calibration_sizes"), int) or defaults.calibration_sizes,
        recipes=_shipped_or(o.pop("recipes")),
        selective_float=not o.pop("no_selective_float"),
        threads=o.pop("threads"),
        xnnpack=(True, False) if o.pop("xnnpack") == "both" else (True,),
        accelerators=_csv(o.pop("accelerators")) or ("cpu",),
        cpu_option_sets=_option_sets(o.pop("cpu_option_sets"), defaults.cpu_option_sets),
    )
    ssh = {"ssh_key": o.pop("ssh_key"), "remote_python": o.pop("remote_python")}
    target_options = ssh if o["target"].startswith("ssh://") else {}

    def show(row: dict[str, Any]) -> None:
        v, q = row["variant"], row.get("quality") or {}
        if row["status"] != "ok":
            what = f"failed: {row.get('reason', '')}"
        else:
            shown = ", ".join(f"{k} {val}" for k, val in q.items() if val is not None)
            what = (f"{'meets' if row.get('passed') else 'misses'} the goal ({shown}); "
                    f"p50 {row.get('p50_ms')} ms")  # fmt: skip
        click.echo(f"trial {v['label']} [{row.get('phase')}]: {what}", err=True)

    request = TuneRequest(goal=o.pop("goals"), space=space, compare_presets=not o.pop("no_presets"),
                          target_options=target_options, on_progress=show, **o)  # fmt: skip
    return View.TUNE, tune(request)


def _option_sets(given: tuple[str, ...], default: Any) -> Any:
    if not given:
        return default
    return tuple(tuple(_csv(g) or ()) for g in given if g.strip().lower() != "none")


def _shipped_or(value: str | None) -> tuple[str, ...]:
    from tfopt.recipes import shipped

    if value is None:
        return tuple(shipped())
    return _csv(value) or ()
