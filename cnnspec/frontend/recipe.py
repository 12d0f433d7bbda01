"""The optional training recipe (`train { ... }` in a network), validated.

Takes: a network's `train` sections and an expression evaluator. Returns: a frozen
`Recipe` (`build_recipe`); a bad entry raises `SpecError` E0206 at that entry.
Training (a later stage) reads it; here it is only proved well-formed, so a typo in
a recipe fails at `cnnspec check`, not after an epoch.
"""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from . import syntax as S
from .arguments import invalid_value
from ..diagnostics import did_you_mean, error

PositiveFloat = Annotated[float, Field(gt=0)]
NonNegativeFloat = Annotated[float, Field(ge=0)]


class _Part(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)


class SGD(_Part):
    kind: Literal["sgd"]
    lr: PositiveFloat
    momentum: NonNegativeFloat = 0.0
    nesterov: bool = False


class Adam(_Part):
    kind: Literal["adam", "adamw"]
    lr: PositiveFloat = 1e-3
    betas: tuple[float, float] = (0.9, 0.999)


class RMSprop(_Part):
    kind: Literal["rmsprop"]
    lr: PositiveFloat
    alpha: float = 0.99
    momentum: NonNegativeFloat = 0.0
    eps: PositiveFloat = 1e-8


Optimizer = Annotated[Union[SGD, Adam, RMSprop], Field(discriminator="kind")]


class StepSchedule(_Part):
    kind: Literal["step"]
    step_size: Annotated[int, Field(ge=1)]
    gamma: PositiveFloat = 0.1


class MultiStepSchedule(_Part):
    kind: Literal["multistep"]
    milestones: tuple[Annotated[int, Field(ge=1)], ...]
    gamma: PositiveFloat = 0.1


class PlateauSchedule(_Part):
    """Divide the rate by 1/factor when validation error stops improving (AlexNet)."""

    kind: Literal["plateau"]
    factor: Annotated[float, Field(gt=0, lt=1)] = 0.1
    patience: Annotated[int, Field(ge=0)] = 10


class CosineSchedule(_Part):
    kind: Literal["cosine"]
    warmup_epochs: Annotated[int, Field(ge=0)] = 0


class ConstantSchedule(_Part):
    kind: Literal["constant"]


Schedule = Annotated[Union[StepSchedule, MultiStepSchedule, PlateauSchedule,
                           CosineSchedule, ConstantSchedule], Field(discriminator="kind")]


class Init(_Part):
    """Weight initialisation: he (Kaiming), xavier (Glorot), or normal(0, std)."""

    kind: Literal["he", "xavier", "normal", "torchvision"]
    std: PositiveFloat = 0.01
    bias: float = 0.0


class Augmentation(_Part):
    kind: Literal["random_crop", "random_resized_crop", "center_crop", "resize",
                  "horizontal_flip", "color_jitter", "pca_lighting", "normalize"]
    size: Annotated[int, Field(ge=1)] | None = None
    padding: Annotated[int, Field(ge=0)] = 0
    p: Annotated[float, Field(ge=0, le=1)] = 0.5
    strength: NonNegativeFloat = 0.1


class Recipe(_Part):
    optimizer: Optimizer | None = None
    schedule: Schedule | None = None
    epochs: Annotated[int, Field(ge=1)] | None = None
    batch: Annotated[int, Field(ge=1)] | None = None
    weight_decay: NonNegativeFloat = 0.0
    label_smoothing: Annotated[float, Field(ge=0, lt=1)] = 0.0
    init: Init | None = None
    augment: tuple[Augmentation, ...] = ()


# Entries whose value is a plain number; the others name a kind: `sgd lr=0.01`.
SCALAR_ENTRIES = {"epochs", "batch", "weight_decay", "label_smoothing"}
LIST_ENTRIES = {"augment"}


def build_recipe(sections, evaluate) -> Recipe | None:
    """The `train` sections of a network (evaluated with `evaluate`) as a Recipe."""
    if not sections:
        return None
    values, spans = {}, {}
    for entry in (e for section in sections for e in section.entries):
        if entry.key not in Recipe.model_fields:
            raise error("E0206", f"`train` has no entry `{entry.key}`", entry.span,
                        label="entries are " + ", ".join(Recipe.model_fields),
                        help=did_you_mean(entry.key, Recipe.model_fields))
        if entry.key not in LIST_ENTRIES and len(entry.values) > 1:
            raise error("E0206", f"`{entry.key}` takes one value", entry.span,
                        label=f"{len(entry.values)} values given",
                        help="only `augment` takes a comma-separated list")
        spans[entry.key] = entry.span
        for value in entry.values:
            spans.update({(entry.key, a.name): a.span for a in value.args if a.name})
        parts = [_recipe_value(entry.key, value, evaluate) for value in entry.values]
        values[entry.key] = parts if entry.key in LIST_ENTRIES else parts[0]
    try:
        return Recipe.model_validate(values)
    except ValidationError as problem:
        raise invalid_value("train", problem, spans, sections[0].span, Recipe) from None


def _recipe_value(key: str, value: S.TrainValue, evaluate):
    """`sgd lr=0.01` -> {"kind": "sgd", "lr": 0.01}; `90` -> 90."""
    args = value.args
    if key in SCALAR_ENTRIES:
        if len(args) != 1 or args[0].name is not None:
            raise error("E0206", f"`{key}` takes one number", value.span,
                        label=f"like `{key}: 90`")
        return evaluate(args[0].value)
    head = args[0]
    if head.name is not None or not isinstance(head.value, S.Variable):
        raise error("E0206", f"`{key}` starts with a kind, like `{key}: sgd lr=0.1`",
                    head.span)
    result: dict = {"kind": head.value.name}
    extra = [a for a in args[1:] if a.name is None]
    if extra:
        result["size"] = evaluate(extra[0].value)
    for arg in args[1:]:
        if arg.name is not None:
            result[arg.name] = evaluate(arg.value)
    return result
