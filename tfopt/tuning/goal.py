"""Quality gates (`cosine>=0.995`) and the measures they read, computed on the real `.tflite`.

A goal names one measure of the converted file against the source model on held-out data, a
comparison and a number. Every measure that applies is computed for every trial, so the report
shows all of them; the goals decide which trials pass.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from tfopt.errors import InputError, option

if TYPE_CHECKING:
    from tfopt.evaluation import Evaluation


@dataclass(frozen=True)
class Measure:
    """A quality measure: which way is better and what it means."""

    higher_is_better: bool
    help: str


MEASURES: dict[str, Measure] = {
    "top1_drop": Measure(False, "source accuracy minus .tflite accuracy on the labels y "
                                "(1 - top-1 agreement without labels)"),
    "accuracy": Measure(True, ".tflite top-1 accuracy on the labels y"),
    "top1": Measure(True, "top-1 agreement between the source and the .tflite"),
    "cosine": Measure(True, "mean cosine to the source: sentence embeddings for an encoder, "
                            "else the worst output's per-sample cosine"),
    "sqnr_db": Measure(True, "the worst output's signal-to-quantization-noise ratio (dB)"),
    "same_nearest": Measure(True, "share of samples whose nearest neighbour is the same as "
                                  "with the source's embeddings"),
}
_OPS: dict[str, Callable[[float, float], bool]] = {
    "<=": operator.le, ">=": operator.ge, "<": operator.lt, ">": operator.gt,
}
_GOAL = re.compile(r"\s*([a-z0-9_]+)\s*(<=|>=|<|>)\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:e[-+]?\d+)?)\s*")


@dataclass(frozen=True)
class Goal:
    measure: str
    op: str
    value: float

    def met(self, quality: dict[str, float | None]) -> bool:
        got = quality.get(self.measure)
        return got is not None and _OPS[self.op](float(got), self.value)

    def __str__(self) -> str:
        return f"{self.measure}{self.op}{format(self.value, '.15g')}"


def parse_goal(text: str) -> Goal:
    """'cosine>=0.995' -> Goal; anything else is one line naming what is allowed."""
    m = _GOAL.fullmatch(text)
    allowed = ", ".join(MEASURES)
    if not m:
        raise InputError(
            f"{option('goal')} '{text}': write MEASURE>=NUMBER or MEASURE<=NUMBER, e.g. cosine>=0.995 "
            f"(measures: {allowed})"
        )
    name, op, value = m.group(1), m.group(2), float(m.group(3))
    if name not in MEASURES:
        raise InputError(f"{option('goal')} '{text}': unknown measure '{name}' (measures: {allowed})")
    better_high = MEASURES[name].higher_is_better
    if better_high != op.startswith(">"):
        want = ">=" if better_high else "<="
        raise InputError(f"{option('goal')} '{text}': {name} is a {'floor' if better_high else 'ceiling'}; "
                         f"write {name}{want}{value:g}")
    return Goal(name, op, value)


def closeness(goals: list[Goal], quality: dict[str, float | None]) -> float:
    """How far the worst goal is from being met, in its own units (<= 0: met). Ranks failed
    trials so that the error for 'no variant meets the goal' can name the best one reached."""
    worst = -np.inf
    for g in goals:
        got = quality.get(g.measure)
        if got is None:
            return np.inf
        gap = g.value - float(got) if MEASURES[g.measure].higher_is_better else float(got) - g.value
        worst = max(worst, gap)
    return float(worst)


def measurable(goals: list[Goal], has_labels: bool, embedding: bool,
               reachable: dict[str, float | None] | None = None) -> None:  # fmt: skip
    """Refuse a goal the data cannot measure, before any trial runs; `reachable` is the quality
    of the reference against itself (a measure it leaves None never applies to this model)."""
    for g in goals:
        if g.measure == "accuracy" and not has_labels:
            raise InputError(f"{option('goal')} {g}: accuracy needs labels 'y' in {option('data')}")
        if g.measure == "same_nearest" and not embedding:
            raise InputError(
                f"{option('goal')} {g}: same_nearest compares embeddings; the model is not an encoder with "
                "a sequence output and a padding_mask input (use cosine or sqnr_db)"
            )
        if reachable is not None and reachable.get(g.measure) is None:
            raise InputError(f"{option('goal')} {g}: {g.measure} does not apply to this model's outputs "
                             "(top1 and top1_drop need an output of class scores, (samples, classes))")


def quality(
    judged: Evaluation,
    embedding: dict[str, Any] | None = None,
    ref: dict[str, np.ndarray] | None = None,
    cand: dict[str, np.ndarray] | None = None,
) -> dict[str, float | None]:
    """Every measure that applies: the spine's figures of `judged` (`Evaluation.quality`), and for
    an encoder (`embedding`: its padding mask and pooling) cosine and same_nearest on sentence
    embeddings of the source's outputs `ref` and the file's `cand`."""
    from tfopt.validate import embedding_agreement, sentence_embeddings

    out: dict[str, float | None] = {**judged.quality(), "same_nearest": None}
    if embedding is not None:
        assert ref is not None and cand is not None, "an encoder is judged on its outputs"
        pooling, mask = embedding["pooling"], embedding.get("mask")
        agree = embedding_agreement(
            sentence_embeddings(ref, mask, pooling), sentence_embeddings(cand, mask, pooling)
        )
        out["cosine"] = round(agree["mean_cosine"], 6)
        out["same_nearest"] = agree.get("neighbour_agreement")
    return out
