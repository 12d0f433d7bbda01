"""DenseNet-161/169/201, SqueezeNet 1.0/1.1 and EfficientNet-B0...B7 against torchvision.

For every spec: the parameter count is torchvision's, the state dict has torchvision's
keys and shapes and loads strictly, and the MACs are torchvision's documented "GFLOPS"
(which count multiply-adds, at the weights' inference resolution) within 1%. Eval
outputs are compared for every model (batch 1, at the weights' inference resolution,
to 1e-5, every batchnorm's statistics and affine parameters randomised first), and
train-mode outputs and one SGD step for the smaller ones; parameters and state-dict
keys and shapes are also compared on models built on the meta device (no memory, no
initialisation cost).
EfficientNet-B1...B7 are B0 scaled by the network parameters width_mult and depth_mult
(specs/blocks/efficientnet.cnn), so these tests also check the compound scaling."""

import parity_helpers as parity
import pytest
import torch
import torchvision.models as tvm
from conftest import SPECS

import cnnspec

# name -> torchvision weights enum
MODELS = {
    "densenet161": tvm.DenseNet161_Weights,
    "densenet169": tvm.DenseNet169_Weights,
    "densenet201": tvm.DenseNet201_Weights,
    "squeezenet1_0": tvm.SqueezeNet1_0_Weights,
    "squeezenet1_1": tvm.SqueezeNet1_1_Weights,
    **{f"efficientnet_b{i}": getattr(tvm, f"EfficientNet_B{i}_Weights") for i in range(8)},
}

# (width_mult, depth_mult, resolution, dropout): torchvision's efficientnet_bN and the
# crop size of its IMAGENET1K_V1 weights.
EFFICIENTNET = {
    0: (1.0, 1.0, 224, 0.2), 1: (1.0, 1.1, 240, 0.2), 2: (1.1, 1.2, 288, 0.3),
    3: (1.2, 1.4, 300, 0.3), 4: (1.4, 1.8, 380, 0.4), 5: (1.6, 2.2, 456, 0.4),
    6: (1.8, 2.6, 528, 0.5), 7: (2.0, 3.1, 600, 0.5),
}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_parameters_and_state_dict_keys_match_torchvision(name):
    spec = cnnspec.load(SPECS / f"{name}.cnn")
    parity.check_parameters_and_state_dict(spec, parity.torchvision_model(name, "meta"),
                                           MODELS[name].IMAGENET1K_V1.meta["num_params"])


@pytest.mark.parametrize("name", sorted(MODELS))
def test_macs_match_torchvision_documented_gflops(name):
    parity.check_documented_macs(cnnspec.load(SPECS / f"{name}.cnn"), MODELS[name].IMAGENET1K_V1)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_strict_load_and_equal_eval_outputs(name):
    """Every batchnorm randomised first (parity_helpers.py): with fresh statistics a
    batchnorm is a positive scaling, and one moved past its ReLU would still match."""
    torch.manual_seed(0)
    reference = parity.torchvision_model(name).eval()
    changed = parity.randomise_batchnorm(reference)
    assert changed == 0 if name.startswith("squeezenet") else changed > 0
    spec = cnnspec.load(SPECS / f"{name}.cnn")
    model = cnnspec.build(spec)
    x = torch.randn((1,) + spec.input_shape)
    parity.check_strict_load_and_eval_outputs(reference, model, x)


# The smaller models, in train mode: batchnorm on batch statistics, EfficientNet's
# dropout and stochastic depth drawing the same random numbers under one seed, then
# one SGD step (parameters and running statistics equal afterwards). The compiled
# graphs do not depend on the input size, so a 64x64 batch of 2 keeps it cheap.
@pytest.mark.parametrize("name", ["efficientnet_b0", "squeezenet1_1"])
def test_training_step_matches_torchvision(name):
    torch.manual_seed(0)
    reference = parity.torchvision_model(name)
    parity.randomise_batchnorm(reference)
    model = cnnspec.build(SPECS / f"{name}.cnn")
    parity.check_strict_load_and_training_step(reference, model, torch.randn(2, 3, 64, 64))


# One network on the shared features block, with every scaling knob a parameter.
SCALABLE = """import "{blocks}"
network efficientnet(classes = 1000, width_mult = 1.0, depth_mult = 1.0,
                     resolution = 224, dropout = 0.2, eps = 0.00001, momentum = 0.1) {{
    input 3 x resolution x resolution
    features: efficientnet_features(width_mult, depth_mult, 0.2, eps, momentum)
    avgpool: avgpool global
    flatten
    classifier: {{ dropout dropout; linear classes }}
}}
"""


@pytest.mark.parametrize("variant", sorted(EFFICIENTNET))
def test_efficientnet_variants_are_b0_compound_scaled(variant, tmp_path):
    """B0 with B<variant>'s multipliers, resolution and dropout is torchvision's
    efficientnet_b<variant>: its parameters, state-dict shapes, MACs and dropout."""
    width, depth, resolution, dropout = EFFICIENTNET[variant]
    path = tmp_path / "efficientnet.cnn"
    path.write_text(SCALABLE.format(blocks=(SPECS / "blocks" / "efficientnet.cnn").as_posix()))
    bn = {"eps": 0.001, "momentum": 0.01} if variant >= 5 else {}
    scaled = cnnspec.load(path, width_mult=width, depth_mult=depth,
                          resolution=resolution, dropout=dropout, **bn)
    name = f"efficientnet_b{variant}"
    reference = parity.torchvision_model(name, "meta")
    crop = MODELS[name].IMAGENET1K_V1.transforms().crop_size[0]
    assert scaled.input_shape == (3, crop, crop) and scaled.output_shape == (1000,)
    assert scaled.macs == parity.torch_macs(reference, scaled.input_shape)
    model = parity.check_parameters_and_state_dict(scaled, reference)
    assert model.get_submodule("classifier.0").p == reference.classifier[0].p


@pytest.mark.parametrize("name", ["efficientnet_b0", "efficientnet_b5"])
def test_efficientnet_batchnorm_dropout_and_stochastic_depth(name):
    """What the state dict does not show: batchnorm eps and momentum (torchvision's
    defaults for B0-B4, eps 1e-3 and momentum 0.01 for B5-B7), the classifier's
    dropout, and stochastic depth 0.2 * block index / blocks, only on residual blocks."""
    with torch.device("meta"):
        model = cnnspec.build(SPECS / f"{name}.cnn")
    residual, _ = parity.check_norm_dropout_and_stochastic_depth(
        model, parity.torchvision_model(name, "meta"), {"MBConv"}, approx=True)
    assert residual["MBConv"] > 0
