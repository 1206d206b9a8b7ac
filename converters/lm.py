"""keras-hub causal LMs -> one `.tflite` in LiteRT-LM's contract, which tfopt's runner runs too.

Signatures, all sharing the weights and all taking the per-layer caches
`kv_cache_k_{i}`/`kv_cache_v_{i}` `[1, kv_heads, L, head_dim]` and returning them updated
(a DYNAMIC_UPDATE_SLICE at `input_pos[0]`: when the runtime binds one buffer as both the input
and the output, as LiteRT-LM does on CPU and `tfopt.runtime.lm` does, only the new rows are
written):
- `prefill_B(tokens[1, B], input_pos[B])` for each bucket B (e.g. 32, 128, 512): the prompt's
  rows, no logits (LiteRT-LM feeds all prompt tokens but the last, which decode takes).
- `decode(tokens[1, 1], input_pos[1])` -> `logits[1, 1, V]`.
- `verify_K(tokens[1, K], input_pos[K])` -> `logits[1, K, V]`: K tokens at once with the logits
  of each, the check step of prompt-lookup decoding (LiteRT-LM ignores it).
Every step attends to cache rows `0 .. input_pos[0] + T` (a runtime-sized slice), masked by each
query's own position, so its cost follows the filled length, not L; padding slots (token 0,
position 0, LiteRT-LM's convention) write rows past the prompt that later steps overwrite.

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
VERIFY = "verify_"
TOKENS, POSITIONS, LOGITS = "tokens", "input_pos", "logits"
VERIFY_STEPS = 8  # the current token and up to 7 drafted ones per check


@dataclass(frozen=True)
class LmShape:
    """What the exported signatures need to know about the model."""

    layers: int
    kv_heads: int
    head_dim: int
    vocab: int


def prefill_name(bucket: int) -> str:
    return f"{PREFILL}{bucket}"


def cache_name(kind: str, layer: int) -> str:
    """LiteRT-LM's name of one layer's cache: kind "k" or "v"."""
    return f"kv_cache_{kind}_{layer}"


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


def _attention_core(tf: Any, positions: Any) -> Any:
    """The function keras-hub's attention layers call in serving mode:
    `fn(cache, q, k, v, scale, head_dim, heads, kv_heads, sliding_window, soft_cap)` with
    q `[T, heads*head_dim]`, k/v `[T, kv_heads*head_dim]` and `cache` this layer's
    (`[1, KVH, L, D]` keys, values); returns (the updated caches, output `[T, heads*head_dim]`).
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
        update = keras_worlds.dynamic_update_slice()
        start = positions[0]
        at = tf.stack([0, 0, start, 0])

        def written(cache: Any, rows: Any) -> Any:  # rows [T, KVH*D] into [1, KVH, L, D]
            rows = tf.transpose(tf.reshape(rows, [1, -1, kv_heads, head_dim]), [0, 2, 1, 3])
            return update(cache, rows, at)

        k_all, v_all = written(cache[0], k), written(cache[1], v)
        seen = tf.minimum(start + steps, tf.shape(k_all)[2])  # rows any query may attend to
        extent = tf.stack([1, kv_heads, seen, head_dim])
        # [KVH, n, D] by RESHAPE, not by indexing: a STRIDED_SLICE of it costs LiteRT's
        # element-wise kernel 8 ms per GPT-2-124M decode step, SLICE + RESHAPE 1 ms
        rows = [kv_heads, -1, head_dim]
        keys = tf.reshape(tf.slice(k_all, [0, 0, 0, 0], extent), rows)
        values = tf.reshape(tf.slice(v_all, [0, 0, 0, 0], extent), rows)
        q = tf.reshape(q * tf.cast(scale, q.dtype), [-1, kv_heads, group, head_dim])
        q = tf.reshape(tf.transpose(q, [1, 2, 0, 3]), [kv_heads, -1, head_dim])  # [KVH, G*T, D]
        scores = tf.reshape(tf.matmul(q, keys, transpose_b=True), [kv_heads, group, steps, -1])
        if soft_cap is not None:
            scores = tf.tanh(scores / soft_cap) * soft_cap
        row = positions[:, None]
        col = tf.range(seen)[None, :]
        allowed = col <= row  # [T, n]: each query sees its own position and before
        if sliding_window is not None:
            allowed = allowed & (row - col < sliding_window)
        scores = tf.where(allowed, scores, tf.constant(-1e9, scores.dtype))
        weights = tf.reshape(tf.nn.softmax(scores), [kv_heads, -1, seen])
        out = tf.reshape(tf.matmul(weights, values), [kv_heads, group, steps, head_dim])
        out = tf.reshape(tf.transpose(out, [2, 0, 1, 3]), [steps, heads * head_dim])
        return (k_all, v_all), out

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


def _forward(model: Any, tokens: Any, positions: Any, caches: list[Any]) -> tuple[Any, list]:
    """Hidden states `[T, hidden]` and every layer's updated (keys, values)."""
    tf = keras_worlds.tf()
    get_ctx, scope = _serving_hook()
    tokens = tf.reshape(tokens, [-1, 1])  # serving layout: one token per row
    core = _attention_core(tf, positions)
    with scope(paged_attention_func=core, positions=positions, kv_caches=caches):
        hidden = model.backbone(
            {"token_ids": tokens, "padding_mask": tf.ones_like(tokens)}, training=False
        )
        updated = list(get_ctx().updated_kv_caches)
    return tf.reshape(hidden, [tf.shape(tokens)[0], -1]), updated


def _logits(model: Any, hidden: Any) -> Any:
    """`[1, T, V]` logits of hidden states `[T, hidden]`."""
    return model.backbone.token_embedding(hidden[None], reverse=True)


def _caches_out(updated: list) -> dict[str, Any]:
    out = {}
    for i, (keys, values) in enumerate(updated):
        out[cache_name("k", i)], out[cache_name("v", i)] = keys, values
    return out


def _step(model: Any, logits: bool) -> Any:
    """One signature's function: tokens `[1, T]`, positions `[T]` and the caches in; the
    updated caches (and, when `logits`, the logits of every position) out."""

    def step(tokens: Any, positions: Any, keys: list[Any], values: list[Any]) -> dict:
        caches = list(zip(keys, values, strict=True))
        hidden, updated = _forward(model, tokens, positions, caches)
        out = _caches_out(updated)
        if logits:
            out[LOGITS] = _logits(model, hidden)
        return out

    return step


def export_lm_saved_model(
    model: Any, folder: Path, max_length: int, buckets: tuple[int, ...]
) -> LmShape:
    """Write a SavedModel with `prefill_B` for each bucket, `verify_K` and `decode`."""
    tf = keras_worlds.tf()
    keras = keras_worlds.module(keras_worlds.World.KERAS3)
    check_lm(model, max_length)
    shape = lm_shape(model)
    n = shape.layers
    archive = keras.export.ExportArchive()
    archive.track(model.backbone)  # not the preprocessor: its lookup tables have no LiteRT op
    cache = [1, shape.kv_heads, max_length, shape.head_dim]

    def signature(steps: int) -> list:
        return [
            tf.TensorSpec([1, steps], tf.int32, name=TOKENS),
            tf.TensorSpec([steps], tf.int32, name=POSITIONS),
            [tf.TensorSpec(cache, tf.float32, name=cache_name("k", i)) for i in range(n)],
            [tf.TensorSpec(cache, tf.float32, name=cache_name("v", i)) for i in range(n)],
        ]

    for bucket in buckets:
        archive.add_endpoint(
            prefill_name(bucket), _step(model, False), input_signature=signature(bucket)
        )
    verify = min(VERIFY_STEPS, max_length)
    archive.add_endpoint(f"{VERIFY}{verify}", _step(model, True), signature(verify))
    archive.add_endpoint(DECODE, _step(model, True), input_signature=signature(1))
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
    keys = [prefill_name(b) for b in buckets] + [f"{VERIFY}{min(VERIFY_STEPS, max_length)}", DECODE]
    return tf.lite.TFLiteConverter.from_saved_model(str(folder), signature_keys=keys)
