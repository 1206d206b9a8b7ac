"""Views of an optimization (`OptimizeReport`): stages, the `.tflite`, its weights, the kernels;
and the report files `optimize` leaves in its output folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tfopt.evaluation import Runtime
from tfopt.fsutil import write_text
from tfopt.report.registry import Format, View, renders
from tfopt.report.tables import markdown_table, text_table, write_json


def _stage_rows(r: dict[str, Any], rounded: bool) -> list[list[Any]]:
    def pct(x: float, digits: int) -> float:
        return round(100 * x, digits) if rounded else 100 * x

    return [
        [
            s["stage"],
            s["params"],
            None if s.get("macs") is None else round(s["macs"] / 1e6, 2),
            pct(s["sparsity"], 1),
            s["max_unique_per_kernel"],
            None if s["val_accuracy"] is None else pct(s["val_accuracy"], 2),
            s["seconds"],
        ]
        for s in r["stages"]
    ]


def _p50_ms(t: dict[str, Any]) -> float | None:
    """The `.tflite`'s latency at 1 thread (its `Evaluation`'s p50 under the default runtime)."""
    return t["p50_ms_by_runtime"][Runtime().label]


def _accuracy(t: dict[str, Any]) -> str:
    return "- (no labels)" if t["val_accuracy"] is None else f"{100 * t['val_accuracy']:.2f}%"


@renders(View.OPTIMIZE, Format.TEXT)
def text(r: dict[str, Any]) -> str:
    t = r["tflite"]
    headers = ["stage", "params", "MMACs", "sparsity_%", "max_unique", "val_acc_%", "seconds"]
    return "\n".join(
        [
            text_table(headers, _stage_rows(r, rounded=False)),
            f"model.tflite: {t['precision']}, {t['size_bytes'] / 1024:.1f} KB "
            f"({t['gzip_bytes'] / 1024:.1f} KB gzipped), val accuracy {_accuracy(t)} "
            f"(interpreter), p50 {_p50_ms(t)} ms at 1 thread",
            *(f"note: {n}" for n in r["notes"]),
            f"report: {r['out_dir']}/report.md",
        ]
    )


@renders(View.OPTIMIZE, Format.MARKDOWN)
def markdown(r: dict[str, Any]) -> str:
    t = r["tflite"]
    tflite_row = [
        t["precision"],
        round(t["size_bytes"] / 1024, 1),
        round(t["gzip_bytes"] / 1024, 1),
        None if t["val_accuracy"] is None else round(100 * t["val_accuracy"], 2),
        _p50_ms(t),
    ]
    weights = [
        [
            n[:60],
            w["dtype"],
            "x".join(map(str, w["shape"])),
            round(100 * w["sparsity"], 1),
            w["unique"],
            w["unique_per_channel_max"],
        ]
        for n, w in t["weights"].items()
    ]
    layers = [
        [name, v["params"], round(100 * v["sparsity"], 1), v["unique"]]
        for name, v in r["layers"].items()
    ]
    return "\n".join(
        [
            f"# tfopt optimize: recipe `{r['recipe']['name']}` on {r['model']} ({r['world']})",
            "",
            r["recipe"].get("description", ""),
            "",
            "## Stages (validation accuracy of the Keras model after each stage)",
            "",
            markdown_table(
                ["stage", "params", "MMACs", "sparsity %", "max unique/kernel", "val acc %", "seconds"],
                _stage_rows(r, rounded=True),
            ),
            "",
            "## The .tflite",
            "",
            markdown_table(
                ["precision", "size KB", "gzip KB", "val acc % (interpreter)", "p50 ms (1 thread)"],
                [tflite_row],
            ),
            "",
            "## Weights in the .tflite (unique values per output channel: clusters survive int8)",
            "",
            markdown_table(
                ["tensor", "dtype", "shape", "sparsity %", "unique", "max unique per channel"],
                weights,
            ),
            "",
            "## Kernels of the optimized Keras model",
            "",
            markdown_table(["kernel", "params", "sparsity %", "unique values"], layers),
            "",
            *(f"- {n}" for n in r["notes"]),
            "",
        ]
    )


def write_optimize_report(folder: str | Path, report: Any) -> None:
    """report.json (the document) and report.md in `folder`."""
    from tfopt.report import document

    doc = document(report)
    write_json(Path(folder) / "report.json", doc)
    write_text(Path(folder) / "report.md", markdown(doc))
