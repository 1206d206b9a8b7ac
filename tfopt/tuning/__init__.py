"""`tfopt tune`: the fastest (or smallest) `.tflite` that meets a quality gate, on the target,
searched on Ray Tune.

The search runs in phases, each one Ray Tune experiment over the variants the earlier phases
call for:
1. convert: every converter precision (calibrated ones at each calibration size), and each
   shipped recipe when DATA has a training split;
2. quantizer: the LiteRT quantizer's schemes on phase 1's float file;
3. selective float: for the fastest quantized schemes that miss the gate, a per-op sensitivity
   pass ranks op groups and the 1, 2, 4, ... most sensitive stay in float.
Every trial is judged on the real file through the interpreter against the source model on
held-out data, and timed on the target under each runtime setting (threads, XNNPACK, the
accelerator). Then the front runners are re-timed alone and the winner is written with a recipe
that reproduces it (`tfopt optimize --recipe best.yaml`), every trial, a report and a plot.
"""

from __future__ import annotations

from tfopt.tuning.driver import tune
from tfopt.tuning.finish import best_quality
from tfopt.tuning.request import OBJECTIVES, TuneRequest
from tfopt.tuning.result import OUTPUTS, Interrupted, NoWinner, TuneResult
from tfopt.tuning.space import Space

__all__ = ["OBJECTIVES", "OUTPUTS", "Interrupted", "NoWinner", "Space", "TuneRequest", "TuneResult",
           "best_quality", "tune"]  # fmt: skip
