"""The ResNet / Wide ResNet / ResNeXt / VGG / AlexNet library specs against torchvision.

Each spec is named after its torchvision constructor (`torchvision.models.<name>`);
torchvision's `alexnet` lives in `alexnet_torchvision.cnn`, because `alexnet.cnn` is the
lecture notes' variant. For every one:

- the parameter count is torchvision's `sum(p.numel())`, and the one its weights
  metadata documents (`meta["num_params"]`);
- the state-dict keys and shapes are torchvision's, `load_state_dict(strict=True)`
  works, and eval outputs on the same input agree to 1e-5 (relative to the logits'
  size) with every batchnorm's statistics and affine parameters randomised
  (parity_helpers.py); AlexNet and ResNeXt-50 also agree in train mode and after one
  SGD step;
- MACs are within 1% of torchvision's documented GFLOPS (`meta["_ops"]`, which counts
  multiply-adds). The metadata is read offline; nothing is downloaded.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torchvision.models as tvm
from conftest import SPECS
from parity_helpers import check_training_step, randomise_batchnorm

import cnnspec

# constructor name -> (spec file stem, weights enum holding the documented numbers)
LIBRARY = {
    "resnet34": ("resnet34", tvm.ResNet34_Weights),
    "resnet101": ("resnet101", tvm.ResNet101_Weights),
    "resnet152": ("resnet152", tvm.ResNet152_Weights),
    "wide_resnet50_2": ("wide_resnet50_2", tvm.Wide_ResNet50_2_Weights),
    "wide_resnet101_2": ("wide_resnet101_2", tvm.Wide_ResNet101_2_Weights),
    "resnext50_32x4d": ("resnext50_32x4d", tvm.ResNeXt50_32X4D_Weights),
    "resnext101_32x8d": ("resnext101_32x8d", tvm.ResNeXt101_32X8D_Weights),
    "vgg11": ("vgg11", tvm.VGG11_Weights),
    "vgg13": ("vgg13", tvm.VGG13_Weights),
    "vgg19": ("vgg19", tvm.VGG19_Weights),
    "vgg11_bn": ("vgg11_bn", tvm.VGG11_BN_Weights),
    "vgg13_bn": ("vgg13_bn", tvm.VGG13_BN_Weights),
    "vgg16_bn": ("vgg16_bn", tvm.VGG16_BN_Weights),
    "vgg19_bn": ("vgg19_bn", tvm.VGG19_BN_Weights),
    "alexnet": ("alexnet_torchvision", tvm.AlexNet_Weights),
}
NAMES = sorted(LIBRARY)
TESTS = Path(__file__).resolve().parent


def _spec_path(name):
    return SPECS / f"{LIBRARY[name][0]}.cnn"


def _documented(name, key):
    """The value every weights entry of the constructor documents (they agree)."""
    values = {weights.meta[key] for weights in LIBRARY[name][1]}
    assert len(values) == 1, values
    return values.pop()


@pytest.mark.parametrize("name", NAMES)
def test_spec_is_named_after_its_torchvision_constructor(name):
    spec = cnnspec.load(_spec_path(name))
    assert spec.name == name


def _compare(name):
    """Build torchvision's model and the spec's side by side; report what differs."""
    torch.manual_seed(0)
    reference = getattr(tvm, name)(weights=None).eval()
    randomise_batchnorm(reference)  # parity_helpers.py: negative scales too
    spec = cnnspec.load(_spec_path(name))
    # Built on the meta device and then given torchvision's tensors (assign=True), so
    # the two models share their weights instead of holding two copies.
    with torch.device("meta"):
        model = cnnspec.build(spec).eval()
    report = {
        "spec_params": spec.params,
        "module_params": sum(p.numel() for p in model.parameters()),
        "torchvision_params": sum(p.numel() for p in reference.parameters()),
        "ours": [[k, list(v.shape)] for k, v in model.state_dict().items()],
        "theirs": [[k, list(v.shape)] for k, v in reference.state_dict().items()],
    }
    try:
        model.load_state_dict(reference.state_dict(), strict=True, assign=True)
    except Exception as error:  # reported, and failed, by the test
        report["load_error"] = str(error)[:2000]
        return report
    report["load_error"] = None
    report["meta_left"] = [k for k, v in model.state_dict().items() if v.is_meta]
    # 112x112 halves each side of the native 224 (benchmarks/zoo_parity.py compares
    # at 224); every layer still sees more than one pixel, and the forward passes of
    # these 15 models cost a quarter as much.
    x = torch.randn(1, 3, 112, 112)
    with torch.no_grad():
        expected, found = reference(x), model(x)
    report["output_shape"] = list(found.shape)
    report["max_abs_diff"] = (found - expected).abs().max().item()
    report["output_scale"] = expected.abs().max().item()
    report["output_std"] = expected.std().item()
    return report


# Also compared in train mode (same seed: AlexNet's dropouts; batch statistics:
# ResNeXt's grouped bottlenecks) and after one SGD step. The compiled graphs do not
# depend on the input size, so a 64x64 batch of 2 keeps the backward pass cheap.
TRAINED = ("alexnet", "resnext50_32x4d")


def _training_step(name):
    """None, or why the models part in training (parity_helpers.check_training_step)."""
    torch.manual_seed(0)
    reference = getattr(tvm, name)(weights=None)
    randomise_batchnorm(reference)
    model = cnnspec.build(_spec_path(name))
    try:
        model.load_state_dict(reference.state_dict(), strict=True)
        check_training_step(reference, model, torch.randn(2, 3, 64, 64))
    except Exception as error:  # reported, and failed, by the test
        return f"{type(error).__name__}: {error}"[:2000]
    return None


def _compare_all():
    """The child's entry point: one JSON line of every comparison."""
    reports = {name: _compare(name) for name in NAMES}
    for name in TRAINED:
        reports[name]["training_error"] = _training_step(name)
    print(json.dumps(reports))


@pytest.fixture(scope="module")
def comparisons():
    """Every model pair is built in ONE child interpreter. The largest models hold
    0.5 GB of weights each; kept out of the pytest process, they cannot raise its
    peak memory, which later tests that measure a child's memory would inherit."""
    code = "import test_library_resnet_vgg as t; t._compare_all()"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(TESTS), str(SPECS.parent), os.environ.get("PYTHONPATH", "")]))
    done = subprocess.run([sys.executable, "-c", code], cwd=TESTS, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("name", NAMES)
def test_parameter_count_matches_torchvision(name, comparisons):
    report = comparisons[name]
    assert report["spec_params"] == report["torchvision_params"]
    assert report["module_params"] == report["torchvision_params"]
    assert report["spec_params"] == _documented(name, "num_params")


@pytest.mark.parametrize("name", NAMES)
def test_state_dict_loads_strictly_and_outputs_match(name, comparisons):
    report = comparisons[name]
    assert [k for k, _ in report["ours"]] == [k for k, _ in report["theirs"]]
    assert report["ours"] == report["theirs"]
    assert report["load_error"] is None, report["load_error"]
    assert report["meta_left"] == []
    assert report["output_shape"] == [1, 1000]
    assert report["output_std"] > 1e-3  # outputs that vanish would prove nothing
    assert report["max_abs_diff"] <= 1e-5 * max(1.0, report["output_scale"]), \
        report["max_abs_diff"]


@pytest.mark.parametrize("name", TRAINED)
def test_training_step_matches(name, comparisons):
    assert comparisons[name]["training_error"] is None, comparisons[name]["training_error"]


@pytest.mark.parametrize("name", NAMES)
def test_macs_match_torchvision_documented_gflops(name):
    macs = cnnspec.load(_spec_path(name)).macs
    documented = _documented(name, "_ops") * 1e9
    assert abs(macs - documented) <= 0.01 * documented, (macs, documented)


def test_vgg_features_are_one_flat_sequence():
    """torchvision numbers `features` 0..N; the shared block keeps that numbering,
    batchnorm taking the position between a conv and its ReLU."""
    spec = cnnspec.load(SPECS / "vgg11_bn.cnn")
    names = [node.name for node in spec.graph.nodes]
    assert [n for n in names if n.startswith("features.")] == \
        [f"features.{i}" for i in range(29)]
    assert spec.facts("features.1").shape == (64, 224, 224)      # the batchnorm
    assert spec.facts("features.3").shape == (64, 112, 112)      # the first max pool
    assert spec.facts("features.28").shape == (512, 7, 7)
    plain = cnnspec.load(SPECS / "vgg11.cnn")
    assert plain.facts("features.20").shape == (512, 7, 7)       # 8 convs, 8 ReLUs, 5 pools


def test_vgg_features_block_follows_the_input_size():
    """The stage shapes asserted in blocks/vgg.cnn are relative to the block's input."""
    library = (SPECS / "blocks" / "vgg.cnn").resolve()
    spec = cnnspec.load(f'import "{library}"\n'
                        "network v { input 3x64x96\n"
                        " features: vgg_features(1, 1, 1, 1, 1, batch_norm=true) -> 512x2x3 }")
    assert spec.facts("features.15").shape == (512, 4, 6)   # 4 stages of conv, bn, relu, pool
    assert spec.facts("features.19").shape == (512, 2, 3)
