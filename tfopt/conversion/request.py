"""A typed convert request: every option in one frozen dataclass, meaningless combinations refused.

`ConvertRequest(...)` raises `InputError` with one line naming the combination at fault, so the
library never silently ignores an option (`--calibration` with `--lm`, `--int8-io` with a float
precision, `--keep-float` without the LiteRT quantizer...).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from tfopt.core import AEQ_PRECISIONS, CONVERTER_PRECISIONS, InputShapes, Precision
from tfopt.errors import InputError, option

DataSource = str | os.PathLike[str] | Any  # a path, or an in-memory `tfopt.data.Dataset`


class Quantizer(StrEnum):
    CONVERTER = "converter"  # TFLiteConverter's post-training quantization
    AEQ = "aeq"  # the LiteRT quantizer (ai-edge-quantizer) on the float model


@dataclass(frozen=True)
class ConvertRequest:
    """What to convert to and how; see `tfopt.convert` for each field's meaning."""

    precision: Precision = Precision.FLOAT32
    calibration: DataSource | None = None
    num_calibration: int = 100
    int8_io: bool = False
    seq_len: int | None = None
    dynamic_length: bool = False
    overwrite: bool = False
    unsafe: bool = False
    check: bool = True
    check_data: DataSource | None = None
    lm: bool = False
    max_length: int = 128
    litertlm: bool = False  # with lm: a `.litertlm` bundle for LiteRT-LM (also from the suffix)
    tokenizer: str | None = None  # with litertlm: a keras-hub preset or GPT-2 BPE folder
    quantizer: Quantizer = Quantizer.CONVERTER
    keep_float: tuple[str, ...] = ()
    imports: tuple[str, ...] = ()
    input_shapes: InputShapes | None = field(default=None)
    max_size: int | str | None = None  # bytes, or '5MB': the app's size budget
    allowed_ops: tuple[str, ...] | str | None = None  # 'builtin', op names, or a file of them
    metadata: Any = None  # `tfopt.metadata.Metadata` (or a dict of its fields): TFLite metadata
    debug: bool = False  # keep the converter's and quantizer's native output (`--debug`)

    def __post_init__(self) -> None:
        set_ = object.__setattr__  # frozen: normalise the enums once, here
        set_(self, "precision", _enum(Precision, self.precision, "precision"))
        set_(self, "quantizer", _enum(Quantizer, self.quantizer, "quantizer"))
        set_(self, "keep_float", tuple(self.keep_float))
        set_(self, "imports", tuple(self.imports))
        from tfopt.conversion.budget import parse_ops, parse_size

        if isinstance(self.max_size, str):
            set_(self, "max_size", parse_size(self.max_size))
        if isinstance(self.allowed_ops, str):
            set_(self, "allowed_ops", parse_ops(self.allowed_ops))
        from tfopt.metadata import Metadata, read_labels

        if isinstance(self.metadata, dict):
            set_(self, "metadata", Metadata(**self.metadata))
        if self.metadata is not None and not isinstance(self.metadata, Metadata):
            raise InputError(f"metadata: expected tfopt.metadata.Metadata, got {self.metadata!r}")
        if self.metadata and self.metadata.labels is not None:
            read_labels(self.metadata.labels)  # a bad label file fails before the conversion
        for problem in self._problems():
            raise InputError(problem)

    @property
    def use_aeq(self) -> bool:
        return self.quantizer is Quantizer.AEQ

    def _problems(self) -> list[str]:
        p, aeq, o = self.precision, self.use_aeq, option
        problems = []
        if self.num_calibration < 1:
            problems.append(f"{o('num_calibration')} must be at least 1")
        if self.seq_len is not None and self.seq_len < 1:
            problems.append(f"{o('seq_len')} must be at least 1")
        if self.dynamic_length and self.seq_len is not None:
            problems.append(
                f"{o('dynamic_length')} keeps the sequence length free: drop {o('seq_len')}"
            )
        if self.dynamic_length and self.lm:
            problems.append(
                f"{o('lm')} has its own prefill lengths: it takes no {o('dynamic_length')}"
            )
        if aeq and p not in AEQ_PRECISIONS:
            allowed = ", ".join(AEQ_PRECISIONS)
            problems.append(f"{o('quantizer')} aeq quantizes: choose {allowed}")
        if not aeq and p not in CONVERTER_PRECISIONS:
            problems.append(f"{p} (weight-only) needs {o('quantizer')} aeq")
        if self.keep_float and not aeq:
            problems.append(f"{o('keep_float')} needs {o('quantizer')} aeq")
        if self.int8_io and (p is not Precision.INT8 or aeq):
            problems.append(f"{o('int8_io')} applies to {o('precision')} int8 (the converter) only")
        if self.lm and (self.max_size is not None or self.allowed_ops):
            problems.append(
                f"{o('max_size')} and {o('allowed_ops')} apply to a plain conversion, not {o('lm')}"
            )
        if self.lm and self.metadata:
            problems.append(
                f"metadata ({o('labels')}, {o('normalize')}, ...) describes one graph, "
                f"not {o('lm')}"
            )
        return problems + (self._lm_problems() if self.lm else self._plain_problems())

    def _lm_problems(self) -> list[str]:
        o = option
        given = [
            o(name)
            for name in ("calibration", "check_data", "seq_len", "input_shapes")
            if getattr(self, name) is not None
        ]
        problems = []
        if given:
            problems.append(
                f"{o('lm')} exports prefill/decode at {o('max_length')} and checks on its own "
                f"prompt: it takes no {', '.join(given)}"
            )
        if self.max_length < 2:
            problems.append(f"{o('max_length')} must be at least 2")
        return problems

    def _plain_problems(self) -> list[str]:
        lm_only = [name for name in ("litertlm", "tokenizer") if getattr(self, name)]
        if self.max_length != 128:
            lm_only.insert(0, "max_length")
        if lm_only:
            return [f"{', '.join(option(n) for n in lm_only)} applies to {option('lm')} only"]
        return []

    def bundle(self, output: str | os.PathLike[str]) -> bool:
        """Whether the LM goes out as a `.litertlm` bundle: asked for, or named so."""
        return self.lm and (self.litertlm or str(output).endswith(".litertlm"))


def _enum(cls: type[StrEnum], value: Any, what: str) -> Any:
    try:
        return cls(value)
    except ValueError:
        allowed = ", ".join(m.value for m in cls)  # type: ignore[attr-defined]
        raise InputError(f"unknown {what} '{value}' (choose from {allowed})") from None
