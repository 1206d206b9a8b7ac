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


def metadata_lines(m: dict[str, Any] | None) -> list[str]:
    """TFLite metadata as text: the model's fields, each described tensor, the packed files."""
    if not m:
        return ["metadata: none (tfopt metadata MODEL --labels ... --normalize ... -o OUT adds it)"]
    if "error" in m:
        return [f"metadata: unreadable ({m['error']})"]
    head = [f"{k}={m[k]}" for k in ("name", "version", "author", "license") if m.get(k)]
    lines = [f"metadata: {', '.join(head) or '(no name)'}"
             + (f" (parser >= {m['min_parser_version']})" if m.get("min_parser_version") else "")]  # fmt: skip
    if m.get("description"):
        lines.append(f"  description: {m['description']}")
    for side in ("inputs", "outputs"):
        for t in m.get(side, []):
            parts = [t.get("content", "")]
            if "normalization" in t:
                n = t["normalization"]
                parts.append(f"normalize (x - {_nums(n['mean'])}) / {_nums(n['std'])}")
            if "range" in t:
                parts.append(f"range {_nums(t['range'][0])}..{_nums(t['range'][1])}")
            for f in t.get("files", []):
                labels = ""
                if "count" in f:
                    more = ", ..." if f["count"] > 5 else ""
                    labels = f" ({f['count']}: {', '.join(f['labels'][:5])}{more})"
                missing = "" if f["packed"] else " NOT PACKED"
                parts.append(f"{f['type']} {f['name']}{labels}{missing}")
            described = f" - {t['description']}" if t.get("description") else ""
            lines.append(f"  {side[:-1]} {t.get('name')}: {'; '.join(p for p in parts if p)}{described}")
    packed = [f"{f['name']} ({f['bytes']:,} B)" for f in m.get("packed_files", [])]
    lines.append(f"  packed files: {', '.join(packed) or 'none'}")
    return lines


def _nums(values: list[float]) -> str:
    text = ":".join(f"{v:g}" for v in values)
    return text


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
            *metadata_lines(r.get("metadata")),
            *(placement_lines(r["gpu"]) if "gpu" in r else []),
            *_bundle_lines(r.get("bundle")),
        ]
    )


def _bundle_lines(bundle: dict[str, Any] | None) -> list[str]:
    if not bundle:
        return []
    meta = (bundle["llm_metadata"] or "").strip().splitlines()
    return [
        f"LiteRT-LM bundle: {', '.join(bundle['sections'])}; tokenizer {bundle['tokenizer']}",
        *(f"  {line}" for line in meta),
    ]


@renders(View.METADATA, Format.TEXT, Format.MARKDOWN)
def metadata_text(r: dict[str, Any]) -> str:
    lines = metadata_lines(r["metadata"])
    if r.get("output"):
        lines.insert(0, f"wrote {r['output']}: {r['size_bytes']:,} bytes")
    else:
        lines.insert(0, f"{r['model']}:")
    return "\n".join(lines)


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
            *(f"- {line.strip()}" for line in metadata_lines(r.get("metadata"))),
            *(f"- {line.strip()}" for line in (placement_lines(r["gpu"]) if "gpu" in r else [])),
            "",
        ]
    )
