"""The syntax tree: what `parse` returns and `elaborate` reads.

Named tuples (cheap to define, so `cnnspec check` starts fast), one per construct of the language (docs/language.md).
Every node keeps the `Span` of the text it came from, so any later stage can point
a diagnostic at the user's own line.
"""

from __future__ import annotations

from typing import NamedTuple, Union

from ..diagnostics import Span

# ---------------------------------------------------------------- expressions


class Number(NamedTuple):
    value: int | float
    span: Span


class String(NamedTuple):
    value: str
    span: Span


class Constant(NamedTuple):
    """`true`, `false`, `same`, `global`, `none`."""

    name: str
    span: Span


class Variable(NamedTuple):
    name: str
    span: Span


class InputAttribute(NamedTuple):
    """`in.c`, `in.h`, `in.w`: the shape of the value flowing into this statement."""

    attribute: str
    span: Span


class Unary(NamedTuple):
    operator: str  # "-", "+", "not"
    operand: "Expr"
    span: Span


class Binary(NamedTuple):
    operator: str  # + - * / // % == != < <= > >= and or
    left: "Expr"
    right: "Expr"
    span: Span


class Conditional(NamedTuple):
    condition: "Expr"
    then: "Expr"
    otherwise: "Expr"
    span: Span


class FunctionCall(NamedTuple):
    name: str
    args: tuple["Expr", ...]
    span: Span


class TupleExpr(NamedTuple):
    items: tuple["Expr", ...]
    span: Span


Expr = Union[Number, String, Constant, Variable, InputAttribute, Unary, Binary,
             Conditional, FunctionCall, TupleExpr]

# ---------------------------------------------------------------- layer syntax


class Argument(NamedTuple):
    """A call argument: positional when `name` is None."""

    name: str | None
    value: Expr
    span: Span


class Call(NamedTuple):
    """`conv 64 k=3` or `basic(64, stride=2)`: a primitive op or a block."""

    name: str
    args: tuple[Argument, ...]
    span: Span
    name_span: Span
    parenthesized: bool = False


class Group(NamedTuple):
    """`{ a; b }`: a sequence."""

    body: tuple["Statement", ...]
    span: Span


class Shortcut(NamedTuple):
    name: str | None
    auto: bool
    body: tuple["Statement", ...]
    span: Span
    condition: "Expr | None" = None  # `shortcut if cond { ... }`


class Residual(NamedTuple):
    """`residual [if cond] { body } [shortcut [name:] [auto | if cond] { projection }]`."""

    condition: Expr | None
    body: tuple["Statement", ...]
    shortcut: Shortcut | None
    span: Span


class Join(NamedTuple):
    """`concat|add|mean|multiply [args] { branch; branch }`: each statement a branch."""

    kind: str
    args: tuple[Argument, ...]
    body: tuple["Statement", ...]
    span: Span


class Dense(NamedTuple):
    """`dense { body }`: concat of the input and the body's output (DenseNet)."""

    body: tuple["Statement", ...]
    span: Span


class Gate(NamedTuple):
    """`gate { body }`: the input times the body's output (squeeze-excitation)."""

    body: tuple["Statement", ...]
    span: Span


class Aux(NamedTuple):
    """`aux [weight=w] { head }`: a training-only output branching off here."""

    args: tuple[Argument, ...]
    body: tuple["Statement", ...]
    span: Span


class Repeat(NamedTuple):
    """`repeat n [as i] { body }`."""

    count: Expr
    variable: str | None
    body: tuple["Statement", ...]
    span: Span


class Frozen(NamedTuple):
    """`frozen { body }`: layers whose parameters are not trained (transfer learning)."""

    body: tuple["Statement", ...]
    span: Span


class Fractal(NamedTuple):
    """`fractal columns=C [drop_path=p] [global_drop_path=g] { unit }`: FractalNet's
    block, C columns of the unit joined by element-wise means (Larsson et al. 2017)."""

    args: tuple[Argument, ...]
    body: tuple["Statement", ...]
    span: Span


Unit = Union[Call, Group, Residual, Join, Dense, Gate, Aux, Repeat, Frozen, Fractal]


class Item(NamedTuple):
    """One unit of a chain, optionally repeated: `basic(64) * 2`."""

    unit: Unit
    count: Expr | None
    span: Span


class Label(NamedTuple):
    """`conv1:` or a template `denselayer{i + 1}:` (strings and expressions)."""

    parts: tuple[str | Expr, ...]
    span: Span


class LayerStatement(NamedTuple):
    label: Label | None
    items: tuple[Item, ...]
    expected: tuple[Expr, ...] | None
    expected_span: Span | None
    span: Span


class InputStatement(NamedTuple):
    dims: tuple[Expr, ...]
    span: Span


class OptionStatement(NamedTuple):
    name: str
    value: Expr
    span: Span


class LetStatement(NamedTuple):
    name: str
    value: Expr
    span: Span


class AssertStatement(NamedTuple):
    """`assert cond, "message"`: elaboration stops with the message when cond is false."""

    condition: Expr
    message: str | None
    span: Span


class IfStatement(NamedTuple):
    condition: Expr
    then: tuple["Statement", ...]
    otherwise: tuple["Statement", ...] | None
    span: Span


class TrainValue(NamedTuple):
    """One value in a recipe entry: `sgd lr=0.01 momentum=0.9`."""

    args: tuple[Argument, ...]
    span: Span


class TrainEntry(NamedTuple):
    """`key: value, value ...`. A value's keyword may be a quoted layer pattern:
    `lr_mult: "layer4.*"=0.1` (the Argument's name is the pattern, quotes removed)."""

    key: str
    values: tuple[TrainValue, ...]
    span: Span


class TrainStatement(NamedTuple):
    entries: tuple[TrainEntry, ...]
    span: Span


class TrainCall(NamedTuple):
    """`train: torchvision_v2(lr = 0.5)`: apply a `recipe` here (in a network, or at
    the start of another recipe that extends it)."""

    name: str
    args: tuple[Argument, ...]
    span: Span
    name_span: Span


Statement = Union[LayerStatement, InputStatement, OptionStatement, LetStatement,
                  IfStatement, AssertStatement, TrainStatement, TrainCall]

# ---------------------------------------------------------------- top level


class Parameter(NamedTuple):
    name: str
    default: Expr | None
    span: Span


class Definition(NamedTuple):
    """A `block`, a `network` or a `recipe`: a name, parameters with defaults, a
    body (a recipe's: its `TrainEntry`s and `TrainCall`s in order)."""

    kind: str  # "block" | "network" | "recipe"
    name: str
    params: tuple[Parameter, ...]
    body: tuple[Statement, ...]
    span: Span
    name_span: Span


class Import(NamedTuple):
    path: str
    span: Span


class Module(NamedTuple):
    """One parsed `.cnn` file."""

    file: str
    imports: tuple[Import, ...]
    blocks: tuple[Definition, ...]
    networks: tuple[Definition, ...]
    recipes: tuple[Definition, ...] = ()
