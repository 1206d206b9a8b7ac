"""LiteRT's Intel OpenVINO path: the OpenVINO compiler plugin and dispatch library that ship in
ai-edge-litert (`ai_edge_litert/vendors/intel_openvino/`), driven from `CompiledModel`.

LiteRT compiles the ops OpenVINO takes into one or more dispatch partitions (JIT, on load) and
runs them through OpenVINO's device (CPU here; the plugin also names GPU and NPU), the rest on
its CPU accelerator. ai-edge-litert 2.3.0's plugin is linked against OpenVINO 2026.3
(`libopenvino.so.2631`): the libraries come from an `openvino` 2026.3.x package or from the
folder in TFOPT_OPENVINO_LIBS; they are loaded before LiteRT looks for them.
"""

from __future__ import annotations

import ctypes
import glob
import importlib.util
import os
import re
from typing import Any

OPENVINO_LIBS_ENV = "TFOPT_OPENVINO_LIBS"
_SONAME = "libopenvino.so.2631"  # what ai-edge-litert 2.3.0's plugin and dispatch library need
_NEEDED = (_SONAME, "libopenvino_tensorflow_lite_frontend.so.2631")
_PARTITIONED = re.compile(
    r"Partitioned subgraph<\d+>, selected (\d+) ops, from a total of (\d+) ops\. "
    r"resulted in (\d+) partitions"
)
_DEVICE = re.compile(r"Using Intel OpenVINO device: (\S+)")
_loaded: list[ctypes.CDLL] = []


def _libs_folder() -> str:
    folder = os.environ.get(OPENVINO_LIBS_ENV)
    if folder:
        return folder
    spec = importlib.util.find_spec("openvino")  # its libraries, without importing it
    return os.path.join(os.path.dirname(spec.origin), "libs") if spec and spec.origin else ""


def load_openvino() -> None:
    """Load the OpenVINO libraries LiteRT's plugin needs, or raise one line saying what is
    missing."""
    if _loaded:
        return
    folder = _libs_folder()
    have = sorted(os.path.basename(p) for p in glob.glob(os.path.join(folder, "libopenvino.so.*")))
    if not all(os.path.isfile(os.path.join(folder, n)) for n in _NEEDED):
        found = f"{folder} has {', '.join(have)}" if have else "no OpenVINO found"
        raise RuntimeError(
            f"LiteRT's OpenVINO plugin needs OpenVINO 2026.3 ({_SONAME}); {found}: "
            f"pip install openvino==2026.3.1 somewhere and set {OPENVINO_LIBS_ENV} to its libs"
        )
    for name in _NEEDED:
        _loaded.append(ctypes.CDLL(os.path.join(folder, name), mode=ctypes.RTLD_GLOBAL))


def openvino_environment() -> Any:
    """A LiteRT Environment that knows the OpenVINO compiler plugin and dispatch library."""
    import ai_edge_litert
    from ai_edge_litert.environment import Environment, EnvironmentOptions

    load_openvino()
    vendor = os.path.join(os.path.dirname(ai_edge_litert.__file__), "vendors", "intel_openvino")
    return Environment.create(
        options=EnvironmentOptions(
            compiler_plugin_path=os.path.join(vendor, "compiler"),
            dispatch_library_path=os.path.join(vendor, "dispatch"),
        )
    )


def openvino_options(threads: int) -> Any:
    """NPU (LiteRT's name for dispatch) with CPU fallback; OpenVINO's CPU device runs it."""
    from ai_edge_litert.options import (
        CpuOptions,
        HardwareAccelerator,
        IntelOpenVinoGraphBackend,
        IntelOpenVinoOptions,
        Options,
    )

    return Options(
        hardware_accelerators=HardwareAccelerator.NPU | HardwareAccelerator.CPU,
        cpu_options=CpuOptions(num_threads=threads),
        intel_openvino_options=IntelOpenVinoOptions(graph_backend=IntelOpenVinoGraphBackend.CPU),
    )


def parse_openvino_log(text: str) -> dict[str, Any]:
    """LiteRT's own OpenVINO verdict from its log: ops it took, partitions, the device."""
    parts = [tuple(int(n) for n in m.groups()) for m in _PARTITIONED.finditer(text)]
    device = next((m.group(1) for m in _DEVICE.finditer(text)), None)
    if not parts:
        return {"openvino_ops": 0, "cpu_ops": None, "openvino_partitions": 0, "device": device}
    return {
        "openvino_ops": sum(p[0] for p in parts),
        "cpu_ops": sum(p[1] - p[0] for p in parts),
        "openvino_partitions": sum(p[2] for p in parts),
        "device": device,
    }
