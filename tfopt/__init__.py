"""tfopt: a Keras model in, a verified and timed `.tflite` out.

The pipeline is load -> convert -> validate -> time -> report, one module per stage. The names
below are imported on first use, so `import tfopt` (and `tfopt --help`) never loads TensorFlow
and `import converters` works on its own.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "BenchSettings": "tfopt.timing",
    "TfoptError": "tfopt.errors",
    "bench": "tfopt.timing",
    "bench_matrix": "tfopt.timing",
    "compare": "tfopt.validate",
    "compare_files": "tfopt.validate",
    "convert": "tfopt.conversion",
    "generate": "tfopt.lm.generation",
    "gpu_placement": "tfopt.timing",
    "make_target": "tfopt.targets",
    "inspect_tflite": "tfopt.inspection",
    "load": "tfopt.loading",
    "load_data": "tfopt.data",
    "optimize": "tfopt.optimization",
    "tune": "tfopt.tuning",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'tfopt' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value  # later lookups skip __getattr__; the function wins over a submodule
    return value
