"""The CNN models of `peers.py`: real Fashion-MNIST, the trained MobileNetV2s and their variants.

- cnn: MobileNetV2 alpha 0.35 at 96x96, 12k images x 3 epochs at 96 (cached in OUT/cnn/).
- cnn224: MobileNetV2 alpha 1.0 at 224x224 (keras.applications defaults but 10 classes, no
  ImageNet weights offline), trained with progressive resizing (CNN224_PHASES): most images at a
  small side on a free-size twin of the same layers (MobileNetV2 is fully convolutional with global
  pooling), the last at 224 so that BatchNorm's statistics fit 224; the weights then go into the
  fixed 224x224 model. Cached in OUT/cnn224/ with its training log (training.json). Besides the
  plain conversions, tfopt variants from optimize recipes (CNN224_RECIPES) that ship in this tfopt.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from peers_variants import CALIBRATION, Variant, log, peer_variants, tfopt_variants, to_onnx

FMNIST = Path("/usr/share/datasets/fashion-mnist")
SIZE = 96  # cnn
CNN_TRAIN, CNN_EPOCHS = 12000, 3
SIZE224 = 224
# (side, images seen, Adam learning rate, batch), measured on 2 shared cores: 64 learns fast (230
# img/s) but says nothing at 224 (9% held out after it), 128 (55 img/s) reaches 50% at 224, and
# 224 itself (17-30 img/s) is where the accuracy at 224 comes from (80% after 4k, 86% after 10k
# more): 21 min in all, 85.8% on the 500 held-out train images
CNN224_PHASES = ((64, 90_000, 2e-3, 64), (128, 10_000, 1e-3, 64), (224, 4_000, 5e-4, 32),
                 (224, 10_000, 3e-4, 32))  # fmt: skip
CNN224_VAL = 500  # train images held out of training: progress log and the recipes' x_val
CNN224_RECIPES = ["channels30-int8", "channels50-int8", "channels30-float16"]
# XNNPACK's float16 arithmetic (`tfopt bench --cpu-option force_fp16=true`), on CPUs that have it
# natively (x86 AVX512-FP16, ARM FP16): the float16 files again, judged and timed with it
FP16_ARITHMETIC = ("api=compiled", "force_fp16=true")
RECIPE_IMAGES, RECIPE_EPOCHS, RECIPE_BATCH = 3000, 3, 32  # optimize's fine-tune at 224


def fashion_mnist(split: str) -> tuple[np.ndarray, np.ndarray]:
    """Fashion-MNIST `train` or `t10k` as uint8 (N, 28, 28) images and labels (IDX gz files)."""
    if not FMNIST.is_dir():
        sys.exit(f"Fashion-MNIST not found in {FMNIST}: run `make fashion-mnist`")
    with gzip.open(FMNIST / f"{split}-images-idx3-ubyte.gz") as f:
        images = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)
    with gzip.open(FMNIST / f"{split}-labels-idx1-ubyte.gz") as f:
        labels = np.frombuffer(f.read(), np.uint8, offset=8).astype(np.int32)
    return images, labels


def to_input(images: np.ndarray, side: int = SIZE) -> np.ndarray:
    """uint8 28x28 -> float32 side x side x 3 in [-1, 1], MobileNetV2's own input convention."""
    from tfopt import keras_worlds

    tf = keras_worlds.tf()
    parts = [tf.image.resize(images[i : i + 256, ..., None].astype(np.float32), (side, side))
             for i in range(0, len(images), 256)]  # fmt: skip
    x = np.concatenate([p.numpy() for p in parts]) if parts else np.zeros((0, side, side, 1))
    return np.repeat(x / 127.5 - 1.0, 3, axis=-1).astype(np.float32)


def batches(images: np.ndarray, labels: np.ndarray, side: int, batch: int) -> Any:
    """An endless shuffled tf.data stream of (side x side x 3 in [-1, 1], label) batches."""
    from tfopt import keras_worlds

    tf = keras_worlds.tf()

    def prep(x: Any, y: Any) -> tuple[Any, Any]:
        x = tf.image.resize(tf.cast(x[..., None], tf.float32), (side, side))
        return tf.repeat(x / 127.5 - 1.0, 3, axis=-1), y

    return (
        tf.data.Dataset.from_tensor_slices((images, labels))
        .shuffle(len(images), seed=side)
        .repeat()
        .batch(batch)
        .map(prep, num_parallel_calls=2)
        .prefetch(2)
    )


def momentum_09(keras: Any, model: Any) -> None:
    """BatchNorm momentum 0.999 -> 0.9: with a few thousand steps the moving statistics would
    otherwise still be far from the data's and the inference-mode accuracy would say little."""
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 0.9


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


def cnn224_split() -> dict[str, np.ndarray]:
    """Train-set indices: `train` (shuffled), `val` (CNN224_VAL held out of training) and
    `calibration` (the last CALIBRATION images, never trained on), the same on every run."""
    order = np.random.default_rng(0).permutation(60_000 - CALIBRATION)
    return {"train": order[CNN224_VAL:], "val": order[:CNN224_VAL],
            "calibration": np.arange(60_000 - CALIBRATION, 60_000)}  # fmt: skip


def mobilenet224(keras: Any, side: int | None) -> Any:
    """MobileNetV2 alpha 1.0, 10 classes: at 224x224 as keras.applications builds it, or
    (side None) a free-size twin with the same layers and weights (no top + avg pool + Dense)."""
    inp = keras.Input((side, side, 3), name="image")
    if side is not None:
        return keras.applications.MobileNetV2(input_tensor=inp, alpha=1.0, weights=None, classes=10)
    base = keras.applications.MobileNetV2(
        input_tensor=inp, alpha=1.0, weights=None, include_top=False, pooling="avg"
    )
    out = keras.layers.Dense(10, activation="softmax", name="predictions")(base.output)
    return keras.Model(inp, out)


def train_cnn224(path: Path) -> dict[str, Any]:
    """Train MobileNetV2 alpha 1.0 from scratch through CNN224_PHASES (a fresh Adam each); save
    the 224x224 model to `path` and return (and write beside it) the training log: seconds and
    accuracy at 224 after each phase. Each phase's weights are kept (phase<i>.weights.h5, with
    phases.json), so an interrupted or extended plan resumes after the last phase done."""
    from tfopt import keras_worlds

    keras = keras_worlds.module(keras_worlds.World.TF_KERAS)
    keras.utils.set_random_seed(0)
    images, labels = fashion_mnist("train")
    split = cnn224_split()
    x_val, y_val = to_input(images[split["val"]], SIZE224), labels[split["val"]]
    folder, done = path.parent, path.parent / "phases.json"
    folder.mkdir(parents=True, exist_ok=True)
    phases = json.loads(done.read_text()) if done.exists() else []
    model = mobilenet224(keras, None)
    momentum_09(keras, model)
    if phases:
        model.load_weights(folder / f"phase{len(phases)}.weights.h5")
    for side, seen, rate, batch in CNN224_PHASES[len(phases) :]:
        t0 = time.perf_counter()
        model.compile(keras.optimizers.Adam(rate), "sparse_categorical_crossentropy", ["accuracy"])
        steps = seen // batch
        chunk = min(steps, 10_000 // batch)  # one progress line per ~10k images
        model.fit(batches(images[split["train"]], labels[split["train"]], side, batch),
                  epochs=steps // chunk, steps_per_epoch=chunk, verbose=2)  # fmt: skip
        probs = model.predict(x_val, batch_size=64, verbose=0)
        acc = float(np.mean(probs.argmax(1) == y_val) * 100)
        phases.append({"side": side, "images": steps // chunk * chunk * batch, "learning_rate": rate,
                       "batch": batch, "seconds": round(time.perf_counter() - t0),
                       "val_accuracy_224": round(acc, 2)})  # fmt: skip
        model.save_weights(folder / f"phase{len(phases)}.weights.h5")
        done.write_text(json.dumps(phases, indent=2))
        log(f"cnn224 phase at {side}: {phases[-1]['images']} images in {phases[-1]['seconds']} s; "
            f"accuracy at 224 on {len(y_val)} held-out train images {acc:.2f}%")  # fmt: skip
    fixed = mobilenet224(keras, SIZE224)
    fixed.set_weights(model.get_weights())
    seconds = sum(p["seconds"] for p in phases)
    log(f"cnn224 trained in {seconds} s ({seconds / 60:.1f} min)")
    fixed.save(path)
    training = {"seconds": seconds, "phases": phases, "batchnorm_momentum": 0.9,
                "optimizer": "Adam", "train_images": len(split["train"])}  # fmt: skip
    (folder / "training.json").write_text(json.dumps(training, indent=2))
    return training


def tflite_macs(path: str | Path) -> int:
    """Dense multiply-accumulates of one invoke: every CONV_2D, DEPTHWISE_CONV_2D and
    FULLY_CONNECTED from its output and filter shapes (a sparse file counts as dense)."""
    from tfopt import flatbuffer

    model = flatbuffer.model_root(Path(path).read_bytes())
    graph, total = model.Subgraphs(0), 0
    for op in flatbuffer.operators(model)[0]:
        if op.name not in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"):
            continue
        out = [int(d) for d in graph.Tensors(op.outputs[0]).ShapeAsNumpy()]
        kernel = [int(d) for d in graph.Tensors(op.inputs[1]).ShapeAsNumpy()]
        if op.name == "CONV_2D":  # filter (out, kh, kw, in)
            total += int(np.prod(out)) * int(np.prod(kernel[1:]))
        elif op.name == "DEPTHWISE_CONV_2D":  # filter (1, kh, kw, channels)
            total += int(np.prod(out)) * kernel[1] * kernel[2]
        else:  # weights (out, in)
            total += int(np.prod(out)) * kernel[1]
    return total


def reference(model: Any, x: np.ndarray, y: np.ndarray, name: str) -> float:
    """The float Keras model's held-out accuracy (%), the gate's reference."""
    probs = model.predict(x, batch_size=32, verbose=0)
    accuracy = float(np.mean(probs.argmax(1) == y) * 100)
    log(f"{name} Keras float accuracy on {len(y)} held-out images: {accuracy:.2f}%")
    return accuracy


def held_out(n_eval: int, side: int) -> tuple[np.ndarray, np.ndarray]:
    """The first `n_eval` t10k images of one fixed order (the same images for every variant)."""
    test_x, test_y = fashion_mnist("t10k")
    order = np.random.default_rng(1).permutation(len(test_x))
    return to_input(test_x[order[:n_eval]], side), test_y[order[:n_eval]]


def onnx_of(model: Any, folder: Path, side: int) -> None:
    """tf2onnx of the Keras model at batch 1 (once; cached in `folder`)."""
    from tfopt import keras_worlds

    tf = keras_worlds.tf()
    if not (folder / "model.onnx").exists():
        fn = tf.function(lambda image: model(image, training=False))
        to_onnx(fn, [tf.TensorSpec((1, side, side, 3), tf.float32, name="image")],
                folder / "model.onnx")  # fmt: skip


def cached_model(folder: Path, name: str, train: Any, what: str) -> tuple[Path, Path, Any]:
    """(folder, model file, loaded tf_keras model): trained once by `train(path)`, then reused."""
    from tfopt import keras_worlds

    folder.mkdir(parents=True, exist_ok=True)
    source = folder / name
    if not source.exists():
        log(f"training {what} on Fashion-MNIST (cached for later runs)")
        train(source)
    keras = keras_worlds.module(keras_worlds.World.TF_KERAS)
    return folder, source, keras.models.load_model(source, compile=False)


def prepare_cnn(out: Path, n_eval: int) -> tuple[list[Variant], dict[str, Any]]:
    """Train (or reuse) the CNN; every variant's file; held-out images and the Keras accuracy."""
    folder, source, model = cached_model(out / "cnn", "mobilenetv2_035_fmnist.keras", train_cnn,
                                         "MobileNetV2 0.35")  # fmt: skip
    x_eval, y_eval = held_out(n_eval, SIZE)
    train_x, _ = fashion_mnist("train")
    calib = {"image": to_input(train_x[-CALIBRATION:])}  # images never used in training
    accuracy = reference(model, x_eval, y_eval, "cnn")
    plans = [("float32", "float32", "converter"), ("dynamic", "dynamic", "converter"),
             ("int8", "int8", "converter")]  # fmt: skip
    variants = tfopt_variants(source, "cnn", folder, calib, plans)
    onnx_of(model, folder, SIZE)
    variants += peer_variants("cnn", folder, calib, variants[0].path)
    np.savez(folder / "eval.npz", image=x_eval, labels=y_eval)
    return variants, {"reference_accuracy": accuracy, "eval": str(folder / "eval.npz")}


def recipe_data(folder: Path, images: np.ndarray, labels: np.ndarray) -> Path:
    """optimize's .npz at 224 (once): RECIPE_IMAGES training images and the CNN224_VAL ones."""
    path = folder / f"recipe_data_{RECIPE_IMAGES}.npz"
    if not path.exists():
        split = cnn224_split()
        train = split["train"][:RECIPE_IMAGES]
        np.savez(path, x_train=to_input(images[train], SIZE224), y_train=labels[train],
                 x_val=to_input(images[split["val"]], SIZE224), y_val=labels[split["val"]])  # fmt: skip
    return path


def recipe_variants(source: Path, folder: Path) -> list[Variant]:
    """tfopt variants from `tfopt.optimize` with each CNN224_RECIPES recipe this tfopt ships
    (cached in folder/recipe_<name>_<hash of the recipe and the fine-tune constants>/: delete
    those folders after changing a stage's code); a recipe not shipped is skipped."""
    import tfopt
    from tfopt.errors import TfoptError
    from tfopt.optimization.run import OptimizeOptions
    from tfopt.recipes import load_recipe, shipped

    names, out = set(shipped()), []
    for name in CNN224_RECIPES:
        if name not in names:
            log(f"cnn224 recipe {name}: not shipped in this tfopt, skipped")
            continue
        fingerprint = json.dumps([load_recipe(name).to_dict(), RECIPE_IMAGES, RECIPE_EPOCHS,
                                  RECIPE_BATCH], sort_keys=True)  # fmt: skip
        run_dir = folder / f"recipe_{name}_{hashlib.sha256(fingerprint.encode()).hexdigest()[:8]}"
        report = run_dir / "report.json"
        if not report.exists():
            data = recipe_data(folder, *fashion_mnist("train"))
            options = OptimizeOptions(epochs=RECIPE_EPOCHS, batch_size=RECIPE_BATCH, overwrite=True)
            started = time.perf_counter()
            try:
                tfopt.optimize(str(source), name, str(data), run_dir, options)
            except Exception as exc:  # noqa: BLE001 - a recipe failing on this model is a result
                text = exc.format_message() if isinstance(exc, TfoptError) else repr(exc)
                reason = (text.splitlines() or ["?"])[0][:200]
                log(f"cnn224 recipe {name}: fails: {reason}")
                out.append(Variant("cnn224", name, "tfopt", "tflite", "", error=f"fails: {reason}"))
                continue
            log(f"cnn224 recipe {name}: optimized in {time.perf_counter() - started:.0f} s")
        path = run_dir / "model.tflite"
        note = f"optimize, {RECIPE_EPOCHS} epochs x {RECIPE_IMAGES} images at 224; report {report}"
        out.append(Variant("cnn224", name, "tfopt", "tflite", str(path), note=note,
                           macs=tflite_macs(path)))  # fmt: skip
    return out


def fp16_arithmetic(variants: list[Variant]) -> list[Variant]:
    """The float16 files once more with XNNPACK's fp16 arithmetic, where the CPU has it."""
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    if not any(f in flags.split() for f in ("avx512_fp16", "asimdhp")):
        log("cnn224: no native float16 arithmetic on this CPU; no fp16-arithmetic variants")
        return []
    return [replace(v, label=f"{v.label}, fp16 arithmetic", cpu=FP16_ARITHMETIC,
                    note=f"{v.note}; --cpu-option {' '.join(FP16_ARITHMETIC)}")
            for v in variants if "float16" in v.label and v.path]  # fmt: skip


def prepare_cnn224(out: Path, n_eval: int) -> tuple[list[Variant], dict[str, Any]]:
    """Train (or reuse) MobileNetV2 1.0 at 224; every variant's file; held-out images, the Keras
    accuracy, the training log and the model's MACs."""
    folder, source, model = cached_model(out / "cnn224", "mobilenetv2_100_fmnist224.keras",
                                         train_cnn224, "MobileNetV2 1.0 at 224")  # fmt: skip
    training = json.loads((folder / "training.json").read_text())
    x_eval, y_eval = held_out(n_eval, SIZE224)
    train_x, _ = fashion_mnist("train")
    calib = {"image": to_input(train_x[cnn224_split()["calibration"]], SIZE224)}
    accuracy = reference(model, x_eval, y_eval, "cnn224")
    plans = [("float32", "float32", "converter"), ("float16", "float16", "converter"),
             ("dynamic", "dynamic", "converter"), ("int8", "int8", "converter")]  # fmt: skip
    variants = tfopt_variants(source, "cnn224", folder, calib, plans)
    for v in variants:
        v.macs = tflite_macs(v.path) if v.path else None
    macs = variants[0].macs
    variants += recipe_variants(source, folder)
    variants += fp16_arithmetic(variants)
    onnx_of(model, folder, SIZE224)
    variants += peer_variants("cnn224", folder, calib, variants[0].path)
    np.savez(folder / "eval.npz", image=x_eval, labels=y_eval)
    phases = ", ".join(f"{p['images']} images at {p['side']}" for p in training["phases"])
    about = (f"MobileNetV2 alpha 1.0 at 224x224 ({model.count_params():,} parameters, "
             f"{(macs or 0) / 1e6:.0f}M MACs), trained here in {training['seconds'] / 60:.1f} min "
             f"on 2 CPU cores ({phases}); Keras accuracy {accuracy:.2f}% on {n_eval} held-out "
             f"t10k images")  # fmt: skip
    log(f"cnn224: {about}")
    info = {"reference_accuracy": accuracy, "eval": str(folder / "eval.npz"), "training": training,
            "macs": macs, "parameters": model.count_params(), "about": about}  # fmt: skip
    return variants, info
