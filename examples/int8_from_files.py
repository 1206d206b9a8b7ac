"""The file-based workflow an app developer follows: .keras in, checked int8 .tflite out.

    python examples/int8_from_files.py [--out int8_out]

Trains a small tf_keras CNN on the real scikit-learn digits, saves it as `.keras` with its
calibration and test data as `.npz`, then drives the same steps as the CLI:
convert (full int8, int8 I/O) -> inspect -> compare on held-out digits -> bench.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

import tfopt
from tfopt.demo import digits_split, train_digits_cnn


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="int8_out")
    parser.add_argument("--epochs", type=int, default=20)
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    x_train, y_train, x_test, y_test = digits_split()
    train_digits_cnn(x_train, y_train, epochs=args.epochs).save(out / "digits.keras")
    np.savez(out / "calib.npz", x=x_train[:100])
    np.savez(out / "test.npz", x=x_test, y=y_test)

    tflite = out / "digits_int8.tflite"
    tfopt.convert(
        out / "digits.keras",
        tflite,
        "int8",
        calibration=out / "calib.npz",
        int8_io=True,
        check_data=out / "test.npz",
        overwrite=True,
    )
    info = tfopt.inspect_tflite(tflite)
    q = info["inputs"][0]["quantization"]
    print(f"input {info['inputs'][0]['dtype']} scale={q['scale']:.5f} zero_point={q['zero_point']}")
    cmp = tfopt.compare_files(str(out / "digits.keras"), str(tflite), str(out / "test.npz"))
    acc = cmp.accuracy or {}
    print(
        f"accuracy keras {100 * acc['reference']:.2f}% -> int8 {100 * acc['candidate']:.2f}%, "
        f"top-1 agreement {100 * (cmp.top1_agreement or 0):.2f}%"
    )
    p50 = tfopt.bench(tflite, tfopt.BenchSettings(threads=(1,), min_seconds=0.3)).results[0][
        "latency_us"
    ]["p50"]
    print(f"{info['size_bytes'] / 1024:.1f} KB, p50 {p50:.1f} us at 1 thread")


if __name__ == "__main__":
    main()
