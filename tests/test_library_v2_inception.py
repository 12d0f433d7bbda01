"""EfficientNetV2-S/M/L, Inception-v3 and ResNeXt-101 (64x4d) against torchvision.

For every spec: the parameter count is torchvision's and its weights' documented one,
the state dict has torchvision's keys and shapes (compared on the meta device) and
loads strictly, the MACs are torchvision's documented "GFLOPS" (which count
multiply-adds, at the weights' crop size) within 1% and torch's FLOP counter's
exactly, the input is the weights' crop size, and the shape after every stage is the
one torchvision's modules produce. Eval outputs are compared (batch 1, every
batchnorm's statistics and affine parameters randomised first, to 1e-5): at the
native resolution for Inception-v3, on a
128x128 input for the heavier ones (the compiled graph does not depend on the input
size; a separate benchmark compares every model at its native resolution). In train
mode (batchnorm on batch statistics, dropout, stochastic depth, Inception-v3's
auxiliary head), outputs and one SGD step are compared for Inception-v3 and
EfficientNetV2-S. torchvision is the source of every expected number."""

import parity_helpers as parity
import pytest
import torch
import torchvision.models as tvm
from conftest import SPECS
from torch import nn

import cnnspec

# name -> torchvision weights enum
MODELS = {
    "efficientnet_v2_s": tvm.EfficientNet_V2_S_Weights,
    "efficientnet_v2_m": tvm.EfficientNet_V2_M_Weights,
    "efficientnet_v2_l": tvm.EfficientNet_V2_L_Weights,
    "inception_v3": tvm.Inception_V3_Weights,
    "resnext101_64x4d": tvm.ResNeXt101_64X4D_Weights,
}
# Eval parity for the models over 10 GMACs on a smaller input, to keep the suite fast.
REDUCED = {"efficientnet_v2_s": 128, "efficientnet_v2_m": 128, "efficientnet_v2_l": 128,
           "resnext101_64x4d": 128}

_SPECS = {}


def _spec(name, **params):
    """Load each spec once (the tests only read it)."""
    key = (name, tuple(sorted(params.items())))
    if key not in _SPECS:
        _SPECS[key] = cnnspec.load(SPECS / f"{name}.cnn", **params)
    return _SPECS[key]


def _reference(name, device="cpu", **kwargs):
    if name == "inception_v3":
        # weights=None: transform_input=False (only the pretrained weights turn it on);
        # init_weights=True is its default, spelled out to silence its FutureWarning.
        kwargs.setdefault("init_weights", True)
    return parity.torchvision_model(name, device, **kwargs)


def _weights(name):
    return MODELS[name].IMAGENET1K_V1


@pytest.mark.parametrize("name", sorted(MODELS))
def test_parameters_and_state_dict_keys_match_torchvision(name):
    parity.check_parameters_and_state_dict(_spec(name), _reference(name, "meta"),
                                           _weights(name).meta["num_params"])


@pytest.mark.parametrize("name", sorted(MODELS))
def test_macs_and_input_match_torchvision(name):
    weights = _weights(name)
    spec = _spec(name)
    parity.check_documented_macs(spec, weights)
    assert spec.output_shape == (len(weights.meta["categories"]),)
    assert spec.macs == parity.torch_macs(_reference(name, "meta"), spec.input_shape)


def _stages(reference):
    """torchvision's stages: the children of `features` (EfficientNet), else the
    top-level modules before the classifier (the auxiliary head left out)."""
    if hasattr(reference, "features"):
        return [f"features.{i}" for i in range(len(reference.features))]
    return [n for n, m in reference.named_children()
            if not isinstance(m, (nn.Linear, nn.Dropout)) and n != "AuxLogits"]


def _scope_output(spec, scope):
    """The checked shape of what leaves the layer or scope `scope` on the main path."""
    nodes = spec.graph.nodes
    inside = {n.id for n in nodes if n.name == scope or n.name.startswith(scope + ".")}
    leaving = {i for n in nodes if n.id not in inside and not n.training_only
               for i in n.inputs if i in inside}
    leaving |= {o.node for o in spec.graph.outputs if o.node in inside}
    assert len(leaving) == 1, (scope, leaving)
    return spec.table[leaving.pop()].shape


@pytest.mark.parametrize("name", sorted(MODELS))
def test_stage_shapes_match_torchvision(name):
    """The shape after every stage at the native resolution: torchvision's modules
    run on the meta device, with forward hooks."""
    spec = _spec(name)
    reference = _reference(name, "meta")
    stages = _stages(reference)
    assert len(stages) >= 8
    seen = parity.submodule_output_shapes(reference, stages, spec.input_shape)
    assert {stage: _scope_output(spec, stage) for stage in stages} == seen


@pytest.mark.parametrize("name", sorted(MODELS))
def test_strict_load_and_equal_eval_outputs(name):
    """Every batchnorm randomised first (parity_helpers.py): with fresh statistics a
    batchnorm is a positive scaling, and one moved past its ReLU would still match."""
    torch.manual_seed(0)
    reference = _reference(name).eval()
    assert parity.randomise_batchnorm(reference) == sum(
        isinstance(m, nn.BatchNorm2d) for m in reference.modules()) > 0
    spec = _spec(name)
    with torch.device("meta"):  # no initialisation: every tensor comes from torchvision
        model = cnnspec.build(spec)
    size = REDUCED.get(name)
    x = torch.randn((1, 3, size, size) if size else (1,) + spec.input_shape)
    parity.check_strict_load_and_eval_outputs(reference, model, x, assign=True)


# Train mode: batchnorm on batch statistics, dropout and stochastic depth drawing the
# same random numbers under one seed, both of Inception-v3's outputs, then one SGD
# step. Inception-v3's auxiliary head needs a 17x17 grid (its 5x5/3 pool, then a 5x5
# conv), which only a 299x299 input gives: 75x75, the smallest input torchvision
# accepts, is enough for eval alone. EfficientNetV2-S on 64x64.
TRAINING = {
    "inception_v3": (299, ("logits", "aux_logits"), ("logits", "AuxLogits")),
    "efficientnet_v2_s": (64, ("logits",), ("logits",)),
}


@pytest.mark.parametrize("name", sorted(TRAINING))
def test_training_step_matches_torchvision(name):
    size, theirs, ours = TRAINING[name]
    torch.manual_seed(0)
    reference = _reference(name)
    parity.randomise_batchnorm(reference)
    model = cnnspec.build(_spec(name))
    parity.check_strict_load_and_training_step(reference, model, torch.randn(2, 3, size, size),
                                               reference_fields=theirs, model_fields=ours)


def test_inception_v3_transform_input_is_torchvision_pretrained_model():
    """`transform_input=true` is torchvision's inception_v3 as its ImageNet weights
    build it (transform_input=True): strict load, eval outputs equal bit for bit, on
    75x75, the smallest input torchvision's eval graph accepts."""
    torch.manual_seed(0)
    reference = tvm.inception_v3(weights=None, transform_input=True, aux_logits=True,
                                 init_weights=False)
    parity.check_transform_input(reference, SPECS / "inception_v3.cnn",
                                 torch.randn(2, 3, 75, 75), stem="Conv2d_1a_3x3")
    spec, plain = _spec("inception_v3", transform_input=True), _spec("inception_v3")
    assert (spec.params, spec.macs) == (plain.params, plain.macs)


def test_inception_v3_auxiliary_head():
    """Training-only, as torchvision's AuxLogits: its parameters are the difference
    between torchvision's models with and without it; it adds no eval MACs."""
    spec = _spec("inception_v3")
    without = _spec("inception_v3", aux_logits=False)
    plain = _reference("inception_v3", "meta", aux_logits=False)
    parity.check_parameters_and_state_dict(without, plain)
    assert spec.inference_params == without.params == without.inference_params
    assert spec.macs == without.macs
    assert cnnspec.build(spec).aux_weights == {"AuxLogits": 0.4}
    assert _reference("inception_v3", "meta").transform_input is False


@pytest.mark.parametrize("name", ["efficientnet_v2_s", "efficientnet_v2_m",
                                  "efficientnet_v2_l", "inception_v3"])
def test_batchnorm_dropout_and_stochastic_depth(name):
    """What the state dict does not show: batchnorm eps and momentum (1e-3 and 0.1
    in all of these), the classifier's dropout, and EfficientNetV2's stochastic depth
    (0.2 * block index / blocks), on residual blocks only, in Fused-MBConv and MBConv
    alike."""
    with torch.device("meta"):
        model = cnnspec.build(_spec(name))
    blocks = ("FusedMBConv", "MBConv")
    seen, dropouts = parity.check_norm_dropout_and_stochastic_depth(
        model, _reference(name, "meta"), blocks)
    assert dropouts == 1
    if name.startswith("efficientnet"):
        assert min(seen[block] for block in blocks) > 0
