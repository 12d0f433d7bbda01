"""The syntax tree: what `parse` returns and `elaborate` reads.

Plain frozen dataclasses, one per construct of the language (docs/language.md).
Every node keeps the `Span` of the text it came from, so any later stage can point
a diagnostic at the user's own line.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

from .diagnostics import Span

# ---------------------------------------------------------------- expressions


@dataclass(frozen=True, slots=True)
class Number:
    value: int | float
    span: Span


@dataclass(frozen=True, slots=True)
class String:
    value: str
    span: Span


@dataclass(frozen=True, slots=True)
class Constant:
    """`true`, `false`, `same`, `global`, `none`."""

    name: str
    span: Span


@dataclass(frozen=True, slots=True)
class Variable:
    name: str
    span: Span


@dataclass(frozen=True, slots=True)
class InputAttribute:
    """`in.c`, `in.h`, `in.w`: the shape of the value flowing into this statement."""

    attribute: str
    span: Span


@dataclass(frozen=True, slots=True)
class Unary:
    operator: str  # "-", "+", "not"
    operand: "Expr"
    span: Span


@dataclass(frozen=True, slots=True)
class Binary:
    operator: str  # + - * / // % == != < <= > >= and or
    left: "Expr"
    right: "Expr"
    span: Span


@dataclass(frozen=True, slots=True)
class Conditional:
    condition: "Expr"
    then: "Expr"
    otherwise: "Expr"
    span: Span


@dataclass(frozen=True, slots=True)
class FunctionCall:
    name: str
    args: tuple["Expr", ...]
    span: Span


@dataclass(frozen=True, slots=True)
class TupleExpr:
    items: tuple["Expr", ...]
    span: Span


Expr = Union[Number, String, Constant, Variable, InputAttribute, Unary, Binary,
             Conditional, FunctionCall, TupleExpr]

# ---------------------------------------------------------------- layer syntax


@dataclass(frozen=True, slots=True)
class Argument:
    """A call argument: positional when `name` is None."""

    name: str | None
    value: Expr
    span: Span


@dataclass(frozen=True, slots=True)
class Call:
    """`conv 64 k=3` or `basic(64, stride=2)`: a primitive op or a block."""

    name: str
    args: tuple[Argument, ...]
    span: Span
    name_span: Span


@dataclass(frozen=True, slots=True)
class Group:
    """`{ a; b }`: a sequence."""

    body: tuple["Statement", ...]
    span: Span


@dataclass(frozen=True, slots=True)
class Shortcut:
    name: str | None
    auto: bool
    body: tuple["Statement", ...]
    span: Span


@dataclass(frozen=True, slots=True)
class Residual:
    """`residual [if cond] { body } [shortcut [name:] [auto] { projection }]`."""

    condition: Expr | None
    body: tuple["Statement", ...]
    shortcut: Shortcut | None
    span: Span


@dataclass(frozen=True, slots=True)
class Join:
    """`concat|add|mean|multiply [args] { branch; branch }`: each statement a branch."""

    kind: str
    args: tuple[Argument, ...]
    body: tuple["Statement", ...]
    span: Span


@dataclass(frozen=True, slots=True)
class Dense:
    """`dense { body }`: concat of the input and the body's output (DenseNet)."""

    body: tuple["Statement", ...]
    span: Span


@dataclass(frozen=True, slots=True)
class Gate:
    """`gate { body }`: the input times the body's output (squeeze-excitation)."""

    body: tuple["Statement", ...]
    span: Span


@dataclass(frozen=True, slots=True)
class Aux:
    """`aux [weight=w] { head }`: a training-only output branching off here."""

    args: tuple[Argument, ...]
    body: tuple["Statement", ...]
    span: Span


@dataclass(frozen=True, slots=True)
class Repeat:
    """`repeat n [as i] { body }`."""

    count: Expr
    variable: str | None
    body: tuple["Statement", ...]
    span: Span


Unit = Union[Call, Group, Residual, Join, Dense, Gate, Aux, Repeat]


@dataclass(frozen=True, slots=True)
class Item:
    """One unit of a chain, optionally repeated: `basic(64) * 2`."""

    unit: Unit
    count: Expr | None
    span: Span


@dataclass(frozen=True, slots=True)
class Label:
    """`conv1:` or a template `denselayer{i + 1}:` (strings and expressions)."""

    parts: tuple[str | Expr, ...]
    span: Span


@dataclass(frozen=True, slots=True)
class LayerStatement:
    label: Label | None
    items: tuple[Item, ...]
    expected: tuple[Expr, ...] | None
    expected_span: Span | None
    span: Span


@dataclass(frozen=True, slots=True)
class InputStatement:
    dims: tuple[Expr, ...]
    span: Span


@dataclass(frozen=True, slots=True)
class OptionStatement:
    name: str
    value: Expr
    span: Span


@dataclass(frozen=True, slots=True)
class LetStatement:
    name: str
    value: Expr
    span: Span


@dataclass(frozen=True, slots=True)
class IfStatement:
    condition: Expr
    then: tuple["Statement", ...]
    otherwise: tuple["Statement", ...] | None
    span: Span


@dataclass(frozen=True, slots=True)
class TrainValue:
    """One value in a recipe entry: `sgd lr=0.01 momentum=0.9`."""

    args: tuple[Argument, ...]
    span: Span


@dataclass(frozen=True, slots=True)
class TrainEntry:
    key: str
    values: tuple[TrainValue, ...]
    span: Span


@dataclass(frozen=True, slots=True)
class TrainStatement:
    entries: tuple[TrainEntry, ...]
    span: Span


Statement = Union[LayerStatement, InputStatement, OptionStatement, LetStatement,
                  IfStatement, TrainStatement]

# ---------------------------------------------------------------- top level


@dataclass(frozen=True, slots=True)
class Parameter:
    name: str
    default: Expr | None
    span: Span


@dataclass(frozen=True, slots=True)
class Definition:
    """A `block` or a `network`: a name, parameters with defaults, a body."""

    kind: str  # "block" | "network"
    name: str
    params: tuple[Parameter, ...]
    body: tuple[Statement, ...]
    span: Span
    name_span: Span


@dataclass(frozen=True, slots=True)
class Import:
    path: str
    span: Span


@dataclass(frozen=True, slots=True)
class Module:
    """One parsed `.cnn` file."""

    file: str
    imports: tuple[Import, ...]
    blocks: tuple[Definition, ...]
    networks: tuple[Definition, ...]
