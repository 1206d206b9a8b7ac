"""What a comparison's numbers can say: which outputs hold class scores (so top-1 applies),
which output labels belong to, and how much of the data a quantized input clips (saturation).

Pure numpy over arrays and LiteRT input details; `tfopt.validate` turns them into a result.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tfopt.runtime import feeding

# Outputs whose rows sum to 1 within this (a softmax, read back from int8 too) are class scores.
_PROBABILITY_SLACK = 0.05
SATURATION_WARNING = 0.01  # warn when more than this fraction of an input's values saturate


def class_scores(name: str, ref: np.ndarray, only: bool) -> bool:
    """Whether an output gives class scores (samples, classes), so top-1 applies: a model's only
    2-D output, as always; among several outputs, one whose reference rows are probabilities
    (non-negative, summing to 1) or whose name says logits. Embeddings and regressions are not."""
    if ref.ndim != 2 or ref.shape[1] < 2:
        return False
    if only or "logit" in name.lower():
        return True
    sums = ref.astype(np.float64).sum(1)
    return bool(ref.min() >= -1e-6 and np.all(np.abs(sums - 1.0) < _PROBABILITY_SLACK))


def labels_of(y: np.ndarray) -> np.ndarray:
    return y.argmax(-1) if y.ndim > 1 else y.astype(np.int64)


def labels_fit(y: np.ndarray, classes: int) -> bool:
    if y.ndim > 1:
        return y.shape[-1] == classes
    return bool(np.all(y == np.round(y)) and y.min() >= 0 and y.max() < classes)


def labelled(
    y: np.ndarray | None, scored: list[str], ref: dict[str, Any], warnings: list[str]
) -> str | None:
    """The one class-score output labels `y` belong to (a model's only output takes them as
    before); with several candidates or none, a warning says why no accuracy is given."""
    if y is None or not scored:
        return None
    if len(ref) == 1:
        return scored[0]
    fit = [r for r in scored if labels_fit(y, ref[r].shape[1])]
    if len(fit) == 1:
        return fit[0]
    names = ", ".join(f"'{r}'" for r in (fit or scored))
    warnings.append(
        f"labels y fit {'several' if fit else 'none'} of the class-score outputs ({names}): "
        "no accuracy computed"
    )
    return None


def input_saturation(
    model_path: str, x: dict[str, np.ndarray]
) -> tuple[dict[str, float], list[str]]:
    """Per quantized (int8/uint8/int16) input of a `.tflite`, the fraction of `x`'s values
    outside its representable range, and a warning for each input where that is large: such
    values are clipped, so the comparison judges the data's scale, not the quantization."""
    inputs, _ = feeding.io_details(feeding.make_interpreter(model_path))
    fractions: dict[str, float] = {}
    warnings = []
    for name, detail in inputs.items():
        bounds = feeding.real_range(detail)
        if bounds is None or name not in x:
            continue
        values = np.asarray(x[name])
        fraction = feeding.saturation(values, detail)
        fractions[name] = round(fraction, 6)
        if fraction > SATURATION_WARNING:
            lo, hi = bounds
            warnings.append(
                f"input '{name}': {100 * fraction:.3g}% of values fall outside the "
                f"{np.dtype(detail['dtype']).name} input's range [{lo:.4g}, {hi:.4g}] (the data "
                f"spans [{float(values.min()):.4g}, {float(values.max()):.4g}]): the data is "
                "scaled differently from the calibration data (e.g. 0..255 pixels for a model "
                "calibrated on [-1, 1)), so these numbers judge clipped inputs, not the "
                "quantization"
            )
    return fractions, warnings
