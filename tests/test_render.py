"""Diagram (graphviz) and networkx backends: counts and edges checked against the IR.

Every SVG here is laid out by the real Graphviz `dot`; node and cluster counts are
read back from it and compared with counts computed from the IR independently of
cnnspec.diagrams.render.
"""

import json
import re
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ET

import pytest
from conftest import SPECS

graphviz = pytest.importorskip("graphviz")
nx = pytest.importorskip("networkx")

import cnnspec
from cnnspec.diagrams.graph import to_networkx, write_graph
from cnnspec.diagrams import render
from cnnspec.diagrams.render import RenderError, svg, to_dot

ALL_SPECS = sorted(SPECS.glob("*.cnn"))
needs_dot = pytest.mark.skipif(shutil.which("dot") is None,
                               reason="Graphviz `dot` is not installed")
SVG = "{http://www.w3.org/2000/svg}"


def _load(name):
    return cnnspec.load(SPECS / f"{name}.cnn")


def _parse(svg_text: str) -> dict:
    """class -> list of (title, text) for every <g class="node|cluster|edge">."""
    found = {"node": [], "cluster": [], "edge": []}
    for group in ET.fromstring(svg_text).iter(f"{SVG}g"):
        kind = group.get("class")
        if kind in found:
            title = group.find(f"{SVG}title").text
            text = " ".join(t.text or "" for t in group.iter(f"{SVG}text"))
            found[kind].append((title, text))
    return found


def _prefixes(names) -> set:
    """Every proper dotted prefix of the names: the scopes that must be clusters."""
    return {".".join(parts[:k]) for parts in (n.split(".") for n in names)
            for k in range(1, len(parts))}


def _depth1_keys(spec) -> list:
    """What depth 1 draws before folding repeats: the outermost block or the layer."""
    keys = {}
    for node in spec.graph.nodes:
        keys.setdefault(node.blocks[0][0] if node.blocks else node.name, None)
    return list(keys)


def _repeat(text: str) -> int:
    match = re.search(r"×(\d+)", text)
    return int(match.group(1)) if match else 1


# ---------------------------------------------------------------- SVG against the IR


@needs_dot
@pytest.mark.parametrize("path", ALL_SPECS, ids=lambda p: p.stem)
def test_full_depth_draws_every_layer_and_scope(path):
    spec = cnnspec.load(path)
    drawn = _parse(svg(spec))
    names = [node.name for node in spec.graph.nodes]
    assert sorted(t for t, _ in drawn["node"]) == sorted(names)
    clusters = {t for t, _ in drawn["cluster"]}
    assert len(drawn["cluster"]) == len(clusters)
    assert clusters == {f"cluster_{p}" for p in _prefixes(names)}
    blocks = {path for node in spec.graph.nodes for path, _ in node.blocks}
    assert {f"cluster_{p}" for p in blocks} <= clusters  # every block instance
    nodes = spec.graph.nodes
    ir_edges = {(nodes[i].name, node.name) for node in nodes for i in node.inputs}
    drawn_edges = [tuple(title.split("->")) for title, _ in drawn["edge"]]
    assert len(drawn_edges) == len(ir_edges)
    assert set(drawn_edges) == ir_edges  # every edge tail -> head, as the data flows


@needs_dot
@pytest.mark.parametrize("path", ALL_SPECS, ids=lambda p: p.stem)
def test_depth_1_draws_one_node_per_outer_block(path):
    spec = cnnspec.load(path)
    drawn = _parse(svg(spec, depth=1))
    keys = _depth1_keys(spec)
    titles = [t for t, _ in drawn["node"]]
    assert set(titles) <= set(keys)
    # a node marked xN stands for N consecutive identical instances
    assert sum(_repeat(text) for _, text in drawn["node"]) == len(keys)
    assert {t for t, _ in drawn["cluster"]} == {f"cluster_{p}" for p in _prefixes(keys)}


@needs_dot
def test_googlenet_depth_1_is_stem_nine_inceptions_and_head():
    spec = _load("googlenet")
    drawn = _parse(svg(spec, depth=1))
    titles = [t for t, _ in drawn["node"]]
    assert sorted(t for t in titles if t.startswith("inception")) == [
        f"inception{k}" for k in ("3a", "3b", "4a", "4b", "4c", "4d", "4e", "5a", "5b")]
    stem = ["input", "conv1", "maxpool1", "conv2", "conv3", "maxpool2"]
    head = ["avgpool", "dropout", "fc"]
    assert set(stem + head + ["aux1", "aux2"]) <= set(titles)
    assert len(titles) == 6 + 9 + 3 + 2 + 1 + 2  # + maxpool3/4, flatten, aux heads
    assert drawn["cluster"] == []
    texts = dict(drawn["node"])
    assert "256x28x28" in texts["inception3a"]
    assert "155.87k params" in texts["inception3a"]
    assert "inception" in texts["inception5b"] and "1024x7x7" in texts["inception5b"]


@needs_dot
def test_repeated_blocks_fold_into_one_node():
    drawn = _parse(svg(_load("resnet50"), depth=1))
    texts = dict(drawn["node"])
    assert "×2" in texts["layer1.1"] and "×3" in texts["layer2.1"]
    assert "×5" in texts["layer3.1"] and "×2" in texts["layer4.1"]
    assert "×" not in texts["layer1.0"]
    assert {t for t, _ in drawn["cluster"]} == {f"cluster_layer{k}" for k in range(1, 5)}


def test_dot_source_marks_shortcuts_aux_heads_and_shapes():
    source = to_dot(_load("googlenet")).source
    assert "style=dashed" in source  # auxiliary heads
    assert "256x28x28" in source  # shapes on edges
    resnet = to_dot(_load("resnet18")).source
    assert "#d1242f" in resnet  # residual shortcuts in the accent colour
    bare = to_dot(_load("resnet18"), shapes=False, rankdir="LR", theme="dark").source
    assert "rankdir=LR" in bare and "64x56x56 " not in bare and "#0d1117" in bare


def test_bad_options_are_refused():
    spec = _load("lenet5")
    with pytest.raises(ValueError):
        to_dot(spec, depth=0)
    with pytest.raises(ValueError):
        to_dot(spec, rankdir="BT")
    with pytest.raises(ValueError):
        to_dot(spec, theme="neon")
    with pytest.raises(RenderError, match="svg, .png"):
        render(spec, "lenet.jpg")


@needs_dot
@pytest.mark.parametrize("suffix, magic", [("svg", b"<?xml"), ("png", b"\x89PNG"),
                                           ("pdf", b"%PDF")])
def test_render_writes_each_format(tmp_path, suffix, magic):
    out = render(_load("alexnet"), tmp_path / f"alexnet.{suffix}", depth=1)
    assert out.read_bytes().startswith(magic)


def test_dot_output_needs_no_graphviz_binary(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    spec = _load("resnet18")
    out = render(spec, tmp_path / "resnet18.dot")
    assert out.read_text().startswith("digraph resnet18")
    with pytest.raises(RenderError) as problem:
        render(spec, tmp_path / "resnet18.svg")
    message = str(problem.value)
    assert "apt-get install graphviz" in message and "brew install graphviz" in message
    assert "conda" in message
    assert not (tmp_path / "resnet18.svg").exists()


def test_rendering_imports_no_torch():
    code = ("import sys, cnnspec; from cnnspec.diagrams.render import to_dot; "
            f"to_dot(cnnspec.load({str(SPECS / 'googlenet.cnn')!r})); "
            "from cnnspec.diagrams.graph import to_networkx; "
            f"to_networkx(cnnspec.load({str(SPECS / 'resnet18.cnn')!r})); "
            "assert 'torch' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


@needs_dot
def test_densenet121_full_depth_render_time(tmp_path):
    spec = _load("densenet121")
    start = time.perf_counter()
    render(spec, tmp_path / "densenet121.svg")
    elapsed = time.perf_counter() - start
    print(f"\ndensenet121 full depth ({len(spec.graph.nodes)} nodes) -> svg: "
          f"{elapsed:.2f} s")


# ---------------------------------------------------------------- networkx


@pytest.mark.parametrize("path", ALL_SPECS, ids=lambda p: p.stem)
def test_networkx_graph_matches_the_ir(path):
    spec = cnnspec.load(path)
    graph = to_networkx(spec)
    nodes = spec.graph.nodes
    assert nx.is_directed_acyclic_graph(graph)
    assert graph.number_of_nodes() == len(nodes)
    assert set(graph.edges) == {(nodes[i].name, n.name) for n in nodes for i in n.inputs}
    for node in nodes:
        attrs, facts = graph.nodes[node.name], spec.table[node.id]
        assert attrs["op"] == node.op.op and attrs["label"] == node.op.label()
        assert attrs["params"] == facts.params and attrs["macs"] == facts.macs
        assert attrs["output_shape"] == list(facts.shape)
        assert attrs["receptive_field"] == list(facts.receptive_field)
        assert attrs["block_path"] == [p for p, _ in node.blocks]
        assert attrs["training_only"] == node.training_only
    assert sum(p for _, p in graph.nodes(data="params")) == spec.params


def test_graph_files_round_trip(tmp_path):
    spec = _load("googlenet")
    graphml = nx.read_graphml(write_graph(spec, tmp_path / "g.graphml"))
    conv = graphml.nodes["inception3a.branch2.1.conv"]
    assert json.loads(conv["output_shape"]) == [128, 28, 28]
    assert json.loads(conv["block_path"]) == ["inception3a", "inception3a.branch2.1"]
    assert conv["macs"] == spec.facts("inception3a.branch2.1.conv").macs
    assert graphml.number_of_edges() == to_networkx(spec).number_of_edges()
    data = json.loads(write_graph(spec, tmp_path / "g.json").read_text())
    by_id = {node["id"]: node for node in data["nodes"]}
    assert by_id["aux1.fc2"]["training_only"] is True
    assert by_id["fc"]["output_shape"] == [1000]
    with pytest.raises(ValueError, match="graphml or .json"):
        write_graph(spec, tmp_path / "g.csv")
