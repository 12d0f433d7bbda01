"""Graphviz backend: shaped IR -> a diagram (DOT source, SVG, PNG or PDF).

Takes: a checked `Spec` and drawing options (`depth`, `rankdir`, `shapes`, `theme`).
Returns: `to_dot` a `graphviz.Digraph`; `render` the written file's `Path`; `svg`
the SVG text. One node per layer (name and op summary), output shapes on the edges,
colours by op family with a legend, every block instance and labelled group as a
cluster, shortcuts and dense connections in an accent colour, auxiliary (training-
only) heads dashed.

`depth=N` counts block nesting (`node.blocks`), not name segments: a block instance
N levels deep becomes one node showing its output shape, params and MACs, and a run
of identical consecutive instances becomes one node marked `xN`. Labelled groups
that are not blocks (`features`, `layer1`, `branch2`) stay clusters at every depth.

Every number comes from the checker's side table; no shape is re-derived here. Only
the `dot` binary is needed to lay out non-DOT formats; `.dot` output needs nothing.
"""

from __future__ import annotations

import html
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import graphviz

from ..frontend.check import shape_text
from ..ir import block_at
from ..analyses.summary import human

FORMATS = ("svg", "png", "pdf", "dot", "html")  # html: the explorer (diagrams.explorer)
JOINS = frozenset({"concat", "add", "mean", "multiply"})

INSTALL_HINT = (
    "the Graphviz `dot` program is not installed (it lays out svg, png and pdf "
    "diagrams). Install it with `sudo apt-get install graphviz` (Debian/Ubuntu), "
    "`brew install graphviz` (macOS) or `conda install -c conda-forge graphviz`, "
    "or write `.dot` source instead, which needs no Graphviz")


class RenderError(Exception):
    """The diagram could not be written (no `dot`, unknown format, dot failed)."""


# ---------------------------------------------------------------- op families, themes

FAMILIES = {
    "input": ("input",),
    "conv": ("conv", "dwconv"),
    "pool": ("maxpool", "avgpool", "adaptive_avgpool", "adaptive_maxpool"),
    "norm": ("batchnorm", "lrn"),
    "activation": ("relu", "relu6", "tanh", "sigmoid", "silu", "gelu", "hardswish",
                   "hardsigmoid", "mish", "softplus", "leaky_relu", "elu", "softmax"),
    "linear": ("linear",),
    "join": tuple(JOINS),
    "reshape / regularize": ("flatten", "dropout", "drop_path", "identity"),
}
_FAMILY_OF = {op: family for family, ops in FAMILIES.items() for op in ops}
BLOCK = "block"

THEMES = {
    "light": {
        "bg": "white", "text": "#1f2328", "muted": "#57606a", "edge": "#6e7781",
        "skip": "#d1242f", "border": "#8c959f", "cluster_pen": "#afb8c1",
        "clusters": ("#f6f8fa", "#eef1f5", "#e6eaf0", "#dde3ea"),
        "fills": {"input": "#ffffff", "conv": "#cfe2ff", "pool": "#d3f0dc",
                  "norm": "#fff1c2", "activation": "#fde0e3", "linear": "#e4dbf7",
                  "join": "#ffdcc2", "reshape / regularize": "#e6e8eb",
                  BLOCK: "#c8ecf2", "other": "#eeeeee"},
    },
    "dark": {
        "bg": "#0d1117", "text": "#e6edf3", "muted": "#9da7b3", "edge": "#8b949e",
        "skip": "#ff7b72", "border": "#6e7681", "cluster_pen": "#3d444d",
        "clusters": ("#161b22", "#1c232c", "#222a35", "#29323e"),
        "fills": {"input": "#30363d", "conv": "#1f3f6e", "pool": "#1d4a2c",
                  "norm": "#5a4710", "activation": "#5e2029", "linear": "#3e2f66",
                  "join": "#6b3812", "reshape / regularize": "#3a4048",
                  BLOCK: "#0f4f5a", "other": "#30363d"},
    },
}
FONT = "Helvetica,Arial,sans-serif"


def family(op_kind: str) -> str:
    return _FAMILY_OF.get(op_kind, "other")


# ---------------------------------------------------------------- what gets drawn


@dataclass
class Item:
    """One drawn node: a layer, or a collapsed block instance (`count` of them)."""

    key: str  # graphviz node id: the layer name or the block instance path
    members: list = field(default_factory=list)  # IR nodes, in topological order
    block: str | None = None  # block name when collapsed
    count: int = 1
    last_key: str = ""  # the last merged instance's path, when count > 1

    @property
    def training_only(self) -> bool:
        return all(node.training_only for node in self.members)


def items(spec, depth: int | None = None) -> list[Item]:
    """The nodes a diagram at `depth` draws, in topological order."""
    if depth is not None and depth < 1:
        raise ValueError("depth must be 1 or more")
    return grouped_items(
        spec, lambda node: None if depth is None else block_at(node, depth))


def grouped_items(spec, drawn_in) -> list[Item]:
    """Each node drawn alone, or inside the block instance `drawn_in(node)` names as
    `(path, block)`; runs of identical instances folded into one `xN` item. `items`
    closes every block `depth` deep; the explorer keeps some of them open."""
    grouped: dict[str, Item] = {}
    for node in spec.graph.nodes:
        instance = drawn_in(node)
        if instance is not None:
            path, block = instance
            grouped.setdefault(path, Item(path, block=block)).members.append(node)
        else:
            grouped[node.name] = Item(node.name, [node])
    return _merge_repeats(spec, list(grouped.values()))


def _merge_repeats(spec, drawn: list[Item]) -> list[Item]:
    """Fold consecutive identical block instances fed by each other into one `xN`."""
    merged: list[Item] = []
    previous = None  # (signature, members) of the instance drawn or folded last
    for item in drawn:
        signature = _signature(spec, item) if item.block is not None else None
        last = merged[-1] if merged else None
        if (signature is not None and last is not None and last.block == item.block
                and previous[0] == signature and _scope(last.key) == _scope(item.key)
                and _feeds_only_from(item, previous[1])):
            last.count += 1
            last.last_key = item.key
            last.members = last.members + item.members
        else:
            merged.append(item)
        previous = (signature, item.members)
    return merged


def _feeds_only_from(item: Item, previous: list) -> bool:
    inside = {node.id for node in item.members}
    before = {node.id for node in previous}
    sources = {i for node in item.members for i in node.inputs if i not in inside}
    return bool(sources) and sources <= before


def _signature(spec, item: Item) -> tuple:
    """Ops, wiring, shapes and params of a block instance, independent of its name."""
    position = {node.id: k for k, node in enumerate(item.members)}
    layers = tuple(
        (node.op.model_dump_json(), tuple(position.get(i, -1) for i in node.inputs),
         spec.table[node.id].shape, spec.table[node.id].params, node.training_only)
        for node in item.members)
    sources = tuple(spec.table[i].shape for node in item.members for i in node.inputs
                    if i not in position)
    return layers, sources


def _scope(path: str) -> tuple[str, ...]:
    """The cluster paths around `path`, outermost first (its proper dotted prefixes)."""
    parts = path.split(".")
    return tuple(".".join(parts[:k]) for k in range(1, len(parts)))


def clusters(drawn: list[Item]) -> dict[str, list[str]]:
    """Cluster path -> the paths of its direct children (clusters and items), in order."""
    tree: dict[str, list[str]] = {"": []}
    for item in drawn:
        parent = ""
        for path in _scope(item.key) + (item.key,):
            if path not in tree.setdefault(parent, []):
                tree[parent].append(path)
            if path != item.key:
                tree.setdefault(path, [])
            parent = path
    return tree


# ---------------------------------------------------------------- DOT


def to_dot(spec, depth: int | None = None, rankdir: str = "TB", shapes: bool = True,
           theme: str = "light") -> graphviz.Digraph:
    """The diagram as a `graphviz.Digraph` (call `.source` for DOT text)."""
    drawn = items(spec, depth)
    dot, skips = dot_for(spec, drawn, rankdir, shapes, theme)
    dot.attr(label=_legend(spec, drawn, skips, THEMES[theme]), labelloc="b", labeljust="l")
    return dot


def dot_for(spec, drawn: list[Item], rankdir: str = "TB", shapes: bool = True,
            theme: str = "light") -> tuple[graphviz.Digraph, bool]:
    """The nodes, clusters and edges of the given `items` as a Digraph (no legend),
    and whether any edge is a skip connection. `to_dot` draws `items(spec, depth)`;
    the explorer draws its own selections, with blocks open along one path."""
    check_options(rankdir, theme)
    colours = THEMES[theme]
    by_key = {item.key: item for item in drawn}
    dot = graphviz.Digraph(spec.name, graph_attr=_graph_attrs(rankdir, colours),
                           node_attr=_node_attrs(colours),
                           edge_attr=_edge_attrs(colours))
    _fill(dot, "", _Drawing(spec, colours, clusters(drawn), by_key, _block_names(spec)))
    edges = _edges(spec, drawn, shapes, colours)
    for tail, head, attrs in edges:
        dot.edge(tail, head, **attrs)
    return dot, any(attrs.get("weight") == "0" for _, _, attrs in edges)


def check_options(rankdir: str, theme: str) -> None:
    """ValueError unless `rankdir` is TB or LR and `theme` one of THEMES."""
    if rankdir not in ("TB", "LR"):
        raise ValueError(f"rankdir must be TB or LR, not {rankdir!r}")
    if theme not in THEMES:
        raise ValueError(f"theme must be one of {', '.join(THEMES)}, not {theme!r}")


def _graph_attrs(rankdir: str, colours: dict) -> dict:
    return {"rankdir": rankdir, "bgcolor": colours["bg"], "fontname": FONT,
            "fontcolor": colours["text"], "fontsize": "11", "nodesep": "0.22",
            "ranksep": "0.28", "newrank": "true", "pad": "0.25",
            "outputorder": "edgesfirst"}


def _node_attrs(colours: dict) -> dict:
    return {"shape": "box", "style": "rounded,filled", "fontname": FONT,
            "fontsize": "10", "fontcolor": colours["text"], "color": colours["border"],
            "penwidth": "0.8", "height": "0.3", "margin": "0.10,0.035"}


def _edge_attrs(colours: dict) -> dict:
    return {"color": colours["edge"], "fontname": FONT, "fontsize": "8",
            "fontcolor": colours["muted"], "arrowsize": "0.55", "penwidth": "0.9"}


@dataclass
class _Drawing:
    """What declaring nodes and clusters needs to look up."""

    spec: object
    colours: dict
    tree: dict  # cluster path -> children (see `clusters`)
    by_key: dict  # node id -> Item
    blocks: dict  # block instance path -> block name


def _fill(graph, path: str, drawing: _Drawing, level: int = 0) -> None:
    """Declare `path`'s items inside `graph`, recursing into child clusters."""
    for child in drawing.tree[path]:
        if child in drawing.tree:  # a cluster
            sub = graphviz.Digraph(name=f"cluster_{child}")
            sub.attr(**_cluster_attrs(child, path, drawing, level))
            _fill(sub, child, drawing, level + 1)
            graph.subgraph(sub)
        else:
            graph.node(child, **_node_style(drawing.by_key[child], path, drawing.spec,
                                            drawing.colours))


def _cluster_attrs(path: str, parent: str, drawing: _Drawing, level: int) -> dict:
    colours, block = drawing.colours, drawing.blocks.get(path)
    name = _display(path, parent)
    label = f"<<b>{_esc(name)}</b>" + (
        f"  <font color=\"{colours['muted']}\">{_esc(block)}</font>" if block else "") + ">"
    aux = all(drawing.by_key[k].training_only for k in _leaves(path, drawing.tree))
    fills = colours["clusters"]
    return {"label": label, "labeljust": "l", "fontsize": "10", "fontname": FONT,
            "style": "rounded,filled" + (",dashed" if aux else ""),
            "fillcolor": fills[min(level, len(fills) - 1)],
            "color": colours["cluster_pen"], "penwidth": "0.8", "margin": "6"}


def _leaves(path: str, tree: dict) -> list[str]:
    found = []
    for child in tree[path]:
        found.extend(_leaves(child, tree) if child in tree else [child])
    return found


def _block_names(spec) -> dict[str, str]:
    """Block instance path -> block name."""
    return {path: block for node in spec.graph.nodes for path, block in node.blocks}


def _node_style(item: Item, parent: str, spec, colours: dict) -> dict:
    if item.block is None:
        node = item.members[0]
        kind = family(node.op.op)
        label = _layer_label(node, parent)
    else:
        kind = BLOCK
        label = _block_label(spec, item, parent, colours)
    style = {"label": label, "fillcolor": colours["fills"][kind],
             "tooltip": _tooltip(spec, item)}
    if not parent and not item.training_only:
        style["group"] = "main"  # keeps the top-level spine straight past side heads
    if item.count > 1:
        style.update(shape="box3d", style="filled", margin="0.12,0.07")
    if item.training_only:
        style["style"] = style.get("style", "rounded,filled") + ",dashed"
    return style


def _layer_label(node, parent: str) -> str:
    name = _display(node.name, parent)
    op = _esc(node.op.label())
    if name.split(".")[-1].isdigit() or name == node.op.op:  # unnamed: the op says it
        return f"<{op}>"
    return f"<<b>{_esc(name)}</b><br/>{op}>"


def _block_label(spec, item: Item, parent: str, colours: dict) -> str:
    facts = spec.table[item.members[-1].id]
    name = _display(item.key, parent)
    if item.count > 1:
        name += "–" + item.last_key.rsplit(".", 1)[-1]
    params = sum(spec.table[n.id].params for n in item.members)
    macs = sum(spec.table[n.id].macs for n in item.members)
    times = f"<b> ×{item.count}</b>" if item.count > 1 else ""
    costs = " · ".join(part for part in (
        f"{short(params)} params" if params else "", f"{short(macs)} MACs" if macs else "")
        if part)
    lines = [f"<b>{_esc(name)}</b>  {_esc(item.block)}{times}",
             f"{shape_text(facts.shape)}"]
    if costs:
        lines.append(f"<font point-size=\"8\" color=\"{colours['muted']}\">{costs}</font>")
    return "<" + "<br/>".join(lines) + ">"


def _tooltip(spec, item: Item) -> str:
    node = item.members[-1]
    facts = spec.table[node.id]
    params = sum(spec.table[n.id].params for n in item.members)
    macs = sum(spec.table[n.id].macs for n in item.members)
    title = item.key if item.count == 1 else f"{item.key} … {item.last_key}"
    rf = "global" if facts.whole else "x".join(map(str, facts.receptive_field))
    return (f"{title}: {item.block or node.op.label()}, out {shape_text(facts.shape)}, "
            f"{params:,} params, {macs:,} MACs, RF {rf}")


def _display(path: str, parent: str) -> str:
    """`path` relative to its cluster; a bare position keeps its parent's segment."""
    relative = path[len(parent) + 1:] if parent and path.startswith(parent + ".") else path
    if relative.isdigit() and parent:
        return f"{parent.rsplit('.', 1)[-1]}.{relative}"
    return relative


def short(number: int) -> str:
    """1_234_567 -> '1.23M', as node labels and the explorer panel show it."""
    return human(number).replace(" ", "")


def _esc(text: str) -> str:
    return html.escape(str(text), quote=True)


# ---------------------------------------------------------------- edges


def _edges(spec, drawn: list[Item], shapes: bool, colours: dict) -> list[tuple]:
    """(tail, head, attrs) per pair of drawn nodes an IR edge connects."""
    owner = {node.id: item for item in drawn for node in item.members}
    pairs: dict[tuple[str, str], tuple] = {}
    for item in drawn:
        for node in item.members:
            for source in node.inputs:
                tail = owner[source]
                if tail is not item and (tail.key, item.key) not in pairs:
                    pairs[(tail.key, item.key)] = (tail, item, source, node)
    fanout: dict[str, list] = {}
    for tail, head, source, node in pairs.values():
        fanout.setdefault(tail.key, []).append((head, node))
    edges = []
    for (tail_key, head_key), (tail, head, source, node) in pairs.items():
        skip = node.op.op in JOINS and len(fanout[tail_key]) > 1
        labelled = shapes and head is _main_consumer(tail, fanout[tail_key])
        attrs = {}
        if labelled:
            attrs["label"] = " " + shape_text(spec.table[source].shape) + " "
        if skip:
            attrs.update(color=colours["skip"], penwidth="1.4", weight="0")
        else:
            attrs["weight"] = "3"
        if tail.training_only or head.training_only:
            attrs.update(style="dashed", weight="1")
        edges.append((tail_key, head_key, attrs))
    return edges


def _main_consumer(tail: Item, consumers: list) -> Item:
    """The consumer whose edge carries the shape label: not a skip, not an aux head."""
    def rank(pair):
        head, node = pair
        skip = node.op.op in JOINS and len(consumers) > 1
        return (head.training_only and not tail.training_only, skip)

    return min(consumers, key=rank)[0]


# ---------------------------------------------------------------- legend


def _legend(spec, drawn: list[Item], skips: bool, colours: dict) -> str:
    used = {BLOCK if item.block else family(item.members[0].op.op) for item in drawn}
    order = list(FAMILIES) + ["other", BLOCK]
    swatches = "".join(
        f'<td bgcolor="{colours["fills"][name]}" border="1" color="{colours["border"]}">'
        f'<font point-size="9">{_esc(name)}</font></td>'
        for name in order if name in used)
    extras = []
    if skips:
        extras.append(f'<td><font color="{colours["skip"]}" point-size="9">'
                      '━━ shortcut / dense</font></td>')
    if any(item.training_only for item in drawn):
        extras.append('<td><font point-size="9">╌╌ training only (aux)</font></td>')
    if any(item.count > 1 for item in drawn):
        extras.append('<td><font point-size="9">×N  repeated block</font></td>')
    title = (f"<b>{_esc(spec.name)}</b>   input {shape_text(spec.input_shape)} · "
             f"{short(spec.params)} params · {short(spec.macs)} MACs")
    span = len(order) + len(extras)
    return (f'<<table border="0" cellspacing="3" cellpadding="3">'
            f'<tr><td colspan="{span}" align="left">{title}</td></tr>'
            f"<tr>{swatches}{''.join(extras)}</tr></table>>")


# ---------------------------------------------------------------- files


def write_diagram(spec, out: Path, fmt: str, *, dpi: int | None = None,
                  **options) -> Path:
    """Write the static diagram to `out` in `fmt` (svg, png, pdf or dot; the HTML
    explorer is the diagrams package's `render`). `options` are `to_dot`'s; `dpi`
    sets a PNG's resolution (Graphviz's default is 96)."""
    dot = to_dot(spec, **options)
    if dpi is not None and fmt == "png":
        dot.attr(dpi=str(dpi))
    if fmt == "dot":
        out.write_text(dot.source, encoding="utf-8")
        return out
    out.write_bytes(pipe(dot, fmt))
    return out


def svg(spec, **options) -> str:
    """The diagram as SVG text (needs `dot`)."""
    return pipe(to_dot(spec, **options), "svg").decode("utf-8")


def output_format(out_path) -> str:
    """`svg`, `png`, `pdf`, `dot` or `html` from the file name; RenderError otherwise."""
    fmt = Path(out_path).suffix.lower().lstrip(".")
    fmt = {"gv": "dot", "htm": "html"}.get(fmt, fmt)
    if fmt not in FORMATS:
        raise RenderError(f"cannot tell the diagram format from {str(out_path)!r}: "
                          f"name it .svg, .png, .pdf, .dot or .html (the interactive "
                          f"explorer)")
    return fmt


def have_dot() -> bool:
    return shutil.which("dot") is not None


def pipe(dot: graphviz.Digraph, fmt: str) -> bytes:
    """Lay `dot` out as `fmt` bytes; RenderError when `dot` is missing or fails."""
    if not have_dot():
        raise RenderError(INSTALL_HINT)
    try:
        return dot.pipe(format=fmt)
    except graphviz.ExecutableNotFound:
        raise RenderError(INSTALL_HINT) from None
    except graphviz.CalledProcessError as problem:
        detail = (problem.stderr or b"").decode("utf-8", "replace").strip()
        raise RenderError(f"Graphviz `dot` failed: {detail or problem}") from None
