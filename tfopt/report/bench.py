"""Views of timing: one `BenchReport` as a table, a `BenchMatrix` (models x targets x
accelerators x threads) as tables, one Markdown matrix, a bar chart, and the bench report folder."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tfopt.fsutil import write_text
from tfopt.lm import report as lm
from tfopt.report.chart import bar_chart_png, write_png
from tfopt.report.inspection import placement_lines
from tfopt.report.registry import Format, View, renders
from tfopt.report.tables import markdown_table, text_table, to_json, write_json

BENCH_REPORT_FILES = ["bench.json", "bench.md", "bench.png"]
HEADERS = ["accel", "threads", "runs", "load_ms", "first_ms", "p50_ms", "p90_ms"]
HEADERS += ["p99_ms", "mem_mb", "max|gpu-cpu|", "spread", "input"]


def reports(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """The BenchReport documents of a matrix (`{"models": [...]}`) or of one report."""
    return doc["models"] if "models" in doc else [doc]


def _ms(e: dict[str, Any], key: str) -> float | None:
    value = e["latency_us"].get(key)
    return None if value is None else round(value / 1000, 3)


def cpu_options_text(e: dict[str, Any]) -> str:
    """'api=compiled force_fp16=true', or '' for the default Interpreter."""
    options = e.get("cpu_options") or {}
    shown = {k: v for k, v in options.items() if (k, v) != ("api", "interpreter")}
    return " ".join(f"{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in shown.items())


def _row(e: dict[str, Any]) -> list[Any]:
    return [
        e["accelerator"] + (" (sw)" if e.get("software_gpu") else ""),
        e["threads"],
        e["runs"],
        e["load_ms"],
        e["first_ms"],
        _ms(e, "p50") if e.get("latency_stat", "p50") == "p50" else f"{_ms(e, 'mean')} (avg)",
        _ms(e, "p90"),
        _ms(e, "p99"),
        e.get("peak_rss_mb", e.get("peak_memory_mb")),
        e.get("max_abs_vs_cpu"),
        _spread(e),
        shapes_text(e),
    ]


def shapes_text(e: dict[str, Any]) -> str | None:
    """The input shapes a result was timed at: '1x500x4', or 'ids:1x128 mask:1x128'."""
    shapes = e.get("input_shapes")
    if not shapes:
        return None
    dims = {name: "x".join(map(str, shape)) for name, shape in shapes.items()}
    return next(iter(dims.values())) if len(dims) == 1 else " ".join(
        f"{name}:{d}" for name, d in dims.items()
    )


def _spread(e: dict[str, Any]) -> str | None:
    """The spread of the repeats' p50s; none ('-') for one repeat, which has nothing to spread."""
    if e.get("repeats", 1) < 2:
        return None
    return f"{e['p50_spread_pct']:.1f}%" + (" NOISY" if e["noisy"] else "")


def _count(value: float) -> int | float:
    """An op count as the integer it is (LiteRT's profile reports counts as floats)."""
    return int(value) if float(value).is_integer() else value


def _one(r: dict[str, Any]) -> str:
    if any("ttft_ms" in e for e in r["results"]):
        return lm.bench_text(r)
    m = r["machine"]
    where = m.get("cpu") or m.get("device")
    pinned = r["results"][0].get("pinned_cpus") if r["results"] else None
    gpu = next((e for e in r["results"] if "op_placement" in e), None)
    options = next((cpu_options_text(e) for e in r["results"] if cpu_options_text(e)), "")
    return "\n".join(
        [
            f"{r['model']} (sha256 {r['sha256'][:12]}) on {r['target']}: {where}, "
            f"{m.get('cores', '?')} cores, ai-edge-litert {m.get('ai_edge_litert', '?')}"
            + (f", pinned to CPUs {pinned}" if pinned else "")
            + (f", CPU options: {options}" if options else ""),
            text_table(HEADERS, [_row(e) for e in r["results"]]),
            *(placement_lines(gpu) if gpu else []),
            *(
                f"openvino, {e['threads']} thread(s): {e['openvino_ops']} ops in "
                f"{e['openvino_partitions']} OpenVINO partition(s) on its {e['device']} device, "
                f"{e['cpu_ops']} on LiteRT's CPU, max |OpenVINO-CPU| {e.get('max_abs_vs_cpu')}"
                + (_IDENTICAL if _identical(e) else "")
                for e in r["results"]
                if "openvino_ops" in e
            ),
            *(line for e in r["results"] if "op_profile" in e for line in profile_lines(e)),
        ]
    )


# Measured (BENCHMARKS.md §11): with LiteRT 2.3's dispatch, all-MiniLM-L6-v2 reports 14 OpenVINO
# partitions, yet its outputs equal LiteRT's CPU run to the bit and perf finds 0.1% of the time in
# OpenVINO's CPU plugin: XNNPACK ran it. Another engine never matches float results to the bit.
_IDENTICAL = (
    "; outputs bit-identical to LiteRT's CPU run, so OpenVINO most likely did not execute "
    "the partitions (LiteRT ran them itself)"
)


def _identical(e: dict[str, Any]) -> bool:
    """OpenVINO took ops, yet float outputs equal the CPU run's to the bit (int8 or argmax
    outputs may match by right)."""
    return (
        bool(e["openvino_ops"]) and e.get("float_outputs", False) and e.get("max_abs_vs_cpu") == 0.0
    )


PROFILE_HEADERS = ["op", "where", "count", "total_ms", "% of run"]


def profile_lines(e: dict[str, Any]) -> list[str]:
    """LiteRT's per-op profile of one CPU result: the top op types by time, and what ran outside
    XNNPACK."""
    p = e["op_profile"]
    rows = [
        [o["op"], o["where"], _count(o["count"]), o["total_ms"], o["pct"]]
        for o in p["ops"][: p["top"]]
    ]
    outside = [o for o in p["ops"] if o["where"] == "tflite"]
    lines = [
        "",
        f"Per-op profile, {e['threads']} thread(s), {p['runs']} runs ({p['tool']}): "
        f"{p['run_ms']} ms per run, {p['profiled_ms']} ms in ops; "
        f"{p['ops_by_place']['xnnpack']:g} ops in {p['xnnpack_partitions']:g} XNNPACK "
        f"partition(s) ({p['ms_by_place']['xnnpack']} ms), {p['ops_by_place']['tflite']:g} on "
        f"TFLite kernels ({p['ms_by_place']['tflite']} ms)",
        text_table(PROFILE_HEADERS, rows),
    ]
    if outside:
        lines.append(
            "not in XNNPACK: "
            + ", ".join(f"{o['op']} x{o['count']:g} ({o['total_ms']} ms)" for o in outside)
        )
    return lines


@renders(View.BENCH, Format.TEXT)
def text(doc: dict[str, Any]) -> str:
    return "\n\n".join(_one(r) for r in reports(doc))


@renders(View.BENCH, Format.JSON)
@renders(View.LM_BENCH, Format.JSON)
def json(doc: dict[str, Any]) -> str:
    """One report as itself; a matrix of several as {"models": [...]}."""
    docs = reports(doc)
    return to_json(docs[0] if len(docs) == 1 else {"models": docs})


@dataclass
class _Matrix:
    """The numbers of the matrix view: one row per model, one column per target/accel/threads."""

    models: list[str]
    columns: list[str]
    labels: dict[str, str]  # column -> what its numbers are: p50, or benchmark_model's mean
    cells: dict[str, dict[str, float]]  # model -> column -> ms
    size: dict[str, int]
    sha: dict[str, str]
    machines: dict[str, dict[str, Any]]


def _column(doc: dict[str, Any], entry: dict[str, Any]) -> str:
    """Matrix column: target / accelerator / threads, e.g. 'local gpu (sw) 1t'."""
    accel = entry.get("accelerator", "cpu") + (" (sw)" if entry.get("software_gpu") else "")
    target = doc.get("target", "local")
    return f"{'' if target == 'local' else target + ' '}{accel} {entry['threads']}t"


def _row_names(docs: list[dict[str, Any]]) -> list[str]:
    """Each report's model row: its file name, or its path where two share a file name."""
    names = [Path(d["model"]).name for d in docs]
    if len({d["model"] for d in docs}) > len(set(names)):  # same file name in other folders
        names = [str(d["model"]) for d in docs]
    return names


def _matrix(docs: list[dict[str, Any]]) -> _Matrix:
    from tfopt.timing import headline_us

    names = _row_names(docs)
    m = _Matrix([], [], {}, {}, {}, {}, {})
    stats: dict[str, set[str]] = {}
    for name, d in zip(names, docs, strict=True):
        if name not in m.cells:
            m.models.append(name)
            m.cells[name], m.size[name], m.sha[name] = {}, d["size_bytes"], d["sha256"]
        for e in d["results"]:
            column = _column(d, e)
            if column not in m.columns:
                m.columns.append(column)
            stats.setdefault(column, set()).add(e.get("latency_stat", "p50"))
            m.cells[name][column] = round(headline_us(e) / 1000, 4)
    m.labels = {c: "/".join(sorted(stats[c])) for c in m.columns}
    m.machines = {d.get("target", "local"): d.get("machine", {}) for d in docs}
    return m


def _placement(docs: list[dict[str, Any]]) -> list[str]:
    return [
        f"- {Path(d['model']).name} on {d.get('target', 'local')}: "
        f"{e['gpu_op_count']} ops on GPU, {e['cpu_op_count']} on CPU, "
        f"max |GPU-CPU| {e.get('max_abs_vs_cpu')}"
        + (f"; falls back: {', '.join(e['fallback_reasons'])}" if e["fallback_reasons"] else "")
        for d in docs
        for e in d["results"]
        if "op_placement" in e and e["threads"] == d["results"][0]["threads"]
    ]


def _inputs(docs: list[dict[str, Any]]) -> dict[str, str]:
    """Model row -> the input shapes it was timed at (every shape seen, in order)."""
    seen: dict[str, list[str]] = {}
    for name, d in zip(_row_names(docs), docs, strict=True):
        for e in d["results"]:
            text = shapes_text(e)
            if text and text not in seen.setdefault(name, []):
                seen[name].append(text)
    return {name: ", ".join(texts) for name, texts in seen.items()}


@renders(View.BENCH, Format.MARKDOWN)
def markdown(doc: dict[str, Any]) -> str:
    """The matrix as Markdown; columns say what they hold: `p50` from the harness, `mean` where
    only a mean exists (LiteRT's benchmark_model on Android)."""
    docs = reports(doc)
    m = _matrix(docs)
    headers = ["model", "size KB", "input", *(f"{m.labels[c]} ms {c}" for c in m.columns)]
    headers.append("sha256")
    inputs = _inputs(docs)
    rows = [
        [n, round(m.size[n] / 1024, 1), inputs.get(n), *(m.cells[n].get(c) for c in m.columns),
         m.sha[n][:12]]
        for n in m.models
    ]  # fmt: skip
    described = "\n".join(
        f"- {t}: {mc.get('cpu') or mc.get('device')}, {mc.get('cores', '?')} cores, "
        f"ai-edge-litert {mc.get('ai_edge_litert', '?')}"
        for t, mc in m.machines.items()
    )
    software = any(e.get("software_gpu") for d in docs for e in d["results"])
    note = "\n(sw) = software GPU: its op placement and numerics are real, its timings are not.\n"
    placement = _placement(docs)
    return (
        f"# tfopt bench\n\nMachines:\n{described}\n\n{markdown_table(headers, rows)}\n"
        + (note if software else "")
        + ("\nGPU placement:\n" + "\n".join(placement) + "\n" if placement else "")
        + "\n![latency per model and target/accelerator](bench.png)\n"
    )


@renders(View.BENCH, Format.PNG)
def png(doc: dict[str, Any]) -> bytes:
    """Latency per model, one bar per target/accelerator/threads column."""
    m = _matrix(reports(doc))
    series: dict[str, Sequence[float]] = {
        c: [m.cells[n].get(c, 0.0) for n in m.models] for c in m.columns
    }
    ylabel = f"{'/'.join(sorted(set(m.labels.values())))} latency (ms), batch 1"
    return bar_chart_png(m.models, [(ylabel, series)], "tfopt bench: " + ", ".join(m.machines))


def write_bench_report(out_dir: str | Path, matrix: Any) -> None:
    """Write a matrix (a `BenchMatrix`, its document, or a list of BenchReport documents) to
    `out_dir` as bench.json (machines and every report), bench.md and bench.png."""
    from tfopt.report import document

    doc = document(matrix)
    doc = {"models": [document(d) for d in doc]} if isinstance(doc, list) else doc
    docs = reports(doc)
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    write_json(folder / "bench.json", {"machines": _matrix(docs).machines, "models": docs})
    write_text(folder / "bench.md", markdown(doc))
    write_png(folder / "bench.png", png(doc))
