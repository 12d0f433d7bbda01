"""The IR graph: what `elaborate` returns and `check` reads.

A DAG of primitive ops with deterministic dotted names (`inception4a.branch2.1.conv`).
Nodes are stored in topological order: a node's inputs always have smaller ids, so
every pass is one forward loop. No shapes live here; `check` computes them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel, ConfigDict

from .diagnostics import Span
from .ops import Op


@dataclass(frozen=True, slots=True)
class Node:
    id: int
    name: str
    op: Op
    inputs: tuple[int, ...]
    span: Span
    # Block instances this node sits in, outermost first: (path, block name).
    blocks: tuple[tuple[str, str], ...] = ()
    # Call sites of those blocks, for "called from" notes in diagnostics.
    calls: tuple[Span, ...] = ()
    # True inside an auxiliary head: present in training, absent in inference.
    training_only: bool = False


@dataclass(frozen=True, slots=True)
class Assertion:
    """`-> 64x56x56` written after a statement: the node's shape must be this."""

    node: int
    shape: tuple[int, ...]
    span: Span


@dataclass(frozen=True, slots=True)
class Output:
    name: str  # "main" or the auxiliary head's name
    node: int
    weight: float = 1.0  # loss weight (GoogLeNet: 0.3 for each auxiliary head)


class Options(BaseModel):
    """Network-level `option name = value` settings."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    # strict: a window that leaves real input pixels unseen (beyond the gaps its
    # stride leaves anyway) is an error; floor: floor silently, like PyTorch;
    # exact: every output size must divide exactly.
    sizes: Literal["strict", "floor", "exact"] = "strict"
    bytes_per_element: Literal[1, 2, 4, 8] = 4


@dataclass(slots=True)
class Graph:
    name: str
    params: dict[str, object]
    options: Options
    nodes: list[Node] = field(default_factory=list)
    assertions: list[Assertion] = field(default_factory=list)
    outputs: list[Output] = field(default_factory=list)
    recipe: object | None = None  # recipe.Recipe when the spec has a `train` section
    span: Span | None = None

    def add(self, **fields) -> Node:
        node = Node(id=len(self.nodes), **fields)
        self.nodes.append(node)
        return node

    @property
    def input(self) -> Node:
        return self.nodes[0]

    @property
    def output(self) -> Node:
        return self.nodes[self.outputs[0].node]
