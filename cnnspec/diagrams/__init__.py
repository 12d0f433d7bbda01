"""The diagrams: a checked spec drawn for people and for graph tools.

`render` (Graphviz: svg, png, pdf, dot), `explorer` (one self-contained HTML page
to open blocks, search and read each layer's facts) and `graph` (a networkx
DiGraph, node-link JSON). `render(spec, path)` here is the one entry that picks
between them by the file's extension.
"""

from __future__ import annotations

from pathlib import Path

from .render import RenderError, output_format, svg, write_diagram

__all__ = ["render", "svg", "explorer_html", "RenderError", "output_format"]


def render(spec, out_path, *, dpi: int | None = None, **options) -> Path:
    """Write the diagram to `out_path`; the format is the extension (svg/png/pdf/dot,
    or html: the interactive explorer, which starts at depth 1 unless given one).

    `options` are `render.to_dot`'s; `dpi` sets a PNG's resolution (Graphviz's
    default is 96)."""
    out = Path(out_path)
    fmt = output_format(out)
    if fmt == "html":
        from .explorer import write_explorer

        depth = options.pop("depth", None)
        return write_explorer(spec, out, 1 if depth is None else depth, **options)
    return write_diagram(spec, out, fmt, dpi=dpi, **options)


def explorer_html(spec, depth: int = 1, **options) -> str:
    """The interactive explorer of `spec` as one HTML page (see `explorer`)."""
    from .explorer import explorer_html as page

    return page(spec, depth, **options)
