"""Summary backend: shaped IR -> a table and JSON.

Takes: a checked `Spec`. Returns: a `Summary` model (the `summary --json` schema of
DESIGN.md, plus `inference_params` and per-layer `activation_bytes`), and a rich
`Table` for the terminal. Every number comes from the checker's side table.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from ..ir import block_at


class LayerSummary(BaseModel):
    model_config = ConfigDict(frozen=True)
    name: str
    op: str
    output_shape: list[int]
    params: int
    macs: int
    receptive_field: list[int]  # [height, width] in input pixels
    # Every output sees the whole input (after a global pool): shown as `global`;
    # receptive_field keeps the figure of the first global view.
    receptive_field_global: bool = False
    activation_bytes: int
    training_only: bool = False
    frozen: bool = False


class Summary(BaseModel):
    model_config = ConfigDict(frozen=True)
    name: str
    input_shape: list[int]
    output_shape: list[int]
    params: int
    trainable_params: int
    inference_params: int
    macs: int
    activation_bytes: int
    layers: list[LayerSummary]


def summarize(spec) -> Summary:
    size = spec.graph.options.bytes_per_element
    layers = []
    for node in spec.graph.nodes[1:]:
        facts = spec.table[node.id]
        layers.append(LayerSummary(
            name=node.name, op=node.op.label(), output_shape=list(facts.shape),
            params=facts.params, macs=facts.macs,
            receptive_field=list(facts.receptive_field),
            receptive_field_global=facts.whole,
            activation_bytes=facts.elements * size, training_only=node.training_only,
            frozen=node.frozen))
    return Summary(name=spec.name, input_shape=list(spec.input_shape),
                   output_shape=list(spec.output_shape), params=spec.params,
                   trainable_params=spec.trainable_params,
                   inference_params=spec.inference_params,
                   macs=spec.macs, activation_bytes=spec.activation_bytes, layers=layers)


def collapse(spec, summary: Summary, depth: int) -> Summary:
    """One row per block instance nested `depth` deep (as `render --depth` draws them).

    A merged row sums params and MACs, keeps the block's last output shape and the
    largest receptive field, and names the block (`inception`, `bottleneck`) as its op.
    """
    rows = []
    for path, block, members in block_groups(
            zip(spec.graph.nodes[1:], summary.layers), depth):
        if block is None:
            rows.extend(members)
            continue
        last = members[-1]
        rows.append(LayerSummary(
            name=path, op=block, output_shape=last.output_shape,
            params=sum(m.params for m in members), macs=sum(m.macs for m in members),
            receptive_field=[max(m.receptive_field[0] for m in members),
                             max(m.receptive_field[1] for m in members)],
            receptive_field_global=any(m.receptive_field_global for m in members),
            activation_bytes=sum(m.activation_bytes for m in members),
            training_only=all(m.training_only for m in members),
            frozen=all(m.frozen for m in members)))
    return summary.model_copy(update={"layers": rows})


def block_groups(pairs, depth: int) -> list[tuple[str, str | None, list]]:
    """`(node, row)` pairs -> `(path, block, rows)` in order: the rows of each block
    instance nested `depth` deep together; a layer outside any is its own group, with
    block None. The grouping of `collapse` here and in `memory.collapse`."""
    groups: dict[str, tuple[str | None, list]] = {}
    for node, row in pairs:
        path, block = block_at(node, depth) or (node.name, None)
        groups.setdefault(path, (block, []))[1].append(row)
    return [(path, block, rows) for path, (block, rows) in groups.items()]


def rf_text(receptive_field, whole: bool = False) -> str:
    """`11`, `11x7`, or `global` when every output sees the whole input."""
    if whole:
        return "global"
    rf_h, rf_w = receptive_field
    return str(rf_h) if rf_h == rf_w else f"{rf_h}x{rf_w}"


def human(number: float, unit: str = "") -> str:
    """1_234_567 -> '1.23 M'."""
    for factor, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(number) >= factor:
            return f"{number / factor:.2f} {prefix}{unit}"
    return f"{number:g} {unit}".rstrip()


def human_bytes(count: int) -> str:
    for factor, prefix in ((2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")):
        if count >= factor:
            return f"{count / factor:.1f} {prefix}"
    return f"{count} B"


def table(summary: Summary):
    """The summary as a rich Table (name, op, output shape, params, MACs, RF)."""
    from rich.table import Table

    grid = Table(title=f"{summary.name}  (input {_shape(summary.input_shape)})",
                 title_justify="left", show_footer=True, header_style="bold",
                 footer_style="bold")
    grid.add_column("Layer", footer="Total")
    grid.add_column("Op")
    grid.add_column("Output", justify="right", footer=_shape(summary.output_shape))
    grid.add_column("Params", justify="right", footer=f"{summary.params:,}")
    grid.add_column("MACs", justify="right", footer=f"{summary.macs:,}")
    grid.add_column("RF", justify="right")
    for layer in summary.layers:
        mark = " (aux)" if layer.training_only else " (frozen)" if layer.frozen else ""
        grid.add_row(layer.name + mark, layer.op,
                     _shape(layer.output_shape), f"{layer.params:,}" if layer.params else "",
                     f"{layer.macs:,}" if layer.macs else "",
                     rf_text(layer.receptive_field, layer.receptive_field_global),
                     style="dim" if layer.training_only else None)
    return grid


def totals(summary: Summary) -> str:
    """The lines printed under the table."""
    lines = [f"Params:      {summary.params:,} ({human(summary.params)})"]
    if summary.inference_params != summary.params:
        lines.append(f"             {summary.inference_params:,} without auxiliary heads "
                     "(eval mode)")
    if summary.trainable_params != summary.params:
        lines.append(f"             {summary.trainable_params:,} trainable (the rest frozen)")
    lines.append(f"MACs:        {summary.macs:,} ({human(summary.macs)}) per image")
    lines.append(f"Activations: {human_bytes(summary.activation_bytes)} per image "
                 "(every layer output, eval mode)")
    return "\n".join(lines)


def _shape(shape: list[int]) -> str:
    return "x".join(map(str, shape))
