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
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

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
