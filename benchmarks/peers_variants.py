"""What `peers.py` compares: one model file on one runtime (`Variant`), tfopt's own variants from
`tfopt.convert`, and the peers' (tf2onnx, ONNX Runtime's quantizers, OpenVINO on the same files)."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

SEQ_LEN = 128
OPSET = 17
CALIBRATION = 100


@dataclass
class Variant:
    """One model file on one runtime, with its quality once measured."""

    model: str
    label: str
    family: str  # tfopt | onnxruntime | openvino
    kind: str  # tflite | ort | ov
    path: str
    note: str = ""
    error: str = ""  # conversion failed or tfopt refused it
    tfopt_refused: bool = False  # a check=False copy: timed, never counted as tfopt's
    quality: dict[str, float] | None = None
    passes: bool = False
    macs: int | None = None  # dense multiply-accumulates per invoke, where counted (cnn224)
    cpu: tuple[str, ...] = ()  # tflite: `tfopt bench --cpu-option`s it runs (and is judged) with


def log(message: str) -> None:
    print(f"[peers {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def tfopt_variants(
    model: Any, name: str, folder: Path, calibration: dict[str, np.ndarray], plans: list[tuple]
) -> list[Variant]:
    """tfopt's own `.tflite` variants, made with `tfopt.convert` and its default check.

    A variant whose check fails is recorded as refused; a `check=False` copy is kept to time it,
    marked so that it never counts as tfopt's result.
    """
    import tfopt
    from tfopt.data import Dataset
    from tfopt.errors import TfoptError, ValidationError

    out = []
    for label, precision, quantizer in plans:
        path = folder / f"tfopt_{precision}_{quantizer}.tflite"
        options: dict[str, Any] = {  # checked on real samples; int8 also calibrates on them
            "check_data": Dataset(calibration),
            "quantizer": quantizer,
            "overwrite": True,
            **({"seq_len": SEQ_LEN} if name == "minilm" else {}),
            **({"dynamic_length": True} if name == "minilm-own" else {}),
            **({"calibration": Dataset(calibration)} if precision == "int8" else {}),
        }
        started = time.perf_counter()
        try:
            result = tfopt.convert(model, path, precision, **options)
            check = result.check or {}
            note = f"tfopt check passed ({time.perf_counter() - started:.0f} s)"
            log(f"{name} {label}: {note}; {check.get('diffs', '')!s:.160}")
            out.append(Variant(name, label, "tfopt", "tflite", str(path), note=note))
        except ValidationError as exc:
            reason = exc.format_message().splitlines()[0]
            log(f"{name} {label}: refused: {reason}")
            unchecked = folder / f"tfopt_{precision}_{quantizer}_nocheck.tflite"
            tfopt.convert(model, unchecked, precision, check=False, **options)
            out.append(
                Variant(name, f"{label} (check off)", "tfopt", "tflite", str(unchecked),
                        error=f"refused: {reason}", tfopt_refused=True)
            )  # fmt: skip
        except TfoptError as exc:
            reason = exc.format_message().splitlines()[0]
            log(f"{name} {label}: fails: {reason}")
            out.append(Variant(name, label, "tfopt", "tflite", "", error=f"fails: {reason}"))
    return out


def to_onnx(fn: Any, signature: list[Any], path: Path) -> None:
    """tf2onnx on a tf.function of the Keras model (works for both Keras worlds)."""
    import tf2onnx

    started = time.perf_counter()
    tf2onnx.convert.from_function(fn, input_signature=signature, opset=OPSET, output_path=str(path))
    log(f"tf2onnx -> {path.name} in {time.perf_counter() - started:.0f} s")


def peer_variants(
    name: str, folder: Path, calibration: dict[str, np.ndarray], fp32_tflite: str,
    statics: bool = True,
) -> list[Variant]:
    """ONNX Runtime's quantizations of the fp32 ONNX model, and OpenVINO on the same files."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_dynamic,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    # ONNX Runtime's quantizers, configured as its docs advise. Dynamic: per-tensor weights are
    # the default; per-channel is what keeps MiniLM's cosine above 0.99 (0.959 -> 0.991 on 40
    # sentences). Static QDQ: s8s8 is the default advice; u8s8 is faster on x86 but can saturate
    # without VNNI, which reduce_range (7-bit weights) avoids. On MiniLM every full-int8 graph
    # breaks the masked softmax (cosine ~0.3), so the encoder also gets the transformer recipe
    # that quantizes only the MatMuls.
    i8, u8 = QuantType.QInt8, QuantType.QUInt8
    dynamic = {
        "dynamic QInt8": {"weight_type": i8},
        "dynamic QInt8 per-channel": {"weight_type": i8, "per_channel": True},
        "dynamic QUInt8 per-channel": {"weight_type": u8, "per_channel": True},
    }
    static = {
        "static QDQ s8s8": {"activation_type": i8},
        "static QDQ u8s8": {"activation_type": u8},
        "static QDQ u8s8 reduce_range": {"activation_type": u8, "reduce_range": True},
    }
    static_minilm = {
        "static QDQ s8s8, MatMul only": {"activation_type": i8, "op_types_to_quantize": ["MatMul"]},
    }

    fp32 = folder / "model.onnx"
    pre = folder / "model.pre.onnx"
    if not pre.exists():  # a free sequence axis defeats ORT's symbolic shape inference
        quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=not statics)

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            n = len(next(iter(calibration.values())))
            self.samples = iter([{k: v[i : i + 1] for k, v in calibration.items()}
                                 for i in range(n)])  # fmt: skip

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.samples, None)

    out = [Variant(name, "fp32", "onnxruntime", "ort", str(fp32))]
    for label, options in dynamic.items():
        path = folder / f"ort_{label.replace(' ', '_')}.onnx"
        if not path.exists():
            quantize_dynamic(str(pre), str(path), **options)
        out.append(Variant(name, label, "onnxruntime", "ort", str(path)))
    qdq = []
    chosen = {**static, **(static_minilm if name == "minilm" else {})} if statics else {}
    for label, options in chosen.items():
        path = folder / f"ort_{label.replace(' ', '_').replace(',', '')}.onnx"
        if not path.exists():
            started = time.perf_counter()
            quantize_static(str(pre), str(path), Reader(), quant_format=QuantFormat.QDQ,
                            per_channel=True, weight_type=QuantType.QInt8, **options)  # fmt: skip
            log(f"{name} ORT {label}: calibrated in {time.perf_counter() - started:.0f} s")
        note = f"per-channel, {CALIBRATION} real calibration samples"
        out.append(Variant(name, label, "onnxruntime", "ort", str(path), note=note))
        qdq.append((label, path))
    out.append(Variant(name, "fp32 (ONNX)", "openvino", "ov", str(fp32)))
    out.append(Variant(name, "fp32 (.tflite)", "openvino", "ov", fp32_tflite,
                       note="OpenVINO's TFLite frontend on tfopt's float32 file"))  # fmt: skip
    for label, path in qdq:
        out.append(Variant(name, f"int8 ({label.removeprefix('static ')} ONNX)", "openvino", "ov",
                           str(path), note="no NNCF here: OpenVINO's own int8 path from QDQ"))  # fmt: skip
    return out

