"""Binding a call's evaluated arguments to an op model, for `elaborate`.

Takes: a layer kind, its Pydantic model and `(Argument, value)` pairs. Returns: the
validated op. Raises `SpecError` at the argument at fault: E0203 unknown or repeated
keyword, E0205 too many positional values, E0204 a required field missing, E0206 a
value the model refuses, E0218 an ambiguous `*`.
"""

from __future__ import annotations

from functools import lru_cache

from pydantic import ValidationError

from . import ops as O
from . import syntax as S
from .diagnostics import Span, did_you_mean, error


def refuse_ambiguous_star(call: S.Call) -> None:
    """`conv 8 k=1 * 3` parses as k=3, but reads as "three convs": refuse to guess.

    Only a spaced-out `*` ending the last argument of a space-separated call is
    ambiguous; `conv c*4` and `basic(64) * 2` are not.
    """
    if call.parenthesized or not call.args:
        return
    value = call.args[-1].value
    if not (isinstance(value, S.Binary) and value.operator == "*"):
        return
    left = value.left.span
    after = left.source.line(left.end_line)[left.end_column - 1:left.end_column]
    start = value.span
    before = start.source.line(start.line)[max(start.column - 2, 0):start.column - 1]
    if after.isspace() and before != "(":
        raise error("E0218", "`*` here could multiply or repeat", value.span,
                    label="read as a multiplication of this argument",
                    help=f"to repeat the layer write `{{ {call.name} ... }} * n`; to "
                    "multiply, drop the spaces or add parentheses: `k=(1 * 3)`")


def build_op(kind: str, model, call: S.Call, values) -> object:
    """Match evaluated call arguments to an op model's fields and validate."""
    if kind in ("avgpool", "maxpool") and values and values[0][1] == "global":
        if len(values) > 1:
            raise error("E0205", f"`{kind} global` takes no other arguments",
                        values[1][0].span)
        return O.AdaptivePool(op=f"adaptive_{kind}", output_size=1)
    fields: dict = {}
    spans: dict = {}
    position = 0
    allowed, kind_is_a_field = _signature(model)
    for arg, value in values:
        if arg.name is None:
            if position >= len(model.POSITIONAL):
                names = ", ".join(model.POSITIONAL) or "nothing"
                others = [f"{f}=" for f in allowed if f not in model.POSITIONAL]
                raise error("E0205", f"too many positional arguments for `{kind}`",
                            arg.span, label=f"`{kind}` takes {names} by position",
                            help="name the others: " + ", ".join(others) if others
                            else f"`{kind}` takes no arguments")
            field = model.POSITIONAL[position]
            position += 1
        else:
            field = arg.name if arg.name in allowed else O.ALIASES.get(arg.name, arg.name)
            if field not in allowed:
                aliases = [a for a, f in O.ALIASES.items() if f in allowed]
                raise error("E0203", f"`{kind}` has no argument `{arg.name}`", arg.span,
                            label="it takes " + (", ".join(allowed) or "no arguments"),
                            help=did_you_mean(arg.name, allowed + aliases))
        if field in fields:
            raise error("E0203", f"`{field}` is given twice", arg.span)
        fields[field] = value
        spans[field] = arg.span
    if kind_is_a_field:  # one model for several kinds (relu, tanh, ...)
        fields["op"] = kind
    try:
        return model(**fields)
    except ValidationError as problem:
        raise invalid_value(kind, problem, spans, call.span) from None


@lru_cache(maxsize=None)
def _signature(model) -> tuple[list[str], bool]:
    """An op model's argument names, and whether the call's name fills its `op`."""
    fields = model.model_fields
    return [f for f in fields if f != "op"], fields["op"].is_required()


def invalid_value(what: str, problem: ValidationError, spans: dict, fallback: Span):
    """The first Pydantic complaint as a diagnostic at the argument it is about."""
    first = problem.errors()[0]
    loc = [str(part) for part in first["loc"]]
    field = loc[0] if loc else ""
    span = spans.get((field, loc[-1]) if len(loc) > 1 else field) or spans.get(field,
                                                                               fallback)
    if first["type"] == "missing":
        return error("E0204", f"`{what}` needs `{field}`", fallback,
                     label=f"`{field}` has no default")
    message = first["msg"].removeprefix("Value error, ")
    found = first.get("input")
    shown = "" if isinstance(found, dict) else f"found {_show_value(found)}: "
    if what == "option":
        subject = f"option `{field}`"
    elif what == "train":
        subject = f"`{field}` in `train`"
    else:
        subject = f"`{field}` of `{what}`" if field else f"`{what}`"
    return error("E0206", f"bad value for {subject}", span,
                 label=f"{shown}{message[:1].lower() + message[1:]}"[:160])


def _show_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "none"
    return str(value) if isinstance(value, (int, float)) else repr(value)
