"""The recipe's optimizer, from torch.optim.

Takes: a model, a `RunConfig`, the spec's layer names and the classifier's layers
(for `lr_head`). Returns: the torch.optim class the recipe names (SGD, Adam, AdamW,
NAdam, RAdam, RMSprop) with its hyperparameters, over the parameter groups of
`param_groups.parameter_groups` (each with its own weight decay and rate).

The schedule (`schedule.make_schedule`) and the weight average (`ema.make_ema`)
live in their own modules.
"""

from __future__ import annotations

import torch

from .errors import UsageError
from .param_groups import parameter_groups


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
