"""The document outline: `Analysis` -> a tree of `Symbol`s.

Takes: an `analysis.Analysis`. Returns: one `Symbol` per network, block and
training recipe (a recipe's children are its entries); a network's or block's
children are its layer statements in order: labelled or not, with the statements of
groups and constructs (`residual`, `concat`, `repeat`, ...) and of named shortcuts
nested under them; an `if`'s statements stand in its place. A statement of a
checked network carries its output shape in `detail`.
"""

from __future__ import annotations

from typing import NamedTuple

from ..frontend import syntax as S
from ..frontend.check import shape_text
from .analysis import Analysis, Range, signature, source_text, span_range


class Symbol(NamedTuple):
    name: str
    kind: str  # network | block | recipe | group | layer | entry
    detail: str
    range: Range
    selection_range: Range
    children: tuple[Symbol, ...] = ()


def symbols(analysis: Analysis) -> list[Symbol]:
    module = analysis.module
    if module is None:
        return []
    definitions = sorted(module.blocks + module.networks + module.recipes,
                         key=lambda d: (d.span.line, d.span.column))
    return [Symbol(d.name, d.kind, signature(d), span_range(d.span),
                   span_range(d.name_span),
                   _entries(d.body) if d.kind == "recipe" else
                   _body(analysis, d.body, d.name if d.kind == "network" else None))
            for d in definitions]


def _entries(body) -> tuple[Symbol, ...]:
    """A recipe's entries (`optimizer`, `augment`, ...) and the recipes it calls."""
    found = []
    for statement in body:
        if type(statement) is S.TrainEntry:
            found.append(Symbol(statement.key, "entry", _short(source_text(statement.span)),
                                span_range(statement.span), span_range(statement.span)))
        elif type(statement) is S.TrainCall:
            found.append(Symbol(f"train: {statement.name}", "entry", "",
                                span_range(statement.span),
                                span_range(statement.name_span)))
    return tuple(found)


def _body(analysis: Analysis, body, network: str | None) -> tuple[Symbol, ...]:
    found: list[Symbol] = []
    for statement in body:
        if type(statement) is S.IfStatement:
            found += _body(analysis, statement.then + (statement.otherwise or ()), network)
        elif type(statement) is S.LayerStatement:
            found.append(_layer(analysis, statement, network))
    return tuple(found)


def _layer(analysis: Analysis, statement: S.LayerStatement, network) -> Symbol:
    inner: list[Symbol] = []
    for item in statement.items:
        inner += _unit(analysis, item.unit, network)
    head = ", ".join(_short(source_text(item.span)) for item in statement.items)
    if statement.label is not None:
        name, selection, detail = source_text(statement.label.span), statement.label.span, head
    else:
        name, selection, detail = head, statement.items[0].span, ""
    if network is not None:
        made = analysis.nodes_in(statement.span, network)
        if made:
            spec, last = made[-1]
            shape = shape_text(spec.table[last.id].shape)
            detail = f"{detail} -> {shape}" if detail else f"-> {shape}"
    return Symbol(name, "group" if inner else "layer", detail, span_range(statement.span),
                  span_range(selection), tuple(inner))


def _unit(analysis: Analysis, unit, network) -> list[Symbol]:
    kind = type(unit)
    if kind is S.Call:
        return []
    if kind is S.Residual:
        found = list(_body(analysis, unit.body, network))
        shortcut = unit.shortcut
        if shortcut is not None and shortcut.name:
            found.append(Symbol(shortcut.name, "group", "shortcut", span_range(shortcut.span),
                                span_range(shortcut.span),
                                _body(analysis, shortcut.body, network)))
        elif shortcut is not None:
            found += _body(analysis, shortcut.body, network)
        return found
    return list(_body(analysis, unit.body, network))


def _short(text: str) -> str:
    """A construct's head: `residual`, `repeat 3`, `concat`; a call as written."""
    first = text.split("\n", 1)[0].split("{", 1)[0].strip() or "{ }"
    first = " ".join(first.split())
    return first if len(first) <= 60 else first[:57] + "..."
