"""Which PyTorch layer each op becomes, for both torch backends.

Takes: an op and its checked input shape. Returns: a `Constructor` (the class as
written in a file that does `from torch import nn`, its positional arguments, and the
keywords whose value differs from PyTorch's default), or None when the op is a plain
function in `forward` (input, concat, add, multiply, pad_channels). `layer_scale` is
neither: a bare parameter (`LAYER_SCALE`) that `forward` multiplies by.
`torch_backend` instantiates it; `codegen` writes it out. Every size comes from the
checker's input shape; this module imports no torch.
"""

from __future__ import annotations

from typing import NamedTuple

from .. import ops as O
from ..ops import GLOBAL_DROP_PATH

ACTIVATIONS = {
    "relu": "ReLU", "relu6": "ReLU6", "tanh": "Tanh", "sigmoid": "Sigmoid",
    "silu": "SiLU", "gelu": "GELU", "hardswish": "Hardswish",
    "hardsigmoid": "Hardsigmoid", "mish": "Mish", "softplus": "Softplus",
    "identity": "Identity",
}
# Layers cnnspec implements itself, in torch_backend.py (codegen copies their source).
HELPERS = ("DropPath", "MeanJoin", "GlobalDropPath", "FrozenBatchNorm2d",
           "FrozenBatchNorm1d", "LayerNorm2d", "PointwiseLinear", "ChannelShuffle",
           "Narrow", "CenterCrop", "ChannelAffine")
# Not a module: a bare parameter of the enclosing block (see `layer_scale_shape`).
LAYER_SCALE = "LayerScale"


class Constructor(NamedTuple):
    name: str  # "nn.Conv2d", or one of HELPERS
    args: tuple = ()
    kwargs: dict = {}


def _unless(default, **keywords) -> dict:
    """Keep only the keywords whose value differs from `default` (torch's default)."""
    return {k: v for k, v in keywords.items() if v != default}


def _conv(op, in_shape) -> Constructor:
    c = in_shape[0]
    if type(op) is O.Conv:
        out, groups = op.out_channels, op.groups
    else:
        out, groups = c * op.channel_multiplier, c
    return Constructor("nn.Conv2d", (c, out), dict(
        kernel_size=op.kernel_size, **_unless((1, 1), stride=op.stride),
        **_unless((0, 0), padding=op.padding), **_unless((1, 1), dilation=op.dilation),
        **_unless(1, groups=groups), **_unless(True, bias=op.bias)))


def _pool(op, in_shape) -> Constructor:
    keywords = dict(kernel_size=op.kernel_size, stride=op.effective_stride,
                    **_unless((0, 0), padding=op.padding),
                    **_unless(False, ceil_mode=op.ceil_mode))
    if type(op) is O.MaxPool:
        return Constructor("nn.MaxPool2d", (), dict(
            keywords, **_unless((1, 1), dilation=op.dilation)))
    return Constructor("nn.AvgPool2d", (), dict(
        keywords, **_unless(True, count_include_pad=op.count_include_pad)))


def _batchnorm(op, in_shape, frozen: bool) -> Constructor:
    norm = "BatchNorm2d" if len(in_shape) == 3 else "BatchNorm1d"
    norm = f"Frozen{norm}" if frozen else f"nn.{norm}"
    return Constructor(norm, (in_shape[0],), dict(
        **_unless(1e-5, eps=op.eps), **_unless(0.1, momentum=op.momentum),
        **_unless(True, affine=op.affine)))


def _conv_transpose(op, in_shape) -> Constructor:
    return Constructor("nn.ConvTranspose2d", (in_shape[0], op.out_channels), dict(
        kernel_size=op.kernel_size, **_unless((1, 1), stride=op.stride),
        **_unless((0, 0), padding=op.padding),
        **_unless((0, 0), output_padding=op.output_padding),
        **_unless(1, groups=op.groups), **_unless(True, bias=op.bias),
        **_unless((1, 1), dilation=op.dilation)))


def _linear(op, in_shape) -> Constructor:
    kind = "PointwiseLinear" if op.pointwise else "nn.Linear"
    return Constructor(kind, (in_shape[0], op.out_features), _unless(True, bias=op.bias))


def _layernorm(op, in_shape) -> Constructor:
    kind = "LayerNorm2d" if len(in_shape) == 3 else "nn.LayerNorm"
    return Constructor(kind, (in_shape[0],), dict(
        **_unless(1e-5, eps=op.eps),
        **_unless(True, elementwise_affine=op.elementwise_affine)))


def _upsample(op, in_shape) -> Constructor:
    factor = op.scale_factor[0] if op.scale_factor[0] == op.scale_factor[1] \
        else op.scale_factor
    return Constructor("nn.Upsample", (), dict(
        scale_factor=factor, **_unless("nearest", mode=op.mode),
        **({"align_corners": op.align_corners} if op.mode == "bilinear" else {})))


def layer_scale_shape(in_shape: tuple[int, ...]) -> tuple[int, ...]:
    """The parameter's shape: one value per channel, broadcast over H x W."""
    return (in_shape[0], 1, 1) if len(in_shape) == 3 else (in_shape[0],)


def _mean(op, in_shape) -> Constructor:
    keywords = _unless(0.0, p=op.drop_path)
    if op.columns:
        keywords["columns"] = op.columns
    return Constructor("MeanJoin", (), keywords)


_BY_KIND = {
    O.Conv: _conv,
    O.DepthwiseConv: _conv,
    O.MaxPool: _pool,
    O.AvgPool: _pool,
    O.AdaptivePool: lambda op, s: Constructor(
        "nn.AdaptiveAvgPool2d" if op.op == "adaptive_avgpool" else "nn.AdaptiveMaxPool2d",
        (op.output_size,)),
    O.Linear: _linear,
    O.ConvTranspose: _conv_transpose,
    O.Upsample: _upsample,
    O.LayerNorm: _layernorm,
    O.LayerScale: lambda op, s: Constructor(LAYER_SCALE, (s[0],), dict(init=op.init)),
    O.Crop: lambda op, s: Constructor("CenterCrop", (op.size,)),
    O.Affine: lambda op, s: Constructor("ChannelAffine", (s[0],), dict(
        **_unless(1.0, scale=op.scale), **_unless(0.0, shift=op.shift))),
    O.ChannelShuffle: lambda op, s: Constructor("ChannelShuffle", (op.groups,)),
    O.Narrow: lambda op, s: Constructor("Narrow", (op.start, op.length)),
    O.Flatten: lambda op, s: Constructor("nn.Flatten", (1,)),
    O.LocalResponseNorm: lambda op, s: Constructor(
        "nn.LocalResponseNorm", (op.size,), dict(alpha=op.alpha, beta=op.beta, k=op.k)),
    O.Dropout: lambda op, s: Constructor("nn.Dropout", (), dict(p=op.p)),
    O.DropPath: lambda op, s: Constructor("DropPath", (), dict(p=op.p)),
    O.LeakyReLU: lambda op, s: Constructor("nn.LeakyReLU", (),
                                           dict(negative_slope=op.negative_slope)),
    O.ELU: lambda op, s: Constructor("nn.ELU", (), dict(alpha=op.alpha)),
    O.Softmax: lambda op, s: Constructor("nn.Softmax", (), dict(dim=1)),
    O.Mean: _mean,
}
FUNCTIONS = (O.Input, O.Concat, O.Add, O.Multiply, O.PadChannels)


def constructor(op, in_shape: tuple[int, ...], in_place: bool = False,
                frozen: bool = False) -> Constructor | None:
    """The layer for one op (see the module docstring); None for a plain function.
    `frozen`: the layer sits in `frozen { }` (batchnorm then keeps its statistics)."""
    kind = type(op)
    if kind is O.BatchNorm:
        return _batchnorm(op, in_shape, frozen)
    if kind is O.Activation:
        return Constructor(f"nn.{ACTIVATIONS[op.op]}", (),
                           {"inplace": True} if in_place else {})
    build = _BY_KIND.get(kind)
    if build is not None:
        return build(op, in_shape)
    if kind in FUNCTIONS:
        return None
    raise ValueError(f"cnnspec has no PyTorch layer for the `{op.op}` op")


def pad_channels_widths(op: O.PadChannels, in_shape: tuple[int, ...]) -> tuple[int, ...]:
    """`torch.nn.functional.pad` widths that add zero channels (last dim first)."""
    extra = op.out_channels - in_shape[0]
    before = extra // 2 if op.where == "both" else 0
    widths = (before, extra - before)
    return (0, 0, 0, 0) + widths if len(in_shape) == 3 else widths


def fractal_joins(nodes) -> tuple[float, int] | None:
    """(global drop-path probability, columns) when the network has fractal joins,
    which then share one `GlobalDropPath` sampler; None otherwise. `elaborate` makes
    every fractal of a network agree on both."""
    for node in nodes:
        if type(node.op) is O.Mean and node.op.columns:
            return node.op.global_drop_path, max(node.op.columns)
    return None
