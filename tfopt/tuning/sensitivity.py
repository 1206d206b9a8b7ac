"""Per-op sensitivity: which op groups a quantization scheme hurts most, so that the search keeps
the fewest of them in float.

Ops are grouped by their Keras layer (the op output's scope); in a model with repeated blocks
(more than `MAX_GROUPS` layers) by kind, with block numbers removed, so that one group is the same
op in every block (`conversion.transformer.kind_of`). Each group is scored by quantizing the
model with that group alone left in float (one LiteRT-quantizer session: it calibrates once, each
score only re-quantizes) and measuring the worst output's SQNR against the float file on a probe
of the held-out data. Groups are ranked by how much keeping them in float helps.
"""

from __future__ import annotations

import contextlib
import io
import re
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from tfopt.data import Dataset

MAX_GROUPS = 24
PROBE = 32


def groups(float_model: bytes) -> tuple[str, dict[str, list[str]]]:
    """('layer' or 'kind', {group: [scope regex of each op]}) over the main graph's ops with a
    named output."""
    from tfopt import flatbuffer
    from tfopt.conversion.transformer import op_kinds

    model = flatbuffer.model_root(float_model)
    graph = model.Subgraphs(0)
    by_layer: dict[str, list[str]] = defaultdict(list)
    for op in flatbuffer.operators(model)[0]:
        names = [graph.Tensors(t).Name().decode() for t in op.outputs if t >= 0]
        layer = "/".join(names[0].split(";")[0].split("/")[:-1][:3]) if names else ""
        if layer:
            by_layer[layer].append("^" + re.escape(";".join(names) + ";"))
    if len(by_layer) <= MAX_GROUPS:
        return "layer", dict(by_layer)
    return "kind", {k: [regex for _, regex in ops] for k, ops in op_kinds(float_model).items()}


def rank(float_model: bytes, scheme: str, calibration: Dataset, probe: Dataset) -> dict[str, Any]:
    """Groups ranked most sensitive first, with each one's score (worst-output SQNR, dB, with the
    group in float) and the all-quantized score."""
    from tfopt.conversion.guards import aeq_session, quiet_stderr
    from tfopt.core import Precision
    from tfopt.validate import run_tflite
    from tfopt.validate import sqnr_db as _sqnr_db

    grouping, found = groups(float_model)
    probe = probe.take(PROBE)
    prec = Precision(scheme)
    session = aeq_session(float_model, prec, calibration)  # calibrates once, on the first scheme
    with tempfile.TemporaryDirectory(prefix="tfopt-sens-") as tmp:
        work = Path(tmp)
        (work / "float.tflite").write_bytes(float_model)
        reference = run_tflite(str(work / "float.tflite"), probe)

        def score(model: bytes) -> float:
            (work / "q.tflite").write_bytes(model)
            out = run_tflite(str(work / "q.tflite"), probe)
            return min(_sqnr_db(r, out[n]) for n, r in reference.items())

        with quiet_stderr(), contextlib.redirect_stdout(io.StringIO()):
            all_q = score(session.quantize(prec))
            scores: dict[str, float] = {}
            for name, regexes in found.items():
                try:
                    scores[name] = score(session.quantize(prec, regexes))
                except Exception:  # noqa: BLE001 - a split the quantizer or LiteRT cannot run
                    scores[name] = float("-inf")
    order = sorted(found, key=lambda g: -scores[g])
    return {
        "scheme": scheme,
        "grouping": grouping,
        "all_quantized_sqnr_db": round(all_q, 3),
        "ranking": [{"group": g, "ops": len(found[g]), "sqnr_db_in_float": round(scores[g], 3)
                     if np.isfinite(scores[g]) else None} for g in order],  # fmt: skip
        "groups": [found[g] for g in order],
    }
