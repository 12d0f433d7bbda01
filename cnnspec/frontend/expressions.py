"""Expression evaluation for `elaborate`.

Takes: a `syntax.Expr`, an environment of names, and a way to read the current
input's shape. Returns: a Python value (int, float, bool, str, None or tuple).
Raises `SpecError` (E0201 unknown name, E0211 bad arithmetic) at the expression.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

from . import syntax as S
from ..diagnostics import did_you_mean, error

CONSTANTS = {"true": True, "false": False, "none": None, "same": "same",
             "global": "global"}


def make_divisible(value, divisor=8, min_value=None):
    """Round channels to a multiple of `divisor`, never losing more than 10%.

    The rule of MobileNet/EfficientNet (torchvision's `_make_divisible`).
    """
    min_value = divisor if min_value is None else min_value
    result = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if result < 0.9 * value:
        result += divisor
    return result


def _log(value, base=None):
    return math.log(value) if base is None else math.log(value, base)


def _round(value, digits=None):
    return round(value) if digits is None else round(value, digits)


FUNCTIONS: dict[str, Callable] = {
    "min": min, "max": max, "abs": abs, "ceil": math.ceil, "floor": math.floor,
    "round": _round, "int": int, "float": float, "sqrt": math.sqrt,
    "log": _log, "exp": math.exp, "pow": pow,
    "make_divisible": make_divisible,
}

_USAGE = {
    "min": "min(a, b, ...)", "max": "max(a, b, ...)", "round": "round(x) or round(x, digits)",
    "make_divisible": "make_divisible(value, divisor=8, min_value=divisor)",
    "ceil": "ceil(x)", "floor": "floor(x)", "abs": "abs(x)", "int": "int(x)",
    "float": "float(x)", "sqrt": "sqrt(x)", "log": "log(x) or log(x, base)",
    "exp": "exp(x)", "pow": "pow(x, y)",
}

INPUT_ATTRIBUTES = {"c": 0, "h": 1, "w": 2, "channels": 0, "height": 1, "width": 2}


@dataclass(frozen=True)
class LayerRef:
    """A layer kind or block used as a value: `block b(act = relu) { act }`."""

    name: str

    def __str__(self):
        return self.name


@dataclass(frozen=True)
class TensorRef:
    """An earlier layer's output, named by its label (`enc4`): a long skip."""

    name: str
    node: int

    def __str__(self):
        return self.name


class Evaluator:
    """Evaluates expressions against `env`; `input_shape()` answers `in.c` and kin;
    `resolve(name)` gives a name no `env` entry has its meaning (a `LayerRef` or
    `TensorRef`), or None."""

    def __init__(self, env: dict, input_shape: Callable[[], tuple[int, ...]],
                 resolve: Callable[[str], object] | None = None):
        self.env = env
        self.input_shape = input_shape
        self.resolve = resolve

    def __call__(self, expr: S.Expr):
        try:
            return self._eval(expr)
        except (ArithmeticError, TypeError, ValueError) as problem:
            raise error("E0211", "this expression cannot be computed", expr.span,
                        label=_plain(problem)) from None

    def _eval(self, expr):
        kind = type(expr)
        if kind is S.Number or kind is S.String:
            return expr.value
        if kind is S.Variable:
            if expr.name in self.env:
                return self.env[expr.name]
            meaning = self.resolve(expr.name) if self.resolve else None
            if meaning is not None:
                return meaning
            raise error("E0201", f"unknown name `{expr.name}`", expr.span,
                        label="not a parameter, `let`, loop variable, layer kind, "
                        "block or earlier label here",
                        help=did_you_mean(expr.name, self.env))
        if kind is S.Constant:
            return CONSTANTS[expr.name]
        if kind is S.Binary:
            return self._binary(expr)
        if kind is S.Unary:
            value = self._eval(expr.operand)
            if expr.operator == "not":
                return not value
            _need_number(value, expr.operand)
            return -value if expr.operator == "-" else value
        if kind is S.Conditional:
            chosen = expr.then if self._eval(expr.condition) else expr.otherwise
            return self._eval(chosen)
        if kind is S.FunctionCall:
            return self._function(expr)
        if kind is S.TupleExpr:
            return tuple(self._eval(item) for item in expr.items)
        if kind is S.InputAttribute:
            return self._input_attribute(expr)
        raise AssertionError(f"unknown expression {expr!r}")

    def _binary(self, expr: S.Binary):
        op = expr.operator
        left = self._eval(expr.left)
        if op == "and":
            return left and self._eval(expr.right)
        if op == "or":
            return left or self._eval(expr.right)
        right = self._eval(expr.right)
        if op == "==":
            return left == right
        if op == "!=":
            return left != right
        _need_number(left, expr.left)
        _need_number(right, expr.right)
        if op in ("/", "//", "%") and right == 0:
            raise error("E0211", "division by zero", expr.span,
                        label=f"{_show(left)} {op} 0")
        result = _ARITHMETIC[op](left, right)
        _refuse_huge(result, expr)
        return result

    def _function(self, expr: S.FunctionCall):
        function = FUNCTIONS.get(expr.name)
        if function is None:
            raise error("E0201", f"unknown function `{expr.name}`", expr.span,
                        label="functions are " + ", ".join(sorted(FUNCTIONS)),
                        help=did_you_mean(expr.name, FUNCTIONS))
        args = [self._eval(arg) for arg in expr.args]
        for arg, value in zip(expr.args, args):
            _need_number(value, arg)
        try:
            result = function(*args)
        except TypeError:
            raise error("E0211", f"`{expr.name}` cannot take {len(args)} argument"
                        f"{'s' if len(args) != 1 else ''}", expr.span,
                        label=f"{expr.name}({', '.join(map(_show, args))})",
                        help=_USAGE.get(expr.name, "")) from None
        _refuse_huge(result, expr)
        return result

    def _input_attribute(self, expr: S.InputAttribute):
        index = INPUT_ATTRIBUTES.get(expr.attribute)
        if index is None:
            raise error("E0201", f"`in` has no attribute `{expr.attribute}`", expr.span,
                        label="use in.c, in.h or in.w",
                        help=did_you_mean(expr.attribute, INPUT_ATTRIBUTES))
        shape = self.input_shape()
        if index >= len(shape):
            raise error("E0211", f"`in.{expr.attribute}` of a flat vector", expr.span,
                        label=f"the input here is {shape[0]} values, not C x H x W")
        return shape[index]


_ARITHMETIC = {
    "+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b,
    "/": lambda a, b: a / b, "//": lambda a, b: a // b, "%": lambda a, b: a % b,
    "<": lambda a, b: a < b, "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b, ">=": lambda a, b: a >= b,
}


def _refuse_huge(result, expr) -> None:
    if isinstance(result, int) and not isinstance(result, bool) \
            and result.bit_length() > 256:
        raise error("E0211", "this number is absurdly large", expr.span,
                    label=f"about 10^{int(result.bit_length() * 0.30103)}")


def _need_number(value, expr) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise error("E0211", "a number is needed here", expr.span,
                    label=f"found {_show(value)}")


def _show(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "none"
    if isinstance(value, str):
        return f"`{value}`"
    if isinstance(value, LayerRef):
        return f"the layer kind `{value}`"
    if isinstance(value, TensorRef):
        return f"the output of `{value}`"
    return str(value)


def _plain(problem: Exception) -> str:
    text = str(problem)
    return text[:1].lower() + text[1:] if text else type(problem).__name__
