"""Views of the demo (`DemoReport`): the precision table, report.md, the chart, report.json."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tfopt.fsutil import write_text
from tfopt.report.chart import bar_chart_png, write_png
from tfopt.report.registry import Format, View, renders
from tfopt.report.tables import markdown_table, text_table, to_json, write_json

FILE_KEYS = ["keras_accuracy", "parameters", "train_samples", "test_samples", "machine", "rows"]


COLUMNS = ["precision", "size_kb", "gzip_kb", "accuracy", "top1_agreement", "sqnr_db"]


def _table(r: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    """The demo's own columns; the rows' shared keys (`Evaluation.row()`) are for JSON."""
    timed = [f"p{q}_ms_{t}t" for t in r["threads"] for q in (50, 90)]
    headers = COLUMNS + timed
    return headers, [[row[h] for h in headers] for row in r["rows"]]


@renders(View.DEMO, Format.TEXT)
def text(r: dict[str, Any]) -> str:
    out = r["out_dir"]
    return f"{text_table(*_table(r))}\n\nreport: {out}/report.json, {out}/report.md"


@renders(View.DEMO, Format.JSON)
def json(r: dict[str, Any]) -> str:
    return to_json({"out_dir": r["out_dir"], "rows": r["rows"]})


@renders(View.DEMO, Format.MARKDOWN)
def markdown(r: dict[str, Any]) -> str:
    machine = r["machine"]
    return "\n".join(
        [
            "# tfopt demo: digits CNN in every precision",
            "",
            f"Keras model: {r['parameters']:,} parameters, trained {r['train_seconds']:.1f} s on "
            f"{r['train_samples']} real scikit-learn digits; test accuracy {r['keras_accuracy']}% "
            f"on {r['test_samples']} held-out digits.",
            "Accuracy and top-1 agreement: the `.tflite` through the LiteRT interpreter on the "
            "held-out digits. Latency: batch 1, XNNPACK, median (p50) and p90 in ms.",
            f"Machine: {machine.get('cpu')}, {machine.get('cores')} cores, "
            f"ai-edge-litert {machine.get('ai_edge_litert')}.",
            "",
            markdown_table(*_table(r)),
            "",
            "![latency, size and accuracy per precision](report.png)",
            "",
        ]
    )


@renders(View.DEMO, Format.PNG)
def png(r: dict[str, Any]) -> bytes:
    rows, machine = r["rows"], r["machine"]
    return bar_chart_png(
        [row["precision"] for row in rows],
        [
            (
                "p50 latency (ms), batch 1",
                {f"{t} thread(s)": [row[f"p50_ms_{t}t"] for row in rows] for t in r["threads"]},
            ),
            (
                "size (KB)",
                {"file": [x["size_kb"] for x in rows], "gzip": [x["gzip_kb"] for x in rows]},
            ),
            ("accuracy on held-out digits (%)", {".tflite": [x["accuracy"] for x in rows]}),
        ],
        f"digits CNN in every precision ({machine.get('cpu')}, {machine.get('cores')} cores)",
    )


def write_demo_report(folder: str | Path, report: Any) -> None:
    """report.png, report.json (the run without its folder) and report.md in `folder`."""
    from tfopt.report import document

    doc = document(report)
    out = Path(folder)
    write_png(out / "report.png", png(doc))
    write_json(out / "report.json", {k: doc[k] for k in FILE_KEYS})
    write_text(out / "report.md", markdown(doc))
