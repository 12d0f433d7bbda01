"""Explain's views: an `Explanation` as rich panels or as a markdown table.

Takes: an `explain.Explanation`. Returns: rich renderables for the terminal
(`renderables`), or markdown text fit for lecture notes (`markdown`). rich is
imported only when a panel is made.
"""

from __future__ import annotations

import math

from .model import (
    LIMIT,
    Explanation,
    Quantity,
    Record,
    number,
    rounded,
    value_text,
)
from ..summary import human_bytes


def _pairs(record: Record, keys: tuple[str, str]):
    """The two axes' quantities, or one when they read the same."""
    first, second = (record.get(k) for k in keys)
    if first is None:
        return []
    if second is None or (first.formula == second.formula and first.value == second.value):
        return [("", first)]
    return [("height ", first), ("width ", second)]


def arithmetic(quantity: Quantity, limit: int | None = None) -> str:
    """`11*11*3*96 + 96 = 34,944`, or just the value when there is nothing to compute;
    a sum longer than `limit` characters is named by its number of terms."""
    text = value_text(quantity.value)
    if quantity.formula in (text, number(quantity.value), text.replace(",", "")):
        return text
    if limit is not None and len(quantity.formula) > limit:
        return f"the sum of {quantity.formula.count(' + ') + 1} terms = {text}"
    return f"{quantity.formula} = {text}"


def lines(record: Record, bytes_per_element: int) -> list[tuple[str, str, str]]:
    """(quantity, arithmetic, rule and note) rows, as the terminal shows a record."""
    rows = []
    shape = "x".join(map(str, record.output_shape))
    if record.kind != "layer":
        rows.append(("output", shape, f"the last layer's; {len(record.members)} layers"
                     if record.kind == "block" else ""))
    else:
        rows.append(("output", shape, ""))
        channels = record.get("channels")
        if channels:
            label = "  channels" if len(record.output_shape) == 3 else "  features"
            rows.append((label, arithmetic(channels), _explained(channels)))
        for axis, quantity in _pairs(record, ("height", "width")):
            label = f"  {axis.strip()}" if axis else "  height, width"
            rows.append((label, arithmetic(quantity), _explained(quantity)))
    for key, label in (("params", "params"), ("weights", "  weights only"),
                       ("macs", "MACs")):
        quantity = record.get(key)
        if quantity is not None and (key != "weights" or record.kind == "total"
                                     or quantity.value != record.params):
            rows.append((label, arithmetic(quantity, LIMIT), _explained(quantity)))
    values, size = record.get("values"), record.get("bytes")
    if values is not None:
        text = f"{arithmetic(values, LIMIT)} values, {human_bytes(size.value)}"
        rows.append(("memory", text, f"{bytes_per_element} bytes each"
                     + (f"; {values.note}" if values.note else "")))
    if record.get("rf_h") is not None:
        rows.append(("receptive field", _field_line(record), _field_note(record)))
    return rows


def _explained(quantity: Quantity) -> str:
    return "; ".join(t for t in (quantity.rule, quantity.note) if t)


def _field_line(record: Record) -> str:
    """`rf = 1 + (11-1)*1 = 11, jump = 1*4 = 4`; per axis when they differ."""
    parts = []
    for prefix, keys in (("rf", ("rf_h", "rf_w")), ("jump", ("jump_h", "jump_w"))):
        pairs = _pairs(record, keys)
        if len(pairs) == 1:
            parts.append(f"{prefix} = {arithmetic(pairs[0][1])}")
        else:
            parts.append(f"{prefix}: " + ", ".join(f"{axis}{arithmetic(q)}"
                                                   for axis, q in pairs))
    return ", ".join(parts) + (" (global)" if record.receptive_field_global else "")


def _field_note(record: Record) -> str:
    rf, jump = record.get("rf_h"), record.get("jump_h")
    notes = [rf.rule] if rf.rule else []
    if jump.rule:
        notes.append(jump.rule)
    if rf.note and rf.note != "unchanged":
        notes.append(rf.note)
    return "; ".join(notes)


def renderables(explanation: Explanation) -> list:
    """Rich panels: one per record, then the totals."""
    from rich.panel import Panel
    from rich.table import Table
    from rich.text import Text

    items = []
    for record in explanation.records + ([explanation.totals] if explanation.totals
                                         else []):
        grid = Table.grid(padding=(0, 2))
        grid.add_column(style="bold")
        grid.add_column()
        grid.add_column(style="dim")
        for label, text, note in lines(record, explanation.bytes_per_element):
            grid.add_row(Text(label), Text(text), Text(note))
        mark = " (aux)" if record.training_only else " (frozen)" if record.frozen else ""
        title = {"layer": f"{record.name}{mark}  ·  {record.op}",
                 "block": f"{record.name}  ·  {record.op} (sums of its layers)",
                 "total": f"{explanation.network}: totals"}[record.kind]
        items.append(Panel(grid, title=Text(title), title_align="left", expand=False))
    if explanation.param_shares:
        items.append(Text(shares_text(explanation)))
    return items


def shares_text(explanation: Explanation) -> str:
    """Where the parameters and the activation memory are, in numbers."""
    params = ", ".join(f"{s.label} {s.value:,} ({s.share:.1%})"
                       for s in explanation.param_shares)
    memory = ", ".join(f"{s.label} {s.value:,} ({s.share:.1%})"
                       for s in explanation.memory_shares)
    text = f"Parameters by layer kind: {params}.\nActivation values by output size: " \
        f"{memory}."
    if explanation.memory_half:
        text += f"\n{explanation.memory_half[0].upper()}{explanation.memory_half[1:]}."
    return text


def _cell(quantity: Quantity | None) -> str:
    if quantity is None:
        return ""
    text = value_text(quantity.value)
    if quantity.formula in (text, number(quantity.value), text.replace(",", "")):
        return text
    return f"`{quantity.formula}` = {text}"


def markdown(explanation: Explanation) -> str:
    """A markdown table for lecture notes: one row per record (the input first), each
    number with its arithmetic; then the totals and where the parameters and the
    memory are."""
    size = explanation.bytes_per_element
    out = [(f"**{explanation.network}**: input "
            f"{'x'.join(map(str, explanation.input_shape))}, {size} bytes per value. "
            "*Params* are ours: weights and biases, as PyTorch counts them; *weights* "
            "leave the biases out, as the CS231n lecture counts."),
           "",
           ("| Layer | Op | Output | Size | Memory (values) | Params (weights + biases) "
            "| Weights only | MACs | RF |"),
           "|---|---|---|---|---|---|---|---|---|"]
    shape = explanation.input_shape
    values = math.prod(shape)
    out.append(f"| input | input | {'x'.join(map(str, shape))} | | "
               f"`{'*'.join(map(str, shape))}` = {values:,} ({rounded(values)}), "
               "not counted | 0 | 0 | 0 | 1 |")
    for record in explanation.records:
        size_cells = [f"{axis}{_cell(q)}" for axis, q in
                      _pairs(record, ("height", "width"))]
        if record.get("channels") is not None:
            size_cells.insert(0, ("channels " if len(record.output_shape) == 3
                                  else "features ") + _cell(record.get("channels")))
        memory = record.get("values")
        weights = record.get("weights")
        rf = "; ".join(f"{axis}{_cell(q)}" for axis, q in _pairs(record, ("rf_h", "rf_w")))
        mark = " (aux)" if record.training_only else ""
        name = record.name if record.kind == "layer" else f"{record.name} (block)"
        out.append("| " + " | ".join([
            name.replace("|", "\\|") + mark, record.op.replace("|", "\\|"),
            "x".join(map(str, record.output_shape)), "; ".join(size_cells),
            f"{_cell(memory)} ({rounded(memory.value)})",
            _cell(record.get("params")), _cell(weights) if weights else "",
            _cell(record.get("macs")),
            rf + (" (global)" if record.receptive_field_global else "")]) + " |")
    totals = explanation.totals
    if totals is None:
        return "\n".join(out) + "\n"
    values, size_q = totals.get("values"), totals.get("bytes")
    out.append(f"| **total** | | | | **{values.value:,}** ({rounded(values.value)}) | "
               f"**{totals.params:,}** | **{totals.value('weights'):,}** | "
               f"**{totals.macs:,}** | |")
    biases = totals.params - totals.value("weights")
    out += ["",
            (f"- **Memory**: {values.value:,} values × {size} bytes = "
             f"{size_q.value:,} bytes ({human_bytes(size_q.value)}, "
             f"{size_q.value / 1e6:.1f} MB) per image, forward only; every layer's "
             "output counts (activations, dropout and flatten too), the input does not."),
            (f"- **Params**: {totals.params:,} ({totals.value('weights'):,} weights + "
             f"{biases:,} biases and other parameters)."),
            f"- **MACs**: {totals.macs:,} per image.",
            "- **Where the parameters are**: " + ", ".join(
                f"{s.label} {s.value:,} ({s.share:.1%})" for s in explanation.param_shares)
            + ".",
            "- **Where the memory is** (by output size): " + ", ".join(
                f"{s.label} {s.value:,} ({s.share:.1%})" for s in explanation.memory_shares)
            + "."]
    if explanation.memory_half:
        out.append(f"- {explanation.memory_half[0].upper()}{explanation.memory_half[1:]}.")
    return "\n".join(out) + "\n"
