"""A float `.tflite` source: the LiteRT quantizer alone, then the same check and keep."""

from __future__ import annotations

import time
from pathlib import Path

from tfopt.conversion import budget
from tfopt.conversion.guards import aeq
from tfopt.conversion.inputs import CHECK_SAMPLES, check_sample, dataset, synthetic_data
from tfopt.conversion.keep import keep, result, with_metadata
from tfopt.conversion.plan import ExportPlan
from tfopt.conversion.quantized import check_quantized
from tfopt.conversion.request import ConvertRequest
from tfopt.conversion.result import ConvertResult
from tfopt.core import LoadedModel
from tfopt.data import Dataset
from tfopt.errors import note
from tfopt.metadata import app_caveats, carry


def requantize(
    loaded: LoadedModel, out: Path, req: ConvertRequest, plan: ExportPlan, data: Dataset | None
) -> ConvertResult:
    """A float .tflite through the LiteRT quantizer on calibration `data`; the metadata and
    packed files it carries (labels, normalization) are kept, and `req.metadata` changes them."""
    assert loaded.path is not None  # a float .tflite (`plan.refuse` refused a quantized one)
    prec, source = req.precision, Path(loaded.path).read_bytes()
    started = time.perf_counter()
    flatbuffer = aeq(source, prec, req.keep_float, data)
    seconds = time.perf_counter() - started
    check_quantized(flatbuffer, prec, source, req.check)
    flatbuffer, metadata = carry(source, flatbuffer)
    if metadata:
        files = ", ".join(f["name"] for f in metadata.get("packed_files", [])) or "no files"
        note(f"metadata kept from {Path(loaded.path).name} ({files})")
        for caveat in [] if req.metadata else app_caveats(flatbuffer):
            note(caveat)
    if req.metadata:
        flatbuffer, metadata = with_metadata(flatbuffer, req.metadata)
    budget.check(flatbuffer, prec.value, req.max_size, req.allowed_ops)
    held_out = dataset(req.check_data, loaded.inputs, CHECK_SAMPLES)
    sample = check_sample(held_out, data, lambda: synthetic_data(loaded.inputs, 8))
    checked = keep(out, flatbuffer, prec, loaded, sample, req.check)
    return result(out, flatbuffer, plan, loaded.kind.value, seconds, check=checked,
                  metadata=metadata)  # fmt: skip
