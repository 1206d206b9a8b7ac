"""XNNPACK sparse inference for pruned float MobileNets: does it switch on, and what does it buy?

    python benchmarks/sparse.py [--rounds 7] [--runs 15] [--board]   (writes results/sparse.*)

1. A MobileNetV2 (width 1.0, 224x224, the 17 inverted-residual blocks of the paper) built in
   tf_keras the way tfmot's `PruneForLatencyOnXNNPack` policy accepts it: every stride-2
   convolution is `ZeroPadding2D(1)` + `padding='valid'` and the network ends in
   `GlobalAveragePooling2D(keepdims=True)`. (`tf_keras.applications.MobileNetV2` itself is refused
   by the policy; the script records the policy's message.)
2. `prune_low_magnitude(..., pruning_policy=PruneForLatencyOnXNNPack())` at 80% with
   `ConstantSparsity(0.8, 0, frequency=1)`, one `fit` step on random images (speed test: the
   masks are magnitude masks of the untrained weights), `strip_pruning`.
3. float32 and float16 .tflite of the dense and the pruned model, the pruned one both plainly and
   with `optimizations=[tf.lite.Optimize.EXPERIMENTAL_SPARSITY]` (sparse weights + DENSIFY ops:
   the one thing that makes the XNNPACK delegate pass XNN_FLAG_HINT_SPARSE_INFERENCE,
   tflite/delegates/xnnpack/xnnpack_delegate.cc).
4. Per file: size, gzip size, DENSIFY ops, XNNPACK's own operator names from LiteRT's profiler
   (an NCHW / SpMM operator means sparse inference is on), max |diff| to the float32 plain file,
   and LiteRT Interpreter latency at 1 and 2 threads in interleaved rounds (median of the rounds'
   medians).
5. `--board`: outputs on the ARM64 board (Debian arm64 under qemu-user, `make arm64-board`),
   where XNNPACK allows its NCHW path (LiteRT's profiler does not run there: CompiledModel
   fails without the board's CPU list); on x86 the sparse-format file's outputs are
   bit-identical to the plain file's, so a difference on ARM is XNNPACK's NCHW SpMM path at
   work. Its times are emulated and printed only as "not meaningful".
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tfopt import keras_worlds  # noqa: E402
from tfopt.keras_worlds import World  # noqa: E402
from tfopt.report import markdown_table  # noqa: E402
from tfopt.runtime.feeding import make_interpreter  # noqa: E402
from tfopt.runtime.profile import profile_ops  # noqa: E402

SPARSITY = 0.8
# MobileNetV2 (Sandler et al. 2018, table 2): expansion t, channels c, repeats n, stride s.
BLOCKS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
          (6, 160, 3, 2), (6, 320, 1, 1))  # fmt: skip


def _strided(layers: Any, x: Any, make: Any, stride: int) -> Any:
    """Stride-2 layers as XNNPACK's NCHW path (and tfmot's policy) accept them."""
    if stride == 2:
        return make("valid")(layers.ZeroPadding2D(((1, 1), (1, 1)))(x))
    return make("same")(x)


def mobilenet_v2(classes: int = 1000) -> Any:
    """A float MobileNetV2 that `PruneForLatencyOnXNNPack` accepts."""
    keras = keras_worlds.module(World.TF_KERAS)
    L = keras.layers

    def bn_relu(x: Any) -> Any:
        return L.ReLU(6.0)(L.BatchNormalization()(x))

    inputs = keras.Input((224, 224, 3), name="image")
    x = _strided(L, inputs, lambda p: L.Conv2D(32, 3, 2, padding=p, use_bias=False), 2)
    x = bn_relu(x)
    channels = 32
    for t, c, n, s in BLOCKS:
        for i in range(n):
            stride = s if i == 0 else 1
            y = bn_relu(L.Conv2D(channels * t, 1, use_bias=False)(x)) if t != 1 else x
            y = _strided(
                L, y, lambda p, st=stride: L.DepthwiseConv2D(3, st, padding=p, use_bias=False), stride
            )
            y = L.BatchNormalization()(L.Conv2D(c, 1, use_bias=False)(bn_relu(y)))
            x = L.Add()([x, y]) if stride == 1 and channels == c else y
            channels = c
    x = bn_relu(L.Conv2D(1280, 1, use_bias=False)(x))
    x = L.GlobalAveragePooling2D(keepdims=True)(x)
    x = L.Flatten()(L.Conv2D(classes, 1)(x))
    return keras.Model(inputs, L.Softmax()(x), name="mobilenet_v2_xnnpack")


def applications_refused() -> str:
    """What the policy says about tf_keras.applications.MobileNetV2 (first line)."""
    import tensorflow_model_optimization as tfmot

    keras = keras_worlds.module(World.TF_KERAS)
    model = keras.applications.MobileNetV2(weights=None, input_shape=(224, 224, 3))
    policy = tfmot.sparsity.keras.PruneForLatencyOnXNNPack()
    try:
        tfmot.sparsity.keras.prune_low_magnitude(model, pruning_policy=policy)
    except ValueError as exc:
        return str(exc).splitlines()[0]
    return "accepted"


def prune_for_xnnpack(model: Any) -> tuple[Any, dict[str, float]]:
    """tfmot's latency policy at SPARSITY, masks set by one fit step; per-kernel sparsity.
    (The wrappers share the model's layers: convert the dense model first.)"""
    import tensorflow_model_optimization as tfmot

    keras = keras_worlds.module(World.TF_KERAS)
    s = tfmot.sparsity.keras
    pruned = s.prune_low_magnitude(
        model,
        pruning_policy=s.PruneForLatencyOnXNNPack(),
        pruning_schedule=s.ConstantSparsity(SPARSITY, 0, frequency=1),
    )
    pruned.compile(keras.optimizers.SGD(1e-9), "sparse_categorical_crossentropy")
    x = np.random.default_rng(0).random((2, 224, 224, 3), np.float32)
    pruned.fit(x, np.zeros(2), epochs=1, verbose=0, callbacks=[s.UpdatePruningStep()])
    stripped = s.strip_pruning(pruned)
    kernels = {
        layer.name: round(float(np.mean(layer.kernel.numpy() == 0)), 4)
        for layer in stripped.layers
        if type(layer).__name__ == "Conv2D"
    }
    return stripped, kernels


def convert(model: Any, path: Path, float16: bool, sparse: bool) -> Path:
    tf = keras_worlds.tf()
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    opts = []
    if float16:
        opts.append(tf.lite.Optimize.DEFAULT)
        converter.target_spec.supported_types = [tf.float16]
    if sparse:
        opts.append(tf.lite.Optimize.EXPERIMENTAL_SPARSITY)
    converter.optimizations = opts
    path.write_bytes(converter.convert())
    return path


FINDINGS = """\
# XNNPACK sparse inference from LiteRT's Python runtime (ai-edge-litert 2.3)

**No runtime switch exists; the file format is the switch, and XNNPACK refuses it on x86 with AVX.**
Sources: google-ai-edge/LiteRT at f67457790c, google/XNNPACK at 75db3c093b.

- The XNNPACK delegate sets `XNN_FLAG_HINT_SPARSE_INFERENCE` itself, and only when a delegated
  node reads a sparse static weight: a DENSIFY of a sparse float32/float16/int8 constant
  (tflite/delegates/xnnpack/xnnpack_delegate.cc:7380-7399 marks it, :1067-1089 finds it,
  :1472-1473 sets the flag). Such weights come from `converter.optimizations =
  [tf.lite.Optimize.EXPERIMENTAL_SPARSITY]`; a plainly converted pruned model never gets the hint.
- The delegate's `flags` (xnnpack_delegate.h:30-61, QS8 ... DISABLE_DYNAMICALLY_QUANTIZED_OPS)
  have no sparse bit. Its separate `runtime_flags` field (xnnpack_delegate.h:70, OR-ed into the
  runtime's flags at xnnpack_delegate.cc:1485) could carry it, but only C++ callers and TFLite's
  C++ benchmark tool (`--xnnpack_runtime_flags`, tflite/tools/delegates/xnnpack_delegate_provider.cc:36)
  set it. LiteRT's CPU options have no key for it (litert/runtime/litert_cpu_options.cc:70-127:
  kernel_mode, enable_ynnpack, num_threads, flags, weight cache, hint_fully_delegated..., ynnpack_*),
  `CpuOptions.xnnpack_flags` goes to the delegate `flags` (compiled_model_wrapper.cc:234,
  litert_cpu_options.cc:93-96), and the Interpreter's keyword arguments name no delegate flags
  (ai_edge_litert/interpreter.py:402-415). No environment variable: neither the delegate nor
  XNNPACK's src/ calls getenv. Both Python APIs get the hint alike, from the file.
- XNNPACK then rewrites to NCHW only if built with XNN_ENABLE_SPARSE (Bazel default on,
  BUILD.bazel:2123-2137) and `xnn_is_chw_compatible_config` (src/subgraph.c:4709-4713), which on
  x86 is false whenever the CPU has AVX (src/xnnpack/hardware-config.h:203-208: "on processors
  with AVX ISA dense inference is expected to be faster than sparse"); and per cluster only with
  more than 2/3 zeros in its 1x1 weights (src/subgraph.c:935-936). Every x86 kind seen on these
  machines has AVX, so on x86 the sparse-format file runs the same NHWC kernels as the plain one.
- The wheel's libLiteRt.so carries XNNPACK's NCHW operators ("Convolution (NCHW, F32)", NCHW
  dwconv / hwc2chw fingerprints); symbols and XNNPACK's own log strings are stripped, so the
  NCHW rewrite itself is not visible in the binary.
- What it buys on x86: smaller files (the sparse format stores the 1x1 weights compressed), no
  speed. On the qemu ARM64 board the sparse-format outputs came out bit-identical to the plain
  file's and the emulated times equal: the NCHW path did not show there either, but that board
  proves little (cpuinfo cannot read its CPUs under qemu-user, so XNNPACK's hardware config there
  is a fallback). Whether the hint pays must be measured on a real ARM device (C++/Android, or
  the Python wheel on an aarch64 board).

"""


def describe(path: Path) -> dict[str, Any]:
    """Size, gzip size, op counts and XNNPACK's operator names (LiteRT profiler, 1 thread)."""
    from tfopt.inspection import graph_summary, gzip_size

    data = path.read_bytes()
    ops = graph_summary(data)["ops"]
    profile = profile_ops(str(path), threads=1, runs=3, warmup=1)
    xnn = sorted({r["op"] for r in profile["ops"] if r["where"] == "xnnpack"})
    return {
        "bytes": len(data),
        "gzip_bytes": gzip_size(data),
        "densify_ops": ops.get("DENSIFY", 0),
        "ops": ops,
        "xnnpack_operators": xnn,
        "nchw_operators": [op for op in xnn if "NCHW" in op or "SpMM" in op],
        "tflite_ops": sorted({r["op"] for r in profile["ops"] if r["where"] == "tflite"}),
    }


def outputs(path: Path, x: np.ndarray, threads: int = 1) -> np.ndarray:
    interpreter = make_interpreter(str(path), threads)
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
    interpreter.invoke()
    return interpreter.get_tensor(interpreter.get_output_details()[0]["index"]).copy()


def time_rounds(paths: dict[str, Path], threads: int, rounds: int, runs: int) -> dict[str, Any]:
    """Interleaved rounds: each round times every file `runs` times after 3 warm-up invokes;
    per file the median of the rounds' medians (ms) and the rounds' spread."""
    x = np.random.default_rng(1).random((1, 224, 224, 3), np.float32)
    interpreters = {}
    for name, path in paths.items():
        it = make_interpreter(str(path), threads)
        it.set_tensor(it.get_input_details()[0]["index"], x)
        interpreters[name] = it
    medians: dict[str, list[float]] = {name: [] for name in paths}
    for r in range(rounds):
        order = list(paths) if r % 2 == 0 else list(reversed(paths))
        for name in order:
            it = interpreters[name]
            for _ in range(3):
                it.invoke()
            times = []
            for _ in range(runs):
                t0 = time.perf_counter_ns()
                it.invoke()
                times.append((time.perf_counter_ns() - t0) / 1e6)
            medians[name].append(float(np.median(times)))
    return {
        name: {"median_ms": round(float(np.median(m)), 3), "round_min_ms": round(min(m), 3),
               "round_max_ms": round(max(m), 3), "rounds": m}
        for name, m in medians.items()
    }  # fmt: skip


def on_board(paths: dict[str, Path], x: np.ndarray) -> dict[str, Any]:
    """Outputs (and emulated, not meaningful, times) on the ARM64 board, where XNNPACK allows its
    NCHW path. LiteRT's profiler needs CompiledModel, which fails there (cpuinfo cannot read the
    board's CPUs under qemu-user: LiteRtCreateCompiledModel status 3); the Interpreter runs."""
    from tests import board
    from tfopt.targets import SshTarget
    from tfopt.targets.base import RunSpec

    reason = board.problem()
    if reason:
        return {"skipped": reason}
    spec = RunSpec(accelerator="cpu", threads=1, warmup=1, min_seconds=0.01, runs=3,
                   xnnpack=True, pin=None)  # fmt: skip
    rows: dict[str, Any] = {}
    with board.board_sshd() as server:
        target = SshTarget(server.url, str(server.key), [
            f"UserKnownHostsFile={server.known_hosts}", "StrictHostKeyChecking=yes"])  # fmt: skip
        try:
            for name, path in paths.items():
                doc = target.measure(path, spec, None, timeout=3600)
                arm, _ = target.outputs(path, {"image": x}, threads=1, timeout=3600)
                rows[name] = {
                    "output": next(iter(arm.values())),
                    "emulated_p50_ms_not_meaningful": round(doc["latency_us"]["p50"] / 1000, 1),
                    "machine": doc["machine"],
                }
                print(name, "board", rows[name]["emulated_p50_ms_not_meaningful"], flush=True)
        finally:
            target.close()
    return rows


def build(out: Path) -> tuple[dict[str, Path], dict[str, Any]]:
    """The six .tflite files and what the pruning did."""
    keras_worlds.tf().random.set_seed(0)
    model = mobilenet_v2()
    paths = {
        "dense float32": convert(model, out / "dense_f32.tflite", False, False),
        "dense float16": convert(model, out / "dense_f16.tflite", True, False),
    }
    pruned, kernels = prune_for_xnnpack(model)
    for precision, half in (("float32", False), ("float16", True)):
        for fmt, sparse in (("plain", False), ("sparse format", True)):
            name = f"pruned {precision} {fmt}"
            paths[name] = convert(pruned, out / f"{name.replace(' ', '_')}.tflite", half, sparse)
    one_by_one = [v for k, v in kernels.items() if v > 0]
    info = {
        "params": int(model.count_params()),
        "conv2d_kernels": len(kernels),
        "conv2d_sparsity_min": min(one_by_one),
        "conv2d_sparsity_max": max(one_by_one),
        "applications_mobilenet_v2_under_policy": applications_refused(),
    }
    return paths, info


def compare(paths: dict[str, Path], x: np.ndarray, board_rows: dict[str, Any]) -> dict[str, Any]:
    """max |output - reference| per file on x86 (reference: the float32 file of the same model)
    and, on the board, the same against the board's own reference, plus sparse format against
    plain at one precision: on x86 they are bit-identical (XNNPACK stays NHWC); a difference on
    ARM is the NCHW SpMM path's other summation order."""
    ref = {"dense": outputs(paths["dense float32"], x), "pruned": outputs(paths["pruned float32 plain"], x)}
    arm = {k: v.pop("output") for k, v in board_rows.items() if isinstance(v, dict) and "output" in v}
    diffs: dict[str, Any] = {}
    for name, path in paths.items():
        model = name.split()[0]
        mine = outputs(path, x)
        plain = name.replace("sparse format", "plain")
        diffs[name] = {"x86_max_abs": float(np.max(np.abs(mine - ref[model])))}
        if "sparse format" in name:
            diffs[name]["x86_vs_plain"] = float(np.max(np.abs(mine - outputs(paths[plain], x))))
        if name in arm:
            diffs[name]["arm_vs_x86"] = float(np.max(np.abs(arm[name] - mine)))
            if "sparse format" in name and plain in arm:
                diffs[name]["arm_vs_plain"] = float(np.max(np.abs(arm[name] - arm[plain])))
    return diffs


def report(doc: dict[str, Any]) -> str:
    def fmt(v: float | None) -> str:
        return "-" if v is None else f"{v:.2g}"

    rows = []
    for name, d in doc["files"].items():
        t = [doc["timing"][th][name]["median_ms"] for th in doc["timing"]]
        diff, arm = doc["diffs"][name], doc["board"].get(name, {})
        rows.append([name, round(d["bytes"] / 1e6, 2), round(d["gzip_bytes"] / 1e6, 2),
                     d["densify_ops"], ", ".join(d["nchw_operators"]) or "none",
                     fmt(diff["x86_max_abs"]), fmt(diff.get("x86_vs_plain")),
                     fmt(diff.get("arm_vs_plain")), *t,
                     arm.get("emulated_p50_ms_not_meaningful", "-")])  # fmt: skip
    headers = ["file", "MB", "gzip MB", "DENSIFY ops", "x86 XNNPACK NCHW ops",
               "max abs vs float32", "x86: sparse vs plain", "ARM: sparse vs plain",
               *[f"x86 {th} ms" for th in doc["timing"]], "ARM ms (emulated, not meaningful)"]  # fmt: skip
    m = doc["model"]
    lines = [FINDINGS, f"Host: {doc['host']['processor']}. Command: `{doc['command']}`.",
             f"Model: MobileNetV2 1.0/224 (XNNPACK-ready layout), {m['params']:,} parameters; "
             f"tfmot PruneForLatencyOnXNNPack: 1x1 Conv2D kernels at {m['conv2d_sparsity_min']:.1%}-"
             f"{m['conv2d_sparsity_max']:.1%} zeros. tf_keras.applications.MobileNetV2 under the "
             f"policy: {m['applications_mobilenet_v2_under_policy']}.",
             "Latency: LiteRT Interpreter (XNNPACK), median of the rounds' medians, interleaved.",
             "", markdown_table(headers, rows)]  # fmt: skip
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--board", action="store_true", help="also run on the ARM64 board")
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tfopt-sparse-") as tmp:
        paths, info = build(Path(tmp))
        files = {name: describe(path) for name, path in paths.items()}
        print(json.dumps({k: (v["densify_ops"], v["nchw_operators"]) for k, v in files.items()}))
        x = np.random.default_rng(2).random((1, 224, 224, 3), np.float32)
        board_rows = on_board(paths, x) if args.board else {}
        diffs = compare(paths, x, board_rows)
        timing = {f"{th} thread": time_rounds(paths, th, args.rounds, args.runs) for th in (1, 2)}
    doc = {
        "host": {"machine": platform.machine(), "processor": _cpu_name()},
        "command": f"python benchmarks/sparse.py --rounds {args.rounds} --runs {args.runs}"
        + (" --board" if args.board else ""),
        "model": info,
        "files": files,
        "diffs": diffs,
        "timing": timing,
        "board": board_rows,
    }
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "sparse.json").write_text(json.dumps(doc, indent=2) + "\n")
    (args.results / "sparse.md").write_text(report(doc))
    print(report(doc))


def _cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


if __name__ == "__main__":
    main()
