"""The primitive operations of the IR, as Pydantic models.

Takes: argument values from `elaborate` (already evaluated). Returns: one frozen,
validated model per layer; `Op` is their union, discriminated on `op`. Each model
checks only the facts it can see alone (kernel > 0, groups divide out_channels,
probabilities in [0, 1]); facts that need the input shape belong to `check`.

Field names are PyTorch's (`out_channels`, `kernel_size`, `stride`, `padding`,
`dilation`, `groups`). `POSITIONAL` says which fields a call may give without a
keyword, in order; `ALIASES` are the short keywords the language accepts.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal, Union

from pydantic import (BaseModel, BeforeValidator, ConfigDict, Field, TypeAdapter,
                      model_validator)

ALIASES = {
    "k": "kernel_size", "kernel": "kernel_size", "s": "stride", "p": "padding",
    "pad": "padding", "d": "dilation", "g": "groups", "ceil": "ceil_mode",
    "out": "out_channels", "channels": "out_channels",
}

# The name of the network's GlobalDropPath module when it has fractal joins;
# `elaborate` reserves it, so no layer can take it (the backends build it).
GLOBAL_DROP_PATH = "global_drop_path"


def _pair(value: Any) -> Any:
    """`3` -> (3, 3); `(1, 7)` stays; anything else is left for Pydantic to reject."""
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return (value, value)
    return value


Pair = Annotated[tuple[Annotated[int, Field(ge=1)], Annotated[int, Field(ge=1)]],
                 BeforeValidator(_pair)]
PairOrZero = Annotated[tuple[Annotated[int, Field(ge=0)], Annotated[int, Field(ge=0)]],
                       BeforeValidator(_pair)]
Probability = Annotated[float, Field(ge=0.0, le=1.0)]
Positive = Annotated[int, Field(ge=1)]


class _Op(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)
    POSITIONAL: ClassVar[tuple[str, ...]] = ()
    HAS_PARAMS: ClassVar[bool] = False

    def label(self) -> str:
        """A compact human summary, as the summary table and diagrams show it."""
        return self.op


def _kernel_text(kernel, stride) -> str:
    text = f"{kernel[0]}x{kernel[1]}"
    if stride != (1, 1):
        text += f"/{stride[0]}" if stride[0] == stride[1] else f"/{stride[0]}x{stride[1]}"
    return text


class Input(_Op):
    op: Literal["input"] = "input"
    shape: tuple[Positive, ...]

    def label(self):
        return "input " + "x".join(map(str, self.shape))


# `conv` and `conv_transpose` share their fields, the groups check and the label.
# Pydantic lists fields base class first (a redeclared field keeps its place), so
# the leading fields are a class of their own: conv_transpose's `output_padding`
# then sits between `padding` and `dilation`, where hover, argument errors and JSON
# list it.


class _ConvLeading(_Op):
    op: str  # each layer narrows it to its own Literal
    out_channels: Positive
    kernel_size: Pair = (1, 1)
    stride: Pair = (1, 1)
    padding: PairOrZero = (0, 0)
    POSITIONAL: ClassVar = ("out_channels", "kernel_size")
    HAS_PARAMS: ClassVar = True


class _ConvBase(_ConvLeading):
    dilation: Pair = (1, 1)
    groups: Positive = 1
    bias: bool = True

    @model_validator(mode="after")
    def _groups_divide_out_channels(self):
        if self.out_channels % self.groups:
            raise ValueError(f"groups={self.groups} must divide "
                             f"out_channels={self.out_channels}")
        return self

    def label(self):
        return f"{self.op} {_kernel_text(self.kernel_size, self.stride)}, " \
            f"{self.out_channels}"


class Conv(_ConvBase):
    op: Literal["conv"] = "conv"
    padding: PairOrZero | Literal["same"] = (0, 0)

    def label(self):
        return super().label() + (f", g{self.groups}" if self.groups > 1 else "")


class DepthwiseConv(_Op):
    """A conv with one filter group per input channel (MobileNet, EfficientNet)."""

    op: Literal["dwconv"] = "dwconv"
    kernel_size: Pair = (3, 3)
    stride: Pair = (1, 1)
    padding: PairOrZero | Literal["same"] = (0, 0)
    dilation: Pair = (1, 1)
    channel_multiplier: Positive = 1
    bias: bool = True
    POSITIONAL: ClassVar = ("kernel_size",)
    HAS_PARAMS: ClassVar = True

    def label(self):
        return f"dwconv {_kernel_text(self.kernel_size, self.stride)}"


class _Pool(_Op):
    kernel_size: Pair
    stride: Pair | None = None  # None: the kernel size, as in PyTorch
    padding: PairOrZero = (0, 0)
    ceil_mode: bool = False
    POSITIONAL: ClassVar = ("kernel_size", "stride")

    @property
    def effective_stride(self) -> tuple[int, int]:
        return self.stride or self.kernel_size

    def label(self):
        return f"{self.op} {_kernel_text(self.kernel_size, self.effective_stride)}"


class MaxPool(_Pool):
    op: Literal["maxpool"] = "maxpool"
    dilation: Pair = (1, 1)


class AvgPool(_Pool):
    op: Literal["avgpool"] = "avgpool"
    count_include_pad: bool = True


class AdaptivePool(_Op):
    """`avgpool global` is `adaptive_avgpool 1`."""

    op: Literal["adaptive_avgpool", "adaptive_maxpool"]
    output_size: Pair = (1, 1)
    POSITIONAL: ClassVar = ("output_size",)

    def label(self):
        kind = self.op.removeprefix("adaptive_")
        if self.output_size == (1, 1):
            return f"{kind} global"
        return f"{kind} to {self.output_size[0]}x{self.output_size[1]}"


class Linear(_Op):
    """`pointwise=true` applies it at every position of a C x H x W input, over the
    channels: a 1x1 conv kept as nn.Linear weights, as ConvNeXt's blocks do."""

    op: Literal["linear"] = "linear"
    out_features: Positive
    bias: bool = True
    pointwise: bool = False
    POSITIONAL: ClassVar = ("out_features",)
    HAS_PARAMS: ClassVar = True

    def label(self):
        return f"linear {self.out_features}" + (", pointwise" if self.pointwise else "")


class _OutputPadding(_ConvLeading):
    output_padding: PairOrZero = (0, 0)


class ConvTranspose(_ConvBase, _OutputPadding):
    """A transposed ("up-") convolution: U-Net's 2x2 up-conv (Ronneberger et al. 2015)."""

    op: Literal["conv_transpose"] = "conv_transpose"

    @model_validator(mode="after")
    def _output_padding_below_stride(self):  # runs after the base's groups check
        for extra, s, d in zip(self.output_padding, self.stride, self.dilation):
            if extra >= max(s, d):
                raise ValueError(f"output_padding={extra} must be smaller than the "
                                 "stride or the dilation")
        return self


class Upsample(_Op):
    """Repeat (nearest) or interpolate (bilinear) each pixel by a whole factor."""

    op: Literal["upsample"] = "upsample"
    scale_factor: Pair = (2, 2)
    mode: Literal["nearest", "bilinear"] = "nearest"
    align_corners: bool = False
    POSITIONAL: ClassVar = ("scale_factor", "mode")

    @model_validator(mode="after")
    def _corners_need_bilinear(self):
        if self.align_corners and self.mode != "bilinear":
            raise ValueError("align_corners applies to mode=bilinear only")
        return self

    def label(self):
        factor = self.scale_factor
        text = f"{factor[0]}" if factor[0] == factor[1] else f"{factor[0]}x{factor[1]}"
        return f"upsample x{text}, {self.mode}"


class Crop(_Op):
    """The centre `size` of each channel (U-Net's "copy and crop"): the first kept
    row is floor((H - h) / 2), the first column floor((W - w) / 2)."""

    op: Literal["crop"] = "crop"
    size: Pair
    POSITIONAL: ClassVar = ("size",)

    def label(self):
        return f"crop {self.size[0]}x{self.size[1]}"


class ChannelShuffle(_Op):
    """ShuffleNet's channel shuffle (Zhang et al. 2018): view the channels as
    groups x (C / groups), transpose, flatten; no parameters."""

    op: Literal["shuffle"] = "shuffle"
    groups: Annotated[int, Field(ge=2)]
    POSITIONAL: ClassVar = ("groups",)

    def label(self):
        return f"shuffle {self.groups}"


class Narrow(_Op):
    """Channels start ... start + length - 1 of the input (`torch.narrow` on dim 1);
    `split { }` makes one per branch."""

    op: Literal["narrow"] = "narrow"
    start: Annotated[int, Field(ge=0)]
    length: Positive
    POSITIONAL: ClassVar = ("start", "length")

    def label(self):
        return f"channels {self.start}:{self.start + self.length}"


class Flatten(_Op):
    op: Literal["flatten"] = "flatten"


class BatchNorm(_Op):
    op: Literal["batchnorm"] = "batchnorm"
    eps: Annotated[float, Field(gt=0)] = 1e-5
    momentum: Probability | None = 0.1
    affine: bool = True
    HAS_PARAMS: ClassVar = True


class LayerNorm(_Op):
    """Layer normalization (Ba et al. 2016) over the channels at each position of a
    C x H x W input (ConvNeXt's LayerNorm2d), or over a flat vector's features."""

    op: Literal["layernorm"] = "layernorm"
    eps: Annotated[float, Field(gt=0)] = 1e-5
    elementwise_affine: bool = True
    HAS_PARAMS: ClassVar = True


class LayerScale(_Op):
    """A learnable per-channel scale, `init` at the start (Touvron et al. 2021,
    "Going deeper with image transformers"; ConvNeXt). It is a bare parameter of the
    enclosing block, named by its label (`layer_scale`), not a module."""

    op: Literal["layer_scale"] = "layer_scale"
    init: float = 1e-6
    POSITIONAL: ClassVar = ("init",)
    HAS_PARAMS: ClassVar = True

    def label(self):
        return f"layer_scale {self.init:g}"


class LocalResponseNorm(_Op):
    """Krizhevsky et al. 2012, section 3.3; PyTorch's defaults."""

    op: Literal["lrn"] = "lrn"
    size: Positive = 5
    alpha: float = 1e-4
    beta: float = 0.75
    k: float = 1.0
    POSITIONAL: ClassVar = ("size",)

    def label(self):
        return f"lrn {self.size}"


class Dropout(_Op):
    op: Literal["dropout"] = "dropout"
    p: Probability = 0.5
    POSITIONAL: ClassVar = ("p",)

    def label(self):
        return f"dropout {self.p:g}"


class DropPath(_Op):
    """Stochastic depth (Huang et al. 2016): drop the whole sample's path in training."""

    op: Literal["drop_path"] = "drop_path"
    p: Probability
    POSITIONAL: ClassVar = ("p",)

    def label(self):
        return f"drop_path {self.p:g}"


class Activation(_Op):
    op: Literal["relu", "relu6", "tanh", "sigmoid", "silu", "gelu", "hardswish",
                "hardsigmoid", "mish", "softplus", "identity"]


class LeakyReLU(_Op):
    op: Literal["leaky_relu"] = "leaky_relu"
    negative_slope: float = 0.01
    POSITIONAL: ClassVar = ("negative_slope",)


class ELU(_Op):
    op: Literal["elu"] = "elu"
    alpha: float = 1.0
    POSITIONAL: ClassVar = ("alpha",)


class Softmax(_Op):
    """Softmax over channels (dim 1 of an N x C x ... batch)."""

    op: Literal["softmax"] = "softmax"


class Concat(_Op):
    """Channel concatenation of several branches (Inception, Fire, DenseNet)."""

    op: Literal["concat"] = "concat"


class Add(_Op):
    op: Literal["add"] = "add"


class Mean(_Op):
    """Element-wise mean of branches; `drop_path` is FractalNet's local drop-path.

    A `fractal` join also records which column each branch ends (`columns`, 1 = the
    shallowest) and the network's global drop-path probability, so that a training
    batch of global drop-path can keep one column's branch alone."""

    op: Literal["mean"] = "mean"
    drop_path: Probability = 0.0
    columns: tuple[Positive, ...] = ()
    global_drop_path: Probability = 0.0

    def label(self):
        text = f"mean, drop_path {self.drop_path:g}" if self.drop_path else "mean"
        if self.columns:
            text += f", columns {','.join(map(str, self.columns))}"
        return text


class Fractal(_Op):
    """The settings of a `fractal` construct (not a layer; its joins are `Mean`s)."""

    op: Literal["fractal"] = "fractal"
    # 2^(columns - 1) units deep: 16 columns is already 32,768 units.
    columns: Annotated[int, Field(ge=1, le=16)]
    drop_path: Probability = 0.0
    global_drop_path: Probability = 0.0
    POSITIONAL: ClassVar = ("columns",)


class PadChannels(_Op):
    """Zero channels added to the input's own, up to `out_channels`: the
    parameter-free shortcut of He et al. (2015), "option A". `where=end` appends
    them; `where=both` puts half before (rounded down) and the rest after, as the
    common CIFAR ResNet code does."""

    op: Literal["pad_channels"] = "pad_channels"
    out_channels: Positive
    where: Literal["end", "both"] = "end"
    POSITIONAL: ClassVar = ("out_channels",)

    def label(self):
        return f"pad_channels {self.out_channels}" + (
            ", both sides" if self.where == "both" else "")


class Affine(_Op):
    """A constant per-channel affine map, y[:, k] = x[:, k] * scale[k] + shift[k], with
    no parameters: torchvision's `transform_input` in GoogLeNet and Inception-v3,
    which maps ImageNet-normalised input to Google's normalisation. A tuple gives one
    value per input channel (`check` holds it to the channels); a number applies to
    every channel."""

    op: Literal["affine"] = "affine"
    scale: float | tuple[float, ...] = 1.0
    shift: float | tuple[float, ...] = 0.0
    POSITIONAL: ClassVar = ("scale", "shift")

    def label(self):
        return "affine"


class Multiply(_Op):
    """Element-wise product with broadcasting (squeeze-excitation gates)."""

    op: Literal["multiply"] = "multiply"


Op = Annotated[Union[Input, Conv, DepthwiseConv, MaxPool, AvgPool, AdaptivePool, Linear,
                     Flatten, BatchNorm, LocalResponseNorm, Dropout, DropPath, Activation,
                     LeakyReLU, ELU, Softmax, Concat, Add, Mean, Multiply, PadChannels,
                     ConvTranspose, Upsample, Crop, ChannelShuffle, Narrow, LayerNorm,
                     LayerScale, Affine],
               Field(discriminator="op")]



def op_adapter() -> TypeAdapter:
    """Validates any op from a dict, e.g. one read back from JSON (built on first use)."""
    global _ADAPTER
    if _ADAPTER is None:
        _ADAPTER = TypeAdapter(Op)
    return _ADAPTER


_ADAPTER: TypeAdapter | None = None

# Layer keywords a spec may call, mapped to their model. Joins are not called by
# name; `swish` is the EfficientNet paper's name for silu.
LAYER_MODELS: dict[str, type[_Op]] = {
    "conv": Conv, "dwconv": DepthwiseConv, "maxpool": MaxPool, "avgpool": AvgPool,
    "adaptive_avgpool": AdaptivePool, "adaptive_maxpool": AdaptivePool,
    "linear": Linear, "flatten": Flatten, "batchnorm": BatchNorm,
    "lrn": LocalResponseNorm, "dropout": Dropout, "drop_path": DropPath,
    "leaky_relu": LeakyReLU, "elu": ELU, "softmax": Softmax,
    "pad_channels": PadChannels, "conv_transpose": ConvTranspose, "upsample": Upsample,
    "crop": Crop, "shuffle": ChannelShuffle, "narrow": Narrow, "layernorm": LayerNorm,
    "layer_scale": LayerScale, "affine": Affine,
    **{name: Activation for name in Activation.model_fields["op"].annotation.__args__},
}
LAYER_SYNONYMS = {"swish": "silu", "deconv": "conv_transpose"}
# Words a layer argument may give bare, without quotes: `upsample 2 bilinear`.
WORDS = frozenset({"nearest", "bilinear", "end", "both"})
