"""The `cnnspec` command line: summary output, JSON, depth, parameters, exit codes.

Commands run through `cli.main` in this process (the `cli` fixture); one test starts
the real `python -m cnnspec` entry point."""

import json
import subprocess
import sys

from conftest import SPECS, modules_imported_by


def cnnspec(*args):
    return subprocess.run([sys.executable, "-m", "cnnspec", *map(str, args)],
                          capture_output=True, text=True, timeout=60)


def test_the_entry_point_runs_and_exits_with_the_status():
    assert cnnspec("summary").returncode == 2
    run = cnnspec("check", SPECS / "lenet5.cnn")
    assert (run.returncode, run.stdout, run.stderr) == (0, "", "")  # silent when right


def test_summary_table_lists_layers_and_totals(cli):
    run = cli("summary", SPECS / "resnet18.cnn")
    assert run.returncode == 0, run.stderr
    assert "layer2.0.downsample.0" in run.stdout
    assert "11,689,512" in run.stdout
    assert "1,814,073,344" in run.stdout  # torchvision: 1.81 GFLOPS


def test_summary_json_is_the_documented_schema(cli):
    run = cli("summary", SPECS / "googlenet.cnn", "--json")
    data = json.loads(run.stdout)
    assert data["name"] == "googlenet"
    assert data["input_shape"] == [3, 224, 224] and data["output_shape"] == [1000]
    assert data["params"] == 13_004_888 and data["inference_params"] == 6_624_904
    first = data["layers"][0]
    assert set(first) >= {"name", "op", "output_shape", "params", "macs",
                          "receptive_field"}


def test_set_overrides_network_parameters(cli):
    run = cli("summary", SPECS / "googlenet.cnn", "--json", "--set", "aux_logits=false",
                  "--set", "classes=10")
    data = json.loads(run.stdout)
    assert data["output_shape"] == [10]
    assert not any(layer["training_only"] for layer in data["layers"])


def test_depth_collapses_blocks(cli):
    run = cli("summary", SPECS / "googlenet.cnn", "--depth", "1")
    lines = [line for line in run.stdout.splitlines() if "inception4a" in line]
    assert len(lines) == 1 and "inception " in lines[0] and "512x14x14" in lines[0]


def test_usage_errors_exit_2_and_help_works(cli):
    assert cli("summary").returncode == 2
    assert cli("summary", SPECS / "resnet18.cnn", "--set", "oops").returncode == 2
    assert cli("frobnicate", "x.cnn").returncode == 2
    help_run = cli("--help")
    assert help_run.returncode == 0 and "summary" in help_run.stdout
    assert cli("--version").stdout.startswith("cnnspec ")


def test_unknown_parameter_is_a_spec_error(cli):
    run = cli("check", SPECS / "resnet18.cnn", "--set", "clases=10")
    assert run.returncode == 1
    assert "did you mean `classes`?" in run.stderr


def test_check_imports_no_heavy_backend():
    """`cnnspec check` must start fast: no torch, networkx, graphviz or rich."""
    assert modules_imported_by(["check", SPECS / "resnet50.cnn"],
                               ("torch", "networkx", "graphviz", "rich")) == []


def test_depth_rows_are_block_instances_like_the_diagram(cli):
    run = cli("summary", SPECS / "densenet121.cnn", "--depth", "1", "--json")
    rows = {layer["name"]: layer for layer in json.loads(run.stdout)["layers"]}
    block = rows["features.denseblock1"]
    assert block["op"] == "dense_block" and block["output_shape"] == [256, 56, 56]
    # Six dense layers on c = 64, 96, ..., 224 input channels: batchnorm 2c, 1x1 conv
    # c*128, batchnorm 2*128, 3x3 conv 128*32*9 -> 130 * 864 + 6 * 37,120.
    assert block["params"] == 130 * 864 + 6 * (256 + 128 * 32 * 9) == 335_040


def _rows(table: str) -> list[list[str]]:
    return [[cell.strip() for cell in line.strip()[1:-1].split("│")]
            for line in table.splitlines() if line.startswith("│")]


def test_summary_table_reads_as_documented(cli):
    """LeNet-5's table, every figure worked by hand: conv params k*k*c_in*c_out + c_out,
    MACs H*W*c_out*k*k*c_in, activations the sum of the layer outputs in fp32."""
    run = cli("summary", SPECS / "lenet5.cnn")
    header = next(line for line in run.stdout.splitlines() if line.startswith("┃"))
    assert [cell.strip() for cell in header.strip("┃ ").split("┃")] == [
        "Layer", "Op", "Output", "Params", "MACs", "RF"]
    rows = {row[0]: row[1:] for row in _rows(run.stdout)}
    assert rows["c1"] == ["conv 5x5, 6", "6x28x28", "156", "117,600", "5"]
    assert rows["s2"] == ["avgpool 2x2/2", "6x14x14", "", "", "6"]  # no params, no MACs
    assert rows["c3"] == ["conv 5x5, 16", "16x10x10", "2,416", "240,000", "14"]
    assert rows["c5"] == ["conv 5x5, 120", "120x1x1", "48,120", "48,000", "32"]
    assert rows["f6"] == ["linear 84", "84", "10,164", "10,080", "global"]
    assert rows["Total"] == ["", "10", "61,706", "416,520", ""]
    # 117,600 + 240,000 + 48,000 + 10,080 + 840 MACs; 14,722 fp32 outputs = 58,888 B
    assert "Params:      61,706 (61.71 k)" in run.stdout
    assert "MACs:        416,520 (416.52 k) per image" in run.stdout
    assert "Activations: 57.5 KiB per image" in run.stdout
    vgg = cli("summary", SPECS / "vgg16.cnn").stdout
    assert "Params:      138,357,544 (138.36 M)" in vgg and "(15.47 G) per image" in vgg


def test_summary_marks_frozen_and_auxiliary_layers(cli):
    frozen = {row[0] for row in _rows(cli("summary", SPECS / "resnet18_transfer.cnn").stdout)}
    assert {"conv1 (frozen)", "layer4.1.bn2 (frozen)", "fc"} <= frozen
    aux = {row[0] for row in _rows(cli("summary", SPECS / "googlenet.cnn").stdout)}
    assert {"aux1.conv.conv (aux)", "fc"} <= aux and "conv1.conv" in aux
