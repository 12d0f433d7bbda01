"""MobileNetV2, MobileNetV3-Small/Large and MnasNet 0.5/0.75/1.0/1.3 against torchvision.

For every spec: the parameter count is torchvision's (its weights' documented count and
the sum over the model's parameters), the state dict has torchvision's keys and shapes
and loads strictly, every layer holding settings has torchvision's (module class, conv
geometry, batchnorm eps and momentum, dropout), and the MACs are torchvision's
documented "GFLOPS" (multiply-adds, at the weights' 224x224 crop) within 1%. Eval outputs
are compared for every model (batch 1, 224x224, every batchnorm's statistics and affine
parameters randomised first), train-mode outputs and one SGD step for the smallest model
of each family, and the output shape of every entry of torchvision's `features`
(`layers` in MnasNet) against the spec's.

MobileNetV3-Small and -Large share one block file (specs/blocks/mobilenet.cnn) and
differ only in their stage table; MnasNet's four widths are one network
(specs/blocks/mnasnet.cnn) at four values of the depth multiplier alpha, which these
tests check against torchvision's MNASNet at other alphas too."""

import re

import parity_helpers as parity
import pytest
import torch
import torchvision.models as tvm
from conftest import SPECS
from torch import nn

import cnnspec

# name -> torchvision weights enum
MODELS = {
    "mobilenet_v2": tvm.MobileNet_V2_Weights,
    "mobilenet_v3_small": tvm.MobileNet_V3_Small_Weights,
    "mobilenet_v3_large": tvm.MobileNet_V3_Large_Weights,
    "mnasnet0_5": tvm.MNASNet0_5_Weights,
    "mnasnet0_75": tvm.MNASNet0_75_Weights,
    "mnasnet1_0": tvm.MNASNet1_0_Weights,
    "mnasnet1_3": tvm.MNASNet1_3_Weights,
}
MNASNETS = [name for name in MODELS if name.startswith("mnasnet")]


@pytest.mark.parametrize("name", sorted(MODELS))
def test_parameters_and_state_dict_keys_match_torchvision(name):
    spec = cnnspec.load(SPECS / f"{name}.cnn")
    parity.check_parameters_and_state_dict(spec, parity.torchvision_model(name, "meta"),
                                           MODELS[name].IMAGENET1K_V1.meta["num_params"])


@pytest.mark.parametrize("name", sorted(MODELS))
def test_macs_match_torchvision_documented_gflops(name):
    parity.check_documented_macs(cnnspec.load(SPECS / f"{name}.cnn"), MODELS[name].IMAGENET1K_V1)


# What a module's class and state dict do not show, layer by layer.
_SETTINGS = {
    nn.Conv2d: ("kernel_size", "stride", "padding", "dilation", "groups"),
    nn.BatchNorm2d: ("eps", "momentum", "affine", "track_running_stats"),
    nn.Dropout: ("p",),
    nn.Linear: ("in_features", "out_features"),
}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_layer_has_torchvision_class_and_settings(name):
    """Every leaf module of torchvision's model (convs, batchnorms, activations, SE
    pooling, dropout, linear layers) exists under the same name in the compiled spec,
    of the same class, with the same settings: ReLU6 in MobileNetV2, ReLU or h-swish
    per row and the hard-sigmoid SE gate in MobileNetV3, batchnorm eps 0.001 and
    momentum 0.01 in MobileNetV3, momentum 1 - 0.9997 in MnasNet."""
    with torch.device("meta"):
        model = cnnspec.build(SPECS / f"{name}.cnn")
    reference = parity.torchvision_model(name, "meta")
    ours = dict(model.named_modules())
    leaves = 0
    for key, module in reference.named_modules():
        if next(module.children(), None) is not None:
            continue
        assert key in ours, key
        assert type(ours[key]) is type(module), key
        for field in _SETTINGS.get(type(module), ()):
            assert getattr(ours[key], field) == getattr(module, field), (key, field)
        leaves += 1
    assert leaves > 50


@pytest.mark.parametrize("name", sorted(MODELS))
def test_strict_load_and_equal_eval_outputs(name):
    """Every batchnorm randomised first (parity_helpers.py): with fresh statistics a
    batchnorm is a positive scaling, and one moved past its ReLU would still match."""
    torch.manual_seed(0)
    reference = parity.torchvision_model(name).eval()
    assert parity.randomise_batchnorm(reference) > 0
    spec = cnnspec.load(SPECS / f"{name}.cnn")
    model = cnnspec.build(spec)
    x = torch.randn((1,) + spec.input_shape)
    parity.check_strict_load_and_eval_outputs(reference, model, x)


# The smallest model of each family, in train mode: batchnorm on batch statistics (and
# MnasNet's and MobileNetV3's momentum in the running statistics), dropout drawing the
# same random numbers under one seed, then one SGD step. The compiled graphs do not
# depend on the input size, so a 64x64 batch of 2 keeps it cheap.
@pytest.mark.parametrize("name", ["mobilenet_v2", "mobilenet_v3_small", "mnasnet0_5"])
def test_training_step_matches_torchvision(name):
    torch.manual_seed(0)
    reference = parity.torchvision_model(name)
    parity.randomise_batchnorm(reference)
    model = cnnspec.build(SPECS / f"{name}.cnn")
    parity.check_strict_load_and_training_step(reference, model, torch.randn(2, 3, 64, 64))


@pytest.mark.parametrize("name", sorted(MODELS))
def test_stage_shapes_match_torchvision(name):
    """The output of every entry of torchvision's `features` (MobileNets: the stem,
    each bottleneck, the last conv) or `layers` (MnasNet: the stem's layers, each
    stack of figure 7, the last conv) has the shape of the spec's scope of that name."""
    spec = cnnspec.load(SPECS / f"{name}.cnn")
    container = "layers" if name.startswith("mnasnet") else "features"
    reference = parity.torchvision_model(name, "meta")
    stages = [f"{container}.{key}" for key, _ in
              reference.get_submodule(container).named_children()]
    expected = parity.submodule_output_shapes(reference, stages, spec.input_shape)
    assert len(expected) >= 13
    assert parity.scope_output_shapes(spec, expected) == expected


def test_mobilenet_v3_small_and_large_share_their_blocks():
    """Both networks import the same block file and call the same `bneck`; the files
    differ in their tables, not in any block of their own."""
    texts = {name: (SPECS / f"{name}.cnn").read_text()
             for name in ("mobilenet_v3_small", "mobilenet_v3_large")}
    for name, text in texts.items():
        assert 'import "blocks/mobilenet.cnn"' in text, name
        assert re.search(r"^\s*block\s", text, re.MULTILINE) is None, name
        # one bneck call per row of the paper's table: 11 in Small, 15 in Large
        rows = len(re.findall(r"^\s*bneck\(", text, re.MULTILINE))
        reference = parity.torchvision_model(name, "meta")
        blocks = sum(type(m).__name__ == "InvertedResidual" for m in reference.features)
        assert rows == blocks, name


# One network on the shared MnasNet block, with the depth multiplier a parameter.
SCALABLE = """import "{blocks}"
network mnasnet(classes = 1000, alpha = 1.0, dropout = 0.2) {{
    input 3x224x224
    layers: mnasnet_layers(alpha)
    avgpool global
    flatten
    classifier: {{ dropout dropout; linear classes }}
}}
"""


def _layers(spec):
    return [(node.name, spec.table[node.id]) for node in spec.graph.nodes]


def _scalable(tmp_path, **params):
    path = tmp_path / "mnasnet.cnn"
    path.write_text(SCALABLE.format(blocks=(SPECS / "blocks" / "mnasnet.cnn").as_posix()))
    return cnnspec.load(path, **params)


@pytest.mark.parametrize("name", MNASNETS)
def test_mnasnet_variants_differ_only_in_alpha(name, tmp_path):
    """mnasnet<alpha>.cnn is the shared MnasNet network at torchvision's alpha for that
    variant (MNASNet.alpha): layer for layer the same as mnasnet1_0.cnn with alpha set,
    and as the block file in a bare network; and that network has torchvision's
    parameters, state-dict shapes and MACs."""
    reference = parity.torchvision_model(name, "meta")
    alpha = reference.alpha
    spec = cnnspec.load(SPECS / f"{name}.cnn")
    assert _layers(spec) == _layers(cnnspec.load(SPECS / f"{name}.cnn", alpha=alpha))
    assert _layers(spec) == _layers(cnnspec.load(SPECS / "mnasnet1_0.cnn", alpha=alpha))
    scaled = _scalable(tmp_path, alpha=alpha)
    assert _layers(scaled) == _layers(spec)
    assert scaled.macs == parity.torch_macs(reference, scaled.input_shape)
    parity.check_parameters_and_state_dict(scaled, reference)


@pytest.mark.parametrize("alpha", [0.2, 0.35, 0.6, 0.9, 1.1, 1.4, 1.75, 2.0])
def test_mnasnet_depth_multiplier_rounds_like_torchvision(alpha, tmp_path):
    """Other alphas than torchvision's four: the spec's make_divisible(d * alpha, 8)
    gives the depths of torchvision's _round_to_multiple_of(d * alpha, 8) (its
    _get_depths), so the parameters and state-dict shapes are MNASNet(alpha)'s."""
    from torchvision.models.mnasnet import _get_depths

    with torch.device("meta"):
        reference = tvm.MNASNet(alpha)
    scaled = _scalable(tmp_path, alpha=alpha)
    depths = _get_depths(alpha)
    # the stem conv, the separable conv's projection, the six stacks' outputs
    stages = ["layers.0", "layers.6"] + [f"layers.{i}" for i in range(8, 14)]
    found = parity.scope_output_shapes(scaled, stages)
    assert [found[s][0] for s in stages] == depths
    parity.check_parameters_and_state_dict(scaled, reference)
