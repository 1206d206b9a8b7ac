"""Optimize stage: run a recipe's stages on a Keras model, fine-tuned on the user's data.

Each stage goes to the runner registered for (stage kind, Keras world) (`stages.py`): tfmot for
tf_keras models, native implementations for Keras 3 ones (keras-hub included). A Keras 3 chain of
standard layers is rebuilt as tf_keras when a stage needs tfmot. The last stage converts; the
`.tflite` is measured through the evaluation spine (`run.py`, `tfopt.evaluation`).
"""

from tfopt.optimization.context import StageError
from tfopt.optimization.result import OptimizeReport
from tfopt.optimization.run import OptimizeOptions, calibration_sample, optimize

__all__ = ["OptimizeOptions", "OptimizeReport", "StageError", "calibration_sample", "optimize"]
