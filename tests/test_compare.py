"""`cnnspec compare`: the cost table, its JSON, and the Canziani et al. (2017) chart."""

import json
import subprocess
import sys
import xml.etree.ElementTree as ET

import cnnspec
from cnnspec.analyses.compare import compare, weighted_depth
from conftest import SPECS


def cnnspec_cli(*args):
    return subprocess.run([sys.executable, "-m", "cnnspec", *map(str, args)],
                          capture_output=True, text=True, timeout=120)


def test_depth_is_the_number_in_each_architectures_name():
    """Conv and linear layers on the longest path, as the papers count depth:
    ResNet-18/50, VGG-16, DenseNet-121, GoogLeNet's 22 layers (Szegedy et al. 2014,
    section 5), AlexNet's 8, LeNet-5's 5 (with the input layer not counted)."""
    expected = {"resnet18": 18, "resnet50": 50, "vgg16": 16, "densenet121": 121,
                "googlenet": 22, "alexnet": 8, "lenet5": 5}
    for name, depth in expected.items():
        assert weighted_depth(cnnspec.load(SPECS / f"{name}.cnn")) == depth, name


def test_rows_are_eval_mode_costs():
    rows = compare([cnnspec.load(SPECS / "googlenet.cnn"),
                    cnnspec.load(SPECS / "resnet18.cnn")]).networks
    assert [r.name for r in rows] == ["googlenet", "resnet18"]
    assert rows[0].params == 6_624_904  # torchvision googlenet without aux heads
    assert rows[1].params == 11_689_512 and rows[1].macs == 1_814_073_344


def test_cli_json_table_and_svg_chart(tmp_path):
    out = tmp_path / "chart.svg"
    run = cnnspec_cli("compare", SPECS / "vgg16.cnn", SPECS / "lenet5.cnn", "--json",
                      "-o", out)
    assert run.returncode == 0, run.stderr
    data = json.loads(run.stdout)
    assert [n["name"] for n in data["networks"]] == ["vgg16", "lenet5"]
    assert data["networks"][0]["params"] == 138_357_544
    text = "".join(ET.parse(out).getroot().itertext())
    assert "vgg16" in text and "lenet5" in text
    table = cnnspec_cli("compare", SPECS / "resnet50.cnn")
    assert "25,557,032" in table.stdout and "4.09 G" in table.stdout


def test_cli_png_and_errors(tmp_path):
    png = tmp_path / "c.png"
    assert cnnspec_cli("compare", SPECS / "alexnet.cnn", "-o", png).returncode == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert cnnspec_cli("compare", SPECS / "alexnet.cnn", "-o", tmp_path / "c.gif"
                       ).returncode == 2
    assert cnnspec_cli("compare", tmp_path / "missing.cnn").returncode == 2
    bad = tmp_path / "bad.cnn"
    bad.write_text("network b { input 3x8x8\n conv 8 k=9 }\n")
    run = cnnspec_cli("compare", SPECS / "alexnet.cnn", bad)
    assert run.returncode == 1 and "E0302" in run.stderr
