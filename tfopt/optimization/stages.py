"""Which runner applies each stage kind in each Keras world."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tfopt.optimization import channels, lowrank, native, qat_keras3, tfmot_stages
from tfopt.optimization.context import Context, World
from tfopt.recipes import StageKind

Runner = Callable[[Context, Any], dict[str, Any]]
RUNNERS: dict[tuple[StageKind, World], Runner] = {
    (StageKind.PRUNE, World.TF_KERAS): tfmot_stages.prune,
    (StageKind.PRUNE, World.KERAS3): native.prune,
    (StageKind.CHANNELS, World.TF_KERAS): channels.channels,
    (StageKind.CHANNELS, World.KERAS3): channels.channels,
    (StageKind.CLUSTER, World.TF_KERAS): tfmot_stages.cluster,
    (StageKind.QAT, World.TF_KERAS): tfmot_stages.qat,
    (StageKind.QAT, World.KERAS3): qat_keras3.qat,
    (StageKind.LOWRANK, World.TF_KERAS): lowrank.lowrank,
    (StageKind.LOWRANK, World.KERAS3): lowrank.lowrank,
    (StageKind.DISTILL, World.TF_KERAS): native.distill,
    (StageKind.DISTILL, World.KERAS3): native.distill,
}


def run_stage(ctx: Context, stage: Any) -> dict[str, Any]:
    """Apply `stage` to `ctx.model`; a Keras 3 model is first rebuilt as tf_keras when only
    tfmot runs this kind of stage (`Context.rebuild_as_tf_keras`)."""
    if (stage.kind, ctx.world) not in RUNNERS and ctx.world is World.KERAS3:
        ctx.rebuild_as_tf_keras(str(stage.kind))
    return RUNNERS[(stage.kind, ctx.world)](ctx, stage)
