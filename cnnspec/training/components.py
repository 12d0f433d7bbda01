"""The recipe's torch objects for one run, built in one place.

Takes: the plain (unwrapped) model, the checked spec, the `RunConfig`, the number
of processes, the optimizer steps in one epoch, the number of classes and the
device type. Returns: `Components` — the torch.optim optimizer over the recipe's
parameter groups, the learning-rate schedule stepped as the recipe says
(`schedule.LRSchedule`), the weight average (`ema.WeightAverage` or None), the fp16
GradScaler (or None) and the MixUp/CutMix batch mixer (or None). Raises
`UsageError` for a recipe the run cannot follow (a warmup longer than the run,
MixUp with one class, an `accumulate` that does not divide each process's batch).

Both `cnnspec train` (run.py) and `cnnspec recipe` (recipe_view.py) build through
here, so what `cnnspec recipe` shows is what the run then does.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .ema import make_ema
from .errors import UsageError
from .mixing import make_mixer
from .optim import make_optimizer
from .schedule import make_schedule
from .weights import head_layers


@dataclass
class Components:
    optimizer: torch.optim.Optimizer
    schedule: object          # schedule.LRSchedule
    ema: object | None        # ema.WeightAverage
    scaler: torch.amp.GradScaler | None
    mixer: object | None      # mixing.make_mixer's callable


def per_process_batch(config, processes: int) -> int:
    """Images one process takes per optimizer step; the recipe's batch must split
    evenly over the processes, and each process's share over `accumulate`."""
    per_rank, remainder = divmod(config.batch, processes)
    if remainder:
        raise UsageError(f"--batch {config.batch} does not split evenly over "
                         f"{processes} processes; use a multiple of {processes}")
    if per_rank % config.accumulate:
        where = f" per process ({processes} processes)" if processes > 1 else ""
        raise UsageError(
            f"accumulate {config.accumulate} does not divide the batch of "
            f"{per_rank}{where} into equal micro-batches; use a batch that is a "
            f"multiple of {config.accumulate * processes}, or another accumulate")
    return per_rank


def build_components(model: torch.nn.Module, spec, config, processes: int,
                     steps_per_epoch: int, classes: int, device_type: str
                     ) -> Components:
    head = frozenset(head_layers(spec)) if config.lr_head else frozenset()
    optimizer = make_optimizer(model, config, spec.layer_names, head)
    schedule = make_schedule(optimizer, config, steps_per_epoch)
    ema = make_ema(model, config, processes)
    scaler = torch.amp.GradScaler(device_type) if config.amp == "fp16" else None
    mixer = make_mixer(config.mixup, config.cutmix, classes)
    return Components(optimizer, schedule, ema, scaler, mixer)
