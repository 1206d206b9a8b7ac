"""Evidence for the GPU and ssh targets (BENCHMARKS.md section 7).

    python benchmarks/targets.py [--rounds 5] [--out targets-out]      (make bench-targets)

1. GPU: op placement, LiteRT's fallback reasons and max |GPU - CPU| for a digits CNN (trained on
   the real scikit-learn digits, fed a real test image) and a keras-hub BERT with real weights
   (all-MiniLM-L6-v2, fed a real tokenized fortune), on the software Vulkan device from
   `make soft-gpu`. Its timings say nothing about real GPUs and are not reported as such.
2. ssh vs local: the same .tflite timed on this machine directly and through a real sshd on
   127.0.0.1 (copy model + runtime zipapp, run with the "device's" python), alternating, `rounds` times
   each; the ratio of the medians shows whether the remote path distorts the timing.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import tfopt  # noqa: E402
from tests.sshd import local_sshd  # noqa: E402
from tfopt.demo import digits_split, train_digits_cnn  # noqa: E402
from tfopt.report import markdown_table  # noqa: E402
from tfopt.targets import LocalTarget, SshTarget  # noqa: E402
from tfopt.timing import BenchSettings, bench  # noqa: E402


def build_models(out: Path) -> tuple[dict[str, tuple[Path, Path]], dict[str, tuple[Path, Path]]]:
    """(model, one real input sample): float32 for both sections, other precisions for the GPU."""
    import minilm

    x_train, y_train, x_test, _ = digits_split()
    cnn = train_digits_cnn(x_train, y_train)
    np.savez(out / "cnn_sample.npz", x=x_test[:1])
    np.savez(out / "cnn_calib.npz", x=x_train[:200])
    tokens = minilm.tokenize(minilm.sentences(1), 128)
    np.savez(out / "minilm_sample.npz", **tokens)
    bert = tfopt.load(minilm.minilm_folder()).model

    gpu: dict[str, tuple[Path, Path]] = {}
    for precision in ("float32", "float16", "int8"):
        path = out / f"cnn_{precision}.tflite"
        tfopt.convert(cnn, path, precision, calibration=out / "cnn_calib.npz", overwrite=True)
        gpu[f"digits CNN {precision}"] = (path, out / "cnn_sample.npz")
    for precision in ("float32", "float16", "dynamic"):
        path = out / f"minilm_{precision}.tflite"
        tfopt.convert(bert, path, precision, seq_len=128, overwrite=True, check=False)
        gpu[f"MiniLM-L6 {precision}"] = (path, out / "minilm_sample.npz")
    ssh = {
        "digits CNN": gpu["digits CNN float32"],
        "MiniLM-L6 (keras-hub BERT)": gpu["MiniLM-L6 float32"],
    }
    return gpu, ssh


def gpu_evidence(models: dict[str, tuple[Path, Path]]) -> tuple[list, dict]:
    rows, records = [], {}
    for label, (path, sample) in models.items():
        settings = BenchSettings(threads=(1,), runs=20, warmup=2, data=str(sample),
                                 accelerators=("gpu",))  # fmt: skip
        gpu = bench(path, settings).to_dict()["results"][0]
        records[label] = gpu
        cpu_ops = ", ".join(f"{k} x{v}" for k, v in gpu["op_placement"]["cpu"].items()) or "-"
        reasons = (
            "; ".join(
                f"{k}: {v or '(no reason given)'}" for k, v in gpu["fallback_reasons"].items()
            )
            or "-"
        )
        rows.append([label, "yes" if gpu["fully_accelerated"] else "no",
                     gpu["gpu_op_count"], gpu["cpu_op_count"], cpu_ops, reasons,
                     f"{gpu['max_abs_vs_cpu']:.2e}", "yes" if gpu["op_placement_exact"] else "no"])  # fmt: skip
    return rows, records


def ssh_evidence(
    models: dict[str, tuple[Path, Path]], rounds: int, pin: str | None
) -> tuple[list, dict]:
    """Paired rounds in ABBA order (local, ssh, ssh, local, ...): this VM's speed drifts in phases
    of seconds, so each ssh run is compared with the local run right next to it."""
    rows, records = [], {}
    with tempfile.TemporaryDirectory() as tmp, local_sshd(Path(tmp)) as server:
        remote = SshTarget(server.url, str(server.key), [
            f"UserKnownHostsFile={server.known_hosts}", "StrictHostKeyChecking=yes"
        ], python=sys.executable)  # fmt: skip
        try:
            for label, (path, sample) in models.items():
                s = BenchSettings(threads=(1,), min_seconds=0.5, warmup=10, pin=pin,
                                  data=str(sample))  # fmt: skip
                local_p50, remote_p50 = [], []
                for r in range(rounds):
                    order = [LocalTarget(), remote] if r % 2 == 0 else [remote, LocalTarget()]
                    p50 = {t.name: bench(path, s, t).results[0]["latency_us"]["p50"] for t in order}
                    local_p50.append(p50["local"])
                    remote_p50.append(p50[remote.name])
                ratios = [rm / lo for rm, lo in zip(remote_p50, local_p50, strict=True)]
                lm, rm = statistics.median(local_p50), statistics.median(remote_p50)
                records[label] = {"local_p50_us": local_p50, "ssh_p50_us": remote_p50,
                                  "paired_ratios": ratios}  # fmt: skip
                rows.append([label, rounds, round(lm / 1000, 4), round(rm / 1000, 4),
                             f"{rm / lm:.3f}", f"{statistics.median(ratios):.3f}"])  # fmt: skip
        finally:
            remote.close()
    return rows, records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=16)
    parser.add_argument("--pin", default="1", help="CPU id both sides are pinned to ('' = none)")
    parser.add_argument("--out", default="targets-out")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    gpu_models, ssh_models = build_models(out)
    gpu_rows, gpu_records = gpu_evidence(gpu_models)
    ssh_rows, ssh_records = ssh_evidence(ssh_models, args.rounds, args.pin or None)
    device = next(iter(gpu_records.values()))["gpu_device"]
    md = "\n".join(
        [
            f"Machine: {platform.processor() or platform.machine()}, GPU: {device} (software)",
            "",
            markdown_table(
                [
                    "model",
                    "fully on GPU",
                    "GPU ops",
                    "CPU ops",
                    "ops on CPU",
                    "LiteRT's fallback reasons",
                    "max abs GPU-CPU",
                    "split exact",
                ],
                gpu_rows,
            ),  # fmt: skip
            "",
            markdown_table(
                [
                    "model",
                    "rounds",
                    "local p50 ms",
                    "ssh p50 ms",
                    "ssh / local",
                    "median paired ratio",
                ],
                ssh_rows,
            ),
        ]
    )
    results = ROOT / "benchmarks" / "results"
    results.mkdir(exist_ok=True)
    (results / "targets.json").write_text(
        json.dumps({"gpu": gpu_records, "ssh": ssh_records}, indent=2, default=str)
    )
    (results / "targets.md").write_text(md + "\n")
    print(md)


if __name__ == "__main__":
    main()
