"""`cnnspec compare`'s accuracy-versus-cost chart (Canziani et al. 2017, figure 2):
top-1 from torchvision's weight metadata or an --accuracy CSV, labels that never
overlap, and the params-versus-MACs chart kept when no accuracy is known."""

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from itertools import combinations

import pytest

import cnnspec
from cnnspec.analyses.compare import (AccuracyFileError, Comparison, Row, compare, draw,
                             read_accuracies, table, torchvision_model,
                             torchvision_top1)
from conftest import SPECS


def cli(*args):
    return subprocess.run([sys.executable, "-m", "cnnspec", *map(str, args)],
                          capture_output=True, text=True, timeout=120)


def svg_text(path) -> str:
    return " ".join(ET.parse(path).getroot().itertext())


# ---------------------------------------------------------------- --accuracy FILE

def test_accuracy_file_is_read_by_network_or_file_name(tmp_path):
    csv = tmp_path / "top1.csv"
    csv.write_text("spec,top1\nlenet5,98.1\n\nsqueezenet1_1, 58.2%\nnot_compared,1\n")
    accuracies = read_accuracies(csv)
    assert accuracies["lenet5"] == (98.1, "top1.csv")
    assert accuracies["squeezenet1_1"] == (58.2, "top1.csv")
    rows = compare([cnnspec.load(SPECS / "lenet5.cnn"),
                    cnnspec.load(SPECS / "alexnet_torchvision.cnn")],
                   accuracies={"lenet5": (98.1, "top1.csv"),
                               "alexnet_torchvision": (57.0, "mine.csv")}).networks
    assert (rows[0].top1, rows[0].top1_source) == (98.1, "top1.csv")
    assert (rows[1].name, rows[1].top1) == ("alexnet", 57.0)  # by the file's stem


@pytest.mark.parametrize("text, message", [
    ("name,accuracy\nlenet5,98\n", "the first line must be the header `spec,top1`"),
    ("", "the first line must be the header `spec,top1`, found 'an empty file'"),
    ("spec,top1\nlenet5,high\n", "line 2: top1 must be a percentage from 0 to 100, "
     "found 'high'"),
    ("spec,top1\nlenet5,98\nlenet5,180\n", "line 3: top1 must be a percentage"),
    ("spec,top1\nlenet5,nan\n", "line 2: top1 must be a percentage"),
    ("spec,top1\nlenet5,98\nlenet5,97\n", "line 3: lenet5 is listed twice"),
    ("spec,top1\nlenet5,98,extra\n", "line 2: expected 2 values (spec,top1), found 3"),
    ("spec,top1\n,98\n", "line 2: the spec name is empty"),
])
def test_a_bad_accuracy_file_says_where(tmp_path, text, message):
    csv = tmp_path / "top1.csv"
    csv.write_text(text)
    with pytest.raises(AccuracyFileError) as raised:
        read_accuracies(csv)
    assert message in str(raised.value)


def test_a_bad_accuracy_file_is_a_usage_error(tmp_path):
    csv = tmp_path / "top1.csv"
    csv.write_text("spec,top1\nlenet5,ninety\n")
    run = cli("compare", SPECS / "lenet5.cnn", "--accuracy", csv)
    assert run.returncode == 2 and run.stdout == ""
    assert run.stderr.strip() == (f"cnnspec: error: {csv} line 2: top1 must be a "
                                  "percentage from 0 to 100, found 'ninety'")
    missing = cli("compare", SPECS / "lenet5.cnn", "--accuracy", tmp_path / "no.csv")
    assert missing.returncode == 2 and "no such accuracy file" in missing.stderr


def test_the_table_and_json_show_top1_when_known(tmp_path):
    csv = tmp_path / "top1.csv"
    csv.write_text("spec,top1\nlenet5,98.1\n")
    run = cli("compare", SPECS / "lenet5.cnn", SPECS / "nin.cnn", "--accuracy", csv)
    assert run.returncode == 0, run.stderr
    assert "Top-1" in run.stdout and "98.10%" in run.stdout
    assert "Depth: conv and linear layers on the longest" in " ".join(run.stdout.split())
    data = json.loads(cli("compare", SPECS / "lenet5.cnn", "--accuracy", csv,
                          "--json").stdout)
    assert data["networks"][0]["top1"] == 98.1
    plain = cli("compare", SPECS / "lenet5.cnn")
    assert "Top-1" not in plain.stdout and "Depth:" in plain.stdout


def test_cli_accuracy_chart_from_a_file_alone(tmp_path):
    csv = tmp_path / "top1.csv"
    csv.write_text("spec,top1\nlenet5,98.1\nnin_cifar10,89.6\n")
    out = tmp_path / "chart.svg"
    run = cli("compare", SPECS / "lenet5.cnn", SPECS / "nin.cnn", SPECS / "unet.cnn",
              "--accuracy", csv, "-o", out)
    assert run.returncode == 0, run.stderr
    text = svg_text(out)
    assert "top-1 accuracy (%)" in text and "lenet5" in text and "nin_cifar10" in text
    assert "Top-1 from top1.csv." in text and "Not drawn, no top-1 known: unet." in text


# ---------------------------------------------------------------- torchvision


def test_torchvision_twins_and_their_weights():
    pytest.importorskip("torchvision")
    resnet18 = cnnspec.load(SPECS / "resnet18.cnn")
    assert torchvision_model(resnet18) == "resnet18"
    assert torchvision_top1(resnet18) == (69.758, "IMAGENET1K_V1")
    assert torchvision_model(cnnspec.load(SPECS / "alexnet_torchvision.cnn")) == "alexnet"
    # Inception-v3's weights are evaluated on a 299 crop, as its spec's input
    assert torchvision_top1(cnnspec.load(SPECS / "inception_v3.cnn")) == (
        77.294, "IMAGENET1K_V1")
    assert torchvision_model(cnnspec.load(SPECS / "lenet5.cnn")) is None
    # a name torchvision knows, but not its input (the paper's 227) or classes
    assert torchvision_top1(cnnspec.load(SPECS / "alexnet.cnn")) is None
    assert torchvision_top1(resnet18.with_params(classes=10)) is None


def test_accuracy_chart_with_torchvision_and_a_file(tmp_path):
    pytest.importorskip("torchvision")
    from cnnspec.analyses.compare import chart

    specs = [cnnspec.load(SPECS / f"{name}.cnn") for name in
             ("resnet18", "alexnet_torchvision", "lenet5", "unet")]
    out = chart(compare(specs, accuracies={"lenet5": (98.1, "top1.csv")},
                        torchvision=True), tmp_path / "chart.svg")
    text = svg_text(out)
    assert "top-1 accuracy (%)" in text and "parameters" in text
    for name in ("resnet18", "alexnet", "lenet5"):
        assert name in text
    assert "IMAGENET1K_V1" in text and "top1.csv for lenet5" in text
    assert "Not drawn, no top-1 known: unet." in text


# ---------------------------------------------------------------- the charts

def test_without_any_accuracy_the_cost_chart_stays(tmp_path):
    out = tmp_path / "cost.svg"
    assert cli("compare", SPECS / "lenet5.cnn", SPECS / "nin.cnn", "-o", out
               ).returncode == 0
    text = svg_text(out)
    assert "parameters (M)" in text and "activation memory" in text
    assert "top-1" not in text


def _crowd(count: int, accuracy: bool) -> Comparison:
    """Networks packed close together (a worst case for the labels)."""
    rows = []
    for i in range(count):
        rows.append(Row(name=f"network_{i:02d}_long_name", source=None,
                        params=int(1e6 * (1 + (i * 7) % 23)), macs=int(1e9 * (1 + i % 9)
                                                                        * 0.3),
                        activation_bytes=int(1e6 * (1 + i % 5)), receptive_field=[1, 1],
                        depth=1, top1=(70 + (i * 3) % 11) if accuracy else None,
                        top1_source="given" if accuracy else None))
    return Comparison(networks=rows)


def _label_boxes(figure):
    renderer = figure.canvas.get_renderer()
    axes = figure.axes[0]
    return ([t.get_window_extent(renderer) for t in axes.texts],
            axes.get_window_extent(renderer), axes.get_legend(), renderer)


@pytest.mark.parametrize("accuracy", [True, False])
def test_labels_never_overlap_and_stay_inside(accuracy):
    import matplotlib.pyplot as plt

    figure = draw(_crowd(40, accuracy))
    figure.canvas.draw()  # render, then measure what was drawn
    boxes, inside, legend, renderer = _label_boxes(figure)
    assert 10 <= len(boxes) < 40  # crowded: some names left out, many written
    for a, b in combinations(boxes, 2):
        assert not a.overlaps(b), (a, b)
    for box in boxes:
        assert inside.x0 <= box.x0 and box.x1 <= inside.x1
        assert inside.y0 <= box.y0 and box.y1 <= inside.y1
    if legend is not None:
        frame = legend.get_window_extent(renderer)
        assert not any(box.overlaps(frame) for box in boxes)
    plt.close(figure)


def test_every_label_is_written_when_there_is_room():
    import matplotlib.pyplot as plt

    specs = [cnnspec.load(SPECS / f"{n}.cnn") for n in
             ("resnet18", "resnet50", "vgg16", "mobilenet_v2", "googlenet")]
    comparison = compare(specs, accuracies={"resnet18": (69.8, "a"),
                                            "resnet50": (76.1, "a"), "vgg16": (71.6, "a"),
                                            "mobilenet_v2": (71.9, "a"),
                                            "googlenet": (69.8, "a")})
    for chosen in (comparison, compare(specs)):
        figure = draw(chosen)
        figure.canvas.draw()
        names = sorted(t.get_text() for t in figure.axes[0].texts)
        assert names == sorted(s.name for s in specs)
        boxes = _label_boxes(figure)[0]
        assert not any(a.overlaps(b) for a, b in combinations(boxes, 2))
        plt.close(figure)


def test_table_caption_defines_depth():
    from rich.console import Console

    console = Console(width=200, record=True)
    console.print(table(compare([cnnspec.load(SPECS / "resnet50.cnn")])))
    assert "Depth: conv and linear layers on the longest input-to-output path" \
        in " ".join(console.export_text().split())
