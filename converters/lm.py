"""keras-hub causal LMs -> one `.tflite` with two signatures sharing the weights.

- `prefill(token_ids[1, L])` -> `logits[1, L, V]`, `cache`: the prompt, right-padded to the
  maximum length L; logits at position P-1 give the first new token.
- `decode(token_ids[1, 1], cache, cache_update_index[1])` -> `logits[1, 1, V]`, `cache`: one step;
  positions past the index are masked by the model, so the padding never leaks in.

Works for any keras-hub CausalLM with `call_with_cache` and `_build_cache` (GPT-2, Gemma, Llama,
Mistral, ...); the cache layout is read from `_build_cache`. Exported through a Keras
`ExportArchive` (a SavedModel), the path that keeps variables (ENV.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tfopt import keras_worlds
from tfopt.errors import ConversionError, first_line

LM_SIGNATURES = ("prefill", "decode")


def cache_spec(model: Any, max_length: int) -> tuple[list[int], Any]:
    """Shape and dtype of the model's KV cache at `max_length`, read from `_build_cache`."""
    tf = keras_worlds.tf()
    _, cache = model._build_cache(tf.zeros([1, max_length], tf.int32))  # noqa: SLF001
    return [int(d) for d in cache.shape], cache.dtype


def check_lm(model: Any, max_length: int) -> None:
    if not (hasattr(model, "call_with_cache") and hasattr(model, "_build_cache")):
        raise ConversionError(
            f"--lm needs a keras-hub CausalLM (with call_with_cache), got {type(model).__name__}"
        )
    limit = getattr(getattr(model, "backbone", None), "max_sequence_length", None)
    if limit is not None and max_length > limit:
        raise ConversionError(
            f"--max-length {max_length} exceeds the model's position limit {limit}"
        )
    if max_length < 2:
        raise ConversionError("--max-length must be at least 2")


def export_lm_saved_model(model: Any, folder: Path, max_length: int) -> None:
    """Write a SavedModel with the `prefill` and `decode` signatures."""
    tf = keras_worlds.tf()
    keras = keras_worlds.module(keras_worlds.World.KERAS3)
    check_lm(model, max_length)
    shape, dtype = cache_spec(model, max_length)

    def prefill(token_ids: Any) -> dict[str, Any]:
        logits, _, cache = model.call_with_cache(token_ids, tf.zeros(shape, dtype), 0)
        return {"logits": logits, "cache": cache}

    def decode(token_ids: Any, cache: Any, cache_update_index: Any) -> dict[str, Any]:
        logits, _, cache = model.call_with_cache(token_ids, cache, cache_update_index[0])
        return {"logits": logits, "cache": cache}

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        "prefill",
        prefill,
        input_signature=[tf.TensorSpec([1, max_length], tf.int32, name="token_ids")],
    )
    archive.add_endpoint(
        "decode",
        decode,
        input_signature=[
            tf.TensorSpec([1, 1], tf.int32, name="token_ids"),
            tf.TensorSpec(shape, dtype, name="cache"),
            tf.TensorSpec([1], tf.int32, name="cache_update_index"),
        ],
    )
    try:
        archive.write_out(str(folder), verbose=False)
    except Exception as exc:  # noqa: BLE001 - export raises many types
        raise ConversionError(f"cannot export the LM: {first_line(exc)}") from exc


def lm_converter(model: Any, workdir: Path, max_length: int) -> Any:
    """A TFLiteConverter over both signatures."""
    tf = keras_worlds.tf()
    folder = workdir / "lm_saved_model"
    export_lm_saved_model(model, folder, max_length)
    return tf.lite.TFLiteConverter.from_saved_model(str(folder), signature_keys=list(LM_SIGNATURES))
