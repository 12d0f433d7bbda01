"""Explain's data: the models an explanation is made of, and numbers as formula text.

Takes: nothing of a spec; the other explain modules build these. Gives: `Quantity`
(one number, its formula and rule), `Record` (one layer, block or the totals),
`Share`, `Explanation` (what `explain.explain` returns), `UnknownLayer` (the error
for a name that is not in the network), the text helpers `number`, `value_text`
and `rounded`, and `evaluate` (a formula's value, nothing executed). `explain`
re-exports all of them, and `summary.human_bytes`. Imports neither torch nor rich.
"""

from __future__ import annotations

import ast
import math
import operator
from dataclasses import dataclass
from fractions import Fraction
from typing import Literal

from pydantic import BaseModel, ConfigDict

SHAPE_KEYS = ("channels", "height", "width")  # the output shape's dimensions, in order
LIMIT = 100  # the terminal names a longer sum by its number of terms


@dataclass(frozen=True, slots=True)
class Quantity:
    """One number and how it is computed: `formula` evaluates to `value`. (A dataclass,
    not a model: a large network's explanation holds some 10,000 of them; the models
    below still validate and serialize it.)"""

    # channels | height | width (the output shape) | params | weights (params without
    # biases) | macs | values | bytes (activation memory) | rf_h | rf_w | jump_h | jump_w
    key: str
    formula: str  # the arithmetic with the numbers substituted: "11*11*3*96 + 96"
    value: int | float
    rule: str = ""  # the same in symbols: "k_h*k_w*c_in*c_out + c_out"
    note: str = ""


def bytes_quantity(values: int, size: int) -> Quantity:
    """The activation memory of `values` values, `size` bytes each."""
    return Quantity("bytes", f"{values}*{size}", values * size,
                    "values*bytes_per_element", f"{size} bytes per value")


class Record(BaseModel):
    """One layer, or one block (`kind="block"`: the sums of its `members`), or the
    network's totals (`kind="total"`: eval mode, as `summary` totals them)."""

    model_config = ConfigDict(frozen=True)
    name: str
    op: str  # the layer's label (`conv 11x11/4, 96`) or the block's name
    kind: Literal["layer", "block", "total"] = "layer"
    output_shape: list[int]
    quantities: list[Quantity]
    members: list[str] = []
    receptive_field_global: bool = False
    training_only: bool = False
    frozen: bool = False

    def get(self, key: str) -> Quantity | None:
        return next((q for q in self.quantities if q.key == key), None)

    def value(self, key: str, default=0):
        quantity = self.get(key)
        return default if quantity is None else quantity.value

    @property
    def params(self) -> int:
        return self.value("params")

    @property
    def macs(self) -> int:
        return self.value("macs")

    @property
    def activation_bytes(self) -> int:
        return self.value("bytes")

    @property
    def receptive_field(self) -> tuple:
        return (self.value("rf_h", None), self.value("rf_w", None))

    @property
    def jump(self) -> tuple:
        return (self.value("jump_h", None), self.value("jump_w", None))


class Share(BaseModel):
    model_config = ConfigDict(frozen=True)
    label: str
    value: int
    share: float  # of the total, 0..1


class Explanation(BaseModel):
    """What `Spec.explain` returns: the records, and for a whole network its totals
    and where the parameters and the memory are."""

    model_config = ConfigDict(frozen=True)
    network: str
    input_shape: list[int]
    bytes_per_element: int
    depth: int | None = None
    records: list[Record]
    totals: Record | None = None  # only when the whole network is explained
    param_shares: list[Share] = []  # parameters by layer kind (conv, linear, ...)
    memory_shares: list[Share] = []  # eval-mode activation values by output size
    memory_half: str = ""  # "the first 5 of 38 layers (through `features.4`)"

    def __getitem__(self, name: str) -> Record:
        for record in self.records:
            if record.name == name:
                return record
        raise KeyError(name)


class UnknownLayer(KeyError):
    """A name that is neither a layer nor a block (or group) of the network."""

    def __init__(self, name: str, network: str, close: list[str]):
        super().__init__(name)
        self.name, self.network, self.close = name, network, close

    def __str__(self) -> str:
        text = f"no layer or block `{self.name}` in {self.network}"
        if self.close:
            return text + "; did you mean " + ", ".join(f"`{c}`" for c in self.close) + "?"
        return text + " (`cnnspec summary` lists the layers)"


# ---------------------------------------------------------------- numbers as text


def number(x) -> str:
    """A number as formula text: 4, 0.5, (1/3) for a fraction with a long decimal."""
    if isinstance(x, float):
        if x.is_integer():
            return str(int(x))
        text = repr(x)
        if len(text) > 8:
            fraction = Fraction(x).limit_denominator(1 << 20)
            if fraction.numerator / fraction.denominator == x:
                return f"({fraction.numerator}/{fraction.denominator})"
        return text
    return str(x)


def value_text(x) -> str:
    """34944 -> '34,944'; 0.5 -> '0.5'."""
    if isinstance(x, float) and not x.is_integer():
        return f"{x:g}"
    return f"{int(x):,}"


def rounded(count: int) -> str:
    """The lecture's shorthand: 3211264 -> 3.2M, 802816 -> 800K, 150528 -> 150K."""
    for factor, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "K")):
        if count >= factor:
            scaled = count / factor
            return f"{round(scaled, 1 - math.floor(math.log10(scaled))):g}{suffix}"
    return str(count)


_OPERATORS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
              ast.Div: operator.truediv, ast.FloorDiv: operator.floordiv,
              ast.Mod: operator.mod}
_FUNCTIONS = {"max": max, "min": min, "ceil": math.ceil, "floor": math.floor}


def evaluate(formula: str):
    """The value of a formula's arithmetic: numbers, + - * / // %, parentheses and
    max, min, ceil, floor. Anything else raises ValueError (nothing is executed)."""

    def walk(node):
        if isinstance(node, ast.Expression):
            return walk(node.body)
        if isinstance(node, ast.Constant) and type(node.value) in (int, float):
            return node.value
        if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
            chain = []  # a long sum nests to the left: fold it without recursing
            while isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
                chain.append((node.op, node.right))
                node = node.left
            value = walk(node)
            for op, right in reversed(chain):
                value = _OPERATORS[type(op)](value, walk(right))
            return value
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            value = walk(node.operand)
            return -value if isinstance(node.op, ast.USub) else value
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                and node.func.id in _FUNCTIONS and not node.keywords and node.args):
            args = [walk(a) for a in node.args]
            function = _FUNCTIONS[node.func.id]
            return function(args) if node.func.id in ("max", "min") else function(*args)
        raise ValueError(f"not plain arithmetic: {ast.dump(node)[:60]}")

    return walk(ast.parse(formula, mode="eval"))

