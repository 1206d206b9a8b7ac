"""Which ops LiteRT's GPU accelerator takes and which fall back to the CPU, per op type.

Host-side analysis: the device returns LiteRT's own verdict (unsupported op types with reasons and
the two op totals from its log, see `tfopt.runtime.gpu`); this module replays TFLite's
partitioning on the flatbuffer graph to say which ops those totals are.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from tfopt.flatbuffer import Op, model_root, operators
from tfopt.runtime.gpu import LITERT_OP_TOTALS


def model_graph(model_path: str | os.PathLike[str]) -> list[list[Op]]:
    """Per subgraph, in execution order: (op name, input tensors, output tensors, custom)."""
    return operators(model_root(Path(model_path).read_bytes()))


def _partitions(nodes: list[Op], unsupported: set[str]) -> list[tuple[bool, list[int]]]:
    """TFLite's partitioning: alternate maximal sets of ready supported / unsupported nodes."""
    producers = {t for op in nodes for t in op.outputs}
    available = {-1} | {t for op in nodes for t in op.inputs if t not in producers}
    left = list(range(len(nodes)))
    supported, stalled = True, 0
    parts: list[tuple[bool, list[int]]] = []
    while left:
        part: list[int] = []
        grew = True
        while grew:
            grew = False
            for i in list(left):
                name, ins, outs, _ = nodes[i]
                if (name not in unsupported) == supported and all(t in available for t in ins):
                    part.append(i)
                    left.remove(i)
                    available.update(outs)
                    grew = True
        if part:
            parts.append((supported, part))
            stalled = 0
        else:
            stalled += 1
            if stalled == 2:  # nothing is ready on either side: not a plain DAG, stop here
                break
        supported = not supported
    return parts


def op_placement(
    model_path: str | os.PathLike[str], verdict: dict[str, Any], fully: bool
) -> dict[str, Any]:
    """Which ops run on the GPU and which on the CPU, per op type.

    LiteRT logs only the unsupported op types and the two totals. The delegate then takes the
    largest partition of supported ops; we replay that partitioning on the model's graph and keep
    the per-op answer only labelled exact when it reproduces LiteRT's own totals.
    """
    unsupported = set(verdict["fallback_reasons"])
    gpu: dict[str, int] = {}
    cpu: dict[str, int] = {}
    for nodes in model_graph(model_path):
        if fully:
            on_gpu = set(range(len(nodes)))
        else:
            parts: list[list[int]] = [part for ok, part in _partitions(nodes, unsupported) if ok]
            on_gpu = set(max((len(part), part) for part in parts)[1]) if parts else set()
        for i, (name, *_) in enumerate(nodes):
            side = gpu if i in on_gpu else cpu
            side[name] = side.get(name, 0) + 1
    n_gpu, n_cpu = sum(gpu.values()), sum(cpu.values())
    if verdict["gpu_ops"] is None:
        exact = fully
    else:
        exact = (n_gpu, n_cpu) == (verdict["gpu_ops"], verdict["cpu_ops"])
    return {
        "op_placement": {
            "gpu": dict(sorted(gpu.items(), key=lambda kv: -kv[1])),
            "cpu": dict(sorted(cpu.items(), key=lambda kv: -kv[1])),
        },
        "op_placement_exact": exact,
        "gpu_op_count": verdict["gpu_ops"] if verdict["gpu_ops"] is not None else n_gpu,
        "cpu_op_count": verdict["cpu_ops"] if verdict["cpu_ops"] is not None else n_cpu,
    }


def with_op_placement(doc: dict[str, Any], model_path: str | os.PathLike[str]) -> dict[str, Any]:
    """A runtime GPU result with LiteRT's totals replaced, in place, by the per-op placement
    (`op_placement`, `op_placement_exact`, `gpu_op_count`, `cpu_op_count`). Other results are
    returned unchanged."""
    if LITERT_OP_TOTALS not in doc:
        return doc
    out: dict[str, Any] = {}
    for key, value in doc.items():
        if key != LITERT_OP_TOTALS:
            out[key] = value
            continue
        verdict = {
            "fallback_reasons": doc.get("fallback_reasons", {}),
            "gpu_ops": value["gpu"],
            "cpu_ops": value["cpu"],
        }
        out.update(op_placement(model_path, verdict, bool(doc.get("fully_accelerated"))))
    return out
