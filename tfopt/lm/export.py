"""Causal LMs: one `.tflite` with prefill and decode signatures, checked on prefill logits."""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from converters import PRECISIONS
from tfopt.conversion.dedupe import dedupe_buffers
from tfopt.conversion.guards import aeq, run_converter
from tfopt.conversion.lookups import lookups_as_embedding
from tfopt.conversion.plan import ExportPlan
from tfopt.conversion.request import ConvertRequest
from tfopt.conversion.result import ConvertResult
from tfopt.core import LoadedModel, Precision
from tfopt.errors import InputError, ValidationError, first_line, note, option
from tfopt.fsutil import atomic_path
from tfopt.inspection import gzip_size
from tfopt.runtime.lm import LmRunner
from tfopt.validate import compare_outputs, with_thresholds


def convert_lm(
    loaded: LoadedModel, out: Path, req: ConvertRequest, plan: ExportPlan
) -> ConvertResult:
    """A causal LM with prefill/decode signatures up to `req.max_length` (as `plan` says:
    `plan_export` refuses calibrated precisions and non-Keras 3 models); checked on the prefill
    and decode logits of a prompt."""
    from converters.lm import lm_converter

    assert plan.converter_precision is not None
    if req.tokenizer is not None and not req.bundle(out):
        raise InputError(
            f"{option('tokenizer')} goes into a .litertlm bundle: add {option('litertlm')} "
            "(or name the output .litertlm)"
        )
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="tfopt-") as work:
        converter = lm_converter(loaded.model, Path(work), req.max_length)
        PRECISIONS[plan.converter_precision].configure(converter, None, False)
        flatbuffer = run_converter(converter, req.precision, False, req.keep_float, None, req.debug)
    if req.use_aeq:
        flatbuffer = _quantized(flatbuffer, loaded.model, req)
    flatbuffer = stored_once(flatbuffer)
    seconds = time.perf_counter() - started
    with atomic_path(out) as tmp:
        if req.bundle(out):
            checked = _bundled(loaded.model, flatbuffer, tmp, req)
        else:
            tmp.write_bytes(flatbuffer)
            checked = None
            if req.check:
                checked = check_lm(loaded.model, str(tmp), req.max_length, req.precision)
        size = tmp.stat().st_size
    return ConvertResult(
        output=str(out),
        precision=req.precision.value,
        source="keras3-lm" + ("+aeq" if req.use_aeq else "") + ("+litertlm" if req.bundle(out) else ""),
        size_bytes=size,
        gzip_bytes=gzip_size(flatbuffer),
        seconds=round(seconds, 2),
        float_compute_ops={},
        check=checked,
        plan=plan.to_dict(),
    )


def _bundled(model: Any, flatbuffer: bytes, out: Path, req: ConvertRequest) -> dict | None:
    """The `.litertlm` bundle at `out`: the export, checked on its logits by tfopt's runner,
    packed with the tokenizer, and run by LiteRT-LM's own engine (greedy text equal to the
    runner's; exact for float weights)."""
    from tfopt.lm.bundle import model_tokenizer, pack, tokenizer_file
    from tfopt.lm.engine import check_engine

    with tempfile.TemporaryDirectory(prefix="tfopt-bundle-") as work:
        model_file = Path(work) / "model.tflite"
        model_file.write_bytes(flatbuffer)
        checked = None
        if req.check:
            checked = check_lm(model, str(model_file), req.max_length, req.precision)
        vocab = int(model.backbone.token_embedding.input_dim)
        tokens = tokenizer_file(model_tokenizer(model, req.tokenizer), vocab, Path(work))
        bundle = Path(work) / "model.litertlm"  # LiteRT-LM reads the format from the suffix
        pack(model_file, tokens, req.max_length, bundle)
        if checked is not None:
            exact = req.precision in (Precision.FLOAT32, Precision.FLOAT16)
            checked["litert_lm"] = check_engine(bundle, model_file, tokens, exact)
        shutil.copyfile(bundle, out)
    return checked


def _quantized(flatbuffer: bytes, model: Any, req: ConvertRequest) -> bytes:
    """The LiteRT quantizer's LM with its token lookups as EMBEDDING_LOOKUP, whose table it
    quantizes (it leaves a GATHER's float). Where that table costs the LM its check (a model
    whose logits hang on fine differences of its embedding rows), the lookups stay GATHERs with
    a float table, and a note says so."""
    vocab = int(model.backbone.token_embedding.input_dim)
    rewritten = lookups_as_embedding(flatbuffer, vocab)
    quantized = aeq(rewritten, req.precision, req.keep_float, None)
    if rewritten == flatbuffer or not req.check:
        return quantized
    with tempfile.TemporaryDirectory(prefix="tfopt-lm-") as work:
        trial = Path(work) / "lm.tflite"
        trial.write_bytes(stored_once(quantized, quiet=True))
        try:
            check_lm(model, str(trial), req.max_length, req.precision)
            return quantized
        except ValidationError as exc:
            note(f"the {req.precision} token table fails the LM check ({first_line(exc)}): it stays float")
    return aeq(flatbuffer, req.precision, req.keep_float, None)


def stored_once(flatbuffer: bytes, quiet: bool = False) -> bytes:
    """The LM file with each constant stored once (the LiteRT quantizer gives every signature
    its own copy); a note says how much that saved, when it saved anything (unless `quiet`)."""
    deduped = dedupe_buffers(flatbuffer)
    if len(deduped) >= len(flatbuffer):
        return flatbuffer
    if quiet:
        return deduped
    note(f"weights stored once: {_mb(len(flatbuffer))} -> {_mb(len(deduped))} MB")
    return deduped


def _mb(size: int) -> str:
    return f"{size / 1e6:.0f}" if size >= 10e6 else f"{size / 1e6:.2g}"


def check_lm(model: Any, path: str, max_length: int, prec: Precision) -> dict[str, Any]:
    """Logits of a realistic prompt and of the decode steps after it, .tflite against Keras
    (the model's plain forward over the whole sequence), within the precision's tolerance."""
    runner = LmRunner(path)
    prompt_len = min(12, max_length - 4)
    seq = np.random.default_rng(0).integers(0, min(runner.vocab, 100), prompt_len + 3)
    seq = [int(t) for t in seq]
    ref = np.asarray(
        model(
            {"token_ids": np.array([seq], np.int32), "padding_mask": np.ones((1, len(seq)), bool)},
            training=False,
        )
    )[0, prompt_len - 1 :]
    cand = [runner.prefill(seq[:prompt_len])]
    for position in range(prompt_len, len(seq)):
        cand.append(runner.decode(seq[position], position))
    diff = compare_outputs({"logits": ref}, {"logits": np.stack(cand)})
    spec = PRECISIONS[prec]
    verdict = with_thresholds(diff, spec.min_sqnr_db, spec.min_cosine)
    if not verdict.passed:
        raise ValidationError(
            f"{prec} LM fails its numeric check: {verdict.failures[0]} (pass {option('no_check', 'check=False')} to keep it)"
        )
    return verdict.to_dict()
