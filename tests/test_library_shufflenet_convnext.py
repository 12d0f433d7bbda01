"""ShuffleNet V2 0.5x/1x/1.5x/2x and ConvNeXt-T/S/B/L against torchvision.

For every spec: the parameter count is torchvision's (its weights' documented count and
the sum over the model's parameters), the state dict has torchvision's keys and shapes
(ConvNeXt's bare `layer_scale` parameters included) and loads strictly, and the MACs
are torchvision's documented "GFLOPS" (multiply-adds, at the weights' 224x224 crop)
within 1% and equal to torch's flop counter run on torchvision's model. Eval outputs
are compared for every model, with every batchnorm (ShuffleNet) or every layer norm and
layer scale (ConvNeXt) randomised first: fresh layer scales of 1e-6 make ConvNeXt's
blocks nearly the identity, which would hide a wrong block. ShuffleNets and ConvNeXt-T
run at 224x224; ConvNeXt-S/B/L at 64x64, since the compiled graph does not depend on
the input size. Train-mode outputs and one SGD step are compared for ShuffleNet V2 0.5x
and ConvNeXt-T (whose stochastic depth draws the same random numbers under one seed),
the output shape of every stage against torchvision's, and the standalone PyTorch
source that `cnnspec.backends.codegen.to_python` writes against the built module.

The ShuffleNets (specs/blocks/shufflenet.cnn) differ only in the output channels of
table 5 of Ma et al. (2018); the ConvNeXts (specs/blocks/convnext.cnn) only in depths,
widths and the stochastic depth probability."""

import parity_helpers as parity
import pytest
import torch
import torchvision.models as tvm
from conftest import SPECS
from torch import nn

import cnnspec
from cnnspec.backends.codegen import class_name_of, to_python

# name -> torchvision weights enum
SHUFFLENETS = {
    "shufflenet_v2_x0_5": tvm.ShuffleNet_V2_X0_5_Weights,
    "shufflenet_v2_x1_0": tvm.ShuffleNet_V2_X1_0_Weights,
    "shufflenet_v2_x1_5": tvm.ShuffleNet_V2_X1_5_Weights,
    "shufflenet_v2_x2_0": tvm.ShuffleNet_V2_X2_0_Weights,
}
CONVNEXTS = {
    "convnext_tiny": tvm.ConvNeXt_Tiny_Weights,
    "convnext_small": tvm.ConvNeXt_Small_Weights,
    "convnext_base": tvm.ConvNeXt_Base_Weights,
    "convnext_large": tvm.ConvNeXt_Large_Weights,
}
MODELS = {**SHUFFLENETS, **CONVNEXTS}
# Compared at 64x64 instead of the native 224x224, to keep the file fast.
REDUCED = {"convnext_small", "convnext_base", "convnext_large"}


def _randomised_reference(name):
    torch.manual_seed(0)
    reference = parity.torchvision_model(name)
    if name in SHUFFLENETS:
        assert parity.randomise_batchnorm(reference) > 0
    else:
        assert parity.randomise_batchnorm(reference) == 0  # ConvNeXt has no batchnorm
        assert parity.randomise_layer_norms_and_scales(reference) > 0
    return reference


@pytest.mark.parametrize("name", list(MODELS))
def test_parameters_and_state_dict_keys_match_torchvision(name):
    spec = cnnspec.load(SPECS / f"{name}.cnn")
    parity.check_parameters_and_state_dict(spec, parity.torchvision_model(name, "meta"),
                                           MODELS[name].IMAGENET1K_V1.meta["num_params"])


@pytest.mark.parametrize("name", list(MODELS))
def test_macs_match_torchvision_documented_gflops(name):
    """torchvision documents "GFLOPS" rounded to three decimals, which for ShuffleNet
    V2 0.5x (0.04048 G) is itself 1.2% off: within 1% or half a unit of the last
    decimal. Layer norms, GELU, layer scales, shuffles and stochastic depth count no
    MACs, as in torch's flop counter, which must agree exactly."""
    spec = cnnspec.load(SPECS / f"{name}.cnn")
    parity.check_documented_macs(spec, MODELS[name].IMAGENET1K_V1, rel=0.01, absolute=0.0005)
    assert spec.macs == parity.torch_macs(parity.torchvision_model(name, "meta"), spec.input_shape)


# What the state dict does not show: conv geometry, norm eps, ConvNeXt's stochastic
# depth (torchvision's linear rule 0.1/0.4/0.5/0.5 * block / (blocks - 1), row mode).
_SETTINGS = {
    nn.Conv2d: ("kernel_size", "stride", "padding", "dilation", "groups"),
    nn.BatchNorm2d: ("eps", "momentum", "affine", "track_running_stats"),
    nn.LayerNorm: ("normalized_shape", "eps", "elementwise_affine"),
    nn.Linear: ("in_features", "out_features"),
    nn.GELU: ("approximate",),
}


@pytest.mark.parametrize("name", list(MODELS))
def test_every_layer_has_torchvision_settings(name):
    with torch.device("meta"):
        model = cnnspec.build(SPECS / f"{name}.cnn")
    reference = parity.torchvision_model(name, "meta")
    ours = dict(model.named_modules())
    drops = 0
    for key, module in reference.named_modules():
        if type(module).__name__ == "StochasticDepth":
            assert module.mode == "row"
            assert ours[key].p == pytest.approx(module.p, abs=1e-12), key
            drops += 1
            continue
        for kind, fields in _SETTINGS.items():
            if isinstance(module, kind):
                assert isinstance(ours[key], kind), key
                for field in fields:
                    assert getattr(ours[key], field) == getattr(module, field), (key, field)
    if name in CONVNEXTS:
        assert drops == sum(1 for k in reference.state_dict() if k.endswith("layer_scale"))
        assert drops > 0


@pytest.mark.parametrize("name", list(MODELS))
def test_strict_load_and_equal_eval_outputs(name):
    reference = _randomised_reference(name).eval()
    spec = cnnspec.load(SPECS / f"{name}.cnn")
    model = cnnspec.build(spec)
    shape = (3, 64, 64) if name in REDUCED else spec.input_shape
    parity.check_strict_load_and_eval_outputs(reference, model, torch.randn((1,) + shape))


# In train mode: batchnorm on batch statistics, ConvNeXt's stochastic depth drawing the
# same random numbers under one seed, then one SGD step (parameters, layer scales and
# running statistics equal afterwards).
@pytest.mark.parametrize("name", ["shufflenet_v2_x0_5", "convnext_tiny"])
def test_training_step_matches_torchvision(name):
    reference = _randomised_reference(name)
    model = cnnspec.build(SPECS / f"{name}.cnn")
    parity.check_strict_load_and_training_step(reference, model, torch.randn(2, 3, 64, 64))


def _stages(module):
    """The children of torchvision's `features` (ConvNeXt), or of the model itself
    (ShuffleNet), by name."""
    features = getattr(module, "features", None)
    if features is not None:
        return [f"features.{key}" for key, _ in features.named_children()]
    return [key for key, _ in module.named_children()]


@pytest.mark.parametrize("name", list(MODELS))
def test_stage_shapes_match_torchvision(name):
    """ShuffleNet: conv1, maxpool, stage2-4, conv5, fc. ConvNeXt: every entry of
    `features` (the stem, the four stages, the three downsampling layers)."""
    spec = cnnspec.load(SPECS / f"{name}.cnn")
    reference = parity.torchvision_model(name, "meta")
    expected = parity.submodule_output_shapes(reference, _stages(reference), spec.input_shape)
    assert len(expected) >= 7
    assert parity.scope_output_shapes(spec, expected) == expected


@pytest.mark.parametrize("name", ["shufflenet_v2_x0_5", "convnext_tiny"])
def test_generated_python_matches_the_built_module(name):
    """The standalone source from `to_python` defines the same module: torchvision's
    state dict loads strictly into it and it gives the same eval outputs."""
    spec = cnnspec.load(SPECS / f"{name}.cnn")
    source = to_python(spec)
    namespace: dict = {}
    exec(compile(source, f"{name}.py", "exec"), namespace)  # noqa: S102 - our own source
    generated = namespace[class_name_of(source)]().eval()
    reference = _randomised_reference(name).eval()
    generated.load_state_dict(reference.state_dict(), strict=True)
    built = cnnspec.build(spec).eval()
    built.load_state_dict(reference.state_dict(), strict=True)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        expected = reference(x)
        parity.assert_outputs_close(built(x), expected)
        parity.assert_outputs_close(generated(x), expected)
