"""Diagrams and layer graphs checked by content: which edge joins which two layers,
in which direction, with which label, at full depth and collapsed.

The expected edges are written out by hand from the spec text below, not derived
from cnnspec's IR, so a renderer that reverses, drops or rewires an edge fails here
even when the number of edges stays right. The `cnnspec render` and `cnnspec graph`
commands are run in-process with the flags the README and the Makefile's `demo` use.
"""

from __future__ import annotations

import json
import re
import shutil
import struct
import xml.etree.ElementTree as ET

import pytest
from conftest import SPECS

graphviz = pytest.importorskip("graphviz")
nx = pytest.importorskip("networkx")

import cnnspec
from cnnspec.cli import main
from cnnspec.diagrams.graph import to_networkx, write_graph
from cnnspec.diagrams.render import svg, to_dot

needs_dot = pytest.mark.skipif(shutil.which("dot") is None,
                               reason="Graphviz `dot` is not installed")
SVG = "{http://www.w3.org/2000/svg}"

TINY = """\
block basic(c, stride = 1) {
    residual {
        conv1: conv c k=3 s=stride p=1 bias=false
        bn1:   batchnorm
    } shortcut downsample: auto {
        conv c k=1 s=stride bias=false
        batchnorm
    }
    relu
}

network tiny_res(classes = 10) {
    input 3x8x8
    conv1:   conv 4 k=3 p=1
    bn1:     batchnorm
    layer1:  basic(4), basic(8, stride=2)
    avgpool: avgpool global
    flatten
    fc:      linear classes
}

network other {
    input 1x4x4
    conv 2 k=3
}
"""

# tail -> head, read off the spec above. layer1.0 keeps its shape, so its shortcut
# is the identity (bn1 straight into the add); layer1.1 halves the grid and doubles
# the channels, so `auto` inserts the 1x1 projection downsample.0/.1.
FULL_EDGES = {
    ("input", "conv1"), ("conv1", "bn1"),
    ("bn1", "layer1.0.conv1"), ("layer1.0.conv1", "layer1.0.bn1"),
    ("layer1.0.bn1", "layer1.0.add"), ("bn1", "layer1.0.add"),
    ("layer1.0.add", "layer1.0.3"),
    ("layer1.0.3", "layer1.1.conv1"), ("layer1.1.conv1", "layer1.1.bn1"),
    ("layer1.0.3", "layer1.1.downsample.0"),
    ("layer1.1.downsample.0", "layer1.1.downsample.1"),
    ("layer1.1.bn1", "layer1.1.add"), ("layer1.1.downsample.1", "layer1.1.add"),
    ("layer1.1.add", "layer1.1.3"), ("layer1.1.3", "avgpool"),
    ("avgpool", "4"), ("4", "fc"),
}
DEPTH1_EDGES = {("input", "conv1"), ("conv1", "bn1"), ("bn1", "layer1.0"),
                ("layer1.0", "layer1.1"), ("layer1.1", "avgpool"), ("avgpool", "4"),
                ("4", "fc")}
# Shape labels on main-path edges: the tail's output.
LABELS = {("input", "conv1"): "3x8x8", ("conv1", "bn1"): "4x8x8",
          ("layer1.1.conv1", "layer1.1.bn1"): "8x4x4", ("avgpool", "4"): "8x1x1",
          ("4", "fc"): "8"}


@pytest.fixture
def tiny_path(tmp_path):
    path = tmp_path / "tiny.cnn"
    path.write_text(TINY, encoding="utf-8")
    return path


@pytest.fixture
def tiny():
    return cnnspec.load(TINY, network="tiny_res")


# ---------------------------------------------------------------- DOT source

_ID = r'(?:"((?:[^"\\]|\\.)*)"|([A-Za-z0-9_.]+))'
_EDGE = re.compile(rf"^\s*{_ID}\s*->\s*{_ID}\s*(?:\[(.*)\])?\s*$")


def dot_edges(source: str) -> dict[tuple[str, str], str]:
    """(tail, head) -> attribute text of every `tail -> head [...]` line."""
    edges = {}
    for line in source.splitlines():
        match = _EDGE.match(line)
        if match:
            tail = match.group(1) if match.group(1) is not None else match.group(2)
            head = match.group(3) if match.group(3) is not None else match.group(4)
            assert (tail, head) not in edges, f"edge drawn twice: {line}"
            edges[(tail, head)] = match.group(5) or ""
    return edges


def _label(attrs: str) -> str | None:
    match = re.search(r'label="\s*([^"]*?)\s*"', attrs)
    return match.group(1) if match else None


def test_dot_edges_are_the_specs_connections_tail_to_head(tiny):
    source = to_dot(tiny).source
    edges = dot_edges(source)
    assert set(edges) == FULL_EDGES
    assert not re.search(r"[^k]dir=", source)  # no edge is drawn against its direction
    for edge, shape in LABELS.items():
        assert _label(edges[edge]) == shape, edge


def test_dot_marks_the_identity_shortcut_into_the_add(tiny):
    edges = dot_edges(to_dot(tiny).source)
    shortcut = edges[("bn1", "layer1.0.add")]
    assert "#d1242f" in shortcut and "weight=0" in shortcut
    assert _label(shortcut) is None  # the shape is shown once, on the main path
    main_path = edges[("layer1.0.bn1", "layer1.0.add")]
    assert "#d1242f" not in main_path and _label(main_path) == "4x8x8"
    assert ("layer1.0.add", "bn1") not in edges


def test_dot_at_depth_1_connects_the_collapsed_blocks(tiny):
    edges = dot_edges(to_dot(tiny, depth=1).source)
    assert set(edges) == DEPTH1_EDGES
    assert _label(edges[("layer1.0", "layer1.1")]) == "4x8x8"
    assert _label(edges[("layer1.1", "avgpool")]) == "8x4x4"


def test_googlenet_depth_2_wires_each_branch_into_its_concat():
    edges = dot_edges(to_dot(cnnspec.load(SPECS / "googlenet.cnn"), depth=2).source)
    for branch in ("branch1", "branch2.0", "branch3.0", "branch4.0"):
        assert ("maxpool2", f"inception3a.{branch}") in edges
    for branch in ("branch1", "branch2.1", "branch3.1", "branch4.1"):
        assert (f"inception3a.{branch}", "inception3a.concat") in edges
    assert ("inception3a.branch2.0", "inception3a.branch2.1") in edges
    assert ("inception3a.concat", "inception3b.branch1") in edges
    assert _label(edges[("inception3a.concat", "inception3b.branch1")]) == "256x28x28"
    assert not any(head == "maxpool2" and tail.startswith("inception")
                   for tail, head in edges)


def test_googlenet_depth_1_aux_heads_hang_off_their_inception():
    edges = dot_edges(to_dot(cnnspec.load(SPECS / "googlenet.cnn"), depth=1).source)
    assert "style=dashed" in edges[("inception4a", "aux1")]
    assert "style=dashed" in edges[("inception4d", "aux2")]
    assert ("inception4a", "inception4b") in edges
    assert ("maxpool2", "inception3a") in edges and ("inception5b", "avgpool") in edges
    assert not any(tail in ("aux1", "aux2") for tail, _ in edges)


# ---------------------------------------------------------------- laid-out SVG


def _svg_layout(text: str):
    """(node centres by title, edges as (tail, head, arrowhead centre))."""
    centres, edges = {}, []
    for group in ET.fromstring(text).iter(f"{SVG}g"):
        title = group.find(f"{SVG}title")
        if group.get("class") == "node":
            texts = list(group.iter(f"{SVG}text"))
            xs = [float(t.get("x")) for t in texts]
            ys = [float(t.get("y")) for t in texts]
            centres[title.text] = (sum(xs) / len(xs), sum(ys) / len(ys))
        elif group.get("class") == "edge":
            tail, head = title.text.split("->")
            head_shape = group.find(f"{SVG}polygon")
            points = [tuple(map(float, p.split(",")))
                      for p in head_shape.get("points").split()]
            arrow = (sum(x for x, _ in points) / len(points),
                     sum(y for _, y in points) / len(points))
            edges.append((tail, head, arrow))
    return centres, edges


def _distance(a, b) -> float:
    return ((a[0] - b[0]) ** 2 + (a[1] - b[1]) ** 2) ** 0.5


@needs_dot
@pytest.mark.parametrize("rankdir", ["TB", "LR"])
def test_svg_arrows_point_at_the_consumer(tiny, rankdir):
    centres, edges = _svg_layout(svg(tiny, rankdir=rankdir))
    assert {(tail, head) for tail, head, _ in edges} == FULL_EDGES
    for tail, head, arrow in edges:
        assert _distance(arrow, centres[head]) < _distance(arrow, centres[tail]), \
            f"the arrowhead of {tail}->{head} sits at {tail}"
    axis = 1 if rankdir == "TB" else 0  # data flows down, or to the right
    for tail, head in [("input", "conv1"), ("conv1", "bn1"), ("layer1.1.3", "avgpool"),
                       ("4", "fc")]:
        assert centres[tail][axis] < centres[head][axis], (tail, head)
    assert centres["input"][axis] < centres["layer1.0.add"][axis] < centres["fc"][axis]


# ---------------------------------------------------------------- networkx graph


def test_networkx_edges_run_from_producer_to_consumer(tiny):
    graph = to_networkx(tiny)
    assert set(graph.edges) == FULL_EDGES
    assert graph.in_degree("input") == 0 and graph.out_degree("fc") == 0
    assert set(graph.predecessors("layer1.1.add")) == {"layer1.1.bn1",
                                                       "layer1.1.downsample.1"}
    assert set(graph.successors("layer1.0.3")) == {"layer1.1.conv1",
                                                   "layer1.1.downsample.0"}
    assert graph.edges["bn1", "layer1.0.add"]["shape"] == [4, 8, 8]
    assert graph.edges["layer1.1.conv1", "layer1.1.bn1"]["shape"] == [8, 4, 4]
    assert graph.graph["outputs"] == ["fc"]


def test_graph_files_keep_edge_direction(tiny, tmp_path):
    graphml = nx.read_graphml(write_graph(tiny, tmp_path / "tiny.graphml"))
    assert graphml.is_directed() and set(graphml.edges) == FULL_EDGES
    assert json.loads(graphml.edges["layer1.0.3", "layer1.1.downsample.0"]["shape"]) \
        == [4, 8, 8]
    data = json.loads(write_graph(tiny, tmp_path / "tiny.json").read_text())
    links = data.get("edges", data.get("links"))
    assert data["directed"] is True
    assert {(link["source"], link["target"]) for link in links} == FULL_EDGES


# ---------------------------------------------------------------- the commands


def _png_size(path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG")
    return struct.unpack(">II", data[16:24])


@needs_dot
def test_render_command_as_make_demo_runs_it(tmp_path):
    """`cnnspec render specs/googlenet.cnn -o out/googlenet.svg --depth 2`."""
    out = tmp_path / "out" / "googlenet.svg"
    out.parent.mkdir()
    assert main(["render", str(SPECS / "googlenet.cnn"), "-o", str(out),
                 "--depth", "2"]) == 0
    centres, edges = _svg_layout(out.read_text(encoding="utf-8"))
    pairs = {(tail, head) for tail, head, _ in edges}
    assert ("maxpool2", "inception3a.branch1") in pairs
    assert ("inception3a.branch4.1", "inception3a.concat") in pairs
    assert "inception3a" not in centres and "inception3a.branch2.1" in centres


@needs_dot
def test_render_command_dpi_scales_the_png(tiny_path, tmp_path):
    low, high = tmp_path / "low.png", tmp_path / "high.png"
    for out, dpi in ((low, "72"), (high, "144")):
        assert main(["render", str(tiny_path), "--network", "tiny_res", "-o", str(out),
                     "--depth", "1", "--dpi", dpi]) == 0
    (w1, h1), (w2, h2) = _png_size(low), _png_size(high)
    assert abs(w2 / w1 - 2) < 0.05 and abs(h2 / h1 - 2) < 0.05


@pytest.mark.parametrize("suffix", ["dot", "gv"])
def test_render_command_writes_dot_for_the_chosen_network(tiny_path, tmp_path, suffix):
    out = tmp_path / f"tiny.{suffix}"
    assert main(["render", str(tiny_path), "--network", "tiny_res", "-o", str(out),
                 "--depth", "2"]) == 0
    source = out.read_text(encoding="utf-8")
    assert source.startswith("digraph tiny_res")
    assert set(dot_edges(source)) == FULL_EDGES
    other = tmp_path / f"other.{suffix}"
    assert main(["render", str(tiny_path), "--network", "other", "-o", str(other),
                 "--rankdir", "LR", "--no-shapes"]) == 0
    source = other.read_text(encoding="utf-8")
    assert source.startswith("digraph other") and "rankdir=LR" in source
    edges = dot_edges(source)
    assert set(edges) == {("input", "0")} and _label(edges[("input", "0")]) is None


@needs_dot
@pytest.mark.parametrize("suffix, magic", [("svg", b"<?xml"), ("png", b"\x89PNG"),
                                           ("pdf", b"%PDF")])
def test_render_command_formats(tiny_path, tmp_path, suffix, magic):
    out = tmp_path / f"tiny.{suffix}"
    assert main(["render", str(tiny_path), "--network", "tiny_res", "-o", str(out),
                 "--depth", "1", "--dpi", "96", "--theme", "dark"]) == 0
    assert out.read_bytes().startswith(magic)


def test_render_and_graph_command_refusals(tiny_path, tmp_path, capsys):
    for argv in (["render", str(tiny_path), "--network", "tiny_res", "-o",
                  str(tmp_path / "x.jpg")],
                 ["render", str(tiny_path), "--network", "tiny_res", "-o",
                  str(tmp_path / "x.svg"), "--depth", "0"],
                 ["render", str(tiny_path), "--network", "tiny_res", "-o",
                  str(tmp_path / "x.png"), "--dpi", "0"]):
        with pytest.raises(SystemExit) as exit_:
            main(argv)
        assert exit_.value.code == 2, argv
    capsys.readouterr()
    # two networks and no --network: a spec error naming both
    assert main(["graph", str(tiny_path), "-o", str(tmp_path / "x.graphml")]) == 1
    err = capsys.readouterr().err
    assert "E0213" in err and "tiny_res" in err and "other" in err
    assert not (tmp_path / "x.graphml").exists()


@pytest.mark.parametrize("suffix", ["graphml", "json"])
def test_graph_command_writes_directed_edges(tiny_path, tmp_path, suffix):
    out = tmp_path / f"tiny.{suffix}"
    assert main(["graph", str(tiny_path), "--network", "tiny_res", "--set",
                 "classes=3", "-o", str(out)]) == 0
    if suffix == "graphml":
        graph = nx.read_graphml(out)
        assert graph.is_directed()
        edges = set(graph.edges)
        assert json.loads(graph.nodes["fc"]["output_shape"]) == [3]
    else:
        data = json.loads(out.read_text())
        edges = {(link["source"], link["target"])
                 for link in data.get("edges", data.get("links"))}
        assert {n["id"]: n for n in data["nodes"]}["fc"]["output_shape"] == [3]
    assert edges == FULL_EDGES


def test_graph_command_on_a_library_spec(tmp_path):
    """`cnnspec graph specs/resnet50.cnn -o resnet50.graphml` (the CLI's example)."""
    out = tmp_path / "resnet50.graphml"
    assert main(["graph", str(SPECS / "resnet50.cnn"), "-o", str(out)]) == 0
    graph = nx.read_graphml(out)
    assert ("layer1.0.downsample.1", "layer1.0.add") in graph.edges
    assert ("maxpool", "layer1.0.downsample.0") in graph.edges
    assert ("layer1.0.add", "maxpool") not in graph.edges
    assert nx.is_directed_acyclic_graph(graph)
    assert list(nx.topological_sort(graph))[0] == "input"
