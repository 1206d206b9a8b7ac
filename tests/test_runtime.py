"""The timing harness: TensorFlow-free, self-contained, and numerically sound."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from tfopt import harness

HEAVY = ("tensorflow", "keras", "tf_keras", "keras_hub", "tfopt")


def test_harness_never_imports_tensorflow(tflite: dict[str, Path]) -> None:
    """Run the harness file exactly as a device would and list what it imported."""
    code = (
        "import runpy, sys, json\n"
        f"sys.argv = ['harness.py', {str(tflite['int8io'])!r}, '--runs', '20']\n"
        "try:\n"
        f"    runpy.run_path({harness.__file__!r}, run_name='__main__')\n"
        "except SystemExit:\n"
        "    pass\n"
        f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r})))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    result_line, modules_line = proc.stdout.strip().splitlines()[-2:]
    assert json.loads(result_line)["runs"] == 20
    assert json.loads(modules_line) == []


def test_cli_help_does_not_import_tensorflow() -> None:
    code = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from tfopt.cli import cli\n"
        "assert CliRunner().invoke(cli, ['--help']).exit_code == 0\n"
        "import tfopt, tfopt.timing, tfopt.inspection, tfopt.conversion, converters\n"
        "heavy = ('tensorflow', 'keras', 'tf_keras')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_harness_is_self_contained() -> None:
    source = Path(harness.__file__).read_text()
    imports = [ln.split()[1] for ln in source.splitlines() if ln.startswith(("import ", "from "))]
    assert not [m for m in imports if m.split(".")[0] in HEAVY]


def test_quantize_round_trip() -> None:
    detail = {"dtype": np.int8, "quantization": (0.05, -3)}
    values = np.linspace(-6, 6, 101, dtype=np.float32)
    q = harness.quantize(values, detail)
    assert q.dtype == np.int8
    back = harness.dequantize(q, detail)
    assert np.max(np.abs(back - values)) <= 0.025 + 1e-6
    # Saturates instead of wrapping around.
    assert harness.quantize(np.array([1e6, -1e6], np.float32), detail).tolist() == [127, -128]


def test_synthetic_inputs_are_valid_indices() -> None:
    rng = np.random.default_rng(0)
    q = (0.0, 0)
    ids = harness.synthetic_input(
        "token_ids", {"shape": [1, 64], "dtype": np.int32, "quantization": q}, rng
    )
    mask = harness.synthetic_input(
        "padding_mask", {"shape": [1, 64], "dtype": np.int32, "quantization": q}, rng
    )
    floats = harness.synthetic_input(
        "image", {"shape": [1, 4], "dtype": np.float32, "quantization": q}, rng
    )
    assert ids.min() >= 0 and ids.max() < 100 and ids.dtype == np.int32
    assert set(np.unique(mask)) <= {0, 1}
    assert floats.dtype == np.float32 and 0 <= floats.min() and floats.max() < 1


def test_summary_percentiles() -> None:
    s = harness.summarize([float(v) for v in range(1, 101)])
    assert s["p50"] == 50.5 and s["min"] == 1 and s["max"] == 100
    assert s["p90"] == 90.1 and s["p99"] == 99.01


def test_run_min_seconds(tflite: dict[str, Path]) -> None:
    r = harness.run(str(tflite["float32"]), threads=1, min_seconds=0.05, warmup=2)
    assert r["runs"] >= 1 and r["warmup"] == 2  # how many fit in 0.05 s is speed, not behaviour
    assert r["latency_us"]["p50"] > 0


def test_parse_gpu_log_on_a_recorded_litert_log() -> None:
    """LiteRT 2.3.0's WebGPU accelerator on lavapipe, compiling a 2-layer keras-hub BERT."""
    text = (Path(__file__).parent / "data" / "litert_gpu" / "bert_lavapipe.log").read_text()
    verdict = harness.parse_gpu_log(text)
    assert verdict["fallback_reasons"] == {
        "GATHER": "Only support 1D indices",
        "STRIDED_SLICE": "Slice does not support shrink_axis_mask parameter.",
    }
    assert (verdict["gpu_ops"], verdict["cpu_ops"]) == (98, 14)
    assert verdict["adapter"].startswith("llvmpipe") and verdict["software"] is True


def test_parse_gpu_log_classic_delegate_wording() -> None:
    text = (
        "ERROR: Following operations are not supported by GPU delegate:\n"
        "INFO: Initialized OpenCL-based API.\n"
        "INFO: Replacing 293 out of 300 node(s) with delegate (TfLiteGpuDelegateV2) node, "
        "yielding 2 partitions for the whole graph.\n"
    )
    verdict = harness.parse_gpu_log(text)
    assert verdict["fallback_reasons"] == {}  # a log line is not an op
    assert (verdict["gpu_ops"], verdict["cpu_ops"]) == (293, 7)
    assert verdict["adapter"] is None and verdict["software"] is False
