"""The explorer's views: which nodes each pre-laid-out diagram draws.

Takes: a checked `Spec` and the base depth D (`render --depth`).
Returns: `plan(spec, depth)` -> the `View`s, the base view first, then one per block
instance nested D or more levels deep, parents before children.

A view is named by the block instance it opens (the base view by ""). In the view of
`inception4a.branch2.1`, that block and every block around it are drawn open, as
clusters; every other block nested D or more levels deep stays one node, exactly as
`render --depth D` draws it (runs of identical instances folded into one `xN` node by
render's own rule). So opening a block opens it one level: its child blocks are nodes,
each with a view of its own, down to single layers.

Grouping only: the drawn items are `render.Item`s, laid out by render's DOT code.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..render import Item, grouped_items


@dataclass
class View:
    key: str  # the opened block instance's path; "" for the base view
    parent: str  # the view that closing this one goes back to
    chain: list[str]  # the views from the base down to this one, base ("") first
    drawn: list[Item] = field(default_factory=list)


def plan(spec, depth: int | None) -> list[View]:
    """The base view and one view per block instance that can be opened."""
    if depth is not None and depth < 1:
        raise ValueError("depth must be 1 or more")
    base = View("", "", [""], _items(spec, depth, frozenset()))
    if depth is None:  # every layer drawn already: nothing to open
        return [base]
    views = [base]
    for path, enclosing in openable_blocks(spec, depth).items():
        opened = enclosing[depth - 1:]  # the blocks above depth D are open everywhere
        views.append(View(path, opened[-1] if opened else "", [""] + opened + [path],
                          _items(spec, depth, frozenset(opened + [path]))))
    return views


def openable_blocks(spec, depth: int) -> dict[str, list[str]]:
    """Block instance path -> the paths of the instances around it, outermost first,
    for every instance nested `depth` or more levels deep, in the order they start."""
    found: dict[str, list[str]] = {}
    for node in spec.graph.nodes:
        paths = [path for path, _ in node.blocks]
        for level in range(depth - 1, len(paths)):
            found.setdefault(paths[level], paths[:level])
    return found


def _items(spec, depth: int | None, opened: frozenset) -> list[Item]:
    """render.items, except that the blocks in `opened` are drawn open."""
    return grouped_items(spec, lambda node: _closed_block(node, depth, opened))


def _closed_block(node, depth: int | None, opened: frozenset) -> tuple[str, str] | None:
    """The outermost block instance at least `depth` deep holding `node` that is not
    opened: the node is drawn as part of it. None: the node is drawn itself."""
    if depth is None:
        return None
    for path, block in node.blocks[depth - 1:]:
        if path not in opened:
            return path, block
    return None


def locate(spec, views: list[View]) -> dict[str, tuple[str, str]]:
    """Every layer and block instance name -> (view, drawn path), where the search box
    shows it: a layer in the first view (base first) that draws it; a block as a node
    of the view around it, or, when that folds it into an `xN` node, as the open
    cluster of its own view; a block less than D deep as its cluster in the base view."""
    by_key = {view.key: view for view in views}
    where: dict[str, tuple[str, str]] = {}
    for view in views:
        for item in view.drawn:
            if item.block is None:
                where.setdefault(item.key, (view.key, item.key))
    for view in views[1:]:
        around = by_key[view.parent].drawn
        alone = any(item.key == view.key and item.count == 1 for item in around)
        where[view.key] = (view.parent, view.key) if alone else (view.key, view.key)
    for node in spec.graph.nodes:
        for path, _ in node.blocks:
            where.setdefault(path, ("", path))
    return where
