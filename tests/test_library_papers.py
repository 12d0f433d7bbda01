"""Library specs without a torchvision counterpart, checked against their papers.

Every expected number comes from outside cnnspec: a paper's table, arithmetic written
out here, or a plain-PyTorch reference model written in this file from the paper's
description (parameters: `sum(p.numel())`; MACs: `torch.utils.flop_counter`, which
counts two flops per multiply-add of convolutions and matrix products, on the meta
device). Where a published number disagrees with the arithmetic, the comment says so
and the test asserts the arithmetic (and the published number only where they agree)."""

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import cnnspec
from conftest import SPECS

PAPER_SPECS = ["inception_bottleneck", "zfnet", "alexnet_two_gpu", "nin", "googlenet_paper",
               "preact_resnet", "wrn_28_10", "resnet_stochastic_depth", "fractalnet",
               "resnext_paths_block", "resnext_grouped_block", "resnet20_cifar"]


# --- Plain-PyTorch references, written from the papers (not from the specs). ReLU, LRN,
# dropout and drop-path carry no parameters and no multiply-adds, so they are left out.

def _torch_counts(make, shape):
    """(parameters, eval-mode MACs of one image) of the module `make()` builds."""
    with torch.device("meta"):
        model = make().eval()
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            model(torch.empty((1,) + shape))
    flops = counter.get_total_flops()
    assert flops % 2 == 0
    return sum(p.numel() for p in model.parameters()), flops // 2


def _conv(cin, cout, k=1, s=1, p=0, bias=True, groups=1):
    return nn.Conv2d(cin, cout, k, stride=s, padding=p, bias=bias, groups=groups)


class _Inception(nn.Module):
    """Szegedy et al. (2014), figure 2(b): four branches concatenated."""

    def __init__(self, cin, n1, r3, n3, r5, n5, pool_proj):
        super().__init__()
        self.b1 = _conv(cin, n1)
        self.b2 = nn.Sequential(_conv(cin, r3), _conv(r3, n3, 3, p=1))
        self.b3 = nn.Sequential(_conv(cin, r5), _conv(r5, n5, 5, p=2))
        self.b4 = nn.Sequential(nn.MaxPool2d(3, 1, 1), _conv(cin, pool_proj))

    def forward(self, x):
        return torch.cat([self.b1(x), self.b2(x), self.b3(x), self.b4(x)], 1)


class _GoogLeNet(nn.Module):
    """Table 1 (the rows of INCEPTION below), plus section 5's two auxiliary heads,
    which hold parameters but do not run in eval mode."""

    def __init__(self):
        super().__init__()
        pool = lambda: nn.MaxPool2d(3, 2, ceil_mode=True)
        rows = {name: _Inception(*INCEPTION[name]) for name in INCEPTION}
        self.body = nn.Sequential(
            _conv(3, 64, 7, 2, 3), pool(), _conv(64, 64), _conv(64, 192, 3, p=1), pool(),
            rows["inception3a"], rows["inception3b"], pool(),
            *[rows[f"inception4{x}"] for x in "abcde"], pool(),
            rows["inception5a"], rows["inception5b"], nn.AvgPool2d(7, 1), nn.Flatten(),
            nn.Linear(1024, 1000))
        # aux: 5x5/3 average pool, 1x1 conv of 128, fc 1024, fc 1000 (on 4a and 4d)
        self.aux = nn.ModuleList(nn.Sequential(_conv(cin, 128), nn.Linear(128 * 4 * 4, 1024),
                                               nn.Linear(1024, 1000)) for cin in (512, 528))

    def forward(self, x):
        return self.body(x)


class _PreactBottleneck(nn.Module):
    """He et al. (2016b), figure 4(e) with the bottleneck of He et al. (2015): BN-ReLU,
    1x1 to c, BN-ReLU, 3x3 (stride), BN-ReLU, 1x1 to 4c; a 1x1 projection shortcut
    after the first BN-ReLU where the shape changes."""

    def __init__(self, cin, c, stride):
        super().__init__()
        self.bn1, self.bn2, self.bn3 = nn.BatchNorm2d(cin), nn.BatchNorm2d(c), nn.BatchNorm2d(c)
        self.conv1 = _conv(cin, c, bias=False)
        self.conv2 = _conv(c, c, 3, stride, 1, bias=False)
        self.conv3 = _conv(c, 4 * c, bias=False)
        self.proj = (_conv(cin, 4 * c, s=stride, bias=False)
                     if stride != 1 or cin != 4 * c else None)

    def forward(self, x):
        out = torch.relu(self.bn1(x))
        shortcut = self.proj(out) if self.proj is not None else x
        out = self.conv2(torch.relu(self.bn2(self.conv1(out))))
        return self.conv3(torch.relu(self.bn3(out))) + shortcut


class _PreactBasic(nn.Module):
    """Zagoruyko & Komodakis (2016), B(3,3): BN-ReLU, 3x3 (stride), BN-ReLU, 3x3."""

    def __init__(self, cin, c, stride):
        super().__init__()
        self.bn1, self.bn2 = nn.BatchNorm2d(cin), nn.BatchNorm2d(c)
        self.conv1 = _conv(cin, c, 3, stride, 1, bias=False)
        self.conv2 = _conv(c, c, 3, 1, 1, bias=False)
        self.proj = _conv(cin, c, s=stride, bias=False) if stride != 1 or cin != c else None

    def forward(self, x):
        out = torch.relu(self.bn1(x))
        shortcut = self.proj(out) if self.proj is not None else x
        return self.conv2(torch.relu(self.bn2(self.conv1(out)))) + shortcut


class _OptionABasic(nn.Module):
    """He et al. (2015), CIFAR basic block with the option-A shortcut (subsample, then
    zero channels): no parameters on the shortcut."""

    def __init__(self, cin, c, stride):
        super().__init__()
        self.body = nn.Sequential(_conv(cin, c, 3, stride, 1, bias=False), nn.BatchNorm2d(c),
                                  nn.ReLU(), _conv(c, c, 3, 1, 1, bias=False),
                                  nn.BatchNorm2d(c))
        self.stride, self.extra = stride, c - cin

    def forward(self, x):
        shortcut = nn.functional.pad(x[:, :, ::self.stride, ::self.stride],
                                     (0, 0, 0, 0, 0, self.extra))
        return torch.relu(self.body(x) + shortcut)


def _stages(block, cin, widths, units, expansion=1):
    layers = []
    for i, c in enumerate(widths):
        for u in range(units):
            layers.append(block(cin, c, 2 if i > 0 and u == 0 else 1))
            cin = c * expansion
    return layers


class _Fractal(nn.Module):
    """Larsson et al. (2017), eq. 1-2: f_1 = unit; f_C(x) = mean(f_{C-1}(f_{C-1}(x)),
    unit(x)), the unit a 3x3 conv (with bias) and batchnorm."""

    def __init__(self, cin, c, columns):
        super().__init__()
        self.unit = nn.Sequential(_conv(cin, c, 3, p=1), nn.BatchNorm2d(c))
        self.deep = (nn.Sequential(_Fractal(cin, c, columns - 1), _Fractal(c, c, columns - 1))
                     if columns > 1 else None)

    def forward(self, x):
        return self.unit(x) if self.deep is None else (self.unit(x) + self.deep(x)) / 2


class _Sum(nn.Module):
    def __init__(self, *paths, identity=False):
        super().__init__()
        self.paths, self.identity = nn.ModuleList(paths), identity

    def forward(self, x):
        return sum(p(x) for p in self.paths) + (x if self.identity else 0)


def _mlpconv(cin, c1, c2, c3, k, p):
    return [_conv(cin, c1, k, p=p), _conv(c1, c2), _conv(c2, c3)]


def _alexnet_like(conv_layers):
    """Krizhevsky et al. (2012) / Zeiler & Fergus (2013): five convs, three fcs."""
    return nn.Sequential(*conv_layers, nn.Flatten(), nn.Linear(256 * 6 * 6, 4096),
                         nn.Linear(4096, 4096), nn.Linear(4096, 1000))


REFERENCES = {
    # (builder, input shape)
    "inception_bottleneck": (lambda: _Inception(256, 128, 128, 192, 32, 96, 64), (256, 28, 28)),
    # ZFNet, figure 3: 7x7/2 conv 96 (padding 1), 3x3/2 pools, 5x5/2 conv 256
    "zfnet": (lambda: _alexnet_like([
        _conv(3, 96, 7, 2, 1), nn.MaxPool2d(3, 2, ceil_mode=True), _conv(96, 256, 5, 2),
        nn.MaxPool2d(3, 2, ceil_mode=True), _conv(256, 384, 3, p=1), _conv(384, 384, 3, p=1),
        _conv(384, 256, 3, p=1), nn.MaxPool2d(3, 2)]), (3, 224, 224)),
    # AlexNet, figure 2: conv2, conv4 and conv5 only see their own GPU's half (groups=2)
    "alexnet_two_gpu": (lambda: _alexnet_like([
        _conv(3, 96, 11, 4), nn.MaxPool2d(3, 2), _conv(96, 256, 5, p=2, groups=2),
        nn.MaxPool2d(3, 2), _conv(256, 384, 3, p=1), _conv(384, 384, 3, p=1, groups=2),
        _conv(384, 256, 3, p=1, groups=2), nn.MaxPool2d(3, 2)]), (3, 227, 227)),
    # NIN for CIFAR-10: three mlpconv layers (5x5, 5x5, 3x3), global average pooling
    "nin": (lambda: nn.Sequential(
        *_mlpconv(3, 192, 160, 96, 5, 2), nn.MaxPool2d(3, 2, ceil_mode=True),
        *_mlpconv(96, 192, 192, 192, 5, 2), nn.AvgPool2d(3, 2, ceil_mode=True),
        *_mlpconv(192, 192, 192, 10, 3, 1), nn.AdaptiveAvgPool2d(1)), (3, 32, 32)),
    "googlenet_paper": (_GoogLeNet, (3, 224, 224)),
    # ResNet-164: 3x3 stem of 16, 3 x 18 bottlenecks of 16/32/64 (x4), BN-ReLU, pool, fc
    "preact_resnet": (lambda: nn.Sequential(
        _conv(3, 16, 3, p=1, bias=False),
        *_stages(_PreactBottleneck, 16, [16, 32, 64], 18, expansion=4),
        nn.BatchNorm2d(256), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(256, 10)),
        (3, 32, 32)),
    # WRN-28-10, table 1: stem 16, 3 groups of N = (28 - 4) / 6 = 4 blocks of 160/320/640
    "wrn_28_10": (lambda: nn.Sequential(
        _conv(3, 16, 3, p=1, bias=False), *_stages(_PreactBasic, 16, [160, 320, 640], 4),
        nn.BatchNorm2d(640), nn.AvgPool2d(8), nn.Flatten(), nn.Linear(640, 10)), (3, 32, 32)),
    # ResNet-110 (6n + 2, n = 18): stem conv-BN, 3 x 18 basic blocks of 16/32/64
    "resnet_stochastic_depth": (lambda: nn.Sequential(
        _conv(3, 16, 3, p=1, bias=False), nn.BatchNorm2d(16),
        *_stages(_OptionABasic, 16, [16, 32, 64], 18),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10)), (3, 32, 32)),
    # ResNet-20 (6n + 2, n = 3), He et al. (2015) section 4.2: as ResNet-110, 3 blocks a stage
    "resnet20_cifar": (lambda: nn.Sequential(
        _conv(3, 16, 3, p=1, bias=False), nn.BatchNorm2d(16),
        *_stages(_OptionABasic, 16, [16, 32, 64], 3),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10)), (3, 32, 32)),
    # FractalNet, CIFAR: 5 blocks of C = 4 columns, widths 64..512, each then 2x2 pool
    "fractalnet": (lambda: nn.Sequential(
        *[m for cin, c in zip([3, 64, 128, 256, 512], [64, 128, 256, 512, 512])
          for m in (_Fractal(cin, c, 4), nn.MaxPool2d(2))],
        nn.Flatten(), nn.Linear(512, 10)), (3, 32, 32)),
    # ResNeXt figure 3(a): 32 paths 256 -> 4 -> 4 -> 256, summed with the identity
    "resnext_paths_block": (lambda: _Sum(*[nn.Sequential(
        _conv(256, 4, bias=False), _conv(4, 4, 3, p=1, bias=False), _conv(4, 256, bias=False))
        for _ in range(32)], identity=True), (256, 56, 56)),
    # figure 3(c): 256 -> 128 -> 128 (3x3, 32 groups) -> 256
    "resnext_grouped_block": (lambda: _Sum(nn.Sequential(
        _conv(256, 128, bias=False), _conv(128, 128, 3, p=1, groups=32, bias=False),
        _conv(128, 256, bias=False)), identity=True), (256, 56, 56)),
}


@pytest.mark.parametrize("name", PAPER_SPECS)
def test_paper_spec_counts_equal_a_plain_torch_reference(name):
    make, shape = REFERENCES[name]
    params, macs = _torch_counts(make, shape)
    spec = cnnspec.load(SPECS / f"{name}.cnn")
    assert spec.input_shape == shape
    assert (spec.params, spec.macs) == (params, macs)


def _weights(spec, prefix):
    """Weights (biases excluded) and MACs of the conv/linear layers under `prefix`."""
    weights = macs = 0
    for node in spec.graph.nodes:
        if node.op.op in ("conv", "linear") and (node.name == prefix or
                                                  node.name.startswith(prefix + ".")):
            facts = spec.facts(node.name)
            bias = facts.shape[0] if node.op.bias else 0
            weights += facts.params - bias
            macs += facts.macs
    return weights, macs


# --- 1. Inception module with reductions (Szegedy et al. 2014, figure 2b, table 1 (3b))

def test_inception_with_reductions_is_far_cheaper_than_naive():
    naive = cnnspec.load(SPECS / "inception_naive.cnn")
    reduced = cnnspec.load(SPECS / "inception_bottleneck.cnn")
    # 28*28 * 256 * (1*1*128 + 3*3*192 + 5*5*96): the 3 convs straight on the input
    assert naive.macs == 784 * 256 * (128 + 9 * 192 + 25 * 96) == 854_196_224
    assert reduced.output_shape == (480, 28, 28)   # 128 + 192 + 96 + 64
    # 784 * (256*128 [1x1] + 256*128 [3x3 reduce] + 9*128*192 [3x3]
    #        + 256*32 [5x5 reduce] + 25*32*96 [5x5] + 256*64 [pool proj])
    # = 784 * (32,768 + 32,768 + 221,184 + 8,192 + 76,800 + 16,384) = 784 * 388,096
    assert reduced.macs == 784 * 388_096 == 304_267_264
    assert reduced.macs < 0.36 * naive.macs       # 2.8x fewer; table 1's 3b: "304M"
    # weights 388,096 + biases 128 + 128 + 192 + 32 + 96 + 64 = 640
    assert reduced.params == 388_096 + 640


# --- 2. ZFNet (Zeiler & Fergus 2013, figure 3)

def test_zfnet_layer_shapes_match_figure_3():
    spec = cnnspec.load(SPECS / "zfnet.cnn")
    figure3 = {"conv1": (96, 110, 110), "pool1": (96, 55, 55), "conv2": (256, 26, 26),
               "pool2": (256, 13, 13), "conv3": (384, 13, 13), "conv4": (384, 13, 13),
               "conv5": (256, 13, 13), "pool5": (256, 6, 6), "fc6": (4096,),
               "fc7": (4096,), "fc8": (1000,)}
    for name, shape in figure3.items():
        assert spec.facts(name).shape == shape, name
    # The paper gives no parameter count; the arithmetic (weights + biases):
    # conv1 3*49*96+96 = 14,208; conv2 96*25*256+256 = 614,656; conv3 885,120;
    # conv4 1,327,488; conv5 884,992; fc6 37,752,832; fc7 16,781,312; fc8 4,097,000.
    assert spec.facts("conv1").params == 14_208
    assert spec.facts("conv2").params == 614_656
    assert spec.params == (14_208 + 614_656 + 885_120 + 1_327_488 + 884_992
                           + 37_752_832 + 16_781_312 + 4_097_000) == 62_357_608


# --- 3. AlexNet on two GPUs (Krizhevsky et al. 2012, figure 2, section 3.2)

def test_alexnet_two_gpu_split_saves_parameters():
    split = cnnspec.load(SPECS / "alexnet_two_gpu.cnn")
    single = cnnspec.load(SPECS / "alexnet.cnn")
    terms = {"conv1": 3 * 11 * 11 * 96 + 96,         # 34,944
             "conv2": 48 * 5 * 5 * 256 + 256,        # 307,456 (groups=2)
             "conv3": 256 * 3 * 3 * 384 + 384,       # 885,120 (across GPUs)
             "conv4": 192 * 3 * 3 * 384 + 384,       # 663,936 (groups=2)
             "conv5": 192 * 3 * 3 * 256 + 256,       # 442,624 (groups=2)
             "fc6": 9216 * 4096 + 4096,              # 37,752,832
             "fc7": 4096 * 4096 + 4096,              # 16,781,312
             "fc8": 4096 * 1000 + 1000}              # 4,097,000
    for name, params in terms.items():
        assert split.facts(name).params == params, name
    assert split.params == sum(terms.values()) == 60_965_224   # "60 million parameters"
    # single tower: the same layers with conv2, conv4, conv5 seeing all input channels
    assert single.params == (sum(terms.values()) + 96 * 25 * 256 // 2
                             + 384 * 9 * 384 // 2 + 384 * 9 * 256 // 2) == 62_378_344
    # half of conv2, conv4 and conv5's weights: 307,200 + 663,552 + 442,368
    assert single.params - split.params == 1_413_120
    for name in ("conv1", "pool2", "conv5", "pool5", "fc8"):
        assert split.facts(name).shape == single.facts(name).shape


# --- 4. Network in Network, CIFAR-10 (Lin, Chen, Yan 2013, section 3.2 / 4.2)

def test_nin_cifar10_has_no_fully_connected_layer():
    spec = cnnspec.load(SPECS / "nin.cnn")
    assert not any(n.op.op == "linear" for n in spec.graph.nodes)
    assert spec.facts("mlpconv3.4").shape == (10, 8, 8)     # one map per class
    assert spec.output_shape == (10,)
    # No count is published in the paper; the released model's arithmetic:
    # mlpconv1 (3*25*192+192) + (192*160+160) + (160*96+96) = 14,592 + 30,880 + 15,456
    # mlpconv2 (96*25*192+192) + 2*(192*192+192) = 460,992 + 74,112
    # mlpconv3 (192*9*192+192) + (192*192+192) + (192*10+10) = 331,968 + 37,056 + 1,930
    assert spec.params == (14_592 + 30_880 + 15_456 + 460_992 + 74_112
                           + 331_968 + 37_056 + 1_930) == 966_986


# --- 5. GoogLeNet as published (Szegedy et al. 2014, table 1)

# Table 1's inception rows: (input depth, #1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5,
# pool proj); the input depth is the previous row's "depth" column (output size).
INCEPTION = {"inception3a": (192, 64, 96, 128, 16, 32, 32),
             "inception3b": (256, 128, 128, 192, 32, 96, 64),
             "inception4a": (480, 192, 96, 208, 16, 48, 64),
             "inception4b": (512, 160, 112, 224, 24, 64, 64),
             "inception4c": (512, 128, 128, 256, 24, 64, 64),
             "inception4d": (512, 112, 144, 288, 32, 64, 64),
             "inception4e": (528, 256, 160, 320, 32, 128, 128),
             "inception5a": (832, 256, 160, 320, 32, 128, 128),
             "inception5b": (832, 384, 192, 384, 48, 128, 128)}
SIDE = {"3": 28, "4": 14, "5": 7}    # table 1's output sizes 28x28, 14x14, 7x7

# Table 1's last two columns: params in K (units of 1024 weights, biases not counted),
# ops in M (1e6 multiply-adds).
TABLE1 = {"conv1": (2.7, 34), "conv2+conv3": (112, 360), "inception3a": (159, 128),
          "inception3b": (380, 304), "inception4a": (364, 73), "inception4b": (437, 88),
          "inception4c": (463, 100), "inception4d": (580, 119), "inception4e": (840, 170),
          "inception5a": (1072, 54), "inception5b": (1388, 71), "fc": (1000, 1)}


def _table1_arithmetic(row):
    """(weights, biases, MACs) of one row of table 1, from the row's layer sizes."""
    if row == "conv1":            # 7x7/2, 3 -> 64, output 112x112
        weights = 7 * 7 * 3 * 64                            # 9,408
        return weights, 64, 112 * 112 * weights
    if row == "conv2+conv3":      # 3x3 reduce 64 (1x1, 64 -> 64), 3x3 64 -> 192, 56x56
        weights = 64 * 64 + 3 * 3 * 64 * 192                # 4,096 + 110,592
        return weights, 64 + 192, 56 * 56 * weights
    if row == "fc":               # linear 1024 -> 1000, on 1x1
        return 1024 * 1000, 1000, 1024 * 1000
    cin, n1, r3, n3, r5, n5, proj = INCEPTION[row]
    weights = (cin * n1                                     # 1x1
               + cin * r3 + 3 * 3 * r3 * n3                 # 3x3 reduce, 3x3
               + cin * r5 + 5 * 5 * r5 * n5                 # 5x5 reduce, 5x5
               + cin * proj)                                # pool proj (1x1)
    side = SIDE[row[len("inception")]]
    return weights, n1 + r3 + n3 + r5 + n5 + proj, side * side * weights


# Rows whose printed figures disagree with the arithmetic of the layer sizes printed in
# the same row (the arithmetic is asserted; the printed figure is not):
#   conv1: 7*7*3*64 = 9,408 weights = 9.2K (printed 2.7K); 112*112*9,408 = 118.0M ops
#          (printed 34M);
#   4c:    512*128 + 512*128 + 9*128*256 + 512*24 + 25*24*64 + 512*64 = 509,440 = 497.5K
#          (printed 463K; the ops, 14*14*509,440 = 99.8M, agree);
#   5a:    832*256 + 832*160 + 9*160*320 + 832*32 + 25*32*128 + 832*128 = 1,042,432
#          = 1018K (printed 1072K); 7*7*1,042,432 = 51.1M ops (printed 54M).
# Every other row agrees within 2% (params; 4d is 590.5K, printed 580K) and 0.75M (ops).
TABLE1_DISAGREES = {"conv1": "both", "inception4c": "params", "inception5a": "both"}


def test_googlenet_paper_rows_equal_table_1_arithmetic():
    spec = cnnspec.load(SPECS / "googlenet_paper.cnn")
    for row, (k_params, m_ops) in TABLE1.items():
        weights = macs = 0
        for prefix in row.split("+"):
            w, m = _weights(spec, prefix)
            weights, macs = weights + w, macs + m
        expected_weights, _, expected_macs = _table1_arithmetic(row)
        assert (weights, macs) == (expected_weights, expected_macs), row
        bad = TABLE1_DISAGREES.get(row, "")
        if bad not in ("params", "both"):
            assert expected_weights / 1024 == pytest.approx(k_params, rel=0.02), row
        else:
            assert expected_weights / 1024 != pytest.approx(k_params, rel=0.05), row
        if bad != "both":
            assert expected_macs / 1e6 == pytest.approx(m_ops, abs=0.75), row
        else:
            assert expected_macs / 1e6 != pytest.approx(m_ops, abs=2), row
    # Two rows written out in full:
    # 3a: 192*64 + 192*96 + 9*96*128 + 192*16 + 25*16*32 + 192*32
    #     = 12,288 + 18,432 + 110,592 + 3,072 + 12,800 + 6,144 = 163,328 (159.5K);
    #     28*28*163,328 = 128,049,152 (128M)
    assert _weights(spec, "inception3a") == (163_328, 128_049_152)
    assert _weights(spec, "conv1") == (9_408, 118_013_952)    # 112*112*9,408
    assert spec.facts("inception3a.branch3.1.conv").params == 25 * 16 * 32 + 32  # true 5x5


def test_googlenet_paper_totals():
    spec = cnnspec.load(SPECS / "googlenet_paper.cnn")
    rows = {row: _table1_arithmetic(row) for row in TABLE1}
    # Every conv and linear of the eval-mode network is in exactly one row of table 1.
    assert spec.macs == sum(m for _, _, m in rows.values()) == 1_582_671_872
    # The printed ops column sums to 1,502M ("1.5 billion multiply-adds", section 5); the
    # arithmetic's 1,582.7M differ by conv1's +84M and 5a's -2.9M.
    assert sum(ops for _, ops in TABLE1.values()) == 1502
    # The printed params column sums to 6,797.7K; the arithmetic's weights are
    # 6,990,272 = 6,826.4K (0.4% more: 4c's and 4d's rows, offset by conv1's and 5a's).
    total_weights = sum(w for w, _, _ in rows.values())
    assert total_weights == 6_990_272
    assert total_weights / 1024 == pytest.approx(sum(p for p, _ in TABLE1.values()),
                                                 rel=0.005)
    # With biases (one per output channel): 6,990,272 + 8,280
    assert spec.inference_params == total_weights + sum(b for _, b, _ in rows.values()) \
        == 6_998_552
    # Section 5's auxiliary heads, on 4a's 512 and 4d's 528 channels: 1x1 conv of 128,
    # fc 128*4*4 -> 1024, fc 1024 -> 1000 (biases included); training only.
    aux = sum(cin * 128 + 128 + 2048 * 1024 + 1024 + 1024 * 1000 + 1000 for cin in (512, 528))
    assert spec.params == spec.inference_params + aux
    assert [o.weight for o in spec.graph.outputs[1:]] == [0.3, 0.3]


# --- 6. Pre-activation ResNet-164 (He et al. 2016, "Identity Mappings", table 2)

def test_preact_resnet164_cifar_params():
    spec = cnnspec.load(SPECS / "preact_resnet.cnn")
    params, macs = _torch_counts(*REFERENCES["preact_resnet"])
    assert (spec.params, spec.macs) == (params, macs)
    assert round(spec.params / 1e6, 1) == 1.7           # table 2: "1.7M"
    convs = sum(n.op.op == "conv" for n in spec.graph.nodes)
    assert convs == 1 + 3 * 18 * 3 + 3                  # 163 + fc = 164 layers, 3 projections
    assert spec.facts("layer3.17.conv3").shape == (256, 8, 8)
    # One unit written out: layer1.1 (64 in, c = 16): BN 2*64, 1x1 64*16, BN 2*16,
    # 3x3 9*16*16, BN 2*16, 1x1 16*64; no projection.
    unit = sum(spec.facts(n.name).params for n in spec.graph.nodes
               if n.name.startswith("layer1.1."))
    assert unit == 2 * 64 + 64 * 16 + 2 * 16 + 9 * 16 * 16 + 2 * 16 + 16 * 64 == 4_544


# --- 7. Wide ResNet 28-10 (Zagoruyko & Komodakis 2016, table 5: 36.5M)

def test_wrn_28_10_params():
    spec = cnnspec.load(SPECS / "wrn_28_10.cnn")
    params, macs = _torch_counts(*REFERENCES["wrn_28_10"])
    assert (spec.params, spec.macs) == (params, macs)
    assert round(spec.params / 1e6, 1) == 36.5           # table 5: "36.5M"
    # Written out: stem 3*9*16; group g (width w, input cin): first block BN 2*cin,
    # 3x3 9*cin*w, BN 2*w, 3x3 9*w*w, projection cin*w; 3 more blocks of
    # 2*w + 9*w*w + 2*w + 9*w*w; final BN 2*640; fc 640*10 + 10.
    groups = [(16, 160), (160, 320), (320, 640)]
    arithmetic = (3 * 9 * 16 + 2 * 640 + 640 * 10 + 10
                  + sum(2 * cin + 9 * cin * w + 2 * w + 9 * w * w + cin * w
                        + 3 * (4 * w + 18 * w * w) for cin, w in groups))
    assert spec.params == arithmetic == params
    assert spec.facts("group3.3.conv2").shape == (640, 8, 8)
    # Dropout between the convs adds no parameters: still the reference's count.
    assert cnnspec.load(SPECS / "wrn_28_10.cnn", dropout=0.3).params == params


# --- 8. Stochastic depth ResNet-110 (Huang et al. 2016, section 3 eq. 4, section 4)

def test_stochastic_depth_linear_decay():
    spec = cnnspec.load(SPECS / "resnet_stochastic_depth.cnn")
    drops = [n.op.p for n in spec.graph.nodes if n.op.op == "drop_path"]
    assert len(drops) == 54
    for l, p in enumerate(drops, start=1):       # 1 - p_l = l / L * (1 - p_L)
        assert p == pytest.approx(l / 54 * 0.5)
    assert drops[-1] == pytest.approx(0.5)
    # Option-A ResNet-110 (parameter-free shortcuts), against the plain-torch reference;
    # written out: stem 3*9*16 + BN 2*16; per stage of width w (input cin): first block
    # 9*cin*w + 9*w*w + 2 BNs of 2*w, 17 more of 18*w*w + 4*w; fc 64*10 + 10.
    params, macs = _torch_counts(*REFERENCES["resnet_stochastic_depth"])
    stages = [(16, 16), (16, 32), (32, 64)]
    arithmetic = (3 * 9 * 16 + 2 * 16 + 64 * 10 + 10
                  + sum(9 * cin * w + 9 * w * w + 4 * w + 17 * (18 * w * w + 4 * w)
                        for cin, w in stages))
    assert (spec.params, spec.macs) == (params, macs)
    assert spec.params == arithmetic
    assert round(spec.params / 1e6, 1) == 1.7           # the paper's "1.7M"
    shortcuts = [n for n in spec.graph.nodes if ".downsample." in n.name]
    assert [n.op.label() for n in shortcuts] == ["avgpool 1x1/2", "pad_channels 32",
                                                 "avgpool 1x1/2", "pad_channels 64"]
    assert spec.facts("layer2.0.downsample.1").shape == (32, 16, 16)


def test_option_a_shortcut_is_subsampling_and_zero_channels():
    """He et al. (2015), option A, checked on the built model: the shortcut of
    layer2.0 is the input's every other pixel, then 16 zero channels."""
    spec = cnnspec.load(SPECS / "resnet_stochastic_depth.cnn")
    model = cnnspec.build(spec).eval()
    padded = next(n for n in spec.graph.nodes if n.name == "layer2.0.downsample.1")
    pooled = spec.graph.nodes[padded.inputs[0]]
    block_input = spec.graph.nodes[pooled.inputs[0]].name  # layer1's output
    values = {}

    class Recorder(torch.fx.Interpreter):
        def run_node(self, node):
            value = super().run_node(node)
            values[node.meta.get("cnnspec_name")] = value
            return value

    with torch.no_grad():
        Recorder(model).run(torch.randn(2, 3, 32, 32))
    x, shortcut = values[block_input], values["layer2.0.downsample.1"]
    assert x.shape == (2, 16, 32, 32) and shortcut.shape == (2, 32, 16, 16)
    assert torch.equal(shortcut[:, :16], x[:, :, ::2, ::2])
    assert not shortcut[:, 16:].any()


def test_cifar_resnet_depths_match_table_6():
    """He et al. (2015), section 4.2 and table 6: 6n + 2 layers, "0.27M" parameters for
    ResNet-20, "0.85M" for ResNet-56, "1.7M" for ResNet-110 (the same arithmetic as
    ResNet-110 above, n blocks a stage)."""
    stages = [(16, 16), (16, 32), (32, 64)]
    for depth, published, digits in [(20, 0.27, 2), (56, 0.85, 2), (110, 1.7, 1)]:
        n = (depth - 2) // 6
        spec = cnnspec.load(SPECS / "resnet20_cifar.cnn", depth=depth)
        arithmetic = (3 * 9 * 16 + 2 * 16 + 64 * 10 + 10
                      + sum(9 * cin * w + 9 * w * w + 4 * w + (n - 1) * (18 * w * w + 4 * w)
                            for cin, w in stages))
        assert spec.params == arithmetic == 97_216 * n - 21_926
        assert round(spec.params / 1e6, digits) == published
        convs = sum(node.op.op == "conv" for node in spec.graph.nodes)
        assert convs + 1 == depth                        # the convs and the fc
    assert cnnspec.load(SPECS / "resnet20_cifar.cnn").params == 269_722
    assert cnnspec.load(SPECS / "resnet20_cifar.cnn", depth=110).params \
        == cnnspec.load(SPECS / "resnet_stochastic_depth.cnn").params
    with pytest.raises(cnnspec.SpecError):
        cnnspec.load(SPECS / "resnet20_cifar.cnn", depth=21)


def test_cifar_resnet_recipe_is_section_4_2():
    """0.1, divided by 10 at 32k and 48k iterations, ending at 64k, batch 128: at
    50,000 / 128 = 390.625 iterations an epoch, epochs 82 and 123 of 164."""
    recipe = cnnspec.load(SPECS / "resnet20_cifar.cnn").recipe
    per_epoch = 50_000 / 128
    assert (recipe.optimizer.kind, recipe.optimizer.lr, recipe.optimizer.momentum) == \
        ("sgd", 0.1, 0.9)
    assert (recipe.batch, recipe.weight_decay) == (128, 0.0001)
    assert recipe.epochs == round(64_000 / per_epoch) == 164
    assert recipe.schedule.milestones == tuple(round(i / per_epoch) for i in (32_000, 48_000))
    assert recipe.schedule.gamma == 0.1


# --- 9. FractalNet (Larsson et al. 2017, section 2 eq. 1-2, section 4)

def _fractal_block_params(cin, c, columns):
    """2^C - 1 conv units (3x3 conv + bias + BN affine); C of them read the block input."""
    unit = lambda i: 9 * i * c + c + 2 * c
    return columns * unit(cin) + (2 ** columns - 1 - columns) * unit(c)


def test_fractalnet_structure_and_params():
    widths = [64, 128, 256, 512, 512]
    for columns in (3, 4):
        spec = cnnspec.load(SPECS / "fractalnet.cnn", columns=columns)
        convs = sum(n.op.op == "conv" for n in spec.graph.nodes)
        assert convs == 5 * (2 ** columns - 1)
        # One mean wherever two or more columns end: every other depth of the
        # deepest column's 2^(C-1) (the paper's figure 1).
        means = [n.op for n in spec.graph.nodes if n.op.op == "mean"]
        assert len(means) == 5 * 2 ** (columns - 2)
        assert all(m.drop_path == 0.15 and m.global_drop_path == 0.5 for m in means)
        assert means[2 ** (columns - 2) - 1].columns == tuple(range(1, columns + 1))
        expected = sum(_fractal_block_params(cin, c, columns)
                       for cin, c in zip([3] + widths, widths)) + 512 * 10 + 10
        assert spec.params == expected
    # 20 layers (C = 3): 33,734,922; the paper's table 1 figure (from memory, 38.6M)
    # disagrees and is not asserted. 40 layers (C = 4): 76,128,714.
    assert cnnspec.load(SPECS / "fractalnet.cnn", columns=3).params == 33_734_922
    assert cnnspec.load(SPECS / "fractalnet.cnn").params == 76_128_714
    dropouts = sorted({n.op.p for n in spec.graph.nodes if n.op.op == "dropout"})
    assert dropouts == pytest.approx([0.1, 0.2, 0.3, 0.4])
    model = cnnspec.build(spec)
    assert (model.global_drop_path.p, model.global_drop_path.columns) == (0.5, 4)


# --- 10. ResNeXt block, 32 paths vs grouped conv (Xie et al. 2017, figure 3)

def test_resnext_explicit_paths_equal_grouped_conv():
    paths = cnnspec.load(SPECS / "resnext_paths_block.cnn")
    grouped = cnnspec.load(SPECS / "resnext_grouped_block.cnn")
    assert paths.params == grouped.params == 32 * (256 * 4 + 9 * 4 * 4 + 4 * 256) == 70_144
    assert paths.macs == grouped.macs == 56 * 56 * 70_144 == 219_971_584
    assert paths.output_shape == grouped.output_shape == (256, 56, 56)
    adds = [n for n in paths.graph.nodes if n.op.op == "add"]
    assert len(adds[0].inputs) == 32
