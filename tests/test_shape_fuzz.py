"""The checker's window arithmetic against PyTorch itself, case by generated case.

Every case is a one-layer spec (conv, maxpool, avgpool or an adaptive pool) with
generated kernel, stride, padding, dilation and ceil mode. cnnspec's verdict is
compared with what the real torch layer does to a zeros tensor of the input shape:
the same output shape when both accept, a SpecError (never a traceback, never a
silent acceptance) when torch refuses, and no refusal where torch accepts (under
`option sizes = floor`, cnnspec's PyTorch-compatible mode).

Receptive fields are *measured*: one output element of a torch module (the one
`cnnspec.build` makes, or a hand-built one) is backpropagated to a positive random
input with all-ones weights and averaging ops, so no gradient cancels, and the span
of input rows and columns with a non-zero gradient is its receptive field. Max
pooling routes a gradient to one pixel only, so for it the dependence is measured
by pushing one-pixel impulses forward instead. The largest span over all output
elements must equal what cnnspec reports.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
hypothesis = pytest.importorskip("hypothesis")

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from torch import nn

import cnnspec

pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same':UserWarning")
FUZZ = settings(max_examples=150, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
SHAPE_CODES = {"E0301", "E0302", "E0307", "E0308"}


# ---------------------------------------------------------------- cases


def _pair_text(pair) -> str:
    return str(pair[0]) if pair[0] == pair[1] else f"({pair[0]}, {pair[1]})"


class Case:
    """One layer on a 1 x h x w input, written both as cnnspec text and as torch."""

    def __init__(self, kind, size, kernel=None, stride=None, padding=(0, 0),
                 dilation=(1, 1), ceil=False, output=None, channels=1):
        self.kind, self.size, self.kernel, self.stride = kind, size, kernel, stride
        self.padding, self.dilation, self.ceil, self.output = padding, dilation, ceil, output
        self.channels = channels

    def __repr__(self):
        return f"<{self.layer()} on {self.channels}x{self.size[0]}x{self.size[1]}>"

    def layer(self) -> str:
        if self.kind.startswith("adaptive"):
            return f"{self.kind} {_pair_text(self.output)}"
        words = [self.kind]
        if self.kind == "conv":
            words.append("1")
        words.append(f"k={_pair_text(self.kernel)}")
        if self.stride is not None:
            words.append(f"s={_pair_text(self.stride)}")
        if self.padding == "same":
            words.append("p=same")
        elif self.padding != (0, 0):
            words.append(f"p={_pair_text(self.padding)}")
        if self.dilation != (1, 1):
            words.append(f"d={_pair_text(self.dilation)}")
        if self.ceil:
            words.append("ceil_mode=true")
        return " ".join(words)

    def text(self, sizes: str | None = "floor") -> str:
        option = f"    option sizes = {sizes}\n" if sizes else ""
        return (f"network fuzz {{\n    input {self.channels}x{self.size[0]}x{self.size[1]}\n"
                f"{option}    a: {self.layer()}\n}}\n")

    def torch_layer(self) -> nn.Module:
        if self.kind == "conv":
            return nn.Conv2d(self.channels, 1, self.kernel, stride=self.stride or 1,
                             padding=self.padding, dilation=self.dilation)
        if self.kind == "maxpool":
            return nn.MaxPool2d(self.kernel, self.stride, self.padding, self.dilation,
                                ceil_mode=self.ceil)
        if self.kind == "avgpool":
            return nn.AvgPool2d(self.kernel, self.stride, self.padding, ceil_mode=self.ceil)
        if self.kind == "adaptive_avgpool":
            return nn.AdaptiveAvgPool2d(self.output)
        return nn.AdaptiveMaxPool2d(self.output)

    def torch_shape(self):
        """The output shape (C, H, W) torch computes, or None if torch refuses."""
        try:
            layer = self.torch_layer()
            with torch.no_grad():
                out = layer(torch.zeros(1, self.channels, *self.size))
        except (RuntimeError, ValueError):
            return None
        return tuple(out.shape[1:])

    def cnnspec_shape(self, sizes: str | None = "floor"):
        """(output shape, None) if cnnspec accepts, (None, code) if it refuses."""
        try:
            spec = cnnspec.load(self.text(sizes))
        except cnnspec.SpecError as problem:
            return None, problem.diagnostics[0].code
        return spec.output_shape, None


def _pairs(values, square):
    return st.tuples(values, values).map(lambda p: (p[0], p[0]) if square else p)


@st.composite
def window_cases(draw, kinds=("conv", "maxpool", "avgpool")):
    kind = draw(st.sampled_from(kinds))
    square = draw(st.booleans())
    size = draw(_pairs(st.integers(1, 16), square))
    kernel = draw(_pairs(st.integers(1, 6), square))
    stride = draw(st.none() | _pairs(st.integers(1, 4), square))
    if kind == "conv" and draw(st.integers(0, 5)) == 0:
        padding = "same"
    else:
        padding = draw(_pairs(st.integers(0, 3), square))
    dilation = (1, 1)
    if kind != "avgpool" and draw(st.booleans()):
        dilation = draw(_pairs(st.integers(1, 3), square))
    ceil = kind != "conv" and draw(st.booleans())
    return Case(kind, size, kernel, stride, padding, dilation, ceil)


@st.composite
def adaptive_cases(draw):
    kind = draw(st.sampled_from(["adaptive_avgpool", "adaptive_maxpool"]))
    size = draw(st.tuples(st.integers(1, 20), st.integers(1, 20)))
    output = draw(st.tuples(st.integers(1, 9), st.integers(1, 9)))
    return Case(kind, size, output=output, channels=2)


def _agree(case: Case, sizes="floor") -> None:
    expected = case.torch_shape()
    found, code = case.cnnspec_shape(sizes)
    if expected is None:
        assert found is None, f"{case}: torch refuses it, cnnspec accepts it as {found}"
        assert code in SHAPE_CODES, f"{case}: refused with {code}"
    else:
        assert code is None, f"{case}: torch gives {expected}, cnnspec refuses ({code})"
        assert found == expected, f"{case}: cnnspec {found}, torch {expected}"


# ---------------------------------------------------------------- shapes: generated


@FUZZ
@given(window_cases())
def test_window_layers_agree_with_torch(case):
    _agree(case)


@FUZZ
@given(window_cases(kinds=("maxpool", "avgpool")).filter(lambda c: c.ceil))
def test_ceil_mode_pools_agree_with_torch(case):
    _agree(case)


@FUZZ
@given(adaptive_cases())
def test_adaptive_pools_agree_with_torch(case):
    _agree(case)


@settings(max_examples=100, deadline=None, derandomize=True)
@given(window_cases())
def test_strict_sizes_accept_only_what_torch_computes_alike(case):
    """The default `sizes = strict` may refuse more than torch (E0301, pixels thrown
    away), but whatever it accepts has torch's shape."""
    expected = case.torch_shape()
    found, code = case.cnnspec_shape(sizes=None)
    if found is not None:
        assert found == expected, f"{case}: cnnspec {found}, torch {expected}"
    elif expected is not None:
        assert code == "E0301", f"{case}: torch gives {expected}, cnnspec says {code}"


# ---------------------------------------------------------------- shapes: explicit


# (input, kernel, stride, padding): ceil mode's arithmetic gives one window more, and
# that window would start in the right padding, so PyTorch drops it.
CEIL_CORRECTED = [(1, 2, 2, 1), (3, 2, 2, 1), (3, 2, 3, 0), (5, 2, 2, 1), (7, 2, 2, 1),
                  (5, 3, 3, 1), (6, 2, 3, 0), (7, 4, 3, 2)]


@pytest.mark.parametrize("kind", ["maxpool", "avgpool"])
@pytest.mark.parametrize("n, k, s, p", CEIL_CORRECTED)
def test_ceil_mode_drops_a_window_that_starts_in_the_padding(kind, n, k, s, p):
    case = Case(kind, (n, n), (k, k), (s, s), (p, p), ceil=True)
    uncorrected = -(-(n + 2 * p - k) // s) + 1
    expected = torch_out = case.torch_shape()
    assert torch_out[1] == uncorrected - 1  # the case really exercises the correction
    for sizes in ("floor", None):  # ceil mode is exempt from the strict size check
        assert case.cnnspec_shape(sizes) == (expected, None)
    # and a rectangular input corrects one axis only
    tall = Case(kind, (n, 2 * n + 4), (k, k), (s, s), (p, p), ceil=True)
    assert tall.cnnspec_shape() == (tall.torch_shape(), None)


def test_ceil_mode_keeps_a_partial_window_that_starts_inside():
    case = Case("maxpool", (56, 56), (3, 3), (2, 2), ceil=True)  # GoogLeNet's pools
    assert case.torch_shape() == (1, 28, 28)
    assert case.cnnspec_shape(None) == ((1, 28, 28), None)
    assert Case("maxpool", (56, 56), (3, 3), (2, 2)).cnnspec_shape() == ((1, 27, 27), None)


@pytest.mark.parametrize("kind", ["maxpool", "avgpool"])
@pytest.mark.parametrize("n, k, s, p", [(2, 3, 2, 0), (1, 3, 3, 0), (3, 5, 3, 0),
                                        (1, 4, 4, 0)])
def test_ceil_mode_window_wider_than_the_input(kind, n, k, s, p):
    case = Case(kind, (n, n), (k, k), (s, s), (p, p), ceil=True)
    assert case.torch_shape() == (1, 1, 1)
    assert case.cnnspec_shape() == ((1, 1, 1), None)


@pytest.mark.parametrize("size, kernel, dilation", [((1, 1), (1, 2), (1, 1)),
                                                    ((1, 5), (4, 3), (1, 1)),
                                                    ((8, 1), (3, 2), (1, 3))])
def test_same_padding_even_window_on_one_pixel(size, kernel, dilation):
    case = Case("conv", size, kernel, padding="same", dilation=dilation)
    assert case.torch_shape() == (1, *size)
    assert case.cnnspec_shape() == ((1, *size), None)


@pytest.mark.parametrize("size, kernel, dilation", [((1, 1), (1, 3), (1, 1)),
                                                    ((1, 5), (4, 3), (2, 1)),
                                                    ((2, 2), (2, 4), (1, 1)),
                                                    ((9, 6), (4, 5), (3, 2))])
def test_same_padding_keeps_the_size(size, kernel, dilation):
    case = Case("conv", size, kernel, padding="same", dilation=dilation)
    assert case.torch_shape() == (1, *size)
    assert case.cnnspec_shape() == ((1, *size), None)
    assert case.cnnspec_shape(None) == ((1, *size), None)


@pytest.mark.parametrize("kind", ["adaptive_avgpool", "adaptive_maxpool"])
@pytest.mark.parametrize("size, output", [((5, 7), (3, 3)), ((7, 10), (3, 4)),
                                          ((2, 3), (3, 5)), ((1, 1), (4, 2)),
                                          ((224, 224), (7, 7)), ((13, 13), (6, 6))])
def test_adaptive_pool_with_uneven_bins(kind, size, output):
    case = Case(kind, size, output=output, channels=3)
    assert case.torch_shape() == (3, *output)
    assert case.cnnspec_shape() == ((3, *output), None)
    assert case.cnnspec_shape(None) == ((3, *output), None)  # strict sizes too


def test_torch_refusals_are_diagnostics():
    refused = [
        (Case("conv", (4, 4), (5, 5)), "E0302"),  # kernel wider than the input
        (Case("conv", (8, 8), (3, 3), (2, 2), "same"), "E0307"),  # same needs stride 1
        (Case("maxpool", (8, 8), (3, 3), padding=(2, 2)), "E0308"),  # pad > k // 2
        (Case("avgpool", (8, 8), (2, 2), padding=(0, 2)), "E0308"),
        (Case("maxpool", (5, 5), (3, 3), dilation=(3, 3)), "E0302"),  # 7-pixel window
    ]
    for case, code in refused:
        assert case.torch_shape() is None, case
        assert case.cnnspec_shape() == (None, code), case


# ---------------------------------------------------------------- receptive fields


def _spans(dependence, h: int, w: int) -> tuple[int, int]:
    """Largest (row span, column span) over output elements; `dependence` is a
    boolean (outputs, h*w) matrix of which input pixels each output depends on."""
    best = [0, 0]
    for row in dependence:
        pixels = row.nonzero().flatten()
        if len(pixels) == 0:
            continue
        rows, cols = pixels // w, pixels % w
        best[0] = max(best[0], int(rows.max() - rows.min()) + 1)
        best[1] = max(best[1], int(cols.max() - cols.min()) + 1)
    return tuple(best)


def _ones(module: nn.Module) -> nn.Module:
    """All conv and linear weights 1, biases 0: every path adds, nothing cancels."""
    with torch.no_grad():
        for name, tensor in module.named_parameters():
            tensor.fill_(0.0 if name.endswith("bias") else 1.0)
    return module.eval()


def rf_by_gradient(module: nn.Module, shape, limit: int = 64) -> tuple[int, int]:
    """Backpropagate from output elements one at a time (every one, or the `limit`
    nearest the centre) to a positive random input."""
    c, h, w = shape
    x = torch.rand(1, c, h, w, dtype=torch.float64) + 0.5
    x.requires_grad_(True)
    y = module.double()(x)[0, 0]
    oh, ow = y.shape
    chosen = sorted(range(oh * ow), key=lambda i: abs(i // ow - oh // 2)
                    + abs(i % ow - ow // 2))[:limit]
    rows = []
    for index in chosen:
        (grad,) = torch.autograd.grad(y.flatten()[index], x, retain_graph=True)
        rows.append(grad[0].abs().sum(0).flatten() > 0)
    return _spans(torch.stack(rows), h, w)


def rf_by_impulse(module: nn.Module, shape) -> tuple[int, int]:
    """One input per pixel, 1 there and 0 elsewhere; an output depends on the pixel
    iff it comes out positive (every op here is monotone and zero on zeros)."""
    c, h, w = shape
    x = torch.zeros(h * w, c, h * w, dtype=torch.float64)
    x[torch.arange(h * w), :, torch.arange(h * w)] = 1.0
    with torch.no_grad():
        y = module.double()(x.view(h * w, c, h, w))[:, 0]
    return _spans((y.flatten(1) > 0).T, h, w)


def _measure(text: str):
    """(spec, receptive field measured on the module cnnspec builds from it)."""
    spec = cnnspec.load(text)
    module = _ones(cnnspec.build(text))
    has_max = any(isinstance(m, (nn.MaxPool2d, nn.AdaptiveMaxPool2d))
                  for m in module.modules())
    measured = rf_by_impulse(module, spec.input_shape)
    if not has_max:  # the two measurements agree
        assert rf_by_gradient(module, spec.input_shape) == measured
    return spec, measured


@settings(max_examples=60, deadline=None, derandomize=True)
@given(adaptive_cases())
def test_adaptive_pool_receptive_field_is_measured(case):
    spec, measured = _measure(case.text())
    assert spec.facts("a").receptive_field == measured, case


@pytest.mark.parametrize("kind", ["adaptive_avgpool", "adaptive_maxpool"])
@pytest.mark.parametrize("size, output, rf", [
    ((7, 10), (3, 4), (3, 3)), ((10, 5), (4, 4), (3, 2)), ((4, 7), (3, 2), (2, 4)),
    ((6, 6), (3, 3), (2, 2)), ((6, 6), (1, 1), (6, 6)), ((3, 3), (6, 6), (1, 1))])
def test_adaptive_pool_receptive_field_uneven_bins(kind, size, output, rf):
    spec, measured = _measure(Case(kind, size, output=output).text())
    assert measured == rf
    assert spec.facts("a").receptive_field == rf


@pytest.mark.parametrize("kind", ["adaptive_avgpool", "adaptive_maxpool"])
@pytest.mark.parametrize("size, output, rf", [((5, 5), (3, 3), (3, 3)),
                                              ((8, 2), (3, 3), (4, 2)),
                                              ((11, 4), (4, 3), (4, 2))])
def test_adaptive_pool_receptive_field_widest_bin(kind, size, output, rf):
    spec, measured = _measure(Case(kind, size, output=output).text())
    assert measured == rf
    assert spec.facts("a").receptive_field == rf


@st.composite
def stacks(draw):
    """Two or three unpadded conv/pool layers on 48x48 (strides of at most 2 keep the
    receptive field under 48, so a window at the origin sees it whole), or on a
    smaller input, ending in an adaptive pool with even bins."""
    adaptive = draw(st.booleans())
    size = draw(st.integers(10, 20)) if adaptive else 48
    lines, n, partial = [], size, False  # partial: a ceil window hangs over the edge
    for _ in range(draw(st.integers(2, 3))):
        kind = draw(st.sampled_from(["conv", "avgpool", "maxpool", "relu"]))
        if kind == "relu":
            lines.append("relu")
            continue
        k, s = draw(st.integers(1, 4)), draw(st.integers(1, 2))
        d = draw(st.integers(1, 2)) if kind != "avgpool" else 1
        span = d * (k - 1) + 1
        assume(n >= span)
        ceil = kind != "conv" and draw(st.booleans())
        line = f"{'conv 1' if kind == 'conv' else kind} k={k} s={s}"
        line += f" d={d}" * (d > 1) + " ceil_mode=true" * ceil
        lines.append(line)
        out = (-(-(n - span) // s) if ceil else (n - span) // s) + 1
        out = out - 1 if ceil and (out - 1) * s >= n else out
        partial = partial or (out - 1) * s + span > n
        n = out
    if adaptive:
        out = draw(st.integers(1, 4))
        assume(not partial and n % out == 0)
        kind = draw(st.sampled_from(["adaptive_avgpool", "adaptive_maxpool"]))
        lines.append(f"{kind} {out}")
    body = "".join(f"    l{i}: {line}\n" for i, line in enumerate(lines))
    return (f"network stack {{\n    input 1x{size}x{size}\n"
            f"    option sizes = floor\n{body}}}\n"), len(lines) - 1


@settings(max_examples=40, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow])
@given(stacks())
def test_stacked_receptive_field_is_measured(stack):
    text, last = stack
    spec, measured = _measure(text)
    assert spec.facts(f"l{last}").receptive_field == measured, text


@pytest.mark.parametrize("body, rf", [
    ("a: conv 1 k=3\n b: conv 1 k=3\n c: conv 1 k=3", 7),  # the VGG argument
    ("a: conv 1 k=7 s=2 p=3\n b: maxpool 3 s=2 p=1", 11),  # ResNet's stem
    ("a: conv 1 k=3 d=2\n b: avgpool 2\n c: conv 1 k=3", 10),  # 5, 5+1, 6+2*2
    ("a: maxpool 3 s=2 ceil_mode=true\n b: conv 1 k=3", 7),  # GoogLeNet-style
    ("a: avgpool 2\n b: adaptive_avgpool 4\n c: conv 1 k=3", 24),  # 16 -> 4: 2+3*2, +2*8
])
def test_receptive_field_of_classic_stacks(body, rf):
    text = f"network s {{\n input 1x32x32\n {body}\n}}"
    spec, measured = _measure(text)
    assert measured == (rf, rf)
    assert spec.facts(spec.layer_names[-1]).receptive_field == (rf, rf)
    summary = spec.summary().layers[-1]
    assert summary.receptive_field == [rf, rf]


@pytest.mark.parametrize("body, rf", [
    ("a: conv_transpose 1 k=2 s=2", 1),  # each output takes one input pixel
    ("a: conv_transpose 1 k=3 s=2", 2),  # a 3-wide kernel overlaps two
    ("a: conv 1 k=3\n b: conv_transpose 1 k=2 s=2\n c: conv 1 k=3", 4),
    ("a: upsample 2\n b: conv 1 k=3", 2),  # three outputs, two distinct pixels
    ("a: upsample 2 bilinear\n b: conv 1 k=3", 3),  # each output mixes two
    ("a: maxpool 2\n b: upsample 2\n c: conv 1 k=3", 4),
])
def test_receptive_field_through_upsampling_is_measured(body, rf):
    """Upsampling makes the jump a fraction of an input pixel; the checker's whole-
    pixel receptive field must still be what the built module depends on."""
    text = f"network s {{\n input 1x16x16\n {body}\n}}"
    spec, measured = _measure(text)
    assert measured == (rf, rf)
    assert spec.facts(spec.layer_names[-1]).receptive_field == (rf, rf)
