"""Stages that need no tfmot: magnitude pruning on Keras 3 models (keras-hub included) and
distillation in either world.

Pruning keeps a mask per kernel (Dense, EinsumDense, Conv); a callback tightens the masks on a
polynomial or constant schedule and re-applies them after every training step, so pruned weights
stay zero through fine-tuning. Distillation re-applies the zero masks of an already pruned model.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tfopt import keras_worlds
from tfopt.optimization.context import Context, StageError, World
from tfopt.optimization.pruning import schedule_steps, select_layers
from tfopt.optimization.training import callback_base, model_args
from tfopt.recipes import DistillStage, PruneStage, Schedule

KERNEL_LAYERS = ("Dense", "EinsumDense", "Conv1D", "Conv2D", "Conv3D")


def kernel_layers(model: Any) -> list[tuple[str, Any]]:
    """(kernel path, layer) for every Dense / EinsumDense / Conv layer, nested ones included."""
    keras = keras_worlds.module(World.KERAS3)
    types = tuple(getattr(keras.layers, n) for n in KERNEL_LAYERS)
    found, seen = [], set()
    for layer in model._flatten_layers(include_self=False):  # noqa: SLF001 - Keras 3 API
        if isinstance(layer, types) and layer.built and id(layer) not in seen:
            seen.add(id(layer))
            found.append((str(layer.kernel.path).removesuffix("/kernel"), layer))
    return found


def input_axis(layer: Any) -> int:
    """The kernel axis that multiplies the layer's input (M:N blocks run along it)."""
    return 0 if type(layer).__name__ == "EinsumDense" else -2


def magnitude_mask(
    w: np.ndarray, sparsity: float, m_n: tuple[int, int] | None, axis: int
) -> np.ndarray:
    """Zero the smallest |w|: `sparsity` of the kernel, or M of every N along `axis`."""
    if m_n:
        m, n = m_n
        moved = np.moveaxis(np.abs(w), axis, -1)
        groups = moved.reshape(-1, n)
        order = np.argsort(groups, axis=1)
        mask = np.ones_like(groups, dtype=bool)
        np.put_along_axis(mask, order[:, :m], False, axis=1)
        return np.moveaxis(mask.reshape(moved.shape), -1, axis)
    k = int(round(sparsity * w.size))
    mask = np.ones(w.size, dtype=bool)
    if k:
        mask[np.argpartition(np.abs(w).ravel(), k - 1)[:k]] = False
    return mask.reshape(w.shape)


def mask_callback(world: World, variables: list[Any], update: Any = None) -> Any:
    """Re-apply masks after every step; `update(step)` may return new masks (the schedule)."""

    class KeepMasks(callback_base(world)):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.step = 0
            self.masks = [np.asarray(v.numpy()) != 0 for v in variables]

        def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
            self.step += 1
            if update is not None:
                new = update(self.step, [np.asarray(v.numpy()) for v in variables])
                if new is not None:
                    self.masks = new
            for v, m in zip(variables, self.masks, strict=True):
                v.assign(np.asarray(v.numpy()) * m)

    return KeepMasks()


def prune(ctx: Context, stage: PruneStage) -> dict[str, Any]:
    """Keras 3 magnitude pruning, unstructured or M:N, on a schedule."""
    if tuple(stage.block_size) != (1, 1):
        raise StageError("prune: block_size needs tfmot, which accepts only tf_keras models")
    candidates = [
        (path, layer, int(layer.kernel.shape[input_axis(layer)]))
        for path, layer in kernel_layers(ctx.model)
    ]
    chosen, notes = select_layers(candidates, stage, "Dense, EinsumDense or Conv layer")
    begin, end, freq = schedule_steps(ctx, stage)
    axes = [input_axis(layer) for _, layer in chosen]

    def target(step: int) -> float:
        if stage.schedule is Schedule.CONSTANT:
            return stage.sparsity
        p = min(1.0, max(0.0, (step - begin) / max(1, end - begin)))
        return stage.sparsity * (1 - (1 - p) ** 3)

    def update(step: int, weights: list[np.ndarray]) -> list[np.ndarray] | None:
        due = (
            step == begin + 1
            if stage.m_n
            else (begin < step <= end and (step - begin) % freq == 0) or step == end
        )
        if not due:
            return None
        return [
            magnitude_mask(w, target(step), stage.m_n, a)
            for w, a in zip(weights, axes, strict=True)
        ]

    variables = [layer.kernel for _, layer in chosen]
    if ctx.epochs_for(stage) == 0:  # one-shot pruning
        for v, a in zip(variables, axes, strict=True):
            v.assign(
                np.asarray(v.numpy())
                * magnitude_mask(np.asarray(v.numpy()), stage.sparsity, stage.m_n, a)
            )
    else:
        keep = mask_callback(ctx.world, variables, update)
        keep.masks = [np.ones(v.shape, dtype=bool) for v in variables]
        ctx.fine_tune(ctx.model, stage, "prune", callbacks=[keep])
    ctx.pruned = True
    return {
        "pruned_layers": [p for p, _ in chosen],
        "schedule": {"begin_step": begin, "end_step": end, "frequency": freq},
        "notes": notes,
    }


def student_of_teacher(ctx: Context, temperature: float, alpha: float) -> tuple[Any, np.ndarray]:
    """The distillation loss, `alpha` x the KL to the original model's outputs softened by
    `temperature` plus the rest x the label loss, and its targets: each training label beside the
    teacher's logits (`fine_tune(..., loss=, y=)`)."""
    tf = keras_worlds.tf()
    teacher, data = ctx.teacher, ctx.data.train
    chunks = []
    for start in range(0, len(data), 256):
        x = {k: v[start : start + 256] for k, v in data.x.items()}
        chunks.append(np.asarray(teacher(model_args(teacher, x), training=False), dtype=np.float32))
    t_out = np.concatenate(chunks)
    t_logits = t_out if ctx.from_logits else np.log(np.clip(t_out, 1e-8, 1.0))
    assert data.y is not None
    packed = np.concatenate([data.y[:, None].astype(np.float32), t_logits], axis=1)
    temp, alpha, from_logits = float(temperature), float(alpha), ctx.from_logits

    def loss(y_true: Any, y_pred: Any) -> Any:
        labels = tf.cast(y_true[:, 0], tf.int32)
        teacher_logits = y_true[:, 1:]
        student = y_pred if from_logits else tf.math.log(tf.clip_by_value(y_pred, 1e-8, 1.0))
        soft_t = tf.nn.softmax(teacher_logits / temp)
        log_soft_s = tf.nn.log_softmax(student / temp)
        kl = tf.reduce_sum(soft_t * (tf.math.log(soft_t + 1e-8) - log_soft_s), axis=-1) * temp**2
        hard = tf.nn.sparse_softmax_cross_entropy_with_logits(labels, student)
        return tf.reduce_mean(alpha * kl + (1 - alpha) * hard)

    return loss, packed


def distill(ctx: Context, stage: DistillStage) -> dict[str, Any]:
    """Fine-tune the student against the original model's softened outputs plus the labels."""
    loss, packed = student_of_teacher(ctx, stage.temperature, stage.alpha)
    callbacks = []
    if ctx.pruned:  # keep the zeros an earlier prune stage made
        sparse = [
            w
            for w in ctx.model.trainable_weights
            if "kernel" in str(getattr(w, "path", w.name))
            and np.mean(np.asarray(w.numpy()) == 0) > 0.05
        ]
        callbacks.append(mask_callback(ctx.world, sparse))
    ctx.fine_tune(ctx.model, stage, "distill", loss=loss, callbacks=callbacks, y=packed)
    return {
        "teacher": "the original model",
        "temperature": stage.temperature,
        "alpha": stage.alpha,
        "sparsity_kept": ctx.pruned,
    }
