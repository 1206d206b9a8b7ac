"""Weights in memory once: peak RSS of LM decoding with and without XNNPACK's weight cache.

    .venv/bin/python benchmarks/lm_memory.py [--out /tmp/lm_memory] [--max-length 256]
        [--threads 1] [--rounds 3]

Exports the GPT-2-124M shape (random weights; lm_decode.py's `gpt2_124m`) as float32 and
dynamic int8 LMs, then, each in its own child process, loads the file with `LmRunner`, runs a
16-token prompt and 16 decode steps (timed: TTFT and decode tokens/s over `--runs` generations)
and reports the process's peak RSS (VmHWM), RSS before the model was loaded, and the file's
bytes. "packed per signature" is LiteRT's default (no weight cache), "packed once" the weight
cache of tfopt/runtime/weightcache.py: "cold" builds it (in a child of the child), "warm" reuses
it. Rounds alternate the modes, so a busy machine slows all of them alike. Results go to
benchmarks/results/lm_memory.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lm_decode import convert_variants, gpt2_124m  # noqa: E402

import tfopt  # noqa: E402
from tfopt.runtime.stats import machine_info  # noqa: E402

VARIANTS = [("float32", "float32", "converter"), ("int8 dynamic", "dynamic", "converter")]
MODES = ["packed per signature", "packed once (cold)", "packed once (warm)"]
RESULTS = Path(__file__).resolve().parent / "results"

CHILD = r"""
import functools, inspect, json, os, sys, time
import numpy as np
mode, path, threads, new_tokens, runs = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) / 1024
from tfopt.runtime import lm, weightcache
out = {"baseline_mb": status("VmRSS")}
t0 = time.perf_counter()
cache = "" if mode == "none" else weightcache.weight_cache(path, threads)
out["cache_ms"] = (time.perf_counter() - t0) * 1e3
out["cache"] = os.path.basename(cache)
t0 = time.perf_counter()
runner = lm.LmRunner(path, threads, weight_cache=mode != "none")
out["load_ms"] = (time.perf_counter() - t0) * 1e3
prompt = [int(t) for t in np.random.default_rng(0).integers(0, 100, 16)]
ttft, steps = [], []
for i in range(runs + 1):
    tokens, timing = runner.generate(prompt, new_tokens + 1)
    if i:  # the first generation packs (without a warm cache) and warms up
        ttft.append(lm.ttft_ms(timing)); steps += timing["decode_us"]
out.update(ttft_ms=float(np.median(ttft)), decode_tokens_per_s=1e6 / float(np.median(steps)),
           tokens=tokens, hwm_mb=status("VmHWM"), rss_mb=status("VmRSS"))
print(json.dumps(out))
"""


def child(mode: str, path: Path, threads: int, new_tokens: int, runs: int) -> dict:
    if mode == "packed once (cold)":
        for stale in path.parent.glob(f"{path.name}.*.xnnpack_cache"):
            stale.unlink()
    flag = "none" if mode == "packed per signature" else "cache"
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, flag, str(path), str(threads), str(new_tokens), str(runs)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return json.loads(proc.stdout.strip().splitlines()[-1])


def median_row(label: str, mode: str, records: list[dict], file_mb: float) -> list:
    def med(key: str) -> float:
        return statistics.median(r[key] for r in records)

    hwm = med("hwm_mb")
    return [label, mode, round(file_mb, 1), round(med("baseline_mb")), round(hwm),
            f"{hwm / file_mb:.2f}x", f"{(hwm - med('baseline_mb')) / file_mb:.2f}x",
            round(med("ttft_ms"), 1), round(min(r["ttft_ms"] for r in records), 1),
            round(med("decode_tokens_per_s"), 1),
            round(max(r["decode_tokens_per_s"] for r in records), 1),
            round(med("load_ms") + med("cache_ms"))]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="/tmp/lm_memory")
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--new-tokens", type=int, default=16)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    out = Path(args.out)
    model = tfopt.load(gpt2_124m(out)).model
    paths = convert_variants(model, out, VARIANTS, args.max_length, check=False)
    records: dict[str, dict[str, list[dict]]] = {lb: {m: [] for m in MODES} for lb in paths}
    for _ in range(args.rounds):
        for label, path in paths.items():
            for mode in MODES:
                r = child(mode, path, args.threads, args.new_tokens, args.runs)
                records[label][mode].append(r)
                print(label, mode, json.dumps(r), file=sys.stderr)
    rows = [
        median_row(label, mode, records[label][mode], os.path.getsize(paths[label]) / 2**20)
        for label in paths
        for mode in MODES
    ]
    header = ["variant", "weights", "file MiB", "RSS before load MiB", "peak RSS MiB",
              "peak / file", "(peak - before) / file", "TTFT ms", "best TTFT ms",
              "decode tok/s", "best decode tok/s",
              "load ms (incl. cache)"]  # fmt: skip
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    info = machine_info()
    machine = f"{info['cpu']}, {info['cores']} cores, ai-edge-litert {info['ai_edge_litert']}"
    lines.append(
        f"\n{machine}; max_length {args.max_length}, {args.threads} thread(s), 16-token prompt, "
        f"{args.new_tokens} decode steps; medians (and best) of {args.rounds} rounds."
    )
    RESULTS.mkdir(exist_ok=True)
    document = {"machine": info, "header": header, "rows": rows, "records": records}
    (RESULTS / "lm_memory.json").write_text(json.dumps(document, indent=1))
    (RESULTS / "lm_memory.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
