"""Compare backend: several checked specs -> one cost table and the classic chart.

Takes: `Spec`s, and top-1 accuracies where known. Returns: `Comparison` rows (name,
params, MACs, activation bytes, receptive field, depth, top-1) read from each spec's
side table, and writes the chart of Canziani, Paszke & Culurciello (2017), "An
Analysis of Deep Neural Network Models for Practical Applications": top-1 accuracy
against operations, bubble area proportional to parameters (their figure 2), for the
networks whose accuracy is known; without any, MACs against parameters, bubble area
proportional to activation memory. Every label is placed where it covers no other
(matplotlib, no display needed).

Accuracies come from an `--accuracy` CSV (`read_accuracies`) or, for a spec named
after a torchvision model, from torchvision's weight metadata (`torchvision_top1`,
imported only for a 1000-class classifier of 3xHxH images: the table of other
networks needs neither torch nor torchvision). Where one is known, the table, the
JSON and the chart all show it.
"""

from __future__ import annotations

import csv
import math
import re
from functools import lru_cache
from pathlib import Path

from pydantic import BaseModel

CHART_FORMATS = (".png", ".svg", ".pdf")
DEPTH_MEANING = ("conv and linear layers on the longest input-to-output path, as "
                 "papers count depth (ResNet-50: 50)")


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
    top1: float | None = None  # ImageNet top-1 accuracy in percent, where known
    top1_source: str | None = None  # "torchvision IMAGENET1K_V1" or the CSV's name


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


def compare(specs, accuracies: dict[str, tuple[float, str]] | None = None,
            torchvision: bool = False) -> Comparison:
    """One row per spec. `accuracies` (from `read_accuracies`) are looked up by the
    network's name, then the file's; with `torchvision` (as `cnnspec compare` always
    asks), a spec named after a torchvision model gets the top-1 of its pretrained
    weights."""
    accuracies = accuracies or {}
    rows = []
    for spec in specs:
        row = Row(name=spec.name, source=spec.path, params=spec.inference_params,
                  macs=spec.macs, activation_bytes=spec.activation_bytes,
                  receptive_field=list(spec.table.local_receptive_field()),
                  depth=weighted_depth(spec))
        stem = Path(spec.path).stem if spec.path else None
        known = next((accuracies[k] for k in (spec.name, stem) if k in accuracies), None)
        if known is not None:
            row.top1, row.top1_source = known
        elif torchvision and (found := torchvision_top1(spec)) is not None:
            row.top1, weights = found
            row.top1_source = f"torchvision {weights}"
        rows.append(row)
    return Comparison(networks=rows)


class AccuracyFileError(ValueError):
    """An --accuracy file that cannot be read; the message says where and why."""


def read_accuracies(path: str | Path) -> dict[str, tuple[float, str]]:
    """`spec,top1` rows (top-1 in percent, 0-100; a trailing % is allowed) ->
    {spec: (top1, the file's name)}. Raises AccuracyFileError with the line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise AccuracyFileError(f"no such accuracy file: {path}") from None
    except (OSError, UnicodeDecodeError) as problem:
        why = problem.strerror if isinstance(problem, OSError) else "not UTF-8 text"
        raise AccuracyFileError(f"cannot read {path}: {why}") from None
    rows = list(csv.reader(text.splitlines()))
    header = [cell.strip().lower() for cell in rows[0]] if rows else []
    if header[:2] != ["spec", "top1"] or len(header) > 2:
        raise AccuracyFileError(
            f"{path}: the first line must be the header `spec,top1`, found "
            f"{','.join(rows[0]) if rows else 'an empty file'!r}")
    found: dict[str, tuple[float, str]] = {}
    for number, cells in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in cells):
            continue
        if len(cells) != 2:
            raise AccuracyFileError(f"{path} line {number}: expected 2 values "
                                    f"(spec,top1), found {len(cells)}")
        name, value = cells[0].strip(), cells[1].strip()
        try:
            top1 = float(value.removesuffix("%"))
        except ValueError:
            top1 = math.nan
        if not name:
            raise AccuracyFileError(f"{path} line {number}: the spec name is empty")
        if not 0 <= top1 <= 100:  # also refuses nan
            raise AccuracyFileError(f"{path} line {number}: top1 must be a "
                                    f"percentage from 0 to 100, found {value!r}")
        if name in found:
            raise AccuracyFileError(f"{path} line {number}: {name} is listed twice")
        found[name] = (top1, path.name)
    return found


@lru_cache(maxsize=None)
def _torchvision_models() -> frozenset[str]:
    """torchvision's model names; none when torchvision cannot be imported."""
    try:
        from torchvision.models import list_models
    except ImportError:  # also a broken torch install: no accuracies, no failure
        return frozenset()
    return frozenset(list_models())


def _imagenet_shaped(spec) -> bool:
    """A 1000-class classifier of 3xHxH images: the only specs worth importing
    torchvision for (a CIFAR or MNIST network never is)."""
    shape = spec.input_shape
    return spec.output_shape == (1000,) and len(shape) == 3 and shape[0] == 3 \
        and shape[1] == shape[2]


def torchvision_model(spec) -> str | None:
    """The torchvision model a spec file stands for: its stem (resnet50.cnn), or the
    stem without `_torchvision` (alexnet_torchvision.cnn); None for other names."""
    if not spec.path:
        return None
    stem = Path(spec.path).stem
    name = stem.removesuffix("_torchvision")
    return name if name in _torchvision_models() else None


def torchvision_top1(spec) -> tuple[float, str] | None:
    """(ImageNet-1K top-1 in percent, the weights' name) of the first torchvision
    weights of the spec's model whose evaluation crop is the spec's input size (a
    1000-class classifier on 3xHxH images); None when there is none."""
    # The shape first: it alone keeps a CIFAR or MNIST spec from importing torchvision.
    name = torchvision_model(spec) if _imagenet_shaped(spec) else None
    if name is None:
        return None
    height = spec.input_shape[1]
    from torchvision.models import get_model_weights

    for weights in get_model_weights(name):
        crop = getattr(weights.transforms, "keywords", {}).get("crop_size")
        top1 = weights.meta.get("_metrics", {}).get("ImageNet-1K", {}).get("acc@1")
        if crop == height and isinstance(top1, (int, float)) and not math.isnan(top1):
            return float(top1), weights.name
    return None


def table(comparison: Comparison):
    """The comparison as a rich Table; a Top-1 column when any accuracy is known,
    its sources named in the caption."""
    from rich.table import Table

    from .summary import human, human_bytes, rf_text

    accuracy = any(row.top1 is not None for row in comparison.networks)
    sources = dict.fromkeys(row.top1_source or "given" for row in comparison.networks
                            if row.top1 is not None)
    grid = Table(title="Eval-mode cost per image", title_justify="left",
                 header_style="bold", caption_justify="left",
                 caption="RF: receptive field before the global pool. Depth: "
                 + DEPTH_MEANING + "."
                 + (" Top-1 from " + ", ".join(sources) + "."
                    if accuracy else ""))
    columns = ["Network", "Params", "MACs", "Activations", "RF", "Depth"]
    for column in columns + (["Top-1"] if accuracy else []):
        grid.add_column(column, justify="left" if column == "Network" else "right")
    for row in comparison.networks:
        cells = [row.name, f"{row.params:,}", human(row.macs),
                 human_bytes(row.activation_bytes), rf_text(row.receptive_field),
                 str(row.depth)]
        if accuracy:
            cells.append("" if row.top1 is None else f"{row.top1:.2f}%")
        grid.add_row(*cells)
    return grid


def chart(comparison: Comparison, out_path: str | Path) -> Path:
    """Write the chart (.png, .svg or .pdf): top-1 against MACs when any accuracy is
    known, else MACs against parameters."""
    plt = _pyplot()
    out = Path(out_path)
    with plt.rc_context({"svg.fonttype": "none"}):  # SVG text stays editable text
        figure = draw(comparison)
        figure.savefig(out)
        plt.close(figure)
    return out


def draw(comparison: Comparison):
    """The chart as a matplotlib Figure (the caller saves and closes it)."""
    plt = _pyplot()
    rows = comparison.networks
    if any(row.top1 is not None for row in rows):
        return _draw_accuracy(plt, rows)
    return _draw_cost(plt, rows)


def _pyplot():
    """matplotlib.pyplot on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _bubbles(plt, figsize, points, areas, colors, linewidth: float):
    """A figure whose axes hold one bubble per point, log-scaled along x, gridded."""
    figure, axes = plt.subplots(figsize=figsize, dpi=150)
    for (x, y), area, color in zip(points, areas, colors):
        axes.scatter(x, y, s=area, color=color, alpha=0.45, edgecolors=color,
                     linewidths=linewidth)
    axes.set_xscale("log")
    axes.grid(True, which="both", alpha=0.25)
    return figure, axes


def _family(name: str) -> str:
    """resnet50 -> resnet, efficientnet_v2_s -> efficientnet: one colour a family."""
    return re.match(r"[a-z]*", name).group(0) or name


def _colors(plt, rows: list[Row]) -> list:
    families = list(dict.fromkeys(_family(row.name) for row in rows))
    palette = plt.cm.tab20 if len(families) > 10 else plt.cm.tab10
    return [palette(families.index(_family(row.name)) % palette.N) for row in rows]


def _draw_accuracy(plt, rows: list[Row]):
    """Canziani et al. (2017), figure 2: top-1 against operations, bubble area
    proportional to parameters."""
    shown = [row for row in rows if row.top1 is not None]
    colors = [c for row, c in zip(rows, _colors(plt, rows)) if row.top1 is not None]
    largest = max(row.params for row in shown) or 1

    def area(params: float) -> float:  # points^2, proportional to parameters
        return 1600 * params / largest + 12

    points = [(row.macs / 1e9, row.top1) for row in shown]
    areas = [area(row.params) for row in shown]
    figure, axes = _bubbles(plt, (9, 6.5), points, areas, colors, 1.0)
    axes.set_xlabel("operations: multiply-accumulates per image (G, log scale)")
    axes.set_ylabel("top-1 accuracy (%)")
    axes.set_title("Top-1 accuracy against operations (bubble area: parameters)",
                   fontsize=10)
    axes.margins(0.08, 0.1)
    sizes = _reference_sizes(largest)
    handles = [axes.scatter([], [], s=area(value), color="0.6", alpha=0.45,
                            edgecolors="0.4", label=_millions(value)) for value in sizes]
    widest = math.sqrt(area(sizes[-1]))  # points
    style = dict(handles=handles, title="parameters", fontsize=8, title_fontsize=8,
                 labelspacing=max(1.0, 0.8 * widest / 8),
                 borderpad=max(1.0, 0.6 * widest / 8),
                 handletextpad=max(0.8, 0.3 * widest / 8), frameon=True,
                 scatterpoints=1)
    footnote = _accuracy_footnote(rows)
    figure.text(0.01, 0.01, footnote, fontsize=6.5, va="bottom", ha="left",
                color="0.3", wrap=False)
    lines = footnote.count("\n") + 1
    figure.tight_layout(rect=(0, 0.012 + 0.016 * lines, 1, 1))
    # The emptiest corner for the size legend, found among the bubbles alone, then
    # pinned there: "best" would move it again once the names are written.
    probe = axes.legend(loc="best", **style)
    frame = probe.get_window_extent(figure.canvas.get_renderer())
    probe.remove()
    corner = tuple(axes.transAxes.inverted().transform((frame.x0, frame.y0)))
    legend = axes.legend(loc=corner, **style)
    _label_without_overlap(figure, axes, shown, points, areas, avoid=[legend])
    return figure


def _reference_sizes(largest: float) -> list[float]:
    """Three round parameter counts for the size legend, up to the largest."""
    nice = [m * 10**e for e in range(3, 13) for m in (1, 2, 5)]
    top = max([n for n in nice if n <= largest] or [largest])
    return sorted({max([n for n in nice if n <= top / f] or [top]) for f in (1, 5, 25)})


def _millions(value: float) -> str:
    return f"{value / 1e6:g} M" if value >= 1e6 else f"{value / 1e3:g} k"


def _accuracy_footnote(rows: list[Row]) -> str:
    """Where each top-1 comes from, and which networks have none (not drawn)."""
    import textwrap

    sources: dict[str, list[str]] = {}
    for row in rows:
        if row.top1 is not None:
            sources.setdefault(row.top1_source or "given", []).append(row.name)
    groups = sorted(sources.items(), key=lambda item: -len(item[1]))

    def describe(source: str, first: bool) -> str:
        if not source.startswith("torchvision "):
            return source
        weights = source.removeprefix("torchvision ")
        return f"torchvision's {weights} weights" + (
            " (ImageNet-1K; the first weights whose crop is the spec's input)"
            if first else "")

    (source, _), others = groups[0], groups[1:]
    text = f"Top-1 from {describe(source, True)}"
    if others:
        text += " unless named: " + "; ".join(
            f"{describe(s, False)} for {_names(names)}" for s, names in others)
    text += "."
    names = [row.name for row in rows]
    missing = [row.name if names.count(row.name) == 1 or not row.source
               else f"{row.name} ({Path(row.source).name})"
               for row in rows if row.top1 is None]
    if missing:
        text += f" Not drawn, no top-1 known: {_names(missing)}."
    return "\n".join(textwrap.wrap(text, 180))


def _names(names: list[str], most: int = 12) -> str:
    shown = ", ".join(names[:most])
    return shown + (f" and {len(names) - most} more" if len(names) > most else "")


def _draw_cost(plt, rows: list[Row]):
    """MACs against parameters, bubble area proportional to activation memory."""
    largest = max(r.activation_bytes for r in rows) or 1
    areas = [2500 * row.activation_bytes / largest + 20 for row in rows]
    points = [(row.macs / 1e9, row.params / 1e6) for row in rows]
    figure, axes = _bubbles(plt, (8, 5.5), points, areas, _colors(plt, rows), 1.2)
    axes.set_yscale("log")
    axes.set_xlabel("multiply-accumulates per image (G)")
    axes.set_ylabel("parameters (M)")
    axes.set_title("Cost of each network (bubble area: activation memory per image)",
                   fontsize=10)
    axes.margins(0.1)
    figure.tight_layout()
    _label_without_overlap(figure, axes, rows, points, areas)
    return figure


# Where a label may sit around its bubble, in order of preference: right, above,
# left, below, then the diagonals (unit vectors, scaled by the bubble's radius).
_PLACES = [(1, 0), (0, 1), (-1, 0), (0, -1), (1, 1), (-1, 1), (1, -1), (-1, -1)]
_REACHES = (1.0, 1.9, 2.8)  # times the bubble's radius; beyond 1, a leader line


def _label_without_overlap(figure, axes, rows: list[Row], points, areas,
                           avoid=()) -> list:
    """Name the bubbles, smallest first. Each name goes to the first place around
    its bubble (eight directions, then farther out with a leader line) where it
    stays inside the axes and covers no name already written and no artist in
    `avoid` (the legend); first trying to cover no other bubble either, then
    allowing that. A name with no such place is left out: with the whole library a
    crowded region shows some names and every bubble (the table lists them all).
    Returns the names written (matplotlib Annotations)."""
    from matplotlib.transforms import Bbox

    renderer = figure.canvas.get_renderer()
    inside = axes.get_window_extent(renderer)
    pixels = figure.dpi / 72
    centres = axes.transData.transform(points)
    radii = [math.sqrt(area / math.pi) for area in areas]  # points
    bubbles = [Bbox.from_extents(x - r * pixels, y - r * pixels, x + r * pixels,
                                 y + r * pixels) for (x, y), r in zip(centres, radii)]
    placed = [artist.get_window_extent(renderer) for artist in avoid]
    written = []
    for index in sorted(range(len(rows)), key=lambda i: rows[i].params):
        probe = axes.annotate(rows[index].name, points[index], fontsize=7.5)
        size = probe.get_window_extent(renderer)
        probe.remove()
        others = [box for i, box in enumerate(bubbles) if i != index]
        for obstacles in (placed + others, placed):
            spot = _free_spot(centres[index], radii[index] + 2, size.width, size.height,
                              pixels, inside, obstacles)
            if spot is None:
                continue
            offset, reach, ha, va = spot
            line = {} if reach == _REACHES[0] else {"arrowprops": dict(
                arrowstyle="-", color="0.35", lw=0.6, shrinkA=0,
                shrinkB=radii[index] * 0.9)}
            text = axes.annotate(rows[index].name, points[index], fontsize=7.5,
                                 xytext=offset, textcoords="offset points", ha=ha,
                                 va=va, annotation_clip=False, **line)
            box = text.get_window_extent(renderer)
            if any(box.overlaps(other) for other in placed):  # a rounding surprise
                text.remove()
                continue
            placed.append(box.expanded(1.02, 1.06))
            written.append(text)
            break
    return written


def _free_spot(centre, radius: float, width: float, height: float, pixels: float,
               inside, obstacles):
    """(offset in points, reach, ha, va) of the first place where a width x height
    box (pixels) fits inside `inside` and overlaps no obstacle; None if nowhere."""
    from matplotlib.transforms import Bbox

    margin_x, margin_y = 0.03 * width + 1, 0.06 * height + 1
    for reach in _REACHES:
        for dx, dy in _PLACES:
            norm = math.hypot(dx, dy)
            offset = (dx / norm * radius * reach, dy / norm * radius * reach)
            x = centre[0] + offset[0] * pixels
            y = centre[1] + offset[1] * pixels
            x0 = x if dx > 0 else x - width if dx < 0 else x - width / 2
            y0 = y if dy > 0 else y - height if dy < 0 else y - height / 2
            box = Bbox.from_extents(x0 - margin_x, y0 - margin_y, x0 + width + margin_x,
                                    y0 + height + margin_y)
            if box.x0 < inside.x0 or box.x1 > inside.x1 or box.y0 < inside.y0 \
                    or box.y1 > inside.y1:
                continue
            if not any(box.overlaps(other) for other in obstacles):
                return (offset, reach,
                        "left" if dx > 0 else "right" if dx < 0 else "center",
                        "bottom" if dy > 0 else "top" if dy < 0 else "center")
    return None
