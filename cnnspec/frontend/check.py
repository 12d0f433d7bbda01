"""Check stage: IR graph -> shaped IR (the side table every backend reads).

Takes: an `ir.Graph`. Returns: `ShapeTable`, one `Facts` per node: output shape,
parameters, MACs, activation bytes, receptive field and jump. One pure function
per op kind, registered in `RULES`. Raises `SpecError` (codes E03xx) when a shape
is impossible, with the arithmetic. Conventions are in docs/costs.md.

`elaborate` asks the same table for shapes while it expands the spec (`in.c`,
`shortcut auto`), so there is exactly one shape computation.
"""

from __future__ import annotations

import math
from typing import Callable, NamedTuple

from .. import ops as O
from ..diagnostics import SpecError, error
from ..ir import Graph, Node


class Facts(NamedTuple):
    shape: tuple[int, ...]
    params: int = 0
    macs: int = 0
    receptive_field: tuple[int, int] = (1, 1)
    jump: tuple[int, int] = (1, 1)  # input pixels between neighbouring outputs
    # Every output depends on the whole input: after a global pool or a flatten (an SE
    # gate, a classifier), and everything computed from such a value. The receptive
    # field then stays that of the first global view (shown as `global`).
    whole: bool = False

    @property
    def elements(self) -> int:
        return math.prod(self.shape)


class ShapeProblem(Exception):
    """Raised by a rule; `ShapeTable` turns it into a located diagnostic."""

    def __init__(self, code: str, message: str, label: str = "", help: str = ""):
        super().__init__(message)
        self.code, self.message, self.label, self.help = code, message, label, help
        self.notes: tuple[str, ...] = ()


def shape_text(shape: tuple[int, ...]) -> str:
    return "x".join(map(str, shape))


# ---------------------------------------------------------------- spatial arithmetic


class WindowArithmetic(NamedTuple):
    """One axis of a sliding window, before any rounding."""

    span: int  # the dilated kernel: dilation * (kernel - 1) + 1
    padded: int  # the input with its padding on both sides
    leftover: int  # padded pixels after the last whole stride (0: the stride divides)
    floor: int  # the output length, rounded down as PyTorch does
    equation: str  # `(25 - 2 + 2*0) / 2 + 1 = 12.5`, as diagnostics show it


def window_arithmetic(size: int, kernel: int, stride: int, padding: int,
                      dilation: int) -> WindowArithmetic:
    """A sliding window's numbers along one axis, without checks (`_window` checks),
    shared with explain's formulas and lint's W0301."""
    span = dilation * (kernel - 1) + 1
    padded = size + 2 * padding
    return WindowArithmetic(span, padded, (padded - span) % stride,
                            (padded - span) // stride + 1,
                            f"({size} - {span} + 2*{padding}) / {stride} + 1 = "
                            f"{(padded - span) / stride + 1:g}")


def _window(size: int, kernel: int, stride: int, padding: int, dilation: int, *,
            ceil_mode: bool, sizes: str, axis: str, window: str) -> int:
    """Output length of a sliding window, as PyTorch computes it, with our checks."""
    span, padded, leftover, floor, equation = window_arithmetic(size, kernel, stride,
                                                                padding, dilation)
    # In ceil mode PyTorch also takes one last window that overhangs the padded input.
    reach = padded + (stride - 1 if ceil_mode else 0)
    if reach < span:
        raise ShapeProblem(
            "E0302", f"the {window} window is larger than the padded input", equation,
            f"the input {axis} is {size}; pad by {math.ceil((span - size) / 2)} "
            "or remove a downsampling layer before this one")
    if ceil_mode:
        out = -(-(padded - span) // stride) + 1
        if (out - 1) * stride >= size + padding:  # PyTorch: last window starts inside
            out -= 1
        return out
    unseen = leftover - padding  # trailing input pixels no window covers
    bad = (sizes == "exact" and leftover) or (
        sizes == "strict" and unseen > max(0, stride - span))
    if bad:
        raise ShapeProblem("E0301", f"output {axis} is not a whole number", equation,
                           _fit_help(size, span, stride, padding, leftover))
    return floor


def _fit_help(size, span, stride, padding, leftover) -> str:
    sizes = sorted({size + stride - leftover, size - leftover} - {0})
    fits = " or ".join(str(s) for s in sizes if s >= span - 2 * padding)
    help = f"the input must be {fits} for stride {stride} to fit"
    pads = [p for p in range(padding + 1, padding + stride + 1)
            if (size + 2 * p - span) % stride == 0]
    if pads:
        help += f" (or pad by {pads[0]})"
    return help + "; `option sizes = floor` floors like PyTorch"


def window_settings(op) -> tuple:
    """kernel_size, stride, padding, dilation of a conv or pool (a pool's stride is
    its kernel unless given; a pool without dilation has 1)."""
    stride = op.effective_stride if isinstance(op, O._Pool) else op.stride
    return op.kernel_size, stride, op.padding, getattr(op, "dilation", (1, 1))


def _spatial(ins: Facts, kernel, stride, padding, dilation, ceil_mode, sizes):
    _, h, w = ins.shape
    window = "x".join(str(d * (k - 1) + 1) for k, d in zip(kernel, dilation))
    out_w = _window(w, kernel[1], stride[1], padding[1], dilation[1],
                    ceil_mode=ceil_mode, sizes=sizes, axis="width", window=window)
    out_h = _window(h, kernel[0], stride[0], padding[0], dilation[0],
                    ceil_mode=ceil_mode, sizes=sizes, axis="height", window=window)
    return (out_h, out_w) + _field(ins, kernel, stride, dilation)


def _field(ins: Facts, kernel, stride, dilation):
    """Receptive field and jump after a window (padding does not change them)."""
    rf = tuple(_whole(r + (dil * (k - 1)) * j) for r, k, dil, j in
               zip(ins.receptive_field, kernel, dilation, ins.jump))
    jump = (ins.jump[0] * stride[0], ins.jump[1] * stride[1])
    return rf, jump


def _whole(pixels) -> int:
    """A receptive field in whole input pixels. After upsampling, outputs sit a
    fraction of an input pixel apart (the jump is 1/2); a window over them can end
    part-way into a pixel, which it then sees."""
    return pixels if isinstance(pixels, int) else math.ceil(pixels)


def _needs_rank(ins: Facts, rank: int, what: str):
    if len(ins.shape) == rank:
        return
    found = shape_text(ins.shape)
    if rank == 3:
        raise ShapeProblem("E0306", f"{what} needs a C x H x W input",
                           f"found a flat vector of {found}",
                           "spatial layers go before `flatten`")
    raise ShapeProblem("E0306", f"{what} needs a flat vector", f"found {found}",
                       "add `flatten` (or `avgpool global` then `flatten`) before it")


def _global(ins: Facts) -> tuple[tuple[int, int], tuple[int, int]]:
    """Receptive field and jump of something that sees the whole input."""
    if len(ins.shape) != 3:
        return ins.receptive_field, ins.jump
    _, h, w = ins.shape
    rf = (_whole(ins.receptive_field[0] + (h - 1) * ins.jump[0]),
          _whole(ins.receptive_field[1] + (w - 1) * ins.jump[1]))
    return rf, (ins.jump[0] * h, ins.jump[1] * w)


# ---------------------------------------------------------------- rules per op

Rule = Callable[[object, list[Facts], str], Facts]
RULES: dict[type, Rule] = {}


def rule(*kinds):
    def register(function):
        for kind in kinds:
            RULES[kind] = function
        return function
    return register


@rule(O.Input)
def _input(op: O.Input, ins, sizes):
    return Facts(op.shape)


def _conv_shape(op, ins: Facts, in_channels, out_channels, groups, sizes) -> Facts:
    padding = op.padding
    if padding == "same":
        if op.stride != (1, 1):
            raise ShapeProblem("E0307", "`padding=same` needs stride 1",
                               "found stride " + (shape_text(op.stride)
                                                  if op.stride[0] != op.stride[1]
                                                  else str(op.stride[0])),
                               "PyTorch refuses it too; pad by (kernel_size - 1) // 2")
        # PyTorch pads d * (k - 1) in all (the odd pixel on the right): the size is
        # kept, and there is always a whole window.
        h, w = ins.shape[1:]
        rf, jump = _field(ins, op.kernel_size, op.stride, op.dilation)
    else:
        h, w, rf, jump = _spatial(ins, op.kernel_size, op.stride, padding, op.dilation,
                                  False, sizes)
    taps = (in_channels // groups) * op.kernel_size[0] * op.kernel_size[1]
    params = out_channels * taps + (out_channels if op.bias else 0)
    return Facts((out_channels, h, w), params, out_channels * h * w * taps, rf, jump)


def _groups_divide(in_channels: int, groups: int) -> None:
    """A grouped conv's input channels split evenly (`ops` checks the output's)."""
    if in_channels % groups:
        raise ShapeProblem("E0305", f"groups={groups} does not divide the "
                           f"{in_channels} input channels",
                           f"{in_channels} / {groups} = {in_channels / groups:g}",
                           "in_channels and out_channels must both be multiples of groups")


@rule(O.Conv)
def _conv(op: O.Conv, ins, sizes):
    (x,) = ins
    _needs_rank(x, 3, "conv")
    _groups_divide(x.shape[0], op.groups)
    return _conv_shape(op, x, x.shape[0], op.out_channels, op.groups, sizes)


@rule(O.DepthwiseConv)
def _dwconv(op: O.DepthwiseConv, ins, sizes):
    (x,) = ins
    _needs_rank(x, 3, "dwconv")
    c = x.shape[0]
    return _conv_shape(op, x, c, c * op.channel_multiplier, c, sizes)


@rule(O.MaxPool, O.AvgPool)
def _pool(op, ins, sizes):
    (x,) = ins
    _needs_rank(x, 3, op.op)
    kernel, stride, padding, dilation = window_settings(op)
    for k, p in zip(kernel, padding):
        if p > k // 2:
            raise ShapeProblem("E0308", f"{op.op} padding {p} is more than half the "
                               f"kernel {k}", f"{p} > {k} // 2",
                               "PyTorch allows padding of at most kernel_size // 2")
    h, w, rf, jump = _spatial(x, kernel, stride, padding, dilation, op.ceil_mode, sizes)
    whole = (h, w) == (1, 1) and kernel[0] >= x.shape[1] \
        and kernel[1] >= x.shape[2]  # one window over the whole map
    return Facts((x.shape[0], h, w), 0, 0, rf, jump, whole=whole)


@rule(O.AdaptivePool)
def _adaptive(op: O.AdaptivePool, ins, sizes):
    (x,) = ins
    _needs_rank(x, 3, op.op)
    c, h, w = x.shape
    oh, ow = op.output_size
    rf = (_whole(x.receptive_field[0] + (widest_bin(h, oh) - 1) * x.jump[0]),
          _whole(x.receptive_field[1] + (widest_bin(w, ow) - 1) * x.jump[1]))
    jump = (x.jump[0] * max(h // oh, 1), x.jump[1] * max(w // ow, 1))
    return Facts((c, oh, ow), 0, 0, rf, jump, whole=(oh, ow) == (1, 1))


def widest_bin(size: int, out: int) -> int:
    """The most inputs one output of an adaptive pool sees: PyTorch's bin i spans
    [floor(i * size / out), ceil((i + 1) * size / out)), which for uneven bins can be
    one wider than ceil(size / out) (5 -> 3: the middle bin is [1, 4))."""
    return max(-(-(i + 1) * size // out) - i * size // out for i in range(out))


@rule(O.Linear)
def _linear(op: O.Linear, ins, sizes):
    (x,) = ins
    _needs_rank(x, 3 if op.pointwise else 1,
                "a pointwise linear" if op.pointwise else "linear")
    n = x.shape[0]
    params = n * op.out_features + (op.out_features if op.bias else 0)
    positions = math.prod(x.shape[1:])
    return Facts((op.out_features,) + x.shape[1:], params,
                 positions * n * op.out_features, x.receptive_field, x.jump)


@rule(O.ConvTranspose)
def _conv_transpose(op: O.ConvTranspose, ins, sizes):
    """out = (in - 1) * stride - 2 * padding + dilation * (kernel - 1)
    + output_padding + 1, as PyTorch's ConvTranspose2d. Each input pixel spreads
    over kernel outputs, so MACs count input positions (as fvcore does)."""
    (x,) = ins
    _needs_rank(x, 3, "conv_transpose")
    c, h, w = x.shape
    _groups_divide(c, op.groups)
    out = []
    for size, k, s, p, d, extra, axis in zip((h, w), op.kernel_size, op.stride,
                                             op.padding, op.dilation, op.output_padding,
                                             ("height", "width")):
        length = (size - 1) * s - 2 * p + d * (k - 1) + extra + 1
        if length < 1:
            raise ShapeProblem("E0302", f"the padding leaves no output {axis}",
                               f"({size} - 1) * {s} - 2*{p} + {d * (k - 1)} + {extra} + 1"
                               f" = {length}", "reduce the padding")
        out.append(length)
    taps = (op.out_channels // op.groups) * op.kernel_size[0] * op.kernel_size[1]
    params = c * taps + (op.out_channels if op.bias else 0)
    # Each output sees ceil(span / stride) inputs per axis; the grid gets finer.
    rf = tuple(_whole(r + (-(-(d * (k - 1) + 1) // s) - 1) * j) for r, k, s, d, j in zip(
        x.receptive_field, op.kernel_size, op.stride, op.dilation, x.jump))
    return Facts((op.out_channels, *out), params, h * w * c * taps, rf,
                 _finer(x.jump, op.stride))


def _finer(jump, factor):
    """The jump after upsampling by `factor`: a fraction of an input pixel stays a
    float (1/2 after upsampling a full-resolution map)."""
    return tuple(j // f if j % f == 0 else j / f for j, f in zip(jump, factor))


@rule(O.Upsample)
def _upsample(op: O.Upsample, ins, sizes):
    (x,) = ins
    _needs_rank(x, 3, "upsample")
    c, h, w = x.shape
    sh, sw = op.scale_factor
    rf = x.receptive_field
    if op.mode == "bilinear":  # each output mixes two neighbouring inputs per axis
        rf = (_whole(rf[0] + x.jump[0]), _whole(rf[1] + x.jump[1]))
    return Facts((c, h * sh, w * sw), 0, 0, rf, _finer(x.jump, op.scale_factor))


@rule(O.Crop)
def _crop(op: O.Crop, ins, sizes):
    (x,) = ins
    _needs_rank(x, 3, "crop")
    c, h, w = x.shape
    if op.size[0] > h or op.size[1] > w:
        raise ShapeProblem("E0311", "crop is larger than its input",
                           f"{shape_text(op.size)} from {h}x{w}",
                           "a crop keeps the centre of a larger map; crop to at most "
                           f"{h}x{w}")
    return Facts((c,) + op.size, 0, 0, x.receptive_field, x.jump)


@rule(O.ChannelShuffle)
def _shuffle(op: O.ChannelShuffle, ins, sizes):
    (x,) = ins
    _needs_rank(x, 3, "shuffle")
    c = x.shape[0]
    if c % op.groups:
        raise ShapeProblem("E0310", f"{op.groups} groups do not divide the {c} channels",
                           f"{c} / {op.groups} = {c / op.groups:g}",
                           "shuffle views the channels as groups x (C / groups)")
    return Facts(x.shape, 0, 0, x.receptive_field, x.jump)


@rule(O.Narrow)
def _narrow(op: O.Narrow, ins, sizes):
    (x,) = ins
    c = x.shape[0]
    if op.start + op.length > c:
        raise ShapeProblem("E0310", f"channels {op.start}:{op.start + op.length} "
                           f"do not fit the {c} input channels",
                           f"{op.start} + {op.length} = {op.start + op.length} > {c}")
    return Facts((op.length,) + x.shape[1:], 0, 0, x.receptive_field, x.jump)


@rule(O.LayerNorm, O.LayerScale)
def _per_channel(op, ins, sizes):
    (x,) = ins
    if len(x.shape) not in (1, 3):
        _needs_rank(x, 3, op.op)
    c = x.shape[0]
    params = c if type(op) is O.LayerScale else 2 * c if op.elementwise_affine else 0
    return Facts(x.shape, params, 0, x.receptive_field, x.jump)


@rule(O.Flatten)
def _flatten(op, ins, sizes):
    (x,) = ins
    rf, jump = _global(x)
    return Facts((x.elements,), 0, 0, rf, jump, whole=len(x.shape) == 3)


@rule(O.BatchNorm)
def _batchnorm(op: O.BatchNorm, ins, sizes):
    (x,) = ins
    if len(x.shape) not in (1, 3):
        _needs_rank(x, 3, "batchnorm")
    params = 2 * x.shape[0] if op.affine else 0
    return Facts(x.shape, params, 0, x.receptive_field, x.jump)


@rule(O.LocalResponseNorm)
def _lrn(op, ins, sizes):
    (x,) = ins
    _needs_rank(x, 3, "lrn")
    return Facts(x.shape, 0, 0, x.receptive_field, x.jump)


@rule(O.Dropout, O.DropPath, O.Activation, O.LeakyReLU, O.ELU, O.Softmax)
def _elementwise(op, ins, sizes):
    (x,) = ins
    return Facts(x.shape, 0, 0, x.receptive_field, x.jump)


@rule(O.PadChannels)
def _pad_channels(op: O.PadChannels, ins, sizes):
    (x,) = ins
    if x.shape[0] > op.out_channels:
        raise ShapeProblem("E0309", f"padding to {op.out_channels} channels would "
                           "remove channels", f"the input has {x.shape[0]} channels, "
                           f"{x.shape[0]} > {op.out_channels}",
                           "pad_channels only adds zero channels; to reduce channels "
                           "use a 1x1 conv")
    return Facts((op.out_channels,) + x.shape[1:], 0, 0, x.receptive_field, x.jump)


@rule(O.Affine)
def _affine(op: O.Affine, ins, sizes):
    (x,) = ins
    if len(x.shape) not in (1, 3):
        _needs_rank(x, 3, "affine")
    c = x.shape[0]
    for name in ("scale", "shift"):
        values = getattr(op, name)
        if isinstance(values, tuple) and len(values) != c:
            raise ShapeProblem("E0310", f"affine gives {len(values)} {name} values for "
                               f"{c} channels", f"the input has {c} channels, "
                               f"{name} has {len(values)} values",
                               f"give one {name} per input channel, or one number for "
                               "every channel")
    return Facts(x.shape, 0, 0, x.receptive_field, x.jump)


def _joined_field(ins: list[Facts], shape: tuple[int, ...]):
    """A join sees what its widest branch sees; its grid is that of the branches at
    the output's own size (a broadcast C x 1 x 1 gate adds context, not stride)."""
    rf = (max(x.receptive_field[0] for x in ins), max(x.receptive_field[1] for x in ins))
    grid = [x for x in ins if x.shape[1:] == shape[1:]] or ins
    jump = (max(x.jump[0] for x in grid), max(x.jump[1] for x in grid))
    return rf, jump


def _branch_list(ins: list[Facts]) -> str:
    return ", ".join(shape_text(x.shape) for x in ins)


@rule(O.Concat)
def _concat(op, ins, sizes):
    first = ins[0]
    if any(len(x.shape) != len(first.shape) or x.shape[1:] != first.shape[1:]
           for x in ins):
        raise ShapeProblem("E0303", "concat branches differ in size",
                           f"branch outputs are {_branch_list(ins)}",
                           "concat joins along channels: every branch must keep the "
                           "same height and width (for a U-Net: an input size that "
                           "every pooling divides, or `crop` the skip to the "
                           "decoder's size)")
    shape = (sum(x.shape[0] for x in ins),) + first.shape[1:]
    rf, jump = _joined_field(ins, shape)
    return Facts(shape, 0, 0, rf, jump)


@rule(O.Add, O.Mean)
def _same_shape_join(op, ins, sizes):
    first = ins[0]
    if any(x.shape != first.shape for x in ins):
        help = ("every branch must end in the same shape; a residual whose body "
                "changes it needs `shortcut auto { conv ... }`")
        raise ShapeProblem("E0303", f"{op.op} needs inputs of one shape",
                           f"found {_branch_list(ins)}", help)
    rf, jump = _joined_field(ins, first.shape)
    return Facts(first.shape, 0, 0, rf, jump)


@rule(O.Multiply)
def _multiply(op, ins, sizes):
    shape = ins[0].shape
    for x in ins[1:]:
        if len(x.shape) != len(shape) or any(a != b and 1 not in (a, b)
                                             for a, b in zip(x.shape, shape)):
            raise ShapeProblem("E0303", "multiply needs shapes that broadcast",
                               f"found {_branch_list(ins)}",
                               "a gate's output is C x 1 x 1 or the input's own "
                               "shape; inside `gate { }`, `in` is each layer's own "
                               "input, not the gate's: bind the gate's channels "
                               "before it (`let c = in.c`) and use `c`")
        shape = tuple(max(a, b) for a, b in zip(x.shape, shape))
    rf, jump = _joined_field(ins, shape)
    return Facts(shape, 0, 0, rf, jump)


# ---------------------------------------------------------------- the table


class ShapeTable:
    """Facts for every node of a graph, computed in id (topological) order.

    Grows with the graph: `elaborate` may ask for a node while later nodes are
    still being added. Assertions are checked as soon as their node is known.
    """

    def __init__(self, graph: Graph):
        self.graph = graph
        self.facts: list[Facts] = []
        self._checked_assertions = 0

    def __getitem__(self, node_id: int) -> Facts:
        self.ensure(node_id)
        return self.facts[node_id]

    def ensure(self, node_id: int) -> None:
        nodes = self.graph.nodes
        sizes = self.graph.options.sizes
        while len(self.facts) <= node_id:
            node = nodes[len(self.facts)]
            ins = [self.facts[i] for i in node.inputs]
            try:
                facts = RULES[type(node.op)](node.op, ins, sizes)
                seen_all = [x.receptive_field for x in ins if x.whole]
                if seen_all:  # it cannot see more than everything: the field stops
                    facts = facts._replace(whole=True, receptive_field=(
                        max(r[0] for r in seen_all), max(r[1] for r in seen_all)))
                self.facts.append(facts)
            except ShapeProblem as problem:
                if problem.code == "E0303" and type(node.op) is O.Concat:
                    problem.notes = self._where_sizes_part(node)
                raise _located(node, problem) from None
        self.check_assertions()

    def local_receptive_field(self) -> tuple[int, int]:
        """The widest receptive field of a value that does not yet see the whole
        input: what a network's features see before its global pool."""
        local = [f.receptive_field for f in self.facts if not f.whole] or [(1, 1)]
        return (max(r[0] for r in local), max(r[1] for r in local))

    def _where_sizes_part(self, join: Node) -> tuple[str, ...]:
        """For a concat whose branches differ in height or width (a U-Net skip on an
        input the poolings do not divide): the nearest layer before the join whose
        output size was rounded down, with its arithmetic."""
        nodes, seen = self.graph.nodes, set()
        stack = list(join.inputs)
        while stack:
            node = nodes[stack.pop(0)]
            if node.id in seen:
                continue
            seen.add(node.id)
            lost = _rounded_down(node.op, self.facts[node.inputs[0]].shape
                                 if node.inputs else ())
            if lost:
                return (f"{describe(node)} ({node.op.label()}, {node.span}) rounds "
                        f"{lost}, so the paths that meet here no longer agree",)
            stack.extend(node.inputs)
        return ()

    def check_assertions(self) -> None:
        assertions = self.graph.assertions
        while (self._checked_assertions < len(assertions)
               and assertions[self._checked_assertions].node < len(self.facts)):
            assertion = assertions[self._checked_assertions]
            self._checked_assertions += 1
            found = self.facts[assertion.node].shape
            if found != assertion.shape:
                node = self.graph.nodes[assertion.node]
                raise error("E0304", f"{describe(node)} is {shape_text(found)}, not "
                            f"{shape_text(assertion.shape)}", assertion.span,
                            label=f"the checker computes {shape_text(found)}",
                            notes=_where(node))

    def complete(self) -> "ShapeTable":
        if self.graph.nodes:
            self.ensure(len(self.graph.nodes) - 1)
        self.check_assertions()
        return self


def _rounded_down(op, in_shape) -> str:
    """`the height (25 - 2 + 2*0) / 2 + 1 = 12.5 down to 12` when a window op floors
    its output height (or width); empty when it divides exactly."""
    if not isinstance(op, (O.Conv, O.DepthwiseConv, O.MaxPool, O.AvgPool)) \
            or len(in_shape) != 3 or op.padding == "same" or getattr(op, "ceil_mode", 0):
        return ""
    for size, k, s, p, d, axis in zip(in_shape[1:], *window_settings(op),
                                      ("height", "width")):
        arithmetic = window_arithmetic(size, k, s, p, d)
        if arithmetic.leftover:
            return f"the {axis} {arithmetic.equation} down to {arithmetic.floor}"
    return ""


def _where(node: Node) -> tuple[str, ...]:
    notes = [f"in `{node.name}`"]
    for (path, block), call in zip(reversed(node.blocks), reversed(node.calls)):
        notes.append(f"block `{block}` instantiated as `{path}` at {call}")
    return tuple(notes)


def describe(node: Node) -> str:
    """`conv1` for a labelled layer; `conv `features.0`` when only its position names it."""
    labelled = not node.name.rsplit(".", 1)[-1].isdigit()
    return f"`{node.name}`" if labelled else f"{node.op.op} `{node.name}`"


def _located(node: Node, problem: ShapeProblem) -> SpecError:
    message = f"{describe(node)} {problem.message}" if problem.code == "E0301" \
        else f"{problem.message} at {describe(node)}"
    return error(problem.code, message, node.span, label=problem.label,
                 help=problem.help, notes=problem.notes + _where(node)[1:])


def check(graph: Graph) -> ShapeTable:
    """Compute every node's facts and prove every asserted shape."""
    return ShapeTable(graph).complete()
