"""What a conversion returns."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class ConvertResult:
    """What was written and the evidence that it still computes what the source computes."""

    output: str
    precision: str
    source: str
    size_bytes: int
    gzip_bytes: int
    seconds: float
    float_compute_ops: dict[str, int]
    check: dict[str, Any] | None
    seq_len: int | None = None
    sensitivity: dict[str, Any] | None = None  # transformer int8: the op kinds kept out of int8
    metadata: dict[str, Any] | None = None  # the TFLite metadata written (`tfopt.metadata.read`)
    plan: dict[str, Any] | None = None  # every decision the conversion made (`plan.ExportPlan`)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
