"""The IR graph: what `elaborate` returns and `check` reads.

A DAG of primitive ops with deterministic dotted names (`inception4a.branch2.1.conv`).
Nodes are stored in topological order: a node's inputs always have smaller ids, so
every pass is one forward loop. No shapes live here; `check` computes them.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

from pydantic import BaseModel, ConfigDict

from .diagnostics import Span
from .ops import Op


class Node(NamedTuple):
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
    # True inside `frozen { }`: parameters kept fixed in training.
    frozen: bool = False


class Assertion(NamedTuple):
    """`-> 64x56x56` written after a statement: the node's shape must be this."""

    node: int
    shape: tuple[int, ...]
    span: Span


class BlockArgs(NamedTuple):
    """The evaluated arguments of one block call (defaults filled in), and which of
    them the call gave; `Graph.block_args` maps each instance's path to these."""

    block: str
    values: dict
    given: frozenset


class Output(NamedTuple):
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


class Graph:
    """The elaborated network: nodes in topological order, plus what surrounds them."""

    def __init__(self, name: str, params: dict[str, object], options: Options,
                 span: Span | None = None):
        self.name = name
        self.params = params
        self.options = options
        self.span = span
        self.nodes: list[Node] = []
        self.assertions: list[Assertion] = []
        self.outputs: list[Output] = []
        self.block_args: dict[str, BlockArgs] = {}  # by block instance path
        self.recipe = None  # recipe.Recipe when the spec has a `train` section
        # Each recipe entry set -> where: "specs/x.cnn:41", or "recipe tv (...:12),
        # called at specs/x.cnn:40" for one a `train: tv(...)` call brought.
        self.recipe_sources: dict[str, str] = {}

    def add(self, **fields) -> Node:
        node = Node(len(self.nodes), **fields)
        self.nodes.append(node)
        return node

    @property
    def input(self) -> Node:
        return self.nodes[0]

    @property
    def output(self) -> Node:
        return self.nodes[self.outputs[0].node]


# Ops whose backward does not need their own output, so it may be overwritten.
_OVERWRITABLE = {"conv", "dwconv", "batchnorm", "linear", "add", "concat", "maxpool",
                 "avgpool", "adaptive_avgpool", "adaptive_maxpool"}


def user_counts(graph: Graph) -> list[int]:
    """How many inputs read each node's output (a network output counts as one)."""
    users = [0] * len(graph.nodes)
    for node in graph.nodes:
        for i in node.inputs:
            users[i] += 1
    for output in graph.outputs:
        users[output.node] += 1
    return users


def in_place_nodes(graph: Graph) -> set[int]:
    """ReLUs and adds that may overwrite their (first) input, as torchvision's
    `ReLU(inplace=True)` and `out += identity` do: the input has no other user and
    comes from an op whose backward does not read its output."""
    users = user_counts(graph)
    chosen = set()
    for node in graph.nodes:
        if node.op.op in ("relu", "add") and node.inputs:
            source = graph.nodes[node.inputs[0]]
            if users[source.id] == 1 and source.op.op in _OVERWRITABLE:
                chosen.add(node.id)
    return chosen


def block_at(node: Node, depth: int) -> tuple[str, str] | None:
    """The (path, block name) of the block instance `depth` levels out that holds
    `node`, or None when the node is nested less deep. Diagrams and summaries
    collapse by it."""
    return node.blocks[depth - 1] if len(node.blocks) >= depth else None


def ancestors(nodes: list[Node], roots: list[int]) -> set[int]:
    """The ids of `roots` and of every node they depend on."""
    seen: set[int] = set()
    stack = list(roots)
    while stack:
        current = stack.pop()
        if current not in seen:
            seen.add(current)
            stack.extend(nodes[current].inputs)
    return seen

