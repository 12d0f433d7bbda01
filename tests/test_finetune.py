"""Fine-tuning: weights files in (formats, the matching report, what is refused),
freezing layers by name, and the lecture's transfer recipe on ResNet-18.
"""

import json
import pickle

import pytest
import torch

import cnnspec
from cnnspec.training.weights import WeightsError, read_state_dict
from conftest import SPECS

pytest.importorskip("sklearn")
pytest.importorskip("safetensors")
torchvision = pytest.importorskip("torchvision")
from safetensors.torch import save_file  # noqa: E402

SMALL_BN = """
network small_bn(classes = 10) {
    input 1x8x8
    conv1: conv 8 k=3 p=1 bias=false
    bn1:   batchnorm
    relu
    conv2: conv 16 k=3 p=1 bias=false
    bn2:   batchnorm
    relu
    pool:  avgpool global
    flatten
    fc:    linear classes
}
"""


@pytest.fixture(scope="module")
def resnet18_file(tmp_path_factory):
    """torchvision's resnet18 state dict as a .pth file (nothing can be downloaded)."""
    path = tmp_path_factory.mktemp("weights") / "resnet18.pth"
    torch.manual_seed(0)
    torch.save(torchvision.models.resnet18().state_dict(), path)
    return path


def test_weights_file_formats_nesting_and_prefixes(tmp_path):
    state = cnnspec.build(SMALL_BN).state_dict()
    save_file({k: v.contiguous() for k, v in state.items()}, tmp_path / "w.safetensors")
    torch.save(state, tmp_path / "plain.pth")
    torch.save({"model": {f"module.{k}": v for k, v in state.items()}, "epoch": 3},
               tmp_path / "ddp.pt")
    torch.save({"state_dict": {f"_orig_mod.{k}": v for k, v in state.items()}},
               tmp_path / "compiled.pth")
    torch.save({"model_state_dict": state, "optimizer": {}}, tmp_path / "nested.pth")
    for name in ("w.safetensors", "plain.pth", "ddp.pt", "compiled.pth", "nested.pth"):
        read = read_state_dict(tmp_path / name)
        assert read.keys() == state.keys(), name
        assert all(torch.equal(read[k], state[k]) for k in state), name


def test_build_with_weights_reports_the_replaced_head(resnet18_file):
    model = cnnspec.build(SPECS / "resnet18.cnn", classes=2, weights=resnet18_file)
    report = model.weights_report
    assert report.mismatched == ["fc.weight: 1000x512 in the file, 2x512 in the spec",
                                 "fc.bias: 1000 in the file, 2 in the spec"]
    assert len(report.loaded) == 120 and not report.missing and not report.unused
    reference = torch.load(resnet18_file, weights_only=True)
    assert torch.equal(model.get_parameter("layer3.1.conv2.weight"),
                       reference["layer3.1.conv2.weight"])


class _Trap:
    """Unpickling this would create a file: a weights file must never run it."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_bad_weights_files_get_one_clear_error_each(tmp_path, resnet18_file):
    def refused(path, phrase, **build):
        with pytest.raises(WeightsError) as caught:
            cnnspec.build(build.pop("spec", SMALL_BN), weights=path, **build)
        assert phrase in str(caught.value), str(caught.value)

    refused(tmp_path / "none.pth", "no weights file")
    (tmp_path / "w.txt").write_text("1 2 3")
    refused(tmp_path / "w.txt", "cannot tell the format")
    whole = tmp_path / "whole.pth"
    torch.save(cnnspec.build(SMALL_BN).state_dict(), whole)
    (tmp_path / "cut.pth").write_bytes(whole.read_bytes()[:300])
    refused(tmp_path / "cut.pth", "not a readable PyTorch file")
    (tmp_path / "bad.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{}")
    refused(tmp_path / "bad.safetensors", "not a readable safetensors file")
    trap = tmp_path / "executed"
    with open(tmp_path / "trap.pth", "wb") as handle:
        pickle.dump({"conv1.weight": _Trap(str(trap))}, handle)
    refused(tmp_path / "trap.pth", "it was not executed")
    assert not trap.exists()
    torch.save({"epoch": torch.tensor(3), "name": "x"}, tmp_path / "odd.pth")
    refused(tmp_path / "odd.pth", "not a state dict")
    # A ResNet's weights for a small net: nothing fits; the message names mismatches.
    refused(resnet18_file, "no tensor of")
    # A backbone that differs (another width) is refused, not silently re-initialised.
    torch.save(cnnspec.build(SMALL_BN.replace("conv 16", "conv 12")).state_dict(),
               tmp_path / "narrow.pth")
    refused(tmp_path / "narrow.pth", "does not fit the spec's backbone")


def _snapshot(model, prefixes):
    return {k: v.clone() for k, v in model.state_dict().items()
            if k.startswith(prefixes)}


def test_freeze_by_pattern_keeps_every_frozen_tensor_bitwise(tmp_path):
    spec = cnnspec.load(SMALL_BN)
    torch.manual_seed(0)
    start = tmp_path / "start.pth"
    torch.save(cnnspec.build(spec).state_dict(), start)
    result = cnnspec.train(spec, data="digits", out=tmp_path / "run", weights=start,
                           freeze="conv1,bn1", epochs=1, batch=64, verbose=False)
    before = torch.load(start, weights_only=True)
    after = result.model.state_dict()
    for name in ("conv1.weight", "bn1.weight", "bn1.bias", "bn1.running_mean",
                 "bn1.running_var", "bn1.num_batches_tracked"):
        assert torch.equal(before[name], after[name]), name
    for name in ("conv2.weight", "bn2.running_mean", "fc.weight"):
        assert not torch.equal(before[name], after[name]), name
    recorded = json.loads((tmp_path / "run" / "run.json").read_text())
    assert recorded["config"]["freeze"] == ["conv1", "bn1"]


def test_unfreeze_from_and_patterns_that_match_nothing(tmp_path):
    from cnnspec.training.errors import UsageError
    from cnnspec.training.finetune import select_layers

    layers = cnnspec.load(SPECS / "resnet18.cnn").layer_names
    frozen = select_layers(layers, unfreeze_from="layer4")
    assert frozen[0] == "conv1" and frozen[-1].startswith("layer3.1.")
    assert not any(name.startswith(("layer4", "fc")) for name in frozen)
    assert select_layers(layers, ["layer1.*"]) == [n for n in layers
                                                   if n.startswith("layer1.")]
    with pytest.raises(UsageError, match="matches no layer"):
        select_layers(layers, ["layer9"])
    with pytest.raises(UsageError, match="no such layer"):
        select_layers(layers, unfreeze_from="layr4")


def test_the_lectures_transfer_recipe(tmp_path, resnet18_file, image_folder, capsys):
    """specs/resnet18_transfer.cnn from torchvision's resnet18: only fc is skipped,
    the frozen backbone (running statistics included) ends bitwise unchanged, the
    head changes, and the recipe that ran is SGD 0.001 / 0.9 with StepLR(7, 0.1)."""
    root = image_folder(tmp_path / "bees", classes=2, per_class=4, size=(64, 64),
                        val=True)
    result = cnnspec.train(SPECS / "resnet18_transfer.cnn", data=str(root),
                           out=tmp_path / "run", weights=resnet18_file, epochs=1)
    out = capsys.readouterr().out
    skipped = [line.strip() for line in out.splitlines() if "skipped" in line]
    assert skipped == ["skipped fc.weight: 1000x512 in the file, 2x512 in the spec",
                       "skipped fc.bias: 1000 in the file, 2 in the spec"]
    assert "weights: 120 of 122 tensors loaded" in out
    reference = torch.load(resnet18_file, weights_only=True)
    after = result.model.state_dict()
    backbone = [k for k in after if not k.startswith("fc.")]
    assert len(backbone) == 120
    assert all(torch.equal(after[k], reference[k]) for k in backbone)
    first = cnnspec.build(SPECS / "resnet18_transfer.cnn")  # seed 0, as the run
    assert not torch.equal(after["fc.weight"], first.fc.weight.detach())
    config = json.loads((tmp_path / "run" / "run.json").read_text())["config"]
    assert config["optimizer"] == {"kind": "sgd", "lr": 0.001, "momentum": 0.9,
                                   "nesterov": False}
    assert config["schedule"] == {"kind": "step", "step_size": 7, "gamma": 0.1,
                                  "per": "epoch"}
    assert config["batch"] == 4 and config["weights"] == str(resnet18_file)


def test_lr_head_gives_the_classifier_its_own_rate(tmp_path):
    """Discriminative fine-tuning: with Adam, a step moves each weight by about its
    group's rate, so a body at 1e-6 barely moves while the head at 1e-2 learns."""
    spec = cnnspec.load(SMALL_BN)
    torch.manual_seed(0)
    start = tmp_path / "start.pth"
    torch.save(cnnspec.build(spec).state_dict(), start)
    result = cnnspec.train(spec, data="digits", out=tmp_path / "run", weights=start,
                           lr=1e-6, lr_head=1e-2, epochs=1, verbose=False)
    before = torch.load(start, weights_only=True)
    after = result.model.state_dict()
    moved = {name: (after[name] - before[name]).abs().max().item()
             for name in ("conv1.weight", "conv2.weight", "fc.weight", "fc.bias")}
    assert moved["conv1.weight"] < 1e-4 and moved["conv2.weight"] < 1e-4, moved
    assert moved["fc.weight"] > 1e-2 and moved["fc.bias"] > 1e-2, moved
    recorded = json.loads((tmp_path / "run" / "run.json").read_text())
    assert recorded["config"]["lr_head"] == 1e-2


def test_reinit_keeps_chosen_layers_fresh(tmp_path):
    """--reinit: the selected layers keep the model's own initialization even though
    the file has them; the rest loads; the report says which."""
    from cnnspec.backends.torch_backend import to_torch
    from cnnspec.training.errors import UsageError
    from cnnspec.training.weights import load_weights

    spec = cnnspec.load(SPECS / "lenet5.cnn")
    torch.manual_seed(1)
    trained = tmp_path / "trained.pth"
    torch.save(to_torch(spec).state_dict(), trained)
    torch.manual_seed(0)
    model = to_torch(spec)
    fresh = {k: v.clone() for k, v in model.state_dict().items()}
    report = load_weights(model, trained, spec, reinit=("c5", "f6"))
    saved, after = torch.load(trained, weights_only=True), model.state_dict()
    for name in after:
        source = fresh if name.startswith(("c5.", "f6.")) else saved
        assert torch.equal(after[name], source[name]), name
    assert report.lines()[0] == f"weights: 6 of 10 tensors loaded from {trained}"
    assert report.lines()[1:] == [f"  re-initialised {layer}.{kind} (--reinit)"
                                  for layer in ("c5", "f6") for kind in ("weight", "bias")]
    with pytest.raises(UsageError, match="--reinit c9 matches no layer of the spec; layers are named like c1"):
        load_weights(model, trained, spec, reinit=("c9",))
    with pytest.raises(UsageError, match="--reinit leaves layers out of --weights"):
        cnnspec.train(spec, data="digits", out=tmp_path / "run", reinit="f6")


def test_fine_tuning_on_the_command_line(cli, tmp_path):
    """`cnnspec train --weights W --unfreeze-from L`: the layers before L end bitwise
    as loaded, and the run says how many parameters train; a bad weights file or a
    pattern that matches nothing is one line and exit status 2, no traceback."""
    from safetensors.torch import load_file

    spec = tmp_path / "small_bn.cnn"
    spec.write_text(SMALL_BN)
    torch.manual_seed(0)
    start = tmp_path / "start.pth"
    torch.save(cnnspec.build(SMALL_BN).state_dict(), start)
    run = cli("train", spec, "--data", "digits", "--weights", start,
              "--unfreeze-from", "conv2", "--epochs", "1", "--out", tmp_path / "run")
    assert run.returncode == 0, run.stderr
    # conv1 3*3*1*8 = 72 and bn1 2*8 = 16 frozen; conv2 3*3*8*16 = 1,152, bn2 32 and
    # fc 16*10 + 10 = 170 train: 1,354 of 1,442.
    assert "1,354 of 1,442 parameters train" in run.stdout
    before = torch.load(start, weights_only=True)
    after = load_file(tmp_path / "run" / "weights.safetensors")
    for name in ("conv1.weight", "bn1.weight", "bn1.bias", "bn1.running_mean",
                 "bn1.running_var"):
        assert torch.equal(before[name], after[name]), name
    assert not torch.equal(before["conv2.weight"], after["conv2.weight"])

    def refused(phrase, *flags):
        bad = cli("train", spec, "--data", "digits", "--epochs", "1", *flags)
        assert bad.returncode == 2, (bad.stdout, bad.stderr)
        assert phrase in bad.stderr and "Traceback" not in bad.stderr, bad.stderr

    (tmp_path / "cut.pth").write_bytes(start.read_bytes()[:300])
    refused("not a readable PyTorch file", "--weights", tmp_path / "cut.pth")
    (tmp_path / "w.txt").write_text("1 2 3")
    refused("cannot tell the format", "--weights", tmp_path / "w.txt")
    torch.save(cnnspec.build(SMALL_BN.replace("conv 16", "conv 12")).state_dict(),
               tmp_path / "narrow.pth")
    refused("does not fit the spec's backbone", "--weights", tmp_path / "narrow.pth")
    refused("matches no layer", "--freeze", "conv9")
    refused("no such layer", "--unfreeze-from", "conv9")
