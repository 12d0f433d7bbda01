"""The HTML explorer (`cnnspec render SPEC -o arch.html`), read as a file: no browser.

Expected numbers are worked out by hand from the papers' layer tables (GoogLeNet's
table 1, torchvision's ResNet-50), and the expected views and drawn nodes from the
IR's block paths, not from cnnspec.diagrams.explorer's own planning.
"""

from __future__ import annotations

import json
import re
import shutil
import xml.etree.ElementTree as ET

import pytest
from conftest import ROOT, SPECS, line_of

pytest.importorskip("graphviz")

import cnnspec
from cnnspec.cli import main
from cnnspec.diagrams.explorer import explorer_html, unpack_views
from cnnspec.diagrams.explorer.views import locate, plan
from cnnspec.diagrams import RenderError, output_format, render, svg

needs_dot = pytest.mark.skipif(shutil.which("dot") is None,
                               reason="Graphviz `dot` is not installed")
SVG = "{http://www.w3.org/2000/svg}"
# GoogLeNet's inception (4a): 1x1 192; 1x1 96 -> 3x3 208; 1x1 16 -> "5x5" 48 (a 3x3 in
# torchvision); pool -> 1x1 64, on 480 input channels, each conv bias-free + batchnorm.
INCEPTION_4A = (480 * 192 + 2 * 192 + 480 * 96 + 2 * 96 + 9 * 96 * 208 + 2 * 208
                + 480 * 16 + 2 * 16 + 9 * 16 * 48 + 2 * 48 + 480 * 64 + 2 * 64)
# torchvision's ResNet-50 bottleneck at 1024 channels, width 256 (layer3.1 ... 3.5).
BOTTLENECK_1024 = (1024 * 256 + 2 * 256 + 9 * 256 * 256 + 2 * 256 + 256 * 1024
                   + 2 * 1024)


def page_data(page: str) -> dict:
    found = re.search(r'<script type="application/json" id="explorer-data">(.*?)</script>',
                      page, re.S)
    return json.loads(found.group(1))


def drawn(svg_text: str) -> dict[str, set[str]]:
    """"node" / "cluster" -> the data-path of every such group in a view's SVG."""
    found = {"node": set(), "cluster": set()}
    for group in ET.fromstring(svg_text).iter(f"{SVG}g"):
        if group.get("class") in found:
            found[group.get("class")].add(group.get("data-path"))
    return found


@pytest.fixture(scope="module")
def googlenet():
    spec = cnnspec.load(SPECS / "googlenet.cnn")
    page = explorer_html(spec, depth=1)
    return spec, page, page_data(page), unpack_views(page)


@pytest.fixture(scope="module")
def resnet50():
    spec = cnnspec.load(SPECS / "resnet50.cnn")
    page = explorer_html(spec, depth=1)
    return spec, page, page_data(page), unpack_views(page)


# ---------------------------------------------------------------- self-contained


@needs_dot
def test_page_is_self_contained(googlenet):
    _, page, _, _ = googlenet
    assert page.startswith("<!DOCTYPE html>")
    links = re.findall(r'\b(?:src|href)\s*=\s*["\']([^"\']*)', page)
    assert links and all(link.startswith(("data:", "#")) for link in links), links
    assert not re.search(r"<script[^>]*\bsrc=", page)
    assert not re.search(r"<link[^>]*stylesheet", page)
    assert "@import" not in page and not re.search(r"url\(\s*['\"]?https?:", page)
    assert "{{" not in page  # every template marker filled
    # the script and the styles are inlined, and the JSON cannot end its script early
    assert "function showView" in page and "#canvas .node" in page
    data = re.search(r'id="explorer-data">(.*?)</script>', page, re.S).group(1)
    assert "</" not in data


def test_assets_ship_inside_the_package():
    """explorer.js, .css and template.html sit in the package folder the wheel takes
    (hatch's `packages = ["cnnspec"]` includes every file under it)."""
    folder = ROOT / "cnnspec" / "diagrams" / "explorer"
    for name in ("explorer.js", "explorer.css", "template.html"):
        assert (folder / name).is_file(), name
    ignored = (ROOT / ".gitignore").read_text()
    assert not re.search(r"^\*?\.(js|css|html)$", ignored, re.M)


# ---------------------------------------------------------------- views


@needs_dot
def test_every_block_at_depth_or_deeper_has_a_view(googlenet):
    spec, _, data, views = googlenet
    expected = {""} | {path for node in spec.graph.nodes
                       for path, _ in node.blocks}  # depth 1: every block instance
    assert set(views) == expected == set(data["views"])
    assert "inception4a.branch2.1" in views  # the conv_bn inside, down to layers


def test_depth_2_has_no_view_for_outer_blocks(googlenet):
    views = {view.key: view for view in plan(googlenet[0], 2)}
    assert "inception4a" not in views and "inception4a.branch1" in views
    base = {item.key for item in views[""].drawn}
    assert "inception4a.branch1" in base and "inception4a" not in base


@needs_dot
def test_base_view_draws_what_render_draws(googlenet):
    spec, _, _, views = googlenet
    titles = {group.find(f"{SVG}title").text
              for group in ET.fromstring(svg(spec, depth=1)).iter(f"{SVG}g")
              if group.get("class") == "node"}
    assert drawn(views[""])["node"] == titles
    assert "inception4a" in titles


@needs_dot
def test_opening_inception4a_draws_its_four_branches(googlenet):
    _, _, data, views = googlenet
    shown = drawn(views["inception4a"])
    assert "inception4a" not in shown["node"] and "inception4a" in shown["cluster"]
    assert {"inception4a.branch1", "inception4a.branch2.0", "inception4a.branch2.1",
            "inception4a.branch3.0", "inception4a.branch3.1", "inception4a.branch4.0",
            "inception4a.branch4.1", "inception4a.concat"} <= shown["node"]
    assert {"inception4a.branch2", "inception4a.branch3",
            "inception4a.branch4"} <= shown["cluster"]
    assert {"inception3a", "inception4b", "aux1"} <= shown["node"]  # the rest stays shut
    view = data["views"]["inception4a"]
    assert view["parent"] == "" and view["chain"] == ["", "inception4a"]
    assert view["nodes"]["inception4a.branch1"]["opens"] == "inception4a.branch1"
    assert set(view["nodes"]) == shown["node"]


@needs_dot
def test_the_deepest_views_draw_single_layers(googlenet):
    _, _, data, views = googlenet
    shown = drawn(views["inception4a.branch2.1"])
    assert {"inception4a.branch2.1.conv", "inception4a.branch2.1.bn",
            "inception4a.branch2.1.2"} <= shown["node"]
    assert {"inception4a", "inception4a.branch2.1"} <= shown["cluster"]
    view = data["views"]["inception4a.branch2.1"]
    assert view["chain"] == ["", "inception4a", "inception4a.branch2.1"]
    assert view["parent"] == "inception4a" and view["anchor"] == "inception4a.branch2.1"
    assert view["nodes"]["inception4a.branch2.1.conv"]["opens"] is None


@needs_dot
def test_every_node_and_cluster_carries_its_path(resnet50):
    _, _, data, views = resnet50
    for key, svg_text in views.items():
        groups = [g for g in ET.fromstring(svg_text).iter(f"{SVG}g")
                  if g.get("class") in ("node", "cluster")]
        assert groups and all(g.get("data-path") for g in groups), key
        assert drawn(svg_text)["node"] == set(data["views"][key]["nodes"]), key


@needs_dot
def test_full_depth_is_one_view_of_every_layer():
    spec = cnnspec.load(SPECS / "resnet18.cnn")
    views = unpack_views(explorer_html(spec, depth=None))
    assert list(views) == [""]
    assert drawn(views[""])["node"] == {node.name for node in spec.graph.nodes}


# ---------------------------------------------------------------- facts


@needs_dot
def test_inception4a_facts(googlenet):
    _, _, data, _ = googlenet
    facts = data["facts"]["inception4a"]
    assert facts["params"] == INCEPTION_4A and facts["params_text"] == "364,512"
    assert facts["kind"] == "block" and facts["op"] == "inception"
    assert facts["out"] == "512x14x14"
    assert facts["in"] == [{"shape": "480x14x14", "from": "maxpool3"}]
    assert facts["layers"] == 20  # six conv_bn of 3 layers, the pool, the concat
    assert facts["source"]["file"].endswith("googlenet.cnn")
    assert facts["source"]["line"] == line_of("googlenet", "inception4a: inception(")
    assert facts["source"]["text"].startswith(
        "inception4a: inception(192, 96, 208, 16, 48, 64)")
    # MACs: every conv's weights times the 14x14 outputs (batchnorm counts none)
    convs = (480 * 192 + 480 * 96 + 9 * 96 * 208 + 480 * 16 + 9 * 16 * 48 + 480 * 64)
    assert facts["macs"] == convs * 14 * 14
    # activation memory: every layer output inside it, 4 bytes each
    channels = 3 * 192 + 3 * 96 + 3 * 208 + 3 * 16 + 3 * 48 + 480 + 3 * 64 + 512
    assert facts["activation_bytes"] == channels * 14 * 14 * 4


@needs_dot
def test_layer_facts_and_source_line(resnet50):
    _, _, data, _ = resnet50
    facts = data["facts"]["layer3.1.conv2"]
    assert facts["params"] == 589_824 and facts["params_text"] == "589,824"
    assert facts["macs"] == 589_824 * 14 * 14
    assert facts["out"] == "256x14x14"
    assert facts["in"] == [{"shape": "256x14x14", "from": "layer3.1.relu"}]
    assert facts["source"]["file"].endswith("blocks/resnet.cnn")
    assert facts["source"]["line"] == 26 and facts["source"]["text"].startswith("conv2:")
    assert data["facts"]["fc"]["rf"] == "global"
    assert data["facts"]["conv1"]["rf"] == "7"


@needs_dot
def test_a_folded_run_sums_its_instances(resnet50):
    _, _, data, views = resnet50
    node = data["views"][""]["nodes"]["layer3.1"]
    assert node["opens"] == "layer3.1"
    facts = data["facts"][node["facts"]]
    assert facts["kind"] == "repeat" and facts["op"] == "bottleneck ×5"
    assert facts["instances"] == [f"layer3.{k}" for k in range(1, 6)]
    assert facts["params"] == 5 * BOTTLENECK_1024 and facts["params_text"] == "5,585,920"
    assert facts["in"] == [{"shape": "1024x14x14", "from": "layer3.0.9"}]
    # inside layer3.3's view the run splits around it: 3.1-3.2, 3.3 open, 3.4-3.5
    view = data["views"]["layer3.3"]
    assert view["nodes"]["layer3.1"]["facts"] == "layer3.1…layer3.2"
    assert view["nodes"]["layer3.4"]["facts"] == "layer3.4…layer3.5"
    assert view["anchor"] == "layer3.1"  # closing it goes back to the folded node
    assert "layer3.3.conv2" in drawn(views["layer3.3"])["node"]


@needs_dot
def test_search_knows_where_every_name_is_drawn(resnet50):
    spec, _, data, views = resnet50
    where = data["where"]
    assert set(data["names"]) == set(where)
    for node in spec.graph.nodes:
        view, path = where[node.name]
        assert path == node.name and path in drawn(views[view])["node"]
    assert where["layer3.1.conv2"] == ["layer3.1", "layer3.1.conv2"]
    assert where["layer3.0"] == ["", "layer3.0"]  # a node of its own at depth 1
    assert where["layer3.3"] == ["layer3.3", "layer3.3"]  # folded: its open cluster
    assert where["conv1"] == ["", "conv1"]


@needs_dot
def test_totals_are_always_in_the_header(resnet50):
    spec, page, _, _ = resnet50
    header = page[page.index("<header>"):page.index("</header>")]
    assert "25,557,032" in header  # torchvision's resnet50 parameter count
    assert f"{spec.macs:,}" in header
    assert "3x224x224 → 1000" in header
    assert re.search(r'data-total="activations"[^>]*>.*?MiB', header)


# ---------------------------------------------------------------- entry points


@needs_dot
def test_render_command_writes_html_at_depth_1(tmp_path):
    out = tmp_path / "resnet18.html"
    assert main(["render", str(SPECS / "resnet18.cnn"), "-o", str(out)]) == 0
    page = out.read_text(encoding="utf-8")
    assert page_data(page)["depth"] == 1
    assert {"layer1.0", "layer4.1"} <= drawn(unpack_views(page)[""])["node"]


@needs_dot
def test_render_api_and_spec_method(tmp_path):
    spec = cnnspec.load(SPECS / "lenet5.cnn")
    out = render(spec, tmp_path / "lenet5.HTM", theme="dark", rankdir="LR")
    page = out.read_text(encoding="utf-8")
    assert 'data-theme="dark"' in page and "--bg:#0d1117" in page
    assert 'rankdir' not in page  # laid out already: no DOT travels
    assert spec.explorer_html().startswith("<!DOCTYPE html>")
    assert output_format("a.html") == output_format("b.htm") == "html"


def test_bad_extension_names_the_formats(tmp_path, capsys):
    with pytest.raises(RenderError, match=r"\.dot or \.html"):
        render(cnnspec.load(SPECS / "lenet5.cnn"), tmp_path / "lenet5.txt")
    with pytest.raises(SystemExit) as exit_:
        main(["render", str(SPECS / "lenet5.cnn"), "-o", str(tmp_path / "x.xhtml")])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "x.xhtml" in err and ".html (the interactive explorer)" in err
    assert not (tmp_path / "x.xhtml").exists()


def test_bad_options_are_refused():
    spec = cnnspec.load(SPECS / "lenet5.cnn")
    with pytest.raises(ValueError, match="depth must be 1 or more"):
        explorer_html(spec, depth=0)
    with pytest.raises(ValueError, match="theme must be one of light, dark"):
        explorer_html(spec, theme="neon")
    with pytest.raises(ValueError, match="rankdir must be TB or LR"):
        explorer_html(spec, rankdir="BT")


def test_without_dot_the_error_says_how_to_install_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    out = tmp_path / "lenet5.html"
    assert main(["render", str(SPECS / "lenet5.cnn"), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "apt-get install graphviz" in err
    assert not out.exists()


# ---------------------------------------------------------------- every library spec


@pytest.mark.parametrize("path", sorted(SPECS.glob("*.cnn")), ids=lambda p: p.stem)
def test_every_view_draws_each_layer_once_and_search_finds_all(path):
    """No layout needed: each view's nodes partition the layers; the opened block is
    open (its layers drawn inside it), and every name is found where it is drawn."""
    spec = cnnspec.load(path)
    views = plan(spec, 1)
    names = {node.name for node in spec.graph.nodes}
    for view in views:
        members = [node.name for item in view.drawn for node in item.members]
        assert sorted(members) == sorted(names), view.key
        assert view.key not in {item.key for item in view.drawn}
        for item in view.drawn:
            if view.key and any(view.key == p for node in item.members
                                for p, _ in node.blocks):
                assert item.key.startswith(view.key + "."), (view.key, item.key)
    by_key = {view.key: view for view in views}
    for name, (view, drawn_path) in locate(spec, views).items():
        items = {item.key: item for item in by_key[view].drawn}
        assert drawn_path == name
        if name in names:  # a layer: a node of that view
            assert name in items, name
        elif name in items:  # a block drawn as one node, not folded into an xN
            assert items[name].count == 1, name
        else:  # at depth 1 a block is a cluster only where it is opened
            assert name == view and name in by_key[view].chain, name
