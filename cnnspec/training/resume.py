"""Resuming a run: what it was built from, what the flags given on resuming change,
and the state put back.

Takes: a checkpoint (`checkpoint.read_checkpoint`) and the flags given with
`--resume`. Returns: the spec's parameters the run was built with (`classes` taken
from the data included), the resumed `RunConfig` with one note per change and
what it means, and, from `restore`, the model, optimizer, scheduler, scaler and EMA
as the checkpoint left them. Raises `UsageError` for a change the saved state
cannot follow (other layers frozen, a split of the data that would leak validation
images into training) and for a run that has nothing left to do.

A longer run (`--epochs` above the planned count) with a schedule whose shape
depends on the length (cosine) gets the schedule of a run planned that long from
the start, continued from the epochs already done; the saved state of the
lengthened run then resumes exactly as any other.
"""

from __future__ import annotations

import json
from pathlib import Path

from .config import RunConfig, resume as resume_config
from .errors import UsageError
from .retention import early_stopping

# Schedules whose every rate depends on the planned number of epochs.
LENGTH_DEPENDENT = {"cosine", "poly", "onecycle"}

# Options the saved state cannot follow: which parameters train and in which
# optimizer groups, where the run started from, and which images are validation.
FIXED = {"weights": "--weights", "freeze": "--freeze", "unfreeze_from": "--unfreeze-from",
         "reinit": "--reinit", "decay_norm_bias": "--no-decay-norm-bias",
         "val_fraction": "--val-fraction", "skip_bad_images": "--skip-bad-images"}

# Options that change how the run goes on; each gets a note when it changes.
MEANINGS = {
    "batch": "each epoch now takes steps of another size; the learning rate is not "
             "scaled with the batch (scale --lr yourself if the recipe needs it); a "
             "schedule stepped every iteration is rebuilt for the new steps per epoch",
    "accumulate": "each step's batch is split into that many micro-batches from the "
                  "next step: the same update without batchnorm, in less memory",
    "lr": "the epochs to come get the schedule's rates for the new base rate",
    "weight_decay": "the optimizer's decay changes from the next step",
    "label_smoothing": "the training loss changes from the next step",
    "clip_grad": "gradient clipping changes from the next step",
    "ema": "the weight average goes on with the new decay",
    "seed": "data order and augmentation from here on differ from the run's seed, "
            "so the result is not what an uninterrupted run would give",
    "amp": "the arithmetic precision changes from the next step",
    "early_stop": "epochs without improvement are counted by the new rule (over the "
                  "whole history when its metric or min_delta changed)",
    "keep_top": "the weights of that many best epochs are kept; the files of epochs "
                "no longer among them are deleted",
}


def saved_params(state: dict, run_dir: Path) -> dict:
    """The spec parameters the run was built with: stored in the checkpoint, or, for
    a checkpoint of an older cnnspec, in run.json."""
    if "params" in state:
        return dict(state["params"])
    try:
        return dict(json.loads((Path(run_dir) / "run.json").read_text())["params"])
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def resumed_config(state: dict, run_dir: Path, overrides: dict
                   ) -> tuple[RunConfig, list[str]]:
    """The checkpoint's configuration with the flags given on resuming, and a note
    for each change that alters the result."""
    before = RunConfig.model_validate_json(state["config"])
    after = resume_config(state["config"], **overrides)
    for name, flag in FIXED.items():
        if getattr(after, name) != getattr(before, name):
            raise UsageError(
                f"{flag} cannot change when resuming {run_dir} (it was "
                f"{_shown(getattr(before, name))}): the saved optimizer state and "
                "data split belong to the old value; start a new run with --out")
    for name in ("ema", "lr_head"):
        if (getattr(after, name) is None) != (getattr(before, name) is None):
            what = "weight average" if name == "ema" else "separate classifier rate"
            has = "no" if getattr(before, name) is None else "its"
            raise UsageError(
                f"--{name.replace('_', '-')} cannot be switched on or off when resuming "
                f"{run_dir}: the saved state has {has} {what}; start a new run with "
                "--out")
    done = state["epoch"]
    _check_epochs(after.epochs, before.epochs, done, "epochs" in overrides
                  and overrides["epochs"] is not None, run_dir)
    _check_stopped(after, state, run_dir)
    return after, _changes(before, after, done)


def _check_stopped(config: RunConfig, state: dict, run_dir) -> None:
    """A run that stopped early has finished, unless a larger patience is given."""
    stopping = early_stopping(config.early_stop, state.get("early_stop"),
                              list(state["history"]))
    if stopping is not None and stopping.stopped:
        raise UsageError(f"{run_dir} stopped early after epoch {state['epoch']}: "
                         f"{stopping.reason()}; to train it on, give --early-stop with "
                         f"a patience above {stopping.waited}")


def _check_epochs(epochs: int, planned: int, done: int, given: bool, run_dir) -> None:
    if epochs > done:
        return
    if given:
        raise UsageError(f"{run_dir} has already trained {done} epochs; --epochs "
                         f"{epochs} leaves nothing to do: give more than {done} to train "
                         "it longer")
    raise UsageError(f"{run_dir} has finished all {planned} epochs of its run; to "
                     f"train it longer give --epochs N with N above {done}")


def _changes(before: RunConfig, after: RunConfig, done: int) -> list[str]:
    notes = []
    if after.epochs != before.epochs:
        note = f"epochs: {after.epochs} (the run planned {before.epochs})"
        if after.schedule.kind in LENGTH_DEPENDENT:
            note += (f"; the {after.schedule.kind} schedule is rebuilt for "
                     f"{after.epochs} epochs: {_epochs(done + 1, after.epochs)} get the "
                     f"rates of a run planned for {after.epochs} ({_epochs(1, done)} "
                     f"had those of one planned for {before.epochs})")
        notes.append(note)
    pairs = {name: (getattr(before, name), getattr(after, name))
             for name in MEANINGS if name != "lr"}
    pairs["lr"] = (before.optimizer.lr, after.optimizer.lr)
    for name, (old, new) in pairs.items():
        if old != new:
            notes.append(f"{name}: {_shown(new)} (the run used {_shown(old)}); "
                         f"{MEANINGS[name]}")
    return notes


def _epochs(first: int, last: int) -> str:
    return f"epoch {first}" if first == last else f"epochs {first}-{last}"


def _shown(value) -> str:
    if value is None:
        return "none"
    if isinstance(value, tuple):
        return ",".join(value) or "none"
    if hasattr(value, "model_dump"):  # early_stop: `patience=5 min_delta=0`
        return " ".join(f"{k}={_shown(v)}" for k, v in value.model_dump().items())
    return f"{value:g}" if isinstance(value, float) else str(value)


def restore(state: dict, model, optimizer, scheduler, scaler, ema, config: RunConfig):
    """Put the checkpoint's state into freshly built objects (made from `config`);
    returns (history, the first epoch to run). The optimizer's hyperparameters are
    `config`'s, its moments the checkpoint's."""
    before = RunConfig.model_validate_json(state["config"])
    rebuild = _rebuilt_schedule(before, config, scheduler)
    if rebuild:
        scheduler.fast_forward(state["epoch"])
    # A rebuilt schedule's rates are the fresh groups' own; otherwise the saved ones.
    kept = {"params"} if rebuild else {"params", "lr", "initial_lr"}
    fresh = [{k: v for k, v in group.items() if k not in kept}
             for group in optimizer.param_groups]
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    if not rebuild:
        scheduler.load_state_dict(state["scheduler"])
    for group, settings in zip(optimizer.param_groups, fresh):
        group.update(settings)
    if not rebuild and before.optimizer.lr != config.optimizer.lr:
        _set_base_lr(optimizer, scheduler, before.optimizer.lr, config.optimizer.lr)
    if scaler is not None and state["scaler"]:
        scaler.load_state_dict(state["scaler"])
    if ema is not None and state["ema"]:
        ema.load_state_dict(state["ema"])
    return list(state["history"]), state["epoch"] + 1


def _rebuilt_schedule(before: RunConfig, after: RunConfig, schedule) -> bool:
    """Whether the resumed run takes a freshly built schedule moved past the epochs
    done instead of the saved one: a longer run of a schedule shaped by its length,
    or a per-step schedule whose epochs now have another number of steps (another
    --batch). Either way each epoch to come gets the rate a run planned like this
    from the start would give it."""
    if schedule.scheduler is None:
        return False
    longer = after.epochs != before.epochs and after.schedule.kind in LENGTH_DEPENDENT
    return longer or (schedule.per_iteration and after.batch != before.batch)


def _set_base_lr(optimizer, scheduler, old: float, new: float) -> None:
    """Resumed with another --lr: every group whose rate follows the optimizer's
    (`lr_scale` set by param_groups: not the classifier's own `lr_head`) has its
    current and base rates scaled by new/old, so the epochs to come get what the
    schedule gives with the new base (torch's schedulers step multiplicatively, so
    the scaling carries on). `initial_lr` and the schedulers' own copies of the
    base rates (`base_lrs`, OneCycleLR's `max_lr`/`min_lr`) move with them."""
    ratio = new / old
    changed = [index for index, group in enumerate(optimizer.param_groups)
               if group.get("lr_scale", 1.0) is not None]
    for index in changed:
        group = optimizer.param_groups[index]
        for key in ("lr", "initial_lr", "max_lr", "min_lr"):
            if key in group:
                group[key] = group[key] * ratio
    scheduler = scheduler.scheduler
    for inner in [scheduler] + list(getattr(scheduler, "_schedulers", [])):
        if hasattr(inner, "base_lrs"):
            for index in changed:
                inner.base_lrs[index] = inner.base_lrs[index] * ratio
        if hasattr(inner, "_last_lr"):
            for index in changed:
                inner._last_lr[index] = optimizer.param_groups[index]["lr"]
