"""Did the quantization happen? A file asked to be dynamic/int8/w8/w4 that holds no quantized
tensor is what was asked in name only: refused (or, unchecked, noted) with the reason."""

from __future__ import annotations

from tfopt.core import Precision
from tfopt.errors import ConversionError, note, option
from tfopt.flatbuffer import model_root, schema
from tfopt.inspection import graph_summary

# Precisions whose file must hold quantized (int8/int4) tensors.
QUANTIZED = {Precision.DYNAMIC, Precision.INT8, Precision.INT16X8, Precision.W8, Precision.W4,
             Precision.W4B32}  # fmt: skip
_QUANTIZED_DTYPES = ("INT8", "UINT8", "INT4", "INT16")
# TF's converter leaves float any weight with fewer values than this at dynamic range.
CONVERTER_MIN_WEIGHT = 1024


def quantized_tensors(flatbuffer: bytes) -> dict[str, int]:
    """Tensors that carry quantization parameters (a scale), counted by dtype: what makes a file
    quantized (a plain uint8 image input or an int32 token id is not)."""
    model = model_root(flatbuffer)
    names = {v: k for k, v in vars(schema().TensorType).items() if k in _QUANTIZED_DTYPES}
    counts: dict[str, int] = {}
    for g in range(model.SubgraphsLength()):
        graph = model.Subgraphs(g)
        for t in range(graph.TensorsLength()):
            tensor = graph.Tensors(t)
            q = tensor.Quantization()
            scaled = q is not None and (q.ScaleLength() > 0 or q.DetailsType() != 0)  # blockwise
            if tensor.Type() in names and scaled:
                name = names[tensor.Type()].lower()
                counts[name] = counts.get(name, 0) + 1
    return counts


def largest_float_weight(flatbuffer: bytes) -> int:
    """The number of values of the largest float constant (a weight) in the graph."""
    model = model_root(flatbuffer)
    floats = {v for k, v in vars(schema().TensorType).items() if k in ("FLOAT32", "FLOAT16")}
    largest = 0
    for g in range(model.SubgraphsLength()):
        graph = model.Subgraphs(g)
        for t in range(graph.TensorsLength()):
            tensor = graph.Tensors(t)
            buffer = model.Buffers(tensor.Buffer()) if tensor.Buffer() else None
            held = buffer is not None and (buffer.DataLength() > 0 or buffer.Size() > 0)
            if held and tensor.Type() in floats:
                size = 1
                for i in range(tensor.ShapeLength()):
                    size *= max(int(tensor.Shape(i)), 1)
                largest = max(largest, size)
    return largest


def check_quantized(
    flatbuffer: bytes, prec: Precision, source: bytes | None, check: bool
) -> None:
    """Refuse a `prec` file with no quantized tensor, naming why (float16 or densified weights
    of a .tflite source; weights too small for the converter); a note instead if not checking."""
    if prec not in QUANTIZED:
        return
    if quantized_tensors(flatbuffer):
        return
    why = "nothing in the graph was quantized"
    if source is not None:
        held = graph_summary(source)
        kinds = [
            what
            for what, present in (
                ("float16", held["tensor_dtypes"].get("float16")),
                ("sparse (DENSIFY)", held["ops"].get("DENSIFY")),
            )
            if present
        ]
        if kinds:
            why = f"its weights are {' and '.join(kinds)} constants, which the quantizer leaves alone"
    elif prec is Precision.DYNAMIC and largest_float_weight(flatbuffer) < CONVERTER_MIN_WEIGHT:
        why = (
            f"every weight has fewer than {CONVERTER_MIN_WEIGHT} values, which TF's converter "
            f"keeps float at dynamic (the LiteRT quantizer, {option('quantizer')} aeq, quantizes them)"
        )
    message = f"the {prec} file holds no quantized tensor: {why}"
    if check:
        raise ConversionError(f"{message} (pass {option('no_check', 'check=False')} to keep it anyway)")
    note(message)



