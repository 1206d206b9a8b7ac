"""Compatibility zoo: every kind of model users save, converted to every precision by tfopt.

    python benchmarks/zoo.py [--out zoo-out] [--only REGEX] [--precisions float32,int8]
                             [--jobs 1] [--apps one-per-family|all|none] [--timeout 900]

Each row is a model built, trained with `fit` on real data (scikit-learn digits, the fortunes
corpus, scikit-image photos), saved with `model.save` the way users save it (`.keras`, and also
`.h5` for tf_keras) and then converted FROM THE FILE through tfopt's public API
(`tfopt.convert(path, ...)`), with 8 real calibration samples and 8 other real check samples.
Every model is built in its own subprocess and converted in another one (so a registered custom
class is found only through `imports=`, as a user's `--import` would), with a per-precision
timeout: a native crash, an OOM kill or a hang of one conversion is recorded as such and the run
goes on.

keras.applications models use random weights (nothing can be downloaded here) with a
data-dependent initialisation on real photos: every BatchNormalization layer takes the statistics
of one training-mode pass over 16 photos (momentum 0 for that pass, so the moving statistics ARE
the batch's; checked in both worlds), so activations have a sane scale and the outputs vary across
images. Calibration and check use 8 + 8 other photos, preprocessed with the model's own
`preprocess_input`. Their untrained 1000-class softmax is nearly flat (about 1e-3 per class),
which int8's fixed 1/256 output scale cannot hold: those rows say nothing about int8 on a real
application. The `app-NAME+trained` rows do: the same application without its top, with a
10-class softmax over ten scikit-image photos, trained end to end with `fit` on 640 random crops
at 96x96 (BatchNorm statistics re-estimated after training), calibrated on 32 other crops and
checked on 32 more (`build_app_head`; its accuracy is in the row's `init`).

Writes OUT/models/ (the saved models, their data and the custom-class module), and
benchmarks/results/zoo.json and zoo.md (rows already there and not re-run are kept). OUT is a
cache: delete it to rebuild the models.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
PRECISIONS = ("float32", "float16", "dynamic", "int8", "int16x8")
FORTUNES = Path("/usr/share/games/fortunes")
CATEGORIES = ("computers", "politics", "science", "songs-poems")
SEQ_LEN = 32
VOCAB = 2000
CALIBRATION = 8
MARK = "ZOO-RESULT "
# TensorFlow's start-up chatter, never the reason for a crash.
NOISE = re.compile(
    r"cuInit|cuda|absl::InitializeLog|XNNPACK delegate|oneDNN|cpu_feature_guard|"
    r"AVX|WARNING:tfopt|warnings.warn|UserWarning|^[WI]0000"
)
APP_FAMILIES = (
    "Xception", "VGG16", "ResNet50", "ResNet50V2", "InceptionV3", "InceptionResNetV2", "MobileNet",
    "MobileNetV2", "MobileNetV3Small", "DenseNet121", "NASNetMobile", "EfficientNetB0",
    "EfficientNetV2B0", "ConvNeXtTiny", "RegNetX002",
)  # fmt: skip
WORLDS = {"k3": "keras3", "tfk": "tf_keras"}


# ------------------------------------------------------------------ real data


def digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 1,797 real 8x8 digits as (N, 8, 8, 1) floats in [0, 16] and labels."""
    from sklearn.datasets import load_digits

    d = load_digits()
    return d.images[..., None].astype(np.float32), d.target.astype(np.int32)


def fortunes(limit: int = 400) -> tuple[list[str], np.ndarray]:
    """Real short texts of four fortune categories, balanced, with their category label."""
    if not FORTUNES.is_dir():
        sys.exit(f"fortunes not found in {FORTUNES}: run `make fortunes`")
    texts: list[str] = []
    labels: list[int] = []
    for label, name in enumerate(CATEGORIES):
        raw = (FORTUNES / name).read_text(encoding="utf-8", errors="replace").split("\n%\n")
        entries = [" ".join(e.split()) for e in raw if len(e.split()) >= 3][:limit]
        texts += entries
        labels += [label] * len(entries)
    order = np.random.default_rng(0).permutation(len(texts))
    return [texts[i] for i in order], np.asarray(labels, np.int32)[order]


def words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9']+", text.lower())


def vocabulary(texts: list[str], size: int = VOCAB) -> list[str]:
    """The most common words; index 0 pads, 1 is any other word."""
    counts = Counter(w for t in texts for w in words(t))
    return [w for w, _ in counts.most_common(size - 2)]


def token_ids(texts: list[str], vocab: list[str], length: int = SEQ_LEN) -> np.ndarray:
    index = {w: i + 2 for i, w in enumerate(vocab)}
    ids = np.zeros((len(texts), length), np.int32)
    for i, text in enumerate(texts):
        row = [index.get(w, 1) for w in words(text)][:length]
        ids[i, : len(row)] = row
    return ids


PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "cat", "camera", "coins", "moon", "page",
          "brick", "grass", "gravel", "text", "clock", "colorwheel", "logo", "cell",
          "hubble_deep_field", "immunohistochemistry", "retina")  # fmt: skip
# The classes of the applications' trained heads: ten distinct scikit-image photos (`cat` is
# `chelsea` again, so only one of them), colour and grey, objects and textures.
HEAD_CLASSES = ("astronaut", "coffee", "chelsea", "rocket", "camera", "coins", "brick", "grass",
                "hubble_deep_field", "immunohistochemistry")  # fmt: skip


def photos(n: int, size: tuple[int, int], seed: int = 0) -> np.ndarray:
    """`n` random crops (with flips) of scikit-image's bundled photos, RGB floats in [0, 255]."""
    return photo_crops(n, size, seed, PHOTOS, strict=False)[0]


def photo_crops(
    n: int, size: tuple[int, int], seed: int, names: tuple[str, ...], strict: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """`n` random crops (40-100 % of a side, half of them flipped) cycling over the photos
    `names`, RGB floats in [0, 255], and each crop's label: the index of its photo in `names`.

    With `strict`, a photo scikit-image cannot load (some need a download) is an error, since
    the labels index `names`; without it, such photos are skipped.
    """
    import skimage.data
    from skimage.color import gray2rgb, rgba2rgb
    from skimage.transform import resize

    images, labels = [], []
    for label, name in enumerate(names):
        try:
            img = np.asarray(getattr(skimage.data, name)())
        except Exception:  # noqa: BLE001 - some images need a download; skip those
            if strict:
                raise
            continue
        img = img.astype(np.float64) / (255.0 if img.dtype == np.uint8 else max(img.max(), 1))
        img = gray2rgb(img) if img.ndim == 2 else rgba2rgb(img) if img.shape[-1] == 4 else img
        images.append(img)
        labels.append(label)
    rng = np.random.default_rng(seed)
    out = np.empty((n, *size, 3), np.float32)
    for i in range(n):
        img = images[i % len(images)]
        h, w = img.shape[:2]
        scale = rng.uniform(0.4, 1.0)
        ch, cw = max(8, int(h * scale)), max(8, int(w * scale))
        top, left = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
        crop = img[top : top + ch, left : left + cw]
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        out[i] = resize(crop, size, anti_aliasing=True) * 255.0
    return out, np.asarray([labels[i % len(images)] for i in range(n)], np.int32)


# ------------------------------------------------------------------ the cases


@dataclass(frozen=True)
class Case:
    """One row: a model file in a Keras world, and how tfopt is asked to convert it."""

    name: str  # e.g. "k3/seq_cnn.keras"
    family: str
    world: str  # "k3" | "tfk"
    fmt: str  # ".keras" | ".h5"
    builder: str  # key into BUILDERS: one build saves every format of a (family, world)
    options: dict[str, Any] = field(default_factory=dict)  # seq_len, lm, imports

    @property
    def stem(self) -> str:
        return f"{self.world}-{self.builder.split(':', 1)[-1]}"


Builder = Callable[[Any, str], tuple[Any, dict[str, np.ndarray]]]
BUILDERS: dict[str, Callable[..., Any]] = {}


def builder(name: str) -> Callable[[Builder], Builder]:
    def wrap(fn: Builder) -> Builder:
        BUILDERS[name] = fn
        return fn

    return wrap


def _compile_fit(model: Any, x: Any, y: Any, epochs: int = 2, loss: Any = None) -> None:
    model.compile(optimizer="adam", loss=loss or "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=epochs, batch_size=32, verbose=0)


def _digit_split() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x, y = digits()
    return x[:1500], y[:1500], x[1500:]


@builder("seq_cnn")
def build_seq_cnn(K: Any, world: str) -> tuple[Any, dict[str, np.ndarray]]:
    x, y, held = _digit_split()
    L = K.layers
    model = K.Sequential([
        K.Input((8, 8, 1)), L.Conv2D(16, 3, activation="relu", padding="same"),
        L.MaxPooling2D(), L.Flatten(), L.Dense(32, activation="relu"),
        L.Dense(10, activation="softmax"),
    ])  # fmt: skip
    _compile_fit(model, x, y)
    return model, {"x": held}


@builder("seq_cnn_noinput")
def build_seq_cnn_noinput(K: Any, world: str) -> tuple[Any, dict[str, np.ndarray]]:
    x, y, held = _digit_split()
    L = K.layers
    model = K.Sequential([
        L.Conv2D(16, 3, activation="relu", padding="same"), L.BatchNormalization(),
        L.MaxPooling2D(), L.Flatten(), L.Dropout(0.2), L.Dense(10, activation="softmax"),
    ])  # fmt: skip
    _compile_fit(model, x, y)
    return model, {"x": held}


@builder("functional_mlp")
def build_functional(K: Any, world: str) -> tuple[Any, dict[str, np.ndarray]]:
    x, y, held = _digit_split()
    L = K.layers
    inp = K.Input((64,), name="pixels")
    h = L.Dense(64, activation="relu")(inp)
    h = L.LayerNormalization()(h)
    h = L.Add()([h, L.Dense(64, activation="gelu")(h)])
    model = K.Model(inp, L.Dense(10, activation="softmax")(h))
    _compile_fit(model, x.reshape(-1, 64) / 16.0, y)
    return model, {"pixels": held.reshape(-1, 64) / 16.0}


def custom_module(world: str) -> str:
    """Source of the user's module that defines the registered subclassed model."""
    pkg = "keras" if world == "k3" else "tf_keras"
    return f'''"""A user's model code: a registered subclassed model (tfopt loads it with --import)."""
import {pkg} as K


@K.saving.register_keras_serializable(package="zoo")
class DigitNet(K.Model):
    def __init__(self, units=128, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.conv = K.layers.Conv2D(16, 3, activation="relu", padding="same")
        self.pool = K.layers.GlobalAveragePooling2D()
        self.hidden = K.layers.Dense(units, activation="relu")
        self.head = K.layers.Dense(10, activation="softmax")

    def call(self, x):
        return self.head(self.hidden(self.pool(self.conv(x))))

    def get_config(self):
        return {{**super().get_config(), "units": self.units}}
'''


def custom_module_path(models: Path, world: str) -> Path:
    return models / f"zoo_custom_{world}.py"


@builder("subclassed")
def build_subclassed(K: Any, world: str, models: Path) -> tuple[Any, dict[str, np.ndarray]]:
    import importlib.util

    path = custom_module_path(models, world)
    path.write_text(custom_module(world))
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    x, y, held = _digit_split()
    model = mod.DigitNet(units=128)
    _compile_fit(model, x / 16.0, y)
    return model, {"x": held / 16.0}


def _text_data(length: int = SEQ_LEN) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    texts, labels = fortunes()
    vocab = vocabulary(texts)
    ids = token_ids(texts, vocab, length)
    return ids[:-64], labels[:-64], ids[-64:]


def _text_model(K: Any, body: list[Any], with_input: bool) -> Any:
    L = K.layers
    head = [L.Embedding(VOCAB, 32), *body, L.Dense(len(CATEGORIES), activation="softmax")]
    return K.Sequential(([K.Input((SEQ_LEN,), dtype="int32")] if with_input else []) + head)


def _text_builder(name: str, body: Callable[[Any], list[Any]], with_input: bool) -> None:
    @builder(name)
    def build(K: Any, world: str) -> tuple[Any, dict[str, np.ndarray]]:
        x, y, held = _text_data()
        model = _text_model(K, body(K.layers), with_input)
        _compile_fit(model, x, y, epochs=1)
        return model, {"x": held}


# The LSTM one has no Input: tf_keras then gives its Embedding a float32 input (issue 9).
_text_builder("text_lstm", lambda L: [L.LSTM(32)], with_input=False)
_text_builder("text_gru", lambda L: [L.GRU(32)], with_input=True)
_text_builder("text_bilstm", lambda L: [L.Bidirectional(L.LSTM(16))], with_input=True)
_text_builder(
    "text_conv1d",
    lambda L: [L.Conv1D(32, 5, activation="relu"), L.GlobalMaxPooling1D()],
    with_input=True,
)


@builder("multi_input")
def build_multi_input(K: Any, world: str) -> tuple[Any, dict[str, np.ndarray]]:
    x, y, held = _digit_split()
    L = K.layers
    image = K.Input((8, 8, 1), name="image")
    stats = K.Input((4,), name="stats")
    a = L.Flatten()(L.Conv2D(8, 3, activation="relu")(image))
    b = L.Dense(8, activation="relu")(stats)
    model = K.Model([image, stats], L.Dense(10, activation="softmax")(L.Concatenate()([a, b])))

    def feats(imgs: np.ndarray) -> np.ndarray:
        flat = imgs.reshape(len(imgs), -1) / 16.0
        return np.stack([flat.mean(1), flat.std(1), flat[:, :32].mean(1), flat[:, 32:].mean(1)], 1)

    _compile_fit(model, [x / 16.0, feats(x)], y)
    return model, {"image": held / 16.0, "stats": feats(held).astype(np.float32)}


@builder("dict_multi_output")
def build_dict_outputs(K: Any, world: str) -> tuple[Any, dict[str, np.ndarray]]:
    x, y, held = _digit_split()
    L = K.layers
    inp = K.Input((8, 8, 1), name="image")
    h = L.Dense(32, activation="relu")(L.Flatten()(inp))
    outputs = {
        "digit": L.Dense(10, activation="softmax", name="digit")(h),
        "is_even": L.Dense(1, activation="sigmoid", name="is_even")(h),
    }
    model = K.Model(inp, outputs)
    model.compile(
        optimizer="adam",
        loss={"digit": "sparse_categorical_crossentropy", "is_even": "binary_crossentropy"},
    )
    model.fit(x / 16.0, {"digit": y, "is_even": (y % 2 == 0).astype(np.float32)[:, None]},
              epochs=2, batch_size=32, verbose=0)  # fmt: skip
    return model, {"image": held / 16.0}


@builder("preproc_image")
def build_preproc_image(K: Any, world: str) -> tuple[Any, dict[str, np.ndarray]]:
    """Rescaling and Resizing inside the model: it takes the raw 0..16 pixels."""
    x, y, held = _digit_split()
    L = K.layers
    model = K.Sequential([
        K.Input((8, 8, 1)), L.Rescaling(1 / 16.0), L.Resizing(16, 16),
        L.Conv2D(8, 3, activation="relu"), L.GlobalAveragePooling2D(),
        L.Dense(10, activation="softmax"),
    ])  # fmt: skip
    _compile_fit(model, x, y)
    return model, {"x": held}


@builder("preproc_tabular")
def build_preproc_tabular(K: Any, world: str) -> tuple[Any, dict[str, np.ndarray]]:
    """An adapted Normalization on pixel features, CategoryEncoding on an integer feature."""
    x, y, held = _digit_split()
    L = K.layers
    flat = x.reshape(len(x), -1)
    norm = L.Normalization()
    norm.adapt(flat)
    pixels = K.Input((64,), name="pixels")
    ink = K.Input((1,), dtype="int32", name="ink_bucket")
    onehot = L.CategoryEncoding(num_tokens=10, output_mode="one_hot")(ink)
    h = L.Concatenate()([norm(pixels), onehot])
    model = K.Model([pixels, ink], L.Dense(10, activation="softmax")(L.Dense(32, "relu")(h)))

    def bucket(imgs: np.ndarray) -> np.ndarray:
        ink_sum = imgs.reshape(len(imgs), -1).sum(1)
        return np.clip((ink_sum - 200) // 40, 0, 9).astype(np.int32)[:, None]

    _compile_fit(model, [flat, bucket(x)], y)
    return model, {"pixels": held.reshape(len(held), -1), "ink_bucket": bucket(held)}


@builder("time_distributed")
def build_time_distributed(K: Any, world: str) -> tuple[Any, dict[str, np.ndarray]]:
    """Each of a digit's 8 rows through the same Dense, then an LSTM over the rows."""
    x, y, held = _digit_split()
    L = K.layers
    model = K.Sequential([
        K.Input((8, 8)), L.TimeDistributed(L.Dense(16, activation="relu")), L.LSTM(16),
        L.Dense(10, activation="softmax"),
    ])  # fmt: skip
    _compile_fit(model, x[..., 0] / 16.0, y)
    return model, {"x": held[..., 0] / 16.0}


def _rows_builder(name: str, rnn: Callable[[Any], Any]) -> None:
    """A digit's 8 rows as 8 time steps of 8 float features through a recurrent layer: float
    inputs, so int16x8 can calibrate them too (issue 22 item 7: Keras 3 RNNs at int8)."""

    @builder(name)
    def build(K: Any, world: str) -> tuple[Any, dict[str, np.ndarray]]:
        x, y, held = _digit_split()
        L = K.layers
        model = K.Sequential([K.Input((8, 8)), rnn(L), L.Dense(10, activation="softmax")])
        _compile_fit(model, x[..., 0] / 16.0, y, epochs=4)
        return model, {"x": held[..., 0] / 16.0}


_rows_builder("rows_gru", lambda L: L.GRU(32))
_rows_builder("rows_simplernn", lambda L: L.SimpleRNN(32))


@builder("mha")
def build_mha(K: Any, world: str) -> tuple[Any, dict[str, np.ndarray]]:
    x, y, held = _text_data()
    L = K.layers
    inp = K.Input((SEQ_LEN,), dtype="int32", name="tokens")
    h = L.Embedding(VOCAB, 32)(inp)
    h = L.LayerNormalization()(L.Add()([h, L.MultiHeadAttention(2, 16)(h, h)]))
    model = K.Model(
        inp, L.Dense(len(CATEGORIES), activation="softmax")(L.GlobalAveragePooling1D()(h))
    )
    _compile_fit(model, x, y, epochs=1)
    return model, {"tokens": held}


# keras-hub task models (Keras 3 only): small random-init configs, fitted for one epoch.
HUB_LEN = 64


def _bert_backbone(hub: Any, vocab_size: int) -> Any:
    return hub.models.BertBackbone(
        vocabulary_size=vocab_size, num_layers=2, num_heads=2, hidden_dim=64,
        intermediate_dim=128, max_sequence_length=HUB_LEN,
    )  # fmt: skip


def _bert_tokenizer(hub: Any, texts: list[str]) -> Any:
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *vocabulary(texts, 1000)]
    return hub.models.BertTokenizer(vocabulary=vocab, lowercase=True)


def _bert_inputs(texts: list[str], vocab: list[str]) -> dict[str, np.ndarray]:
    ids = token_ids(texts, vocab, HUB_LEN)
    return {
        "token_ids": ids,
        "segment_ids": np.zeros_like(ids),
        "padding_mask": (ids > 0).astype(np.int32),
    }


def _hub_builder(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    return builder(f"hub:{name}")


@_hub_builder("bert_classifier")
def build_bert_classifier(K: Any, world: str) -> tuple[Any, dict[str, np.ndarray]]:
    import keras_hub as hub

    texts, labels = fortunes(200)
    vocab = vocabulary(texts, 1000)
    x = _bert_inputs(texts, vocab)
    model = hub.models.BertTextClassifier(_bert_backbone(hub, 1000), num_classes=4,
                                          preprocessor=None)  # fmt: skip
    model.compile(optimizer="adam", loss=K.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit({k: v[:-64] for k, v in x.items()}, labels[:-64], epochs=1, batch_size=32, verbose=0)
    return model, {k: v[-64:] for k, v in x.items()}


@_hub_builder("bert_classifier+preproc")
def build_bert_classifier_pre(K: Any, world: str) -> tuple[Any, dict[str, np.ndarray]]:
    import keras_hub as hub

    texts, labels = fortunes(200)
    tokenizer = _bert_tokenizer(hub, texts)
    pre = hub.models.BertTextClassifierPreprocessor(tokenizer, sequence_length=HUB_LEN)
    model = hub.models.BertTextClassifier(
        _bert_backbone(hub, tokenizer.vocabulary_size()), num_classes=4, preprocessor=pre
    )
    model.compile(optimizer="adam", loss=K.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(texts[:-64], labels[:-64], epochs=1, batch_size=32, verbose=0)
    held = pre(texts[-64:])
    return model, {k: np.asarray(v).astype(np.int32) for k, v in held.items()}


@_hub_builder("bert_masked_lm")
def build_bert_mlm(K: Any, world: str) -> tuple[Any, dict[str, np.ndarray]]:
    import keras_hub as hub

    texts, _ = fortunes(100)
    vocab = vocabulary(texts, 1000)
    model = hub.models.BertMaskedLM(_bert_backbone(hub, 1000), preprocessor=None)
    x = _bert_inputs(texts[-64:], vocab)
    lengths = x["padding_mask"].sum(1)
    rng = np.random.default_rng(0)
    x["mask_positions"] = np.stack(
        [np.sort(rng.integers(0, max(1, n), 8)) for n in lengths]
    ).astype(np.int32)
    return model, x


@_hub_builder("bert_masked_lm+preproc")
def build_bert_mlm_pre(K: Any, world: str) -> tuple[Any, dict[str, np.ndarray]]:
    import keras_hub as hub

    texts, _ = fortunes(200)
    tokenizer = _bert_tokenizer(hub, texts)
    pre = hub.models.BertMaskedLMPreprocessor(
        tokenizer, sequence_length=HUB_LEN, mask_selection_length=8
    )
    model = hub.models.BertMaskedLM(_bert_backbone(hub, tokenizer.vocabulary_size()),
                                    preprocessor=pre)  # fmt: skip
    model.compile(optimizer="adam", loss=K.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(texts[:-64], epochs=1, batch_size=32, verbose=0)
    held, _, _ = pre(texts[-64:])
    return model, {k: np.asarray(v).astype(np.int32) for k, v in held.items()}


def _gpt2_backbone(hub: Any, vocab_size: int) -> Any:
    return hub.models.GPT2Backbone(
        vocabulary_size=vocab_size, num_layers=2, num_heads=2, hidden_dim=64,
        intermediate_dim=128, max_sequence_length=HUB_LEN,
    )  # fmt: skip


@_hub_builder("gpt2_causal_lm")
def build_gpt2(K: Any, world: str) -> tuple[Any, dict[str, np.ndarray]]:
    """Byte-level tokens (id = UTF-8 byte), as in examples/gpt2_fortunes."""
    import keras_hub as hub

    texts, _ = fortunes(200)
    ids = np.zeros((len(texts), HUB_LEN), np.int32)
    for i, t in enumerate(texts):
        b = list(t.encode("utf-8"))[:HUB_LEN]
        ids[i, : len(b)] = b
    x = {"token_ids": ids, "padding_mask": (ids > 0).astype(np.int32)}
    model = hub.models.GPT2CausalLM(backbone=_gpt2_backbone(hub, 256), preprocessor=None)
    model.compile(optimizer="adam", loss=K.losses.SparseCategoricalCrossentropy(from_logits=True))
    y = np.concatenate([ids[:, 1:], np.zeros((len(ids), 1), np.int32)], 1)
    model.fit({k: v[:-64] for k, v in x.items()}, y[:-64], epochs=1, batch_size=32, verbose=0)
    return model, {k: v[-64:] for k, v in x.items()}


@_hub_builder("gpt2_causal_lm+preproc")
def build_gpt2_pre(K: Any, world: str) -> tuple[Any, dict[str, np.ndarray]]:
    """A GPT-2 byte-level BPE tokenizer over the 256 byte symbols plus a few merges."""
    import keras_hub as hub
    from keras_hub.src.tokenizers.byte_pair_tokenizer import bytes_to_unicode

    texts, _ = fortunes(200)
    _, symbols = bytes_to_unicode()  # the 256 byte symbols, in byte order
    merges = ["t h", "th e", "Ġ t", "Ġt h", "i n", "e r", "a n", "o n"]
    vocab = {s: i for i, s in enumerate(symbols)}
    for m in merges:
        vocab.setdefault(m.replace(" ", ""), len(vocab))
    vocab["<|endoftext|>"] = len(vocab)
    tokenizer = hub.models.GPT2Tokenizer(vocabulary=vocab, merges=merges)
    pre = hub.models.GPT2CausalLMPreprocessor(tokenizer, sequence_length=HUB_LEN)
    model = hub.models.GPT2CausalLM(backbone=_gpt2_backbone(hub, len(vocab)), preprocessor=pre)
    model.compile(optimizer="adam", loss=K.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(texts[:-64], epochs=1, batch_size=32, verbose=0)
    held, _, _ = pre(texts[-64:])
    return model, {k: np.asarray(v).astype(np.int32) for k, v in held.items()}


def data_dependent_init(K: Any, model: Any, images: np.ndarray) -> dict[str, Any]:
    """BatchNorm statistics from one training-mode pass on real images (momentum 0 for it).

    The classifier is left as initialised: rescaling it so its logits vary more also amplifies
    the tiny between-image differences of a random network's pooled features, which makes float16
    fail its check for a reason that is the init's, not the converter's. Returns evidence: how
    many BN layers changed their moving statistics and how much the outputs vary across images.
    """
    bns = [layer for layer in _all_layers(model) if isinstance(layer, K.layers.BatchNormalization)]
    before = [b.moving_variance.numpy().copy() for b in bns]
    saved = [b.momentum for b in bns]
    for b in bns:
        b.momentum = 0.0
    model(images, training=True)
    for b, m in zip(bns, saved, strict=True):
        b.momentum = m
    updated = sum(
        not np.allclose(b.moving_variance.numpy(), v) for b, v in zip(bns, before, strict=True)
    )
    out = np.array(model(images, training=False)).reshape(len(images), -1)
    return {
        "bn_layers": len(bns),
        "bn_updated": int(updated),
        "distinct_top1_on_init_batch": len(set(out.argmax(-1).tolist())),
        # Spread of the outputs across images, relative to their size: 0 means constant.
        "output_relative_spread": float(out.std(0).mean() / (np.abs(out).mean() or 1.0)),
    }


def _all_layers(model: Any) -> list[Any]:
    out = []
    for layer in model.layers:
        out.append(layer)
        if hasattr(layer, "layers"):
            out += _all_layers(layer)
    return out


def build_app(K: Any, world: str, app: str) -> tuple[Any, dict[str, np.ndarray], dict[str, Any]]:
    fn = getattr(K.applications, app)
    model = fn(weights=None)
    if None in model.input_shape[1:3]:  # MobileNetV3 accepts any size; 224 is its default
        model = fn(weights=None, input_shape=(224, 224, 3))
    preprocess = sys.modules[fn.__module__].preprocess_input
    size = tuple(int(d) for d in model.input_shape[1:3])
    raw = photos(32, size)
    x = np.asarray(preprocess(raw.copy())).astype(np.float32)
    init = data_dependent_init(K, model, x[:16])
    return model, {"x": x[16:]}, init


HEAD_SIZE = 96  # the trained rows' input side: 224 would cost 5x the time on 2 shared cores
HEAD_SAMPLES = 32  # calibration and check samples of a trained row (each)
HEAD_TRAIN, HEAD_EPOCHS = 640, 5


def build_app_head(
    K: Any, world: str, app: str
) -> tuple[Any, dict[str, np.ndarray], dict[str, Any]]:
    """The application without its top (`include_top=False, pooling="avg"`) and a softmax over
    the ten photos of HEAD_CLASSES, trained end to end with `fit` (from random weights: nothing
    can be downloaded here) on 640 random crops of those photos, saved as users save it.

    A trained model, unlike the random 1000-class rows: its softmax is confident on real photos,
    so int8's fixed 1/256 output scale can hold it, and its features separate the classes, so
    quantization noise is judged against a real signal. (A trained head on a frozen random
    backbone is not enough: it learns to amplify feature differences of the size of int8's
    noise, and held out it is right only half the time.) After the few training steps the
    BatchNorm moving statistics are re-estimated on 64 training crops (data_dependent_init),
    as the moving averages have not converged. Calibration and check use 32 + 32 other crops;
    the info records the model's accuracy and mean top probability on the check crops.
    """
    fn = getattr(K.applications, app)
    size = (HEAD_SIZE, HEAD_SIZE)
    preprocess = sys.modules[fn.__module__].preprocess_input

    def prep(raw: np.ndarray) -> np.ndarray:
        return np.asarray(preprocess(raw.copy())).astype(np.float32)

    x_train, y_train = photo_crops(HEAD_TRAIN, size, 1, HEAD_CLASSES)
    x_train = prep(x_train)
    base = fn(weights=None, include_top=False, pooling="avg", input_shape=(*size, 3))
    head = K.layers.Dense(len(HEAD_CLASSES), activation="softmax", name="photo")
    model = K.Model(base.input, head(base.output), name=f"{app}_photo_classifier")
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    hist = model.fit(x_train, y_train, epochs=HEAD_EPOCHS, batch_size=32, verbose=0)
    init = data_dependent_init(K, model, x_train[:64])
    calib, _ = photo_crops(HEAD_SAMPLES, size, 2, HEAD_CLASSES)
    check, y_check = photo_crops(HEAD_SAMPLES, size, 3, HEAD_CLASSES)
    x_check = prep(check)
    probs = np.asarray(model.predict(x_check, batch_size=32, verbose=0))
    init.update(
        input_size=HEAD_SIZE, classes=len(HEAD_CLASSES), train_crops=HEAD_TRAIN,
        epochs=HEAD_EPOCHS, train_accuracy=round(float(hist.history["accuracy"][-1]), 3),
        check_accuracy=round(float((probs.argmax(-1) == y_check).mean()), 3),
        check_mean_top_probability=round(float(probs.max(-1).mean()), 3),
    )  # fmt: skip
    return model, {"x": np.concatenate([prep(calib), x_check])}, init


# ------------------------------------------------------------------ case list


def cases(apps: str) -> list[Case]:
    out: list[Case] = []
    for family in BUILDERS:
        if family.startswith("hub:"):
            continue
        for world in ("k3", "tfk"):
            formats = (".keras",) if world == "k3" or family == "subclassed" else (".keras", ".h5")
            options = {"imports": True} if family == "subclassed" else {}
            out += [
                Case(f"{world}/{family}{fmt}", family, world, fmt, family, options)
                for fmt in formats
            ]
    for key in BUILDERS:
        if key.startswith("hub:"):
            name = key.split(":", 1)[1]
            out.append(Case(f"k3/hub-{name}.keras", "keras-hub", "k3", ".keras", key))
            if name == "gpt2_causal_lm":
                out.append(
                    Case(
                        f"k3/hub-{name}.keras --lm", "keras-hub", "k3", ".keras", key, {"lm": True}
                    )
                )
    if apps != "none":
        for world in ("k3", "tfk"):
            names = app_names(world) if apps == "all" else APP_FAMILIES
            fmt = ".keras" if world == "k3" else ".h5"
            out += [
                Case(f"{world}/app-{a}{fmt}", "keras.applications", world, fmt, f"app:{a}")
                for a in names
                if a in app_names(world)
            ]
        for world in ("k3", "tfk"):  # the same families with a head trained on photos
            fmt = ".keras" if world == "k3" else ".h5"
            out += [
                Case(f"{world}/app-{a}+trained{fmt}", HEAD_FAMILY, world, fmt, f"app:{a}+trained",
                     {"samples": HEAD_SAMPLES})
                for a in APP_FAMILIES
                if a in app_names(world)
            ]  # fmt: skip
    return out


_APP_NAMES = {
    # Listed here so the case list needs no TensorFlow import; checked against dir() in the build.
    "k3": "ConvNeXtBase ConvNeXtLarge ConvNeXtSmall ConvNeXtTiny ConvNeXtXLarge DenseNet121 "
    "DenseNet169 DenseNet201 EfficientNetB0 EfficientNetB1 EfficientNetB2 EfficientNetB3 "
    "EfficientNetB4 EfficientNetB5 EfficientNetB6 EfficientNetB7 EfficientNetV2B0 EfficientNetV2B1 "
    "EfficientNetV2B2 EfficientNetV2B3 EfficientNetV2L EfficientNetV2M EfficientNetV2S "
    "InceptionResNetV2 InceptionV3 MobileNet MobileNetV2 MobileNetV3Large MobileNetV3Small "
    "NASNetLarge NASNetMobile ResNet101 ResNet101V2 ResNet152 ResNet152V2 ResNet50 ResNet50V2 "
    "VGG16 VGG19 Xception",
}
_APP_NAMES["tfk"] = (
    _APP_NAMES["k3"]
    + " "
    + " ".join(f"RegNet{k}{n}" for k in "XY" for n in
               ("002", "004", "006", "008", "016", "032", "040", "064", "080", "120", "160", "320"))
    + " ResNetRS50 ResNetRS101 ResNetRS152 ResNetRS200 ResNetRS270 ResNetRS350 ResNetRS420"
)  # fmt: skip


def app_names(world: str) -> list[str]:
    return _APP_NAMES[world].split()


# ------------------------------------------------------------------ subprocess workers


def keras_of(world: str) -> Any:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow  # noqa: F401

    if world == "tfk":
        import tf_keras as K
    else:
        import keras as K
    return K


def paths(models: Path, case: Case) -> tuple[Path, Path, Path]:
    """(model file, calibration .npz, check .npz) of a case."""
    stem = case.stem.replace(":", "-").replace("+", "_")
    return models / f"{stem}{case.fmt}", models / f"{stem}.calib.npz", models / f"{stem}.check.npz"


def build_worker(case: Case, models: Path) -> None:
    """Build, train and save every format of the case's (family, world); write its data."""
    K = keras_of(case.world)
    K.utils.set_random_seed(0)
    info: dict[str, Any] = {}
    if case.builder.startswith("app:") and case.builder.endswith("+trained"):
        model, data, info = build_app_head(K, case.world, case.builder[4:-8])
    elif case.builder.startswith("app:"):
        model, data, info = build_app(K, case.world, case.builder[4:])
    elif case.builder == "subclassed":
        model, data = BUILDERS["subclassed"](K, case.world, models)
    else:
        model, data = BUILDERS[case.builder](K, case.world)
    formats = (
        [".keras", ".h5"] if case.world == "tfk" and case.family != "subclassed" else [".keras"]
    )
    if case.builder.startswith("app:"):
        formats = [case.fmt]
    for fmt in formats:
        target = paths(models, Case(case.name, case.family, case.world, fmt, case.builder))[0]
        model.save(str(target))
    _, calib, check = paths(models, case)
    n = len(next(iter(data.values())))
    half = min(case.options.get("samples", CALIBRATION), n // 2)
    np.savez(calib, **{k: v[:half] for k, v in data.items()})
    np.savez(check, **{k: v[half : 2 * half] for k, v in data.items()})
    (calib.with_suffix("").with_suffix(".info.json")).write_text(json.dumps(info))


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines() or [type(exc).__name__])[0][:400]


def convert_worker(case: Case, models: Path, precisions: list[str]) -> None:
    """Convert the saved file at each precision; one marked JSON line per precision on stdout."""
    import faulthandler

    import tfopt
    from tfopt.errors import TfoptError

    if os.environ.get("ZOO_FAULT_FILE"):  # tfopt keeps native stderr quiet: dump to a file
        faulthandler.enable(open(os.environ["ZOO_FAULT_FILE"], "w"), all_threads=False)  # noqa: SIM115
    model, calib, check = paths(models, case)
    out = models.parent / "tflite"
    out.mkdir(parents=True, exist_ok=True)
    for prec in precisions:
        print(MARK + json.dumps({"start": prec}), flush=True)
        kwargs: dict[str, Any] = {
            "precision": prec, "calibration": str(calib), "check_data": str(check),
            "num_calibration": case.options.get("samples", CALIBRATION), "overwrite": True,
        }  # fmt: skip
        if case.options.get("lm"):
            kwargs = {"precision": prec, "lm": True, "max_length": HUB_LEN, "overwrite": True}
        if case.options.get("imports"):
            kwargs["unsafe"] = True
            kwargs["imports"] = [str(custom_module_path(models, case.world))]
        target = out / (paths(models, case)[0].stem + ("-lm" if case.options.get("lm") else ""))
        started = time.perf_counter()
        row: dict[str, Any]
        try:
            res = tfopt.convert(str(model), f"{target}.{prec}.tflite", **kwargs)
            row = {"status": "pass", **summarize(res.to_dict())}
        except TfoptError as exc:
            row = {"status": "fail", "reason": first_line(exc)}
        except Exception as exc:  # noqa: BLE001 - a raw exception is a tfopt bug: record it
            traceback.print_exc()
            row = {"status": "error", "reason": f"{type(exc).__name__}: {first_line(exc)}"}
        row["seconds"] = round(time.perf_counter() - started, 1)
        print(MARK + json.dumps({"precision": prec, **row}), flush=True)


def summarize(result: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"size_kb": round(result["size_bytes"] / 1024, 1)}
    check = result.get("check") or {}
    outputs = check.get("outputs") or []
    if outputs:
        out["sqnr_db"] = round(min(o["sqnr_db"] for o in outputs), 1)
        out["cosine"] = round(min(o["cosine"] for o in outputs), 5)
    if check.get("top1_agreement") is not None:
        out["top1"] = round(check["top1_agreement"], 3)
    return out


# ------------------------------------------------------------------ the driver


def _stream(
    cmd: list[str], timeout: float, log: Any, fault: Path
) -> tuple[list[dict[str, Any]], str]:
    """Run `cmd`, collecting marked JSON lines; each precision gets `timeout` seconds.

    Returns the records and how the process ended ("ok", "timeout", or "crash, ...": the signal
    and the innermost Python frame, which the worker's faulthandler writes to `fault`).
    """
    fault.unlink(missing_ok=True)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "benchmarks"), "ZOO_FAULT_FILE": str(fault)}
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
        cwd=ROOT, env=env,
    )  # fmt: skip
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    records: list[dict[str, Any]] = []
    tail: list[str] = []
    deadline = time.monotonic() + timeout
    while True:
        try:
            line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
        except queue.Empty:
            if time.monotonic() < deadline:
                continue
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return records, "timeout"
        if line is None:
            break
        if line.startswith(MARK):
            records.append(json.loads(line[len(MARK) :]))
            deadline = time.monotonic() + timeout
        else:
            log.write(line)
            if line.strip() and not NOISE.search(line):
                tail = (tail + [line.strip()])[-5:]
    code = proc.wait()
    if code == 0:
        return records, "ok"
    how = f"killed by signal {-code}" if code < 0 else f"exit code {code}"
    if code < 0:
        how += f" ({signal.Signals(-code).name})" if -code in signal.valid_signals() else ""
    last = next((t for t in reversed(tail) if re.search(r"rror|Check failed|^F0000", t)), "")
    where = innermost_frame(fault)
    return records, f"crash, {how}" + (f" in {where}" if where else "") + (
        f": {last[:300]}" if last else ""
    )


def innermost_frame(fault: Path) -> str:
    """`package/module.py:line function` of the innermost frame in a faulthandler dump."""
    if not fault.exists():
        return ""
    for line in fault.read_text(errors="replace").splitlines():
        m = re.match(r'\s*File "(.+)", line (\d+) in (\w+)', line)
        if m:
            path = re.sub(r".*/site-packages/", "", m.group(1)).replace(str(ROOT) + "/", "")
            return f"{path}:{m.group(2)} {m.group(3)}"
    return ""


def run_case(
    case: Case, models: Path, precisions: list[str], timeout: float, log_dir: Path
) -> dict[str, Any]:
    row: dict[str, Any] = {
        "model": case.name, "family": case.family, "world": WORLDS[case.world],
        "format": case.fmt, "results": {},
    }  # fmt: skip
    model_file, calib, _ = paths(models, case)
    log_path = log_dir / (re.sub(r"[^\w.+-]", "_", case.name) + ".log")
    with log_path.open("w") as log:
        if not model_file.exists() or not calib.exists():
            cmd = [sys.executable, __file__, "_build", case.name, "--out", str(models.parent)]
            _, how = _stream(cmd, timeout, log, log_path.with_suffix(".fault"))
            if how != "ok" or not model_file.exists():
                reason = f"build failed: {how}" if how != "ok" else "build wrote no model file"
                row["results"] = {p: {"status": "build", "reason": reason} for p in precisions}
                return row
        info = calib.with_suffix("").with_suffix(".info.json")
        if info.exists() and info.read_text().strip() not in ("", "{}"):
            row["init"] = json.loads(info.read_text())
        todo = list(precisions)
        while todo:
            cmd = [sys.executable, __file__, "_convert", case.name, "--out", str(models.parent),
                   "--precisions", ",".join(todo)]  # fmt: skip
            records, how = _stream(cmd, timeout, log, log_path.with_suffix(".fault"))
            for r in records:
                if "status" in r:
                    row["results"][r.pop("precision")] = r
            todo = [p for p in todo if p not in row["results"]]
            if todo and how != "ok":
                started = [r["start"] for r in records if "start" in r]
                current = started[-1] if started and started[-1] in todo else todo[0]
                reason = f"timeout after {timeout:.0f} s" if how == "timeout" else how[7:]
                row["results"][current] = {
                    "status": "timeout" if how == "timeout" else "crash",
                    "reason": reason,
                }
                todo.remove(current)
            elif todo:
                for p in todo:
                    row["results"][p] = {"status": "error", "reason": "worker reported nothing"}
                todo = []
    row["results"] = {p: row["results"][p] for p in precisions}
    return row


def machine() -> str:
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        name = next(ln.split(":", 1)[1].strip() for ln in text.splitlines() if "Model name" in ln)
    except (OSError, StopIteration):
        name = platform.processor() or "unknown CPU"
    return f"{name}, {os.cpu_count()} cores, Python {platform.python_version()}"


def cell(r: dict[str, Any] | None) -> str:
    if r is None:
        return "not run"
    if r["status"] == "pass":
        bits = [f"{r['size_kb']:.0f} KB"] if "size_kb" in r else []
        if "sqnr_db" in r:
            bits.append(f"SQNR {r['sqnr_db']:.1f} dB")
        if "top1" in r:
            bits.append(f"top1 {100 * r['top1']:.0f}%")
        return "pass" + (f" ({', '.join(bits)})" if bits else "")
    reason = r["reason"].replace(str(ROOT) + "/", "")
    return f"**{r['status']}**: {reason}".replace("|", "\\|")


def render(report: dict[str, Any]) -> str:
    precs = report["precisions"]
    lines = [
        "| model | " + " | ".join(precs) + " |",
        "|---|" + "---|" * len(precs),
    ]
    for row in report["rows"]:
        cells = [cell(row["results"].get(p)) for p in precs]
        lines.append(f"| `{row['model']}` | " + " | ".join(cells) + " |")
    counts = pass_counts(report)
    ran = {p: sum(1 for r in report["rows"] if p in r["results"]) for p in precs}
    lines += ["", "Passes per precision (of the rows that ran it): " + ", ".join(
        f"{p} {counts[p]}/{ran[p]}" for p in precs)]  # fmt: skip
    return "\n".join(lines) + "\n"


HEAD_FAMILY = "keras.applications+trained"
GROUPS = {
    "keras-hub": "keras-hub tasks",
    "keras.applications": "keras.applications, random weights, untrained 1000-class top, 224x224",
    HEAD_FAMILY: "keras.applications trained on 10 photo classes, 96x96",
}


def summary_table(report: dict[str, Any]) -> str:
    """Passes per precision, per group of rows (Keras layer families, keras-hub, applications)."""
    precs = report["precisions"]
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in report["rows"]:
        group = GROUPS.get(row["family"], "Keras models (both worlds)")
        groups.setdefault(group, []).append(row)
    groups["all"] = report["rows"]
    lines = ["| rows | models | " + " | ".join(precs) + " |", "|---|---|" + "---|" * len(precs)]
    for group, rows in groups.items():
        counts = pass_counts({"precisions": precs, "rows": rows})
        ran = {p: sum(1 for r in rows if p in r["results"]) for p in precs}
        cells = [f"{counts[p]}/{ran[p]}" if ran[p] else "not run" for p in precs]
        lines.append(f"| {group} | {len(rows)} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def pass_counts(report: dict[str, Any]) -> dict[str, int]:
    return {
        p: sum(1 for r in report["rows"] if r["results"].get(p, {}).get("status") == "pass")
        for p in report["precisions"]
    }


def merge_row(report: dict[str, Any], row: dict[str, Any]) -> None:
    """Add or update a row; precisions not re-run keep their earlier result."""
    old = next((r for r in report["rows"] if r["model"] == row["model"]), None)
    if old is not None:
        row = {**old, **row, "results": {**old["results"], **row["results"]}}
        report["rows"][report["rows"].index(old)] = row
    else:
        report["rows"].append(row)
    order = {c.name: i for i, c in enumerate(cases("all"))}
    report["rows"].sort(key=lambda r: order.get(r["model"], len(order)))


def write_report(report: dict[str, Any], results: Path, command: str | None = None) -> None:
    report.update(
        machine=machine(),
        date=datetime.date.today().isoformat(),
        command=command or "python benchmarks/zoo.py " + " ".join(sys.argv[1:]),
        pass_counts=pass_counts(report),
        rows_total=len(report["rows"]),
    )
    (results / "zoo.json").write_text(json.dumps(report, indent=1) + "\n")
    (results / "zoo.md").write_text(
        f"# Compatibility zoo\n\n{report['machine']}, {report['date']}; "
        f"`{report['command']}`\n\n" + summary_table(report) + "\n" + render(report)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="zoo-out", help="cache of models and .tflite files")
    parser.add_argument("--only", default=None, help="regex on the model name")
    parser.add_argument("--precisions", default=",".join(PRECISIONS))
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument(
        "--apps", choices=("one-per-family", "all", "none"), default="one-per-family"
    )
    parser.add_argument("--timeout", type=float, default=900, help="seconds per conversion")
    parser.add_argument("--results", default=str(RESULTS), help="folder for zoo.json and zoo.md")
    parser.add_argument("--list", action="store_true", help="print the model names and exit")
    parser.add_argument(
        "--merge", action="append", help="merge the rows of another zoo.json into --results; exit"
    )
    args, rest = parser.parse_known_args()

    if rest and rest[0] in ("_build", "_convert"):
        case = {c.name: c for c in cases("all")}[rest[1]]
        models = Path(args.out) / "models"
        if rest[0] == "_build":
            build_worker(case, models)
        else:
            convert_worker(case, models, args.precisions.split(","))
        return
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")

    selected = [c for c in cases(args.apps) if not args.only or re.search(args.only, c.name)]
    if args.list:
        print("\n".join(c.name for c in selected))
        return
    precisions = args.precisions.split(",")
    models = Path(args.out).resolve() / "models"
    log_dir = Path(args.out).resolve() / "logs"
    models.mkdir(parents=True, exist_ok=True)
    log_dir.mkdir(parents=True, exist_ok=True)
    results = Path(args.results)
    results.mkdir(parents=True, exist_ok=True)
    json_path = results / "zoo.json"
    report: dict[str, Any] = {"precisions": list(PRECISIONS), "rows": []}
    if json_path.exists():
        report = json.loads(json_path.read_text())
    if args.merge:
        for other in args.merge:
            for row in json.loads(Path(other).read_text())["rows"]:
                merge_row(report, row)
        write_report(report, results, command=report.get("command"))
        print(render(report))
        return
    lock = threading.Lock()
    started = time.time()

    def one(case: Case) -> None:
        t0 = time.perf_counter()
        row = run_case(case, models, precisions, args.timeout, log_dir)
        row["seconds"] = round(time.perf_counter() - t0, 1)
        with lock:
            merge_row(report, row)
            write_report(report, results)
            summary = ", ".join(
                f"{p}={row['results'][p]['status']}" for p in precisions if p in row["results"]
            )
            print(f"[{time.time() - started:7.0f}s] {case.name}: {summary}", flush=True)

    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        list(pool.map(one, selected))
    print(render(report))


if __name__ == "__main__":
    main()
