"""Library specs without a torchvision counterpart, checked against their papers.

Each number is cited to the paper's section or table; where the arithmetic disagrees
with a published number, the spec's header comment gives the term-by-term working and
the test asserts the arithmetic (and the published number within the stated tolerance
only where they agree)."""

import pytest
import torch

import cnnspec
from conftest import SPECS

PAPER_SPECS = ["inception_bottleneck", "zfnet", "alexnet_two_gpu", "nin", "googlenet_paper",
               "preact_resnet", "wrn_28_10", "resnet_stochastic_depth", "fractalnet",
               "resnext_paths_block", "resnext_grouped_block"]


@pytest.mark.parametrize("name", PAPER_SPECS)
def test_paper_spec_loads(name):
    spec = cnnspec.load(SPECS / f"{name}.cnn")
    assert spec.params > 0 and spec.macs > 0


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
    assert naive.macs == 854_196_224
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
    assert single.params == 62_378_344
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

# table 1: params in K (units of 1024 weights, biases not counted), ops in M (1e6 MACs)
TABLE1 = {"conv1": (2.7, 34), "conv2+conv3": (112, 360), "inception3a": (159, 128),
          "inception3b": (380, 304), "inception4a": (364, 73), "inception4b": (437, 88),
          "inception4c": (463, 100), "inception4d": (580, 119), "inception4e": (840, 170),
          "inception5a": (1072, 54), "inception5b": (1388, 71), "fc": (1000, 1)}
# Rows where the table disagrees with the layer sizes of the same table (the spec's
# header comment has the working): conv1 is 9,408 weights (9.2K) and 118M ops; 4c is
# 509,440 weights (497.5K); 5a is 1,042,432 weights (1018K) and 51.1M ops.
TABLE1_DISAGREES = {"conv1": "both", "inception4c": "params", "inception5a": "both"}


def test_googlenet_paper_against_table_1():
    spec = cnnspec.load(SPECS / "googlenet_paper.cnn")
    for row, (k_params, m_ops) in TABLE1.items():
        weights = macs = 0
        for prefix in row.split("+"):
            w, m = _weights(spec, prefix)
            weights, macs = weights + w, macs + m
        bad = TABLE1_DISAGREES.get(row, "")
        if bad not in ("params", "both"):
            assert weights / 1024 == pytest.approx(k_params, rel=0.02), row
        if bad != "both":
            assert macs / 1e6 == pytest.approx(m_ops, abs=0.75), row
    assert _weights(spec, "inception3a") == (163_328, 128_049_152)   # 159.5K, 128M
    assert _weights(spec, "conv1") == (9_408, 118_013_952)           # table: 2.7K, 34M
    # Totals: the table's ops column sums to 1,502M ("1.5 billion multiply-adds",
    # section 5); the spec's 1,582.7M differ by conv1's 84M and 5a's -3M.
    assert sum(ops for _, ops in TABLE1.values()) == 1502
    assert spec.macs == 1_582_671_872
    # The params column sums to 6,797.7K; the spec's weights: 6,990,272 / 1024 = 6,826.4K
    # (0.4% more: mostly 4c's and 4d's rows, offset by conv1's and 5a's).
    total_weights = sum(_weights(spec, p)[0] for p in
                        [r for row in TABLE1 for r in row.split("+")])
    assert total_weights == 6_990_272
    assert total_weights / 1024 == pytest.approx(sum(p for p, _ in TABLE1.values()),
                                                 rel=0.005)
    assert spec.inference_params == 6_998_552          # with biases, without aux heads
    assert spec.facts("inception3a.branch3.1.conv").params == 25 * 16 * 32 + 32  # true 5x5
    assert [o.weight for o in spec.graph.outputs[1:]] == [0.3, 0.3]


# --- 6. Pre-activation ResNet-164 (He et al. 2016, "Identity Mappings", table 2)

def test_preact_resnet164_cifar_params():
    spec = cnnspec.load(SPECS / "preact_resnet.cnn")
    assert spec.params == 1_703_258
    assert round(spec.params / 1e6, 1) == 1.7           # table 2: "1.7M"
    convs = sum(n.op.op == "conv" for n in spec.graph.nodes)
    assert convs == 1 + 3 * 18 * 3 + 3                  # 163 + fc = 164 layers, 3 projections
    assert spec.facts("layer3.17.conv3").shape == (256, 8, 8)


# --- 7. Wide ResNet 28-10 (Zagoruyko & Komodakis 2016, table 5: 36.5M)

def test_wrn_28_10_params():
    spec = cnnspec.load(SPECS / "wrn_28_10.cnn")
    assert spec.params == 36_479_194
    assert round(spec.params / 1e6, 1) == 36.5
    assert spec.facts("group3.3.conv2").shape == (640, 8, 8)
    assert cnnspec.load(SPECS / "wrn_28_10.cnn", dropout=0.3).params == spec.params


# --- 8. Stochastic depth ResNet-110 (Huang et al. 2016, section 3 eq. 4, section 4)

def test_stochastic_depth_linear_decay():
    spec = cnnspec.load(SPECS / "resnet_stochastic_depth.cnn")
    drops = [n.op.p for n in spec.graph.nodes if n.op.op == "drop_path"]
    assert len(drops) == 54
    for l, p in enumerate(drops, start=1):       # 1 - p_l = l / L * (1 - p_L)
        assert p == pytest.approx(l / 54 * 0.5)
    assert drops[-1] == pytest.approx(0.5)
    # Option-A ResNet-110 is 1,727,962 (working in the spec), the paper's "1.7M"
    assert spec.params == 1_727_962
    assert round(spec.params / 1e6, 1) == 1.7
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
