"""The recipe's optimizer, learning-rate schedule and weight average, from torch.optim.

Takes: a model and a `RunConfig`. Returns: a `torch.optim.Optimizer` over the
trainable parameters (weight decay optionally off for norm and bias parameters), an
epoch-stepped scheduler from `torch.optim.lr_scheduler` (or None for a constant
rate), and, when `ema` is set, a `torch.optim.swa_utils.AveragedModel`.
"""

from __future__ import annotations

import torch
from torch.optim import lr_scheduler
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

# A warmup starts at this fraction of the rate (Goyal et al. 2017 ramp linearly from
# a small rate; torchvision's reference scripts default to 0.01).
WARMUP_START = 0.01


def parameter_groups(model: torch.nn.Module, weight_decay: float, decay_norm_bias: bool,
                     head: frozenset[str] = frozenset(), lr_head: float | None = None):
    """Trainable parameters; with decay_norm_bias=False, the one-dimensional ones
    (batchnorm scales and shifts, biases) go in a group without weight decay. With
    `lr_head`, the parameters of the `head` layers (by name) get their own rate, as
    in discriminative fine-tuning (Howard & Ruder 2018): the new classifier learns
    fast while the pretrained body moves slowly."""
    trainable = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    parts = [(trainable, {})]
    if lr_head is not None:
        in_head = {name for name, _ in trainable if name.rpartition(".")[0] in head}
        parts = [([(n, p) for n, p in trainable if n not in in_head], {}),
                 ([(n, p) for n, p in trainable if n in in_head], {"lr": lr_head})]
    groups = []
    for named, options in parts:
        params = [p for _, p in named]
        if decay_norm_bias or weight_decay == 0:
            groups.append({"params": params, "weight_decay": weight_decay, **options})
        else:
            groups += [{"params": [p for p in params if p.ndim > 1],
                        "weight_decay": weight_decay, **options},
                       {"params": [p for p in params if p.ndim <= 1],
                        "weight_decay": 0.0, **options}]
    return [group for group in groups if group["params"]] or groups[:1]


def make_optimizer(model: torch.nn.Module, config, head: frozenset[str] = frozenset()
                   ) -> torch.optim.Optimizer:
    """The recipe's optimizer; `head` names the classifier's layers for `lr_head`."""
    groups = parameter_groups(model, config.weight_decay, config.decay_norm_bias,
                              head, config.lr_head)
    o = config.optimizer
    if o.kind == "sgd":
        return torch.optim.SGD(groups, lr=o.lr, momentum=o.momentum, nesterov=o.nesterov)
    if o.kind == "adam":
        return torch.optim.Adam(groups, lr=o.lr, betas=o.betas)
    if o.kind == "adamw":
        return torch.optim.AdamW(groups, lr=o.lr, betas=o.betas)
    return torch.optim.RMSprop(groups, lr=o.lr, alpha=o.alpha, momentum=o.momentum,
                               eps=o.eps)


def make_scheduler(optimizer: torch.optim.Optimizer, config):
    """Stepped once per epoch; `plateau` is stepped with the validation loss."""
    s = config.schedule
    if s.kind == "step":
        return lr_scheduler.StepLR(optimizer, s.step_size, s.gamma)
    if s.kind == "multistep":
        return lr_scheduler.MultiStepLR(optimizer, list(s.milestones), s.gamma)
    if s.kind == "plateau":
        return lr_scheduler.ReduceLROnPlateau(optimizer, mode="min", factor=s.factor,
                                              patience=s.patience)
    if s.kind == "cosine":
        warmup = min(s.warmup_epochs, config.epochs - 1)
        cosine = lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs - warmup)
        if warmup == 0:
            return cosine
        ramp = lr_scheduler.LinearLR(optimizer, start_factor=WARMUP_START,
                                     total_iters=warmup)
        return lr_scheduler.SequentialLR(optimizer, [ramp, cosine], milestones=[warmup])
    return None


def step_scheduler(scheduler, val_loss: float) -> None:
    if isinstance(scheduler, lr_scheduler.ReduceLROnPlateau):
        scheduler.step(val_loss)
    elif scheduler is not None:
        scheduler.step()


def make_ema(model: torch.nn.Module, decay: float | None) -> AveragedModel | None:
    """An exponential moving average of the weights and buffers (batchnorm statistics
    included, so the average is usable as it is, without a recalibration pass)."""
    if decay is None:
        return None
    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)


def current_lr(optimizer: torch.optim.Optimizer) -> float:
    return float(optimizer.param_groups[0]["lr"])
