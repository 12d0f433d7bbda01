"""The learning-rate schedule of a run, from torch.optim.lr_scheduler.

Takes: an optimizer, a `RunConfig` (schedule, warmup, epochs) and the optimizer
steps in an epoch. Returns: an `LRSchedule`, one torch scheduler (`.scheduler`)
and when to step it: `after_step()` after every optimizer step (it steps a
per-iteration schedule), `after_epoch(val_loss)` after each epoch (it steps a
per-epoch schedule, and `plateau` with the validation loss). `lr_curve` gives the
rate of every iteration of a whole run, `describe` the schedule in one line. A
warmup that cannot fit the run raises `UsageError`.

Per iteration, the epoch counts become iteration counts: T = epochs x steps and
W = round(warmup epochs x steps); the warmup (LinearLR from `start_factor` x lr, or
ConstantLR at it, for W steps) hands over to the main schedule with SequentialLR at
W, as torchvision's reference train.py does per epoch. Inside SequentialLR the
main schedule counts from the end of the warmup: cosine and poly run T - W steps,
and step/multistep's epochs count from there too, as in the reference.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
from torch.optim import lr_scheduler

from ..frontend.recipe import Warmup
from .errors import UsageError

# The older `cosine warmup_epochs=N` is `warmup: linear epochs=N` from this factor
# (torchvision's reference default --lr-warmup-decay).
LEGACY_WARMUP_START = 0.01


@dataclass
class LRSchedule:
    scheduler: lr_scheduler.LRScheduler
    per_iteration: bool
    steps_per_epoch: int

    @property
    def plateau(self) -> bool:
        return isinstance(self.scheduler, lr_scheduler.ReduceLROnPlateau)

    def after_step(self) -> None:
        """Call after every optimizer step."""
        if self.per_iteration:
            self.scheduler.step()

    def after_epoch(self, val_loss: float | None = None) -> None:
        """Call after each epoch's validation."""
        if self.plateau:
            self.scheduler.step(val_loss)
        elif not self.per_iteration:
            self.scheduler.step()

    def state_dict(self) -> dict:
        return self.scheduler.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.scheduler.load_state_dict(state)

    def fast_forward(self, epochs: int) -> None:
        """Step a freshly built schedule past `epochs` epochs already trained (a run
        lengthened on resume); plateau has nothing to replay. No optimizer step
        comes first, so torch's warning about that order does not apply."""
        if self.plateau:
            return
        steps = epochs * (self.steps_per_epoch if self.per_iteration else 1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            for _ in range(steps):
                self.scheduler.step()


def run_warmup(config) -> Warmup | None:
    """The run's warmup: `warmup`, or the older `cosine warmup_epochs=N`."""
    legacy = getattr(config.schedule, "warmup_epochs", 0)
    if legacy and config.warmup is not None:
        raise UsageError("the warmup is given twice (`warmup` and cosine's "
                         "`warmup_epochs`); keep `warmup`")
    if legacy:
        return Warmup(kind="linear", epochs=legacy, start_factor=LEGACY_WARMUP_START)
    return config.warmup


def is_per_iteration(config) -> bool:
    """Whether the schedule steps every optimizer step (plateau never does; onecycle
    and constant, which take no `per`, always do)."""
    if config.schedule.kind == "plateau":
        return False
    return getattr(config.schedule, "per", "iteration") == "iteration"


def make_schedule(optimizer: torch.optim.Optimizer, config, steps_per_epoch: int
                  ) -> LRSchedule:
    """The run's schedule on `optimizer` (see the module docstring)."""
    per_iteration = is_per_iteration(config)
    unit = steps_per_epoch if per_iteration else 1
    total = config.epochs * unit
    warmup = run_warmup(config)
    kind = config.schedule.kind
    if warmup is not None and kind in ("plateau", "onecycle"):
        raise UsageError(f"`{kind}` takes no warmup" + (
            " (pct_start is its own)" if kind == "onecycle" else
            " (it follows the validation loss, epoch by epoch)"))
    ramp = _warmup_steps(warmup, config.epochs, unit, per_iteration)
    main = _main_scheduler(optimizer, config, total - ramp, unit)
    if ramp == 0:
        return LRSchedule(main, per_iteration, steps_per_epoch)
    start = warmup.start_factor
    first = (lr_scheduler.LinearLR(optimizer, start_factor=start, total_iters=ramp)
             if warmup.kind == "linear" else
             lr_scheduler.ConstantLR(optimizer, factor=start, total_iters=ramp))
    chained = lr_scheduler.SequentialLR(optimizer, [first, main], milestones=[ramp])
    return LRSchedule(chained, per_iteration, steps_per_epoch)


def _warmup_steps(warmup: Warmup | None, epochs: int, unit: int,
                  per_iteration: bool) -> int:
    """The warmup's length in scheduler steps; it must leave some of the run."""
    if warmup is None:
        return 0
    if not per_iteration and not float(warmup.epochs).is_integer():
        raise UsageError(f"a warmup of {warmup.epochs:g} epochs needs a schedule "
                         "stepped every iteration (`per=iteration`); per epoch it "
                         "must be whole epochs")
    steps = round(warmup.epochs * unit)
    if warmup.epochs >= epochs or steps >= epochs * unit:
        raise UsageError(f"the recipe's warmup of {warmup.epochs:g} epochs leaves "
                         f"nothing of a {epochs}-epoch run for the schedule after it; "
                         f"give --epochs above {warmup.epochs:g}, or a shorter warmup "
                         "in the spec's `train { }`")
    return steps


def _main_scheduler(optimizer, config, length: int, unit: int):
    """The schedule after the warmup; `length` steps of it, `unit` steps an epoch."""
    s = config.schedule
    if s.kind == "cosine":
        return lr_scheduler.CosineAnnealingLR(optimizer, T_max=length, eta_min=s.lr_min)
    if s.kind == "exponential":
        return lr_scheduler.ExponentialLR(optimizer, gamma=s.gamma ** (1 / unit))
    if s.kind == "poly":
        return lr_scheduler.PolynomialLR(optimizer, total_iters=length, power=s.power)
    if s.kind == "step":
        return lr_scheduler.StepLR(optimizer, step_size=s.step_size * unit, gamma=s.gamma)
    if s.kind == "multistep":
        return lr_scheduler.MultiStepLR(optimizer, [m * unit for m in s.milestones],
                                        gamma=s.gamma)
    if s.kind == "plateau":
        return lr_scheduler.ReduceLROnPlateau(optimizer, mode="min", factor=s.factor,
                                              patience=s.patience)
    if s.kind == "onecycle":
        return lr_scheduler.OneCycleLR(
            optimizer, max_lr=[group["lr"] for group in optimizer.param_groups],
            total_steps=length, pct_start=s.pct_start, div_factor=s.div_factor,
            final_div_factor=s.final_div_factor,
            cycle_momentum=_has_momentum(optimizer))
    # constant: a scheduler that keeps the rate, so there is always one to save
    return lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0)


def _has_momentum(optimizer) -> bool:
    """OneCycleLR cycles the momentum (beta1 for the Adam family) only where the
    optimizer uses one: SGD or RMSprop with momentum > 0, or betas."""
    defaults = optimizer.defaults
    return "betas" in defaults or defaults.get("momentum", 0) > 0


def lr_curve(config, steps_per_epoch: int, base_lrs=None) -> list[float]:
    """The rate of every optimizer step of the whole run (the first group's), from
    the same torch schedulers run on a throwaway optimizer with one group per base
    rate (default: the recipe's lr). `plateau` depends on the validation loss, so
    its curve is the constant base rate."""
    base_lrs = list(base_lrs or [config.optimizer.lr])
    total = config.epochs * steps_per_epoch
    if config.schedule.kind == "plateau":
        return [float(base_lrs[0])] * total
    groups = [{"params": [torch.nn.Parameter(torch.zeros(1))], "lr": lr}
              for lr in base_lrs]
    optimizer = torch.optim.SGD(groups, lr=base_lrs[0])
    schedule = make_schedule(optimizer, config, steps_per_epoch)
    rates = []
    for _ in range(config.epochs):
        for _ in range(steps_per_epoch):
            rates.append(float(optimizer.param_groups[0]["lr"]))
            optimizer.step()  # no gradients: changes nothing, keeps torch's order
            schedule.after_step()
        schedule.after_epoch()
    return rates


def describe(config) -> str:
    """The schedule in one line: "linear warmup 5 epochs from 0.01x, then cosine to
    0, stepped every iteration"."""
    warmup = run_warmup(config)
    text = _describe_main(config.schedule)
    if warmup is not None:
        start = "from" if warmup.kind == "linear" else "at"
        text = (f"{warmup.kind} warmup {warmup.epochs:g} epochs {start} "
                f"{warmup.start_factor:g}x, then {text}")
    if config.schedule.kind == "constant" and warmup is None:
        return text
    every = "iteration" if is_per_iteration(config) else "epoch"
    return f"{text}, stepped every {every}"


def _describe_main(s) -> str:
    if s.kind == "cosine":
        return f"cosine to {s.lr_min:g}"
    if s.kind == "exponential":
        return f"x{s.gamma:g} every epoch"
    if s.kind == "poly":
        return f"polynomial (power {s.power:g}) to 0"
    if s.kind == "step":
        return f"x{s.gamma:g} every {s.step_size} epochs"
    if s.kind == "multistep":
        return f"x{s.gamma:g} at epochs {', '.join(map(str, s.milestones))}"
    if s.kind == "plateau":
        return (f"x{s.factor:g} after {s.patience} epochs without a lower "
                "validation loss")
    if s.kind == "onecycle":
        return (f"one cycle: from lr/{s.div_factor:g} up to lr over "
                f"{s.pct_start:.0%} of the run, then down to "
                f"lr/{s.div_factor * s.final_div_factor:g}")
    return "constant"


def unreached(config) -> str | None:
    """A note when the schedule's drops all lie beyond the run (a paper's milestones
    kept while `--epochs` shortened it), so the rate never changes; else None."""
    s = config.schedule
    if s.kind == "multistep" and min(s.milestones) >= config.epochs:
        where = f"milestones {', '.join(map(str, s.milestones))} are"
    elif s.kind == "step" and s.step_size >= config.epochs:
        where = f"step_size {s.step_size} is"
    else:
        return None
    return (f"the schedule's {where} beyond the run's {config.epochs} epochs: the rate "
            "never drops (write the recipe's own epochs, e.g. `train: name(epochs = N)`, "
            "to scale them)")
