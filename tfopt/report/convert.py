"""Views of a conversion (`ConvertResult`): what was written, how close it is, what stayed float."""

from __future__ import annotations

from typing import Any

from tfopt.report.registry import Format, View, renders
from tfopt.report.tables import counts, markdown_table


def _float_ops(r: dict[str, Any]) -> str | None:
    if r["precision"] in ("int8", "int16x8") and r.get("float_compute_ops"):
        return counts(r["float_compute_ops"])
    return None


_DATA = {
    "check_data": "of the check data",
    "calibration": "of the calibration data",
    "sentences": "(public-domain sentences, the model's own tokenizer)",
    "synthetic": "(synthetic inputs: pass --check-data for real ones)",
}


def _on(check: dict[str, Any]) -> str:
    return f" {_DATA[check['data']]}" if check.get("data") in _DATA else ""


@renders(View.CONVERT, Format.TEXT)
def text(r: dict[str, Any]) -> str:
    lines = [
        f"wrote {r['output']}: {r['precision']}, {r['size_bytes'] / 1024:.1f} KB "
        f"({r['gzip_bytes'] / 1024:.1f} KB gzipped), {r['seconds']:.1f} s"
    ]
    if r["check"]:
        worst = min(r["check"]["outputs"], key=lambda o: o["sqnr_db"])
        lines.append(
            f"check passed on {r['check']['samples']} samples{_on(r['check'])}: "
            f"SQNR {worst['sqnr_db']:.1f} dB, cosine {worst['cosine']:.5f}"
        )
    if ops := _float_ops(r):
        lines.append(f"ops left in float: {ops}")
    return "\n".join(lines)


@renders(View.CONVERT, Format.MARKDOWN)
def markdown(r: dict[str, Any]) -> str:
    lines = [
        f"# tfopt convert: `{r['output']}` ({r['precision']})",
        "",
        markdown_table(
            ["precision", "size KB", "gzip KB", "seconds"],
            [[r["precision"], r["size_bytes"] / 1024, r["gzip_bytes"] / 1024, r["seconds"]]],
        ),
    ]
    if r["check"]:
        rows = [[o["name"], o["max_abs"], o["sqnr_db"], o["cosine"]] for o in r["check"]["outputs"]]
        lines += [
            "",
            f"Check on {r['check']['samples']} samples:",
            "",
            markdown_table(["output", "max_abs", "sqnr_db", "cosine"], rows),
        ]
    if ops := _float_ops(r):
        lines += ["", f"Ops left in float: {ops}"]
    return "\n".join(lines) + "\n"


@renders(View.PLAN, Format.TEXT)
def plan_text(p: dict[str, Any]) -> str:
    """`convert --explain`: each decision of the export plan, with its reason where one is given."""
    shown = {k: v for k, v in p.items() if k not in ("reasons", "notes", "inputs")}
    inputs = ", ".join(f"{i['name']} {i['shape']} {i['dtype']}" for i in p["inputs"])
    lines = ["export plan (nothing converted or written):", f"  {'inputs':<22} {inputs}"]
    for key, value in shown.items():
        why = p["reasons"].get(key)
        lines.append(f"  {key:<22} {value}" + (f"  ({why})" if why else ""))
    lines += [f"  note: {n}" for n in p["notes"]]
    return "\n".join(lines)


@renders(View.PLAN, Format.MARKDOWN)
def plan_markdown(p: dict[str, Any]) -> str:
    """The export plan as a Markdown table: decision, value, reason."""
    inputs = ", ".join(f"`{i['name']}` {i['shape']} {i['dtype']}" for i in p["inputs"])
    rows = [["inputs", inputs, ""]] + [
        [k, f"`{v}`", p["reasons"].get(k, "")]
        for k, v in p.items() if k not in ("reasons", "notes", "inputs")
    ]  # fmt: skip
    notes = "".join(f"\n- {n}" for n in p["notes"])
    return f"# tfopt convert --explain\n\n{markdown_table(['decision', 'value', 'why'], rows)}{notes}\n"
