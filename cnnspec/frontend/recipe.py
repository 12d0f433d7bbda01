"""The optional training recipe: `train { ... }` sections and `train: name(...)`
calls in a network, and the `recipe` definitions they call, validated.

Takes: a network's train sections and recipe calls (in the order written), its
parameter values and the recipes in scope. Returns: a `BuiltRecipe` (`build_recipe`):
the frozen `Recipe`, where each entry came from (for `cnnspec recipe`), and the spans
that `check_against_network` needs once the network's layers and output are known. A
bad entry raises `SpecError` (E0206, or E0202-E0205 for a recipe call) at that entry
or argument. Training (a later stage) reads the Recipe; here it is only proved
well-formed, so a typo in a recipe fails at `cnnspec check`, not after an epoch.
"""

from __future__ import annotations

import typing
from fnmatch import fnmatchcase
from functools import lru_cache
from typing import Annotated, Literal, NamedTuple, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from . import syntax as S
from .arguments import invalid_value
from .expressions import Evaluator
from ..diagnostics import Span, SpecError, did_you_mean, error

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


class EarlyStop(_Part):
    """Stop the run once the validation `metric` has not improved by more than
    `min_delta` (top-1 as a fraction: 0.001 is 0.1 points) for `patience` epochs in
    a row. `val_top1` improves upwards, `val_loss` downwards."""
    patience: Annotated[int, Field(ge=1)]
    min_delta: NonNegativeFloat = 0.0
    metric: Literal["val_top1", "val_loss"] = "val_top1"


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
    # the run's end and what it keeps
    early_stop: EarlyStop | None = None
    keep_top: Annotated[int, Field(ge=1)] | None = None  # the K best epochs' weights


# -- the language: entries by the form of their value ------------------------------
# A plain number: `epochs: 90`. A bare word: `interpolation: bicubic`. Layer patterns
# with factors: `lr_mult: layer4=0.1, fc=10`. Keywords only: `mixup: alpha=0.2`. The
# others start with a kind: `optimizer: sgd lr=0.1`; `augment` takes a list of them.
SCALAR_ENTRIES = {"epochs", "batch", "accumulate", "weight_decay", "norm_weight_decay",
                  "bias_weight_decay", "label_smoothing", "val_resize", "val_crop",
                  "keep_top"}
WORD_ENTRIES = {"interpolation"}
FACTOR_ENTRIES = {"lr_mult", "decay_mult"}
KEYWORD_ENTRIES = {"mixup", "cutmix", "ema", "repeated_augment", "early_stop"}
LIST_ENTRIES = {"augment"}
# What one value of a kind entry is called in messages.
_NOUNS = {"optimizer": "optimizer", "schedule": "schedule", "warmup": "warmup",
          "init": "initialisation", "augment": "augmentation"}


def matches_layer(name: str, pattern: str) -> bool:
    """`layer1` matches layer1 and everything in it; globs match dotted names. The
    rule of `--freeze` and of `lr_mult`/`decay_mult`."""
    return (fnmatchcase(name, pattern) or name.startswith(pattern + ".")
            or any(fnmatchcase(name[:i], pattern) for i, c in enumerate(name) if c == "."))


class Setting(NamedTuple):
    """One entry of the recipe as applied: its validated value and where it was
    written (`span`, and the keywords' or layer patterns' own spans in `args`)."""

    value: object
    span: Span
    args: dict
    origin: str  # "specs/resnet50.cnn:41", or "recipe tv (...:12), called at ...:40"


class BuiltRecipe(NamedTuple):
    recipe: Recipe
    sources: dict[str, str]  # entry -> where it came from, as `Setting.origin`
    settings: dict[str, Setting]


def build_recipe(sections, env: dict, recipes: dict | None = None) -> BuiltRecipe | None:
    """A network's `train { }` sections and `train: name(...)` calls (in the order
    written; a later entry replaces an earlier one whole), evaluated with the
    network's parameters `env`, as a validated recipe. `recipes`: the `recipe`
    definitions in scope, by name."""
    if not sections:
        return None
    settings = _Applier(env, recipes or {}).apply(sections)
    recipe = Recipe.model_validate({key: s.value for key, s in settings.items()})
    _check_consistent(settings)
    return BuiltRecipe(recipe, {key: s.origin for key, s in settings.items()}, settings)


def check_against_network(built: BuiltRecipe, network: str, layers: list[str],
                          output_shape: tuple[int, ...]) -> None:
    """The entries that need the elaborated network: every `lr_mult`/`decay_mult`
    pattern matches a layer, and mixing labels needs two class scores or more."""
    tops = sorted({name.split(".")[0] for name in layers})
    for key in sorted(FACTOR_ENTRIES & built.settings.keys()):
        setting = built.settings[key]
        for pattern, span in setting.args.items():
            if not any(matches_layer(name, pattern) for name in layers):
                raise error("E0206", f"`{pattern}` in `{key}` matches no layer of "
                            f"`{network}`", span, label="a pattern is a layer name or a "
                            "glob, as `--freeze` takes them: `layer4`, \"layer4.*.conv2\"",
                            help=did_you_mean(pattern, tops) or did_you_mean(
                                pattern, layers) or "layers are named like "
                            + ", ".join(layers[:4]), notes=_origin_note(setting))
    scores = output_shape[0] if output_shape else 0
    for key in ("mixup", "cutmix"):
        setting = built.settings.get(key)
        if setting is not None and scores < 2:
            shape = "x".join(map(str, output_shape))
            raise error("E0206", f"`{key}` needs an output of two class scores or more",
                        setting.span, label=f"`{network}` gives {shape}",
                        help=f"{key} blends the labels of two images; drop `{key}` for "
                        "a network with one output", notes=_origin_note(setting))


# ---------------------------------------------------------------- applying entries


class _Applier:
    """Applies entries and recipe calls in order, in one environment: a network's
    parameters, or a recipe's (`recipe` is then its name, for the origins)."""

    def __init__(self, env: dict, recipes: dict, recipe: str | None = None,
                 chain: tuple[str, ...] = ()):
        self.env = env
        self.recipes = recipes
        self.recipe = recipe
        self.chain = chain  # the recipes being applied, outermost first
        self.at: Span | None = None  # the entry or call being applied
        self.evaluate = Evaluator(env, self.no_input)

    def apply(self, items) -> dict[str, Setting]:
        settings: dict[str, Setting] = {}
        for item in items:
            self.at = item.span
            if isinstance(item, S.TrainCall):
                settings.update(self.call(item))
                continue
            for entry in item.entries if isinstance(item, S.TrainStatement) else (item,):
                self.at = entry.span
                settings[entry.key] = self.entry(entry)
        return settings

    def no_input(self):
        raise error("E0211", "`in` means the input of a layer", self.at,
                    label="a training recipe has no layer input")

    def origin(self, span: Span) -> str:
        where = f"{span.file}:{span.line}"
        return where if self.recipe is None else f"recipe {self.recipe} ({where})"

    # -- recipe calls

    def call(self, call: S.TrainCall) -> dict[str, Setting]:
        definition = self.recipes.get(call.name)
        if definition is None:
            raise error("E0202", f"unknown recipe `{call.name}`", call.name_span,
                        label="no recipe by this name is defined or imported here",
                        help=did_you_mean(call.name, self.recipes) or "`train:` "
                        "applies a recipe: define it with `recipe NAME(...) { ... }`, or "
                        "`import` the file that does (no layer may be called `train`)")
        if call.name in self.chain:
            cycle = " -> ".join(self.chain[self.chain.index(call.name):] + (call.name,))
            raise error("E0208", f"recipe `{call.name}` extends itself", call.span,
                        label=cycle, help="a recipe may extend another, never itself")
        env = self.bind(definition, call)
        inner = _Applier(env, self.recipes, call.name, self.chain + (call.name,))
        try:
            settings = inner.apply(definition.body)
        except SpecError as problem:
            raise _noted(problem, f"in recipe `{call.name}` applied at {call.span}") \
                from None
        where = f"{call.span.file}:{call.span.line}"
        called = f", called at {where}" + (f" in recipe {self.recipe}" if self.recipe
                                           else "")
        return {key: s._replace(origin=s.origin + called) for key, s in settings.items()}

    def bind(self, definition: S.Definition, call: S.TrainCall) -> dict:
        """The recipe's parameters from the call's arguments and the defaults."""
        names = [p.name for p in definition.params]
        where = (f"`{definition.name}` is defined at {definition.name_span}",)
        positional = [a for a in call.args if a.name is None]
        if len(positional) > len(names):
            raise error("E0205", f"recipe `{definition.name}` takes {len(names)} "
                        f"argument{'s' if len(names) != 1 else ''}",
                        positional[len(names)].span, label=f"{len(positional)} given",
                        notes=where)
        given = {p.name: self.argument(a.value) for p, a in zip(definition.params,
                                                                  positional)}
        for arg in (a for a in call.args if a.name is not None):
            if arg.name not in names:
                raise error("E0203", f"recipe `{definition.name}` has no parameter "
                            f"`{arg.name}`", arg.span, label="its parameters are "
                            + (", ".join(names) or "none"), help=did_you_mean(arg.name,
                                                                              names))
            if arg.name in given:
                raise error("E0203", f"`{arg.name}` is given twice", arg.span)
            given[arg.name] = self.argument(arg.value)
        env: dict = {}
        for param in definition.params:
            if param.name in given:
                env[param.name] = given[param.name]
            elif param.default is not None:
                defaults = _Applier(env, {})
                defaults.at = param.span
                env[param.name] = defaults.argument(param.default)
            else:
                raise error("E0204", f"recipe `{definition.name}` needs `{param.name}`",
                            call.span, label=f"`{param.name}` has no default",
                            help=f"pass it: `train: {definition.name}({param.name} = ...)`",
                            notes=where)
        return env

    def argument(self, expr: S.Expr):
        """A recipe argument: an expression, or a bare word such as `epoch`."""
        if type(expr) is S.Variable and expr.name not in self.env:
            return expr.name
        return self.evaluate(expr)

    # -- entries

    def entry(self, entry: S.TrainEntry) -> Setting:
        key = entry.key
        if key not in Recipe.model_fields:
            raise error("E0206", f"`train` has no entry `{key}`", entry.span,
                        label="entries are " + ", ".join(Recipe.model_fields),
                        help=did_you_mean(key, Recipe.model_fields))
        if key not in LIST_ENTRIES | FACTOR_ENTRIES and len(entry.values) > 1:
            raise error("E0206", f"`{key}` takes one value", entry.span,
                        label=f"{len(entry.values)} values given",
                        help="only `augment`, `lr_mult` and `decay_mult` take a "
                        "comma-separated list")
        if key in FACTOR_ENTRIES:
            value, args = self.factors(entry)
        elif key in LIST_ENTRIES:
            value, args = tuple(self.kinded(key, v, listed=True)[0]
                                for v in entry.values), {}
        else:
            form = (self.scalar if key in SCALAR_ENTRIES else self.word if key in
                    WORD_ENTRIES else self.keywords if key in KEYWORD_ENTRIES else
                    self.kinded)
            value, args = form(key, entry.values[0])
        return Setting(value, entry.span, args, self.origin(entry.span))

    def scalar(self, key: str, value: S.TrainValue):
        """`epochs: 90`."""
        args = value.args
        if len(args) != 1 or args[0].name is not None:
            raise error("E0206", f"`{key}` takes one number", value.span,
                        label=f"like `{key}: 90`")
        return _validated(key, self.evaluate(args[0].value), value.span, {}), {}

    def word(self, key: str, value: S.TrainValue):
        """`interpolation: bicubic`."""
        args = value.args
        if len(args) != 1 or args[0].name is not None:
            raise error("E0206", f"`{key}` takes one word", value.span,
                        label="one of " + ", ".join(_words(Recipe, key)))
        word = self.field(Recipe, key, args[0].value, key)
        return _validated(key, word, value.span, {}), {}

    def factors(self, entry: S.TrainEntry):
        """`lr_mult: layer4=0.1, "layer3.*"=0.5`: (pattern, factor) pairs."""
        pairs, spans = [], {}
        for arg in (a for value in entry.values for a in value.args):
            if arg.name is None:
                raise error("E0206", f"`{entry.key}` takes layer patterns with factors",
                            arg.span, label=f"like `{entry.key}: layer4=0.1, fc=10`",
                            help="a pattern with dots or stars is quoted: "
                            "`\"layer4.*.conv2\"=0.5`")
            if arg.name in spans:
                raise error("E0206", f"`{arg.name}` is given twice in `{entry.key}`",
                            arg.span, notes=(f"first given at {spans[arg.name]}",))
            factor = self.evaluate(arg.value)
            if isinstance(factor, bool) or not isinstance(factor, (int, float)) \
                    or factor < 0:
                raise error("E0206", f"bad value for `{entry.key}` in `train`", arg.span,
                            label=f"the factor of `{arg.name}` must be a number >= 0, "
                            f"found {factor!r}")
            pairs.append((arg.name, float(factor)))
            spans[arg.name] = arg.span
        return _validated(entry.key, tuple(pairs), entry.span, {}), spans

    def keywords(self, key: str, value: S.TrainValue):
        """`ema: decay=0.99998 steps=32`."""
        model = _models(key)[None]
        first = next(iter(_keywords_of(model)))
        for arg in value.args:
            if arg.name is None:
                raise error("E0206", f"`{key}` takes keywords only", arg.span,
                            label=f"like `{key}: {first}=...`",
                            help=f"`{key}` takes " + ", ".join(_keywords_of(model)))
        raw, spans = self.named(key, model, value.args)
        _require(key, model, raw, value.span)
        return _validated(key, raw, value.span, spans), spans

    def kinded(self, key: str, value: S.TrainValue, listed: bool = False):
        """`sgd lr=0.1 momentum=0.9`; `random_resized_crop 176` (a size by position)."""
        head, rest = value.args[0], value.args[1:]
        kinds = _models(key)
        if head.name is not None or not isinstance(head.value, S.Variable):
            raise error("E0206", f"`{key}` starts with a kind, like `{key}: "
                        f"{next(iter(kinds))} ...`", head.span,
                        label="kinds are " + ", ".join(kinds))
        kind = head.value.name
        if isinstance(self.env.get(kind), str):  # a recipe parameter: `opt = sgd`
            kind = self.env[kind]
        if kind not in kinds:
            raise error("E0206", f"unknown {_NOUNS.get(key, key)} `{kind}`", head.span,
                        label=f"`{key}` takes " + ", ".join(kinds),
                        help=did_you_mean(kind, kinds))
        model = kinds[kind]
        raw, spans = self.positional(kind, model, rest)
        named, named_spans = self.named(kind, model, rest)
        raw.update(named)
        spans.update(named_spans)
        _require(kind, model, raw, value.span)
        raw["kind"] = kind
        if listed:
            return _validated(key, [raw], value.span, spans)[0], spans
        return _validated(key, raw, value.span, spans), spans

    def positional(self, kind: str, model, args) -> tuple[dict, dict]:
        """The one value a crop or resize takes by position: its size."""
        given = [a for a in args if a.name is None]
        if not given:
            return {}, {}
        if "size" not in model.model_fields or len(given) > 1:
            extra = given[1] if "size" in model.model_fields else given[0]
            keywords = _keywords_of(model)
            raise error("E0205", f"too many values by position for `{kind}`", extra.span,
                        label=f"`{kind}` takes "
                        + ("its size by position" if "size" in model.model_fields
                           else "nothing by position"),
                        help="name the others: " + ", ".join(f"{k}=" for k in keywords)
                        if keywords else f"`{kind}` takes no values")
        return {"size": self.evaluate(given[0].value)}, {"size": given[0].span}

    def named(self, what: str, model, args) -> tuple[dict, dict]:
        """The keyword arguments, each one the model takes, given once."""
        raw, spans = {}, {}
        allowed = _keywords_of(model)
        for arg in (a for a in args if a.name is not None):
            if arg.name not in allowed:
                raise error("E0206", f"`{what}` has no keyword `{arg.name}`", arg.span,
                            label="it takes " + (", ".join(allowed) or "no keywords"),
                            help=did_you_mean(arg.name, allowed))
            if arg.name in raw:
                raise error("E0206", f"`{arg.name}` is given twice", arg.span,
                            notes=(f"first given at {spans[arg.name]}",))
            raw[arg.name] = self.field(model, arg.name, arg.value, what)
            spans[arg.name] = arg.span
        return raw, spans

    def field(self, model, name: str, expr: S.Expr, what: str):
        """A keyword's value. Where the field takes words (`per=epoch`), a name that
        is no parameter is the word itself; an unknown word is refused here."""
        words = _words(model, name)
        if words and type(expr) is S.Variable and expr.name not in self.env:
            value = expr.name
        else:
            value = self.evaluate(expr)
        if words and isinstance(value, str) and value not in words:
            of = "" if what == name else f" of `{what}`"
            raise error("E0206", f"`{name}`{of} cannot be `{value}`", expr.span,
                        label=f"`{name}` is " + _either(words),
                        help=did_you_mean(value, words))
        return value


# ---------------------------------------------------------------- checks


def _check_consistent(settings: dict[str, Setting]) -> None:
    """Entries that contradict each other (each only when both are given)."""
    get = settings.get
    if get("warmup") is not None and get("schedule") is not None:
        _check_warmup_schedule(get("warmup"), get("schedule"))
    if get("warmup") is not None and get("epochs") is not None:
        _check_warmup_length(get("warmup"), get("epochs"))
    if get("accumulate") is not None and get("batch") is not None:
        _check_accumulate(get("accumulate"), get("batch"))


def _check_warmup_length(warmup: Setting, epochs: Setting) -> None:
    length, run = warmup.value.epochs, epochs.value
    if length >= run:
        raise error("E0206", f"the warmup lasts {_number(length)} epochs of a {run}-epoch "
                    "run", warmup.args.get("epochs", warmup.span),
                    label="the schedule would never start",
                    help=f"make the warmup shorter than `epochs: {run}`",
                    notes=_origin_note(warmup) + _origin_note(epochs, "epochs"))


def _check_accumulate(accumulate: Setting, batch: Setting) -> None:
    steps, size = accumulate.value, batch.value
    if size % steps == 0:
        return
    divisors = [d for d in range(2, size + 1) if size % d == 0]
    near = sorted(sorted(divisors, key=lambda d: abs(d - steps))[:3])
    raise error("E0206", f"`accumulate: {steps}` does not divide `batch: {size}`",
                accumulate.span,
                label=f"the {steps} micro-batches of a step must be equal in size",
                help=f"accumulate a divisor of {size}: " + ", ".join(map(str, near))
                if near else "a batch of 1 cannot be split: `accumulate: 1`",
                notes=_origin_note(accumulate) + _origin_note(batch, "batch"))


def _check_warmup_schedule(warmup: Setting, schedule: Setting) -> None:
    s, w = schedule.value, warmup.value
    notes = _origin_note(warmup) + _origin_note(schedule, "schedule")
    if s.kind == "onecycle":
        raise error("E0206", "`schedule: onecycle` has its own warmup", warmup.span,
                    label="a `warmup` entry would ramp the rate up twice",
                    help="drop `warmup`; onecycle's `pct_start` sets its ramp",
                    notes=notes)
    if getattr(s, "warmup_epochs", 0):
        raise error("E0206", "two warmups: `warmup` and the schedule's `warmup_epochs`",
                    warmup.span, label="give one of them",
                    help="drop `warmup_epochs=` from the cosine schedule", notes=notes)
    per = "epoch" if s.kind == "plateau" else getattr(s, "per", "iteration")
    if per == "epoch" and not float(w.epochs).is_integer():
        raise error("E0206", f"a warmup of {_number(w.epochs)} epochs needs a schedule "
                    "stepped every iteration", warmup.args.get("epochs", warmup.span),
                    label=f"`schedule: {s.kind}` steps once per epoch",
                    help="warm up for whole epochs" + (
                        "" if s.kind == "plateau" else
                        f", or step the schedule every iteration: `{s.kind} ... "
                        "per=iteration`"), notes=notes)


# ---------------------------------------------------------------- helpers


def _validated(key: str, raw, span: Span, spans: dict):
    """`raw` validated as the recipe's entry `key` (a list entry: as its items)."""
    try:
        return getattr(Recipe.model_validate({key: raw}), key)
    except ValidationError as problem:
        where = {key: span, **{(key, name): s for name, s in spans.items()}}
        raise invalid_value("train", problem, where, span, Recipe) from None


def _require(what: str, model, raw: dict, span: Span) -> None:
    for name, info in model.model_fields.items():
        if info.is_required() and name != "kind" and name not in raw:
            raise error("E0204", f"`{what}` needs `{name}`", span,
                        label=f"`{name}` has no default",
                        help=f"add it: `{what} {name}=...`")


@lru_cache(maxsize=None)
def _models(key: str) -> dict:
    """The models an entry's value may be, by kind (`None` for a model without kinds:
    `mixup`, `ema`): `_models("optimizer")["adamw"] is Adam`."""
    found: dict = {}
    for model in _models_in(Recipe.model_fields[key].annotation):
        kind = model.model_fields.get("kind")
        for name in typing.get_args(kind.annotation) if kind is not None else (None,):
            found[name] = model
    return found


def _models_in(annotation) -> list:
    """The pydantic models inside an annotation: through Annotated, unions, tuples."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in _models_in(arg)]


def _keywords_of(model) -> tuple[str, ...]:
    return tuple(name for name in model.model_fields if name != "kind")


def _words(model, name: str) -> tuple[str, ...]:
    """The words a field takes (a Literal of strings, maybe optional), else ()."""
    annotation = model.model_fields[name].annotation
    options = [annotation] if typing.get_origin(annotation) is Literal else [
        a for a in typing.get_args(annotation) if typing.get_origin(a) is Literal]
    words = tuple(w for option in options for w in typing.get_args(option))
    return words if words and all(isinstance(w, str) for w in words) else ()


def _either(words) -> str:
    quoted = [f"`{w}`" for w in words]
    if len(quoted) <= 2:
        return " or ".join(quoted)
    return "one of " + ", ".join(quoted[:-1]) + " or " + quoted[-1]


def _number(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _origin_note(setting: Setting, key: str | None = None) -> tuple[str, ...]:
    """A note saying which recipe an entry came from (none for the network's own)."""
    if not setting.origin.startswith("recipe "):
        return ()
    return (f"{'`' + key + '` ' if key else ''}from {setting.origin}",)


def _noted(problem: SpecError, note: str) -> SpecError:
    diagnostic = problem.diagnostics[0]
    if not diagnostic.code.startswith("E02"):
        return problem
    return SpecError(diagnostic._replace(notes=diagnostic.notes + (note,)))
