"""U-Net (Ronneberger, Fischer, Brox 2015) and the CS231n lecture's Inception module.

Every expected number comes from outside cnnspec: figure 1 of the U-Net paper (sizes
and channel counts), arithmetic written out here, a plain-PyTorch U-Net written in this
file from the paper's description, or the lecture's slide. Long skips (`skip=enc4`),
`crop`, `conv_transpose`, `upsample`, layer kinds as arguments and the E0303 join
diagnostic under `option sizes = floor` are exercised through the library specs
specs/unet.cnn, specs/unet_padded.cnn (blocks in specs/blocks/unet.cnn) and
specs/inception_lecture.cnn."""

import pytest
import torch
from torch import nn

import cnnspec
from cnnspec.backends.codegen import class_name_of, to_python
from conftest import SPECS

UNET = SPECS / "unet.cnn"
PADDED = SPECS / "unet_padded.cnn"
BLOCKS = SPECS / "blocks" / "unet.cnn"


def _line_of(path, text):
    """1-based number of the only line of `path` that contains `text`."""
    lines = [i for i, line in enumerate(path.read_text().splitlines(), 1) if text in line]
    assert len(lines) == 1, (text, lines)
    return lines[0]


# --- 1. The paper's U-Net (figure 1)

# Figure 1, stage by stage: (channels, side) of each map the figure draws.
FIGURE1 = {
    "enc1.conv1": (64, 570), "enc1.conv2": (64, 568),
    "enc2.pool": (64, 284), "enc2.convs.conv1": (128, 282), "enc2.convs.conv2": (128, 280),
    "enc3.pool": (128, 140), "enc3.convs.conv1": (256, 138), "enc3.convs.conv2": (256, 136),
    "enc4.pool": (256, 68), "enc4.convs.conv1": (512, 66), "enc4.convs.conv2": (512, 64),
    "bottom.pool": (512, 32), "bottom.convs.conv1": (1024, 30),
    "bottom.convs.conv2": (1024, 28),
    "dec4.upconv": (512, 56), "dec4.concat": (1024, 56),
    "dec4.convs.conv1": (512, 54), "dec4.convs.conv2": (512, 52),
    "dec3.upconv": (256, 104), "dec3.concat": (512, 104),
    "dec3.convs.conv1": (256, 102), "dec3.convs.conv2": (256, 100),
    "dec2.upconv": (128, 200), "dec2.concat": (256, 200),
    "dec2.convs.conv1": (128, 198), "dec2.convs.conv2": (128, 196),
    "dec1.upconv": (64, 392), "dec1.concat": (128, 392),
    "dec1.convs.conv1": (64, 390), "dec1.convs.conv2": (64, 388),
    "head": (2, 388),
}


def _double_conv_params(cin, c, bn=False):
    """Two 3x3 convs cin -> c -> c; with batchnorm: no conv bias, 2*c affine each."""
    extra = 2 * c if bn else c
    return 9 * cin * c + extra + 9 * c * c + extra


def _upconv_params(cin):
    """2x2 up-conv halving the channels, with bias."""
    return 4 * cin * (cin // 2) + cin // 2


def test_unet_figure1_shapes():
    spec = cnnspec.load(UNET)
    assert spec.input_shape == (1, 572, 572)
    assert spec.output_shape == (2, 388, 388)
    for name, (c, side) in FIGURE1.items():
        assert spec.facts(name).shape == (c, side, side), name
    # The grey arrows: each skip is the encoder's last map, centre-cropped to the
    # up-conv's size (64 -> 56, 136 -> 104, 280 -> 200, 568 -> 392).
    crops = [n for n in spec.graph.nodes if n.op.op == "crop"]
    assert [spec.table[n.id].shape for n in crops] == [
        (512, 56, 56), (256, 104, 104), (128, 200, 200), (64, 392, 392)]
    sources = [spec.graph.nodes[n.inputs[0]].name for n in crops]
    assert sources == ["enc4.convs.act2", "enc3.convs.act2", "enc2.convs.act2",
                       "enc1.act2"]
    # No padding anywhere: every 3x3 conv of the figure loses 2 pixels.
    convs = [n.op for n in spec.graph.nodes if n.op.op == "conv"]
    assert len(convs) == 2 * 9 + 1
    assert all(op.padding == (0, 0) for op in convs)
    # Section 2: "In total the network has 23 convolutional layers" (18 3x3, 4 up-convs,
    # the final 1x1).
    upconvs = [n.op for n in spec.graph.nodes if n.op.op == "conv_transpose"]
    assert [(op.kernel_size, op.stride) for op in upconvs] == [((2, 2), (2, 2))] * 4
    assert len(convs) + len(upconvs) == 23


def test_unet_params_from_figure1():
    spec = cnnspec.load(UNET)
    widths = [64, 128, 256, 512, 1024]
    contracting = sum(_double_conv_params(cin, c)
                      for cin, c in zip([1] + widths[:-1], widths))
    assert contracting == 37_568 + 221_440 + 885_248 + 3_539_968 + 14_157_824
    upconvs = sum(_upconv_params(c) for c in (1024, 512, 256, 128))
    assert upconvs == 2_097_664 + 524_544 + 131_200 + 32_832
    # after the concat the first conv reads 2c channels (c from the skip, c upsampled)
    expansive = sum(_double_conv_params(2 * c, c) for c in (512, 256, 128, 64))
    assert expansive == 7_078_912 + 1_769_984 + 442_624 + 110_720
    head = 64 * 2 + 2
    assert spec.params == contracting + upconvs + expansive + head == 31_030_658
    # The often-quoted 31,030,593 is 65 less: the same network with one output
    # channel (64*1 + 1 instead of 64*2 + 2 in the last conv).
    assert 31_030_658 - 31_030_593 == head - (64 * 1 + 1)
    assert cnnspec.load(UNET, classes=1).params == 31_030_593


def test_unet_valid_input_sizes():
    # Backwards from the bottom size b: input = 16*b + 124, output = 16*b - 60 (each
    # of the 9 double convs loses 4 pixels at its scale: 4*(1+2+4+8+16+8+4+2+1) = 184).
    # The expansive path needs 2*b - 4 >= 1 and 4*b - 12 >= 1, so b >= 4.
    valid = [n for n in range(150, 240) if _loads(n)]
    assert valid == [16 * b + 124 for b in (4, 5, 6, 7)] == [188, 204, 220, 236]
    assert 572 == 16 * 28 + 124
    # Any other size leaves a row unseen at some pool: strict sizes refuse it there.
    with pytest.raises(cnnspec.SpecError) as caught:
        cnnspec.load(UNET, size=190)              # 186 -> 93, then 93 - 4 = 89 is odd
    assert caught.value.code == "E0301"
    assert caught.value.diagnostics[0].span.line == _line_of(BLOCKS, "maxpool 2")


def _loads(size):
    try:
        cnnspec.load(UNET, size=size)
    except cnnspec.SpecError:
        return False
    return True


class _PaperUNet(nn.Module):
    """Figure 1 in plain PyTorch: unpadded 3x3 conv + ReLU pairs, 2x2 max pool, 2x2
    up-conv halving the channels, the skip centre-cropped and concatenated before the
    upsampled map, 1x1 conv to the classes."""

    def __init__(self, channels=1, classes=2):
        super().__init__()
        double = lambda cin, c: nn.Sequential(nn.Conv2d(cin, c, 3), nn.ReLU(),
                                              nn.Conv2d(c, c, 3), nn.ReLU())
        widths = [64, 128, 256, 512, 1024]
        self.encoder = nn.ModuleList(double(cin, c)
                                     for cin, c in zip([channels] + widths[:-1], widths))
        self.decoder = nn.ModuleList(
            nn.ModuleList([nn.ConvTranspose2d(2 * c, c, 2, stride=2), double(2 * c, c)])
            for c in (512, 256, 128, 64))
        self.head = nn.Conv2d(64, classes, 1)

    def forward(self, x):
        skips = []
        for i, stage in enumerate(self.encoder):
            x = stage(x if i == 0 else nn.functional.max_pool2d(x, 2))
            skips.append(x)
        for (up, double), skip in zip(self.decoder, reversed(skips[:-1])):
            x = up(x)
            h, w = x.shape[-2:]
            top, left = (skip.shape[-2] - h) // 2, (skip.shape[-1] - w) // 2
            x = double(torch.cat([skip[..., top:top + h, left:left + w], x], 1))
        return self.head(x)


def test_unet_forward_at_smallest_input():
    """572 is too slow for the suite: 188, the smallest valid input (b = 4)."""
    spec = cnnspec.load(UNET, size=188)
    assert spec.output_shape == (2, 188 - 184, 188 - 184)
    assert spec.params == cnnspec.load(UNET).params       # sizes do not change weights
    torch.manual_seed(0)
    model = cnnspec.build(spec).eval()
    reference = _PaperUNet().eval()
    # Same layers in the same order: copy the weights over, shape by shape.
    ours, theirs = list(model.parameters()), list(reference.parameters())
    assert [p.shape for p in ours] == [p.shape for p in theirs]
    with torch.no_grad():
        for mine, other in zip(ours, theirs):
            other.copy_(mine)
        x = torch.randn(1, 1, 188, 188)
        y = model(x)
        expected = reference(x)
    assert tuple(y.shape) == (1,) + spec.output_shape
    torch.testing.assert_close(y, expected, rtol=1e-4, atol=1e-5)
    # The generated file crops the same way (its CenterCrop helper).
    source = to_python(spec)
    assert "CenterCrop(8)" in source          # 188: every up-conv gives 2 * 4 = 8
    namespace: dict = {}
    exec(compile(source, "unet.py", "exec"), namespace)
    generated = namespace[class_name_of(source)]().eval()
    generated.load_state_dict(model.state_dict(), strict=True)
    with torch.no_grad():
        torch.testing.assert_close(generated(x), y)


# --- 2. The padded U-Net of common implementations

def test_unet_padded_keeps_the_size_and_params():
    spec = cnnspec.load(PADDED)
    assert spec.input_shape == (3, 256, 256)
    assert spec.output_shape == (2, 256, 256)
    for name, c, side in [("inc.conv2", 64, 256), ("down4.convs.conv2", 1024, 16),
                          ("up1.upconv", 512, 32), ("up1.concat", 1024, 32),
                          ("up4.concat", 128, 256), ("outc", 2, 256)]:
        assert spec.facts(name).shape == (c, side, side), name
    assert not any(n.op.op == "crop" for n in spec.graph.nodes)
    widths = [64, 128, 256, 512, 1024]
    expected = (sum(_double_conv_params(cin, c, bn=True)
                    for cin, c in zip([3] + widths[:-1], widths))
                + sum(_upconv_params(c) for c in (1024, 512, 256, 128))
                + sum(_double_conv_params(2 * c, c, bn=True) for c in (512, 256, 128, 64))
                + 64 * 2 + 2)
    assert spec.params == expected == 31_037_698
    # Without batchnorm (the conv biases come back), on 1 channel: padding changes no
    # weight count, so this is the paper's network; with 1 class, the quoted 31,030,593.
    plain = cnnspec.load(PADDED, bn=False, channels=1)
    assert plain.params == cnnspec.load(UNET).params == 31_030_658
    assert plain.with_params(classes=1).params == 31_030_593
    # Bilinear upsampling: a 1x1 conv halving the channels instead of the 2x2 up-conv.
    bilinear = cnnspec.load(PADDED, bilinear=True, size=64)
    assert bilinear.output_shape == (2, 64, 64)
    assert bilinear.params == expected - sum(_upconv_params(c) - (c * c // 2 + c // 2)
                                             for c in (1024, 512, 256, 128)) == 28_948_738
    assert any(n.op.op == "upsample" and n.op.mode == "bilinear"
               for n in bilinear.graph.nodes)


def test_unet_padded_forward_and_generated_code():
    spec = cnnspec.load(PADDED, size=64)
    assert spec.output_shape == (2, 64, 64)
    torch.manual_seed(0)
    model = cnnspec.build(spec)
    # Non-trivial batchnorm statistics, so eval mode really uses them.
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    model.eval()
    source = to_python(spec)
    namespace: dict = {}
    exec(compile(source, "unet_padded.py", "exec"), namespace)
    generated = namespace[class_name_of(source)]()
    generated.load_state_dict(model.state_dict(), strict=True)
    generated.eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        y = model(x)
        z = generated(x)
    assert tuple(y.shape) == (1, 2, 64, 64)
    torch.testing.assert_close(z, y)


# --- 3. Sizes that the four pools do not divide

def test_unet_padded_floor_reports_the_join():
    # 100 -> 50 -> 25 -> floor(25 / 2) = 12 (12.5 floored) -> 6; back up: 12, then 24,
    # which meets down2's 25x25 skip at up2's concat.
    assert 100 / 2 / 2 / 2 == 12.5
    with pytest.raises(cnnspec.SpecError) as caught:
        cnnspec.load(PADDED, size=100)
    error = caught.value
    assert error.code == "E0303"
    text = error.render()
    assert "256x25x25" in text and "256x24x24" in text      # both branch shapes
    assert "12.5" in text and "down3.pool" in text          # the pooling's arithmetic
    span = error.diagnostics[0].span
    assert span.file.endswith("blocks/unet.cnn")
    assert span.line == _line_of(BLOCKS, "concat { skip; identity }")


def test_unet_padded_strict_reports_the_pool():
    with pytest.raises(cnnspec.SpecError) as caught:
        cnnspec.load(PADDED, size=100, sizes="strict")
    error = caught.value
    assert error.code == "E0301"
    assert "down3.pool" in error.render() and "12.5" in error.render()
    span = error.diagnostics[0].span
    assert span.file.endswith("blocks/unet.cnn")
    assert span.line == _line_of(BLOCKS, "maxpool 2")
    # Multiples of 16 are fine either way.
    assert cnnspec.load(PADDED, size=96, sizes="strict").output_shape == (2, 96, 96)


# --- 4. The lecture's Inception module (CS231n, lecture 9)

def test_inception_lecture_macs_and_the_358m_slide():
    spec = cnnspec.load(SPECS / "inception_lecture.cnn")
    assert spec.output_shape == (128 + 192 + 96 + 64, 28, 28) == (480, 28, 28)
    # The slide's terms: 28x28 positions x out x k x k x in.
    terms = {"1x1 128": 28 * 28 * 128 * 1 * 1 * 256,
             "1x1 64 (3x3 reduce)": 28 * 28 * 64 * 1 * 1 * 256,
             "3x3 192": 28 * 28 * 192 * 3 * 3 * 64,
             "1x1 64 (5x5 reduce)": 28 * 28 * 64 * 1 * 1 * 256,
             "5x5 96": 28 * 28 * 96 * 5 * 5 * 64,
             "1x1 64 (pool proj)": 28 * 28 * 64 * 1 * 1 * 256}
    total = sum(terms.values())
    assert spec.macs == total == 271_351_808
    # The slide's "Total: 358M ops" is the true total plus the 3x3 term once more,
    # and no other term: 271,351,808 + 86,704,128 = 358,055,936.
    slide = 358
    assert round(total / 1e6) == 271 != slide
    doubled = [name for name, macs in terms.items() if round((total + macs) / 1e6) == slide]
    assert doubled == ["3x3 192"]
    assert total + terms["3x3 192"] == 358_055_936
    # weights + biases
    assert spec.params == (256 * 128 + 128 + 256 * 64 + 64 + 9 * 64 * 192 + 192
                           + 256 * 64 + 64 + 25 * 64 * 96 + 96 + 256 * 64 + 64)
