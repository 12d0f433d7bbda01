"""The 15 RegNets (RegNetX and RegNetY, 400MF ... 128GF) against torchvision.

All 15 specs are one block file, specs/blocks/regnet.cnn, at 15 points of the design
space (depth, w0, wa, wm, group width, SE ratio), whose stage widths and depths the
spec computes with its own expressions. For every model: the parameter count is
torchvision's documented num_params; the state-dict keys and shapes are those of
torchvision's model (both built on the meta device: no memory, no initialisation);
the MACs are torchvision's documented "GFLOPS" (`_ops`, multiply-adds at the weights'
224x224 crop; regnet_y_128gf has only SWAG weights, and IMAGENET1K_SWAG_LINEAR_V1's
are at 224) within 1%; and the stage widths and depths are those torchvision's
BlockParams.from_init_params computes from the same design-space point (torchvision's
own call, captured, so no number is copied here).

Eval outputs are compared after a strict load of torchvision's state dict (every
batchnorm randomised first, parity_helpers.py), batch 1: at the native 224x224 for
the 400MF models, and at 64x64 for the larger ones to keep the suite fast
(the compiled graph does not depend on the input size; the spec is loaded at
resolution 64, so its shapes are proved there too). regnet_y_32gf (145M parameters)
and regnet_y_128gf (645M) are never built with real weights here, only on the meta
device. One train-mode forward and SGD step is compared for regnet_y_400mf.
"""

from unittest import mock

import parity_helpers as parity
import pytest
import torch
import torchvision.models as tvm
import torchvision.models.regnet as tv_regnet
from conftest import SPECS

import cnnspec

NAMES = [f"regnet_{kind}_{size}" for kind in ("x", "y")
         for size in ("400mf", "800mf", "1_6gf", "3_2gf", "8gf", "16gf", "32gf")]
NAMES.append("regnet_y_128gf")
META_ONLY = {"regnet_y_32gf", "regnet_y_128gf"}
REDUCED = 64  # input size for the eval comparison of the models above 400MF


def _weights(name):
    """The weights whose metadata the spec must match: IMAGENET1K_V1, or for
    regnet_y_128gf (no such weights) IMAGENET1K_SWAG_LINEAR_V1 (224x224)."""
    enum = getattr(tvm, "RegNet_" + name[len("regnet_"):].upper() + "_Weights")
    return getattr(enum, "IMAGENET1K_V1", None) or enum.IMAGENET1K_SWAG_LINEAR_V1


def _reference(name, device="cpu"):
    """torchvision's model. Its BlockParams are computed with tensors, which the meta
    device cannot read back, so only the model itself is built on `device`."""
    build = tv_regnet._regnet

    def on_device(*args, **kwargs):
        with torch.device(device):
            return build(*args, **kwargs)

    with mock.patch.object(tv_regnet, "_regnet", on_device):
        return getattr(tvm, name)(weights=None)


def _block_params(name):
    """The BlockParams torchvision's builder computes for `name`."""
    with mock.patch.object(tv_regnet, "_regnet", lambda params, *a, **k: params):
        return getattr(tvm, name)(weights=None)


@pytest.mark.parametrize("name", NAMES)
def test_parameters_and_state_dict_keys_match_torchvision(name):
    spec = cnnspec.load(SPECS / f"{name}.cnn")
    parity.check_parameters_and_state_dict(spec, _reference(name, "meta"),
                                           _weights(name).meta["num_params"])


@pytest.mark.parametrize("name", NAMES)
def test_macs_match_torchvision_documented_gflops(name):
    parity.check_documented_macs(cnnspec.load(SPECS / f"{name}.cnn"), _weights(name))


@pytest.mark.parametrize("name", NAMES)
def test_stage_widths_and_depths_match_torchvision_block_params(name):
    """Stage k's blocks are trunk_output.block<k>.block<k>-<i>: as many as
    torchvision's depth for the stage, each ending at its width, with its group
    width (after the width/group compatibility adjustment)."""
    expected = _block_params(name)
    spec = cnnspec.load(SPECS / f"{name}.cnn")
    # each block's final ReLU, trunk_output.<stage>.<block>.activation
    blocks = [n.split(".")[2] for n in spec.layer_names
              if n.startswith("trunk_output.") and n.count(".") == 3
              and n.endswith(".activation")]
    stages = sorted({b.split("-")[0] for b in blocks}, key=lambda b: int(b[len("block"):]))
    assert stages == [f"block{k + 1}" for k in range(len(expected.depths))]
    widths, depths, group_widths = [], [], []
    for stage in stages:
        ours = [b for b in blocks if b.split("-")[0] == stage]
        assert ours == [f"{stage}-{i}" for i in range(len(ours))]
        depths.append(len(ours))
        width = spec.facts(f"trunk_output.{stage}.{ours[-1]}.activation").shape[0]
        widths.append(width)
        # the 3x3 group conv (no bias) has width * group width * 9 weights
        group_widths.append(spec.facts(f"trunk_output.{stage}.{ours[-1]}.f.b.0").params
                            // (9 * width))
    assert depths == expected.depths
    assert widths == expected.widths
    assert group_widths == expected.group_widths


@pytest.mark.parametrize("name", [n for n in NAMES if n not in META_ONLY])
def test_strict_load_and_equal_eval_outputs(name):
    """Every batchnorm randomised first (parity_helpers.py). Models of 4 GMACs and
    more are compared at 64x64 (see the module docstring; all 15 at 224: benchmarks/zoo_parity.py)."""
    torch.manual_seed(0)
    reference = _reference(name).eval()
    assert parity.randomise_batchnorm(reference) > 0
    native = _weights(name).meta["_ops"] < 0.5  # the 400MF pair; the rest at 64x64
    spec = cnnspec.load(SPECS / f"{name}.cnn", **({} if native else {"resolution": REDUCED}))
    assert spec.input_shape == ((3, 224, 224) if native else (3, REDUCED, REDUCED))
    model = cnnspec.build(spec)
    x = torch.randn((1,) + spec.input_shape)
    parity.check_strict_load_and_eval_outputs(reference, model, x)


def test_training_step_matches_torchvision():
    """regnet_y_400mf in train mode (batch statistics), then one SGD step."""
    torch.manual_seed(0)
    reference = _reference("regnet_y_400mf")
    parity.randomise_batchnorm(reference)
    model = cnnspec.build(SPECS / "regnet_y_400mf.cnn")
    parity.check_strict_load_and_training_step(reference, model, torch.randn(2, 3, 64, 64))
