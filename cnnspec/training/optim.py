"""The recipe's optimizer, from torch.optim.

Takes: a model, a `RunConfig`, the spec's layer names and the classifier's layers
(for `lr_head`). Returns: the torch.optim class the recipe names (SGD, Adam, AdamW,
NAdam, RAdam, RMSprop) with its hyperparameters, over the parameter groups of
`param_groups.parameter_groups` (each with its own weight decay and rate).

The schedule (`schedule.make_schedule`) and the weight average (`ema.make_ema`)
live in their own modules; their older names are kept here: `make_scheduler`,
`step_scheduler`, `make_ema`, `parameter_groups`.
"""

from __future__ import annotations

import torch

from .ema import WeightAverage, make_ema
from .errors import UsageError
from .param_groups import describe_groups, parameter_groups
from .schedule import LRSchedule, make_schedule

__all__ = ["make_optimizer", "current_lr", "make_scheduler", "step_scheduler",
           "make_ema", "WeightAverage", "parameter_groups", "describe_groups",
           "LRSchedule", "make_schedule"]


def make_optimizer(model: torch.nn.Module, config, layer_names,
                   head: frozenset[str] = frozenset()) -> torch.optim.Optimizer:
    """The recipe's optimizer over the trainable parameters of `model`; `head`
    names the classifier's layers for `lr_head`."""
    groups = parameter_groups(model, config, layer_names, head)
    o, decay = config.optimizer, config.weight_decay
    if o.kind == "sgd":
        if o.nesterov and o.momentum == 0:
            raise UsageError("sgd nesterov=true needs a momentum above 0")
        return torch.optim.SGD(groups, lr=o.lr, momentum=o.momentum,
                               nesterov=o.nesterov, weight_decay=decay)
    if o.kind == "rmsprop":
        return torch.optim.RMSprop(groups, lr=o.lr, alpha=o.alpha, eps=o.eps,
                                   momentum=o.momentum, weight_decay=decay)
    adam = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW,
            "nadam": torch.optim.NAdam, "radam": torch.optim.RAdam}[o.kind]
    return adam(groups, lr=o.lr, betas=o.betas, eps=o.eps, weight_decay=decay)


def current_lr(optimizer: torch.optim.Optimizer) -> float:
    return float(optimizer.param_groups[0]["lr"])


def make_scheduler(optimizer: torch.optim.Optimizer, config,
                   steps_per_epoch: int = 1) -> LRSchedule:
    """The older name of `schedule.make_schedule`."""
    return make_schedule(optimizer, config, steps_per_epoch)


def step_scheduler(schedule: LRSchedule, val_loss: float) -> None:
    """The older name of `LRSchedule.after_epoch`."""
    schedule.after_epoch(val_loss)
