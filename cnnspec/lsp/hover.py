"""Hover text and go-to-definition: (`Analysis`, position) -> markdown or a location.

Takes: an `analysis.Analysis` and a 0-based (line, character) in code points.
Returns: for `hover`, markdown: on a layer statement or block call, what the checker
proved there (output shape, parameters, MACs, receptive field) with explain's
arithmetic for a single layer; on a block's name, its signature and doc comment; on
a layer kind, its arguments. For `definition`, a `Location`: a block call's
definition (imported files too), an import's file, a parameter, `let` or label.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from .. import ops as O
from ..frontend import syntax as S
from ..frontend.check import shape_text
from ..analyses.explain.render import lines as explain_lines
from ..analyses.summary import rf_text
from .analysis import (
    Analysis,
    Range,
    children,
    contains,
    doc_comment,
    path_at,
    signature,
    source_text,
    span_range,
)

ROWS = 12  # layers or instances listed in one hover before "and N more"

# Syntax that makes layers: the regions hover sums facts over, innermost first.
_REGIONS = (S.Call, S.Item, S.LayerStatement, S.InputStatement, S.Group, S.Residual,
            S.Shortcut, S.Join, S.Dense, S.Gate, S.Aux, S.Repeat, S.Frozen, S.Fractal)


class Location(NamedTuple):
    path: str
    range: Range
    text: str  # the target file's text, to convert the range to the client's units


def hover(analysis: Analysis, line: int, character: int, *,
          compute: bool = True) -> str | None:
    """Markdown for the position, or None; `compute=False` leaves explain's arithmetic
    out unless it is made already (the server never explains on its event loop)."""
    path = path_at(analysis.module, line, character)
    if not path:
        target = _import_at(analysis, line, character)
        return f"imports `{target}`" if target else None
    definition = path[0]
    if contains(definition.name_span, line, character, end_inclusive=True):
        return _definition_card(analysis, definition)
    parts = []
    facts = _facts_at(analysis, path, compute)
    if facts:
        parts.append(facts)
    call = _call_named_at(path, line, character)
    if call is not None:
        block = analysis.blocks.get(call.name)
        if block is not None:
            parts.append(block_card(block))
        elif O.LAYER_SYNONYMS.get(call.name, call.name) in O.LAYER_MODELS:
            parts.append(f"```text\n{layer_signature(call.name)}\n```")
    return "\n\n---\n\n".join(parts) or None


def _call_named_at(path: list, line: int, character: int) -> S.Call | None:
    for node in reversed(path):
        if type(node) is S.Call and contains(node.name_span, line, character,
                                             end_inclusive=True):
            return node
    return None


def _import_at(analysis: Analysis, line: int, character: int) -> str | None:
    for imported, target in analysis.imports:
        if contains(imported.span, line, character, end_inclusive=True):
            return target
    return None


# ---------------------------------------------------------------- facts


def _facts_at(analysis: Analysis, path: list, compute: bool) -> str:
    """The facts of the innermost region around the position that made layers."""
    definition = path[0]
    network = definition.name if definition.kind == "network" else None
    for depth in range(len(path) - 1, 0, -1):
        node = path[depth]
        if isinstance(node, _REGIONS):
            made = analysis.nodes_in(node.span, network)
            if made:
                statement = next((s for s in reversed(path[:depth + 1])
                                  if type(s) is S.LayerStatement), None)
                return _facts_card(analysis, _title(node, statement), made, definition,
                                   compute)
    return ""


def _title(region, statement: S.LayerStatement | None) -> str:
    """The statement's label, and which item of a chain the region is."""
    text = " ".join(source_text(region.span).split())
    text = text if len(text) <= 60 else text[:57] + "..."
    if statement is None or statement.label is None:
        return text
    label = source_text(statement.label.span)
    if region is statement or len(statement.items) == 1:
        return label
    return f"{label}: {text}"


def _instances(made, definition: S.Definition) -> dict[str, list]:
    """The nodes grouped by the instance that made them: one group in a network;
    in a block, one per call of the block (`layer1.0`, `layer1.1`, ...)."""
    groups: dict[str, list] = {}
    several = len({spec.name for spec, _ in made}) > 1
    for spec, node in made:
        key = spec.name
        if definition.kind == "block":
            key = next((p for p, b in reversed(node.blocks) if b == definition.name), key)
            key = f"{spec.name}: {key}" if several else key
        groups.setdefault(key, []).append((spec, node))
    return groups


def _facts_card(analysis: Analysis, title: str, made, definition, compute: bool) -> str:
    groups = _instances(made, definition)
    title = f"**{title}**"
    if len(groups) > 1:
        rows = [_instance_row(key, nodes) for key, nodes in list(groups.items())[:ROWS]]
        more = len(groups) - ROWS
        return (f"{title}: {len(groups)} instances of block `{definition.name}`\n\n"
                + _code(_aligned(rows) + ([f"... and {more} more"] if more > 0 else [])))
    spec, last = made[-1]
    facts = spec.table[last.id]
    params = sum(spec.table[n.id].params for _, n in made)
    macs = sum(spec.table[n.id].macs for _, n in made)
    if len(made) == 1:
        title += f" `{last.op.label()}`"
    else:
        title += f": {len(made)} layers"
    bullets = [f"- output: `{shape_text(facts.shape)}`", f"- params: {params:,}",
               f"- MACs: {macs:,}", f"- receptive field: {rf_text(facts.receptive_field, facts.whole)}"]
    text = title + "\n\n" + "\n".join(bullets)
    if len(made) == 1:
        record = analysis.records(spec, compute).get(last.name)
        if record is not None:
            rows = [(label, arithmetic) for label, arithmetic, _ in
                    explain_lines(record, spec.graph.options.bytes_per_element)]
            text += "\n\n" + _code(_aligned(rows))
    else:
        rows = [_layer_row(spec, n) for _, n in made[:ROWS]]
        more = [f"... and {len(made) - ROWS} more layers"] if len(made) > ROWS else []
        text += "\n\n" + _code(_aligned(rows) + more)
    return text


def _layer_row(spec, node) -> tuple[str, ...]:
    facts = spec.table[node.id]
    return (node.name, node.op.label(), shape_text(facts.shape), _count(facts.params))


def _instance_row(key: str, nodes) -> tuple[str, ...]:
    spec, last = nodes[-1]
    if len(nodes) == 1:
        return _layer_row(spec, last)
    params = sum(spec.table[n.id].params for _, n in nodes)
    return (key, f"{len(nodes)} layers", shape_text(spec.table[last.id].shape),
            _count(params))


def _count(value: int) -> str:
    return f"{value:,} params" if value else ""


def _aligned(rows) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip()
            for row in rows]


def _code(lines: list[str]) -> str:
    return "```text\n" + "\n".join(lines) + "\n```"


# ---------------------------------------------------------------- cards


def block_card(block: S.Definition) -> str:
    """A block's signature, doc comment and where it is defined."""
    return f"```cnn\n{signature(block)}\n```\n\n{block_doc(block)}"


def block_doc(block: S.Definition) -> str:
    """A block's doc comment (if any) and where it is defined, as markdown."""
    where = f"*defined in `{Path(block.span.file).name}:{block.name_span.line}`*"
    comment = doc_comment(block)
    return f"{comment}\n\n{where}" if comment else where


def _definition_card(analysis: Analysis, definition: S.Definition) -> str:
    card = block_card(definition)
    spec = next((s for s in analysis.specs if s.name == definition.name), None)
    if definition.kind == "network" and spec is not None:
        card += (f"\n\n- input: `{shape_text(spec.input_shape)}`, output: "
                 f"`{shape_text(spec.output_shape)}`\n- params: {spec.params:,}\n"
                 f"- MACs: {spec.macs:,} per image\n- layers: {len(spec.graph.nodes) - 1:,}")
    return card


def layer_signature(kind: str) -> str:
    """`conv out_channels kernel_size=1 stride=1 ... (k=kernel_size, s=stride, ...)`."""
    model = O.LAYER_MODELS[O.LAYER_SYNONYMS.get(kind, kind)]
    parts = []
    for name, info in model.model_fields.items():
        if name == "op":
            continue
        parts.append(name if info.is_required() else f"{name}={value_text(info.default)}")
    text = f"{kind} " + " ".join(parts) if parts else f"{kind}   (no arguments)"
    if model.POSITIONAL:
        text += f"\npositional: {', '.join(model.POSITIONAL)}"
    aliases = [f"{a}={f}" for a, f in O.ALIASES.items() if f in model.model_fields]
    if aliases:
        text += f"\nshort names: {', '.join(aliases)}"
    return text


def value_text(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "none"
    if isinstance(value, tuple) and len(value) == 2 and value[0] == value[1]:
        return str(value[0])
    return str(value).replace(" ", "")


# ---------------------------------------------------------------- definition


def definition(analysis: Analysis, line: int, character: int) -> Location | None:
    """Where the name at the position is defined."""
    target = _import_at(analysis, line, character)
    if target is not None:
        try:
            text = Path(target).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            return None
        return Location(target, Range(0, 0, 0, 0), text)
    path = path_at(analysis.module, line, character)
    if not path:
        return None
    name = _name_at(path, line, character)
    if name is None:
        return None
    block = analysis.blocks.get(name)
    if block is not None and type(path[-1]) is not S.Variable:
        return _at(block.name_span)
    return _local(path[0], name, path[-1].span)


def _name_at(path: list, line: int, character: int) -> str | None:
    call = _call_named_at(path, line, character)
    if call is not None:
        return call.name
    if type(path[-1]) is S.Variable:
        return path[-1].name
    return None


def _local(definition: S.Definition, name: str, use) -> Location | None:
    """A parameter, a `let` or an earlier label of `definition` called `name`."""
    for parameter in definition.params:
        if parameter.name == name:
            return _at(parameter.span)
    found = None
    for node in _walk(definition.body):
        if (node.span.line, node.span.column) >= (use.line, use.column):
            break
        if type(node) is S.LetStatement and node.name == name:
            found = node.span
        elif type(node) is S.LayerStatement and node.label is not None \
                and node.label.parts == (name,):
            found = node.label.span
    return _at(found) if found is not None else None


def _walk(body):
    stack = list(reversed(body))
    while stack:
        node = stack.pop()
        yield node
        stack.extend(reversed(list(children(node))))


def _at(span) -> Location:
    return Location(span.file, span_range(span), span.source.text)
