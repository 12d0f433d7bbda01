"""One training run, resolved: the spec's recipe, defaults and the user's overrides.

Takes: a `Recipe` (or None) and override keywords (the `cnnspec train` flags, or
`cnnspec.train(**overrides)`). Returns: a frozen, validated `RunConfig`, which is
what the run follows and what `run.json` stores. A bad override raises
`UsageError` naming the flag.
"""

from __future__ import annotations

import json
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ..frontend.recipe import EMA, Adam, Augmentation, CosineSchedule, EarlyStop, Init, \
    LayerFactors, Mixing, Optimizer, Recipe, RepeatedAugment, Schedule, Warmup
from .errors import UsageError
from .tracking import logger_names

# What a spec without `train { }` gets: a short, robust run (printed at the start).
DEFAULT_OPTIMIZER = Adam(kind="adamw", lr=1e-3)
DEFAULT_SCHEDULE = CosineSchedule(kind="cosine")
DEFAULT_EPOCHS = 10
DEFAULT_BATCH = 64


class RunConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    # -- the recipe, resolved (see frontend.recipe.Recipe for each entry)
    optimizer: Optimizer
    schedule: Schedule
    warmup: Warmup | None = None
    epochs: Annotated[int, Field(ge=1)]
    batch: Annotated[int, Field(ge=1)]  # the effective batch, over all processes
    accumulate: Annotated[int, Field(ge=1)] = 1  # micro-batches per optimizer step
    weight_decay: Annotated[float, Field(ge=0)] = 0.0
    norm_weight_decay: Annotated[float, Field(ge=0)] | None = None
    bias_weight_decay: Annotated[float, Field(ge=0)] | None = None
    lr_mult: LayerFactors = ()
    decay_mult: LayerFactors = ()
    decay_norm_bias: bool = True
    label_smoothing: Annotated[float, Field(ge=0, lt=1)] = 0.0
    init: Init | None = None
    augment: tuple[Augmentation, ...] = ()
    interpolation: Literal["bilinear", "bicubic", "nearest"] = "bilinear"
    val_resize: Annotated[int, Field(ge=1)] | None = None
    val_crop: Annotated[int, Field(ge=1)] | None = None
    mixup: Mixing | None = None
    cutmix: Mixing | None = None
    repeated_augment: RepeatedAugment | None = None
    clip_grad: Annotated[float, Field(gt=0)] | None = None
    ema: EMA | None = None
    early_stop: EarlyStop | None = None
    keep_top: Annotated[int, Field(ge=1)] | None = None
    # -- fine-tuning: start from a weights file, freeze layers by name
    weights: str | None = None
    freeze: tuple[str, ...] = ()
    unfreeze_from: str | None = None
    reinit: tuple[str, ...] = ()  # layers that start fresh instead of from `weights`
    lr_head: Annotated[float, Field(gt=0)] | None = None  # the classifier's own rate
    # -- where and how it runs
    seed: int = 0
    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"
    amp: Literal["off", "bf16", "fp16"] = "off"
    channels_last: bool = False
    compile: bool = False
    workers: Annotated[int, Field(ge=0)] = 0
    sync_batchnorm: bool = False
    val_fraction: Annotated[float, Field(gt=0, lt=1)] = 0.1
    skip_bad_images: bool = False  # leave undecodable images out instead of stopping
    log: tuple[str, ...] = ()  # experiment trackers: tensorboard, mlflow (tracking)
    # -- which entries came from defaults, which from flags (for the printout)
    defaults_used: tuple[str, ...] = ()
    flags: tuple[str, ...] = ()

    @field_validator("ema", mode="before")
    @classmethod
    def _ema_decay(cls, value):
        """`--ema 0.999` (and run.json of older runs): that decay, every step."""
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return {"decay": value}
        return value


# Overrides that replace a recipe entry, and the ones that only set how it runs.
RECIPE_OVERRIDES = {"epochs", "batch", "weight_decay", "label_smoothing", "accumulate",
                    "early_stop", "keep_top"}
RUN_OVERRIDES = {"seed", "device", "amp", "channels_last", "compile", "workers",
                 "sync_batchnorm", "val_fraction", "skip_bad_images", "clip_grad", "ema",
                 "decay_norm_bias", "weights", "freeze", "unfreeze_from", "reinit",
                 "lr_head", "log"}
OVERRIDES = RECIPE_OVERRIDES | RUN_OVERRIDES | {"lr"}


def resolve(recipe: Recipe | None, **overrides) -> RunConfig:
    """The run's configuration: spec entries, then defaults, then overrides."""
    unknown = sorted(set(overrides) - OVERRIDES)
    if unknown:
        raise UsageError(f"unknown training option `{unknown[0]}`; options are "
                            + ", ".join(sorted(OVERRIDES)))
    overrides = _normalized(overrides)
    recipe = recipe or Recipe()
    values = {name: getattr(recipe, name) for name in Recipe.model_fields}
    defaults = {"optimizer": DEFAULT_OPTIMIZER, "schedule": DEFAULT_SCHEDULE,
                "epochs": DEFAULT_EPOCHS, "batch": DEFAULT_BATCH}
    used = tuple(k for k, v in defaults.items() if values[k] is None and k not in overrides)
    flags = tuple(sorted(overrides))
    for key, default in defaults.items():
        if values[key] is None:
            values[key] = default
    if "lr" in overrides:
        values["optimizer"] = values["optimizer"].model_copy(
            update={"lr": overrides.pop("lr")})
    _patience(values, overrides)
    values.update(overrides)
    try:
        config = RunConfig.model_validate({**values, "defaults_used": used,
                                           "flags": flags})
    except ValidationError as problem:
        first = problem.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise UsageError(f"invalid training option `{where}`: {first['msg']}") from None
    if config.reinit and not config.weights:
        raise UsageError("--reinit leaves layers out of --weights; without weights "
                         "every layer starts fresh already")
    return config


def resume(saved: str, **overrides) -> RunConfig:
    """A checkpoint's configuration (JSON), with the overrides given on resuming
    (more `epochs`, another `device` or `workers`) applied on top."""
    values = json.loads(saved)
    overrides = _normalized(overrides)
    values["flags"] = sorted(set(values.get("flags", ())) | set(overrides))
    if "lr" in overrides:
        values["optimizer"]["lr"] = overrides.pop("lr")
    _patience(values, overrides)
    values.update(overrides)
    try:
        return RunConfig.model_validate(values)
    except ValidationError as problem:
        first = problem.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise UsageError(f"invalid training option `{where}`: {first['msg']}") from None


def _normalized(overrides: dict) -> dict:
    """Unknown options refused; unset ones dropped; `freeze="conv1,layer1.*"` (and
    `reinit`) as a tuple of patterns; a weights path as a string."""
    unknown = sorted(set(overrides) - OVERRIDES)
    if unknown:
        raise UsageError(f"unknown training option `{unknown[0]}`; options are "
                         + ", ".join(sorted(OVERRIDES)))
    overrides = {k: v for k, v in overrides.items() if v is not None}
    for name in ("freeze", "reinit"):
        if isinstance(overrides.get(name), str):
            overrides[name] = tuple(p.strip() for p in overrides[name].split(",")
                                    if p.strip())
    if "weights" in overrides:
        overrides["weights"] = str(overrides["weights"])
    if "log" in overrides:  # "tensorboard,mlflow" or a list: names, each once
        overrides["log"] = logger_names(overrides["log"])
    return overrides


def _patience(values: dict, overrides: dict) -> None:
    """`--early-stop N` sets the patience; the recipe's min_delta and metric stay."""
    if "early_stop" not in overrides or isinstance(overrides["early_stop"], EarlyStop):
        return
    given = values.get("early_stop")
    given = given.model_dump() if isinstance(given, EarlyStop) else dict(given or {})
    overrides["early_stop"] = {**given, "patience": overrides["early_stop"]}


def describe_optimizer(optimizer) -> str:
    """`sgd lr=0.01 momentum=0.9`: the recipe's own notation."""
    fields = optimizer.model_dump(exclude={"kind"}, exclude_defaults=True)
    if "lr" not in fields:
        fields["lr"] = optimizer.lr
    return " ".join([optimizer.kind] + [f"{k}={v}" for k, v in fields.items()])
