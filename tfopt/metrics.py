"""Comparison metrics: how close a candidate's outputs are to a reference's, as plain numpy.

`METRICS` registers the measures of every output pair (exactly `OutputDiff`'s metric fields);
`sentence_embeddings` and `embedding_agreement` are the embedding mode's. `tfopt.validate` runs
models and turns these into a `CompareResult`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, fields

import numpy as np

from tfopt.errors import ValidationError, option

Metric = Callable[[np.ndarray, np.ndarray], float]


def max_abs(ref: np.ndarray, cand: np.ndarray) -> float:
    return float(np.max(np.abs(ref - cand)))


def mean_abs(ref: np.ndarray, cand: np.ndarray) -> float:
    return float(np.mean(np.abs(ref - cand)))


def sqnr_db(ref: np.ndarray, cand: np.ndarray) -> float:
    """Signal-to-quantization-noise ratio in dB, clipped to +-200 (200 means identical)."""
    signal = float(np.sum(ref.astype(np.float64) ** 2))
    noise = float(np.sum((ref.astype(np.float64) - cand) ** 2))
    if noise == 0.0:
        return 200.0
    if signal == 0.0:
        return -200.0
    return max(-200.0, min(200.0, 10 * math.log10(signal / noise)))


def cosine(ref: np.ndarray, cand: np.ndarray) -> float:
    """Mean per-sample cosine similarity of the flattened outputs."""
    a = ref.reshape(len(ref), -1).astype(np.float64)
    b = cand.reshape(len(cand), -1).astype(np.float64)
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    same = np.all(a == b, axis=1)
    cos = np.where(norms > 0, np.sum(a * b, axis=1) / np.where(norms > 0, norms, 1), 0.0)
    return float(np.mean(np.where(same, 1.0, cos)))


@dataclass(frozen=True)
class OutputDiff:
    name: str
    candidate_name: str
    shape: list[int]
    max_abs: float
    mean_abs: float
    sqnr_db: float
    cosine: float
    # False when the reference gives (almost) the same output for every sample: a random-weight
    # or untrained model, where SQNR/cosine say nothing about the conversion.
    reference_varies: bool = True
    # Class-score outputs only (`class_scores`): argmax agreement, and accuracy against labels.
    top1_agreement: float | None = None
    accuracy: dict[str, float] | None = None


# The metrics of every output pair: exactly OutputDiff's metric fields (a new metric is a new
# field there and an entry here; the check below fails at import if the two drift apart).
METRICS: dict[str, Metric] = {
    "max_abs": max_abs,
    "mean_abs": mean_abs,
    "sqnr_db": sqnr_db,
    "cosine": cosine,
}
_FIELDS = [f.name for f in fields(OutputDiff)]
assert _FIELDS[3 : 3 + len(METRICS)] == list(METRICS), "METRICS and OutputDiff disagree"


def varies(ref: np.ndarray) -> bool:
    """True if the reference output differs between samples by more than float noise."""
    if len(ref) < 2:
        return True
    flat = ref.reshape(len(ref), -1).astype(np.float64)
    spread = float(np.max(flat.max(0) - flat.min(0)))
    return spread > 1e-6 * max(float(np.max(np.abs(flat))), 1e-12)


def sentence_embeddings(
    outputs: dict[str, np.ndarray], mask: np.ndarray | None, pooling: str
) -> np.ndarray:
    """One L2-normalized vector per sample: mean over unmasked tokens, the first token, or a
    model's own pooled output."""
    if pooling == "pooled":
        if "pooled_output" not in outputs:
            raise ValidationError(f"{option('pooling')} pooled needs a 'pooled_output' output")
        vectors = outputs["pooled_output"]
    else:
        seq = outputs.get("sequence_output")
        if seq is None:
            seq = next(v for v in outputs.values() if v.ndim == 3)
        if pooling == "cls":
            vectors = seq[:, 0]
        else:
            weights = (
                np.ones(seq.shape[:2], np.float32) if mask is None else mask.astype(np.float32)
            )
            vectors = (seq * weights[..., None]).sum(1) / np.maximum(
                weights.sum(1, keepdims=True), 1
            )
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


def embedding_agreement(ref: np.ndarray, cand: np.ndarray) -> dict[str, float]:
    """Cosine of each candidate embedding to its reference, and nearest-neighbour agreement."""
    cos = np.sum(ref * cand, axis=1)
    out = {"mean_cosine": float(cos.mean()), "worst_cosine": float(cos.min())}
    if len(ref) > 2:
        sim_r, sim_c = ref @ ref.T, cand @ cand.T
        np.fill_diagonal(sim_r, -np.inf)
        np.fill_diagonal(sim_c, -np.inf)
        out["neighbour_agreement"] = float(np.mean(sim_r.argmax(1) == sim_c.argmax(1)))
    return out
