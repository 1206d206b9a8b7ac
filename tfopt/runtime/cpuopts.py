"""LiteRT's CPU runtime options as data: `--cpu-option KEY=VALUE`, parsed and checked in one place.

ai-edge-litert 2.3 exposes CPU knobs through two Python doors: the `Interpreter` (keyword
arguments of its constructor) and `CompiledModel` (`CpuOptions`: kernel mode, YNNPACK, XNNPACK
delegate flags, XNNPACK weight cache). Each key below says which door takes it; `api` picks the
door (default: the Interpreter, or CompiledModel when a key only it takes is given). The host
validates with the same table before any process starts; the runtime parses again on the device.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

INTERPRETER = "interpreter"
COMPILED = "compiled"

# XNNPACK delegate flags (tflite/delegates/xnnpack/xnnpack_delegate.h). Setting any flag replaces
# the delegate's defaults, so tfopt starts from QS8 | QU8 (int8 kernels on, as by default).
XNN_QS8_QU8 = 0x1 | 0x2
XNN_FORCE_FP16 = 0x4
XNN_TRANSIENT_INDIRECTION_BUFFER = 0x20
XNN_ENABLE_LATEST_OPERATORS = 0x40
XNN_SLOW_CONSISTENT_ARITHMETIC = 0x200
XNN_DISABLE_DYNAMICALLY_QUANTIZED_OPS = 0x800


@dataclass(frozen=True)
class CpuKey:
    """One option: its value kind (`bool`, `path` or a tuple of choices), the APIs that take it
    and what it does."""

    kind: Any
    apis: tuple[str, ...]
    help: str


CPU_KEYS: dict[str, CpuKey] = {
    "api": CpuKey((INTERPRETER, COMPILED), (INTERPRETER, COMPILED), "which LiteRT CPU API runs"),
    "latest_features": CpuKey(
        bool, (INTERPRETER, COMPILED), "XNNPACK's not-yet-default operators and features"
    ),
    "clustering": CpuKey(bool, (INTERPRETER,), "delegate clustering (false: keep graph order)"),
    "node_fusion": CpuKey(bool, (INTERPRETER,), "delegate node fusion (false: one op per node)"),
    "force_fp16": CpuKey(bool, (COMPILED,), "XNNPACK runs float32 ops in float16"),
    "dynamic_quantized": CpuKey(bool, (COMPILED,), "XNNPACK's dynamically quantized ops"),
    "transient_indirection": CpuKey(bool, (COMPILED,), "XNNPACK rebuilds indirection per run"),
    "slow_consistent": CpuKey(bool, (COMPILED,), "XNNPACK's numerically consistent slow paths"),
    "kernel_mode": CpuKey(("delegate", "builtin", "reference"), (COMPILED,), "CPU kernels"),
    "ynnpack": CpuKey(bool, (COMPILED,), "YNNPACK before XNNPACK (needs a YNNPACK build)"),
    "weight_cache": CpuKey("path", (COMPILED,), "XNNPACK weight cache file"),
}
_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


def valid_keys() -> str:
    return ", ".join(CPU_KEYS)


def _value(key: str, spec: CpuKey, raw: str) -> Any:
    text = raw.strip()
    if spec.kind is bool:
        if text.lower() in _TRUE | _FALSE:
            return text.lower() in _TRUE
        raise ValueError(f"--cpu-option {key}={raw}: give true or false")
    if isinstance(spec.kind, tuple):
        if text in spec.kind:
            return text
        raise ValueError(f"--cpu-option {key}={raw}: choose from {', '.join(spec.kind)}")
    if not text:
        raise ValueError(f"--cpu-option {key}=: give a file path")
    return text


def parse_cpu_options(items: Iterable[str]) -> dict[str, Any]:
    """['force_fp16=true', ...] -> {'api': 'compiled', 'force_fp16': True}; the result always
    names its `api`. Raises ValueError (one line, naming the valid keys) on a bad item."""
    options: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or key not in CPU_KEYS:
            raise ValueError(f"--cpu-option {item}: use KEY=VALUE with KEY one of {valid_keys()}")
        options[key] = _value(key, CPU_KEYS[key], raw)
    only_compiled = [k for k in options if CPU_KEYS[k].apis == (COMPILED,)]
    only_interpreter = [k for k in options if CPU_KEYS[k].apis == (INTERPRETER,)]
    api = options.get("api") or (COMPILED if only_compiled else INTERPRETER)
    wrong = only_interpreter if api == COMPILED else only_compiled
    if wrong:
        raise ValueError(
            f"--cpu-option {', '.join(wrong)} cannot be combined with api={api} "
            f"(the LiteRT {api} API does not take {'it' if len(wrong) == 1 else 'them'})"
        )
    if options.get("force_fp16") and options.get("weight_cache"):
        # ai-edge-litert 2.3.0 aborts the process (checked on a float32 CNN).
        raise ValueError(
            "--cpu-option force_fp16=true with weight_cache aborts XNNPACK in ai-edge-litert 2.3 "
            "(weight_cache.cc: 'An invalid pack identifier was created'); drop one of them"
        )
    return {"api": api, **{k: v for k, v in sorted(options.items()) if k != "api"}}


def cpu_option_args(options: dict[str, Any]) -> list[str]:
    """The runtime command-line form of parsed options (round trip of `parse_cpu_options`)."""
    args: list[str] = []
    for key, value in options.items():
        text = str(value).lower() if isinstance(value, bool) else str(value)
        args += ["--cpu-option", f"{key}={text}"]
    return args


def xnnpack_flags(options: dict[str, Any]) -> int | None:
    """XNNPACK delegate flags for CompiledModel, or None to keep LiteRT's defaults."""
    bits = {
        "force_fp16": (XNN_FORCE_FP16, True),
        "latest_features": (XNN_ENABLE_LATEST_OPERATORS, True),
        "transient_indirection": (XNN_TRANSIENT_INDIRECTION_BUFFER, True),
        "slow_consistent": (XNN_SLOW_CONSISTENT_ARITHMETIC, True),
        "dynamic_quantized": (XNN_DISABLE_DYNAMICALLY_QUANTIZED_OPS, False),
    }
    if not any(k in options for k in bits):
        return None
    flags = XNN_QS8_QU8
    for key, (bit, when) in bits.items():
        if key in options and options[key] == when:
            flags |= bit
    return flags


def interpreter_kwargs(options: dict[str, Any]) -> dict[str, bool]:
    """Keyword arguments of `ai_edge_litert.interpreter.Interpreter` for parsed options."""
    kwargs = {}
    if "latest_features" in options:
        kwargs["experimental_default_delegate_latest_features"] = bool(options["latest_features"])
    if "clustering" in options:
        kwargs["experimental_disable_delegate_clustering"] = not options["clustering"]
    if "node_fusion" in options:
        kwargs["experimental_disable_delegate_node_fusion"] = not options["node_fusion"]
    return kwargs
