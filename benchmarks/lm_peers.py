"""LM decode against llama.cpp on the same weights: tfopt's .tflite beside llama.cpp's GGUF.

    make bench-lm-peers                      (builds llama.cpp once, then runs this)
    python benchmarks/lm_peers.py --quick    (a small model shape, one round: a smoke test)

A random-init keras-hub GPT-2 of the 124M shape (lm_decode.gpt2_124m; weights do not change
speed) goes to tfopt's LM export in float32, dynamic int8 and int4 blocks of 32 (LiteRT
quantizer), and, through benchmarks/gguf_gpt2.py, to an F32 GGUF that llama.cpp's `llama-quantize`
turns into Q8_0 and Q4_0. Before any timing, the last-position logits of each GGUF on a fixed
32-token prompt are compared with keras-hub's forward; the run stops if the F32 file's cosine is
below 0.999. Then, in interleaved rounds (every variant at every thread count once per round),
each timing in its own child process: tfopt through `python -m tfopt bench --lm --json`,
llama.cpp through `llama-bench -o json` (prompt processing from an empty context = TTFT; token
generation after a context of the prompt's length = decode at the same positions as tfopt's).
Peak RSS is the child's own (`os.wait4`), medians over rounds. Writes
benchmarks/results/lm_peers.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import gguf_gpt2  # noqa: E402
import lm_decode  # noqa: E402
from children import child  # noqa: E402

import tfopt  # noqa: E402
from tfopt.report import markdown_table  # noqa: E402

LLAMACPP = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "tfopt" / "llama.cpp"
RESULTS = ROOT / "benchmarks" / "results"
MIN_COSINE = 0.999


@dataclass(frozen=True)
class Pair:
    """One precision on both sides: tfopt's variant (label, precision, quantizer), llama.cpp's type."""

    label: str
    precision: str
    quantizer: str
    gguf_type: str


PAIRS = [
    Pair("float32", "float32", "converter", "F32"),
    Pair("int8 dynamic", "dynamic", "converter", "Q8_0"),
    Pair("int4 blocks of 32 (aeq)", "w4b32", "aeq", "Q4_0"),
]


@dataclass(frozen=True)
class Run:
    """What one invocation measures."""

    prompt_len: int
    new_tokens: int
    threads: tuple[int, ...]
    rounds: int
    reps: int
    max_length: int


def small_gpt2(out: Path) -> Path:
    """--quick: a 2-layer GPT-2 (hidden 128, vocabulary 1024), saved once under `out`."""
    return lm_decode.random_gpt2(
        out, "gpt2_small_random", vocabulary_size=1024, num_layers=2, num_heads=4,
        hidden_dim=128, intermediate_dim=512,
    )  # fmt: skip


def llama_tools(folder: Path) -> dict[str, Path]:
    tools = {
        "bench": folder / "build" / "bin" / "llama-bench",
        "quantize": folder / "build" / "bin" / "llama-quantize",
        "logits": folder / "llama-logits",
    }
    missing = [str(p) for p in tools.values() if not p.exists()]
    if missing:
        raise SystemExit(f"llama.cpp is not built ({', '.join(missing)}): run `make llamacpp`")
    return tools


def gguf_files(model: Any, out: Path, tools: dict[str, Path]) -> dict[str, Path]:
    """F32 GGUF from the keras-hub weights, then Q8_0 and Q4_0 by llama-quantize (cached)."""
    f32 = out / f"{out.name}_f32.gguf"
    if not f32.exists():
        gguf_gpt2.write_gguf(model.backbone, f32.with_suffix(".part"))
        f32.with_suffix(".part").rename(f32)
    files = {"F32": f32}
    for kind in ("Q8_0", "Q4_0"):
        path = out / f"{out.name}_{kind.lower()}.gguf"
        if not path.exists():
            subprocess.run([str(tools["quantize"]), str(f32), str(path), kind, "2"],
                           capture_output=True, text=True, check=True)  # fmt: skip
        files[kind] = path
    return files


def gguf_token_table_type(path: Path) -> str:
    import gguf

    reader = gguf.GGUFReader(str(path))
    (table,) = [t for t in reader.tensors if t.name == "token_embd.weight"]
    return table.tensor_type.name


def parity(model: Any, files: dict[str, Path], tools: dict[str, Path]) -> dict[str, dict]:
    """Last-position logits of each GGUF (llama.cpp, 1 thread) against keras-hub's forward on a
    fixed 32-token prompt; raises SystemExit if the F32 file's cosine is below MIN_COSINE."""
    vocab = int(model.backbone.vocabulary_size)
    ids = [int(t) for t in np.random.default_rng(0).integers(0, vocab - 1, 32)]
    batch = {"token_ids": np.array([ids], np.int32), "padding_mask": np.ones((1, 32), bool)}
    want = np.asarray(model(batch))[0, -1].astype(np.float64)
    report = {}
    with tempfile.TemporaryDirectory() as tmp:
        for kind, path in files.items():
            dump = Path(tmp) / f"{kind}.f32"
            subprocess.run([str(tools["logits"]), str(path), str(dump), *map(str, ids)],
                           capture_output=True, text=True, check=True)  # fmt: skip
            got = np.fromfile(dump, np.float32).astype(np.float64)
            cosine = float(got @ want / (np.linalg.norm(got) * np.linalg.norm(want)))
            report[kind] = {"max_abs_diff": float(np.abs(got - want).max()), "cosine": cosine,
                            "logit_scale": float(np.abs(want).max()),
                            "argmax_equal": bool(got.argmax() == want.argmax())}  # fmt: skip
            print(f"parity {kind}: {report[kind]}", file=sys.stderr)
    if report["F32"]["cosine"] < MIN_COSINE:
        raise SystemExit(f"F32 GGUF logits differ from keras-hub (cosine "
                         f"{report['F32']['cosine']:.5f} < {MIN_COSINE}): not timing")  # fmt: skip
    return report


# A fork+exec child starts with its parent's peak RSS (Linux carries the old address space's high
# water mark through exec), and this parent holds TensorFlow and the model: each timed command is
# started by a small Python process instead, which reports its child's own peak (os.wait4).


def tfopt_time(path: Path, threads: int, run: Run) -> dict[str, float]:
    text, rss = child([
        sys.executable, "-m", "tfopt", "bench", str(path), "--lm", "--prompt-len",
        str(run.prompt_len), "--new-tokens", str(run.new_tokens), "--threads", str(threads),
        "--runs", str(run.reps), "--json",
    ])  # fmt: skip
    (r,) = json.loads(text)["results"]
    return {
        "ttft_ms": r["ttft_ms"],
        "prefill_tokens_per_s": run.prompt_len / r["prefill_ms"] * 1e3,
        "decode_tokens_per_s": r["decode_tokens_per_s"]["p50"],
        "peak_rss_mb": rss,
    }


def llama_time(path: Path, threads: int, run: Run, bench: Path) -> dict[str, float]:
    text, rss = child([
        str(bench), "-m", str(path), "-p", str(run.prompt_len), "-n", str(run.new_tokens),
        "-d", f"0,{run.prompt_len}", "-t", str(threads), "-r", str(run.reps), "-o", "json",
    ])  # fmt: skip
    tests = json.loads(text)

    def median_ns(n_prompt: int, n_gen: int, depth: int) -> float:
        (t,) = [t for t in tests if (t["n_prompt"], t["n_gen"], t["n_depth"]) == (n_prompt, n_gen, depth)]
        return statistics.median(t["samples_ns"])

    prefill = median_ns(run.prompt_len, 0, 0)
    decode = median_ns(0, run.new_tokens, run.prompt_len)
    return {
        "ttft_ms": prefill / 1e6,
        "prefill_tokens_per_s": run.prompt_len / prefill * 1e9,
        "decode_tokens_per_s": run.new_tokens / decode * 1e9,
        "decode_from_empty_tokens_per_s": run.new_tokens / median_ns(0, run.new_tokens, 0) * 1e9,
        "peak_rss_mb": rss,
        "cpu_info": tests[0].get("cpu_info", ""),
    }


def timing_rounds(tflite: dict[str, Path], ggufs: dict[str, Path], run: Run,
                  bench: Path) -> dict[str, dict[int, list[dict]]]:  # fmt: skip
    """Every variant at every thread count once per round, round after round; raw samples."""
    samples: dict[str, dict[int, list[dict]]] = {}
    for r in range(run.rounds):
        for threads in run.threads:
            for pair in PAIRS:
                for name, timer in (
                    (f"tfopt {pair.label}", lambda t, p=pair: tfopt_time(tflite[p.label], t, run)),
                    (f"llama.cpp {pair.gguf_type}",
                     lambda t, p=pair: llama_time(ggufs[p.gguf_type], t, run, bench)),
                ):  # fmt: skip
                    result = timer(threads)
                    samples.setdefault(name, {}).setdefault(threads, []).append(result)
                    print(f"round {r + 1}/{run.rounds} {name} {threads}t: "
                          f"{result['decode_tokens_per_s']:.1f} tok/s, "
                          f"TTFT {result['ttft_ms']:.1f} ms, {result['peak_rss_mb']:.0f} MB",
                          file=sys.stderr)  # fmt: skip
    return samples


def medians(samples: dict[str, dict[int, list[dict]]]) -> dict[str, dict[int, dict]]:
    return {
        name: {t: {k: statistics.median(s[k] for s in runs) for k, v in runs[0].items()
                   if isinstance(v, float)} for t, runs in per_thread.items()}
        for name, per_thread in samples.items()
    }  # fmt: skip


def tables(med: dict[str, dict[int, dict]], sizes: dict[str, float], run: Run) -> str:
    rows, ratios = [], []
    for pair in PAIRS:
        ours, theirs = f"tfopt {pair.label}", f"llama.cpp {pair.gguf_type}"
        for t in run.threads:
            for name in (ours, theirs):
                m = med[name][t]
                rows.append([name, t, round(m["ttft_ms"], 1), round(m["prefill_tokens_per_s"]),
                             round(m["decode_tokens_per_s"], 1), round(m["peak_rss_mb"]),
                             round(sizes[name], 1)])  # fmt: skip
            a, b = med[ours][t], med[theirs][t]
            ratios.append([f"{pair.label} / {pair.gguf_type}", t,
                           f"{a['decode_tokens_per_s'] / b['decode_tokens_per_s']:.2f}x",
                           f"{a['ttft_ms'] / b['ttft_ms']:.2f}x",
                           f"{a['peak_rss_mb'] / b['peak_rss_mb']:.2f}x",
                           f"{sizes[ours] / sizes[theirs]:.2f}x"])  # fmt: skip
    return (
        markdown_table(["runtime", "threads", "TTFT ms", "prefill tok/s", "decode tok/s",
                        "peak RSS MB", "file MB"], rows)  # fmt: skip
        + "\n\n"
        + markdown_table(["tfopt / llama.cpp", "threads", "decode tok/s (>1 = tfopt faster)",
                          "TTFT (<1 = tfopt sooner)", "peak RSS", "file size"], ratios)  # fmt: skip
    )


def machine() -> dict[str, Any]:
    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    fields = dict(line.split(":", 1) for line in lscpu.splitlines() if ":" in line)
    flags = fields.get("Flags", "").split()
    return {
        "cpu": fields.get("Model name", "?").strip(),
        "cores": os.cpu_count(),
        "avx512_vnni": "avx512_vnni" in flags,
        "amx_int8": "amx_int8" in flags,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="lm-peers-out", help="cache of the model and its files")
    parser.add_argument("--llamacpp", type=Path, default=LLAMACPP, help="`make llamacpp` folder")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--reps", type=int, default=3, help="timed runs inside each child")
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--quick", action="store_true", help="small model, 1 round, 32 tokens")
    args = parser.parse_args()
    run = Run(128, 32 if args.quick else args.new_tokens,
              tuple(int(t) for t in args.threads.split(",")), 1 if args.quick else args.rounds,
              args.reps, args.max_length)  # fmt: skip
    tools = llama_tools(args.llamacpp)
    out = Path(args.out) / ("small" if args.quick else "gpt2_124m")
    model_path = small_gpt2(out) if args.quick else lm_decode.gpt2_124m(out)
    model = tfopt.load(model_path).model
    ggufs = gguf_files(model, out, tools)
    agreement = parity(model, ggufs, tools)
    variants = [(p.label, p.precision, p.quantizer) for p in PAIRS]
    # Random weights: int4 fails tfopt's logits check (as in lm_decode), kept for speed.
    tflite = lm_decode.convert_variants(model, out, variants, run.max_length, check=False)
    del model
    samples = timing_rounds(tflite, ggufs, run, tools["bench"])
    med = medians(samples)
    sizes = {f"tfopt {p.label}": tflite[p.label].stat().st_size / 1e6 for p in PAIRS}
    sizes |= {f"llama.cpp {p.gguf_type}": ggufs[p.gguf_type].stat().st_size / 1e6 for p in PAIRS}
    host = machine()
    q4_table = gguf_token_table_type(ggufs["Q4_0"])
    text = (
        f"{tables(med, sizes, run)}\n\n"
        f"Parity before timing (llama.cpp last-position logits vs keras-hub, 32-token prompt): "
        + "; ".join(f"{k} max |diff| {v['max_abs_diff']:.1e}, cosine {v['cosine']:.5f}"
                    for k, v in agreement.items())  # fmt: skip
        + f" (logits up to {agreement['F32']['logit_scale']:.2f}).\n\n"
        f"prompt {run.prompt_len} tokens, {run.new_tokens} new tokens, tfopt export length "
        f"{run.max_length}; medians of {run.rounds} interleaved rounds x {run.reps} runs per "
        f"child; llama.cpp Q4_0 keeps llama-quantize's default {q4_table} for the tied "
        f"token table/head; machine: {host['cpu']}, {host['cores']} cores "
        f"(AVX-512 VNNI: {host['avx512_vnni']}, AMX-INT8: {host['amx_int8']})\n"
    )
    host["llama_cpp_cpu_info"] = samples["llama.cpp F32"][run.threads[0]][0]["cpu_info"]
    doc = {"run": asdict(run), "parity": agreement, "medians": med, "samples": samples,
           "file_mb": sizes, "q4_0_token_table": q4_table, "machine": host}  # fmt: skip
    # --quick is a smoke test: its tables stay beside its files, not in benchmarks/results.
    folder = out if args.quick else RESULTS
    (folder / "lm_peers.json").write_text(json.dumps(doc, indent=2, default=str))
    (folder / "lm_peers.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
