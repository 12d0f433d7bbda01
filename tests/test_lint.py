"""`cnnspec lint`: each W code fires on the design it names and not on the fixed
one, points at the right line, warns once per source line, and the command's exit
status is 0 with warnings, 1 with --strict (or a wrong spec), 2 for usage."""

import re
import subprocess
import sys

import pytest

import cnnspec
from cnnspec.analyses.lint import CODES, lint
from conftest import ROOT, SPECS, modules_imported_by


def cli(*args):
    return subprocess.run([sys.executable, "-m", "cnnspec", *map(str, args)],
                          capture_output=True, text=True, timeout=60)


def codes(text: str) -> list[str]:
    return [w.code for w in lint(cnnspec.load(text))]


def only(text: str, code: str):
    found = lint(cnnspec.load(text))
    assert [w.code for w in found] == [code], [w.render() for w in found]
    return found[0]


# ---------------------------------------------------------------- each rule

def test_W0301_floor_discards_pixels_and_strict_sizes_do_not_warn():
    spec = ("network n {\n    option sizes = floor\n    input 3x224x224\n"
            "    conv1: conv 64 k=3 s=2\n}\n")
    warning = only(spec, "W0301")
    assert (warning.span.line, warning.span.column) == (4, 5)
    assert "111.5 floors to 111" in warning.label
    assert "223 or 225" in warning.help
    # the input that fits, padding that fits, and a stride wider than the window
    assert codes(spec.replace("224x224", "225x225")) == []
    assert codes(spec.replace("k=3 s=2", "k=3 s=2 p=1")) == []
    assert codes(spec.replace("k=3 s=2", "k=1 s=2")) == []  # skips pixels by design
    assert codes(spec.replace("    option sizes = floor\n", "").replace(
        "224x224", "225x225")) == []


def test_W0301_names_only_the_axis_that_loses_pixels():
    warning = only("network n {\n option sizes = floor\n input 3x32x33\n"
                   " maxpool 2 s=2\n}\n", "W0301")
    assert "column" in warning.message and "row" not in warning.message
    assert warning.label.startswith("the width:")


def test_W0302_even_kernel_with_same_padding():
    spec = "network n {\n    input 3x32x32\n    conv1: conv 16 k=4 p=same\n}\n"
    warning = only(spec, "W0302")
    assert "1 before and 2 after" in warning.label
    assert codes(spec.replace("k=4", "k=3")) == []
    assert codes(spec.replace("k=4", "k=(3, 4)")) == ["W0302"]
    assert codes(spec.replace("k=4 p=same", "k=4 p=same d=2")) == []  # span 7 is odd


def test_W0401_gives_the_share_of_alexnet_and_vgg():
    vgg = lint(cnnspec.load(SPECS / "vgg16.cnn"))
    assert [w.code for w in vgg] == ["W0401"]
    assert vgg[0].message == "fully connected layers hold 89.4% of the parameters"
    assert "123,642,856 of the 138,357,544" in vgg[0].notes[0]
    assert "512x7x7" in vgg[0].notes[1]
    alexnet = lint(cnnspec.load(SPECS / "alexnet_torchvision.cnn"))
    assert re.search(r"hold 9[0-9]\.\d% of the parameters", alexnet[0].message)


def test_W0401_not_for_a_pooled_classifier_or_a_small_head():
    # MobileNetV3-small's classifier holds most of its parameters, after a global
    # pool: nothing to fix by pooling.
    assert lint(cnnspec.load(SPECS / "mobilenet_v3_small.cnn")) == []
    assert lint(cnnspec.load(SPECS / "resnet50.cnn")) == []


def test_W0402_densenet_concatenations():
    found = lint(cnnspec.load(SPECS / "densenet121.cnn"))
    assert [w.code for w in found] == ["W0402"]
    assert found[0].message == "concatenations hold 62.6% of the activation memory"
    # blamed on the dense block holding the most, in the network's own file
    assert found[0].span.file.endswith("densenet121.cnn") and found[0].span.line == 19
    assert lint(cnnspec.load(SPECS / "googlenet.cnn")) == []  # 10%: Inception is fine


@pytest.mark.parametrize("kind", ["softmax", "sigmoid", "relu", "tanh"])
def test_W0403_activation_after_the_classifier(kind):
    spec = ("network n(classes = 10) {\n    input 3x8x8\n    conv 4 k=3 p=1\n    relu\n"
            "    avgpool global\n    flatten\n    fc: linear classes\n    dropout 0.1\n"
            f"    {kind}\n}}\n")
    warning = only(spec, "W0403")
    assert warning.message == f"`{kind}` after the final classifier"
    assert warning.span.line == 9 and "`fc`" in warning.label
    assert codes(spec.replace(f"    {kind}\n", "")) == []


def test_W0403_relu_before_a_global_pool_of_class_maps():
    # SqueezeNet's classifier: conv 1000 k=1, ReLU, global average pool.
    found = [w for w in lint(cnnspec.load(SPECS / "squeezenet1_1.cnn"))
             if w.code == "W0403"]
    assert len(found) == 1 and "`relu`" in found[0].message


def test_W0404_bias_before_batchnorm_and_its_fixes():
    spec = ("network n {\n    input 3x32x32\n    conv1: conv 64 k=3 p=1\n"
            "    bn1: batchnorm\n    relu\n}\n")
    warning = only(spec, "W0404")
    assert (warning.span.line, warning.span.column) == (3, 5)
    assert "64 parameters" in warning.label and "`bn1`" in warning.notes[0]
    assert codes(spec.replace("p=1", "p=1 bias=false")) == []
    # the conv's output read elsewhere too: its bias is not wasted
    assert codes("network n {\n input 3x8x8\n c: conv 4 k=1\n add {\n"
                 "  batchnorm\n  identity\n }\n}\n") == []


def test_a_block_line_warns_once_with_the_other_layers_noted():
    found = lint(cnnspec.load(SPECS / "vgg11_bn.cnn"))
    bias = [w for w in found if w.code == "W0404"]
    assert len(bias) == 5  # one per written `repeat` line, not one per conv
    assert len({str(w.span) for w in bias}) == 5
    assert any("1 more layer: `features.11`" in note for w in bias for note in w.notes)
    assert all(w.span.file.endswith("blocks/vgg.cnn") for w in bias)
    assert any("instantiated as `features`" in note for note in bias[0].notes)


def test_the_torchvision_zoo_mostly_passes():
    for name in ("resnet18", "resnet50", "googlenet", "mobilenet_v2", "efficientnet_b0",
                 "convnext_tiny", "regnet_y_400mf", "inception_v3", "lenet5"):
        assert lint(cnnspec.load(SPECS / f"{name}.cnn")) == [], name


def test_rendering_is_a_diagnostic_with_warning_in_front():
    text = only("network n {\n    input 3x32x32\n    conv1: conv 16 k=4 p=same\n}\n",
                "W0302").render()
    lines = text.splitlines()
    assert lines[0] == "warning[W0302]: `conv1` has an even kernel with `padding=same`"
    assert lines[1] == " --> <string>:3:5"
    assert lines[3] == "3 |     conv1: conv 16 k=4 p=same"
    assert lines[4].startswith("  |     ^^^^")
    assert lines[-1].startswith("  = help: ")


# ---------------------------------------------------------------- docs/errors.md

def test_every_code_has_a_documented_example_that_shows_it():
    page = (ROOT / "docs" / "errors.md").read_text(encoding="utf-8")
    sections = dict(re.findall(r"^## (W\d{4})\n(.*?)(?=^## |\Z)", page, re.S | re.M))
    assert sorted(sections) == sorted(CODES)
    for code, body in sections.items():
        spec = re.search(r"```cnn\n(.*?)```", body, re.S).group(1)
        shown = re.search(r"\$ cnnspec lint example.cnn\n(.*?)```", body, re.S).group(1)
        assert codes(spec)[:1] == [code], code
        assert shown.startswith(f"warning[{code}]"), code


# ---------------------------------------------------------------- the command

def test_cli_exit_status_and_streams(tmp_path):
    run = cli("lint", SPECS / "vgg16.cnn")
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("warning[W0401]: fully connected layers hold 89.4%")
    assert "vgg16.cnn: 1 warning" in run.stderr
    assert cli("lint", SPECS / "vgg16.cnn", "--strict").returncode == 1
    clean = cli("lint", SPECS / "resnet18.cnn", "--strict")
    assert (clean.returncode, clean.stdout, clean.stderr) == (0, "", "")
    bad = tmp_path / "bad.cnn"
    bad.write_text("network b {\n input 3x8x8\n conv 8 k=9\n}\n")
    wrong = cli("lint", bad)
    assert wrong.returncode == 1 and "error[E0302]" in wrong.stderr
    assert cli("lint", tmp_path / "missing.cnn").returncode == 2
    assert cli("lint").returncode == 2
    # --set reaches the spec: 10 classes shrink VGG's classifier but not below half
    assert "hold 89.0%" in cli("lint", SPECS / "vgg16.cnn", "--set", "classes=10").stdout


def test_lint_imports_no_torch():
    assert modules_imported_by(["lint", SPECS / "densenet121.cnn"],
                               ("torch", "torchvision", "matplotlib")) == []