"""Explain backend: shaped IR -> every number with its arithmetic.

Takes: a checked `Spec`, optionally layer or block names and a block depth. Returns:
an `Explanation`, one `Record` per layer (or per block), each quantity as the formula
text with the numbers substituted and its value: the output size per axis, the
parameters, the MACs, the activation values and bytes, the receptive field and the
jump. The values are the checker's (`spec.table`); the formulas restate the rule of
`cnnspec/frontend/check.py` that gave them, so evaluating a formula gives its value
(`evaluate`; tests/test_explain.py checks it for every layer of every spec).

This module is the entry point (`explain`) and sums layers into blocks and the
network's totals; `explain_layer` holds one layer's formulas, `explain_model` the
models and the number formatting (re-exported here). `explain_render` shows an
explanation as rich panels or as a markdown table for lecture notes.
Imports neither torch nor rich.
"""

from __future__ import annotations

import difflib

from .layer import layer_records
from .model import (
    LIMIT,
    SHAPE_KEYS,
    Explanation,
    Quantity,
    Record,
    Share,
    UnknownLayer,
    bytes_quantity,
    evaluate,
    number,
    rounded,
    value_text,
)
from ..summary import block_groups, human_bytes

__all__ = ["LIMIT", "SHAPE_KEYS", "Explanation", "Quantity", "Record", "Share",
           "UnknownLayer", "evaluate", "explain", "human_bytes", "number", "rounded",
           "value_text"]


# ---------------------------------------------------------------- blocks and totals


def _sum(key: str, terms: list, rule: str = "", note: str = "") -> Quantity:
    shown = [t for t in terms if t]
    formula = " + ".join(map(str, shown)) if shown else "0"
    return Quantity(key, formula, sum(terms), rule, note)


def _block_record(name: str, op: str, members: list[Record], size: int) -> Record:
    """A block's sums, as `summary --depth` collapses it: params, MACs and memory add
    up; the receptive field is the widest member's; the shape and jump the last's."""
    last = members[-1]
    quantities = [_sum("params", [m.params for m in members], "the sum of its layers")]
    if any(m.get("weights") for m in members):
        quantities.append(_sum("weights", [m.value("weights") for m in members],
                               "the sum of its layers", "without the biases"))
    quantities.append(_sum("macs", [m.macs for m in members], "the sum of its layers"))
    values = _sum("values", [m.value("values") for m in members],
                  "the sum of its layers' outputs")
    quantities.append(values)
    quantities.append(bytes_quantity(values.value, size))
    for key in ("rf_h", "rf_w"):
        distinct = list(dict.fromkeys(m.value(key) for m in members))
        formula = str(distinct[0]) if len(distinct) == 1 else \
            f"max({', '.join(map(number, distinct))})"
        widest = next(m for m in members if m.value(key) == max(distinct))
        quantities.append(Quantity(key, formula, max(distinct), "the widest layer's field",
                             f"set by `{widest.name}`"))
    for key in ("jump_h", "jump_w"):
        quantities.append(Quantity(key, number(last.value(key)), last.value(key),
                             "the last layer's jump"))
    return Record(name=name, op=op, kind="block", output_shape=last.output_shape,
                  quantities=quantities, members=[m.name for m in members],
                  receptive_field_global=any(m.receptive_field_global for m in members),
                  training_only=all(m.training_only for m in members),
                  frozen=all(m.frozen for m in members))


def _collapsed(spec, nodes, layers: dict, depth: int | None) -> list[Record]:
    """One record per node, or per block instance `depth` deep (as `collapse`)."""
    if depth is None:
        return [layers[n.id] for n in nodes]
    size = spec.graph.options.bytes_per_element
    records = []
    for path, block, members in block_groups(((n, layers[n.id]) for n in nodes), depth):
        if block is None:
            records.extend(members)
        else:
            records.append(_block_record(path, block, members, size))
    return records


def _totals(spec, layers: list[Record]) -> Record:
    """The network's totals, as `summary` reports them: every parameter (auxiliary
    heads included); MACs and memory in eval mode (auxiliary heads left out)."""
    size = spec.graph.options.bytes_per_element
    run = [r for r in layers if not r.training_only]
    aux = len(run) != len(layers)
    quantities = [
        _sum("params", [r.params for r in layers], "the sum of the layers",
             "auxiliary heads included" if aux else ""),
        _sum("weights", [r.value("weights") for r in layers], "the sum of the layers",
             "without the biases"),
        _sum("macs", [r.macs for r in run], "the sum of the layers",
             "eval mode: auxiliary heads left out" if aux else ""),
    ]
    values = _sum("values", [r.value("values") for r in run], "the sum of the layers",
                  "every layer's output, the input not counted"
                  + ("; eval mode" if aux else ""))
    quantities.append(values)
    quantities.append(bytes_quantity(values.value, size))
    return Record(name="total", op=spec.name, kind="total",
                  output_shape=list(spec.output_shape), quantities=quantities)


def _shares(spec, layers: list[Record], nodes) -> tuple[list[Share], list[Share], str]:
    """Parameters by layer kind; eval-mode memory by output size; where half the
    memory is reached."""
    by_kind: dict[str, int] = {}
    for node, record in zip(nodes, layers):
        if record.params:
            by_kind[node.op.op] = by_kind.get(node.op.op, 0) + record.params
    total = sum(by_kind.values()) or 1
    params = [Share(label=k, value=v, share=v / total)
              for k, v in sorted(by_kind.items(), key=lambda kv: -kv[1])]
    by_size: dict[str, int] = {}
    run = [(n, r) for n, r in zip(nodes, layers) if not r.training_only]
    for node, record in run:
        shape = record.output_shape
        label = f"{shape[1]}x{shape[2]}" if len(shape) == 3 else "flat"
        by_size[label] = by_size.get(label, 0) + record.value("values")
    total = sum(by_size.values()) or 1
    memory = [Share(label=k, value=v, share=v / total) for k, v in by_size.items()]
    running, half = 0, ""
    for i, (node, record) in enumerate(run, 1):
        running += record.value("values")
        if running * 2 >= total:
            half = (f"half of the activation memory ({running / total:.1%}) is in the "
                    f"first {i} of {len(run)} layers, through `{node.name}` "
                    f"({'x'.join(map(str, record.output_shape))})")
            break
    return params, memory, half


# ---------------------------------------------------------------- the entry point


def explain(spec, layer=None, *, depth: int | None = None) -> Explanation:
    """Every number of the network (or of the named layers and blocks) with its
    arithmetic. `layer`: None (every layer), a name, or a list of names; a block
    instance or dotted group (`inception3a`, `features`) gives its layers, then its
    sums. `depth`: collapse block instances nested that deep into one record each."""
    if depth is not None and depth < 1:
        raise ValueError("depth must be 1 or more")
    nodes = spec.graph.nodes[1:]
    layers = layer_records(spec, nodes)
    common = {"network": spec.name, "input_shape": list(spec.input_shape),
              "bytes_per_element": spec.graph.options.bytes_per_element, "depth": depth}
    if layer is None or (not isinstance(layer, str) and not list(layer)):
        every = [layers[n.id] for n in nodes]
        params, memory, half = _shares(spec, every, nodes)
        return Explanation(records=_collapsed(spec, nodes, layers, depth),
                           totals=_totals(spec, every), param_shares=params,
                           memory_shares=memory, memory_half=half, **common)
    records = []
    for name in [layer] if isinstance(layer, str) else list(layer):
        records.extend(_named(spec, nodes, layers, name, depth))
    return Explanation(records=records, **common)


def _named(spec, nodes, layers, name: str, depth) -> list[Record]:
    exact = [n for n in nodes if n.name == name]
    if exact:
        return [layers[exact[0].id]]
    members = [n for n in nodes if n.name.startswith(name + ".")]
    if not members:
        names = [n.name for n in nodes]
        groups = {n.name.rsplit(".", i)[0] for n in nodes
                  for i in range(1, n.name.count(".") + 1)}
        close = difflib.get_close_matches(name, sorted(set(names) | groups), n=5,
                                          cutoff=0.6)
        # An op's keyword (`flatten`): the layers of that kind, often unnamed.
        kind = [n.name for n in nodes if n.op.op == name]
        raise UnknownLayer(name, spec.name, list(dict.fromkeys(kind[:5] + close))[:5])
    block = next((b for n in members for path, b in n.blocks if path == name), None)
    level = next((i + 1 for n in members for i, (path, _) in enumerate(n.blocks)
                  if path == name), 0)
    inner = depth if depth is not None and depth > level else None
    size = spec.graph.options.bytes_per_element
    records = _collapsed(spec, members, layers, inner)
    return records + [_block_record(name, block or "group",
                                    [layers[n.id] for n in members], size)]
