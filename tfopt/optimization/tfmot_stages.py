"""tf_keras stages through tensorflow-model-optimization: prune (incl. M:N), cluster, QAT.

Every stage strips its wrappers when it ends, as tfmot's collaborative-optimization guides do, so
the next stage starts from a plain model; QAT then picks the scheme that preserves what earlier
stages made: PQAT after pruning, CQAT after clustering, PCQAT after both.
"""

from __future__ import annotations

from typing import Any

from tfopt import keras_worlds
from tfopt.errors import first_line
from tfopt.keras_worlds import World
from tfopt.optimization.context import Context, StageError, kernel_stats, matches
from tfopt.optimization.pruning import schedule_steps, select_layers
from tfopt.recipes import ClusterStage, PruneStage, QatStage, Schedule


def tfmot() -> Any:
    keras_worlds.tf()
    import tensorflow_model_optimization

    return tensorflow_model_optimization


def _prunable(layer: Any) -> bool:
    from tensorflow_model_optimization.python.core.sparsity.keras.prune_registry import (
        PruneRegistry,
    )

    return bool(layer.weights) and hasattr(layer, "kernel") and PruneRegistry.supports(layer)


def input_size(layer: Any) -> int:
    """The size of the axis M:N blocks run along: the kernel's input channels."""
    return int(layer.kernel.shape[-2])


def prune(ctx: Context, stage: PruneStage) -> dict[str, Any]:
    t = tfmot()
    keras = keras_worlds.module(World.TF_KERAS)
    if stage.policy == "xnnpack":
        check_xnnpack_layout(t, ctx.model)
    candidates = [(x.name, x, input_size(x)) for x in ctx.model.layers if _prunable(x)]
    pairs, notes = select_layers(candidates, stage)
    chosen = [layer for _, layer in pairs]
    begin, end, freq = schedule_steps(ctx, stage)
    if stage.schedule is Schedule.POLYNOMIAL:
        sched = t.sparsity.keras.PolynomialDecay(0.0, stage.sparsity, begin, end, frequency=freq)
    else:
        sched = t.sparsity.keras.ConstantSparsity(stage.sparsity, begin, end, frequency=freq)
    names = {layer.name for layer in chosen}

    def wrap(layer: Any) -> Any:
        if layer.name not in names:
            return layer
        return t.sparsity.keras.prune_low_magnitude(
            layer, pruning_schedule=sched, block_size=stage.block_size, sparsity_m_by_n=stage.m_n
        )

    wrapped = keras.models.clone_model(ctx.model, clone_function=wrap)
    ctx.fine_tune(wrapped, stage, "prune", callbacks=[t.sparsity.keras.UpdatePruningStep()])
    ctx.model = t.sparsity.keras.strip_pruning(wrapped)
    ctx.pruned = True
    return {
        "pruned_layers": sorted(names),
        "schedule": {"begin_step": begin, "end_step": end, "frequency": freq},
        "notes": notes,
    }


def check_xnnpack_layout(t: Any, model: Any) -> None:
    """tfmot's PruneForLatencyOnXNNPack check: a layout XNNPACK's sparse NCHW path can run
    (3x3 stride-2 first convolution after ZeroPadding2D(1), supported layers up to a
    GlobalAveragePooling2D(keepdims=True)). Raises StageError with tfmot's reason."""
    try:
        t.sparsity.keras.PruneForLatencyOnXNNPack().ensure_model_supports_pruning(model)
    except ValueError as exc:
        raise StageError(
            f"prune policy xnnpack: the model does not fit XNNPACK's sparse path ({first_line(exc)})"
        ) from None


def cluster(ctx: Context, stage: ClusterStage) -> dict[str, Any]:
    t = tfmot()
    keras = keras_worlds.module(World.TF_KERAS)
    cl = t.clustering.keras
    init = getattr(cl.CentroidInitialization, stage.init.value.upper())
    names = set()

    def wrap(layer: Any) -> Any:
        if not _prunable(layer) or matches(stage.skip, layer.name):
            return layer
        names.add(layer.name)
        kwargs: dict[str, Any] = {
            "number_of_clusters": stage.clusters,
            "cluster_centroids_init": init,
            "preserve_sparsity": stage.preserve_sparsity and ctx.pruned,
        }
        if stage.per_channel and type(layer).__name__ == "Conv2D":
            kwargs["cluster_per_channel"] = True
        return cl.cluster_weights(layer, **kwargs)

    wrapped = keras.models.clone_model(ctx.model, clone_function=wrap)
    if not names:
        raise StageError("cluster: no clusterable layer (Dense, Conv) in the model")
    ctx.fine_tune(wrapped, stage, "cluster")
    ctx.model = cl.strip_clustering(wrapped)
    ctx.clustered = True
    return {
        "clustered_layers": sorted(names),
        "sparsity_preserved": stage.preserve_sparsity and ctx.pruned,
    }


def qat(ctx: Context, stage: QatStage) -> dict[str, Any]:
    t = tfmot()
    q = t.quantization.keras
    from tensorflow_model_optimization.python.core.api.experimental import combine
    if ctx.clustered:
        scheme, mode = (
            combine.Default8BitClusterPreserveQuantizeScheme(preserve_sparsity=ctx.pruned),
            ("PCQAT" if ctx.pruned else "CQAT"),
        )
    elif ctx.pruned:
        scheme, mode = combine.Default8BitPrunePreserveQuantizeScheme(), "PQAT"
    else:
        scheme, mode = None, "QAT"
    before = ctx.model
    try:
        annotated = q.quantize_annotate_model(ctx.model)
        with q.quantize_scope():
            model = q.quantize_apply(annotated, scheme) if scheme else q.quantize_apply(annotated)
    except (ValueError, RuntimeError) as exc:
        kinds = sorted({type(layer).__name__ for layer in ctx.model.layers})
        raise StageError(
            f"qat: tfmot cannot quantize this model ({first_line(exc)}); layer types: {', '.join(kinds)}"
        ) from None
    ctx.fine_tune(model, stage, mode.lower())
    # CQAT trains centroids next to the original weights; put the clustered weights back.
    ctx.model = combine.strip_clustering_cqat(model) if ctx.clustered else model
    ctx.plain_model = _unwrapped(ctx.model, before)
    ctx.notes.append(
        "optimized.keras holds the QAT-trained weights without quantization wrappers (tfmot's "
        "wrappers do not reload from .keras); model.tflite is the quantized model"
    )
    return {"mode": mode, "kernels": len(kernel_stats(model))}


def _unwrapped(qat_model: Any, plain: Any) -> Any:
    """A copy of the pre-QAT model carrying the QAT-trained kernels and biases, matched by name."""
    keras = keras_worlds.module(World.TF_KERAS)
    copy = keras.models.clone_model(plain)
    copy.set_weights(plain.get_weights())

    def key(name: str) -> str:
        parts = name.split(":")[0].split("/")
        return f"{parts[-2].removeprefix('quant_')}/{parts[-1]}" if len(parts) > 1 else name

    trained = {key(w.name): w for w in qat_model.weights if "/" in w.name}
    for w in copy.weights:
        source = trained.get(key(w.name))
        if source is not None and tuple(source.shape) == tuple(w.shape):
            w.assign(source.numpy())
    return copy
