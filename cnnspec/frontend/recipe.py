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
Probability = Annotated[float, Field(ge=0, le=1)]
Size = Annotated[int, Field(ge=1)]


class _Part(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)


# -- optimizers: each is the torch.optim class of the same name ------------------

class SGD(_Part):
    kind: Literal["sgd"]
    lr: PositiveFloat
    momentum: NonNegativeFloat = 0.0
    nesterov: bool = False


class Adam(_Part):
    """torch.optim.Adam, AdamW, NAdam or RAdam."""

    kind: Literal["adam", "adamw", "nadam", "radam"]
    lr: PositiveFloat = 1e-3
    betas: tuple[float, float] = (0.9, 0.999)
    eps: PositiveFloat = 1e-8


class RMSprop(_Part):
    """torch.optim.RMSprop. TensorFlow puts eps inside the square root; torchvision's
    EfficientNet/MobileNet recipes approximate that with `alpha=0.9 eps=0.0316`
    (0.0316 = sqrt(1e-3)): write those."""

    kind: Literal["rmsprop"]
    lr: PositiveFloat
    alpha: float = 0.99
    momentum: NonNegativeFloat = 0.0
    eps: PositiveFloat = 1e-8


Optimizer = Annotated[Union[SGD, Adam, RMSprop], Field(discriminator="kind")]
OPTIMIZERS = ("sgd", "adam", "adamw", "nadam", "radam", "rmsprop")

# -- schedules: the rate as a function of the (fractional) epoch ------------------
# `per`: "iteration" steps the torch.optim.lr_scheduler every optimizer step (the
# epoch counts below become iteration counts); "epoch" steps it once per epoch, as
# torchvision's reference train.py does.
Per = Literal["iteration", "epoch"]


class StepSchedule(_Part):
    kind: Literal["step"]
    step_size: Annotated[int, Field(ge=1)]
    gamma: PositiveFloat = 0.1
    per: Per = "epoch"


class MultiStepSchedule(_Part):
    kind: Literal["multistep"]
    milestones: tuple[Annotated[int, Field(ge=1)], ...]
    gamma: PositiveFloat = 0.1
    per: Per = "epoch"


class PlateauSchedule(_Part):
    """Divide the rate by 1/factor when validation error stops improving (AlexNet).
    Always stepped per epoch (it needs the epoch's validation loss)."""

    kind: Literal["plateau"]
    factor: Annotated[float, Field(gt=0, lt=1)] = 0.1
    patience: Annotated[int, Field(ge=0)] = 10


class CosineSchedule(_Part):
    kind: Literal["cosine"]
    warmup_epochs: Annotated[int, Field(ge=0)] = 0  # older form of `warmup: linear`
    lr_min: NonNegativeFloat = 0.0
    per: Per = "iteration"


class ExponentialSchedule(_Part):
    """The rate times `gamma` every epoch (gamma ** (1/steps) every step)."""

    kind: Literal["exponential"]
    gamma: Annotated[float, Field(gt=0, le=1)]
    per: Per = "iteration"


class PolySchedule(_Part):
    """torch's PolynomialLR: rate * (1 - t/T) ** power, to 0 at the end."""

    kind: Literal["poly"]
    power: PositiveFloat = 1.0
    per: Per = "iteration"


class OneCycleSchedule(_Part):
    """torch's OneCycleLR; the optimizer's lr is the peak (max_lr). Has its own
    warmup (pct_start), so takes no `warmup` entry."""

    kind: Literal["onecycle"]
    pct_start: Annotated[float, Field(gt=0, lt=1)] = 0.3
    div_factor: PositiveFloat = 25.0
    final_div_factor: PositiveFloat = 1e4


class ConstantSchedule(_Part):
    kind: Literal["constant"]


Schedule = Annotated[Union[StepSchedule, MultiStepSchedule, PlateauSchedule,
                           CosineSchedule, ExponentialSchedule, PolySchedule,
                           OneCycleSchedule, ConstantSchedule],
                     Field(discriminator="kind")]
SCHEDULES = ("step", "multistep", "plateau", "cosine", "exponential", "poly",
             "onecycle", "constant")


class Warmup(_Part):
    """The first `epochs` (fractional allowed) before the schedule: `linear` ramps
    from start_factor * lr to lr (LinearLR), `constant` holds start_factor * lr
    (ConstantLR). Stepped as the schedule is (`per`)."""

    kind: Literal["linear", "constant"]
    epochs: PositiveFloat
    start_factor: Annotated[float, Field(gt=0, le=1)] = 0.01


class Init(_Part):
    """Weight initialisation: he (Kaiming), xavier (Glorot), or normal(0, std)."""

    kind: Literal["he", "xavier", "normal", "torchvision"]
    std: PositiveFloat = 0.01
    bias: float = 0.0


# -- augmentation: each kind is one torchvision.transforms.v2 transform -----------

class Crop(_Part):
    kind: Literal["random_crop", "random_resized_crop", "center_crop", "resize"]
    size: Size | None = None
    padding: Annotated[int, Field(ge=0)] = 0


class Flip(_Part):
    kind: Literal["horizontal_flip"]
    p: Probability = 0.5


class Colour(_Part):
    kind: Literal["color_jitter", "pca_lighting"]
    strength: NonNegativeFloat = 0.1


class Normalize(_Part):
    kind: Literal["normalize"]


class TrivialAugment(_Part):
    """v2.TrivialAugmentWide."""
    kind: Literal["trivial_augment"]


class RandAugment(_Part):
    """v2.RandAugment: `ops` operations per image at `magnitude` (0 to 30, of
    torchvision's 31 bins)."""
    kind: Literal["rand_augment"]
    ops: Annotated[int, Field(ge=1, le=14)] = 2
    magnitude: Annotated[int, Field(ge=0, le=30)] = 9


class AutoAugment(_Part):
    """v2.AutoAugment with the policy learned on ImageNet, CIFAR-10 or SVHN."""
    kind: Literal["auto_augment"]
    policy: Literal["imagenet", "cifar10", "svhn"] = "imagenet"


class AugMix(_Part):
    """v2.AugMix at `severity` 1 to 10."""
    kind: Literal["augmix"]
    severity: Annotated[int, Field(ge=1, le=10)] = 3


class RandomErasing(_Part):
    """v2.RandomErasing, applied after normalisation as torchvision's references do."""
    kind: Literal["random_erasing"]
    p: Probability = 0.5


Augmentation = Annotated[Union[Crop, Flip, Colour, Normalize, TrivialAugment,
                               RandAugment, AutoAugment, AugMix, RandomErasing],
                         Field(discriminator="kind")]
AUGMENTATIONS = ("random_crop", "random_resized_crop", "center_crop", "resize",
                 "horizontal_flip", "color_jitter", "pca_lighting", "normalize",
                 "trivial_augment", "rand_augment", "auto_augment", "augmix",
                 "random_erasing")


class Mixing(_Part):
    """v2.MixUp or v2.CutMix with Beta(alpha, alpha) mixing weights."""
    alpha: PositiveFloat = 1.0


class EMA(_Part):
    """An exponential moving average of the weights and buffers, updated every
    `steps` optimizer steps. With `adjust` (torchvision's reference, after pycls),
    the decay given is for a reference setting and the one used is
    1 - min(1, (1 - decay) * world_size * per_process_batch * steps / epochs).
    During the first `warmup_epochs` (default: the lr warmup's) the average is
    reset to the weights after each update, as the reference does."""
    decay: Annotated[float, Field(gt=0, lt=1)]
    steps: Annotated[int, Field(ge=1)] = 1
    adjust: bool = False
    warmup_epochs: NonNegativeFloat | None = None


class RepeatedAugment(_Part):
    """Each image `reps` times per epoch, each copy augmented on its own and sent
    to a different process (Hoffer et al. 2020; torchvision's RASampler)."""
    reps: Annotated[int, Field(ge=1)] = 3


LayerFactors = tuple[tuple[str, NonNegativeFloat], ...]  # (layer pattern, factor)


class Recipe(_Part):
    # optimisation
    optimizer: Optimizer | None = None
    schedule: Schedule | None = None
    warmup: Warmup | None = None
    epochs: Annotated[int, Field(ge=1)] | None = None
    batch: Annotated[int, Field(ge=1)] | None = None
    accumulate: Annotated[int, Field(ge=1)] = 1
    weight_decay: NonNegativeFloat = 0.0
    norm_weight_decay: NonNegativeFloat | None = None
    bias_weight_decay: NonNegativeFloat | None = None
    lr_mult: LayerFactors = ()
    decay_mult: LayerFactors = ()
    label_smoothing: Annotated[float, Field(ge=0, lt=1)] = 0.0
    ema: EMA | None = None
    init: Init | None = None
    # data
    augment: tuple[Augmentation, ...] = ()
    interpolation: Literal["bilinear", "bicubic", "nearest"] = "bilinear"
    val_resize: Size | None = None
    val_crop: Size | None = None
    mixup: Mixing | None = None
    cutmix: Mixing | None = None
    repeated_augment: RepeatedAugment | None = None


# Entries whose value is a plain number; the others name a kind: `sgd lr=0.01`.
SCALAR_ENTRIES = {"epochs", "batch", "accumulate", "weight_decay", "norm_weight_decay",
                  "bias_weight_decay", "label_smoothing", "val_resize", "val_crop"}
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
