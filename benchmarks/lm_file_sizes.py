"""LM file sizes and the weight bytes one decode step reads, on the GPT-2-124M shape (issue 24).

    python benchmarks/lm_file_sizes.py [--variants w4b32,dynamic,float32] [--max-length 512]

Builds the random-init GPT-2-124M-shaped keras-hub model of `lm_decode.py gpt2-124m`, exports each
variant with `--lm`, and reports per variant: the file size, `weight_bytes_per_run(path, "decode")`
(weight and scale bytes) and a short decode timing at 1 thread (128-token prompt, 16 new tokens).
Results are appended to OUT/sizes.json as each variant finishes.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from lm_decode import SHAPE_VARIANTS, convert_variants, gpt2_124m  # noqa: E402

import tfopt  # noqa: E402
from tfopt.inspection import weight_bytes_per_run  # noqa: E402
from tfopt.runtime.lm import run_lm  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="lm124-out")
    parser.add_argument("--variants", default="w4b32,dynamic,float32")
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--no-timing", action="store_true")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model = tfopt.load(gpt2_124m(out)).model
    by_precision = {v[1]: v for v in SHAPE_VARIANTS}
    results = {}
    for precision in args.variants.split(","):
        label = by_precision[precision][0]
        started = time.perf_counter()
        (path,) = convert_variants(model, out, [by_precision[precision]], args.max_length,
                                   check=False).values()  # fmt: skip
        row = {"file": str(path), "convert_s": round(time.perf_counter() - started, 1),
               "file_mb": round(path.stat().st_size / 1e6, 1),
               **weight_bytes_per_run(path, "decode")}  # fmt: skip
        if not args.no_timing:
            r = run_lm(str(path), threads=1, prompt_len=128, new_tokens=16, runs=1, warmup=0)
            row["decode_tokens_per_s_1t"] = r["decode_tokens_per_s"]
        results[label] = row
        print(label, json.dumps(row, default=str), flush=True)
        (out / "sizes.json").write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
