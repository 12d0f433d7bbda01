"""The explorer's side panel: one record of facts per layer and per block instance.

Takes: a checked `Spec` (and, for `xN` nodes, the drawn `render.Item`s).
Returns: `records(spec)` -> name -> a JSON-ready dict: op, output shape, input
shapes (with the layers they come from), parameters, MACs, activation memory,
receptive field and the source line. `folded(spec, item, records)` is the record
(under `folded_key(item)`) of a node that stands for N identical block instances.

Numbers come from the checker's side table through `summary.summarize` and
`summary.collapse`, the rows `summary --depth N` prints: a block sums its layers'
parameters, MACs and activation bytes and keeps its last output shape and the widest
receptive field. Nothing is re-derived here.
"""

from __future__ import annotations

import re

from ...frontend.check import shape_text
from ..render import short
from ...analyses.summary import LayerSummary, collapse, human_bytes, rf_text, summarize


def records(spec) -> dict[str, dict]:
    """Layer or block instance name -> its panel record."""
    summary = summarize(spec)
    members = _members(spec)
    found = {"input": _input_record(spec)}
    for node, row in zip(spec.graph.nodes[1:], summary.layers):
        found[node.name] = _record(spec, row, "layer", [node], node.span)
    levels = max((len(node.blocks) for node in spec.graph.nodes), default=0)
    for level in range(1, levels + 1):
        for row in collapse(spec, summary, level).layers:
            if row.name in members and row.name not in found:
                nodes = members[row.name]
                call = _call_site(nodes[0], row.name)
                found[row.name] = _record(spec, row, "block", nodes, call)
    return found


def folded_key(item) -> str:
    """The facts key of an `xN` node: its first and last instance."""
    return f"{item.key}…{item.last_key}"


def folded(spec, item, known: dict[str, dict]) -> dict:
    """The record of an `xN` node: its instances' sums, the first one's input and
    source, the last one's output, the widest receptive field."""
    instances = _instance_paths(item)
    rows = [known[path] for path in instances]
    facts = [spec.table[node.id] for node in item.members]
    return {
        **rows[0], "name": f"{item.key} … {item.last_key}", "kind": "repeat",
        "op": f"{item.block} ×{item.count}", "out": rows[-1]["out"],
        **_figures(sum(row["params"] for row in rows), sum(row["macs"] for row in rows),
                   sum(row["activation_bytes"] for row in rows)),
        "rf": rf_text((max(f.receptive_field[0] for f in facts),
                       max(f.receptive_field[1] for f in facts)),
                      any(f.whole for f in facts)),
        "layers": sum(row["layers"] for row in rows), "instances": instances}


def _instance_paths(item) -> list[str]:
    """The block instance paths an `xN` item folds, in order."""
    level = [path for path, _ in item.members[0].blocks].index(item.key)
    return list(dict.fromkeys(node.blocks[level][0] for node in item.members))


def _members(spec) -> dict[str, list]:
    """Block instance path -> its layers, in order."""
    found: dict[str, list] = {}
    for node in spec.graph.nodes:
        for path, _ in node.blocks:
            found.setdefault(path, []).append(node)
    return found


def _call_site(node, path: str):
    """Where the block instance `path` holding `node` is called."""
    for (block_path, _), call in zip(node.blocks, node.calls):
        if block_path == path:
            return call
    return node.span


def _record(spec, row: LayerSummary, kind: str, nodes: list, span) -> dict:
    inside = {node.id for node in nodes}
    sources = list(dict.fromkeys(
        i for node in nodes for i in node.inputs if i not in inside))
    return {
        "name": row.name, "kind": kind, "op": row.op,
        "out": shape_text(tuple(row.output_shape)),
        "in": [{"shape": shape_text(spec.table[i].shape),
                "from": spec.graph.nodes[i].name} for i in sources],
        **_figures(row.params, row.macs, row.activation_bytes),
        "rf": rf_text(row.receptive_field, row.receptive_field_global),
        "layers": len(nodes), "training_only": row.training_only, "frozen": row.frozen,
        "source": _source(span)}


def _input_record(spec) -> dict:
    node, facts = spec.graph.nodes[0], spec.table[0]
    size = spec.graph.options.bytes_per_element
    row = LayerSummary(name=node.name, op="input", output_shape=list(facts.shape),
                       params=0, macs=0, receptive_field=list(facts.receptive_field),
                       activation_bytes=facts.elements * size)
    return _record(spec, row, "input", [node], node.span)


def _source(span) -> dict | None:
    if span is None:
        return None
    # Runs of spaces that align `-> shape` comments in the file would only crowd the panel.
    text = re.sub(r"\s{2,}", "  ", span.source.line(span.line).strip())
    return {"file": span.file, "line": span.line, "text": text}


def _figures(params: int, macs: int, activation_bytes: int) -> dict:
    """Parameters, MACs and activation memory as the panel shows them."""
    return {"params": params, "params_text": f"{params:,}",
            "params_short": short(params),
            "macs": macs, "macs_text": f"{macs:,}", "macs_short": short(macs),
            "activation_bytes": activation_bytes,
            "activation_text": human_bytes(activation_bytes)}
