"""Which channels of a Keras model can be removed together, and what each layer costs in MACs.

Read from the model's config (Sequential or Functional, either Keras world), so nothing private
of Keras is touched. Every layer output has a *channel space*: a Conv/Dense creates one (it is the
space's producer); a channel-wise layer (BatchNorm, activations, pooling, padding, dropout, a
depthwise conv with multiplier 1) passes its input's space on; an element-wise merge (Add,
Multiply, ...) joins its inputs' spaces into one, so a residual block is pruned as one group. A
space is *fixed* (never pruned) when a model input or output carries it, when a layer tfopt does
not know reads it (Flatten, Reshape, Concatenate, LayerNorm, a nested model ...), or when one of
its producers is skipped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

PRODUCERS = {"Conv1D", "Conv2D", "Conv3D", "Dense"}
DEPTHWISE = {"DepthwiseConv1D", "DepthwiseConv2D"}
CHANNELWISE = {
    "BatchNormalization", "Activation", "ReLU", "LeakyReLU", "ELU", "PReLU", "Dropout",
    "SpatialDropout1D", "SpatialDropout2D", "GaussianNoise", "GaussianDropout", "AlphaDropout",
    "ZeroPadding1D", "ZeroPadding2D", "Cropping1D", "Cropping2D", "MaxPooling1D", "MaxPooling2D",
    "AveragePooling1D", "AveragePooling2D", "UpSampling1D", "UpSampling2D", "Identity",
    "GlobalAveragePooling1D", "GlobalAveragePooling2D", "GlobalMaxPooling1D", "GlobalMaxPooling2D",
    "ActivityRegularization",
}  # fmt: skip
MERGES = {"Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum"}
INPUT = "InputLayer"


@dataclass
class Node:
    """One layer: its config entry (edited in place when channels go) and its inbound layers."""

    name: str
    cls: str
    config: dict[str, Any]
    inputs: list[str]


@dataclass
class Space:
    """Channels that must be removed together: the producers that write them, the channel-wise
    layers that carry them, the layers that read them as input channels."""

    id: int
    size: int = 0
    producers: list[str] = field(default_factory=list)
    members: list[str] = field(default_factory=list)
    readers: list[str] = field(default_factory=list)
    fixed: str = ""  # why the space cannot be pruned ("" if it can)


@dataclass
class Graph:
    """The layers of a model (in config order), the space of each layer's output, the spaces."""

    nodes: dict[str, Node]
    out_space: dict[str, int]
    spaces: dict[int, Space]

    def in_space(self, name: str) -> Space | None:
        """The space a layer reads (its first input's), or None for an input layer."""
        inputs = self.nodes[name].inputs
        return self.spaces[self.out_space[inputs[0]]] if inputs else None

    def prunable(self) -> list[Space]:
        return [s for s in self.spaces.values() if not s.fixed and s.producers and s.size > 1]


def _history(obj: Any, out: list[str]) -> None:
    """Inbound layer names anywhere in an `inbound_nodes` entry (tf_keras lists, Keras 3 dicts)."""
    if isinstance(obj, dict):
        if "keras_history" in obj:
            out.append(obj["keras_history"][0])
            return
        for value in obj.values():
            _history(value, out)
    elif isinstance(obj, list | tuple):
        if len(obj) >= 3 and isinstance(obj[0], str) and isinstance(obj[1], int):
            out.append(obj[0])
            return
        for item in obj:
            _history(item, out)


def read_nodes(config: dict[str, Any], sequential: bool) -> tuple[dict[str, Node], list[str]]:
    """The layers of a model config and the names of its output layers."""
    nodes: dict[str, Node] = {}
    previous: list[str] = []
    for entry in config["layers"]:
        name = entry["config"]["name"]
        if sequential:
            inputs = list(previous)
        else:
            found: list[str] = []
            _history(entry.get("inbound_nodes", []), found)
            inputs = list(dict.fromkeys(found))
            if len(entry.get("inbound_nodes", [])) > 1:  # a layer called twice: keep it whole
                inputs.append("")
        nodes[name] = Node(name, entry["class_name"], entry["config"], inputs)
        previous = [name]
    if sequential:
        return nodes, previous
    outputs: list[str] = []
    _history(config.get("output_layers", []), outputs)
    return nodes, outputs


class _Union:
    def __init__(self) -> None:
        self.parent: dict[int, int] = {}

    def add(self) -> int:
        i = len(self.parent)
        self.parent[i] = i
        return i

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def join(self, a: int, b: int) -> int:
        a, b = self.find(a), self.find(b)
        self.parent[b] = a
        return a


_ACROSS_CHANNELS = {"softmax", "log_softmax"}  # activations that mix channels


def _role(node: Node, rank: int) -> str:
    """producer, channelwise, merge, input or opaque (a layer whose channels tfopt cannot follow).
    `rank`: the rank of the layer's output."""
    c = node.config
    last = c.get("data_format") in (None, "channels_last")
    if "" in node.inputs:
        return "opaque"
    if node.cls in PRODUCERS:
        return "producer" if c.get("groups", 1) == 1 and last else "opaque"
    if node.cls in DEPTHWISE:
        return "channelwise" if c.get("depth_multiplier", 1) == 1 and last else "opaque"
    if node.cls == "BatchNormalization":
        axis = c.get("axis", -1)
        axis = axis[0] if isinstance(axis, list) and len(axis) == 1 else axis
        return "channelwise" if axis in (-1, rank - 1) else "opaque"
    if node.cls in CHANNELWISE:
        return "channelwise" if last else "opaque"
    if node.cls in MERGES:
        return "merge"
    return "input" if node.cls == INPUT else "opaque"


def build_graph(nodes: dict[str, Node], outputs: list[str], shapes: dict[str, tuple]) -> Graph:
    """Channel spaces of every layer output; `shapes`: each layer's output shape (channels last)."""
    union, out_space = _Union(), {}
    roles = {name: _role(node, len(shapes.get(name) or ())) for name, node in nodes.items()}
    fixed: dict[int, str] = {}
    for name, node in nodes.items():
        role = roles[name]
        ins = [out_space[i] for i in node.inputs if i in out_space]
        if role in ("channelwise", "merge") and ins:
            space = ins[0]
            for other in ins[1:]:
                space = union.join(space, other)
        else:
            space = union.add()
            if role != "producer":
                fixed[space] = f"{node.cls} '{name}'"
            elif node.config.get("activation") in _ACROSS_CHANNELS:
                fixed[space] = f"{node.config['activation']} of '{name}'"
        if role == "opaque":
            for i in ins:
                fixed.setdefault(i, f"read by {node.cls} '{name}'")
        out_space[name] = space
    for name in outputs:
        fixed.setdefault(out_space[name], f"model output '{name}'")
    spaces: dict[int, Space] = {}
    for name, space in out_space.items():
        root = union.find(space)
        out_space[name] = root
        s = spaces.setdefault(root, Space(root))
        if roles[name] == "producer":
            s.producers.append(name)
            s.size = int(shapes[name][-1] or 0) if shapes.get(name) else 0
        else:
            s.members.append(name)
    for space, why in fixed.items():
        spaces[union.find(space)].fixed = spaces[union.find(space)].fixed or why
    for name, node in nodes.items():
        if roles[name] == "producer" and node.inputs and node.inputs[0] in out_space:
            spaces[out_space[node.inputs[0]]].readers.append(name)
    return Graph(nodes, out_space, spaces)


def layer_macs(cls: str, config: dict[str, Any], out_shape: tuple, cin: int, cout: int) -> int:
    """Multiply-adds of one call of a Conv, depthwise conv or Dense layer with `cin` input and
    `cout` output channels; 0 for any other layer."""
    positions = math.prod(int(d) for d in out_shape[1:-1])
    if cls in PRODUCERS:
        kernel = math.prod(config.get("kernel_size", (1,)))
        return positions * kernel * cin * cout
    if cls in DEPTHWISE:
        return positions * math.prod(config.get("kernel_size", (1,))) * cout
    return 0
