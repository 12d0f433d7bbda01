"""`cnnspec explain`: every number with its arithmetic.

The numbers are the summary's (one computation, two views) for every layer of every
spec in specs/, and every formula, evaluated by a small safe evaluator of its own
(numbers, + - * / // %, parentheses, max, min, ceil, floor), gives its number.
"""

from __future__ import annotations

import ast
import importlib.util
import math
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest

import cnnspec
from cnnspec.cli import main
from cnnspec.analyses.explain import SHAPE_KEYS, UnknownLayer
from cnnspec.analyses.explain.render import markdown
from cnnspec.analyses.summary import collapse

ROOT = Path(__file__).resolve().parent.parent
SPECS = sorted((ROOT / "specs").glob("*.cnn"))

_BINARY = {ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b,
           ast.Mult: lambda a, b: a * b, ast.Div: lambda a, b: a / b,
           ast.FloorDiv: lambda a, b: a // b, ast.Mod: lambda a, b: a % b}
_CALLS = {"max": lambda *a: max(a), "min": lambda *a: min(a), "ceil": math.ceil,
          "floor": math.floor}


@cache
def arithmetic(text: str):
    """The value of plain arithmetic; anything else (a name, an attribute) fails."""

    def walk(node):
        if isinstance(node, ast.Constant) and type(node.value) in (int, float):
            return node.value
        if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
            chain = []  # a long sum nests to the left: fold it without recursing
            while isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
                chain.append((node.op, node.right))
                node = node.left
            value = walk(node)
            for op, right in reversed(chain):
                value = _BINARY[type(op)](value, walk(right))
            return value
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -walk(node.operand)
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) in _CALLS \
                and not node.keywords:
            return _CALLS[node.func.id](*map(walk, node.args))
        raise AssertionError(f"not plain arithmetic: {text!r}")

    return walk(ast.parse(text, mode="eval").body)


@pytest.fixture(scope="module")
def library():
    """Every spec in specs/, loaded once, with its summary and explanation."""
    return {path.stem: (spec, spec.summary(), spec.explain())
            for path in SPECS for spec in [cnnspec.load(path)]}


def _check_formulas(record, where):
    for quantity in record.quantities:
        assert arithmetic(quantity.formula) == quantity.value, (
            f"{where} {record.name} {quantity.key}: {quantity.formula} = "
            f"{arithmetic(quantity.formula)}, not {quantity.value}")


def test_the_library_is_all_here(library):
    assert len(library) == len(SPECS) >= 80


def test_numbers_equal_the_summarys_and_formulas_give_them(library):
    for name, (spec, summary, explanation) in library.items():
        assert len(explanation.records) == len(summary.layers), name
        for record, layer, node in zip(explanation.records, summary.layers,
                                       spec.graph.nodes[1:]):
            where = f"{name}:{record.name}"
            assert (record.name, record.op, record.output_shape) == (
                layer.name, layer.op, layer.output_shape), where
            assert (record.params, record.macs, record.activation_bytes) == (
                layer.params, layer.macs, layer.activation_bytes), where
            assert list(record.receptive_field) == layer.receptive_field, where
            assert record.receptive_field_global == layer.receptive_field_global, where
            assert tuple(record.jump) == spec.table[node.id].jump, where
            assert record.value("values") == math.prod(layer.output_shape), where
            keys = {q.key for q in record.quantities}
            assert keys >= {"params", "macs", "values", "bytes", "rf_h", "rf_w",
                            "jump_h", "jump_w"}, where
            for quantity in record.quantities:
                if quantity.key in SHAPE_KEYS:
                    axis = SHAPE_KEYS.index(quantity.key)
                    assert quantity.value == layer.output_shape[axis], where
            if len(layer.output_shape) == 3 and node.op.op in (
                    "conv", "dwconv", "maxpool", "avgpool", "conv_transpose"):
                assert {"height", "width"} <= keys, where
            _check_formulas(record, name)


def test_totals_are_the_specs(library):
    for name, (spec, _, explanation) in library.items():
        totals = explanation.totals
        assert (totals.params, totals.macs, totals.activation_bytes) == (
            spec.params, spec.macs, spec.activation_bytes), name
        _check_formulas(totals, name)
        assert sum(s.value for s in explanation.param_shares) == spec.params, name
        assert abs(sum(s.share for s in explanation.memory_shares) - 1) < 1e-9, name


@pytest.mark.parametrize("name", ["googlenet", "resnet50", "densenet121",
                                  "efficientnet_b0", "convnext_tiny", "unet",
                                  "fractalnet", "shufflenet_v2_x1_0", "inception_v3"])
def test_blocks_sum_like_summary_depth(library, name):
    spec, summary, _ = library[name]
    for depth in (1, 2):
        rows = collapse(spec, summary, depth).layers
        records = spec.explain(depth=depth).records
        assert [r.name for r in records] == [row.name for row in rows]
        for record, row in zip(records, rows):
            assert (record.op, record.output_shape, record.params, record.macs,
                    record.activation_bytes, list(record.receptive_field),
                    record.receptive_field_global) == (
                row.op, row.output_shape, row.params, row.macs, row.activation_bytes,
                row.receptive_field, row.receptive_field_global), record.name
            _check_formulas(record, name)


def test_a_named_block_gives_its_layers_then_its_sums(library):
    spec, summary, _ = library["googlenet"]
    records = spec.explain("inception3a").records
    members = [n for n in spec.layer_names if n.startswith("inception3a.")]
    assert [r.name for r in records[:-1]] == members
    block = records[-1]
    assert (block.kind, block.name, block.op) == ("block", "inception3a", "inception")
    row = next(r for r in collapse(spec, summary, 1).layers if r.name == "inception3a")
    assert (block.params, block.macs, block.activation_bytes) == (
        row.params, row.macs, row.activation_bytes)
    # A dotted group that is not a block instance (VGG's `features`) sums too.
    vgg = library["vgg16"][0]
    group = vgg.explain("features").records[-1]
    assert group.op == "group"
    assert group.params == sum(vgg.facts(n).params for n in vgg.layer_names
                               if n.startswith("features."))
    # With --depth, a named block's inner blocks are summed one level down.
    inner = spec.explain("inception3a", depth=2).records
    assert [r.name for r in inner][:3] == ["inception3a.branch1",
                                           "inception3a.branch2.0",
                                           "inception3a.branch2.1"]


def test_alexnet_conv1_reads_like_the_lecture_notes(capsys):
    assert main(["explain", str(ROOT / "specs" / "alexnet.cnn"), "conv1"]) == 0
    out = capsys.readouterr().out
    for text in ("(227 - 11 + 2*0) / 4 + 1 = 55", "11*11*3*96 + 96 = 34,944",
                 "55*55*96 * 11*11*3 = 105,415,200", "96*55*55 = 290,400 values, 1.1 MiB",
                 "rf = 1 + (11-1)*1 = 11, jump = 1*4 = 4"):
        assert text in out, text
    conv1 = cnnspec.load(ROOT / "specs" / "alexnet.cnn").explain("conv1").records[0]
    assert (conv1.get("height").formula, conv1.get("params").formula) == (
        "(227 - 11 + 2*0) / 4 + 1", "11*11*3*96 + 96")
    assert (conv1.params, conv1.value("weights")) == (34_944, 34_848)


def test_unknown_layer_exits_2_with_close_names(capsys):
    path = str(ROOT / "specs" / "alexnet.cnn")
    assert main(["explain", path, "conv7"]) == 2
    err = capsys.readouterr().err
    assert "conv7" in err and "conv1" in err and "Traceback" not in err
    # An op's keyword names the (unnamed) layers of that kind.
    assert main(["explain", path, "flatten"]) == 2
    assert "`15`" in capsys.readouterr().err
    with pytest.raises(UnknownLayer):
        cnnspec.load(path).explain(["conv1", "nope"])
    with pytest.raises(SystemExit) as stop:
        main(["explain", path, "--depth", "0"])
    assert stop.value.code == 2


def test_cli_exit_status_and_no_traceback():
    run = subprocess.run([sys.executable, "-m", "cnnspec", "explain",
                          str(ROOT / "specs" / "alexnet.cnn"), "conv9", "--depth", "1"],
                         capture_output=True, text=True, timeout=60, check=False)
    assert run.returncode == 2 and "did you mean" in run.stderr
    assert "Traceback" not in run.stderr


def _table(text: str) -> list[list[str]]:
    """The markdown table in `text`, as rows of cells; fails unless it is one."""
    rows = [line for line in text.splitlines() if line.startswith("|")]
    cells = [[c.strip() for c in row.strip().strip("|").split("|")] for row in rows]
    assert len(cells) >= 3 and all(set(c) <= set("-:") for c in cells[1])
    assert all(len(row) == len(cells[0]) for row in cells), "ragged table"
    for row in cells:
        for cell in row:
            assert cell.count("`") % 2 == 0, cell
    return cells


def test_vgg16_markdown_is_the_lecture_table(library, capsys):
    assert main(["explain", str(ROOT / "specs" / "vgg16.cnn"), "--markdown"]) == 0
    text = capsys.readouterr().out
    assert text == markdown(library["vgg16"][2])
    cells = _table(text)
    header, body = cells[0], cells[2:]
    assert header[0] == "Layer" and "Weights only" in header
    first_conv = next(row for row in body if row[0] == "features.0")
    assert "`64*224*224` = 3,211,264 (3.2M)" in first_conv
    assert "`3*3*3*64` = 1,728" in first_conv  # the lecture's (3*3*3)*64, no biases
    assert "`3*3*3*64 + 64` = 1,792" in first_conv
    fc6 = next(row for row in body if row[0] == "classifier.0")
    assert "`(512*7*7)*4096` = 102,760,448" in fc6
    total = body[-1]
    assert total[0] == "**total**" and "**138,357,544**" in total
    assert "**138,344,128**" in total  # weights only: the lecture's 138M
    # The shares are computed: most parameters in linear layers, most memory early.
    shares = library["vgg16"][2]
    linear = next(s for s in shares.param_shares if s.label == "linear")
    assert linear.share > 0.85 and f"linear 123,642,856 ({linear.share:.1%})" in text
    assert shares.memory_shares[0].label == "224x224"
    assert shares.memory_shares[0].share > 0.4


def test_markdown_depth_and_named(library):
    spec = library["resnet18"][0]
    cells = _table(markdown(spec.explain(depth=1)))
    assert any(row[0] == "layer1.0 (block)" for row in cells)
    _table(markdown(spec.explain(["conv1", "layer1"])))


EDGES = """
network edges {
    input 8x15x17
    a: conv 8 k=(1, 7) p=(0, 3) d=2
    b: dwconv 3 s=2 p=1 channel_multiplier=2
    c: maxpool 3 s=2 ceil_mode=true
    d: upsample 3 bilinear
    e: conv 4 k=3 p=same d=2 g=4
    f: upsample 2
    g: conv_transpose 8 k=3 s=2 p=1 output_padding=1 groups=4
    h: adaptive_avgpool 5
    i: adaptive_avgpool 3
    j: conv 6 k=2 s=2 p=1
    k: linear 5 pointwise=true
    l: layernorm
    ls: layer_scale 0.1
    m: adaptive_maxpool 1
    flatten
    n: batchnorm affine=false
    o: linear 3 bias=false
}
"""

FLOORS = """
network floors {
    option sizes = floor
    option bytes_per_element = 2
    input 1x224x11
    a: conv 2 k=3 s=2
    b: maxpool 2 s=2 p=1 ceil_mode=true
}
"""


def test_every_other_op_kind_and_rounding():
    for text in (EDGES, FLOORS):
        spec = cnnspec.load(text)
        summary = spec.summary()
        for record, layer in zip(spec.explain().records, summary.layers):
            assert (record.params, record.macs, record.activation_bytes,
                    list(record.receptive_field)) == (
                layer.params, layer.macs, layer.activation_bytes,
                layer.receptive_field), record.name
            _check_formulas(record, spec.name)
    edges = cnnspec.load(EDGES).explain()
    assert edges["a"].get("width").formula == "(17 - (2*(7-1)+1) + 2*3) / 1 + 1"
    assert edges["b"].get("channels").formula == "8*2"
    assert edges["e"].get("params").formula == "3*3*(16/4)*4 + 4"
    assert edges["d"].jump == (4 / 3, 4 / 3)  # 4 input pixels apart, upsampled x3
    assert edges["f"].jump == (2 / 3, 2 / 3)  # a fraction of an input pixel
    assert edges["g"].get("height").formula.startswith("(")
    assert edges["k"].get("macs").formula.split(" * ")[0].count("*") == 1  # h*w
    assert edges["l"].params == 2 * 5 and edges["ls"].params == 5
    assert edges["n"].get("params").formula == "0"
    floors = cnnspec.load(FLOORS).explain()
    a, b = floors["a"], floors["b"]
    assert a.get("height").formula == "floor((224 - 3 + 2*0) / 2) + 1"
    assert a.get("height").note == "111.5 rounds down"
    assert b.get("width").formula == "ceil((5 - 2 + 2*1) / 2) + 1 - 1"  # PyTorch drops it
    assert a.get("bytes").formula.endswith("*2")


def test_explain_does_not_import_torch():
    code = ("import sys, cnnspec\n"
            "from cnnspec.analyses.explain.render import markdown, renderables\n"
            "spec = cnnspec.load('specs/googlenet.cnn')\n"
            "markdown(spec.explain()); renderables(spec.explain(depth=1))\n"
            "assert 'torch' not in sys.modules, 'torch imported'\n")
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, timeout=60, check=False)
    assert run.returncode == 0, run.stderr


def test_explain_doc_is_up_to_date():
    script = ROOT / "docs" / "make_explain.py"
    spec = importlib.util.spec_from_file_location("make_explain", script)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    current = (ROOT / "docs" / "explain.md").read_text(encoding="utf-8")
    assert current == module.render(), (
        "docs/explain.md is out of date: run `.venv/bin/python docs/make_explain.py`")
    assert "**does not add up**: 24M is 1.58 times" in current  # 15,237,608 values
    assert "138,344,128 weights**; the lecture's" in current and "**matches** it" in current
