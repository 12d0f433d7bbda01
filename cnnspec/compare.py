"""Compare backend: several checked specs -> one cost table and the classic chart.

Takes: `Spec`s. Returns: `Comparison` rows (name, params, MACs, activation bytes,
receptive field, depth) read from each spec's side table, and writes the chart of
Canziani, Paszke & Culurciello (2017), "An Analysis of Deep Neural Network Models
for Practical Applications": MACs against parameters, bubble area proportional to
activation memory, every network labelled (matplotlib, no display needed).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel

CHART_FORMATS = (".png", ".svg", ".pdf")


class Row(BaseModel):
    name: str
    source: str | None
    params: int
    macs: int
    activation_bytes: int
    # What the features see before the network pools globally (the widest receptive
    # field of a value that does not yet see the whole input).
    receptive_field: list[int]
    depth: int  # conv and linear layers on the longest path, as papers count depth


class Comparison(BaseModel):
    networks: list[Row]


def weighted_depth(spec) -> int:
    """Conv and linear layers on the longest input-to-output path (eval mode)."""
    nodes = spec.graph.nodes
    best = [0] * len(nodes)
    for node in nodes:
        here = 1 if node.op.op in ("conv", "dwconv", "linear") else 0
        best[node.id] = here + max((best[i] for i in node.inputs), default=0)
    return best[spec.graph.outputs[0].node]


def compare(specs) -> Comparison:
    rows = []
    for spec in specs:
        rows.append(Row(name=spec.name, source=spec.path, params=spec.inference_params,
                        macs=spec.macs, activation_bytes=spec.activation_bytes,
                        receptive_field=list(spec.table.local_receptive_field()),
                        depth=weighted_depth(spec)))
    return Comparison(networks=rows)


def table(comparison: Comparison):
    """The comparison as a rich Table."""
    from rich.table import Table

    from .summary import human, human_bytes

    grid = Table(title="Eval-mode cost per image", title_justify="left",
                 header_style="bold")
    for column in ("Network", "Params", "MACs", "Activations", "RF", "Depth"):
        grid.add_column(column, justify="left" if column == "Network" else "right")
    for row in comparison.networks:
        rf_h, rf_w = row.receptive_field
        grid.add_row(row.name, f"{row.params:,}", human(row.macs),
                     human_bytes(row.activation_bytes),
                     str(rf_h) if rf_h == rf_w else f"{rf_h}x{rf_w}", str(row.depth))
    return grid


def chart(comparison: Comparison, out_path: str | Path) -> Path:
    """Write the MACs-versus-parameters bubble chart (.png, .svg or .pdf)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_path)
    with plt.rc_context({"svg.fonttype": "none"}):  # SVG text stays editable text
        _draw(plt, comparison.networks, out)
    return out


def _label_without_overlap(figure, axes, rows: list[Row]) -> None:
    """Name the bubbles, smallest networks first, skipping a name that would cover
    one already written: with the whole library, a crowded region shows some names
    and every bubble (the table lists them all)."""
    renderer = figure.canvas.get_renderer()
    placed = []
    for row in sorted(rows, key=lambda r: r.params):
        for offset in ((6, 6), (6, -12), (-6, 6)):
            text = axes.annotate(row.name, (row.macs / 1e9, row.params / 1e6),
                                 fontsize=8, xytext=offset, textcoords="offset points",
                                 ha="left" if offset[0] > 0 else "right")
            box = text.get_window_extent(renderer).expanded(1.05, 1.1)
            if not any(box.overlaps(other) for other in placed):
                placed.append(box)
                break
            text.remove()


def _draw(plt, rows: list[Row], out: Path) -> None:
    figure, axes = plt.subplots(figsize=(8, 5.5), dpi=150)
    largest = max(r.activation_bytes for r in rows) or 1
    for index, row in enumerate(rows):
        # Bubble *area* in points^2 proportional to activation memory.
        area = 2500 * row.activation_bytes / largest + 20
        color = plt.cm.tab10(index % 10)
        axes.scatter(row.macs / 1e9, row.params / 1e6, s=area, color=color, alpha=0.45,
                     edgecolors=color, linewidths=1.2)
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_xlabel("multiply-accumulates per image (G)")
    axes.set_ylabel("parameters (M)")
    axes.set_title("Cost of each network (bubble area: activation memory per image)",
                   fontsize=10)
    axes.grid(True, which="both", alpha=0.25)
    axes.margins(0.25)
    figure.tight_layout()
    _label_without_overlap(figure, axes, rows)
    figure.savefig(out)
    plt.close(figure)
