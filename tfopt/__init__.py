"""tfopt: a Keras model in, a verified and timed `.tflite` out.

The pipeline is load -> convert -> validate -> time -> report, one module per stage. None of
these modules imports TensorFlow at import time (it is loaded inside the functions that need it),
so `import tfopt` and `tfopt --help` stay fast.
"""

from tfopt.bench import BenchSettings, bench
from tfopt.convert import convert
from tfopt.data import load_data
from tfopt.errors import TfoptError
from tfopt.inspection import inspect_tflite
from tfopt.load import load
from tfopt.validate import compare, compare_files

__version__ = "0.1.0"

__all__ = [
    "BenchSettings",
    "TfoptError",
    "bench",
    "compare",
    "compare_files",
    "convert",
    "inspect_tflite",
    "load",
    "load_data",
]
