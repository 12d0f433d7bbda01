"""Explorer backend: shaped IR -> one self-contained, interactive HTML page.

Takes: a checked `Spec`, the base depth D (`render --depth`, default 1), and render's
drawing options (`rankdir`, `shapes`, `theme`).
Returns: `explorer_html` the page as text; `write_explorer` the written file's `Path`.

Graphviz lays out in Python, so every diagram the page can show is laid out here, one
per view (`views.plan`: the base view at depth D, and one per block instance that can
be opened, with it and the blocks around it open). The page's script (explorer.js,
inlined with explorer.css into template.html) swaps the views in, pans and zooms, and
fills the side panel from a JSON table of facts (`facts.records`). Every node and
cluster `<g>` carries `data-path="inception4a"`: its layer or block instance path.

Size: a view draws the whole network, collapsed at D except the opened chain, so it is
about as big as `render --depth D` (15-60 kB), and deep specs have hundreds of views
(EfficientNet-B7: 283). Stored as text that made 12 MB of SVG for EfficientNet-B7 and
10 MB for DenseNet-201. The views differ in coordinates everywhere below the opened
block, so deduplicating fragments saves little; instead each view's SVG is gzipped
and base64-encoded into a `<script type="application/gzip+base64" data-view="KEY">`,
and the page unpacks them once at load with the browser's own DecompressionStream
(no vendored code). That is 5x smaller; whole pages measure EfficientNet-B7 3.6 MB,
DenseNet-201 2.7 MB, GoogLeNet 1.0 MB, ResNet-152 0.8 MB. `unpack_views` reads the
views back for tests and tools. Comments, the XML prologue and Graphviz's tooltips
(the panel shows more) are dropped. The DOT of each view is built with render.py's
own `dot_for`, so the explorer draws exactly what `render` does.
"""

from __future__ import annotations

import base64
import gzip
import html
import json
import os
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ...version import __version__
from ...frontend.check import shape_text
from ..render import BLOCK, FAMILIES, THEMES, check_options, dot_for, family, pipe
from ...analyses.summary import human, human_bytes
from . import facts as facts_module
from .views import View, locate, plan

ASSETS = Path(__file__).resolve().parent
# The selection colour: the primer blue that sits with render's GitHub-like themes.
ACCENT = {"light": "#0969da", "dark": "#4493f8"}


def explorer_html(spec, depth: int | None = 1, *, rankdir: str = "TB",
                  shapes: bool = True, theme: str = "light") -> str:
    """The explorer page; `depth=None` starts with every layer drawn (nothing to open)."""
    check_options(rankdir, theme)
    views = plan(spec, depth)
    svgs = _lay_out(spec, views, rankdir, shapes, theme)
    data = _data(spec, views, depth)
    return _page(spec, theme, data, svgs, views)


def write_explorer(spec, out_path, depth: int | None = 1, **options) -> Path:
    """Write the explorer page to `out_path` (any name; `render` passes `.html` ones)."""
    out = Path(out_path)
    out.write_text(explorer_html(spec, depth, **options), encoding="utf-8")
    return out


# ---------------------------------------------------------------- layout


def _lay_out(spec, views: list[View], rankdir: str, shapes: bool,
             theme: str) -> list[str]:
    """Each view's SVG, tagged with data-path; `dot` runs in parallel processes."""
    def one(view: View) -> str:
        dot, _ = dot_for(spec, view.drawn, rankdir, shapes, theme)
        return _tagged(pipe(dot, "svg").decode("utf-8"))

    workers = min(8, os.cpu_count() or 1, len(views))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(one, views))


_GROUP = re.compile(
    r'<g id="(?:node|clust)\d+" class="(node|cluster)">\s*<title>([^<]*)</title>')
_TOOLTIP = re.compile(
    r'<g id="a_[^"]*"><a xlink:title="[^"]*">\s*(.*?)\s*</a>\s*</g>', re.S)


def _tagged(svg_text: str) -> str:
    """Graphviz's SVG without prologue, comments and tooltips; each node and cluster
    group gets `data-path`, its layer or block path (clusters are `cluster_<path>`)."""
    body = svg_text[svg_text.index("<svg"):]
    body = re.sub(r"<!--.*?-->\n?", "", body, flags=re.S)
    body = _TOOLTIP.sub(r"\1", body)

    def tag(match: re.Match) -> str:
        kind, title = match.group(1), html.unescape(match.group(2))
        path = title.removeprefix("cluster_") if kind == "cluster" else title
        return (f'<g class="{kind}" data-path="{html.escape(path, quote=True)}">'
                f"<title>{html.escape(path)}</title>")

    return _GROUP.sub(tag, body)


# ---------------------------------------------------------------- the page's data


def _data(spec, views: list[View], depth: int | None) -> dict:
    """What explorer.js reads: views, facts, where each name is drawn, the names."""
    known = facts_module.records(spec)
    by_key = {view.key: view for view in views}
    view_data = {}
    for view in views:
        nodes = {}
        for item in view.drawn:
            key = item.key
            if item.count > 1:  # the same run is folded in many views: sum it once
                key = facts_module.folded_key(item)
                if key not in known:
                    known[key] = facts_module.folded(spec, item, known)
            opens = item.key if item.block is not None and item.key in by_key else None
            nodes[item.key] = {"facts": key, "opens": opens}
        view_data[view.key] = {"parent": view.parent, "chain": view.chain,
                               "anchor": _anchor(view, by_key), "nodes": nodes}
    names = list(dict.fromkeys(
        name for node in spec.graph.nodes
        for name in [path for path, _ in node.blocks] + [node.name]))
    return {"name": spec.name, "depth": depth, "views": view_data, "facts": known,
            "where": locate(spec, views), "names": names}


def _anchor(view: View, by_key: dict) -> str | None:
    """The node of the parent view that this view opens (an `xN` node's first path)."""
    if not view.key:
        return None
    for item in by_key[view.parent].drawn:
        if any(view.key in {path for path, _ in node.blocks} for node in item.members):
            return item.key
    return None


# ---------------------------------------------------------------- the page


PACKED = re.compile(
    r'<script type="application/gzip\+base64" data-view="([^"]*)">([^<]*)</script>')


def unpack_views(page: str) -> dict[str, str]:
    """View key -> its SVG text, read back from an explorer page."""
    return {html.unescape(key): gzip.decompress(base64.b64decode(packed)).decode("utf-8")
            for key, packed in PACKED.findall(page)}


def _pack(svg: str) -> str:
    return base64.b64encode(gzip.compress(svg.encode("utf-8"), mtime=0)).decode("ascii")


def _page(spec, theme: str, data: dict, svgs: list[str], views: list[View]) -> str:
    packed = "\n".join(
        f'<script type="application/gzip+base64" data-view="'
        f'{html.escape(view.key, quote=True)}">{_pack(svg)}</script>'
        for view, svg in zip(views, svgs))
    # "</" would end the script element early; JSON reads "<\/" as "</".
    payload = json.dumps(data, ensure_ascii=False, separators=(",", ":")).replace(
        "</", "<\\/").replace("<!--", "<\\u0021--")
    parts = {
        "title": html.escape(f"{spec.name} · cnnspec explorer"),
        "version": html.escape(__version__),
        "theme": theme,
        "theme_vars": _theme_css(theme),
        "style": (ASSETS / "explorer.css").read_text(encoding="utf-8"),
        "name": html.escape(spec.name),
        "totals": _totals(spec),
        "legend": _legend(spec, views, theme),
        "views": packed,
        "data": payload,
        "script": (ASSETS / "explorer.js").read_text(encoding="utf-8"),
    }
    template = (ASSETS / "template.html").read_text(encoding="utf-8")
    # One pass, so text put in (the script, the SVGs) is never searched for markers.
    return re.sub(r"\{\{(\w+)\}\}", lambda m: parts[m.group(1)], template)


def _theme_css(theme: str) -> str:
    colours = THEMES[theme]
    return (":root{"
            f"--bg:{colours['bg']};--text:{colours['text']};--muted:{colours['muted']};"
            f"--line:{colours['cluster_pen']};--border:{colours['border']};"
            f"--panel:{colours['clusters'][0]};--raised:{colours['clusters'][1]};"
            f"--accent:{ACCENT[theme]};--skip:{colours['skip']};"
            f"--block:{colours['fills'][BLOCK]};"
            f"color-scheme:{theme}}}")


def _totals(spec) -> str:
    """The header's figures: input -> output, parameters, MACs, activation memory."""
    figures = [
        ("shape", "input → output",
         f"{shape_text(spec.input_shape)} → {shape_text(spec.output_shape)}"),
        ("params", "parameters", f"{spec.params:,}"),
        ("macs", "MACs", f"{spec.macs:,}"),
        ("activations", "activations", human_bytes(spec.activation_bytes)),
    ]
    titles = {"params": f"{human(spec.params)} parameters, auxiliary heads included",
              "macs": f"{human(spec.macs)} multiply-accumulates per image (eval mode)",
              "activations": "every layer output of one image (eval mode)",
              "shape": "the input and the main output"}
    return "".join(
        f'<div class="figure" data-total="{key}" title="{html.escape(titles[key])}">'
        f'<span class="label">{label}</span><b>{html.escape(value)}</b></div>'
        for key, label, value in figures)


def _legend(spec, views: list[View], theme: str) -> str:
    """The op families drawn in any view, as colour swatches."""
    fills = THEMES[theme]["fills"]
    used = {BLOCK if item.block else family(item.members[0].op.op)
            for view in views for item in view.drawn}
    order = list(FAMILIES) + ["other", BLOCK]
    return "".join(
        f'<span class="swatch"><i style="background:{fills[name]}"></i>'
        f"{html.escape(name)}</span>" for name in order if name in used)
