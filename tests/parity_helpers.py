"""Shared checks for the comparisons with torchvision's models.

A freshly initialised batchnorm is, in eval mode, a positive scaling by
1/sqrt(1 + eps): it commutes with ReLU (and with max pooling), so a spec that puts a
batchnorm after its ReLU instead of before it still matches torchvision while its
statistics are fresh. `randomise_batchnorm` gives every batchnorm running
statistics and affine parameters that make it a real affine map, with negative
scales, before eval outputs are compared. `check_training_step` compares the two
models in train mode too: batchnorm on batch statistics, dropout and stochastic
depth drawing the same random numbers under one seed, then one SGD step, after which
every parameter and buffer (running statistics, momentum) must still agree.

The rest are the checks the tests/test_library_*.py files share: torchvision's
untrained model (`torchvision_model`), parameter counts and state-dict shapes
(`check_parameters_and_state_dict`), documented MACs and torch's flop counter
(`check_documented_macs`, `torch_macs`), a strict load then equal outputs in eval
mode (`check_strict_load_and_eval_outputs`) or in one training step
(`check_strict_load_and_training_step`), GoogLeNet's and Inception-v3's
`transform_input` (`check_transform_input`), the output shape of torchvision's stages
against the spec's scopes (`submodule_output_shapes`, `scope_output_shapes`), and
the batchnorm, dropout and stochastic depth settings of EfficientNets
(`check_norm_dropout_and_stochastic_depth`).
"""

from __future__ import annotations

from collections import Counter

import pytest
import torch
from torch import nn
from torch.nn import functional as F

import cnnspec

_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d)


def randomise_batchnorm(model: nn.Module, seed: int = 1) -> int:
    """Give every batchnorm of `model` statistics and affine parameters far from a
    fresh one's: running mean ~ N(0, 0.2^2), running variance in [0.5, 2], weight of
    magnitude 0.5 to 1.5 with a random sign (about half negative), bias ~ N(0, 0.2^2).
    Returns how many batchnorms it changed (a test may assert there were some)."""
    generator = torch.Generator().manual_seed(seed)
    changed = 0
    with torch.no_grad():
        for module in model.modules():
            if not isinstance(module, _NORMS):
                continue
            c = module.num_features
            if module.track_running_stats:
                module.running_mean.copy_(0.2 * torch.randn(c, generator=generator))
                module.running_var.copy_(0.5 + 1.5 * torch.rand(c, generator=generator))
            if module.affine:
                sign = torch.where(torch.rand(c, generator=generator) < 0.5, -1.0, 1.0)
                module.weight.copy_(sign * (0.5 + torch.rand(c, generator=generator)))
                module.bias.copy_(0.2 * torch.randn(c, generator=generator))
            changed += 1
    return changed


def randomise_layer_norms_and_scales(model: nn.Module, seed: int = 2) -> int:
    """Give every layer norm of `model` an affine map far from the identity (weight of
    magnitude 0.5 to 1.5 with a random sign, bias ~ N(0, 0.2^2)) and every
    `layer_scale` parameter values of magnitude 0.2 to 1 with a random sign, instead of
    1e-6. Returns how many tensors it changed."""
    generator = torch.Generator().manual_seed(seed)

    def signed(shape, low, high):
        sign = torch.where(torch.rand(shape, generator=generator) < 0.5, -1.0, 1.0)
        return sign * (low + (high - low) * torch.rand(shape, generator=generator))

    changed = 0
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.LayerNorm):
                module.weight.copy_(signed(module.weight.shape, 0.5, 1.5))
                module.bias.copy_(0.2 * torch.randn(module.bias.shape, generator=generator))
                changed += 1
        for key, parameter in model.named_parameters():
            if key.endswith("layer_scale"):
                parameter.copy_(signed(parameter.shape, 0.2, 1.0))
                changed += 1
    return changed


def assert_outputs_close(found: torch.Tensor, expected: torch.Tensor,
                         atol: float = 1e-5) -> None:
    """Equal to `atol`, scaled up when the outputs themselves are large (randomised
    batchnorm can make logits of size 10-100, where float32 rounding alone exceeds
    an absolute 1e-5)."""
    assert found.shape == expected.shape
    # Outputs that vanish would make any comparison pass (fresh EfficientNets give
    # logits of 1e-14; randomised batchnorm brings them to about 1).
    assert expected.std().item() > 1e-3, f"outputs vanish: {expected.std().item():.3g}"
    scale = max(1.0, expected.abs().max().item())
    torch.testing.assert_close(found, expected, rtol=0, atol=atol * scale)


def _as_list(result, fields):
    if isinstance(result, torch.Tensor):
        return [result]
    return [getattr(result, f) for f in fields]


def check_training_step(reference: nn.Module, model: nn.Module, x: torch.Tensor, *,
                        reference_fields=("logits",), model_fields=("logits",),
                        seed: int = 0, lr: float = 0.05, atol: float = 1e-4) -> None:
    """`model` holds `reference`'s state dict (separate tensors). In train mode and
    under the same seed both must give the same outputs (`*_fields` name the outputs
    to compare, in matching order, when the models return named tuples: the main
    output and auxiliary heads); then one SGD step on the same loss (cross entropy
    against fixed targets, summed over the outputs) must leave every parameter and
    buffer equal."""
    shared = {t.data_ptr() for t in reference.state_dict().values()} & \
        {t.data_ptr() for t in model.state_dict().values()}
    assert not shared, "the two models must not share tensors"
    outputs = []
    for net in (reference, model):
        net.train()
        torch.manual_seed(seed)
        outputs.append(net(x))
    theirs = _as_list(outputs[0], reference_fields)
    ours = _as_list(outputs[1], model_fields)
    assert len(theirs) == len(ours)
    for found, expected in zip(ours, theirs):
        assert_outputs_close(found.detach(), expected.detach(), atol)
    targets = torch.arange(x.shape[0]) % theirs[0].shape[1]
    for net, outs in ((reference, theirs), (model, ours)):
        optimizer = torch.optim.SGD(net.parameters(), lr=lr)
        optimizer.zero_grad()
        sum(F.cross_entropy(o, targets) for o in outs).backward()
        optimizer.step()
    expected_state, found_state = reference.state_dict(), model.state_dict()
    assert sorted(found_state) == sorted(expected_state)
    with torch.no_grad():
        for key, value in expected_state.items():
            found = found_state[key]
            assert found.shape == value.shape, key
            if value.is_floating_point():
                # |found - expected| <= atol + 1e-4 |expected| (assert_close's rule,
                # several times faster on the 10-60M values of these models)
                excess = (found - value).abs_().sub_(value.abs().mul_(1e-4).add_(atol))
                worst = excess.max().item()
                assert worst <= 0, f"{key} after one step: off by {worst:.3g} beyond " \
                    f"the tolerance"
            else:  # num_batches_tracked
                assert torch.equal(found, value), key
    # The step changed something, so the comparison above compared a step.
    assert any(p.grad is not None and p.grad.abs().max() > 0 for p in model.parameters())


def check_strict_load_and_training_step(reference: nn.Module, model: nn.Module,
                                        x: torch.Tensor, **options) -> None:
    """Load `reference`'s state dict strictly into `model`, then `check_training_step`
    (`options` are its keyword arguments)."""
    model.load_state_dict(reference.state_dict(), strict=True)
    check_training_step(reference, model, x, **options)


def check_strict_load_and_eval_outputs(reference: nn.Module, model: nn.Module,
                                       x: torch.Tensor, *, assign: bool = False) -> None:
    """Load `reference`'s state dict strictly into `model` (`assign`: take its tensors,
    for a model built on the meta device); in eval mode both give the same outputs
    for `x` (`assert_outputs_close`)."""
    model.load_state_dict(reference.state_dict(), strict=True, assign=assign)
    reference.eval()
    model.eval()
    with torch.no_grad():
        expected, found = reference(x), model(x)
    assert_outputs_close(found, expected)


def check_transform_input(reference: nn.Module, spec_path, x: torch.Tensor,
                          stem: str, **params) -> None:
    """torchvision's GoogLeNet or Inception-v3 built with transform_input=True against
    the spec loaded with transform_input=true (and `params`): `reference`'s state dict
    loads strictly, and in eval mode the output of the first BasicConv2d (`stem`) and
    the logits are equal bit for bit. Without the transform the stem's output is
    another one (deep untrained networks barely tell inputs apart by their logits)."""
    randomise_batchnorm(reference)
    reference.eval()
    outputs: dict[str, torch.Tensor] = {}

    def keep(key):
        return lambda module, inputs, output: outputs.__setitem__(key, output)

    reference.get_submodule(stem).register_forward_hook(keep("reference"))
    for transform in (True, False):
        spec = cnnspec.load(spec_path, transform_input=transform, **params)
        model = cnnspec.build(spec).eval()
        assert ("transform_input" in dict(model.named_modules())) is transform
        model.load_state_dict(reference.state_dict(), strict=True)
        last = [n for n, _ in model.named_modules() if n.startswith(stem + ".")][-1]
        model.get_submodule(last).register_forward_hook(keep(transform))
        with torch.no_grad():
            expected, found = reference(x), model(x)
        if transform:
            assert torch.equal(found, expected)
            assert torch.equal(outputs[True], outputs["reference"])
    assert (outputs[False] - outputs["reference"]).abs().max() > 0.1


def torchvision_model(name: str, device: str = "cpu", **kwargs) -> nn.Module:
    """torchvision's untrained `name` (weights=None), built on `device`."""
    import torchvision.models as tvm

    with torch.device(device):
        return getattr(tvm, name)(weights=None, **kwargs)


def state_dict_shapes(module: nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


def check_parameters_and_state_dict(spec, reference: nn.Module,
                                    documented: int | None = None) -> nn.Module:
    """The spec has `documented` parameters (where given) and as many as `reference`;
    built on the meta device, its state dict has `reference`'s keys and shapes.
    Returns that meta-device model."""
    if documented is not None:
        assert spec.params == documented
    assert spec.params == sum(p.numel() for p in reference.parameters())
    with torch.device("meta"):
        model = cnnspec.build(spec)
    assert state_dict_shapes(model) == state_dict_shapes(reference)
    return model


def check_documented_macs(spec, weights, *, rel: float = 0.01,
                          absolute: float | None = None) -> None:
    """The spec's input is the crop of torchvision's `weights` (a weights enum member)
    and its MACs the "GFLOPS" they document (`_ops`: multiply-adds), within
    pytest.approx's `rel` and `abs` (`absolute` billions; its default where None)."""
    crop = weights.transforms().crop_size[0]
    assert spec.input_shape == (3, crop, crop)
    assert spec.macs / 1e9 == pytest.approx(weights.meta["_ops"], rel=rel, abs=absolute)


def torch_macs(model: nn.Module, shape: tuple[int, ...]) -> int:
    """Eval-mode multiply-adds of one image: torch's flop counter (two flops per
    multiply-add of convolutions and matrix products), on the meta device."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device("meta"), FlopCounterMode(display=False) as counter, torch.no_grad():
        model.eval()(torch.empty((1,) + shape))
    return counter.get_total_flops() // 2


def submodule_output_shapes(module: nn.Module, names, shape: tuple[int, ...]
                            ) -> dict[str, tuple[int, ...]]:
    """The output shape (without the batch) of each named submodule of `module`, by
    name, in an eval-mode forward pass of one image of `shape` on the meta device
    (forward hooks, removed afterwards)."""
    shapes = {}

    def hook(name):
        def record(_module, _args, output):
            shapes[name] = tuple(output.shape[1:])
        return record

    handles = [module.get_submodule(name).register_forward_hook(hook(name))
               for name in names]
    try:
        with torch.device("meta"), torch.no_grad():
            module.eval()(torch.empty((1,) + shape))
    finally:
        for handle in handles:
            handle.remove()
    return shapes


def scope_output_shapes(spec, names) -> dict:
    """The shape each named scope of `spec` puts out: that of the last layer inside it."""
    shapes = {}
    for node in spec.graph.nodes:
        for name in names:
            if node.name == name or node.name.startswith(name + "."):
                shapes[name] = spec.table[node.id].shape
    return shapes


def check_norm_dropout_and_stochastic_depth(model: nn.Module, reference: nn.Module,
                                            blocks, *, approx: bool = False
                                            ) -> tuple[Counter, int]:
    """What the state dict does not show, against torchvision's EfficientNets (and any
    model with such layers): every batchnorm's eps and momentum, every dropout's p,
    and in each residual block whose class is named in `blocks` (torchvision's MBConv
    and FusedMBConv) a `stochastic_depth` layer with torchvision's p (to
    pytest.approx's default tolerance if `approx`), absent from the others. Returns
    how many residual blocks of each class it checked, and how many dropouts."""
    ours = dict(model.named_modules())
    residual, dropouts = Counter(), 0
    for key, module in reference.named_modules():
        if isinstance(module, nn.BatchNorm2d):
            assert (ours[key].eps, ours[key].momentum) == (module.eps, module.momentum), key
        elif isinstance(module, nn.Dropout):
            assert ours[key].p == module.p, key
            dropouts += 1
        elif type(module).__name__ in blocks:
            drop = f"{key}.stochastic_depth"
            if module.use_res_connect:
                expected = module.stochastic_depth.p
                assert ours[drop].p == (pytest.approx(expected) if approx else expected), key
                residual[type(module).__name__] += 1
            else:
                assert drop not in ours, key
    return residual, dropouts
