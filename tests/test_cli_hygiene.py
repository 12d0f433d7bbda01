"""Command-line hygiene: a closed pipe ends quietly, compare takes --set and
--network like every command, --depth 0 is a clear error of its own command, value
errors speak plainly (no Pydantic wording), and compare says what Depth is."""

import json
import subprocess
import sys

import pytest

import cnnspec
from conftest import SPECS

PYTHON = [sys.executable, "-m", "cnnspec"]


def cli(*args):
    return subprocess.run(PYTHON + [str(a) for a in args], capture_output=True,
                          text=True, timeout=60)


# ---------------------------------------------------------------- closed pipes

@pytest.mark.parametrize("extra", [["--json"], []])
def test_summary_into_a_reader_that_stops_exits_0_without_traceback(extra):
    # DenseNet-201's summary is larger than a pipe's buffer, so the writer meets
    # the closed pipe (as `| head -1` does)
    run = subprocess.Popen(PYTHON + ["summary", str(SPECS / "densenet201.cnn"), *extra],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first = run.stdout.readline()
    run.stdout.close()
    status = run.wait(timeout=60)
    error = run.stderr.read().decode()
    run.stderr.close()
    assert first.strip()
    assert (status, error) == (0, "")


def test_shell_pipeline_with_pipefail_and_compile_still_writes(tmp_path):
    out = tmp_path / "densenet201.py"
    command = (f"set -o pipefail; {sys.executable} -m cnnspec compile "
               f"{SPECS / 'densenet201.cnn'} -o {out} | head -1")
    run = subprocess.run(["bash", "-c", command], capture_output=True, text=True,
                         timeout=60)
    assert (run.returncode, run.stderr) == (0, ""), run.stderr
    assert len(run.stdout.splitlines()) == 1
    assert "class Densenet201(" in out.read_text()


# ---------------------------------------------------------------- --set, --network

TWO = "network a {\n input 3x8x8\n conv 4 k=3\n}\nnetwork b {\n input 3x8x8\n conv 8 k=3\n}\n"


def test_compare_applies_set_to_every_spec():
    run = cli("compare", SPECS / "resnet18.cnn", SPECS / "googlenet.cnn", "--set",
              "classes=10", "--json")
    assert run.returncode == 0, run.stderr
    params = [n["params"] for n in json.loads(run.stdout)["networks"]]
    assert params == [cnnspec.load(SPECS / f"{n}.cnn", classes=10).inference_params
                      for n in ("resnet18", "googlenet")]
    bad = cli("compare", SPECS / "resnet18.cnn", "--set", "oops")
    assert bad.returncode == 2 and "usage: cnnspec compare" in bad.stderr


def test_compare_network_and_the_E0213_help_it_answers(tmp_path):
    two = tmp_path / "two.cnn"
    two.write_text(TWO)
    refused = cli("compare", two)
    assert refused.returncode == 1 and "error[E0213]" in refused.stderr
    assert "(CLI: --network NAME)" in refused.stderr
    chosen = cli("compare", two, "--network", "b", "--json")
    assert chosen.returncode == 0, chosen.stderr
    assert [n["name"] for n in json.loads(chosen.stdout)["networks"]] == ["b"]


def test_every_command_that_reads_a_spec_takes_set_and_network():
    """E0213's help names --network: no command may refuse it."""
    from cnnspec.cli.parser import build_parser

    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices
    for name, sub in commands.items():
        options = {o for action in sub._actions for o in action.option_strings}
        positional = [a.metavar for a in sub._actions if not a.option_strings]
        if "FILE" in positional:
            assert {"--set", "--network"} <= options, name


# ---------------------------------------------------------------- --depth

@pytest.mark.parametrize("command, extra", [("summary", []), ("compile", []),
                                            ("render", ["-o", "x.svg"])])
@pytest.mark.parametrize("depth", ["0", "-1", "x"])
def test_depth_below_1_is_a_clear_error_of_the_command(command, extra, depth):
    run = cli(command, SPECS / "lenet5.cnn", *extra, "--depth", depth)
    assert run.returncode == 2 and run.stdout == ""
    assert f"usage: cnnspec {command}" in run.stderr
    assert (f"argument --depth: must be a whole number >= 1, found '{depth}' "
            "(1: one row per top-level block") in run.stderr


def test_errors_after_parsing_show_the_command_usage(tmp_path):
    run = cli("summary", tmp_path / "missing.cnn")
    assert run.returncode == 2 and "usage: cnnspec summary" in run.stderr
    assert "no such file" in run.stderr


# ---------------------------------------------------------------- value wording

LAYER = "network n {{\n    input 3x32x32\n    {}\n}}\n"
TRAIN = "network n {{\n    input 3x32x32\n    conv 8 k=3\n    train {{ {} }}\n}}\n"


@pytest.mark.parametrize("spec, label", [
    (LAYER.format("conv 8 k=2.5"),
     "`kernel_size` must be a whole number >= 1 (or a pair of them), found 2.5"),
    (LAYER.format("conv 8 k=(3, 0)"),
     "`kernel_size` must be a whole number >= 1 (or a pair of them), found 0"),
    (LAYER.format("conv 8 k=(1, 2, 3)"), "found (1, 2, 3)"),
    (LAYER.format("conv 2.5 k=3"), "`out_channels` must be a whole number >= 1, found 2.5"),
    (LAYER.format("conv 8 k=3 p=-1"),
     "`padding` must be a whole number >= 0 (or a pair of them) or `same`, found -1"),
    (LAYER.format("conv 8 k=3 bias=3"), "`bias` must be true or false, found 3"),
    (LAYER.format("dropout 1.5"), "`p` must be a number from 0 to 1, found 1.5"),
    (LAYER.format('dropout "x"'), "`p` must be a number from 0 to 1, found 'x'"),
    (LAYER.format("batchnorm eps=0"), "`eps` must be a number > 0, found 0"),
    (LAYER.format("shuffle 1"), "`groups` must be a whole number >= 2, found 1"),
    (LAYER.format('upsample 2 mode="cubic"'),
     "`mode` must be one of `nearest` or `bilinear`, found 'cubic'"),
    ("network n {\n    option sizes = flor\n    input 3x8x8\n}\n",
     "`sizes` must be one of `strict`, `floor` or `exact`, found 'flor'"),
    ("network n {\n    option bytes_per_element = 3\n    input 3x8x8\n}\n",
     "`bytes_per_element` must be one of 1, 2, 4 or 8, found 3"),
    (TRAIN.format("epochs: 2.5"), "`epochs` must be a whole number >= 1, found 2.5"),
    (TRAIN.format("optimizer: sgd lr=-1"), "`lr` must be a number > 0, found -1"),
    (TRAIN.format("schedule: step step_size=0.5"),
     "`step_size` must be a whole number >= 1, found 0.5"),
    (TRAIN.format("label_smoothing: 1"),
     "`label_smoothing` must be a number >= 0 and < 1, found 1"),
    (TRAIN.format("optimizer: foo lr=1"),
     "`optimizer` takes sgd, adam, adamw, nadam, radam, rmsprop"),
    (TRAIN.format("augment: flip"), "`augment` takes random_crop, random_resized_crop"),
    (TRAIN.format("optimizer: sgd lr=0.1 nesterov=2"),
     "`nesterov` must be true or false, found 2"),
    (TRAIN.format("init: he std=0"), "`std` must be a number > 0, found 0"),
])
def test_value_errors_in_plain_words(spec, label):
    with pytest.raises(cnnspec.SpecError) as raised:
        cnnspec.load(spec)
    diagnostic = raised.value.diagnostics[0]
    assert diagnostic.code == "E0206"
    assert label in diagnostic.label, diagnostic.label
    for pydantic in ("input should", "valid integer", "fractional part", "tuple should",
                     "after validation", "discriminator", "unable to"):
        assert pydantic not in diagnostic.label.lower(), diagnostic.label


def test_a_models_own_check_keeps_its_words():
    with pytest.raises(cnnspec.SpecError) as raised:
        cnnspec.load(LAYER.format("conv 6 k=3 g=4"))
    assert raised.value.diagnostics[0].label == "groups=4 must divide out_channels=6"


# ---------------------------------------------------------------- Depth

def test_compare_help_says_what_depth_is():
    run = cli("compare", "--help")
    text = " ".join(run.stdout.split())
    assert "Depth is the number of conv and linear layers on the longest " \
        "input-to-output path" in text
    assert "--accuracy" in text and "--network" in text and "--set" in text
