"""MACs against fvcore, layer by layer, for every spec with a torchvision counterpart.

fvcore (Meta's FLOP counter) traces the torchvision model on an input of the spec's
shape and counts one "flop" per multiply-add. cnnspec counts conv and linear layers
only (docs/costs.md), so the comparison is with fvcore's count for each conv and
linear module, matched by name (the specs keep torchvision's layer names): every
layer must agree exactly, and so must the totals. fvcore also counts batchnorm and
pooling, which cnnspec leaves out by design; the test prints nothing about them.
"""

import warnings

import pytest
import torch
import torchvision.models as tvm
from torch import nn

import cnnspec
from conftest import SPECS

fvcore_nn = pytest.importorskip("fvcore.nn")  # a test dependency (pyproject [test])

# spec file -> torchvision constructor. specs/alexnet.cnn is the paper's single
# tower, not torchvision's variant.
COUNTERPARTS = {path.stem: path.stem.removesuffix("_torchvision")
                for path in sorted(SPECS.glob("*.cnn"))
                if path.stem.removesuffix("_torchvision") in tvm.list_models()
                and path.stem != "alexnet"}
# fvcore runs the model: above 2 GMACs (torchvision's documented figure) that costs
# a second or more per model on a CPU, so those are compared by benchmarks/zoo_parity.py
# (the same comparison, and eval outputs at native resolution), not in the suite.
HEAVY_GMACS = 2.0
# The vision transformers (ViT, Swin, MaxViT) are not convolutional networks.
TRANSFORMERS = ("vit_", "swin_", "maxvit_")


def _documented_gmacs(name: str) -> float:
    weights = tvm.get_model_weights(name)
    at_224 = [w for w in weights if w.transforms().crop_size[0] == 224]
    return min(w.meta["_ops"] for w in at_224 or list(weights))


def test_every_torchvision_counterpart_is_compared():
    classifiers = [n for n in tvm.list_models(module=tvm)
                   if not n.startswith(TRANSFORMERS)]
    assert len(classifiers) == 68
    assert sorted(set(COUNTERPARTS.values())) == sorted(classifiers)
    assert COUNTERPARTS["alexnet_torchvision"] == "alexnet"


def _fvcore_layer_macs(model: nn.Module, shape) -> dict[str, int]:
    counter = fvcore_nn.FlopCountAnalysis(model, torch.randn((1,) + shape))
    counter.unsupported_ops_warnings(False)
    counter.uncalled_modules_warnings(False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit deprecation notices
        by_module = counter.by_module()
    return {name: by_module[name] for name, module in model.named_modules()
            if isinstance(module, (nn.Conv2d, nn.Linear))}


@pytest.mark.parametrize("name", sorted(n for n, model in COUNTERPARTS.items()
                                         if _documented_gmacs(model) <= HEAVY_GMACS))
def test_macs_equal_fvcore_layer_by_layer(name):
    spec = cnnspec.load(SPECS / f"{name}.cnn")
    # Auxiliary heads run in training only; fvcore traces eval mode.
    extra = {"aux_logits": False, "init_weights": False} \
        if name in ("googlenet", "inception_v3") else {}
    # torchvision computes RegNet's widths with tensor ops, which meta tensors cannot
    # read back: those are built on the CPU.
    device = "cpu" if name.startswith("regnet") else "meta"
    with torch.device(device):
        reference = getattr(tvm, COUNTERPARTS[name])(weights=None, **extra).eval()
    reference = reference.to_empty(device="cpu")
    expected = _fvcore_layer_macs(reference, spec.input_shape)
    found = {layer: spec.facts(layer).macs for layer in expected}
    assert found == expected
    assert spec.macs == sum(expected.values())
