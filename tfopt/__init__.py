"""tfopt: a Keras model in, a verified and timed `.tflite` out.

The pipeline is load -> convert -> validate -> time -> report, one module per stage. Names are
imported lazily so that `import tfopt` (and `tfopt --help`) never loads TensorFlow.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "load": "tfopt.load",
    "convert": "tfopt.convert",
    "compare": "tfopt.validate",
    "compare_files": "tfopt.validate",
    "inspect_tflite": "tfopt.inspection",
    "bench": "tfopt.bench",
    "BenchSettings": "tfopt.bench",
    "load_data": "tfopt.data",
    "TfoptError": "tfopt.errors",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'tfopt' has no attribute {name!r}")
