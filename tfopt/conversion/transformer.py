"""Post-training full int8 for transformers: float kept where int8 breaks, chosen by measurement.

Measured on all-MiniLM-L6-v2 (BENCHMARKS.md §12), three things ruin a keras-hub encoder in full
int8, and each has its remedy here or in the export:
- the masked softmax's -1e9 fill takes the whole int8 range of the attention scores. A bounded
  fill (`keras_worlds.bounded_softmax_masks`) took mean cosine 0.25 -> 0.79; the search keeps the
  scores float instead, from the attention matmul through the additive mask to the softmax
  (`score_chains`), so no int8 scale sees the mask and no SELECT_V2 leaves XNNPACK;
- layer norms: their squared deviations span 1,000x between the outlier channels and the rest, so
  one int8 scale zeroes most of the variance;
- outlier channels in the residual stream (the feed-forward output and the residual adds reach
  60 where 99% of values stay under 2).
Which of these matter differs between models, so nothing is hard-coded: ops are grouped into
kinds by their Keras scope with layer numbers removed (`transformer_layer_#_#/feedforward_layer_norm_#`:
every block's second layer norm), scored on the calibration data against the float model, and kinds
are kept in float by forward selection (each round adds the kind that helps most next to those
already kept) until the outputs reach the gate. Everything else is int8, except the attention
matmuls, the score chains and softmax, which XNNPACK runs only in float. The LiteRT quantizer
calibrates once; each trial only re-quantizes.
"""

from __future__ import annotations

import contextlib
import io
import re
import tempfile
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from converters.aeq import recipe
from tfopt import flatbuffer
from tfopt.conversion.guards import aeq_session, quiet_stderr
from tfopt.core import Precision
from tfopt.data import Dataset
from tfopt.errors import ConversionError

GATE_COSINE = 0.99  # mean per-sample cosine of every output against the float model
PROBE_SAMPLES = 16  # calibration samples the trials are scored on
MASK_MARGIN = 12.0
# Ops whose int8 form LiteRT 2.3's XNNPACK does not run: the attention matmuls (two activations)
# and softmax fall to TFLite's reference kernels in int8 (31% and 7% of a full-int8 MiniLM run,
# BENCHMARKS.md §12) but run in XNNPACK in float, so they stay float: faster, and never worse.
XNNPACK_FLOAT_ONLY = ("BATCH_MATMUL", "SOFTMAX")
WEIGHTED = ("FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D")  # dynamic where kept out of int8
_FLOAT32 = 0  # TensorType.FLOAT32 in the TFLite schema


@dataclass
class Sensitivity:
    """What the search found: the int8-only score, each kind's score alone in float, the kinds
    kept in float (in the order they were added) and the final score."""

    int8_cosine: float
    alone: dict[str, float] = field(default_factory=dict)
    kept: list[str] = field(default_factory=list)
    cosine: float = 0.0
    float_ops: int = 0

    def summary(self) -> str:
        """One line for the user: what was kept out of int8 and what it bought."""
        if not self.kept:
            return f"int8: every op is int8 (output cosine {self.cosine:.4f} on the calibration data)"
        short = ", ".join(k.rsplit("/", 1)[-1] for k in self.kept)
        verdict = "" if self.cosine >= GATE_COSINE else f", short of the {GATE_COSINE} gate"
        return (
            f"int8: kept {self.float_ops} ops of {len(self.kept)} kinds out of int8 ({short}; "
            f"matmuls dynamic, the rest float): output cosine {self.int8_cosine:.4f} -> "
            f"{self.cosine:.4f} on the calibration data{verdict}"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "int8_cosine": round(self.int8_cosine, 5),
            "kept_float": self.kept,
            "cosine": round(self.cosine, 5),
            "float_ops": self.float_ops,
            "alone": {k: round(v, 5) for k, v in sorted(self.alone.items(), key=lambda kv: -kv[1])},
        }


def kind_of(scope: str) -> str:
    """An op's kind: its Keras scope (first output name, op part dropped, at most 3 levels) with
    layer numbers replaced by '#', so one kind covers the same op in every block."""
    parts = scope.split(";")[0].split("/")[:-1][:3]
    return re.sub(r"\d+", "#", "/".join(parts))


def op_kinds(float_model: bytes) -> dict[str, list[tuple[str, str]]]:
    """{kind: [(op type, scope regex) of each op]} over the main graph's ops with a named output."""
    model = flatbuffer.model_root(float_model)
    graph = model.Subgraphs(0)
    kinds: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for op in flatbuffer.operators(model)[0]:
        names = [graph.Tensors(t).Name().decode() for t in op.outputs if t >= 0]
        if names and kind_of(names[0]):
            kinds[kind_of(names[0])].append((op.name, "^" + re.escape(";".join(names) + ";")))
    return dict(kinds)


def score_chains(float_model: bytes) -> list[str]:
    """Scope regexes of the ops between an attention matmul and its SOFTMAX: the score scaling
    and the padding mask (`keras_worlds.additive_softmax_masks`: CAST, SUB, MUL, ADD). They stay
    float beside the float matmul and softmax, so the scores are one float XNNPACK run and the
    -3e4 of a masked position never meets an int8 scale. A softmax not fed by a BATCH_MATMUL of
    two activations (a classifier's) keeps nothing; the walk follows float tensors only (not the
    int32 shape arithmetic of a free-length graph) and never passes a weighted op."""
    model = flatbuffer.model_root(float_model)
    graph = model.Subgraphs(0)
    ops = flatbuffer.operators(model)[0]
    producer = {t: i for i, op in enumerate(ops) for t in op.outputs}
    floats = {t for t in producer if graph.Tensors(t).Type() == _FLOAT32}
    chained: set[int] = set()
    for softmax in (op for op in ops if op.name == "SOFTMAX"):
        seen: set[int] = set()
        attention = False
        todo = [t for t in softmax.inputs if t in floats]
        while todo:
            i = producer.get(todo.pop())
            if i is None or i in seen or ops[i].name in WEIGHTED:
                continue  # a graph input or constant, seen already, or a weighted op
            if ops[i].name == "BATCH_MATMUL":
                attention = attention or all(t in producer for t in ops[i].inputs[:2])
                continue
            seen.add(i)
            todo += [t for t in ops[i].inputs if t in floats]
        if attention:
            chained |= seen
    regexes = []
    for i in sorted(chained):
        names = [graph.Tensors(t).Name().decode() for t in ops[i].outputs if t >= 0]
        if names:
            regexes.append("^" + re.escape(";".join(names) + ";"))
    return regexes


def islands(
    kinds: dict[str, list[tuple[str, str]]], keep: list[str], chains: list[str] = ()
) -> list[dict[str, Any]]:
    """The int8 recipe with the `keep` kinds out of static int8: their matrix multiplications
    dynamic (int8 weights, activations quantized per run, float out: XNNPACK's fast path), the
    rest float; `XNNPACK_FLOAT_ONLY` ops and the `chains` feeding softmax float everywhere."""
    entries = recipe(Precision.INT8)
    entries += [
        {"regex": ".*", "operation": op, "algorithm_key": "no_quantize"} for op in XNNPACK_FLOAT_ONLY
    ]
    entries += [{"regex": r, "operation": "*", "algorithm_key": "no_quantize"} for r in chains]
    dynamic = recipe(Precision.DYNAMIC)[0]
    for kind in keep:
        for op, scope in kinds[kind]:
            if op in WEIGHTED:
                entries.append({**dynamic, "regex": scope, "operation": op})
            else:
                entries.append({"regex": scope, "operation": "*", "algorithm_key": "no_quantize"})
    return entries


def _cosine(ref: dict[str, np.ndarray], cand: dict[str, np.ndarray]) -> float:
    """The worst output's mean per-sample cosine (validate's measure)."""
    from tfopt.validate import cosine

    return min(cosine(r, cand[name]) for name, r in ref.items())


def _run(model: bytes, data: Dataset, work: Path) -> dict[str, np.ndarray]:
    from tfopt.validate import run_tflite

    path = work / "trial.tflite"
    path.write_bytes(model)
    return run_tflite(str(path), data)


def quantize_transformer(
    float_model: bytes, data: Dataset, gate: float = GATE_COSINE, debug: bool = False
) -> tuple[bytes, Sensitivity]:
    """Full int8 (a8w8, the LiteRT quantizer) of a float transformer, with the op kinds whose int8
    costs the most kept in float until every output's cosine to float reaches `gate`. One
    quantizer session calibrates once; each trial only re-quantizes."""
    kinds = op_kinds(float_model)
    chains = score_chains(float_model)
    probe = data.take(min(PROBE_SAMPLES, len(data)))
    session = aeq_session(float_model, Precision.INT8, data)
    with tempfile.TemporaryDirectory(prefix="tfopt-sens-") as tmp:
        work = Path(tmp)
        reference = _run(float_model, probe, work)
        with quiet_stderr(debug), contextlib.redirect_stdout(io.StringIO()):
            session.calibrate(Precision.INT8)

        def trial(keep: list[str]) -> tuple[bytes, float]:
            try:
                with quiet_stderr(debug), contextlib.redirect_stdout(io.StringIO()):
                    model = session.quantize_recipe(islands(kinds, keep, chains), "int8")
                return model, _cosine(reference, _run(model, probe, work))
            except Exception:  # noqa: BLE001 - a split the quantizer or LiteRT cannot run
                return b"", -1.0

        best, score = trial([])
        if not best:
            raise ConversionError("the LiteRT quantizer cannot quantize this model to int8")
        found = Sensitivity(int8_cosine=score, cosine=score)
        while score < gate and len(found.kept) < len(kinds):
            # Forward selection: a float island only helps when its neighbours are float too
            # (a float residual add feeding an int8 layer norm is re-quantized at once), so each
            # round scores every remaining kind next to the ones already kept.
            tried = {k: trial([*found.kept, k]) for k in kinds if k not in found.kept}
            if not found.alone:
                found.alone = {k: c for k, (_, c) in tried.items()}
            kind = max(tried, key=lambda k: tried[k][1])
            if tried[kind][1] < score - 0.05:
                break  # every further island costs quality: stop with what works
            found.kept.append(kind)
            best, score = tried[kind]
        found.cosine = score
        found.float_ops = sum(len(kinds[k]) for k in found.kept)
    return best, found
