"""Against the runtimes users would pick instead: ONNX Runtime and OpenVINO, on the same models.

    python benchmarks/peers.py [--models cnn,minilm,minilm-own] [--threads 1,2] [--rounds 10]
                               [--out peers-out] [--quick]

A user with a Keras model could also export it to ONNX and run it with ONNX Runtime or OpenVINO;
tfopt is only worth it if its `.tflite` is at least as fast at the same quality. Two real models,
each from ONE source Keras model:

- cnn: a tf_keras MobileNetV2 (alpha 0.35, 96x96x3) trained here on real Fashion-MNIST (cached
  in OUT/cnn/); quality is held-out accuracy, the gate is "within 1 point of the Keras model".
- minilm: the real all-MiniLM-L6-v2 (keras-hub BertBackbone) at sequence length 128 on real
  fortunes sentences; quality is the cosine of mean-pooled embeddings to the Keras model's, the
  gate is a mean cosine of at least 0.99.
- minilm-own: the same MiniLM and sentences, each run at its own length, as
  an app runs one sentence at a time: tfopt converts with `--dynamic-length`, tf2onnx exports a
  free sequence axis. Every runtime resizes per sentence; a round times set + invoke of the same
  SENTENCES real sentences per variant and its figure is their mean.

tfopt's variants come from `tfopt.convert` with its defaults (check on; a refused variant is
recorded and, where it converts, timed from a `check=False` copy that never counts as tfopt's).
The peers: tf2onnx (opset 17) from the same Keras model; ONNX Runtime fp32, `quantize_dynamic`
QInt8/QUInt8 and `quantize_static` QDQ calibrated on the same real samples; OpenVINO on the fp32
ONNX, on the fp32 `.tflite` (its TFLite frontend) and on the QDQ models (its int8 path without
NNCF, which does not install here). Every variant's quality is measured on held-out real data.

Timing: batch 1, one child process per thread count (no TensorFlow loaded there), every variant
loaded once and warmed up, then interleaved rounds: each round times every variant `runs` times
(order rotated per round); the figure is the median of the round medians. Writes OUT/ (models,
a cache) and benchmarks/results/peers.{json,md}.
"""

from __future__ import annotations

import argparse
import datetime
import gzip
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

RESULTS = ROOT / "benchmarks" / "results"
FMNIST = Path("/usr/share/datasets/fashion-mnist")
SIZE = 96
SEQ_LEN = 128
OPSET = 17
CALIBRATION = 100
CNN_TRAIN, CNN_EPOCHS = 12000, 3
ACCURACY_POINTS = 1.0  # cnn gate: within 1 point of the float Keras model
MIN_COSINE = 0.99  # minilm gate: mean cosine to the float Keras model
RUNS = {"cnn": 100, "minilm": 10, "minilm-own": 1}  # timed invokes (own: passes) per round
SENTENCES = 40  # minilm-own: the real sentences every round runs, each at its own length


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


def log(message: str) -> None:
    print(f"[peers {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------ real data


def fashion_mnist(split: str) -> tuple[np.ndarray, np.ndarray]:
    """Fashion-MNIST `train` or `t10k` as uint8 (N, 28, 28) images and labels (IDX gz files)."""
    if not FMNIST.is_dir():
        sys.exit(f"Fashion-MNIST not found in {FMNIST}: run `make fashion-mnist`")
    with gzip.open(FMNIST / f"{split}-images-idx3-ubyte.gz") as f:
        images = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)
    with gzip.open(FMNIST / f"{split}-labels-idx1-ubyte.gz") as f:
        labels = np.frombuffer(f.read(), np.uint8, offset=8).astype(np.int32)
    return images, labels


def to_input(images: np.ndarray) -> np.ndarray:
    """uint8 28x28 -> float32 96x96x3 in [-1, 1], MobileNetV2's own input convention."""
    from tfopt import keras_worlds

    tf = keras_worlds.tf()
    x = tf.image.resize(images[..., None].astype(np.float32), (SIZE, SIZE))
    return np.repeat(x.numpy() / 127.5 - 1.0, 3, axis=-1).astype(np.float32)


def train_cnn(path: Path) -> None:
    """Train MobileNetV2 alpha 0.35 from scratch on 12k Fashion-MNIST images, 3 epochs.

    tf_keras, because its MobileNetV2 goes through tfopt, tf2onnx and the int8 calibrator
    without special cases. BatchNorm momentum drops from keras.applications' 0.999 to 0.9:
    with ~560 steps the moving statistics would otherwise still be far from the data's and
    the inference-mode accuracy would say little.
    """
    from tfopt import keras_worlds

    tf = keras_worlds.tf()
    keras = keras_worlds.module(keras_worlds.World.TF_KERAS)
    keras.utils.set_random_seed(0)
    images, labels = fashion_mnist("train")
    order = np.random.default_rng(0).permutation(len(images))[:CNN_TRAIN]
    images, labels = images[order], labels[order]

    def prep(x: Any, y: Any) -> tuple[Any, Any]:
        x = tf.image.resize(tf.cast(x[..., None], tf.float32), (SIZE, SIZE))
        return tf.repeat(x / 127.5 - 1.0, 3, axis=-1), y

    data = (
        tf.data.Dataset.from_tensor_slices((images, labels))
        .shuffle(len(images), seed=0)
        .batch(64)
        .map(prep, num_parallel_calls=2)
        .prefetch(2)
    )
    inp = keras.Input((SIZE, SIZE, 3), name="image")
    model = keras.applications.MobileNetV2(
        input_tensor=inp, alpha=0.35, weights=None, classes=10
    )
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 0.9
    model.compile(keras.optimizers.Adam(2e-3), "sparse_categorical_crossentropy", ["accuracy"])
    started = time.perf_counter()
    model.fit(data, epochs=CNN_EPOCHS, verbose=2)
    log(f"cnn trained in {time.perf_counter() - started:.0f} s")
    path.parent.mkdir(parents=True, exist_ok=True)
    model.save(path)


def minilm_tokens(n_eval: int) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Tokenized real fortunes: `n_eval` held-out sentences and CALIBRATION others.

    Calibration takes the first sentences, so it is the same whatever `n_eval` is and never
    overlaps the evaluation set of another run that reuses the cached quantized models.
    """
    from minilm import sentences, tokenize

    tokens = tokenize(sentences(CALIBRATION + n_eval), SEQ_LEN)
    return (
        {k: v[CALIBRATION:] for k, v in tokens.items()},
        {k: v[:CALIBRATION] for k, v in tokens.items()},
    )


# ------------------------------------------------------------------ the variants


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


def prepare_cnn(out: Path, n_eval: int) -> tuple[list[Variant], dict[str, Any]]:
    """Train (or reuse) the CNN; every variant's file; held-out images and the Keras accuracy."""
    from tfopt import keras_worlds

    folder = out / "cnn"
    folder.mkdir(parents=True, exist_ok=True)
    source = folder / "mobilenetv2_035_fmnist.keras"
    if not source.exists():
        log("training MobileNetV2 0.35 on Fashion-MNIST (cached for later runs)")
        train_cnn(source)
    tf = keras_worlds.tf()
    keras = keras_worlds.module(keras_worlds.World.TF_KERAS)
    model = keras.models.load_model(source, compile=False)
    test_x, test_y = fashion_mnist("t10k")
    order = np.random.default_rng(1).permutation(len(test_x))
    x_eval, y_eval = to_input(test_x[order[:n_eval]]), test_y[order[:n_eval]]
    train_x, _ = fashion_mnist("train")
    calib = {"image": to_input(train_x[-CALIBRATION:])}  # images never used in training
    probs = model.predict(x_eval, batch_size=128, verbose=0)
    accuracy = float(np.mean(probs.argmax(1) == y_eval) * 100)
    log(f"cnn Keras float accuracy on {n_eval} held-out images: {accuracy:.2f}%")

    plans = [("float32", "float32", "converter"), ("dynamic", "dynamic", "converter"),
             ("int8", "int8", "converter")]  # fmt: skip
    variants = tfopt_variants(source, "cnn", folder, calib, plans)
    if not (folder / "model.onnx").exists():
        fn = tf.function(lambda image: model(image, training=False))
        to_onnx(fn, [tf.TensorSpec((1, SIZE, SIZE, 3), tf.float32, name="image")],
                folder / "model.onnx")  # fmt: skip
    variants += peer_variants("cnn", folder, calib, variants[0].path)
    np.savez(folder / "eval.npz", image=x_eval, labels=y_eval)
    return variants, {"reference_accuracy": accuracy, "eval": str(folder / "eval.npz")}


def prepare_minilm(out: Path, n_eval: int, own: bool = False) -> tuple[list[Variant], dict[str, Any]]:
    """The real MiniLM: every variant's file; held-out tokens and the Keras embeddings. `own`:
    the files take each sentence at its own length (minilm-own)."""
    from minilm import minilm_folder

    import tfopt
    from tfopt import keras_worlds
    from tfopt.validate import sentence_embeddings

    name = "minilm-own" if own else "minilm"
    folder = out / name
    folder.mkdir(parents=True, exist_ok=True)
    tf = keras_worlds.tf()
    model = tfopt.load(minilm_folder()).model
    evals, calib = minilm_tokens(n_eval)
    outputs: dict[str, list[np.ndarray]] = {}
    for start in range(0, n_eval, 32):
        batch = {k: v[start : start + 32] for k, v in evals.items()}
        for key, value in model(batch, training=False).items():
            outputs.setdefault(key, []).append(np.asarray(value))
    reference = sentence_embeddings(
        {k: np.concatenate(v) for k, v in outputs.items()}, evals["padding_mask"], "mean"
    )
    plans = [("float32", "float32", "converter"), ("dynamic", "dynamic", "converter"),
             ("int8", "int8", "converter"), ("dynamic (aeq)", "dynamic", "aeq"),
             ("int8 (aeq)", "int8", "aeq")]  # fmt: skip
    if own:  # the peers' static int8 fails the gate at 128 already; no statics here either
        plans = plans[:3]
    variants = tfopt_variants(model, name, folder, calib, plans)
    if not (folder / "model.onnx").exists():
        fn = tf.function(
            lambda token_ids, segment_ids, padding_mask: model(
                {"token_ids": token_ids, "segment_ids": segment_ids,
                 "padding_mask": padding_mask}, training=False)
        )  # fmt: skip
        length = None if own else SEQ_LEN
        signature = [tf.TensorSpec((1, length), tf.int32, name=k) for k in evals]
        to_onnx(fn, signature, folder / "model.onnx")
    variants += peer_variants(name, folder, calib, variants[0].path, statics=not own)
    np.savez(folder / "eval.npz", reference=reference, **evals)
    return variants, {"eval": str(folder / "eval.npz"), "own_length": own}


# ------------------------------------------------------------------ running (child processes)


def _match(names: list[str], keys: list[str]) -> dict[str, str]:
    """Runtime input name -> data key ('serving_default_token_ids:0' -> 'token_ids')."""
    return {n: next(k for k in sorted(keys, key=len, reverse=True) if k in n) for n in names}


class Runner:
    """One variant loaded on its runtime with `threads` threads: set inputs, invoke, read.

    Inputs are bound once before timing, as tfopt's own harness does: ONNX Runtime through an
    IO binding, OpenVINO through its infer request, LiteRT through set_tensor.
    """

    def __init__(self, v: Variant, threads: int) -> None:
        self.kind = v.kind
        if v.kind == "tflite":
            from tfopt.runtime import feeding

            self.interp = feeding.make_interpreter(v.path, threads)  # XNNPACK on
            self.inputs, self.outputs = feeding.io_details(self.interp)
        elif v.kind == "ort":
            import onnxruntime as ort

            so = ort.SessionOptions()
            so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
            so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
            self.session = ort.InferenceSession(v.path, so, providers=["CPUExecutionProvider"])
            self.binding = self.session.io_binding()
        else:
            import openvino as ov

            core = ov.Core()
            config = {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY",
                      "NUM_STREAMS": 1}  # fmt: skip
            self.compiled = core.compile_model(core.read_model(v.path), "CPU", config)
            self.request = self.compiled.create_infer_request()

    def set(self, sample: dict[str, np.ndarray]) -> None:
        if self.kind == "tflite":
            from tfopt.runtime import feeding

            feeding.feed(self.interp, self.inputs, sample)
        elif self.kind == "ort":
            names = [i.name for i in self.session.get_inputs()]
            self.binding.clear_binding_inputs()
            self.binding.clear_binding_outputs()
            for n, k in _match(names, list(sample)).items():
                self.binding.bind_cpu_input(n, np.ascontiguousarray(sample[k]))
            for o in self.session.get_outputs():
                self.binding.bind_output(o.name)
        else:
            import openvino as ov

            names = {p.get_any_name(): p for p in self.compiled.inputs}
            for n, k in _match(list(names), list(sample)).items():
                self.request.set_tensor(names[n], ov.Tensor(np.ascontiguousarray(sample[k])))

    def invoke(self) -> None:
        if self.kind == "tflite":
            self.interp.invoke()
        elif self.kind == "ort":
            self.session.run_with_iobinding(self.binding)
        else:
            self.request.infer()

    def read(self) -> list[np.ndarray]:
        if self.kind == "tflite":
            from tfopt.runtime import feeding

            return [feeding.dequantize(self.interp.get_tensor(d["index"]), d)
                    for d in self.outputs.values()]  # fmt: skip
        if self.kind == "ort":
            return [np.asarray(o) for o in self.binding.copy_outputs_to_cpu()]
        # .data is a view of the request's buffer, which the next infer overwrites
        return [np.array(self.request.get_tensor(p).data) for p in self.compiled.outputs]


def measure_quality(v: Variant, ev: dict[str, np.ndarray], info: dict[str, Any]) -> None:
    """Held-out accuracy (cnn) or embedding cosine to the Keras model (minilm), batch 1."""
    from tfopt.validate import embedding_agreement, sentence_embeddings

    runner = Runner(v, 2)
    keys = [k for k in ev if k not in ("labels", "reference")]
    if info.get("own_length"):  # each sentence at its own length: pool each one by itself
        embs = []
        for sample in own_length_samples(ev, len(ev[keys[0]])):
            runner.set(sample)
            runner.invoke()
            seq = next(o for o in runner.read() if o.ndim == 3)
            embs.append(sentence_embeddings({"sequence_output": seq}, sample["padding_mask"], "mean"))
        v.quality = embedding_agreement(ev["reference"], np.concatenate(embs))
        v.passes = v.quality["mean_cosine"] >= MIN_COSINE and not v.tfopt_refused
        return
    firsts = []
    for i in range(len(ev[keys[0]])):
        runner.set({k: ev[k][i : i + 1] for k in keys})
        runner.invoke()
        outs = runner.read()
        firsts.append(next(o for o in outs if o.ndim == (2 if v.model == "cnn" else 3)))
    got = np.concatenate(firsts)
    if v.model == "cnn":
        acc = float(np.mean(got.argmax(1) == ev["labels"]) * 100)
        v.quality = {"accuracy": acc}
        v.passes = acc >= info["reference_accuracy"] - ACCURACY_POINTS
    else:
        emb = sentence_embeddings({"sequence_output": got}, ev["padding_mask"], "mean")
        v.quality = embedding_agreement(ev["reference"], emb)
        v.passes = v.quality["mean_cosine"] >= MIN_COSINE
    v.passes = v.passes and not v.tfopt_refused


def own_length_samples(ev: dict[str, np.ndarray], n: int) -> list[dict[str, np.ndarray]]:
    """The first `n` sentences, each cut to its own length (BERT pads at the end)."""
    keys = [k for k in ev if k not in ("labels", "reference")]
    lengths = ev["padding_mask"][:n].sum(axis=1)
    return [{k: np.ascontiguousarray(ev[k][i : i + 1, :n_i]) for k in keys}
            for i, n_i in enumerate(lengths)]  # fmt: skip


def key(v: Variant | dict[str, Any]) -> str:
    d = asdict(v) if isinstance(v, Variant) else v
    return f"{d['family']}/{d['label']}"


def time_variants(
    variants: list[Variant], ev: dict[str, np.ndarray], threads: int, rounds: int, runs: int,
    own: bool = False,
) -> dict[str, dict[str, Any]]:
    """Interleaved rounds at `threads`; per variant the round medians and their median (ms).
    `own`: a round runs SENTENCES sentences at their own lengths (set + invoke timed, as the
    resize is part of the cost) and its figure is their mean."""
    keys = [k for k in ev if k not in ("labels", "reference")]
    sample = {k: ev[k][:1] for k in keys}
    sentences = own_length_samples(ev, SENTENCES) if own else []
    runners = {}
    for v in variants:
        try:
            runners[key(v)] = r = Runner(v, threads)
            r.set(sample)
            for _ in range(max(5, runs // 2)):
                r.invoke()
            for s in sentences:  # own lengths: every shape seen once before timing
                r.set(s)
                r.invoke()
        except Exception as exc:  # noqa: BLE001 - a runtime refusing a model is a result
            log(f"{v.model} {v.label}: cannot run at {threads} threads: {exc}")
            runners.pop(key(v), None)
    medians: dict[str, list[float]] = {label: [] for label in runners}
    order = list(runners)
    for r in range(rounds):
        for label in order[r % len(order) :] + order[: r % len(order)]:
            runner, times = runners[label], []
            if own:
                for s in sentences * runs:
                    t0 = time.perf_counter_ns()
                    runner.set(s)
                    runner.invoke()
                    times.append((time.perf_counter_ns() - t0) / 1e6)
                medians[label].append(statistics.mean(times))
                continue
            runner.invoke()
            for _ in range(runs):
                t0 = time.perf_counter_ns()
                runner.invoke()
                times.append((time.perf_counter_ns() - t0) / 1e6)
            medians[label].append(statistics.median(times))
    return {
        label: {"ms": round(statistics.median(m), 3), "round_medians_ms": [round(x, 3) for x in m]}
        for label, m in medians.items()
    }


def child(args: argparse.Namespace) -> None:
    """`--child quality|time`: load the variants of one model and print JSON on stdout."""
    spec = json.loads(Path(args.spec).read_text())
    variants = [Variant(**v) for v in spec["variants"]]
    with np.load(spec["info"]["eval"]) as z:
        ev = {k: z[k] for k in z.files}
    if args.child == "quality":
        for v in variants:
            started = time.perf_counter()
            try:
                measure_quality(v, ev, spec["info"])
            except Exception as exc:  # noqa: BLE001 - a runtime refusing a model is a result
                v.error = v.error or f"fails: {str(exc).splitlines()[0][:200]}"
            log(f"{v.model} {v.family} {v.label}: {v.quality} passes={v.passes} "
                f"({time.perf_counter() - started:.0f} s)")  # fmt: skip
        print(json.dumps([asdict(v) for v in variants]))
    else:
        threads = int(args.threads)
        own = bool(spec["info"].get("own_length"))
        print(json.dumps(time_variants(variants, ev, threads, args.rounds, spec["runs"], own)))


def run_child(mode: str, spec: Path, threads: int = 2, rounds: int = 0) -> Any:
    """This script in a fresh process (no TensorFlow there; one process per thread count)."""
    cmd = [sys.executable, __file__, "--child", mode, "--spec", str(spec),
           "--threads", str(threads), "--rounds", str(rounds)]  # fmt: skip
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    assert proc.stderr is not None and proc.stdout is not None
    tail: list[str] = []
    for line in proc.stderr:  # progress lines pass through as they come; the rest is kept
        if line.startswith("[peers"):
            sys.stderr.write(line)
        tail = (tail + [line])[-40:]
    stdout = proc.stdout.read()
    if proc.wait() != 0:
        sys.exit(f"child {mode} failed ({proc.returncode}):\n{''.join(tail)}")
    return json.loads(stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------ report


def quality_text(v: dict[str, Any]) -> str:
    q = v["quality"]
    if not q:
        return ""
    if "accuracy" in q:
        return f"acc {q['accuracy']:.2f}%"
    return f"cos {q['mean_cosine']:.4f} (worst {q['worst_cosine']:.4f})"


def summarize(doc: dict[str, Any]) -> list[list[Any]]:
    """Per model and thread count: the fastest passing variant of tfopt, ORT and OpenVINO."""
    rows = []
    for name, m in doc["models"].items():
        for threads in doc["threads"]:
            best = {}
            for fam in ("tfopt", "onnxruntime", "openvino"):
                timed = [(v["ms"][str(threads)], v["label"]) for v in m["variants"]
                         if v["family"] == fam and v["passes"] and str(threads) in v["ms"]]  # fmt: skip
                best[fam] = min(timed) if timed else None
            peers = [b for f, b in best.items() if f != "tfopt" and b]
            cells = [f"{b[0]:.2f} ({b[1]})" if b else "-" for b in best.values()]
            ratio = (
                f"{min(peers)[0] / best['tfopt'][0]:.2f}" if peers and best["tfopt"] else "-"
            )
            rows.append([name, threads, *cells, ratio])
    return rows


def markdown(doc: dict[str, Any]) -> str:
    from tfopt.report.tables import markdown_table

    rows = []
    for name, m in doc["models"].items():
        for threads in doc["threads"]:
            for v in m["variants"]:
                ms = v["ms"].get(str(threads))
                gate = "no (tfopt refused)" if v["tfopt_refused"] else (
                    "yes" if v["passes"] else "no")  # fmt: skip
                rows.append([name, threads, v["label"], v["family"],
                             f"{ms:.2f}" if ms is not None else "-",
                             "; ".join(filter(None, [quality_text(v), v["error"]])),
                             gate])  # fmt: skip
    table = markdown_table(
        ["model", "threads", "variant", "runtime", "ms", "quality", "passes gate"], rows
    )
    summary = markdown_table(
        ["model", "threads", "tfopt best ms", "ONNX Runtime best ms", "OpenVINO best ms",
         "tfopt best / best peer (>1: tfopt faster)"], summarize(doc)  # fmt: skip
    )
    m = doc["machine"]
    load = ", ".join(f"{k} {a}->{b}" for k, (a, b) in doc["load_avg_1min"].items())
    return (
        f"{summary}\n\n{table}\n\nMachine: {m['cpu']}, {m['cores']} cores; {m['versions']}; "
        f"{doc['date']}; `{doc['command']}`; {doc['rounds']} rounds; 1-min load average before->"
        f"after each timing process: {load}\n"
    )


def machine() -> dict[str, Any]:
    from importlib.metadata import version

    cpu = next((line.split(":", 1)[1].strip() for line in subprocess.run(
        ["lscpu"], capture_output=True, text=True, check=False).stdout.splitlines()
        if line.startswith("Model name")), platform.processor())  # fmt: skip
    names = ("tensorflow", "ai-edge-litert", "onnxruntime", "tf2onnx", "openvino")
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "versions": ", ".join(f"{n} {version(n)}" for n in names),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="cnn,minilm,minilm-own")
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--out", default="peers-out")
    parser.add_argument("--quick", action="store_true", help="3 rounds, few samples (development)")
    parser.add_argument("--child", choices=("quality", "time"), help=argparse.SUPPRESS)
    parser.add_argument("--spec", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)
    out = Path(args.out)
    rounds = 3 if args.quick else args.rounds
    threads = [int(t) for t in args.threads.split(",")]
    started = time.perf_counter()
    doc: dict[str, Any] = {
        "command": "python benchmarks/peers.py " + " ".join(sys.argv[1:]),
        "date": datetime.date.today().isoformat(),
        "machine": machine(),
        "threads": threads,
        "rounds": rounds,
        "load_avg_1min": {},  # before and after each timing child
        "models": {},
    }
    def prepare_own(out: Path, n_eval: int) -> tuple[list[Variant], dict[str, Any]]:
        return prepare_minilm(out, n_eval, own=True)

    prepare = {"cnn": (prepare_cnn, 300 if args.quick else 3000),
               "minilm": (prepare_minilm, 40 if args.quick else 300),
               "minilm-own": (prepare_own, 40 if args.quick else 300)}  # fmt: skip
    for name in args.models.split(","):
        fn, n_eval = prepare[name]
        log(f"{name}: preparing every variant ({n_eval} held-out samples)")
        variants, info = fn(out, n_eval)
        runs = max(3, RUNS[name] // 4) if args.quick else RUNS[name]
        spec = out / name / "spec.json"
        todo = [v for v in variants if v.path]
        spec.write_text(json.dumps({"variants": [asdict(v) for v in todo], "info": info,
                                    "runs": runs}))  # fmt: skip
        log(f"{name}: quality of {len(todo)} variants")
        measured = {key(v): v for v in run_child("quality", spec)}
        rows = [measured.get(key(v), asdict(v)) for v in variants]
        spec.write_text(json.dumps({"variants": [r for r in rows if r["path"] and not (
            r["error"] and not r["tfopt_refused"])], "info": info, "runs": runs}))  # fmt: skip
        for row in rows:
            row["ms"] = {}
        for t in threads:
            log(f"{name}: timing at {t} thread(s), {rounds} rounds x {runs} runs")
            load = os.getloadavg()[0]  # the machine is shared: say how busy it was
            timings = run_child("time", spec, t, rounds)
            doc["load_avg_1min"][f"{name}@{t}"] = [round(load, 2), round(os.getloadavg()[0], 2)]
            for label, timing in timings.items():
                row = next(r for r in rows if key(r) == label)
                row["ms"][str(t)] = timing["ms"]
                row.setdefault("round_medians_ms", {})[str(t)] = timing["round_medians_ms"]
        doc["models"][name] = {"info": info, "runs_per_round": runs, "variants": rows}
    doc["minutes"] = round((time.perf_counter() - started) / 60, 1)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "peers.json").write_text(json.dumps(doc, indent=2))
    text = markdown(doc)
    (RESULTS / "peers.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
