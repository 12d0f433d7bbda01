"""Numbers from outside sources: torchvision parameter counts (weights=None, as listed
in DESIGN.md and torchvision's model docs), the AlexNet lecture-notes annotation, and
the Inception paper's arithmetic."""

import pytest

import cnnspec
from conftest import SPECS

# torchvision.models.<name>(weights=None): sum(p.numel() for p in model.parameters())
TORCHVISION_PARAMS = {
    "resnet18": 11_689_512,
    "resnet50": 25_557_032,
    "vgg16": 138_357_544,
    "densenet121": 7_978_856,
    "googlenet": 13_004_888,  # aux_logits=True, the default for a fresh model
}

# torchvision's documented GFLOPS (which count multiply-adds), to their two decimals.
TORCHVISION_GMACS = {
    "resnet18": 1.81, "resnet50": 4.09, "vgg16": 15.47, "densenet121": 2.83,
    "googlenet": 1.50,
}


@pytest.mark.parametrize("name", sorted(TORCHVISION_PARAMS))
def test_parameter_count_matches_torchvision(name):
    assert cnnspec.load(SPECS / f"{name}.cnn").params == TORCHVISION_PARAMS[name]


@pytest.mark.parametrize("name", sorted(TORCHVISION_GMACS))
def test_macs_match_torchvision_documented_gflops(name):
    macs = cnnspec.load(SPECS / f"{name}.cnn").macs
    assert round(macs / 1e9, 2) == TORCHVISION_GMACS[name]


def test_googlenet_without_auxiliary_heads():
    with_aux = cnnspec.load(SPECS / "googlenet.cnn")
    assert with_aux.inference_params == 6_624_904
    without = cnnspec.load(SPECS / "googlenet.cnn", aux_logits=False)
    assert without.params == 6_624_904
    assert [o.name for o in with_aux.graph.outputs] == ["main", "aux1", "aux2"]
    assert [o.weight for o in with_aux.graph.outputs[1:]] == [0.3, 0.3]


def test_alexnet_as_annotated_in_the_lecture_notes():
    spec = cnnspec.load(SPECS / "alexnet.cnn")
    assert spec.params == 62_378_344
    assert spec.facts("conv1").params == 34_944
    expected = {"conv1": (96, 55, 55), "pool1": (96, 27, 27), "conv2": (256, 27, 27),
                "pool2": (256, 13, 13), "conv3": (384, 13, 13), "conv4": (384, 13, 13),
                "conv5": (256, 13, 13), "pool5": (256, 6, 6), "fc6": (4096,),
                "fc7": (4096,), "fc8": (1000,)}
    for name, shape in expected.items():
        assert spec.facts(name).shape == shape, name


def test_naive_inception_module():
    spec = cnnspec.load(SPECS / "inception_naive.cnn")
    assert spec.output_shape == (672, 28, 28)
    # 28*28 * 256 * (1*1*128 + 3*3*192 + 5*5*96)
    assert spec.macs == 854_196_224


def test_bottleneck_saves_weights():
    """Going Deeper with Convolutions: a 1x1 bottleneck before a 3x3 conv 256->128
    on 11x11: 3*3*256*128 = 294,912 weights directly; via 1x1 to 32: 32,768 + ..."""
    direct = cnnspec.load("network d { input 256x11x11\n c: conv 128 k=3 p=1 bias=false }")
    assert direct.params == 294_912
    reduce = cnnspec.load("network r { input 256x11x11\n c: conv 128 k=1 bias=false }")
    assert reduce.params == 32_768


def test_lenet5_layers_against_the_paper():
    spec = cnnspec.load(SPECS / "lenet5.cnn")
    # LeCun et al. 1998, section II.B: C1 156, C5 48,120, F6 10,164 trainable parameters.
    assert spec.facts("c1").params == 156
    assert spec.facts("c5").params == 48_120
    assert spec.facts("f6").params == 10_164
    assert spec.facts("c5").shape == (120, 1, 1)


@pytest.mark.parametrize("depth, field", [(1, 3), (2, 5), (3, 7)])
def test_stacked_3x3_receptive_field(depth, field):
    body = "\n".join("conv 8 k=3 p=1" for _ in range(depth))
    spec = cnnspec.load(f"network s {{ input 3x32x32\n{body} }}")
    assert spec.summary().layers[-1].receptive_field == [field, field]
