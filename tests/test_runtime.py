"""The runtime that travels to devices: TensorFlow-free, self-contained (one zipapp), and
numerically sound."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np

from tfopt.runtime.cpu import Budget, run
from tfopt.runtime.feeding import dequantize, quantize, synthetic_input
from tfopt.runtime.gpu import parse_gpu_log
from tfopt.runtime.stats import summarize
from tfopt.targets.base import RUNTIME_DIR, runtime_zipapp

HEAVY = ("tensorflow", "keras", "tf_keras", "keras_hub", "tfopt")
ALLOWED = {"numpy", "ai_edge_litert", "litert_lm"}


def test_runtime_zipapp_never_imports_tensorflow(tflite: dict[str, Path]) -> None:
    """Run the zipapp exactly as a device would (`python runtime.pyz ...`) and list what it
    imported: no TensorFlow, no Keras, and no tfopt (only the zipapp's own `runtime`)."""
    pyz = runtime_zipapp()
    code = (
        "import runpy, sys, json\n"
        f"sys.argv = [{str(pyz)!r}, {str(tflite['int8io'])!r}, '--runs', '20']\n"
        "try:\n"
        f"    runpy.run_path({str(pyz)!r}, run_name='__main__')\n"
        "except SystemExit:\n"
        "    pass\n"
        f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r})))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    result_line, modules_line = proc.stdout.strip().splitlines()[-2:]
    assert json.loads(result_line)["runs"] == 20
    assert json.loads(modules_line) == []


def test_zipapp_holds_exactly_the_runtime_package() -> None:
    names = {n for n in zipfile.ZipFile(runtime_zipapp()).namelist() if not n.endswith("/")}
    package = {f"runtime/{p.name}" for p in RUNTIME_DIR.glob("*.py")}
    assert names == {"__main__.py", *package}


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


def test_runtime_is_self_contained() -> None:
    """Every import in tfopt/runtime, top-level or inside a function, is relative (the package
    itself), the standard library, numpy, ai_edge_litert or litert_lm (`.litertlm` bundles)."""
    outside = []
    for path in sorted(RUNTIME_DIR.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                modules = [node.module or ""]
            else:
                continue
            for module in modules:
                top = module.split(".")[0]
                if top not in ALLOWED and top not in sys.stdlib_module_names:
                    outside.append(f"{path.name}: {module}")
    assert outside == []


def test_every_runtime_module_stays_small() -> None:
    sizes = {p.name: len(p.read_text().splitlines()) for p in RUNTIME_DIR.glob("*.py")}
    assert max(sizes.values()) < 400, sizes


def test_quantize_round_trip() -> None:
    detail = {"dtype": np.int8, "quantization": (0.05, -3)}
    values = np.linspace(-6, 6, 101, dtype=np.float32)
    q = quantize(values, detail)
    assert q.dtype == np.int8
    back = dequantize(q, detail)
    assert np.max(np.abs(back - values)) <= 0.025 + 1e-6
    # Saturates instead of wrapping around.
    assert quantize(np.array([1e6, -1e6], np.float32), detail).tolist() == [127, -128]


def test_synthetic_inputs_are_valid_indices() -> None:
    rng = np.random.default_rng(0)
    q = (0.0, 0)
    ids = synthetic_input(
        "token_ids", {"shape": [1, 64], "dtype": np.int32, "quantization": q}, rng
    )
    mask = synthetic_input(
        "padding_mask", {"shape": [1, 64], "dtype": np.int32, "quantization": q}, rng
    )
    floats = synthetic_input(
        "image", {"shape": [1, 4], "dtype": np.float32, "quantization": q}, rng
    )
    assert ids.min() >= 0 and ids.max() < 100 and ids.dtype == np.int32
    assert set(np.unique(mask)) <= {0, 1}
    assert floats.dtype == np.float32 and 0 <= floats.min() and floats.max() < 1


def test_summary_percentiles() -> None:
    s = summarize([float(v) for v in range(1, 101)])
    assert s["p50"] == 50.5 and s["min"] == 1 and s["max"] == 100
    assert s["p90"] == 90.1 and s["p99"] == 99.01


def test_run_min_seconds(tflite: dict[str, Path]) -> None:
    r = run(str(tflite["float32"]), threads=1, budget=Budget(min_seconds=0.05, warmup=2))
    assert r["runs"] >= 1 and r["warmup"] == 2  # how many fit in 0.05 s is speed, not behaviour
    assert r["latency_us"]["p50"] > 0


def test_parse_gpu_log_on_a_recorded_litert_log() -> None:
    """LiteRT 2.3.0's WebGPU accelerator on lavapipe, compiling a 2-layer keras-hub BERT."""
    text = (Path(__file__).parent / "data" / "litert_gpu" / "bert_lavapipe.log").read_text()
    verdict = parse_gpu_log(text)
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
    verdict = parse_gpu_log(text)
    assert verdict["fallback_reasons"] == {}  # a log line is not an op
    assert (verdict["gpu_ops"], verdict["cpu_ops"]) == (293, 7)
    assert verdict["adapter"] is None and verdict["software"] is False
