"""The exponential moving average of the weights (`ema`), from torch.optim.swa_utils.

Takes: the model being trained (unwrapped: no DDP, not compiled), a `RunConfig`
whose `ema` is set, and the number of processes. Returns: a `WeightAverage`, a
`torch.optim.swa_utils.AveragedModel` with `get_ema_multi_avg_fn(decay)` over the
weights and buffers (batchnorm statistics included, so the average is usable as it
is, without a recalibration pass), and when to update it: `after_step(step, epoch)`
after every optimizer step. None when the run has no `ema`.

As torchvision's reference train.py (`--model-ema`): the average is updated every
`steps` optimizer steps; with `adjust`, the decay given is for a reference setting
and the one used is 1 - min(1, (1 - decay) x world_size x per-process batch x steps
/ epochs) (after pycls); during the warmup epochs the average is reset to the
weights after each update (its count set back to 0), so it starts from the
warmed-up weights instead of the random ones. cnnspec counts epochs from 1, the
reference from 0: its `epoch < warmup` is our `epoch - 1 < warmup` (so a
fractional warmup covers every epoch that starts inside it).
"""

from __future__ import annotations

import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from .schedule import run_warmup


class WeightAverage:
    def __init__(self, model: torch.nn.Module, decay: float, steps: int = 1,
                 warmup_epochs: float = 0.0):
        self.model, self.decay = model, decay
        self.steps, self.warmup_epochs = steps, warmup_epochs
        self.average = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay),
                                     use_buffers=True)

    @property
    def module(self) -> torch.nn.Module:
        """The averaged copy of the model, to evaluate or save."""
        return self.average.module

    @torch.no_grad()
    def after_step(self, step: int, epoch: int) -> None:
        """Call after every optimizer step; `step` counts the epoch's optimizer
        steps from 0, `epoch` the run's epochs from 1."""
        if step % self.steps != 0:
            return
        self.average.update_parameters(self.model)
        if epoch - 1 < self.warmup_epochs:
            self.average.n_averaged.fill_(0)  # the next update copies the weights

    def state_dict(self) -> dict:
        """The AveragedModel's state (`module.*` and `n_averaged`)."""
        return self.average.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.average.load_state_dict(state)


def ema_decay(config, world_size: int = 1) -> float:
    """The decay used: `ema.decay`, or with `adjust` the reference's adjustment for
    the run's batch, update interval and length. `config.batch` is the batch over
    all processes, the reference's world_size x per-process batch_size."""
    ema = config.ema
    if not ema.adjust:
        return ema.decay
    per_process = config.batch // world_size
    adjust = world_size * per_process * ema.steps / config.epochs
    alpha = min(1.0, (1.0 - ema.decay) * adjust)
    return 1.0 - alpha


def make_ema(model: torch.nn.Module, config, world_size: int = 1) -> WeightAverage | None:
    """The run's weight average, or None without `ema`."""
    if config.ema is None:
        return None
    warmup = config.ema.warmup_epochs
    if warmup is None:
        lr_warmup = run_warmup(config)
        warmup = lr_warmup.epochs if lr_warmup is not None else 0.0
    return WeightAverage(model, ema_decay(config, world_size), config.ema.steps, warmup)
