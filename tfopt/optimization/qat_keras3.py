"""The `qat` stage for Keras 3 models, keras-hub transformers included.

A plain chain of standard layers is still rebuilt as tf_keras and handed to tfmot (its QAT knows
Conv/BatchNorm folding). Anything else (keras-hub tasks, attention, layer norms) gets FakeQuant
patched into its own layers (`fakequant.py`): ranges are first calibrated on training batches,
then fine-tuned with straight-through gradients while moving averages track them, then frozen.
The model handed to the convert stage computes through FakeQuant ops with those ranges, so the
SavedModel it exports carries them and TFLite's int8 converter uses them; what they do not cover
(attention matmul outputs, residual adds, GELU) is calibrated as in post-training int8.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tfopt.optimization import fakequant, tfmot_stages
from tfopt.optimization.context import Context, StageError, World, kernel_stats
from tfopt.optimization.native import kernel_layers, mask_callback
from tfopt.optimization.rebuild import to_tf_keras
from tfopt.optimization.training import model_args
from tfopt.recipes import QatStage

CALIBRATION_SAMPLES = 256


def qat(ctx: Context, stage: QatStage) -> dict[str, Any]:
    """Quantization-aware training of a Keras 3 model; the model leaves with frozen FakeQuant."""
    try:
        rebuilt = to_tf_keras(ctx.model, ctx.data.val, "qat")
    except StageError:
        rebuilt = None
    if rebuilt is not None:
        ctx.model, ctx.world = rebuilt, World.TF_KERAS
        ctx.notes.append("rebuilt the Keras 3 model as tf_keras so that tfmot can run 'qat'")
        return tfmot_stages.qat(ctx, stage)

    state = fakequant.patch(ctx.model)
    callbacks = []
    if ctx.pruned:  # keep the zeros an earlier prune stage made (PQAT)
        sparse = [
            layer.kernel
            for _, layer in kernel_layers(ctx.model)
            if np.mean(np.asarray(layer.kernel.numpy()) == 0) > 0.05
        ]
        callbacks.append(mask_callback(ctx.world, sparse))
    try:
        calibrate(state, ctx.model, ctx.data.train.x, ctx.batch_size)
        ctx.fine_tune(ctx.model, stage, "qat", callbacks=callbacks)
    except BaseException:
        state.unpatch()  # the caller's model leaves as it came
        raise
    state.freeze()
    ctx.plain_model = plain_copy(ctx.model)
    ctx.notes.append(
        "optimized.keras holds the QAT-trained weights without FakeQuant; model.tflite is the "
        "quantized model"
    )
    kinds = sorted({type(layer).__name__ for layer in state.patched})
    return {
        "mode": "PQAT" if ctx.pruned else "QAT",
        "implementation": "keras3 FakeQuant",
        "quantized_layers": len(state.patched),
        "layer_types": kinds,
        "kernels": len(kernel_stats(ctx.model)),
        "ranges": state.ranges_dict(),
    }


def calibrate(
    state: fakequant.FakeQuant, model: Any, x: dict[str, np.ndarray], batch_size: int
) -> None:
    """Start every activation range at the mean per-batch min/max over training samples."""
    n = min(CALIBRATION_SAMPLES, len(next(iter(x.values()))))
    for i, start in enumerate(range(0, n, batch_size)):
        state.decay = i / (i + 1)
        batch = {k: v[start : min(n, start + batch_size)] for k, v in x.items()}
        model(model_args(model, batch), training=False)
    state.decay = fakequant.DECAY


def plain_copy(model: Any) -> Any:
    """The same model and weights without FakeQuant (fresh layers from its config)."""
    copy = model.__class__.from_config(model.get_config())
    copy.set_weights(model.get_weights())
    return copy
