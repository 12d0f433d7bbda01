"""The interactive explorer: `cnnspec render SPEC -o arch.html`.

Takes: a checked `Spec`. Returns: one self-contained HTML page (no network needed)
with the Graphviz diagram at `--depth`, blocks that open by click down to single
layers, pan and zoom, a side panel of each node's facts, search by layer name and
the network's totals. `builder` writes the page, `views` decides what each diagram
draws, `facts` fills the panel; explorer.js, explorer.css and template.html are
inlined into every page.
"""

from .builder import explorer_html, unpack_views, write_explorer

__all__ = ["explorer_html", "unpack_views", "write_explorer"]
