"""The export plan: every decision a conversion makes, computed once from the request and the model.

`plan_export(request, loaded)` is a pure function of the request, the loaded model and the
calibration data's shapes (it converts, writes and notes nothing); the hub then only follows the
plan (`run.convert_request`: load -> plan -> export -> check -> keep). `explain(model, request)`
loads and plans without converting (`convert --explain`); the plan is in `convert --json` too.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from tfopt import keras_worlds
from tfopt.conversion import recurrent
from tfopt.conversion.guards import may_loop
from tfopt.conversion.inputs import (
    FREE_LENGTH,
    dataset,
    fixed_specs,
    specs_from_data,
    vocabulary_bound,
)
from tfopt.conversion.quantized import QUANTIZED, quantized_tensors
from tfopt.conversion.request import ConvertRequest
from tfopt.core import CALIBRATED, FAKE_QUANT_MARK, LoadedModel, Precision, SourceKind, TensorSpec
from tfopt.data import Dataset
from tfopt.errors import ConversionError, DataError, InputError, option, plain


class Backend(StrEnum):
    """What turns the source into a flatbuffer."""

    KERAS3 = "keras3"  # a Keras 3 model: exported as a SavedModel at fixed shapes, then converted
    TF_KERAS = "tf_keras"  # TFLiteConverter.from_keras_model (or a concrete function)
    SAVED_MODEL = "saved_model"  # re-saved with a fixed signature, then from_saved_model
    TFLITE = "tflite"  # already a float .tflite: the LiteRT quantizer alone
    LM = "lm"  # a keras-hub causal LM: prefill and decode signatures with a KV cache


class Mask(StrEnum):
    """How a Keras 3 masked softmax is exported."""

    NONE = "none"  # no attention, or not a Keras 3 model: exported as it is
    ADDITIVE = "additive"  # the mask added to the scores (XNNPACK takes ADD, not SELECT_V2)
    BOUNDED = "bounded"  # masked scores filled with the row's minimum - MASK_MARGIN: one int8 scale


@dataclass(frozen=True)
class ExportPlan:
    """Every decision of one conversion; `reasons` says why, field by field, where not obvious."""

    precision: Precision
    backend: Backend
    quantizer: str  # "converter" (TF's converter) or "aeq" (the LiteRT quantizer)
    converter_precision: Precision | None  # what TF's converter is set for (None: no converter)
    calibrated_by: str | None  # "converter" (TF's calibrator), "aeq", or None (no calibration)
    isolated: bool  # runs in a child process (a native crash becomes one line)
    inputs: tuple[TensorSpec, ...]  # the exact input specs exported
    check: bool
    check_data: str | None  # "check_data", "calibration", "sentences", "synthetic", "prompt"
    int8_io: bool = False  # int8 inputs and outputs (the converter's full int8 only)
    metadata: bool = False  # TFLite metadata is written
    budget: bool = False  # the file is held to a size or op budget before it is written
    recurrent_twin: bool = False  # converts a rebuilt model (tf_keras twin, or unrolled layers)
    qat: bool = False  # the model carries fake-quant ranges (`optimize`'s qat)
    attention: bool = False  # a Keras 3 model with attention or a Softmax layer
    mask: Mask = Mask.NONE
    int8_search: bool = False  # search which op kinds int8 keeps float (LiteRT quantizer)
    loop_check: bool = False  # convert to float first, refusing loops TF's calibrator crashes on
    free_inputs: tuple[str, ...] = ()  # inputs with a free (sequence) dimension the export fixes
    keep_free: bool = False  # free dimensions stay free in the file (dynamic_length)
    seq_len: int | None = None  # the length free dimensions are fixed at (the result's seq_len)
    length_from: str | None = None  # "seq_len", "data", "model" (keras-hub's own), or None
    synthetic_free_length: int | None = None  # synthetic values' length along a free dimension
    synthetic_max_id: int | None = None  # synthetic token ids stay below the smallest vocabulary
    notes: tuple[str, ...] = ()  # what the user is told of these decisions (once, by the hub)
    reasons: dict[str, str] = field(default_factory=dict, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """The plan as JSON (enums as their values, input specs as name/shape/dtype)."""
        doc = asdict(self)
        doc["inputs"] = [{"name": s.name, "shape": list(s.shape), "dtype": s.dtype}
                         for s in self.inputs]  # fmt: skip
        for key, value in doc.items():
            if isinstance(value, StrEnum):
                doc[key] = value.value
        doc["free_inputs"] = list(self.free_inputs)
        doc["notes"] = [plain(n) for n in self.notes]
        return doc


def isolate(given_by_path: bool, req: ConvertRequest) -> bool:
    """Whether the conversion runs in a child process: the native steps that crash (TF's
    calibrator, the quantizers) on a model given by path (a child can load it again)."""
    risky = req.precision in CALIBRATED or req.use_aeq
    return given_by_path and risky and not req.lm


def refuse(req: ConvertRequest, loaded: LoadedModel) -> None:
    """Refuse a request the source cannot take, before any data is read."""
    if loaded.kind is not SourceKind.TFLITE:
        return
    name = loaded.path if loaded.path is not None else "the model"
    if not req.use_aeq:
        raise InputError(
            f"{name} is already a .tflite file: quantize it with {option('quantizer')} aeq (the "
            "LiteRT quantizer works on float .tflite files), or convert its source model"
        )
    given = [("seq_len", req.seq_len is not None), ("input_shapes", req.input_shapes is not None),
             ("dynamic_length", req.dynamic_length)]  # fmt: skip
    shaped = [option(name) for name, on in given if on]
    if shaped:
        raise InputError(
            f"{', '.join(shaped)}: a .tflite keeps the input shapes it was converted with; "
            "set them when converting its source model"
        )
    assert loaded.path is not None
    quantized = sorted(quantized_tensors(Path(loaded.path).read_bytes()))  # not a uint8 input
    if quantized:
        raise InputError(
            f"{Path(loaded.path).name} is already quantized ({', '.join(quantized)} tensors): "
            "the LiteRT quantizer takes a float .tflite"
        )


def plan_export(
    req: ConvertRequest, loaded: LoadedModel, data: Dataset | None = None
) -> ExportPlan:
    """The plan for converting `loaded` as `req` asks. `data` is the calibration data as loaded
    for `loaded.inputs` (read from `req.calibration` when not given).

    Raises:
        InputError, ConversionError, DataError: the request cannot be met (named in one line).
    """
    refuse(req, loaded)
    if data is None and req.calibration is not None:
        data = dataset(req.calibration, loaded.inputs, req.num_calibration)
    if loaded.kind is SourceKind.TFLITE:
        return _requantize_plan(req, loaded, data)
    if req.lm:
        return _lm_plan(req, loaded)
    return _keras_plan(req, loaded, data)


def _common(req: ConvertRequest, loaded: LoadedModel) -> dict[str, Any]:
    """The fields every plan fills the same way."""
    return dict(
        precision=req.precision, quantizer=req.quantizer.value, int8_io=req.int8_io,
        isolated=isolate(loaded.path is not None, req), check=req.check,
        metadata=bool(req.metadata), budget=req.max_size is not None or bool(req.allowed_ops),
    )  # fmt: skip


def _requantize_plan(req: ConvertRequest, loaded: LoadedModel, data: Dataset | None) -> ExportPlan:
    prec = req.precision
    if prec in CALIBRATED and data is None:
        raise DataError(f"{prec} needs calibration data: pass {option('calibration')} DATA")
    return ExportPlan(
        **_common(req, loaded), backend=Backend.TFLITE, converter_precision=None,
        calibrated_by="aeq" if prec in CALIBRATED else None, inputs=loaded.inputs,
        check_data=_check_data(req, data, False), notes=_calibration_unused(prec, data),
        reasons={"backend": "already a .tflite: the LiteRT quantizer quantizes the float file"},
    )  # fmt: skip


def _lm_plan(req: ConvertRequest, loaded: LoadedModel) -> ExportPlan:
    prec = req.precision
    if prec in CALIBRATED:
        raise ConversionError(
            f"{option('lm')} supports float32, float16, dynamic (and w8/w4 with "
            f"{option('quantizer')} aeq); {prec} needs per-signature calibration (use {option('precision')} dynamic)"
        )
    if loaded.kind is not SourceKind.KERAS3:
        raise ConversionError(f"{option('lm')} needs a keras-hub CausalLM (a Keras 3 model)")
    return ExportPlan(
        **_common(req, loaded), backend=Backend.LM,
        converter_precision=Precision.FLOAT32 if req.use_aeq else prec, calibrated_by=None,
        inputs=loaded.inputs, check_data="prompt" if req.check else None,
        reasons={"backend": f"a causal LM: prefill and decode signatures up to {req.max_length}",
                 "check_data": "prefill and decode logits of a prompt against the Keras model"},
    )  # fmt: skip


def _keras_plan(req: ConvertRequest, loaded: LoadedModel, data: Dataset | None) -> ExportPlan:
    prec, reasons = req.precision, {}
    specs, seq_len, length_from, notes = _lengths(req, loaded, data)
    if prec is Precision.INT16X8 and not req.use_aeq:
        ints = [f"{s.name} ({s.dtype})" for s in specs if not s.is_float]
        if ints:
            raise ConversionError(
                f"int16x8 cannot calibrate integer inputs {', '.join(ints)}: TF 2.21 records no "
                f"range for them; use {option('precision')} int8 or dynamic"
            )
    if prec in CALIBRATED and data is None:
        raise DataError(
            f"{prec} needs calibration data: pass {option('calibration')} DATA (.npz, .npy or "
            "image folder)"
        )
    fixed = LoadedModel(loaded.kind, loaded.model, specs, loaded.path, loaded.structure)
    twin = recurrent.rebuilt_how(fixed, prec)
    if twin:
        reasons["recurrent_twin"] = twin
    kind = SourceKind.TF_KERAS if twin else loaded.kind
    attention = kind is SourceKind.KERAS3 and keras_worlds.has_masked_softmax(loaded.model)
    qat = bool(getattr(loaded.model, FAKE_QUANT_MARK, False))
    search = attention and prec is Precision.INT8 and not (req.use_aeq or req.int8_io or qat)
    mask = _mask(attention, prec, search, reasons)
    if search:
        reasons["int8_search"] = (
            "a Keras 3 attention model at int8: which op kinds stay float is measured")
    if qat:
        reasons["qat"] = "fake-quant ranges from optimize's qat: only the converter honours them"
    aeq = req.use_aeq or search  # the LiteRT quantizer quantizes the float conversion
    calibrated_by = None if prec not in CALIBRATED else "aeq" if aeq else "converter"
    loop_check = calibrated_by == "converter" and may_loop(loaded)
    if loop_check:
        reasons["loop_check"] = "TF 2.21's calibrator crashes on a WHILE loop: refused first"
    free = tuple(s.name for s in loaded.inputs if None in s.shape[1:])
    own = keras_worlds.default_sequence_length(loaded.model) or FREE_LENGTH
    return ExportPlan(
        **_common(req, loaded), qat=qat, attention=attention, backend=Backend(kind.value),
        recurrent_twin=bool(twin), mask=mask, int8_search=search, calibrated_by=calibrated_by,
        loop_check=loop_check, converter_precision=Precision.FLOAT32 if aeq else prec,
        inputs=specs, keep_free=req.dynamic_length and bool(free), seq_len=seq_len,
        free_inputs=() if req.dynamic_length else free, length_from=length_from,
        check_data=_check_data(req, data, _sentences(loaded, specs)),
        synthetic_free_length=min(own, FREE_LENGTH) if req.dynamic_length else None,
        synthetic_max_id=vocabulary_bound(loaded.model),
        notes=(*notes, *_calibration_unused(prec, data)), reasons=reasons,
    )  # fmt: skip


def _mask(attention: bool, prec: Precision, search: bool, reasons: dict[str, str]) -> Mask:
    """Quantized scores need a bounded mask fill; elsewhere the mask is added to the scores
    instead of selected (XNNPACK takes ADD, not SELECT_V2): the same outputs, one XNNPACK graph
    instead of one per attention layer. The int8 search keeps the scores float
    (`transformer.score_chains`), so it takes the additive mask too."""
    if not attention:
        return Mask.NONE
    if prec in CALIBRATED and not search:
        reasons["mask"] = "calibrated scores: a -1e9 fill would take the whole int8 range"
        return Mask.BOUNDED
    reasons["mask"] = "XNNPACK runs ADD, not SELECT_V2: one delegated graph"
    return Mask.ADDITIVE


def _lengths(
    req: ConvertRequest, loaded: LoadedModel, data: Dataset | None
) -> tuple[tuple[TensorSpec, ...], int | None, str | None, list[str]]:
    """The specs exported, the length recorded, where it came from, and the notes saying so.
    Free lengths follow the user's length first, then the user's own data, then a keras-hub
    model's own length (what the file takes is noted once it is written, read back from it)."""
    specs, seq_len, notes = loaded.inputs, req.seq_len, []
    free = any(d is None for s in specs for d in s.shape[1:])
    length_from = "seq_len" if seq_len is not None and free else None
    if seq_len is not None and not free:
        notes.append(
            f"the model has no free (sequence) dimension: {option('seq_len')} {seq_len} changes nothing"
        )
        seq_len = None  # the result records no length it did not set
    if req.dynamic_length:
        notes.append(
            f"sequence length left free ({option('dynamic_length')}): resize the inputs to each input's length"
            if free
            else f"the model has no free (sequence) dimension: {option('dynamic_length')} changes nothing"
        )
    elif free and seq_len is None:
        specs, fixed = specs_from_data(specs, data or dataset(req.check_data, specs, 1))
        if any(d is None for s in specs for d in s.shape[1:]):
            seq_len = keras_worlds.default_sequence_length(loaded.model)
            if seq_len is not None:
                length_from = "model"
                notes.append(
                    f"{option('seq_len')} {seq_len}: the model's own sequence length ({option('seq_len')} changes it)"
                )
        elif fixed:
            seq_len = next(d for s in specs if s.shape[1:] for d in s.shape[1:2])
            length_from = "data"
    return fixed_specs(specs, seq_len), seq_len, length_from, notes


def _calibration_unused(prec: Precision, data: Dataset | None) -> tuple[str, ...]:
    if data is not None and prec not in CALIBRATED and prec in QUANTIZED:
        return (f"{prec} needs no calibration: the {option('calibration')} data serves the check only",)
    return ()


def _sentences(loaded: LoadedModel, specs: tuple[TensorSpec, ...]) -> bool:
    """Whether the check may run public-domain sentences through a keras-hub preset's own
    tokenizer (`inputs.preset_sentences`; synthetic inputs when the preset has none)."""
    lengths = {d for s in specs for d in s.shape[1:2]}
    preset = loaded.path is not None and (Path(loaded.path) / "config.json").exists()
    return preset and len(lengths) == 1 and None not in lengths


def _check_data(req: ConvertRequest, data: Dataset | None, sentences: bool) -> str | None:
    """What the check runs on: the check data, else the calibration data, else sentences
    through the model's own tokenizer, else synthetic values."""
    if not req.check:
        return None
    if req.check_data is not None:
        return "check_data"
    if data is not None:
        return "calibration"
    return "sentences" if sentences else "synthetic"


def explain(model: str | os.PathLike[str] | Any, req: ConvertRequest) -> ExportPlan:
    """Load `model` and plan its conversion as `req` asks, converting and writing nothing."""
    from tfopt.loading import load

    loaded = load(model, unsafe=req.unsafe, imports=req.imports, input_shapes=req.input_shapes)
    return plan_export(req, loaded)
