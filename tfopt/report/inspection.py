"""Views of `inspect_tflite` (a `.tflite` file's anatomy) and of the GPU placement verdict."""

from __future__ import annotations

from typing import Any

from tfopt.report.registry import Format, View, renders
from tfopt.report.tables import counts, markdown_table

SOFTWARE_GPU = " (software GPU: placement and numerics are real, timings are not)"


def placement_lines(r: dict[str, Any]) -> list[str]:
    """GPU verdict as text: fully accelerated or not, op counts per side, fallback reasons."""
    lines = [
        f"GPU: {r.get('gpu_device')}{SOFTWARE_GPU if r.get('software_gpu') else ''}",
        f"fully accelerated: {'yes' if r['fully_accelerated'] else 'no'} - "
        f"{r['gpu_op_count']} ops on GPU, {r['cpu_op_count']} on CPU"
        + ("" if r["op_placement_exact"] else " (per-op split approximate)"),
        f"  on GPU: {counts(r['op_placement']['gpu']) or 'none'}",
        f"  on CPU: {counts(r['op_placement']['cpu']) or 'none'}",
    ]
    lines += [
        f"  fallback {op}: {why or '(LiteRT gives no reason)'}"
        for op, why in r["fallback_reasons"].items()
    ]
    return lines


def _io(t: dict[str, Any]) -> str:
    q = t["quantization"]
    qs = f"  scale={q['scale']:.6g} zero_point={q['zero_point']}" if q else ""
    return f"{t['name']}: {t['dtype']}{t['shape']}{qs}"


def _missing(r: dict[str, Any]) -> list[str]:
    if not r.get("missing_kernels"):
        return []
    names = ", ".join(r["missing_kernels"])
    return [f"no kernel in this LiteRT for: {names} (the app must register them to run the model)"]


def _headline(r: dict[str, Any]) -> str:
    return (
        f"{r['model']}: {r['size_bytes']:,} bytes ({r['gzip_bytes']:,} gzipped), "
        f"{r['subgraphs']} subgraph(s), signatures: {', '.join(r['signatures']) or '-'}"
    )


@renders(View.INSPECT, Format.TEXT)
def text(r: dict[str, Any]) -> str:
    return "\n".join(
        [
            _headline(r),
            "inputs:",
            *(f"  {_io(t)}" for t in r["inputs"]),
            "outputs:",
            *(f"  {_io(t)}" for t in r["outputs"]),
            f"ops: {counts(r['ops'])}",
            f"tensor dtypes: {counts(r['tensor_dtypes'])}",
            f"custom ops: {', '.join(r['custom_ops']) or 'none'}",
            *_missing(r),
            *(placement_lines(r["gpu"]) if "gpu" in r else []),
        ]
    )


@renders(View.INSPECT, Format.MARKDOWN)
def markdown(r: dict[str, Any]) -> str:
    def q(t: dict[str, Any]) -> str:
        return "" if not t["quantization"] else f"{t['quantization']['scale']:.6g}"

    def zp(t: dict[str, Any]) -> str:
        return "" if not t["quantization"] else str(t["quantization"]["zero_point"])

    tensors = [
        [side, t["name"], t["dtype"], str(t["shape"]), q(t), zp(t)]
        for side in ("inputs", "outputs")
        for t in r[side]
    ]
    ops = [[op, n] for op, n in r["ops"].items()]
    return "\n".join(
        [
            f"# tfopt inspect: {_headline(r)}",
            "",
            markdown_table(["", "tensor", "dtype", "shape", "scale", "zero point"], tensors),
            "",
            markdown_table(["op", "count"], ops),
            "",
            f"- tensor dtypes: {counts(r['tensor_dtypes'])}",
            f"- custom ops: {', '.join(r['custom_ops']) or 'none'}",
            *(f"- {line}" for line in _missing(r)),
            *(f"- {line.strip()}" for line in (placement_lines(r["gpu"]) if "gpu" in r else [])),
            "",
        ]
    )
