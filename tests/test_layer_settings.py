"""Every layer kind's settings against a torch module written out by hand.

`cnnspec.build` and the generated `.py` both take their constructor arguments from
one table, so comparing them with each other cannot see a setting dropped there (an
LRN `k`, a LeakyReLU slope, an avgpool's `count_include_pad`). Here each layer kind
is written with settings that differ from PyTorch's defaults, and the test builds
the torch module it must be with those settings spelled out literally, from the spec
text alone. Both the built module and the generated source are compared with it:
the module's type and constructor attributes, and outputs on a random input with the
same weights, in eval mode and in train mode under one seed (batchnorm momentum
shows in the running statistics after the train-mode pass).
"""

from __future__ import annotations

import ast
from collections import OrderedDict
from collections.abc import Callable
from types import SimpleNamespace
from typing import NamedTuple

import pytest
import torch
from conftest import SPECS
from parity_helpers import randomise_batchnorm
from torch import nn
from torchvision.models import GoogLeNet, Inception3
from torchvision.models.convnext import LayerNorm2d
from torchvision.models.shufflenetv2 import channel_shuffle
from torchvision.ops import StochasticDepth

import cnnspec
from cnnspec.backends.codegen import to_python
from cnnspec.ops import LAYER_MODELS, LAYER_SYNONYMS


class Case(NamedTuple):
    kind: str  # the layer keyword the case is about
    input: str  # the spec's input shape
    layers: str  # spec statements, labelled a, b, ...
    reference: Callable[[], dict]  # label -> the torch module, written out
    attributes: tuple | None = None  # compare only these (when the type differs)


def _seq(**modules) -> nn.Sequential:
    return nn.Sequential(OrderedDict(modules))


CASES = {
    # Convolutions.
    "conv": Case("conv", "4x11x10",
                 "a: conv 6 k=(3, 2) s=(2, 1) p=(1, 2) d=2 g=2 bias=false",
                 lambda: _seq(a=nn.Conv2d(4, 6, kernel_size=(3, 2), stride=(2, 1),
                                          padding=(1, 2), dilation=2, groups=2,
                                          bias=False))),
    "conv_same_positional": Case("conv", "4x9x9", "a: conv 6 3 p=same d=2",
                                 lambda: _seq(a=nn.Conv2d(4, 6, 3, padding="same",
                                                          dilation=2))),
    "conv_relu": Case("relu", "4x8x8", "a: conv 6 k=3 p=1 g=2\nb: relu",
                      lambda: _seq(a=nn.Conv2d(4, 6, 3, padding=1, groups=2),
                                   b=nn.ReLU())),
    "dwconv": Case("dwconv", "4x9x9", "a: dwconv 5 s=2 p=2 channel_multiplier=2 bias=false",
                   lambda: _seq(a=nn.Conv2d(4, 8, 5, stride=2, padding=2, groups=4,
                                            bias=False))),
    "dwconv_dilated": Case("dwconv", "4x9x9", "a: dwconv k=3 p=2 d=2",
                           lambda: _seq(a=nn.Conv2d(4, 4, 3, padding=2, dilation=2,
                                                    groups=4))),
    # padding=same with an even kernel pads one more pixel after than before.
    "dwconv_same_even": Case("dwconv", "4x7x7",
                             "a: dwconv 4 p=same d=2 channel_multiplier=3",
                             lambda: _seq(a=nn.Conv2d(4, 12, 4, padding="same",
                                                      dilation=2, groups=4))),
    # Pooling. On 10x10, ceil_mode keeps a last partial window: 5 outputs, not 4.
    "maxpool": Case("maxpool", "3x10x10", "a: maxpool 3 s=2 p=1 d=2 ceil_mode=true",
                    lambda: _seq(a=nn.MaxPool2d(3, stride=2, padding=1, dilation=2,
                                                ceil_mode=True))),
    "maxpool_pair_default_stride": Case("maxpool", "3x8x9", "a: maxpool (2, 3)",
                                        lambda: _seq(a=nn.MaxPool2d((2, 3)))),
    "maxpool_positional_stride": Case("maxpool", "3x8x8", "a: maxpool 3 1 p=1",
                                      lambda: _seq(a=nn.MaxPool2d(3, 1, padding=1))),
    "avgpool": Case("avgpool", "3x10x10",
                    "a: avgpool 3 s=2 p=1 ceil_mode=true count_include_pad=false",
                    lambda: _seq(a=nn.AvgPool2d(3, stride=2, padding=1, ceil_mode=True,
                                                count_include_pad=False))),
    "avgpool_excluding_padding": Case("avgpool", "3x6x6",
                                      "a: avgpool 3 s=1 p=1 count_include_pad=false",
                                      lambda: _seq(a=nn.AvgPool2d(
                                          3, stride=1, padding=1,
                                          count_include_pad=False))),
    "avgpool_including_padding": Case("avgpool", "3x6x6", "a: avgpool 3 s=1 p=1",
                                      lambda: _seq(a=nn.AvgPool2d(3, stride=1, padding=1))),
    "avgpool_global": Case("avgpool", "3x5x4", "a: avgpool global",
                           lambda: _seq(a=nn.AdaptiveAvgPool2d(1))),
    "maxpool_global": Case("maxpool", "3x5x4", "a: maxpool global",
                           lambda: _seq(a=nn.AdaptiveMaxPool2d(1))),
    "adaptive_avgpool": Case("adaptive_avgpool", "3x9x7", "a: adaptive_avgpool (4, 2)",
                             lambda: _seq(a=nn.AdaptiveAvgPool2d((4, 2)))),
    "adaptive_maxpool": Case("adaptive_maxpool", "3x8x8", "a: adaptive_maxpool 3",
                             lambda: _seq(a=nn.AdaptiveMaxPool2d(3))),
    # Fully connected and reshaping.
    "linear": Case("linear", "12", "a: linear 7 bias=false",
                   lambda: _seq(a=nn.Linear(12, 7, bias=False))),
    "flatten_linear": Case("flatten", "3x2x2", "a: flatten\nb: linear 5",
                           lambda: _seq(a=nn.Flatten(), b=nn.Linear(12, 5))),
    # Normalization and regularization.
    "batchnorm": Case("batchnorm", "4x5x5", "a: batchnorm eps=0.001 momentum=0.3",
                      lambda: _seq(a=nn.BatchNorm2d(4, eps=1e-3, momentum=0.3))),
    "batchnorm_cumulative": Case("batchnorm", "4x5x5", "a: batchnorm momentum=none",
                                 lambda: _seq(a=nn.BatchNorm2d(4, momentum=None))),
    "batchnorm_no_affine": Case("batchnorm", "4x5x5", "a: batchnorm affine=false eps=0.1",
                                lambda: _seq(a=nn.BatchNorm2d(4, eps=0.1, affine=False))),
    "batchnorm_flat": Case("batchnorm", "6", "a: batchnorm eps=0.01 momentum=0.05",
                           lambda: _seq(a=nn.BatchNorm1d(6, eps=0.01, momentum=0.05))),
    "lrn": Case("lrn", "8x5x5", "a: lrn 3 alpha=0.05 beta=0.5 k=2",
                lambda: _seq(a=nn.LocalResponseNorm(3, alpha=0.05, beta=0.5, k=2.0))),
    # The layer's own `k` wins over the kernel-size alias (docs/language.md).
    "lrn_k_keyword": Case("lrn", "8x5x5", "a: lrn k=2",
                          lambda: _seq(a=nn.LocalResponseNorm(5, k=2.0))),
    "dropout": Case("dropout", "4x6x6", "a: dropout 0.2",
                    lambda: _seq(a=nn.Dropout(0.2))),
    "dropout_keyword": Case("dropout", "24", "a: dropout p=0.8",
                            lambda: _seq(a=nn.Dropout(0.8))),
    # torchvision's stochastic depth, "row" mode: one draw per sample.
    "drop_path": Case("drop_path", "4x3x3", "a: drop_path 0.2",
                      lambda: _seq(a=StochasticDepth(0.2, "row")), attributes=("p",)),
    "drop_path_high": Case("drop_path", "4x3x3", "a: drop_path p=0.8",
                           lambda: _seq(a=StochasticDepth(0.8, "row")), attributes=("p",)),
    # Activations with settings.
    "leaky_relu": Case("leaky_relu", "4x3x3", "a: leaky_relu 0.2",
                       lambda: _seq(a=nn.LeakyReLU(0.2))),
    "leaky_relu_keyword": Case("leaky_relu", "4x3x3", "a: leaky_relu negative_slope=0.3",
                               lambda: _seq(a=nn.LeakyReLU(negative_slope=0.3))),
    "elu": Case("elu", "4x3x3", "a: elu 0.5", lambda: _seq(a=nn.ELU(alpha=0.5))),
    "softmax": Case("softmax", "5x2x2", "a: softmax", lambda: _seq(a=nn.Softmax(dim=1))),
    "softmax_flat": Case("softmax", "7", "a: softmax", lambda: _seq(a=nn.Softmax(dim=1))),
    # Upsampling and the ConvNeXt layers.
    "conv_transpose": Case("conv_transpose", "4x5x5",
                           "a: conv_transpose 6 k=3 s=2 p=1 output_padding=1 g=2 "
                           "bias=false",
                           lambda: _seq(a=nn.ConvTranspose2d(4, 6, 3, 2, 1, 1, groups=2,
                                                             bias=False))),
    "deconv": Case("deconv", "4x5x5", "a: deconv 3 2 s=2 d=2",
                   lambda: _seq(a=nn.ConvTranspose2d(4, 3, 2, 2, dilation=2))),
    "upsample": Case("upsample", "3x4x5", "a: upsample 3",
                     lambda: _seq(a=nn.Upsample(scale_factor=3))),
    "upsample_bilinear": Case("upsample", "3x4x5",
                              "a: upsample (2, 3) bilinear align_corners=true",
                              lambda: _seq(a=nn.Upsample(scale_factor=(2, 3),
                                                         mode="bilinear",
                                                         align_corners=True)),
                              attributes=("scale_factor", "mode", "align_corners")),
    # torchvision's ConvNeXt LayerNorm2d: a different class with the same settings.
    "layernorm": Case("layernorm", "6x3x3", "a: layernorm eps=1e-6",
                      lambda: _seq(a=LayerNorm2d(6, eps=1e-6)),
                      attributes=("normalized_shape", "eps", "elementwise_affine")),
    "layernorm_flat": Case("layernorm", "6", "a: layernorm elementwise_affine=false",
                           lambda: _seq(a=nn.LayerNorm(6, elementwise_affine=False))),
}
# Activations without settings.
for _kind, _module in {"relu": nn.ReLU, "relu6": nn.ReLU6, "tanh": nn.Tanh,
                       "sigmoid": nn.Sigmoid, "silu": nn.SiLU, "swish": nn.SiLU,
                       "gelu": nn.GELU, "hardswish": nn.Hardswish,
                       "hardsigmoid": nn.Hardsigmoid, "mish": nn.Mish,
                       "softplus": nn.Softplus, "identity": nn.Identity}.items():
    CASES[_kind] = Case(_kind, "4x3x3", f"a: {_kind}", lambda m=_module: _seq(a=m()))

# `affine`'s constants for torchvision's `transform_input`, as the specs write them.
TRANSFORM_SCALE = "(0.229 / 0.5, 0.224 / 0.5, 0.225 / 0.5)"
TRANSFORM_SHIFT = "((0.485 - 0.5) / 0.5, (0.456 - 0.5) / 0.5, (0.406 - 0.5) / 0.5)"

# Layers without parameters (functions in `forward`, or constants only), and the
# joins: what they compute, written in torch.
FUNCTIONS = {
    "pad_channels": ("4x3x3", "a: pad_channels 7",
                     lambda x: torch.cat([x, torch.zeros(x.shape[0], 3, 3, 3)], 1)),
    "pad_channels_flat": ("5", "a: pad_channels 8",
                          lambda x: torch.cat([x, torch.zeros(x.shape[0], 3)], 1)),
    "concat": ("4x3x3", "a: concat { identity; relu; tanh }",
               lambda x: torch.cat([x, x.relu(), x.tanh()], 1)),
    "add": ("4x3x3", "a: add { identity; relu; tanh }",
            lambda x: x + x.relu() + x.tanh()),
    "mean": ("4x3x3", "a: mean { identity; relu; tanh }",
             lambda x: (x + x.relu() + x.tanh()) / 3),
    "mean_drop_path_eval": ("4x3x3", "a: mean drop_path=0.8 { identity; sigmoid }",
                            lambda x: (x + x.sigmoid()) / 2),
    "multiply": ("4x3x3", "a: multiply { identity; sigmoid; tanh }",
                 lambda x: x * x.sigmoid() * x.tanh()),
    "residual": ("4x3x3", "a: residual { tanh; relu }", lambda x: x.tanh().relu() + x),
    "dense": ("4x3x3", "a: dense { tanh }", lambda x: torch.cat([x, x.tanh()], 1)),
    "gate": ("4x3x3", "a: gate { avgpool global; sigmoid }",
             lambda x: x * x.mean((2, 3), keepdim=True).sigmoid()),
    "split": ("4x3x3", "a: split { identity; tanh }",
              lambda x: torch.cat([x[:, :2], x[:, 2:].tanh()], 1)),
    "shuffle": ("6x3x3", "a: shuffle 3", lambda x: channel_shuffle(x, 3)),
    "narrow": ("6x3x3", "a: narrow 1 4", lambda x: x[:, 1:5]),
    "crop": ("2x7x6", "a: crop (3, 4)", lambda x: x[:, :, 2:5, 1:5]),
    "pad_channels_both": ("4x3x3", "a: pad_channels 7 where=both",
                          lambda x: torch.cat([torch.zeros(x.shape[0], 1, 3, 3), x,
                                               torch.zeros(x.shape[0], 2, 3, 3)], 1)),
    # torchvision's GoogLeNet and Inception-v3 `transform_input`, channel by channel.
    "affine": ("3x4x3", f"a: affine scale={TRANSFORM_SCALE} shift={TRANSFORM_SHIFT}",
               lambda x: torch.cat([x[:, 0:1] * (0.229 / 0.5) + (0.485 - 0.5) / 0.5,
                                    x[:, 1:2] * (0.224 / 0.5) + (0.456 - 0.5) / 0.5,
                                    x[:, 2:3] * (0.225 / 0.5) + (0.406 - 0.5) / 0.5], 1)),
    # Numbers apply to every channel; equal pairs, which the generated file writes as
    # one number, and a flat vector.
    "affine_numbers": ("4x3x3", "a: affine 1.5 0.25", lambda x: x * 1.5 + 0.25),
    "affine_equal_pair": ("2x3x3", "a: affine scale=(0.5, 0.5) shift=(1, -1)",
                          lambda x: x * 0.5 + torch.tensor([1.0, -1.0]).view(2, 1, 1)),
    "affine_flat": ("3", "a: affine shift=(1, 2, 3)",
                    lambda x: x + torch.tensor([1.0, 2.0, 3.0])),
}

PAIRS = ("kernel_size", "stride", "padding", "dilation", "output_size")


def _spec(input_shape: str, layers: str):
    return cnnspec.load(f"network settings {{\n    input {input_shape}\n"
                        + "".join(f"    {line}\n" for line in layers.splitlines())
                        + "}\n")


def _generated(spec) -> nn.Module:
    source = to_python(spec)
    namespace: dict = {}
    exec(compile(source, "settings.py", "exec"), namespace)
    return namespace[ast.parse(source).body[-1].name]()


def _build(spec, backend: str) -> nn.Module:
    return cnnspec.build(spec) if backend == "build" else _generated(spec)


def _settings(module: nn.Module, only=None) -> dict:
    """The attributes a constructor sets (kernel_size, alpha, k, negative_slope,
    count_include_pad, eps, momentum, ...). Pairs are normalised ((3, 3) and 3 are the
    same kernel); `inplace` is left out: choosing it is the compiler's business, and
    the output comparison sees it if it is wrong."""
    found = {}
    for key, value in vars(module).items():
        if key.startswith("_") or key in ("training", "inplace"):
            continue
        if only is not None and key not in only:
            continue
        if key in PAIRS and isinstance(value, int):
            value = (value, value)
        found[key] = value
    found["parameters"] = {k: tuple(v.shape) for k, v in module._parameters.items()
                           if v is not None}
    found["buffers"] = {k: tuple(v.shape) for k, v in module._buffers.items()
                        if v is not None}
    return found


def _input(spec, batch: int = 4) -> torch.Tensor:
    # Spread wide enough to reach ReLU6's and the hard activations' saturation.
    return 3 * torch.randn((batch,) + spec.input_shape)


def _compare_outputs(model, reference, x):
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(x), reference.eval()(x),
                                   rtol=1e-5, atol=1e-6)
        for seed in (0, 1):  # dropout, drop-path and batch statistics
            torch.manual_seed(seed)
            expected = reference.train()(x)
            torch.manual_seed(seed)
            found = model.train()(x)
            torch.testing.assert_close(found, expected, rtol=1e-5, atol=1e-6)
    # Running statistics after two train-mode passes: batchnorm's momentum.
    ours, theirs = model.state_dict(), reference.state_dict()
    assert list(ours) == list(theirs)
    for key in theirs:
        torch.testing.assert_close(ours[key], theirs[key], rtol=1e-5, atol=1e-6,
                                   msg=lambda m, k=key: f"{k}: {m}")


@pytest.mark.parametrize("backend", ["build", "generated"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_layer_is_the_torch_module_its_settings_say(name, backend):
    case = CASES[name]
    spec = _spec(case.input, case.layers)
    torch.manual_seed(0)
    reference = case.reference()
    model = _build(spec, backend)
    for label, expected in reference.named_children():
        found = model.get_submodule(label)
        if case.attributes is None:
            assert type(found) is type(expected), label
        assert _settings(found, case.attributes) == _settings(expected, case.attributes), \
            label
    randomise_batchnorm(reference, seed=3)
    model.load_state_dict(reference.state_dict(), strict=True)
    torch.manual_seed(1)
    _compare_outputs(model, reference, _input(spec))


@pytest.mark.parametrize("backend", ["build", "generated"])
@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_functions_and_joins_compute_what_they_say(name, backend):
    shape, layers, compute = FUNCTIONS[name]
    spec = _spec(shape, layers)
    model = _build(spec, backend).eval()
    torch.manual_seed(1)
    x = _input(spec)
    with torch.no_grad():
        torch.testing.assert_close(model(x), compute(x), rtol=1e-5, atol=1e-6)
    assert sum(p.numel() for p in model.parameters()) == 0


@pytest.mark.parametrize("backend", ["build", "generated"])
def test_affine_is_torchvision_transform_input_bit_for_bit(backend):
    """`affine` with the specs' constants is torchvision's own `_transform_input`
    (GoogLeNet's and Inception-v3's) to the last bit: a multiply, then an add, in
    float32. Its constants are buffers that follow `.to()` but stay out of the state
    dict, so torchvision's weights still load with strict=True."""
    spec = _spec("3x5x4", f"a: affine scale={TRANSFORM_SCALE} shift={TRANSFORM_SHIFT}")
    model = _build(spec, backend).eval()
    assert dict(model.state_dict()) == {}
    assert {name for name, _ in model.named_buffers()} == {"a.scale", "a.shift"}
    x = _input(spec)
    with torch.no_grad():
        found = model(x)
        for network in (Inception3, GoogLeNet):
            expected = network._transform_input(SimpleNamespace(transform_input=True), x)
            assert torch.equal(found, expected), network.__name__
        assert model.double()(x.double()).dtype == torch.float64


@pytest.mark.parametrize("backend", ["build", "generated"])
def test_layer_scale_is_a_parameter_of_its_block_starting_at_init(backend):
    """ConvNeXt's `layer_scale`: the block's own parameter (no module of its own),
    C x 1 x 1, filled with `init`, multiplying the input."""
    spec = _spec("5x2x2", "blk: { layer_scale: layer_scale 0.25 }")
    model = _build(spec, backend)
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == \
        {"blk.layer_scale": (5, 1, 1)}
    x = _input(spec)
    with torch.no_grad():
        torch.testing.assert_close(model(x), 0.25 * x)
    assert spec.params == 5


FROZEN = "frozen {\n    a: batchnorm eps=0.001 momentum=0.3\n}"


@pytest.mark.parametrize("backend", ["build", "generated"])
def test_frozen_batchnorm_keeps_its_settings(backend):
    """Inside `frozen { }` a batchnorm is still nn.BatchNorm2d(4, eps=1e-3,
    momentum=0.3), one that normalises with its running statistics in train mode."""
    spec = _spec("4x5x5", FROZEN)
    reference = nn.BatchNorm2d(4, eps=1e-3, momentum=0.3)
    model = _build(spec, backend)
    found = model.get_submodule("a")
    assert isinstance(found, nn.BatchNorm2d)
    assert _settings(found) == _settings(reference)
    randomise_batchnorm(reference, seed=3)
    model.load_state_dict({f"a.{k}": v for k, v in reference.state_dict().items()},
                          strict=True)
    x = _input(spec)
    with torch.no_grad():
        expected = reference.eval()(x)
        torch.testing.assert_close(model.train()(x), expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(found.running_mean, reference.running_mean)


# One block called with four sets of settings: the generated file writes it as
# classes (one per true/false `incl` and momentum present or not) whose constructors
# take the settings that vary as arguments.
BLOCK = """
block unit(c, d, g, slope, kk, incl, m) {
    conv: conv c k=3 p=d d=d g=g bias=false
    norm: lrn 3 alpha=0.05 beta=0.5 k=kk
    act: leaky_relu slope
    pool: avgpool 3 s=1 p=1 count_include_pad=incl
    bn: batchnorm eps=0.001 momentum=m
    drop: dropout 0.3
}

network blocks {
    input 4x6x6
    u1: unit(8, 2, 2, 0.2, 2.0, false, 0.3)
    u2: unit(8, 1, 4, 0.05, 1.5, false, 0.2)
    u3: unit(12, 2, 4, 0.1, 3.0, true, none)
    u4: unit(12, 1, 2, 0.3, 1.0, true, none)
}
"""


def _block_reference():
    def unit(cin, c, d, g, slope, kk, incl, m):
        return _seq(conv=nn.Conv2d(cin, c, 3, padding=d, dilation=d, groups=g, bias=False),
                    norm=nn.LocalResponseNorm(3, alpha=0.05, beta=0.5, k=kk),
                    act=nn.LeakyReLU(slope),
                    pool=nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=incl),
                    bn=nn.BatchNorm2d(c, eps=1e-3, momentum=m),
                    drop=nn.Dropout(0.3))
    return _seq(u1=unit(4, 8, 2, 2, 0.2, 2.0, False, 0.3),
                u2=unit(8, 8, 1, 4, 0.05, 1.5, False, 0.2),
                u3=unit(8, 12, 2, 4, 0.1, 3.0, True, None),
                u4=unit(12, 12, 1, 2, 0.3, 1.0, True, None))


@pytest.mark.parametrize("backend", ["build", "generated"])
def test_block_arguments_reach_the_layers(backend):
    spec = cnnspec.load(BLOCK)
    if backend == "generated":
        source = to_python(spec)  # the settings that vary are constructor arguments
        assert "class Unit(" in source and "= Unit(" in source
        assert "negative_slope=slope" in source and "k=kk" in source
    torch.manual_seed(0)
    reference = _block_reference()
    model = _build(spec, backend)
    for label, expected in reference.named_modules():
        if label and not isinstance(expected, nn.Sequential):
            found = model.get_submodule(label)
            assert type(found) is type(expected), label
            assert _settings(found) == _settings(expected), label
    randomise_batchnorm(reference, seed=3)
    model.load_state_dict(reference.state_dict(), strict=True)
    torch.manual_seed(1)
    _compare_outputs(model, reference, _input(spec))


def test_every_layer_kind_has_a_case():
    """A layer kind added to the language without a case here fails this test."""
    covered = {case.kind for case in CASES.values()} | \
        {layers.split()[1] for _, layers, _ in FUNCTIONS.values()} | {"layer_scale"}
    assert set(LAYER_MODELS) | set(LAYER_SYNONYMS) <= covered
    joins = {"concat", "add", "mean", "multiply", "residual", "dense", "gate", "split"}
    assert joins <= covered


def test_activations_run_in_place_where_torchvision_does():
    """Like torchvision's ResNet (`nn.ReLU(inplace=True)`), a ReLU whose input has no
    other user runs in place; one whose input feeds a shortcut too must not."""
    import torchvision

    built = cnnspec.build(SPECS / "resnet18.cnn")
    reference = torchvision.models.resnet18()
    assert built.relu.inplace is reference.relu.inplace is True
    spec = cnnspec.load("""
    network n {
        input 2x4x4
        a: conv 2 k=1
        r: residual {
            act: relu
            conv 2 k=1
        }
    }
    """)
    assert cnnspec.build(spec).r.act.inplace is False  # its input is the shortcut's


@pytest.mark.parametrize("backend", ["build", "generated"])
def test_rectangular_settings_reach_torch_axis_by_axis(backend):
    """Stride, padding and dilation that differ by axis, each written out for torch;
    a setting equal to the default on one axis only must not be dropped."""
    spec = cnnspec.load("""
    network rect(classes = 2) {
        input 2x16x32
        option sizes = floor
        a: conv 2 k=3 s=(1, 2) p=(1, 0) d=(2, 1)
        b: conv 2 k=3 p=(0, 1) d=(1, 2)
        c: maxpool 3 s=1 p=(1, 0) d=(2, 1)
        d: maxpool 3 s=1 p=(0, 1) d=(1, 2)
        e: avgpool 3 s=1 p=(1, 0)
        f: avgpool 3 s=1 p=(0, 1)
    }
    """)
    model = _build(spec, backend)
    expected = {
        "a": nn.Conv2d(2, 2, 3, stride=(1, 2), padding=(1, 0), dilation=(2, 1)),
        "b": nn.Conv2d(2, 2, 3, padding=(0, 1), dilation=(1, 2)),
        "c": nn.MaxPool2d(3, stride=1, padding=(1, 0), dilation=(2, 1)),
        "d": nn.MaxPool2d(3, stride=1, padding=(0, 1), dilation=(1, 2)),
        "e": nn.AvgPool2d(3, stride=1, padding=(1, 0)),
        "f": nn.AvgPool2d(3, stride=1, padding=(0, 1)),
    }
    pair = torch.nn.modules.utils._pair
    for name, reference in expected.items():
        built = getattr(model, name)
        for setting in ("stride", "padding", "dilation"):
            if hasattr(reference, setting):
                assert pair(getattr(built, setting)) == pair(getattr(reference, setting)), \
                    (name, setting)
