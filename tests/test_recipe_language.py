"""The language of training recipes: every `train` entry form read into the `Recipe`
the spec's text says, `recipe` definitions imported and called with `train:
name(...)`, where each entry came from (`graph.recipe_sources`), and every mistake
refused at `cnnspec check` with its code, message and line.

Specs are written in the tests; expected values are the ones written in them.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

import cnnspec
from cnnspec import SpecError
from cnnspec.api import load_text
from cnnspec.frontend.recipe import (EMA, SGD, Adam, AugMix, AutoAugment, CosineSchedule,
                                     Crop, Flip, Mixing, Normalize, OneCycleSchedule,
                                     RandAugment, RandomErasing, RepeatedAugment,
                                     RMSprop, StepSchedule, TrivialAugment, Warmup,
                                     matches_layer)

# Line 1 `network`, 2 `input`, 3-7 layers, 8 `train {`, the entries from line 9.
NETWORK = """\
network net(classes = 10, lr = 0.4, words = "svhn") {{
    input 3x32x32
    stem: conv 8 k=3 p=1
    layer4: {{ b0: {{ conv1: conv 8 k=3 p=1; relu; conv2: conv 8 k=3 p=1 }} }}
    avgpool global
    flatten
    fc: linear classes
    train {{
{entries}
    }}
}}
"""
FIRST_ENTRY_LINE = 9


def net(*entries: str, **params) -> cnnspec.Spec:
    return cnnspec.load(NETWORK.format(entries="\n".join(f"        {e}" for e in entries)),
                        **params)


def recipe_of(*entries: str, **params):
    return net(*entries, **params).recipe


def refused(*entries: str, text: str | None = None):
    """The first diagnostic of a spec with these entries (or of `text`)."""
    source = text if text is not None else NETWORK.format(
        entries="\n".join(f"        {e}" for e in entries))
    with pytest.raises(SpecError) as raised:
        cnnspec.load(source)
    return raised.value.diagnostics[0]


def write(folder, name: str, text: str):
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


# ---------------------------------------------------------------- entry forms


@pytest.mark.parametrize("entry, field, value", [
    ("epochs: 600", "epochs", 600),
    ("batch: 1024", "batch", 1024),
    ("accumulate: 4", "accumulate", 4),
    ("weight_decay: 2e-5", "weight_decay", 2e-5),
    ("norm_weight_decay: 0", "norm_weight_decay", 0.0),
    ("bias_weight_decay: 0.001", "bias_weight_decay", 0.001),
    ("label_smoothing: 0.1", "label_smoothing", 0.1),
    ("val_resize: 232", "val_resize", 232),
    ("val_crop: 224", "val_crop", 224),
    ("interpolation: bicubic", "interpolation", "bicubic"),
    ("interpolation: nearest", "interpolation", "nearest"),
])
def test_a_number_or_a_word(entry, field, value):
    assert getattr(recipe_of(entry), field) == value


@pytest.mark.parametrize("entry, expected", [
    ("sgd lr=0.5 momentum=0.9 nesterov=true",
     SGD(kind="sgd", lr=0.5, momentum=0.9, nesterov=True)),
    ("adam lr=0.001", Adam(kind="adam", lr=0.001)),
    ("adamw lr=0.003 betas=(0.9, 0.95)", Adam(kind="adamw", lr=0.003, betas=(0.9, 0.95))),
    ("nadam lr=0.002 eps=1e-6", Adam(kind="nadam", lr=0.002, eps=1e-6)),
    ("radam", Adam(kind="radam")),
    ("rmsprop lr=0.064 alpha=0.9 momentum=0.9 eps=0.0316",
     RMSprop(kind="rmsprop", lr=0.064, alpha=0.9, momentum=0.9, eps=0.0316)),
])
def test_optimizers(entry, expected):
    assert recipe_of(f"optimizer: {entry}").optimizer == expected


@pytest.mark.parametrize("entry, kind, fields", [
    ("cosine lr_min=0 per=epoch", "cosine", {"lr_min": 0.0, "per": "epoch"}),
    ("cosine", "cosine", {"per": "iteration"}),
    ("step step_size=30 gamma=0.1 per=iteration", "step",
     {"step_size": 30, "gamma": 0.1, "per": "iteration"}),
    ("multistep milestones=(30, 60, 80)", "multistep", {"milestones": (30, 60, 80)}),
    ("plateau factor=0.5 patience=2", "plateau", {"factor": 0.5, "patience": 2}),
    ("exponential gamma=0.97", "exponential", {"gamma": 0.97}),
    ("poly power=2", "poly", {"power": 2.0}),
    ("onecycle pct_start=0.25 div_factor=10", "onecycle",
     {"pct_start": 0.25, "div_factor": 10.0}),
    ("constant", "constant", {}),
])
def test_schedules(entry, kind, fields):
    schedule = recipe_of(f"schedule: {entry}").schedule
    assert schedule.kind == kind
    assert {name: getattr(schedule, name) for name in fields} == fields


def test_warmup_allows_a_fractional_epoch_count():
    recipe = recipe_of("warmup: linear epochs=0.5 start_factor=0.01", "epochs: 10")
    assert recipe.warmup == Warmup(kind="linear", epochs=0.5, start_factor=0.01)
    assert recipe_of("warmup: constant epochs=3").warmup == Warmup(kind="constant",
                                                                   epochs=3)


def test_augment_is_a_list_of_transforms_in_order():
    recipe = recipe_of("augment: random_resized_crop 176, horizontal_flip, "
                       "trivial_augment, rand_augment ops=2 magnitude=9, "
                       "auto_augment policy=imagenet, augmix severity=3, normalize, "
                       "random_erasing p=0.1")
    assert recipe.augment == (
        Crop(kind="random_resized_crop", size=176), Flip(kind="horizontal_flip"),
        TrivialAugment(kind="trivial_augment"),
        RandAugment(kind="rand_augment", ops=2, magnitude=9),
        AutoAugment(kind="auto_augment", policy="imagenet"),
        AugMix(kind="augmix", severity=3), Normalize(kind="normalize"),
        RandomErasing(kind="random_erasing", p=0.1))


def test_a_list_may_continue_on_the_next_line_after_a_comma():
    recipe = recipe_of("augment: random_crop 32 padding=4,",
                       "         horizontal_flip p=0.25")
    assert recipe.augment == (Crop(kind="random_crop", size=32, padding=4),
                              Flip(kind="horizontal_flip", p=0.25))


@pytest.mark.parametrize("entry, field, expected", [
    ("mixup: alpha=0.2", "mixup", Mixing(alpha=0.2)),
    ("cutmix: alpha=1.0", "cutmix", Mixing(alpha=1.0)),
    ("ema: decay=0.99998 steps=32 adjust=true", "ema",
     EMA(decay=0.99998, steps=32, adjust=True)),
    ("ema: decay=0.999 warmup_epochs=0", "ema", EMA(decay=0.999, warmup_epochs=0)),
    ("repeated_augment: reps=4", "repeated_augment", RepeatedAugment(reps=4)),
])
def test_keywords_without_a_kind(entry, field, expected):
    assert getattr(recipe_of(entry), field) == expected


def test_layer_patterns_with_factors():
    recipe = recipe_of('lr_mult: "layer4.*.conv2"=0.5, fc=10', "decay_mult: stem=0, "
                       "layer4=2")
    assert recipe.lr_mult == (("layer4.*.conv2", 0.5), ("fc", 10.0))
    assert recipe.decay_mult == (("stem", 0.0), ("layer4", 2.0))


def test_words_are_words_but_parameters_are_their_values():
    recipe = recipe_of("schedule: cosine per=epoch", "augment: auto_augment policy=cifar10,"
                       " auto_augment policy=words", "optimizer: sgd lr=lr")
    assert recipe.schedule == CosineSchedule(kind="cosine", per="epoch")
    assert [a.policy for a in recipe.augment] == ["cifar10", "svhn"]  # words = "svhn"
    assert recipe.optimizer.lr == 0.4
    assert recipe_of("optimizer: sgd lr=lr * 2", lr=0.05).optimizer.lr == 0.1


def test_sections_apply_in_order_and_a_later_entry_replaces_the_whole():
    text = NETWORK.format(entries="        augment: random_crop 32, horizontal_flip\n"
                                  "        epochs: 10").replace(
        "    }\n}", "    }\n    train {\n        augment: normalize\n    }\n}")
    recipe = cnnspec.load(text).recipe
    assert recipe.augment == (Normalize(kind="normalize"),)
    assert recipe.epochs == 10


def test_unset_entries_keep_their_defaults():
    recipe = recipe_of("epochs: 3")
    assert (recipe.optimizer, recipe.accumulate, recipe.interpolation, recipe.lr_mult,
            recipe.mixup) == (None, 1, "bilinear", (), None)


# ---------------------------------------------------------------- recipes


RECIPES = """
# torchvision's recipe, in short
recipe torchvision_v2(lr = 0.5, epochs = 600, per = epoch) {
    optimizer: sgd lr=lr momentum=0.9
    schedule:  cosine per=per
    warmup:    linear epochs=5
    epochs:    epochs
    batch:     1024
    augment:   random_resized_crop 176, horizontal_flip, trivial_augment, normalize
    mixup:     alpha=0.2
}

recipe short(lr) {
    train: torchvision_v2(lr, epochs = 100)
    epochs: 90
}
"""
USER = """
import "recipes/torchvision.cnn"

network user(classes = 10) {
    input 3x32x32
    train: torchvision_v2(0.2, per = iteration)
    conv1: conv 8 k=3 p=1
    avgpool global
    flatten
    fc: linear classes
    train {
        batch:   256
        augment: normalize
    }
}
"""


def test_a_recipe_imported_and_called_with_arguments_then_overridden(tmp_path):
    write(tmp_path, "recipes/torchvision.cnn", RECIPES)
    spec = cnnspec.load(write(tmp_path, "user.cnn", USER))
    recipe = spec.recipe
    assert recipe.optimizer == SGD(kind="sgd", lr=0.2, momentum=0.9)
    assert recipe.schedule == CosineSchedule(kind="cosine", per="iteration")
    assert recipe.warmup == Warmup(kind="linear", epochs=5)
    assert (recipe.epochs, recipe.batch, recipe.mixup) == (600, 256, Mixing(alpha=0.2))
    assert recipe.augment == (Normalize(kind="normalize"),)  # the later list, whole


def test_provenance_of_each_entry(tmp_path):
    write(tmp_path, "recipes/torchvision.cnn", RECIPES)
    path = write(tmp_path, "user.cnn", USER)
    sources = cnnspec.load(path).graph.recipe_sources
    library = f"{tmp_path}/recipes/torchvision.cnn"
    called = f"called at {path}:5"
    assert sources == {
        "optimizer": f"recipe torchvision_v2 ({library}:3), {called}",
        "schedule": f"recipe torchvision_v2 ({library}:4), {called}",
        "warmup": f"recipe torchvision_v2 ({library}:5), {called}",
        "epochs": f"recipe torchvision_v2 ({library}:6), {called}",
        "mixup": f"recipe torchvision_v2 ({library}:9), {called}",
        "batch": f"{path}:11",
        "augment": f"{path}:12",
    }


def test_provenance_as_the_spec_names_its_path(tmp_path, monkeypatch):
    write(tmp_path, "specs/recipes/torchvision.cnn", RECIPES)
    write(tmp_path, "specs/user.cnn", USER)
    monkeypatch.chdir(tmp_path)
    sources = cnnspec.load("specs/user.cnn").graph.recipe_sources
    assert sources["optimizer"] == ("recipe torchvision_v2 (specs/recipes/"
                                    "torchvision.cnn:3), called at specs/user.cnn:5")
    assert sources["batch"] == "specs/user.cnn:11"


def test_a_recipe_that_extends_another(tmp_path):
    write(tmp_path, "recipes/torchvision.cnn", RECIPES)
    path = write(tmp_path, "user.cnn", USER.replace(
        "train: torchvision_v2(0.2, per = iteration)", "train: short(lr = 0.1)"))
    spec = cnnspec.load(path)
    assert spec.recipe.optimizer.lr == 0.1
    assert spec.recipe.epochs == 90  # short's own entry replaces the extended one
    assert spec.recipe.schedule.per == "epoch"
    library = f"{tmp_path}/recipes/torchvision.cnn"
    assert spec.graph.recipe_sources["epochs"] == (
        f"recipe short ({library}:14), called at {path}:5")
    assert spec.graph.recipe_sources["optimizer"] == (
        f"recipe torchvision_v2 ({library}:3), called at {library}:13 in recipe short, "
        f"called at {path}:5")


def test_a_recipe_in_the_same_file_and_a_call_without_arguments():
    spec = cnnspec.load("""\
recipe quick() {
    epochs: 2
    optimizer: adamw lr=0.001
}
network n {
    input 3x8x8
    train: quick
    flatten
    linear 10
}
""")
    assert spec.recipe.epochs == 2
    assert spec.graph.recipe_sources == {"epochs": "recipe quick (<string>:2), called at "
                                         "<string>:7",
                                         "optimizer": "recipe quick (<string>:3), called "
                                         "at <string>:7"}


def test_a_spec_without_a_recipe_has_no_sources():
    spec = cnnspec.load("network n {\n    input 3x8x8\n    flatten\n}\n")
    assert spec.recipe is None and spec.graph.recipe_sources == {}


def test_recipe_can_still_be_a_layer_label():
    spec = cnnspec.load("network n {\n    input 3x8x8\n    recipe: conv 4 k=1\n}\n")
    assert spec.layer_names == ["recipe"]


# ---------------------------------------------------------------- entry mistakes


def line_of(entry_index: int) -> int:
    return FIRST_ENTRY_LINE + entry_index


@pytest.mark.parametrize("entries, code, line, message, help", [
    (["optimiser: sgd lr=0.1"], "E0206", 9, "`train` has no entry `optimiser`",
     "did you mean `optimizer`?"),
    (["optimizer: sgdd lr=0.1"], "E0206", 9, "unknown optimizer `sgdd`",
     "did you mean `sgd`?"),
    (["optimizer: sgd lr=0.1 momentun=0.9"], "E0206", 9,
     "`sgd` has no keyword `momentun`", "did you mean `momentum`?"),
    (["schedule: cosin"], "E0206", 9, "unknown schedule `cosin`", "did you mean `cosine`?"),
    (["schedule: cosine per=epochs"], "E0206", 9, "`per` of `cosine` cannot be `epochs`",
     "did you mean `epoch`?"),
    (["warmup: linaer epochs=1"], "E0206", 9, "unknown warmup `linaer`",
     "did you mean `linear`?"),
    (["augment: horizontal_flip, randaugment ops=2"], "E0206", 9,
     "unknown augmentation `randaugment`", "did you mean `rand_augment`?"),
    (["augment: auto_augment policy=imagnet"], "E0206", 9,
     "`policy` of `auto_augment` cannot be `imagnet`", "did you mean `imagenet`?"),
    (["interpolation: bicubc"], "E0206", 9, "`interpolation` cannot be `bicubc`",
     "did you mean `bicubic`?"),
    (["ema: decay=0.9 step=3"], "E0206", 9, "`ema` has no keyword `step`",
     "did you mean `steps`?"),
])
def test_unknown_names_are_refused_with_the_closest_one(entries, code, line, message,
                                                         help):
    d = refused(*entries)
    assert (d.code, d.span.line, d.message) == (code, line, message)
    assert d.help == help


def test_the_unknown_word_points_at_the_argument():
    d = refused("epochs: 3", "augment: normalize, auto_augment policy=imagnet")
    assert (d.span.line, d.span.column) == (10, 49)
    assert d.label == "`policy` is one of `imagenet`, `cifar10` or `svhn`"


@pytest.mark.parametrize("entry, column, label", [
    ("augment: rand_augment ops=2 magnitude=31", 37,
     "`magnitude` must be a whole number from 0 to 30, found 31"),
    ("augment: normalize, random_erasing p=1.5", 44,
     "`p` must be a number from 0 to 1, found 1.5"),
    ("augment: augmix severity=0", 25, "`severity` must be a whole number from 1 to 10, "
     "found 0"),
    ("ema: decay=1.5", 14, "`decay` must be a number > 0 and < 1, found 1.5"),
    ("mixup: alpha=0", 16, "`alpha` must be a number > 0, found 0"),
    ("repeated_augment: reps=0", 27, "`reps` must be a whole number >= 1, found 0"),
    ("val_crop: 0", 19, "`val_crop` must be a whole number >= 1, found 0"),
    ("warmup: linear epochs=1 start_factor=2", 33,
     "`start_factor` must be a number > 0 and <= 1, found 2"),
])
def test_values_out_of_range_are_refused_at_the_argument(entry, column, label):
    d = refused(entry)
    assert (d.code, d.span.line, d.span.column) == ("E0206", 9, column), d
    assert d.label == label


def test_a_required_keyword_is_asked_for():
    d = refused("optimizer: sgd momentum=0.9")
    assert (d.code, d.span.line, d.message) == ("E0204", 9, "`sgd` needs `lr`")
    d = refused("ema: steps=32")
    assert (d.code, d.message) == ("E0204", "`ema` needs `decay`")


@pytest.mark.parametrize("entry, message", [
    ("mixup: 0.2", "`mixup` takes keywords only"),
    ("lr_mult: 0.1", "`lr_mult` takes layer patterns with factors"),
    ("interpolation: mode=bicubic", "`interpolation` takes one word"),
    ("optimizer: lr=0.1", "`optimizer` starts with a kind, like `optimizer: sgd ...`"),
    ("epochs: 10, 20", "`epochs` takes one value"),
    ("lr_mult: fc=1, fc=2", "`fc` is given twice in `lr_mult`"),
    ("lr_mult: fc=-1", "bad value for `lr_mult` in `train`"),
])
def test_a_value_of_the_wrong_form(entry, message):
    d = refused(entry)
    assert (d.code, d.span.line, d.message) == ("E0206", 9, message)


def test_a_name_that_is_no_parameter_where_a_number_goes_is_unknown():
    d = refused("optimizer: sgd lr=lrr")
    assert (d.code, d.span.line, d.span.column, d.message) == (
        "E0201", 9, 27, "unknown name `lrr`")
    assert d.help == "did you mean `lr`?"


def test_a_size_is_the_only_value_by_position():
    d = refused("augment: horizontal_flip 0.5")
    assert (d.code, d.span.line, d.message) == (
        "E0205", 9, "too many values by position for `horizontal_flip`")


# ---------------------------------------------------------------- checks against each other


def test_a_warmup_as_long_as_the_run():
    d = refused("warmup: linear epochs=5", "epochs: 5")
    assert (d.code, d.span.line, d.span.column) == ("E0206", 9, 24)
    assert d.message == "the warmup lasts 5 epochs of a 5-epoch run"
    recipe_of("warmup: linear epochs=4", "epochs: 5")  # shorter is right


def test_accumulate_must_divide_the_batch():
    d = refused("batch: 64", "accumulate: 3")
    assert (d.code, d.span.line) == ("E0206", 10)
    assert d.message == "`accumulate: 3` does not divide `batch: 64`"
    assert d.help == "accumulate a divisor of 64: 2, 4, 8"
    assert recipe_of("batch: 64", "accumulate: 4").accumulate == 4


def test_onecycle_takes_no_warmup():
    d = refused("schedule: onecycle", "warmup: linear epochs=1")
    assert (d.code, d.span.line, d.message) == (
        "E0206", 10, "`schedule: onecycle` has its own warmup")
    assert recipe_of("schedule: onecycle").schedule == OneCycleSchedule(kind="onecycle")


def test_two_warmups_are_refused():
    d = refused("schedule: cosine warmup_epochs=5", "warmup: linear epochs=5")
    assert (d.code, d.span.line) == ("E0206", 10)
    assert "two warmups" in d.message


@pytest.mark.parametrize("schedule", ["cosine per=epoch", "step step_size=3",
                                      "plateau"])
def test_a_fractional_warmup_needs_a_schedule_stepped_every_iteration(schedule):
    d = refused(f"schedule: {schedule}", "warmup: linear epochs=0.5")
    assert (d.code, d.span.line, d.span.column) == ("E0206", 10, 24)
    assert d.message == "a warmup of 0.5 epochs needs a schedule stepped every iteration"


def test_a_fractional_warmup_with_a_schedule_stepped_every_iteration():
    recipe = recipe_of("schedule: step step_size=3 per=iteration",
                       "warmup: linear epochs=0.5")
    assert recipe.schedule == StepSchedule(kind="step", step_size=3, per="iteration")


def test_later_entries_are_checked_as_they_end_up():
    """A contradiction that a later entry resolves is no contradiction."""
    text = NETWORK.format(entries="        warmup: linear epochs=5\n        epochs: 5")
    text = text.replace("    }\n}", "    }\n    train { epochs: 90 }\n}")
    assert cnnspec.load(text).recipe.epochs == 90


# ---------------------------------------------------------------- checks against the network


def test_a_layer_pattern_that_matches_no_layer():
    d = refused("epochs: 2", "lr_mult: fc=10, layer5=0.1")
    assert (d.code, d.span.line, d.span.column) == ("E0206", 10, 25)
    assert d.message == "`layer5` in `lr_mult` matches no layer of `net`"
    assert d.help == "did you mean `layer4`?"


def test_a_quoted_glob_that_matches_no_layer():
    d = refused('decay_mult: "layer4.*.conv3"=0')
    assert (d.code, d.span.line, d.span.column) == ("E0206", 9, 21)
    assert d.message == "`layer4.*.conv3` in `decay_mult` matches no layer of `net`"


def test_layer_patterns_match_as_freeze_does():
    layers = ["stem", "layer4.conv1", "layer4.1", "layer4.conv2", "fc"]
    assert [n for n in layers if matches_layer(n, "layer4")] == layers[1:4]
    assert [n for n in layers if matches_layer(n, "layer4.*2")] == ["layer4.conv2"]
    assert [n for n in layers if matches_layer(n, "*.conv*")] == ["layer4.conv1",
                                                                   "layer4.conv2"]
    assert not any(matches_layer(n, "layer") for n in layers)


def test_freezing_uses_the_same_rule():
    pytest.importorskip("torch")
    from cnnspec.training import finetune

    assert finetune.select_layers(["layer4.conv1", "fc"], ["layer4"]) == ["layer4.conv1"]
    assert finetune.matches_layer is matches_layer


@pytest.mark.parametrize("entry", ["mixup: alpha=0.2", "cutmix: alpha=1.0"])
def test_mixing_needs_two_class_scores(entry):
    d = refused(text=NETWORK.replace("classes = 10", "classes = 1").format(entries=
                                                                          "        " + entry))
    assert (d.code, d.span.line) == ("E0206", 9)
    assert d.message == f"`{entry.split(':')[0]}` needs an output of two class scores or more"
    assert d.label == "`net` gives 1"
    assert net(entry, classes=2).recipe is not None


# ---------------------------------------------------------------- recipe mistakes


CALLER = """\
recipe tv(lr = 0.1, epochs) {{
    optimizer: sgd lr=lr
    epochs: epochs
}}
network n {{
    input 3x8x8
    flatten
    {call}
}}
"""


@pytest.mark.parametrize("call, code, column, message, help", [
    ("train: tvv(epochs = 1)", "E0202", 12, "unknown recipe `tvv`", "did you mean `tv`?"),
    ("train: tv(epochs = 1, lrr = 2)", "E0203", 27, "recipe `tv` has no parameter `lrr`",
     "did you mean `lr`?"),
    ("train: tv(epochs = 1, epochs = 2)", "E0203", 27, "`epochs` is given twice", ""),
    ("train: tv(0.1, 2, 3)", "E0205", 23, "recipe `tv` takes 2 arguments", ""),
    ("train: tv(lr = 0.2)", "E0204", 5, "recipe `tv` needs `epochs`",
     "pass it: `train: tv(epochs = ...)`"),
])
def test_recipe_calls_are_checked(call, code, column, message, help):
    d = refused(text=CALLER.format(call=call))
    assert (d.code, d.span.line, d.span.column, d.message) == (code, 8, column, message)
    assert d.help == help


def test_a_recipe_call_with_positional_arguments():
    spec = cnnspec.load(CALLER.format(call="train: tv(0.3, 7)"))
    assert (spec.recipe.optimizer.lr, spec.recipe.epochs) == (0.3, 7)


def test_a_recipe_that_extends_itself():
    d = refused(text="recipe a() {\n    train: b\n}\nrecipe b() {\n    train: a\n}\n"
                "network n {\n    input 3x8x8\n    train: a\n}\n")
    assert (d.code, d.span.line, d.message) == ("E0208", 5, "recipe `a` extends itself")
    assert d.label == "a -> b -> a"


def test_a_recipe_defined_twice_across_an_import(tmp_path):
    write(tmp_path, "r.cnn", "recipe tv() {\n    epochs: 1\n}\n")
    path = write(tmp_path, "n.cnn", 'import "r.cnn"\nrecipe tv() {\n    epochs: 2\n}\n'
                 "network n {\n    input 3x8x8\n    train: tv\n}\n")
    with pytest.raises(SpecError) as raised:
        cnnspec.load(path)
    d = raised.value.diagnostics[0]
    assert (d.code, d.message, d.span.line) == ("E0212", "recipe `tv` is defined twice", 2)


def test_a_bad_entry_in_an_imported_recipe_names_its_file_and_the_call(tmp_path):
    library = write(tmp_path, "recipes/r.cnn", "recipe tv() {\n    epochs: 1\n"
                    "    augment: rand_augment magnitude=40\n}\n")
    path = write(tmp_path, "n.cnn", 'import "recipes/r.cnn"\nnetwork n {\n'
                 "    input 3x8x8\n    train: tv\n}\n")
    with pytest.raises(SpecError) as raised:
        cnnspec.load(path)
    d = raised.value.diagnostics[0]
    assert (d.code, d.span.file, d.span.line, d.span.column) == (
        "E0206", str(library), 3, 27)
    assert d.notes == (f"in recipe `tv` applied at {path}:4:5",)


def test_a_pattern_from_a_recipe_that_matches_no_layer_says_where_it_came_from(tmp_path):
    library = write(tmp_path, "r.cnn", "recipe tv() {\n    lr_mult: head=10\n}\n")
    path = write(tmp_path, "n.cnn", 'import "r.cnn"\nnetwork n {\n    input 3x8x8\n'
                 "    train: tv\n    flatten\n    fc: linear 2\n}\n")
    with pytest.raises(SpecError) as raised:
        cnnspec.load(path)
    d = raised.value.diagnostics[0]
    assert (d.code, d.span.file, d.span.line) == ("E0206", str(library), 2)
    assert d.notes == (f"from recipe tv ({library}:2), called at {path}:4",)


def test_train_call_belongs_at_the_top_of_a_network():
    d = refused(text="recipe tv() {\n    epochs: 1\n}\nblock b() {\n    train: tv\n}\n"
                "network n {\n    input 3x8x8\n    b()\n}\n")
    assert (d.code, d.span.line, d.message) == (
        "E0216", 5, "`train:` belongs at the top level of a network")


def test_train_followed_by_a_layer_says_what_train_means():
    with pytest.raises(SpecError) as raised:
        cnnspec.load("network n {\n    input 3x8x8\n    train: conv 8\n}\n")
    d = raised.value.diagnostics[0]
    assert (d.code, d.span.line) == ("E0101", 3)
    assert "`train:` applies a recipe" in d.help


def test_load_text_resolves_recipe_imports_next_to_its_path(tmp_path):
    write(tmp_path, "recipes/torchvision.cnn", RECIPES)
    spec = load_text(USER, tmp_path / "unsaved.cnn")
    assert spec.recipe.batch == 256


# ---------------------------------------------------------------- the command line


def test_check_on_the_command_line_reports_the_file_and_line(tmp_path, cli):
    write(tmp_path, "recipes/torchvision.cnn", RECIPES)
    good = write(tmp_path, "good.cnn", USER)
    assert cli("check", good).returncode == 0
    bad = write(tmp_path, "bad.cnn", USER.replace("batch:   256", "batch:   256\n"
                                                  "        accumulate: 3"))
    run = cli("check", bad)
    assert run.returncode == 1
    assert "error[E0206]: `accumulate: 3` does not divide `batch: 256`" in run.stderr
    assert f"--> {bad}:12:9" in run.stderr


def test_check_through_the_entry_point(tmp_path):
    bad = write(tmp_path, "bad.cnn", USER.replace(
        "train: torchvision_v2(0.2, per = iteration)", "train: torchvision_v3(0.2)"))
    write(tmp_path, "recipes/torchvision.cnn", RECIPES)
    run = subprocess.run([sys.executable, "-m", "cnnspec", "check", str(bad)],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 1
    assert "error[E0202]: unknown recipe `torchvision_v3`" in run.stderr
    assert f"--> {bad}:5:12" in run.stderr
    assert "did you mean `torchvision_v2`?" in run.stderr


def test_a_factor_without_a_pattern_shows_the_form_and_the_quoting():
    d = refused("lr_mult: 0.1")
    assert d.label == "like `lr_mult: layer4=0.1, fc=10`"
    assert d.help == 'a pattern with dots or stars is quoted: `"layer4.*.conv2"=0.5`'


def test_a_recipe_has_no_layer_input():
    d = refused("optimizer: sgd lr=in.channels")
    assert (d.code, d.message, d.label) == (
        "E0211", "`in` means the input of a layer", "a training recipe has no layer input")
