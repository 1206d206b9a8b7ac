"""The one reader of the `.tflite` flatbuffer schema: the file check, the model root, enum names
and each subgraph's operators. `inspection` (I/O, op counts, weights) and `placement`
(GPU op placement) read the graph through it; no kernels and no TensorFlow are needed."""

from __future__ import annotations

from typing import Any, NamedTuple

from tfopt.core import TFLITE_MAGIC  # the flatbuffer file identifier, bytes 4..8


class Op(NamedTuple):
    """One operator of a subgraph: its name (custom ops by their custom code) and tensors."""

    name: str
    inputs: list[int]
    outputs: list[int]
    custom: bool


def is_tflite(data: bytes) -> bool:
    """Whether `data` carries the TFLite flatbuffer identifier."""
    return len(data) >= 8 and data[4:8] == TFLITE_MAGIC


def schema() -> Any:
    """LiteRT's generated schema module (imported on first use)."""
    from ai_edge_litert import schema_py_generated

    return schema_py_generated


def enum_names(cls: type) -> dict[int, str]:
    """{value: NAME} of a generated schema enum class (BuiltinOperator, TensorType)."""
    return {v: k for k, v in vars(cls).items() if not k.startswith("_") and isinstance(v, int)}


def model_root(data: bytes) -> Any:
    """The flatbuffer's `Model` table."""
    return schema().Model.GetRootAs(data, 0)


def operators(model: Any) -> list[list[Op]]:
    """Per subgraph, in execution order: every operator with its name and tensor indices."""
    names = enum_names(schema().BuiltinOperator)
    graphs = []
    for g in range(model.SubgraphsLength()):
        graph = model.Subgraphs(g)
        nodes = []
        for o in range(graph.OperatorsLength()):
            op = graph.Operators(o)
            code = model.OperatorCodes(op.OpcodeIndex())
            builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
            name = names.get(builtin, f"BUILTIN_{builtin}")
            custom = name == "CUSTOM"
            if custom:
                name = (code.CustomCode() or b"?").decode()
            ins = [op.Inputs(i) for i in range(op.InputsLength())]
            outs = [op.Outputs(i) for i in range(op.OutputsLength())]
            nodes.append(Op(name, ins, outs, custom))
        graphs.append(nodes)
    return graphs
