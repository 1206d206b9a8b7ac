"""Structured (channel) pruning: remove whole filters, rebuild a smaller dense model, fine-tune.

Channels go by channel space (`channels_graph`): a residual group loses the same channels in every
branch, a depthwise conv and its BatchNorms lose the channels of the conv that feeds them, and the
next conv or Dense loses the matching input rows. A channel's score is the norm of its filter in
every producer (L1 or L2), scaled by the BatchNorm that follows the producer, each producer's
scores divided by their mean so that the members of a group count alike. The rebuilt model comes
from the original's config with fewer `filters`/`units`, so it is a plain Keras model of the same
classes in the same world: every later stage, the converter and `model.save` see an ordinary model.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tfopt.optimization.channels_graph import (
    DEPTHWISE,
    MERGES,
    PRODUCERS,
    Graph,
    build_graph,
    layer_macs,
    read_nodes,
)
from tfopt.optimization.context import Context, StageError, matches
from tfopt.optimization.training import model_args
from tfopt.recipes import ChannelsStage, Criterion

MAX_RATIO = 0.9  # the most of a group `macs` may remove
RECALIBRATION = 1024  # training samples whose statistics reset BatchNorm (batches of 64)
PLAIN = ("Functional", "Sequential")


@dataclass
class Model:
    """A Keras model read for channel pruning: its config (a copy), graph and layer shapes."""

    model: Any
    config: dict[str, Any]
    graph: Graph
    shapes: dict[str, tuple[tuple, tuple]]  # layer -> (input shape, output shape)
    sequential: bool


@dataclass
class ChannelPlan:
    """Kept channel indices per pruned space, the MACs before and after, notes."""

    keep: dict[int, np.ndarray]
    macs_before: int | None
    macs_after: int | None
    ratio: float
    notes: list[str] = field(default_factory=list)

    def removed(self, graph: Graph) -> tuple[int, int]:
        """(channels removed, channels in the pruned groups)."""
        total = sum(graph.spaces[s].size for s in self.keep)
        return total - sum(len(k) for k in self.keep.values()), total


def _shape(layer: Any, attr: str) -> tuple:
    try:
        value = getattr(layer, attr)
    except (AttributeError, ValueError):  # a layer called more than once has no single shape
        return ()
    shape = getattr(value, "shape", None)
    return tuple(shape) if shape is not None else ()


def read_model(model: Any) -> Model:
    """Graph and shapes of a Sequential or functional model (StageError for any other class)."""
    kind = type(model).__name__
    if kind not in PLAIN:
        raise StageError(
            f"channels: needs a Sequential or functional Keras model, not a {kind} (subclassed "
            "models and keras-hub tasks have no layer graph to prune)"
        )
    config = copy.deepcopy(model.get_config())
    nodes, outputs = read_nodes(config, kind == "Sequential")
    shapes = {y.name: (_shape(y, "input"), _shape(y, "output")) for y in model.layers}
    graph = build_graph(nodes, outputs, {n: s[1] for n, s in shapes.items()})
    return Model(model, config, graph, shapes, kind == "Sequential")


def _count(m: Model, sizes: dict[int, int]) -> int | None:
    """MACs of every Conv/Dense/depthwise layer with the given space sizes; None when a layer's
    shape is free (a MAC count of such a model depends on the input) or unknown."""
    total = 0
    for name, node in m.graph.nodes.items():
        if node.cls not in PRODUCERS | DEPTHWISE:
            continue
        shape_in, shape_out = m.shapes.get(name, ((), ()))
        if not shape_in or not shape_out or any(d is None for d in shape_out[1:] + shape_in[1:]):
            return None
        space_out = m.graph.out_space[name]
        cout = sizes.get(space_out, int(shape_out[-1]))
        space_in = m.graph.in_space(name)
        cin = sizes.get(space_in.id, int(shape_in[-1])) if space_in else int(shape_in[-1])
        total += layer_macs(node.cls, node.config, shape_out, cin, cout)
    return total


def count_macs(model: Any) -> int | None:
    """Multiply-adds of one sample through the model's Conv, depthwise and Dense layers, or None
    when they cannot be counted (free input sizes, a subclassed model, wrapped layers)."""
    if type(model).__name__ not in PLAIN:
        return None
    try:
        m = read_model(model)
    except (KeyError, TypeError, ValueError):  # a config tfopt cannot read
        return None
    for layer in model.layers:
        node = m.graph.nodes.get(layer.name)
        if node and layer.weights and node.cls not in PRODUCERS | DEPTHWISE and not _carried(node):
            return None  # a layer with weights whose cost is unknown (LSTM, attention, wrappers)
    return _count(m, {})


def _carried(node: Any) -> bool:
    return node.cls in ("BatchNormalization", "PReLU", "LayerNormalization", "Embedding")


def _producer_scores(m: Model, name: str, criterion: Criterion) -> np.ndarray:
    layer = m.model.get_layer(name)
    kernel = np.asarray(layer.get_weights()[0])
    flat = kernel.reshape(-1, kernel.shape[-1])
    norms = np.abs(flat).sum(0) if criterion is Criterion.L1 else np.sqrt((flat**2).sum(0))
    for other in m.graph.nodes.values():
        if other.cls == "BatchNormalization" and other.inputs == [name]:
            norms = norms * _bn_scale(m.model.get_layer(other.name))
            break
    mean = float(norms.mean())
    return norms / mean if mean > 0 else norms


def _bn_scale(bn: Any) -> np.ndarray:
    """|gamma| / sqrt(moving variance + epsilon) of a BatchNormalization layer."""
    by_name = {str(getattr(w, "path", None) or w.name).split(":")[0].split("/")[-1]: w
               for w in bn.weights}  # fmt: skip
    var = np.asarray(by_name["moving_variance"])
    gamma = np.asarray(by_name["gamma"]) if "gamma" in by_name else np.ones_like(var)
    return np.abs(gamma) / np.sqrt(var + bn.epsilon)


def kept(n: int, ratio: float, stage: ChannelsStage) -> int:
    """How many of `n` channels a group keeps at `ratio`."""
    want = math.ceil(n * (1 - ratio) / stage.multiple) * stage.multiple
    return min(n, max(stage.min_channels, want))


def _sizes(m: Model, spaces: list[int], ratio: float, stage: ChannelsStage) -> dict[int, int]:
    return {s: kept(m.graph.spaces[s].size, ratio, stage) for s in spaces}


def _ratio_for(m: Model, spaces: list[int], stage: ChannelsStage, before: int) -> float:
    """The smallest ratio whose kept channels remove `stage.macs` of the MACs."""
    target = before * (1 - float(stage.macs))  # type: ignore[arg-type]
    most = _count(m, _sizes(m, spaces, MAX_RATIO, stage)) or 0
    if most > target:
        raise StageError(
            f"channels: macs={stage.macs} is out of reach; removing {MAX_RATIO:.0%} of every "
            f"prunable group cuts {1 - most / before:.1%} of the MACs"
        )
    low, high = 0.0, MAX_RATIO
    for _ in range(30):
        mid = (low + high) / 2
        if (_count(m, _sizes(m, spaces, mid, stage)) or 0) <= target:
            high = mid
        else:
            low = mid
    return high


def plan_channels(m: Model, stage: ChannelsStage) -> ChannelPlan:
    """Which channels each prunable group keeps (StageError when none can go)."""
    notes, spaces, residual = [], [], 0
    for space in m.graph.prunable():
        skipped = [p for p in space.producers if matches(stage.skip, p)]
        if not stage.residual and any(m.graph.nodes[n].cls in MERGES for n in space.members):
            residual += 1
        elif skipped:
            notes.append(f"channels of {skipped[0]} kept (skip)")
        else:
            spaces.append(space.id)
    if residual:
        notes.append(f"{residual} residual group(s) kept whole (set residual: true to prune them)")
    if not spaces:
        raise StageError(
            "channels: no prunable channel group (every Conv/Dense output reaches a model output, "
            "a skipped layer or a layer whose channels tfopt cannot follow, e.g. Flatten, Reshape, "
            "Concatenate)"
        )
    before = _count(m, {})
    if stage.macs is not None and before is None:
        raise StageError(
            "channels: macs needs a model with fixed input sizes to count MACs; set ratio instead"
        )
    ratio = float(stage.ratio) if stage.ratio is not None else _ratio_for(m, spaces, stage, before)  # type: ignore[arg-type]
    keep: dict[int, np.ndarray] = {}
    for s in spaces:
        space = m.graph.spaces[s]
        n_keep = kept(space.size, ratio, stage)
        if n_keep >= space.size:
            continue
        score = sum(_producer_scores(m, p, stage.criterion) for p in space.producers)
        keep[s] = np.sort(np.argsort(-np.asarray(score), kind="stable")[:n_keep])
    if not keep:
        raise StageError(
            f"channels: ratio {ratio:.2f} removes no channel (groups are too small for "
            f"multiple={stage.multiple}, min_channels={stage.min_channels})"
        )
    after = _count(m, {s: len(k) for s, k in keep.items()})
    fixed = sorted({s.fixed for s in m.graph.spaces.values()
                    if s.fixed and s.producers and not s.fixed.startswith("model output")})  # fmt: skip
    if fixed:
        notes.append(f"{len(fixed)} channel group(s) kept whole: {'; '.join(fixed[:3])}")
    return ChannelPlan(keep, before, after, ratio, notes)


def _sliced(cls: str, weights: list[np.ndarray], keep_in: Any, keep_out: Any) -> list[np.ndarray]:
    """A layer's weights with the removed channels taken out (kernel: input rows on axis -2,
    output channels on the last axis; every 1-D weight by output channel)."""
    out = []
    for w in weights:
        if cls in PRODUCERS and w.ndim >= 2:
            w = w if keep_in is None else np.take(w, keep_in, axis=-2)
            w = w if keep_out is None else np.take(w, keep_out, axis=-1)
        elif cls in DEPTHWISE and w.ndim >= 2:
            w = w if keep_out is None else np.take(w, keep_out, axis=-2)
        elif keep_out is not None and w.shape and w.shape[-1] != len(keep_out):
            w = np.take(w, keep_out, axis=-1)
        out.append(w)
    return out


def rebuild(m: Model, plan: ChannelPlan) -> Any:
    """The smaller model: the config with fewer filters/units, the kept weights copied in."""
    config = copy.deepcopy(m.config)
    for entry in config["layers"]:
        entry.pop("build_config", None)  # Keras 3 would build layers at the old widths
        name = entry["config"]["name"]
        space = m.graph.out_space.get(name)
        if space in plan.keep and entry["class_name"] in PRODUCERS:
            key = "units" if entry["class_name"] == "Dense" else "filters"
            entry["config"][key] = len(plan.keep[space])
    small = type(m.model).from_config(config)
    for layer in small.layers:
        weights = m.model.get_layer(layer.name).get_weights()
        if not weights:
            continue
        space_in = m.graph.in_space(layer.name) if layer.name in m.graph.nodes else None
        keep_in = plan.keep.get(space_in.id) if space_in else None
        keep_out = plan.keep.get(m.graph.out_space.get(layer.name, -1))
        cls = m.graph.nodes[layer.name].cls if layer.name in m.graph.nodes else ""
        layer.set_weights(_sliced(cls, weights, keep_in, keep_out))
    return small


def recalibrate(model: Any, x: dict[str, np.ndarray], batch: int = 64) -> int:
    """Re-estimate every BatchNorm's moving mean and variance as the average over training-mode
    passes on `x` (at most RECALIBRATION samples); returns the number of BatchNorm layers.

    Removing the channels a layer reads changes what it writes, so the statistics its BatchNorm
    learned are stale; with keras.applications' momentum of 0.999 a short fine-tune would not
    move them, and the model would be judged (and converted) with the wrong ones.
    """
    bns = [y for y in model.layers if type(y).__name__ == "BatchNormalization"]
    momenta = [b.momentum for b in bns]
    n = min(RECALIBRATION, len(next(iter(x.values()))))
    try:
        for i, start in enumerate(range(0, n if bns else 0, batch)):
            for b in bns:
                b.momentum = i / (i + 1)  # a running average over the batches
            model(model_args(model, {k: v[start : start + batch] for k, v in x.items()}),
                  training=True)  # fmt: skip
    finally:
        for b, momentum in zip(bns, momenta, strict=True):
            b.momentum = momentum
    return len(bns)


def channels(ctx: Context, stage: ChannelsStage) -> dict[str, Any]:
    """The stage runner (both Keras worlds): plan, rebuild, BatchNorm statistics re-estimated,
    fine-tune, statistics re-estimated for the fine-tuned weights."""
    m = read_model(ctx.model)
    plan = plan_channels(m, stage)
    ctx.model = rebuild(m, plan)
    recalibrate(ctx.model, ctx.data.train.x)
    removed, total = plan.removed(m.graph)
    macs = ""
    if plan.macs_before and plan.macs_after is not None:
        macs = f", MACs -{1 - plan.macs_after / plan.macs_before:.0%}"
    desc, loss, targets = f"channels -{removed / total:.0%}{macs}", None, None
    if stage.learns_from_teacher and ctx.epochs_for(stage):
        from tfopt.optimization.native import student_of_teacher

        loss, targets = student_of_teacher(ctx, stage.temperature, stage.alpha)
        desc += ", distilled"
    ctx.fine_tune(ctx.model, stage, desc, loss=loss, y=targets)
    if ctx.epochs_for(stage):
        recalibrate(ctx.model, ctx.data.train.x)
    return {
        "ratio": round(plan.ratio, 4),
        "groups": len(plan.keep),
        "channels_removed": removed,
        "channels_in_groups": total,
        "macs_before": plan.macs_before,
        "macs_after": plan.macs_after,
        "distilled": {"alpha": stage.alpha, "temperature": stage.temperature} if stage.alpha else None,
        "notes": plan.notes,
    }
