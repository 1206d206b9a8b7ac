"""Token lookups the LiteRT quantizer can quantize: a pass over a float `.tflite` flatbuffer.

The TF-to-TFLite converter lowers an embedding lookup to `GATHER`, which ai-edge-quantizer
quantizes only under static activation schemes; `EMBEDDING_LOOKUP` it quantizes under the
weight-only and dynamic int8/int4 schemes (blockwise included). LiteRT's `EMBEDDING_LOOKUP`
takes 1-D ids only, and an LM's ids are `[T, 1]`, so each `GATHER` on axis 0 of a constant 2-D
float32 table with int32 ids becomes, in every subgraph, `RESHAPE(ids -> [-1])`,
`EMBEDDING_LOOKUP(ids, table)`, `RESHAPE(-> the gather's output shape)`. The gather's output
tensor stays the last op's output, so signatures and later ops are unchanged. `rows` limits the
rewrite to tables of that many rows (an LM's vocabulary: its token table, not its positions).
"""

from __future__ import annotations

from typing import Any

from tfopt.conversion.dedupe import resolve_offsets, serialized_with_offsets


def lookups_as_embedding(flatbuffer: bytes, rows: int | None = None) -> bytes:
    """`flatbuffer` with its constant-table gathers (of `rows` rows, when given) as embedding
    lookups; the same bytes back when it has none."""
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(flatbuffer)
    resolve_offsets(model, flatbuffer)
    changed = False
    for subgraph in model.subgraphs or []:
        ops = []
        for op in subgraph.operators or []:
            rewritten = _as_lookup(model, subgraph, op, rows)
            changed |= rewritten is not None
            ops.extend(rewritten or [op])
        subgraph.operators = ops
    return serialized_with_offsets(model) if changed else flatbuffer


def _as_lookup(model: Any, subgraph: Any, op: Any, rows: int | None) -> list[Any] | None:
    """The three ops replacing `op`, or None when it is not a lookup of a constant table."""
    from ai_edge_litert import schema_py_generated as schema

    if _builtin(model, op) != schema.BuiltinOperator.GATHER or len(op.inputs) != 2:
        return None
    options = op.builtinOptions
    if options is not None and (options.axis != 0 or options.batchDims != 0):
        return None
    table, ids, out = (subgraph.tensors[i] for i in (*op.inputs, op.outputs[0]))
    out_shape = _static_or_one_free(out)
    if not (
        table.type == schema.TensorType.FLOAT32
        and len(table.shape) == 2
        and rows in (None, int(table.shape[0]))
        and model.buffers[table.buffer].data is not None
        and ids.type == schema.TensorType.INT32
        and out_shape is not None
    ):
        return None
    count = _prod(ids.shape)
    free = ids.shapeSignature is not None and -1 in list(ids.shapeSignature)
    flat_ids = _tensor(model, subgraph, f"{_name(ids)}/flat", schema.TensorType.INT32, [count], free)
    hidden = int(table.shape[1])
    looked = _tensor(
        model, subgraph, f"{_name(out)}/lookup", schema.TensorType.FLOAT32, [count, hidden], free
    )
    flatten = _reshape(model, subgraph, op.inputs[1], flat_ids, [-1])
    lookup = schema.OperatorT()
    lookup.opcodeIndex = _opcode(model, schema.BuiltinOperator.EMBEDDING_LOOKUP)
    lookup.inputs, lookup.outputs = [flat_ids, op.inputs[0]], [looked]
    return [flatten, lookup, _reshape(model, subgraph, looked, op.outputs[0], out_shape)]


def _builtin(model: Any, op: Any) -> int:
    code = model.operatorCodes[op.opcodeIndex]
    return max(code.builtinCode, code.deprecatedBuiltinCode)


def _opcode(model: Any, builtin: int) -> int:
    """The index of `builtin`'s operator code, appended when the model has none."""
    from ai_edge_litert import schema_py_generated as schema

    for index, code in enumerate(model.operatorCodes):
        if max(code.builtinCode, code.deprecatedBuiltinCode) == builtin:
            return index
    code = schema.OperatorCodeT()
    code.builtinCode, code.deprecatedBuiltinCode, code.version = builtin, min(builtin, 127), 1
    model.operatorCodes.append(code)
    return len(model.operatorCodes) - 1


def _static_or_one_free(tensor: Any) -> list[int] | None:
    """The tensor's shape for RESHAPE's new_shape (-1 for one free dimension), or None when more
    than one dimension is free."""
    shape = [int(d) for d in (tensor.shapeSignature if tensor.shapeSignature is not None else [])]
    shape = shape or [int(d) for d in tensor.shape]
    return shape if shape.count(-1) <= 1 else None


def _prod(shape: Any) -> int:
    out = 1
    for d in shape:
        out *= int(d)
    return out


def _name(tensor: Any) -> str:
    name = tensor.name
    return name.decode() if isinstance(name, bytes) else str(name)


def _buffer(model: Any, data: Any = None) -> int:
    from ai_edge_litert import schema_py_generated as schema

    buffer = schema.BufferT()
    buffer.data = data
    model.buffers.append(buffer)
    return len(model.buffers) - 1


def _tensor(
    model: Any, subgraph: Any, name: str, dtype: int, shape: list[int], free: bool = False
) -> int:
    """A new activation tensor (its first dimension free when `free`); its index."""
    import numpy as np
    from ai_edge_litert import schema_py_generated as schema

    tensor = schema.TensorT()
    tensor.name, tensor.type = name, dtype
    tensor.shape = np.array([max(shape[0], 1), *shape[1:]], np.int32)
    if free:
        tensor.shapeSignature = np.array([-1, *shape[1:]], np.int32)
    tensor.buffer = _buffer(model)
    subgraph.tensors.append(tensor)
    return len(subgraph.tensors) - 1


def _reshape(model: Any, subgraph: Any, source: int, target: int, new_shape: list[int]) -> Any:
    """RESHAPE `source` into `target` by an int32 constant shape (and the new_shape option)."""
    import numpy as np
    from ai_edge_litert import schema_py_generated as schema

    shape = np.array(new_shape, np.int32)
    tensor = schema.TensorT()
    tensor.name = f"{_name(subgraph.tensors[target])}/shape"
    tensor.type, tensor.shape = schema.TensorType.INT32, np.array([len(shape)], np.int32)
    tensor.buffer = _buffer(model, np.frombuffer(shape.tobytes(), np.uint8))
    subgraph.tensors.append(tensor)
    options = schema.ReshapeOptionsT()
    options.newShape = list(new_shape)
    op = schema.OperatorT()
    op.opcodeIndex = _opcode(model, schema.BuiltinOperator.RESHAPE)
    op.inputs, op.outputs = [source, len(subgraph.tensors) - 1], [target]
    op.builtinOptionsType, op.builtinOptions = schema.BuiltinOptions.ReshapeOptions, options
    return op
