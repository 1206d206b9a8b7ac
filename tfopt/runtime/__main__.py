"""The runtime's command line: time one model at one thread count, print one JSON document.

    python runtime.pyz MODEL.tflite --threads 2 --runs 100 --warmup 10 [--no-xnnpack] [--data X.npz]
        [--pin 0,1] [--accelerator gpu [--placement-only]] [--lm --prompt-len 16 --new-tokens 32]
        [--cpu-option KEY=VALUE ...] [--profile] [--input-shape NAME=1,500,4 ...]
    python runtime.pyz MODEL.tflite --data X.npz --outputs OUT.npz   (every sample's outputs)

The same entry runs locally and on an ssh device: the host builds `tfopt/runtime` into one zipapp
(`tfopt.targets.base.runtime_zipapp`) and runs it with the target's python.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile

from .cpu import Budget, run
from .cpuopts import COMPILED, parse_cpu_options
from .feeding import parse_shapes, synthetic_file, write_outputs
from .gpu import run_compiled
from .litertlm import lm_bench as litertlm_bench
from .lm import LmBench, run_lm
from .profile import profile_ops
from .stats import machine_info, pin

HARNESS_VERSION = 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Time one .tflite model with LiteRT.")
    parser.add_argument("model")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--runs", type=int, default=None)
    parser.add_argument("--min-seconds", type=float, default=1.0)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--no-xnnpack", action="store_true")
    parser.add_argument("--data", default=None)
    parser.add_argument(
        "--input-shape",
        action="append",
        default=[],
        help="NAME=1,500,4: time a synthetic sample of this shape (a free dimension's length)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lm", action="store_true", help="time prefill/decode of an exported LM")
    parser.add_argument("--prompt-len", type=int, default=16)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--lookup", type=int, default=0, help="--lm: prompt-lookup draft tokens")
    parser.add_argument(
        "--accelerator",
        choices=("cpu", "gpu", "openvino"),
        default="cpu",
        help="cpu: Interpreter + XNNPACK; gpu: CompiledModel on the GPU with CPU fallback; "
        "openvino: LiteRT's OpenVINO compiler plugin and dispatch (OpenVINO's CPU device)",
    )
    parser.add_argument("--placement-only", action="store_true", help="GPU op placement, no timing")
    parser.add_argument("--pin", default=None, help="CPU ids to pin this process to, e.g. 0,1")
    parser.add_argument(
        "--cpu-option", action="append", default=[], help="LiteRT CPU option KEY=VALUE (cpuopts)"
    )
    parser.add_argument("--profile", action="store_true", help="add LiteRT's per-op profile")
    parser.add_argument(
        "--outputs", default=None, help="run every sample of --data, save the outputs (.npz)"
    )
    parser.add_argument("--profile-runs", type=int, default=20)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="tfopt-sample-") as folder:
        return _main(args, folder)


def _main(args: argparse.Namespace, folder: str) -> int:
    try:
        if args.input_shape:
            if args.data:
                raise ValueError("give --data or --input-shape, not both")
            shapes = parse_shapes(args.input_shape)
            args.data = synthetic_file(args.model, shapes, args.seed, folder)
        pinned = pin(args.pin) if args.pin else None
        cpu = parse_cpu_options(args.cpu_option)
        budget = Budget(runs=args.runs, min_seconds=args.min_seconds, warmup=args.warmup)
        if args.outputs:
            if not args.data or args.accelerator != "cpu" or args.lm:
                raise ValueError("--outputs runs the CPU Interpreter over a --data .npz")
            result = write_outputs(
                args.model, args.data, args.outputs, args.threads, not args.no_xnnpack
            )
        elif args.accelerator != "cpu" or cpu["api"] == COMPILED:
            if args.lm:
                raise ValueError("--lm runs on the CPU Interpreter only")
            result = run_compiled(
                args.model,
                args.accelerator,
                threads=args.threads,
                budget=budget,
                data_path=args.data,
                seed=args.seed,
                timing=not args.placement_only,
                cpu=cpu if args.accelerator == "cpu" else None,
            )
        elif args.lm and args.model.endswith(".litertlm"):
            result = litertlm_bench(args.model, args.prompt_len, args.new_tokens, args.threads)
        elif args.lm:
            spec = LmBench(
                args.threads, not args.no_xnnpack, args.prompt_len, args.new_tokens,
                runs=args.runs or 5, warmup=min(args.warmup, 2), seed=args.seed,
                lookup=args.lookup,
            )  # fmt: skip
            result = run_lm(args.model, spec)
        else:
            result = run(
                args.model,
                threads=args.threads,
                xnnpack=not args.no_xnnpack,
                budget=budget,
                data_path=args.data,
                seed=args.seed,
                cpu=cpu,
            )
        if args.accelerator == "cpu":
            result["cpu_options"] = cpu
        if args.profile:
            if args.accelerator != "cpu" or args.lm:
                raise ValueError("--profile profiles the CPU accelerator of a plain model only")
            result["op_profile"] = profile_ops(
                args.model,
                threads=args.threads,
                runs=args.profile_runs,
                warmup=min(args.warmup, 3),
                cpu={**cpu, "kernel_mode": "builtin"} if args.no_xnnpack else cpu,
                data_path=args.data,
                seed=args.seed,
            )
    except Exception as exc:  # noqa: BLE001 - reported to the parent as one line of JSON
        print(json.dumps({"error": f"{type(exc).__name__}: {exc}".partition("\n")[0]}))
        return 1
    if pinned is not None:
        result["pinned_cpus"] = pinned
    result["machine"] = machine_info()
    result["harness_version"] = HARNESS_VERSION
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
