"""Every op's shape rule against PyTorch's documented output-size formulas.

The reference formulas below are transcribed from the torch.nn docs (Conv2d,
MaxPool2d, AvgPool2d), not from cnnspec, and compared on a grid of cases."""

import math

import pytest

import cnnspec


def torch_conv_out(size, kernel, stride=1, padding=0, dilation=1):
    # torch.nn.Conv2d docs: floor((H + 2p - d(k-1) - 1) / s + 1)
    return math.floor((size + 2 * padding - dilation * (kernel - 1) - 1) / stride + 1)


def torch_pool_out(size, kernel, stride, padding=0, dilation=1, ceil_mode=False):
    # torch.nn.MaxPool2d docs; in ceil mode the last window must start inside the
    # input or its left padding (aten's pooling_output_shape).
    numerator = size + 2 * padding - dilation * (kernel - 1) - 1
    out = (math.ceil if ceil_mode else math.floor)(numerator / stride) + 1
    if ceil_mode and (out - 1) * stride >= size + padding:
        out -= 1
    return out


def shape_of(body: str, input_shape: str = "3x32x32", sizes: str = "floor"):
    spec = cnnspec.load(f"network t {{\noption sizes = {sizes}\ninput {input_shape}\n"
                        f"{body}\n}}")
    return spec.output_shape


@pytest.mark.parametrize("size", [7, 13, 32, 55, 224, 227])
@pytest.mark.parametrize("kernel, stride, padding, dilation",
                         [(1, 1, 0, 1), (3, 1, 1, 1), (3, 2, 1, 1), (7, 2, 3, 1),
                          (11, 4, 2, 1), (3, 1, 2, 2), (5, 3, 0, 1), (1, 2, 0, 1)])
def test_conv_matches_pytorch_formula(size, kernel, stride, padding, dilation):
    if size + 2 * padding < dilation * (kernel - 1) + 1:
        pytest.skip("window larger than input: covered by the diagnostics tests")
    out = torch_conv_out(size, kernel, stride, padding, dilation)
    body = f"conv 16 k={kernel} s={stride} p={padding} d={dilation}"
    assert shape_of(body, f"3x{size}x{size}") == (16, out, out)


@pytest.mark.parametrize("size", [6, 7, 13, 14, 27, 55, 112])
@pytest.mark.parametrize("kernel, stride, padding", [(2, 2, 0), (3, 2, 0), (3, 2, 1),
                                                     (3, 1, 1), (5, 3, 2)])
@pytest.mark.parametrize("ceil_mode", [False, True])
@pytest.mark.parametrize("kind", ["maxpool", "avgpool"])
def test_pools_match_pytorch_formula(kind, size, kernel, stride, padding, ceil_mode):
    out = torch_pool_out(size, kernel, stride, padding, ceil_mode=ceil_mode)
    body = (f"{kind} {kernel} s={stride} p={padding} "
            f"ceil_mode={'true' if ceil_mode else 'false'}")
    assert shape_of(body, f"4x{size}x{size}") == (4, out, out)


def test_pool_stride_defaults_to_kernel():
    assert shape_of("maxpool 2", "4x8x8") == (4, 4, 4)


def test_non_square_kernel_stride_and_padding():
    h = torch_conv_out(17, 1, 1, 0)
    w = torch_conv_out(17, 7, 1, 3)
    assert shape_of("conv 8 k=(1, 7) p=(0, 3)", "3x17x17") == (8, h, w)
    assert shape_of("conv 8 k=3 s=(2, 1) p=1", "3x16x16") == (
        8, torch_conv_out(16, 3, 2, 1), torch_conv_out(16, 3, 1, 1))


@pytest.mark.parametrize("kernel, dilation", [(3, 1), (5, 1), (3, 2), (3, 3), (4, 1)])
def test_same_padding_keeps_size(kernel, dilation):
    assert shape_of(f"conv 8 k={kernel} d={dilation} p=same", "3x20x20") == (8, 20, 20)


def test_groups_and_depthwise_parameters():
    spec = cnnspec.load("network g { input 64x8x8\n"
                        "a: conv 128 k=3 p=1 groups=32 bias=false\n"
                        "b: dwconv k=3 p=1 bias=false\n"
                        "c: dwconv k=5 p=2 channel_multiplier=2 }")
    assert spec.facts("a").params == 128 * (64 // 32) * 9
    assert spec.facts("b").params == 128 * 1 * 9
    assert spec.facts("c").shape == (256, 8, 8)
    assert spec.facts("c").params == 256 * 25 + 256
    assert spec.facts("a").macs == 128 * 8 * 8 * (64 // 32) * 9


def test_adaptive_and_global_pools():
    assert shape_of("adaptive_avgpool 7", "512x14x14") == (512, 7, 7)
    assert shape_of("adaptive_maxpool (4, 2)", "8x9x9") == (8, 4, 2)
    assert shape_of("avgpool global", "512x7x7") == (512, 1, 1)
    assert shape_of("maxpool global", "512x7x5") == (512, 1, 1)


def test_linear_flatten_batchnorm_and_elementwise():
    spec = cnnspec.load("network l { input 16x4x4\n"
                        "bn: batchnorm\nflat: flatten\nfc: linear 10\n"
                        "bn1d: batchnorm\nact: leaky_relu 0.2\ndrop: dropout 0.1\n"
                        "sm: softmax }")
    assert spec.facts("bn").params == 32
    assert spec.facts("flat").shape == (256,)
    assert spec.facts("fc").params == 256 * 10 + 10
    assert spec.facts("fc").macs == 2560
    assert spec.facts("bn1d").params == 20
    assert spec.output_shape == (10,)


def test_batchnorm_without_affine_has_no_parameters():
    spec = cnnspec.load("network b { input 8x4x4\n bn: batchnorm affine=false }")
    assert spec.facts("bn").params == 0


def test_concat_add_mean_multiply_shapes():
    spec = cnnspec.load("""network j { input 16x8x8
        cat: concat { conv 8 k=1; conv 24 k=3 p=1; maxpool 3 s=1 p=1 }
        sum: add { conv 48 k=1; identity }
        avg: mean { conv 48 k=3 p=1; identity }
        mul: multiply { identity; { avgpool global; conv 48 k=1; sigmoid } }
    }""")
    assert spec.facts("cat.concat").shape == (48, 8, 8)
    assert spec.facts("sum.add").shape == (48, 8, 8)
    assert spec.facts("avg.mean").shape == (48, 8, 8)
    assert spec.facts("mul.multiply").shape == (48, 8, 8)


def test_receptive_field_and_jump_through_strides_and_branches():
    spec = cnnspec.load("""network r { input 3x64x64
        a: conv 8 k=7 s=2 p=3
        b: maxpool 3 s=2 p=1
        c: conv 8 k=3 p=1
        d: concat { conv 8 k=1; conv 8 k=5 p=2 }
    }""")
    # rf grows by (k-1) * jump; jump multiplies by stride (Araujo et al. 2019, eq. 1-2)
    assert spec.facts("a").receptive_field == (7, 7) and spec.facts("a").jump == (2, 2)
    assert spec.facts("b").receptive_field == (7 + 2 * 2,) * 2
    assert spec.facts("c").receptive_field == (11 + 2 * 4,) * 2
    assert spec.facts("d.concat").receptive_field == (19 + 4 * 4,) * 2


def test_dilation_widens_receptive_field():
    spec = cnnspec.load("network d { input 3x32x32\n a: conv 4 k=3 d=2 p=2 }")
    assert spec.facts("a").receptive_field == (5, 5)


def test_strict_mode_allows_pytorch_floor_that_drops_only_padding():
    # ResNet's stem: (224 + 6 - 7) / 2 + 1 = 112.5 -> 112; the dropped pixel is padding.
    assert shape_of("conv 64 k=7 s=2 p=3", "3x224x224", sizes="strict") == (64, 112, 112)
    # A 1x1 stride-2 projection skips every other pixel anyway.
    assert shape_of("conv 8 k=1 s=2", "3x56x56", sizes="strict") == (8, 28, 28)


def test_strict_mode_rejects_dropped_input_and_floor_mode_accepts_it():
    with pytest.raises(cnnspec.SpecError) as caught:
        shape_of("conv 96 k=11 s=4", "3x224x224", sizes="strict")
    assert caught.value.code == "E0301"
    assert shape_of("conv 96 k=11 s=4", "3x224x224", sizes="floor") == (96, 54, 54)


def test_exact_mode_rejects_any_remainder():
    with pytest.raises(cnnspec.SpecError) as caught:
        shape_of("conv 64 k=7 s=2 p=3", "3x224x224", sizes="exact")
    assert caught.value.code == "E0301"
    assert shape_of("conv 64 k=7 s=2 p=3", "3x223x223", sizes="exact") == (64, 112, 112)


def test_a_broadcast_gate_adds_context_not_stride():
    """Squeeze-excitation multiplies by a C x 1 x 1 global summary: every output then
    depends on the whole input, but the grid (jump) stays the main path's."""
    spec = cnnspec.load("""network g { input 8x32x32
        a: conv 8 k=3 s=2 p=1
        se: gate { avgpool global; conv 8 k=1; sigmoid }
        b: conv 8 k=3 p=1
    }""")
    gate = spec.facts("se.multiply")
    assert gate.jump == (2, 2)
    # The global pool sees 3 + (16 - 1) * 2 = 33 input pixels (padding included);
    # from there on every output sees everything: the figure stops growing (the next
    # 3x3 conv does not add (3 - 1) * 2) and is shown as `global`.
    assert gate.receptive_field == (33, 33) and gate.whole
    assert not spec.facts("a").whole
    assert spec.facts("b").receptive_field == (33, 33) and spec.facts("b").whole
    rows = {row.name: row for row in spec.summary().layers}
    assert rows["b"].receptive_field_global and not rows["a"].receptive_field_global
