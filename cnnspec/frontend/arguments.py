"""Binding a call's evaluated arguments to an op model, for `elaborate`.

Takes: a layer kind, its Pydantic model and `(Argument, value)` pairs. Returns: the
validated op. Raises `SpecError` at the argument at fault: E0203 unknown or repeated
keyword, E0205 too many positional values, E0204 a required field missing, E0206 a
value the model refuses, E0218 an ambiguous `*`.
"""

from __future__ import annotations

from functools import lru_cache

from pydantic import ValidationError

from .. import ops as O
from . import syntax as S
from ..diagnostics import Span, did_you_mean, error


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
        raise invalid_value(kind, problem, spans, call.span, model) from None


@lru_cache(maxsize=None)
def _signature(model) -> tuple[list[str], bool]:
    """An op model's argument names, and whether the call's name fills its `op`."""
    fields = model.model_fields
    return [f for f in fields if f != "op"], fields["op"].is_required()


def invalid_value(what: str, problem: ValidationError, spans: dict, fallback: Span,
                  model=None):
    """The first Pydantic complaint as a diagnostic at the argument it is about, in
    plain words where `model` (the validated class) says what the value must be:
    "`kernel_size` must be a whole number >= 1 (or a pair of them), found 2.5"."""
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
    plain = _plain_words(model or _model_for(problem.title), first)
    if plain is not None:
        message, shown = plain, ""
    if what == "option":
        subject = f"option `{field}`"
    elif what == "train":
        subject = f"`{field}` in `train`"
    else:
        subject = f"`{field}` of `{what}`" if field else f"`{what}`"
    return error("E0206", f"bad value for {subject}", span,
                 label=f"{shown}{message[:1].lower() + message[1:]}"[:240])


# Pydantic error types about a value's kind or range: rewritten in plain words from
# the field's declared type. Others (a model's own check, "groups=4 must divide
# out_channels=6") keep their message.
_PLAIN_TYPES = {
    "int_type", "int_from_float", "int_parsing", "float_type", "float_parsing",
    "finite_number", "bool_type", "bool_parsing", "greater_than", "greater_than_equal",
    "less_than", "less_than_equal", "tuple_type", "too_long", "too_short",
    "literal_error", "string_type", "union_tag_invalid", "union_tag_not_found",
    "model_type", "model_attributes_type", "dict_type"}


def _model_for(title: str):
    """The layer op a ValidationError is about, by its class name (the callers that
    validate network options or the `train` recipe pass their model)."""
    return next((m for m in O.LAYER_MODELS.values() if m.__name__ == title), None)


def _plain_words(model, first: dict) -> str | None:
    """"`kernel_size` must be a whole number >= 1 (or a pair of them), found 2.5"
    for a Pydantic error on `model`; None when it is not one to rewrite."""
    if first["type"] not in _PLAIN_TYPES or model is None:
        return None
    if first["type"] in ("union_tag_invalid", "union_tag_not_found"):
        context = first.get("ctx") or {}
        tags = [t.strip(" '") for t in str(context.get("expected_tags", "")).split(",")]
        name = context.get("discriminator", "'kind'").strip("'")
        found = context.get("tag")
        if found is None:
            return f"`{name}` must be {_choice(tags)}"
        return f"{_show_value(found)} is not a `{name}`: {_choice(tags)}"
    located = _field_at(model, first["loc"])
    if located is None:
        return None
    name, annotation, metadata = located
    wanted = _describe(annotation, metadata)
    if wanted is None:
        return None
    found = first.get("input")
    if first["type"] == "literal_error" and wanted.count(",") >= 3:
        return f"{_show_value(found)} is not a `{name}`: {wanted}"
    shown = "" if isinstance(found, dict) else f", found {_show_value(found)}"
    return f"`{name}` must be {wanted}{shown}"


def _field_at(model, loc) -> tuple[str, object, list] | None:
    """(name, annotation, metadata) of the deepest named field on an error's path:
    through optional values, tuples (an index) and tagged unions (the tag)."""
    import typing

    from pydantic import BaseModel

    found = None
    annotation: object = model
    for part in loc:
        annotation, _ = _unwrapped(annotation)
        while _is_union(annotation):
            members = [_unwrapped(m)[0] for m in typing.get_args(annotation)
                       if m is not type(None)]
            if len(members) > 1:
                break
            annotation = members[0]
        if _is_union(annotation):
            chosen = [m for m in members if isinstance(m, type)
                      and issubclass(m, BaseModel) and _has_tag(m, part)]
            if not chosen:
                break
            annotation = chosen[0]
            continue
        if isinstance(part, str) and isinstance(annotation, type) \
                and issubclass(annotation, BaseModel) and part in annotation.model_fields:
            info = annotation.model_fields[part]
            found = (part, info.annotation, list(info.metadata))
            annotation = info.annotation
        elif isinstance(part, int) and typing.get_origin(annotation) is tuple:
            args = typing.get_args(annotation)
            if len(args) == 2 and args[1] is Ellipsis:
                annotation = args[0]
            elif found is not None:  # a pair's element: describe the whole pair
                break
            else:
                return None
        else:
            break
    return found


def _is_union(annotation) -> bool:
    import types
    import typing

    return typing.get_origin(annotation) in (typing.Union, types.UnionType)


def _has_tag(model, tag) -> bool:
    import typing

    for field in ("kind", "op"):
        info = model.model_fields.get(field)
        if info is not None and tag in typing.get_args(info.annotation):
            return True
    return False


def _unwrapped(annotation) -> tuple[object, list]:
    """Annotated[X, ...] -> (X, its constraints), nested Annotated flattened."""
    import typing

    metadata: list = []
    while typing.get_origin(annotation) is typing.Annotated:
        annotation, *extra = typing.get_args(annotation)
        for item in extra:
            metadata.extend(getattr(item, "metadata", None) or [item])
    return annotation, metadata


def _describe(annotation, metadata: list) -> str | None:
    """What a value of this type must be, in words: "a whole number >= 1",
    "a number from 0 to 1", "`strict`, `floor` or `exact`", "true or false"."""
    import typing

    inner, more = _unwrapped(annotation)
    metadata = list(metadata) + more
    origin = typing.get_origin(inner)
    if _is_union(inner):
        options = [m for m in typing.get_args(inner) if m is not type(None)]
        words = [_describe(option, []) for option in options]
        if None in words:
            return None
        if len(words) == 1:
            return _describe(options[0], metadata)
        return ", ".join(words[:-1]) + " or " + words[-1]
    if origin is typing.Literal:
        return _choice(list(typing.get_args(inner)))
    if inner is bool:
        return "true or false"
    if inner is int or inner is float:
        return ("a whole number" if inner is int else "a number") + _bounds(metadata)
    if inner is str:
        return "a word in quotes"
    if origin is tuple:
        args = typing.get_args(inner)
        pair = any(getattr(getattr(m, "func", None), "__name__", "") == "_pair"
                   for m in metadata)
        if len(args) == 2 and args[1] is Ellipsis:
            each = _describe(args[0], [])
            return None if each is None else f"a list of values, each {each}"
        words = [_describe(a, []) for a in args]
        if words and None not in words and len(set(words)) == 1:
            each = words[0]
            if pair:
                return f"{each} (or a pair of them)"
            return f"{len(args)} values, each {each}"
    return None


def _bounds(metadata: list) -> str:
    limits = {}
    for item in metadata:
        for key in ("ge", "gt", "le", "lt"):
            value = getattr(item, key, None)
            if value is not None:
                limits[key] = value
    low = ("ge", limits["ge"]) if "ge" in limits else ("gt", limits["gt"]) \
        if "gt" in limits else None
    high = ("le", limits["le"]) if "le" in limits else ("lt", limits["lt"]) \
        if "lt" in limits else None
    if low and high and low[0] == "ge" and high[0] == "le":
        return f" from {_number(low[1])} to {_number(high[1])}"
    symbols = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}
    parts = [f"{symbols[limit[0]]} {_number(limit[1])}" for limit in (low, high) if limit]
    return (" " + " and ".join(parts)) if parts else ""


def _number(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _choice(values: list) -> str:
    words = [f"`{v}`" if isinstance(v, str) else _show_value(v) for v in values]
    if len(words) == 1:
        return words[0]
    return "one of " + ", ".join(words[:-1]) + " or " + words[-1]


def _show_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "none"
    return str(value) if isinstance(value, (int, float)) else repr(value)
