"""The optional training recipe (`train { ... }` in a network), validated.

Takes: the entries of a `train` section, each evaluated to `(kind, keywords)` values.
Returns: a frozen `Recipe`. Training (a later stage) reads it; here it is only proved
well-formed, so a typo in a recipe fails at `cnnspec check`, not after an epoch.
"""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field

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
