"""What both pruning implementations share (tfmot for tf_keras, native for Keras 3): which
layers to prune and the schedule in steps."""

from __future__ import annotations

from typing import Any

from tfopt.optimization.context import Context, StageError, matches
from tfopt.recipes import PruneStage, Unit


def select_layers(
    candidates: list[tuple[str, Any, int]], stage: PruneStage, kinds: str = "layer"
) -> tuple[list[tuple[str, Any]], list[str]]:
    """(name, layer) pairs to prune from (name, layer, input size) candidates, and notes on the
    ones left dense. Raises StageError if a layer named in `layers` cannot be M:N, or if none is
    left."""
    chosen, notes = [], []
    for name, layer, size in candidates:
        if (stage.layers and not matches(stage.layers, name)) or matches(stage.skip, name):
            continue
        if stage.policy == "xnnpack" and not is_pointwise_conv(layer):
            continue
        if stage.m_n and size % stage.m_n[1]:
            why = f"input size {size} is not a multiple of {stage.m_n[1]}"
            if stage.layers:
                raise StageError(f"prune {stage.m_by_n}: layer '{name}': {why}")
            notes.append(f"{name} left dense ({why})")
            continue
        chosen.append((name, layer))
    if not chosen:
        raise StageError(f"prune: no {kinds} to prune (check 'layers', 'skip' and 'policy')")
    if stage.policy == "xnnpack" and stage.sparsity <= 2 / 3:
        notes.append(
            "XNNPACK runs sparse only where more than 2/3 of the 1x1 weights are zero; "
            f"sparsity {stage.sparsity} keeps it dense"
        )
    return chosen, notes


def is_pointwise_conv(layer: Any) -> bool:
    """A 1x1 Conv2D: the only layer `policy: xnnpack` prunes (tfmot's PruneForLatencyOnXNNPack
    `allow_pruning`), in either Keras world."""
    return type(layer).__name__ == "Conv2D" and tuple(layer.kernel_size) == (1, 1)


def schedule_steps(ctx: Context, stage: PruneStage) -> tuple[int, int, int]:
    """(begin, end, frequency) in steps; frequency ~20 mask updates, so short fine-tunes prune."""
    spe, total = ctx.steps_per_epoch, ctx.steps_per_epoch * ctx.epochs_for(stage)
    scale = spe if stage.unit is Unit.EPOCHS else 1
    begin = int(stage.start * scale)
    end = int(stage.end * scale) if stage.end is not None else max(begin + 1, int(0.7 * total))
    if total and end > total:
        raise StageError(f"prune: end step {end} is past the fine-tune's last step {total}")
    return begin, end, max(1, (end - begin) // 20)
