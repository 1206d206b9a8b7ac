"""Decode of the GPT-2-124M-shaped LM export against its memory-bandwidth roofline, 1 thread.

    python benchmarks/lm_roofline.py [--rounds 5] [--out lm-peers-out]

The files are lm_peers.py's (float32, dynamic int8, int4 blocks of 32 of the random-init keras-hub
GPT-2 of the 124M shape, export length 512, in LiteRT-LM's contract); they are converted only when
missing. Each round measures, in its own child process, the single-core memory bandwidth (a large
numpy copy, bytes read plus bytes written per second as STREAM counts it; and a read-only pass, a
float32 dot product, OpenBLAS on one thread) and then every variant's decode through `python -m
tfopt bench --lm --json` (tfopt's runner on CompiledModel, caches bound in place, XNNPACK weight
cache), so the bandwidth and the decode of one round see the same load on a shared machine.

The bytes one decode step reads: the constants of the `decode` signature
(`tfopt.inspection.weight_bytes_per_run`: a tied embedding counts as the head's full read, int4
block scales included) plus the KV cache rows it attends to (K and V of every layer, float32,
positions 0..p at step position p; the mean over the timed steps). The bandwidth-bound rate is
bandwidth / bytes; the figure is the measured rate over that bound, per round, median over rounds.
Writes benchmarks/results/lm_roofline.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import lm_peers  # noqa: E402
from children import child  # noqa: E402

from tfopt.inspection import weight_bytes_per_run  # noqa: E402
from tfopt.report import markdown_table  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
BANDWIDTH = r"""
import json, statistics, time, numpy as np
a = np.ones(512 * 2**20 // 4, np.float32)
b = np.empty_like(a)
ones = np.ones_like(a)
copy, read = [], []
for _ in range(9):
    t0 = time.perf_counter(); np.copyto(b, a); copy.append(2 * a.nbytes / (time.perf_counter() - t0) / 1e9)
    t0 = time.perf_counter(); np.dot(a, ones); read.append(2 * a.nbytes / (time.perf_counter() - t0) / 1e9)
print(json.dumps({"copy_gbs": statistics.median(copy), "read_gbs": statistics.median(read)}))
"""
ONE_THREAD = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def bandwidth() -> dict[str, float]:
    """Single-core copy and read bandwidth (GB/s, median of 9 passes over 512 MB arrays)."""
    proc = subprocess.run([sys.executable, "-c", BANDWIDTH], capture_output=True, text=True,
                          check=True, env={**os.environ, **ONE_THREAD})  # fmt: skip
    return json.loads(proc.stdout)


def decode(path: Path, prompt_len: int, new_tokens: int, reps: int) -> dict[str, float]:
    text, rss = child([
        sys.executable, "-m", "tfopt", "bench", str(path), "--lm", "--prompt-len", str(prompt_len),
        "--new-tokens", str(new_tokens), "--threads", "1", "--runs", str(reps), "--json",
    ])  # fmt: skip
    (r,) = json.loads(text)["results"]
    return {"decode_tokens_per_s": r["decode_tokens_per_s"]["p50"],
            "decode_step_ms": r["decode_step_us"]["p50"] / 1e3, "peak_rss_mb": rss}  # fmt: skip


def kv_bytes(path: Path, prompt_len: int, new_tokens: int) -> tuple[float, float]:
    """Mean KV bytes one timed decode step reads, and the mean position: the steps run at
    positions prompt_len .. prompt_len + new_tokens - 2 (the first token is the prefill's) and
    attend to rows 0..p of K and V in every layer."""
    from tfopt.runtime.lm import LmRunner

    lm = LmRunner(str(path), xnnpack=False)  # shapes only: no packing
    row = 2 * lm.layers * lm.kv_heads * lm.head_dim * 4
    lm.close()
    positions = range(prompt_len, prompt_len + new_tokens - 1)
    mean = statistics.mean(positions)
    return row * (mean + 1), mean


def files(out: Path, max_length: int) -> dict[str, Path]:
    """lm_peers' tfopt files; converted (lm_decode.convert_variants) only when one is missing."""
    variants = [(p.label, p.precision, p.quantizer) for p in lm_peers.PAIRS]
    paths = {label: out / f"lm_{prec}_{quant}_{max_length}.tflite" for label, prec, quant in variants}
    if not all(p.exists() for p in paths.values()):
        import tfopt

        model = tfopt.load(lm_peers.lm_decode.gpt2_124m(out)).model
        paths = lm_peers.lm_decode.convert_variants(model, out, variants, max_length, check=False)
    return paths


def rounds(paths: dict[str, Path], args: argparse.Namespace) -> dict[str, list[dict]]:
    samples: dict[str, list[dict]] = {"bandwidth": []}
    for r in range(args.rounds):
        samples["bandwidth"].append(bandwidth())
        for label, path in paths.items():
            samples.setdefault(label, []).append(
                decode(path, args.prompt_len, args.new_tokens, args.reps))
            print(f"round {r + 1}/{args.rounds} {label}: {samples[label][-1]} "
                  f"({samples['bandwidth'][-1]})", file=sys.stderr)  # fmt: skip
    return samples


def roofline(paths: dict[str, Path], samples: dict[str, list[dict]],
             args: argparse.Namespace) -> tuple[list[list[Any]], dict[str, Any]]:  # fmt: skip
    copy = [s["copy_gbs"] for s in samples["bandwidth"]]
    read = [s["read_gbs"] for s in samples["bandwidth"]]
    rows, doc = [], {}
    smallest = min(paths.values(), key=lambda p: p.stat().st_size)  # every file has the same cache
    kv, position = kv_bytes(smallest, args.prompt_len, args.new_tokens)
    for label, path in paths.items():
        w = weight_bytes_per_run(path, "decode")
        step = w["weight_bytes"] + kv
        rates = [s["decode_tokens_per_s"] for s in samples[label]]
        fractions = [rate / (bw * 1e9 / step) for rate, bw in zip(rates, copy, strict=True)]
        of_read = [rate / (bw * 1e9 / step) for rate, bw in zip(rates, read, strict=True)]
        doc[label] = {"weight_bytes": w, "kv_bytes": kv, "mean_position": position,
                      "bytes_per_token": step, "tokens_per_s": statistics.median(rates),
                      "bound_tokens_per_s": statistics.median(copy) * 1e9 / step,
                      "fraction": statistics.median(fractions), "fractions": fractions,
                      "fraction_of_read": statistics.median(of_read),
                      "effective_gbs": statistics.median(rates) * step / 1e9,
                      "weight_cache_mb": weight_cache_mb(path)}  # fmt: skip
        d = doc[label]
        rows.append([label, round(w["weight_bytes"] / 1e6, 1), round(w["scale_bytes"] / 1e6, 1),
                     round(kv / 1e6, 1), round(d["weight_cache_mb"], 1),
                     round(d["bound_tokens_per_s"], 1), round(d["tokens_per_s"], 1),
                     round(d["effective_gbs"], 1),
                     f"{100 * d['fraction']:.0f}% ({100 * min(fractions):.0f}-{100 * max(fractions):.0f}%)",
                     f"{100 * d['fraction_of_read']:.0f}%"])  # fmt: skip
    return rows, doc


def weight_cache_mb(path: Path) -> float:
    """Size of the XNNPACK weight cache beside the model (the packed weights decode reads)."""
    found = sorted(path.parent.glob(f"{path.name}.*.xnnpack_cache"))
    return found[-1].stat().st_size / 1e6 if found else float("nan")


HEADERS = ["variant", "weights MB/token", "of which scales MB", "KV MB/token",
           "packed weight cache MB", "bandwidth-bound tok/s", "measured tok/s",
           "effective GB/s", "of copy roofline (range over rounds)", "of read-only roofline"]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="lm-peers-out", help="lm_peers' cache folder")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--reps", type=int, default=3, help="timed generations inside each child")
    parser.add_argument("--prompt-len", type=int, default=128)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--max-length", type=int, default=512)
    args = parser.parse_args()
    paths = files(Path(args.out) / "gpt2_124m", args.max_length)
    load_before = os.getloadavg()
    samples = rounds(paths, args)
    load_after = os.getloadavg()
    rows, doc = roofline(paths, samples, args)
    copy = statistics.median(s["copy_gbs"] for s in samples["bandwidth"])
    read = statistics.median(s["read_gbs"] for s in samples["bandwidth"])
    host = lm_peers.machine()
    text = (
        f"{markdown_table(HEADERS, rows)}\n\n"
        f"1 thread; prompt {args.prompt_len} tokens, {args.new_tokens} new tokens (KV at the mean "
        f"step position {doc[next(iter(doc))]['mean_position']:.0f}), export length "
        f"{args.max_length}; single-core copy bandwidth {copy:.1f} GB/s (read + write, median over "
        f"rounds; read-only dot product {read:.1f} GB/s); medians of {args.rounds} interleaved "
        f"rounds x {args.reps} generations per child; machine: {host['cpu']}, {host['cores']} "
        f"cores, load average {load_before[0]:.2f} before, {load_after[0]:.2f} after\n"
    )
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "lm_roofline.json").write_text(json.dumps(
        {"args": vars(args), "roofline": doc, "samples": samples, "machine": host,
         "load_average": {"before": load_before, "after": load_after}}, indent=2, default=str))  # fmt: skip
    (RESULTS / "lm_roofline.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
