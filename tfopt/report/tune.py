"""Views of a search (`TuneResult`): the winner, the presets beside it, every trial, and the
Pareto plot (latency x size, coloured by quality, the gate drawn, the winner marked)."""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

from tfopt.report.chart import plot_text, readable_log_axis, short_label, style
from tfopt.report.registry import Format, View, renders
from tfopt.report.tables import markdown_table, text_table


def _rt(rt: dict[str, Any] | None) -> str:
    if not rt:
        return "-"
    if rt["accelerator"] != "cpu":
        return rt["accelerator"]
    flags = f" {','.join(rt['cpu_options'])}" if rt.get("cpu_options") else ""
    return f"{rt['threads']}t" + ("" if rt["xnnpack"] else " no-xnnpack") + flags


def _measure(r: dict[str, Any]) -> str:
    return re.split(r"[<>]=?", r["goals"][0])[0]


def _trial_rows(r: dict[str, Any]) -> list[list[Any]]:
    m = _measure(r)
    rows = []
    for t in sorted(r["trials"], key=lambda t: (t["status"] != "ok", not t.get("passed"),
                                               t.get("p50_ms") or 1e18)):  # fmt: skip
        q = t.get("quality") or {}
        rows.append([
            t["variant"]["label"], t.get("phase", ""), t["status"],
            "yes" if t.get("passed") else "no", q.get(m),
            round(t["size_bytes"] / 1024, 1) if t.get("size_bytes") else None,
            t.get("p50_ms"), _rt(t.get("runtime")), (t.get("node") or "")[:8],
            t.get("reason", "")[:90],
        ])  # fmt: skip
    return rows


TRIAL_HEADERS = ["variant", "phase", "status", "meets", "quality", "KB", "p50_ms", "runtime",
                 "node", "reason"]  # fmt: skip


def _by_threads(p: dict[str, Any]) -> dict[str, Any]:
    """A preset's p50 (ms) by thread count (`p50_ms`, the old key, in a tune.json before it)."""
    return p.get("p50_ms_by_threads") or p["p50_ms"]


def _preset_rows(r: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    threads = list(_by_threads(r["presets"][0])) if r["presets"] else []
    headers = ["file", "KB", _measure(r), *[f"p50_ms {t}t" for t in threads],
               *[f"x winner {t}t" for t in threads]]  # fmt: skip
    rows = [
        [("winner: " if p["winner"] else "") + p["label"], round(p["size_bytes"] / 1024, 1),
         p["quality"].get(_measure(r)), *[_by_threads(p)[t] for t in threads],
         *[p["ratio_to_winner"][t] for t in threads]]
        for p in r["presets"]
    ]  # fmt: skip
    return headers, rows


def _headline(r: dict[str, Any]) -> str:
    w = r["winner"]
    cl = r["cluster"]
    head = (f"{r['trials_run']} trials run ({r['trials_resumed']} resumed) on {cl['nodes']} Ray "
            f"node(s) [{cl['address']}], {r['nodes_used']} used; {r['seconds']} s, "
            f"{r['trials_per_hour']} trials/hour")  # fmt: skip
    if not w:
        return head + "\nno variant meets " + " and ".join(r["goals"])
    return head + (
        f"\nwinner: {w['label']} at {_rt(w['runtime'])}: p50 {w['p50_ms']} ms, "
        f"{w['size_bytes'] / 1024:.1f} KB, {_measure(r)} {w['quality'].get(_measure(r))} "
        f"(goal {' and '.join(r['goals'])}, objective {r['objective']}, target {r['target']})"
    )


@renders(View.TUNE, Format.TEXT)
def text(r: dict[str, Any]) -> str:
    parts = [_headline(r)]
    if r["presets"]:
        parts.append("presets that meet the gate, timed beside the winner:")
        parts.append(text_table(*_preset_rows(r)))
    parts.append(text_table(TRIAL_HEADERS[:-1], [row[:-1] for row in _trial_rows(r)]))
    parts += [f"note: {n}" for n in r["notes"]]
    if r["winner"]:
        parts.append(f"wrote {r['out_dir']}/best.tflite, best.yaml, tune.json, tune.md, pareto.png")
    return "\n".join(parts)


@renders(View.TUNE, Format.MARKDOWN)
def markdown(r: dict[str, Any]) -> str:
    parts = [f"# tfopt tune: {r['model']}", "", _headline(r).replace("\n", "\n\n"), ""]
    if r["winner"]:
        parts += [f"Reproduce: `tfopt optimize {r['model']} --recipe best.yaml --data DATA -o DIR "
                  "--no-check` (the goal, not the precision's own tolerance, judged it)", ""]  # fmt: skip
    if r["presets"]:
        parts += ["## Presets that meet the gate, timed beside the winner", "",
                  markdown_table(*_preset_rows(r)), ""]  # fmt: skip
    if r["final"]:
        parts += ["## Front runners re-timed alone (interleaved, median)", "",
                  markdown_table(["variant", "runtime", "p50_ms", "repeats"],
                                 [[f["label"], _rt(f["runtime"]), f["p50_ms"],
                                   f.get("repeat_p50_ms")] for f in r["final"]]), ""]  # fmt: skip
    for s in r["sensitivity"]:
        parts += [f"## Sensitivity ({s['scheme']}, by {s['grouping']})", "",
                  f"All quantized: SQNR {s['all_quantized_sqnr_db']} dB against the float file.", "",
                  markdown_table(["group", "ops", "SQNR dB with it in float"],
                                 [[g["group"], g["ops"], g["sqnr_db_in_float"]]
                                  for g in s["ranking"][:12]]), ""]  # fmt: skip
    parts += ["## Every trial", "", markdown_table(TRIAL_HEADERS, _trial_rows(r)), ""]
    parts += [f"- {n}" for n in r["notes"]]
    return "\n".join(parts) + "\n"


@renders(View.TUNE, Format.PNG)
def pareto_png(r: dict[str, Any]) -> bytes:
    """Latency x size of every timed trial, coloured by the first goal's measure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with matplotlib.rc_context(style()):
        fig = pareto_figure(r)
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")  # the legend below too
        plt.close(fig)
    return buffer.getvalue()


def pareto_figure(r: dict[str, Any]) -> Any:
    """The Pareto plot as a matplotlib figure (its legend below the axes, clear of every point)."""
    import matplotlib.pyplot as plt

    m = _measure(r)
    goal = r["goals"][0]
    gate = float(re.split(r"[<>]=?", goal)[-1])
    pts = [t for t in r["trials"] if t.get("p50_ms") and (t.get("quality") or {}).get(m) is not None]
    fig, ax = plt.subplots(figsize=(8, 5.5))
    if pts:
        q = [t["quality"][m] for t in pts]
        lo, hi = min(q + [gate]), max(q + [gate])
        xs = [t["size_bytes"] / 1024 for t in pts]
        ys = [t["p50_ms"] for t in pts]
        sc = ax.scatter(xs, ys, c=q, cmap="viridis" if ">" in goal else "viridis_r", vmin=lo,
                        vmax=hi, s=[60 if t.get("passed") else 30 for t in pts],
                        marker="o", edgecolors=["black" if t.get("passed") else "none" for t in pts])  # fmt: skip
        bar = fig.colorbar(sc, ax=ax)
        bar.set_label(f"{m} (ringed: meets {goal})")
        bar.ax.axhline(gate, color="red", linewidth=2)
        bar.ax.text(0.5, gate, " gate", color="red", va="bottom", fontsize=8,
                    transform=bar.ax.get_yaxis_transform())  # fmt: skip
        passing = sorted((t for t in pts if t.get("passed")), key=lambda t: t["size_bytes"])
        front, best = [], float("inf")
        for t in passing:
            if t["p50_ms"] < best:
                front.append(t)
                best = t["p50_ms"]
        if front:
            ax.step([t["size_bytes"] / 1024 for t in front], [t["p50_ms"] for t in front],
                    where="post", color="grey", linewidth=1, label="Pareto front (meets gate)")  # fmt: skip
        for t in pts:
            ax.annotate(short_label(t["variant"]["label"], 40), (t["size_bytes"] / 1024,
                        t["p50_ms"]), fontsize=6, xytext=(3, 3), textcoords="offset points")  # fmt: skip
        w = r.get("winner")
        if w:
            won = plot_text(f"winner: {w['label']} ({_rt(w['runtime'])}), re-timed")
            ax.scatter([w["size_bytes"] / 1024], [w["p50_ms"]], marker="*", s=320, color="red",
                       label=won)  # fmt: skip
        if ax.get_legend_handles_labels()[0]:  # below the axes: it never covers a point
            ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=2)
        if max(ys) / max(min(ys), 1e-9) > 20:
            ax.set_yscale("log")
            readable_log_axis(ax.yaxis)
        if max(xs) / max(min(xs), 1e-9) > 20:
            ax.set_xscale("log")
            readable_log_axis(ax.xaxis)
    else:
        ax.text(0.5, 0.5, "no trial was timed", ha="center", transform=ax.transAxes)
    ax.set_xlabel("size (KB)")
    ax.set_ylabel(plot_text(f"p50 latency (ms), best runtime setting, on {r['target']}"))
    ax.set_title(plot_text(f"tfopt tune: {short_label(Path(r.get('model', '')).name, 40)}: "
                           f"{len(r['trials'])} trials, goal {' and '.join(r['goals'])}"),
                 fontsize=10)  # fmt: skip
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig
