"""keras-hub causal LMs -> one `.tflite` whose decode step costs what the model costs.

Signatures, all sharing the weights:
- `prefill_B(token_ids[1, B], length[1])` -> `logits[1, V]` (position length-1 only) and
  `kv[layers, 2, kv_heads, B, head_dim]`, for each bucket B (e.g. 32, 128, 512): a short
  prompt costs a short prefill.
- `decode(token_ids[1, 1], position[1], k_0..k_{N-1}, v_0..v_{N-1})` -> `logits[1, V]` and
  `kv[layers, 2, kv_heads, 1, head_dim]`. Each layer's cache `k_i`/`v_i` `[kv_heads, L, head_dim]`
  is its own input: the runtime keeps them in the interpreter's input buffers and writes only the
  new row after each step (`tfopt.runtime.lm`), so nothing copies or re-stacks the cache. The step
  attends to the first `position` rows only (a runtime-sized slice), so its cost follows the
  filled length, not the exported length L.

The model itself is keras-hub's: embeddings, norms, rotary or learned positions, MLPs and the
head run through the backbone's own forward; only the attention core is tfopt's. keras-hub routes
every attention layer that supports paged serving (GPT-2/OPT, Llama, Mistral, Gemma, Gemma 3,
Qwen, Qwen 3) through one hook (`keras_hub.src.vllm`: projected, rotated Q/K/V in, attention
out, with the layer's scale, grouped-query heads, sliding window and soft cap); tfopt plugs its
cache there. Exported through a Keras `ExportArchive` (a SavedModel), the path that keeps
variables (ENV.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tfopt import keras_worlds
from tfopt.errors import ConversionError, first_line, option

DECODE = "decode"
PREFILL = "prefill_"


@dataclass(frozen=True)
class LmShape:
    """What the exported signatures need to know about the model."""

    layers: int
    kv_heads: int
    head_dim: int
    vocab: int


def prefill_name(bucket: int) -> str:
    return f"{PREFILL}{bucket}"


def buckets_for(max_length: int, requested: tuple[int, ...] = (32, 128, 512)) -> tuple[int, ...]:
    """Prefill lengths below the exported length, and the exported length itself."""
    return tuple(sorted({b for b in requested if b < max_length} | {max_length}))


def _serving_hook() -> tuple[Any, Any]:
    hook = keras_worlds.keras_hub_serving_hook()
    if hook is None:  # pragma: no cover - the pinned keras-hub has it
        raise ConversionError("this keras-hub has no attention serving hook; pin keras-hub>=0.24")
    return hook.get_vllm_context, hook.vllm_context_scope


def check_lm(model: Any, max_length: int) -> None:
    backbone = getattr(model, "backbone", None)
    if backbone is None or not hasattr(model, "call_with_cache"):
        raise ConversionError(
            f"{option('lm')} needs a keras-hub CausalLM (with call_with_cache), got "
            f"{type(model).__name__}"
        )
    limit = getattr(backbone, "max_sequence_length", None)
    if limit is not None and max_length > limit:
        raise ConversionError(
            f"{option('max_length')} {max_length} exceeds the model's position limit {limit}"
        )
    if max_length < 2:
        raise ConversionError(f"{option('max_length')} must be at least 2")


def _attention_core(tf: Any, decode: bool, position: Any) -> Any:
    """The function keras-hub's attention layers call in serving mode:
    `fn(cache, q, k, v, scale, head_dim, heads, kv_heads, sliding_window, soft_cap)` with
    q `[T, heads*head_dim]`, k/v `[T, kv_heads*head_dim]`; returns (new rows, output `[T, ...]`).
    """

    def core(
        cache: Any,
        q: Any,
        k: Any,
        v: Any,
        *sizes: Any,  # scale, head_dim, heads, kv_heads: keras-hub passes them positionally
        sliding_window: int | None = None,
        soft_cap: float | None = None,
    ) -> tuple[Any, Any]:
        scale, head_dim, heads, kv_heads = sizes
        group = heads // kv_heads
        steps = tf.shape(q)[0]
        q = tf.reshape(q, [-1, kv_heads, group, head_dim])  # head h = kv head h // group
        k = tf.transpose(tf.reshape(k, [-1, kv_heads, head_dim]), [1, 0, 2])  # [KVH, T, D]
        v = tf.transpose(tf.reshape(v, [-1, kv_heads, head_dim]), [1, 0, 2])
        q = q * tf.cast(scale, q.dtype)

        def capped(scores: Any) -> Any:
            if soft_cap is None:
                return scores
            return tf.tanh(scores / soft_cap) * soft_cap

        if decode:
            k_cache, v_cache = cache
            q = tf.reshape(q, [kv_heads, group, head_dim])
            start = tf.zeros_like(position)
            if sliding_window is not None:
                start = tf.maximum(start, position - (sliding_window - 1))
            size = position - start
            begin = tf.concat([[0], start, [0]], 0)
            extent = tf.concat([[kv_heads], size, [head_dim]], 0)
            k_old = tf.slice(k_cache, begin, extent)  # [KVH, n, D], n = filled rows
            v_old = tf.slice(v_cache, begin, extent)
            old = capped(tf.matmul(q, k_old, transpose_b=True))  # [KVH, G, n]
            new = capped(tf.reduce_sum(q * k, axis=-1, keepdims=True))  # [KVH, G, 1]
            weights = tf.nn.softmax(tf.concat([old, new], axis=-1))
            out = tf.matmul(weights[..., :-1], v_old) + weights[..., -1:] * v
            out = tf.reshape(out, [1, heads * head_dim])
        else:
            q = tf.reshape(tf.transpose(q, [1, 2, 0, 3]), [kv_heads, -1, head_dim])  # [KVH, G*T, D]
            scores = tf.reshape(tf.matmul(q, k, transpose_b=True), [kv_heads, group, steps, steps])
            row = tf.range(steps)[:, None]
            col = tf.range(steps)[None, :]
            allowed = col <= row
            if sliding_window is not None:
                allowed = allowed & (row - col < sliding_window)
            scores = tf.where(allowed, capped(scores), tf.constant(-1e9, scores.dtype))
            weights = tf.reshape(tf.nn.softmax(scores), [kv_heads, -1, steps])
            out = tf.reshape(tf.matmul(weights, v), [kv_heads, group, steps, head_dim])
            out = tf.reshape(tf.transpose(out, [2, 0, 1, 3]), [steps, heads * head_dim])
        return tf.stack([k, v]), out  # rows [2, KVH, T, D]

    return core


def lm_shape(model: Any) -> LmShape:
    """Layers, key/value heads and head size, read by tracing one step through the hook."""
    tf = keras_worlds.tf()
    _, scope = _serving_hook()
    seen: list[tuple[int, int]] = []

    def probe(cache: Any, q: Any, k: Any, v: Any, *sizes: Any, **_: Any) -> tuple[Any, Any]:
        _scale, head_dim, _heads, kv_heads = sizes  # as `core` takes them
        seen.append((kv_heads, head_dim))
        return cache, tf.zeros_like(q)

    backbone = model.backbone
    layers = int(getattr(backbone, "num_layers", 0))  # keras-hub LM backbones record it
    with scope(
        paged_attention_func=probe, positions=tf.zeros([1], tf.int32), kv_caches=[None] * layers
    ):
        backbone(
            {"token_ids": tf.zeros([1, 1], tf.int32), "padding_mask": tf.ones([1, 1], tf.int32)},
            training=False,
        )
    if len(seen) != layers or not seen:
        raise ConversionError(
            f"{type(model).__name__}: {len(seen)} of {layers} attention layers take tfopt's "
            f"cache (keras-hub's serving hook); this family is not supported by {option('lm')} yet"
        )
    kv_heads, head_dim = seen[0]
    vocab = int(backbone.token_embedding.input_dim)
    return LmShape(layers=layers, kv_heads=kv_heads, head_dim=head_dim, vocab=vocab)


def _forward(model: Any, token_ids: Any, positions: Any, caches: list[Any], core: Any) -> Any:
    """Hidden states `[T, hidden]` and the new K/V rows of every layer `[N, 2, KVH, T, D]`."""
    tf = keras_worlds.tf()
    get_ctx, scope = _serving_hook()
    tokens = tf.reshape(token_ids, [-1, 1])  # serving layout: one token per row
    with scope(paged_attention_func=core, positions=positions, kv_caches=caches):
        hidden = model.backbone(
            {"token_ids": tokens, "padding_mask": tf.ones_like(tokens)}, training=False
        )
        rows = list(get_ctx().updated_kv_caches)
    return tf.reshape(hidden, [tf.shape(tokens)[0], -1]), tf.stack(rows)


def _logits(model: Any, hidden: Any) -> Any:
    tf = keras_worlds.tf()
    return tf.reshape(model.backbone.token_embedding(hidden[:, None, :], reverse=True), [1, -1])


def export_lm_saved_model(
    model: Any, folder: Path, max_length: int, buckets: tuple[int, ...]
) -> LmShape:
    """Write a SavedModel with `prefill_B` for each bucket and `decode`."""
    tf = keras_worlds.tf()
    keras = keras_worlds.module(keras_worlds.World.KERAS3)
    check_lm(model, max_length)
    shape = lm_shape(model)
    n = shape.layers
    archive = keras.export.ExportArchive()
    archive.track(model)

    def make_prefill(bucket: int) -> Any:
        def prefill(token_ids: Any, length: Any) -> dict[str, Any]:
            positions = tf.range(bucket, dtype=tf.int32)
            core = _attention_core(tf, decode=False, position=None)
            hidden, rows = _forward(model, token_ids, positions, [None] * n, core)
            last = tf.gather(hidden, length - 1)  # [1, hidden]
            return {"logits": _logits(model, last), "kv": rows}

        return prefill

    for bucket in buckets:
        archive.add_endpoint(
            prefill_name(bucket),
            make_prefill(bucket),
            input_signature=[
                tf.TensorSpec([1, bucket], tf.int32, name="token_ids"),
                tf.TensorSpec([1], tf.int32, name="length"),
            ],
        )

    cache_spec = [shape.kv_heads, max_length, shape.head_dim]

    def decode(token_ids: Any, position: Any, keys: list[Any], values: list[Any]) -> dict:
        core = _attention_core(tf, decode=True, position=position)
        caches = list(zip(keys, values, strict=True))
        hidden, rows = _forward(model, token_ids, position, caches, core)
        return {"logits": _logits(model, hidden), "kv": rows}

    archive.add_endpoint(
        DECODE,
        decode,
        input_signature=[
            tf.TensorSpec([1, 1], tf.int32, name="token_ids"),
            tf.TensorSpec([1], tf.int32, name="position"),
            [tf.TensorSpec(cache_spec, tf.float32, name=f"k_{i}") for i in range(n)],
            [tf.TensorSpec(cache_spec, tf.float32, name=f"v_{i}") for i in range(n)],
        ],
    )
    try:
        archive.write_out(str(folder), verbose=False)
    except Exception as exc:  # noqa: BLE001 - export raises many types
        raise ConversionError(f"cannot export the LM: {first_line(exc)}") from exc
    return shape


def lm_converter(
    model: Any, workdir: Path, max_length: int, buckets: tuple[int, ...] | None = None
) -> Any:
    """A TFLiteConverter over every prefill bucket and the decode step."""
    tf = keras_worlds.tf()
    folder = workdir / "lm_saved_model"
    buckets = buckets or buckets_for(max_length)
    export_lm_saved_model(model, folder, max_length, buckets)
    keys = [prefill_name(b) for b in buckets] + [DECODE]
    return tf.lite.TFLiteConverter.from_saved_model(str(folder), signature_keys=keys)
