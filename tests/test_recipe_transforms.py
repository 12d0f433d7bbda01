"""The modern recipe's data entries (issue 23) against torchvision itself.

The reference pipelines are built here from torchvision.transforms.v2 primitives,
following torchvision's documented ClassificationPresetTrain/ClassificationPresetEval
(references/classification/presets.py, `--backend tensor`): PILToTensor, the
geometric steps and the policy on uint8, ToDtype(float32, scale=True), Normalize,
RandomErasing, ToPureTensor. cnnspec's pipelines (transforms.py) and mixer
(mixing.py) must give bitwise the same tensors from the same seed. Each comparison
also shows that the seeds used exercise the step in question (the erasing fires,
the interpolation matters), so a pipeline that dropped it would fail.
"""

import pytest
import torch

import cnnspec

pytest.importorskip("torchvision")
from PIL import Image  # noqa: E402
from torch.nn import functional as F  # noqa: E402
from torchvision.transforms import v2  # noqa: E402

from cnnspec.frontend.recipe import Mixing, Recipe  # noqa: E402
from cnnspec.training.config import resolve  # noqa: E402
from cnnspec.training.data import open_data  # noqa: E402
from cnnspec.training.errors import DataError, UsageError  # noqa: E402
from cnnspec.training.mixing import (MIXING_NOTE, describe_mixing,  # noqa: E402
                                     dominant_labels, make_mixer)
from cnnspec.training.transforms import pipelines  # noqa: E402

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
BILINEAR, BICUBIC = v2.InterpolationMode.BILINEAR, v2.InterpolationMode.BICUBIC
SEEDS = range(12)

# torchvision's ResNet-50 V2 recipe (its weights' documented flags), as a spec.
RESNET50_V2 = """network n {{
    input 3x224x224
    conv 4 k=3
    gap: adaptive_avgpool 1
    flatten
    linear 10
    train {{
        augment: {augment}
        val_resize: 232
        val_crop: 224
    }}
}}
"""
V2_AUGMENT = ("random_resized_crop 176, horizontal_flip, trivial_augment, normalize, "
              "random_erasing p=0.1")


def _pil_images(sizes=((300, 250), (250, 320), (280, 280))):
    """Random RGB PIL images of the given width x height."""
    generator = torch.Generator().manual_seed(7)
    return [Image.fromarray(torch.randint(0, 256, (h, w, 3), dtype=torch.uint8,
                                          generator=generator).numpy())
            for w, h in sizes]


def _config(**entries):
    """The run configuration of a recipe with these entries (augment as dicts)."""
    return resolve(Recipe.model_validate(entries))


def _steps(config, image_shape, input_shape, **keywords):
    train, val, notes = pipelines(image_shape, input_shape, config.augment,
                                  interpolation=config.interpolation,
                                  val_resize=config.val_resize, val_crop=config.val_crop,
                                  **keywords)
    return v2.Compose(train), v2.Compose(val), notes


def _seeded(transform, image, seed):
    torch.manual_seed(seed)
    return transform(image)


def _preset_train(crop, interpolation, policy, erase=0.1, normalize=True):
    """ClassificationPresetTrain, backend tensor, built from v2's primitives."""
    steps = [v2.PILToTensor(),
             v2.RandomResizedCrop(crop, interpolation=interpolation, antialias=True),
             v2.RandomHorizontalFlip(0.5)]
    steps += [policy] if policy is not None else []
    steps.append(v2.ToDtype(torch.float32, scale=True))
    steps += [v2.Normalize(MEAN, STD)] if normalize else []
    steps += [v2.RandomErasing(p=erase)] if erase else []
    return v2.Compose(steps + [v2.ToPureTensor()])


def _preset_eval(resize, crop, interpolation, normalize=True):
    """ClassificationPresetEval, backend tensor, built from v2's primitives."""
    steps = [v2.PILToTensor(),
             v2.Resize(resize, interpolation=interpolation, antialias=True),
             v2.CenterCrop(crop), v2.ToDtype(torch.float32, scale=True)]
    steps += [v2.Normalize(MEAN, STD)] if normalize else []
    return v2.Compose(steps + [v2.ToPureTensor()])


def _same_for_every_seed(ours, reference, images):
    for image in images:
        for seed in SEEDS:
            mine, theirs = _seeded(ours, image, seed), _seeded(reference, image, seed)
            assert type(mine) is torch.Tensor and mine.dtype == torch.float32
            assert torch.equal(mine, theirs), (image.size, seed)


def _differs_for_some_seed(ours, other, images) -> bool:
    return any(not torch.equal(_seeded(ours, image, seed), _seeded(other, image, seed))
               for image in images for seed in SEEDS)


# --- torchvision's ResNet-50 V2 recipe --------------------------------------------

@pytest.mark.parametrize("augment", [
    V2_AUGMENT,
    # random_erasing written before normalize still erases after it
    "random_resized_crop 176, horizontal_flip, trivial_augment, random_erasing p=0.1, "
    "normalize"])
def test_resnet50_v2_recipe_is_torchvisions_presets(augment):
    spec = cnnspec.load(RESNET50_V2.format(augment=augment))
    config = resolve(spec.recipe)
    train, val, notes = _steps(config, (3, None, None), (3, 224, 224))
    images = _pil_images()
    wide = v2.TrivialAugmentWide(interpolation=BILINEAR)
    reference = _preset_train(176, BILINEAR, wide)
    _same_for_every_seed(train, reference, images)
    _same_for_every_seed(val, _preset_eval(232, 224, BILINEAR), images)
    # the training crop keeps its 176; validation is 224, the spec's input
    assert _seeded(train, images[0], 0).shape == (3, 176, 176)
    assert _seeded(val, images[0], 0).shape == (3, 224, 224)
    assert any("training at 176" in note and "validation at 224" in note
               and "resized to 232" in note for note in notes)
    erased_late = "random_erasing runs last" in " ".join(notes)
    assert erased_late == (augment != V2_AUGMENT)
    # the seeds exercise the erasing (p=0.1) and TrivialAugment's interpolation
    without_erasing = _preset_train(176, BILINEAR, wide, erase=0)
    assert _differs_for_some_seed(train, without_erasing, images)
    nearest = _preset_train(176, BILINEAR, v2.TrivialAugmentWide())  # v2's default
    assert _differs_for_some_seed(train, nearest, images)


def test_own_validation_sizes_reach_an_image_folder(tmp_path):
    """open_data passes val_resize, val_crop and interpolation to the pipelines:
    a folder's training items keep the crop's size, its validation items are the
    eval preset's."""
    for name in ("a", "b"):
        (tmp_path / "train" / name).mkdir(parents=True)
        (tmp_path / "val" / name).mkdir(parents=True)
        for i, image in enumerate(_pil_images(((40, 30), (30, 44)))):
            image.save(tmp_path / "train" / name / f"{i}.png")
            image.save(tmp_path / "val" / name / f"{i}.png")
    augment = ({"kind": "random_resized_crop", "size": 16}, {"kind": "normalize"})
    config = _config(augment=augment, val_resize=28, val_crop=24,
                     interpolation="bicubic")
    data = open_data(str(tmp_path), (3, 24, 24), config.augment,
                     interpolation=config.interpolation, val_resize=config.val_resize,
                     val_crop=config.val_crop)
    assert data.train[0][0].shape == (3, 16, 16)
    image = Image.open(data.val.samples[1][0]).convert("RGB")
    assert torch.equal(data.val[1][0], _preset_eval(28, 24, BICUBIC)(image))
    assert not torch.equal(data.val[1][0], _preset_eval(28, 24, BILINEAR)(image))
    assert any("training at 16" in note and "validation at 24" in note
               for note in data.notes)


def test_val_resize_alone_crops_the_spec_input_and_val_crop_alone_keeps_the_ratio():
    image = _pil_images(((90, 70),))[0]
    config = _config(augment=({"kind": "random_resized_crop", "size": 40},),
                     val_resize=60)
    _, val, _ = _steps(config, (3, 70, 90), (3, 48, 48))
    assert torch.equal(val(image), _preset_eval(60, 48, BILINEAR, normalize=False)(image))
    config = _config(augment=({"kind": "random_resized_crop", "size": 40},), val_crop=42)
    _, val, _ = _steps(config, (3, 70, 90), (3, 48, 48))
    assert torch.equal(val(image),
                       _preset_eval(round(42 * 256 / 224), 42, BILINEAR,
                                    normalize=False)(image))


def test_without_own_sizes_crops_still_reach_the_spec_input():
    """Today's behaviour: a 40 crop is resized to the spec's 48; validation is the
    256/224 eval preset at 40 (resize 46, crop 40), resized to 48."""
    config = _config(augment=({"kind": "random_resized_crop", "size": 40},))
    train, val, notes = _steps(config, (3, 70, 90), (3, 48, 48))
    image = _pil_images(((90, 70),))[0]
    assert _seeded(train, image, 0).shape == (3, 48, 48)
    reference = v2.Compose([v2.PILToTensor(), v2.Resize(46, antialias=True),
                            v2.CenterCrop(40), v2.Resize((48, 48), antialias=True),
                            v2.ToDtype(torch.float32, scale=True)])
    assert torch.equal(val(image), reference(image))
    assert "40x40 crops resized to 48x48 for the spec's input" in notes
    assert not any("training at" in note for note in notes)


# --- policies and interpolation ---------------------------------------------------

POLICIES = [
    ({"kind": "rand_augment", "ops": 3, "magnitude": 12},
     lambda mode: v2.RandAugment(num_ops=3, magnitude=12, interpolation=mode)),
    ({"kind": "auto_augment", "policy": "cifar10"},
     lambda mode: v2.AutoAugment(v2.AutoAugmentPolicy.CIFAR10, interpolation=mode)),
    ({"kind": "augmix", "severity": 5},
     lambda mode: v2.AugMix(severity=5, interpolation=mode)),
    ({"kind": "trivial_augment"},
     lambda mode: v2.TrivialAugmentWide(interpolation=mode)),
]


@pytest.mark.parametrize("entry, policy", POLICIES, ids=[e["kind"] for e, _ in POLICIES])
def test_policies_are_torchvisions(entry, policy):
    """`random_resized_crop 48, horizontal_flip, <policy>, normalize`: the train
    preset with that policy, the recipe's interpolation reaching the crop and the
    policy; validation the eval preset at 48 (resize 55)."""
    augment = ({"kind": "random_resized_crop", "size": 48}, {"kind": "horizontal_flip"},
               entry, {"kind": "normalize"})
    config = _config(augment=augment)
    train, val, notes = _steps(config, (3, None, None), (3, 48, 48))
    images = _pil_images(((80, 60), (50, 90)))
    _same_for_every_seed(train, _preset_train(48, BILINEAR, policy(BILINEAR), erase=0),
                         images)
    _same_for_every_seed(val, _preset_eval(55, 48, BILINEAR), images)
    assert not any("rotate and shear" in note for note in notes)
    # the seeds rotate or shear: v2's default interpolation (nearest) differs
    assert _differs_for_some_seed(
        train, _preset_train(48, BILINEAR, policy(v2.InterpolationMode.NEAREST),
                             erase=0), images)
    # the policy runs on uint8, before ToDtype, as the preset does
    on_floats = v2.Compose([v2.PILToTensor(), v2.RandomResizedCrop(
        48, interpolation=BILINEAR, antialias=True), v2.RandomHorizontalFlip(0.5),
        v2.ToDtype(torch.float32, scale=True), policy(BILINEAR), v2.Normalize(MEAN, STD),
        v2.ToPureTensor()])
    assert _differs_for_some_seed(train, on_floats, images)


@pytest.mark.parametrize("entry, policy", POLICIES[:2], ids=["rand_augment",
                                                            "auto_augment"])
def test_bicubic_policies_rotate_bilinear_as_torchvision_allows(entry, policy):
    """torchvision's policies refuse bicubic on tensor images (their rotations and
    shears take nearest or bilinear); with `interpolation: bicubic` the crop is
    bicubic, the policy bilinear, and a note says so."""
    augment = ({"kind": "random_resized_crop", "size": 48}, {"kind": "horizontal_flip"},
               entry)
    config = _config(augment=augment, interpolation="bicubic")
    train, val, notes = _steps(config, (3, None, None), (3, 48, 48))
    images = _pil_images(((80, 60),))
    _same_for_every_seed(train, _preset_train(48, BICUBIC, policy(BILINEAR), erase=0,
                                              normalize=False), images)
    _same_for_every_seed(val, _preset_eval(55, 48, BICUBIC, normalize=False), images)
    assert any(f"{entry['kind']} rotate and shear with bilinear" in note
               for note in notes)
    assert _differs_for_some_seed(train, _preset_train(
        48, BILINEAR, policy(BILINEAR), erase=0, normalize=False), images)


def test_bicubic_reaches_random_resized_crop():
    config = _config(augment=({"kind": "random_resized_crop", "size": 32},),
                     interpolation="bicubic", val_resize=36, val_crop=32)
    train, _, _ = _steps(config, (3, None, None), (3, 32, 32))
    crop = [v2.PILToTensor(), v2.RandomResizedCrop(32, interpolation=BICUBIC,
                                                   antialias=True),
            v2.ToDtype(torch.float32, scale=True), v2.ToPureTensor()]
    images = _pil_images(((70, 50),))
    _same_for_every_seed(train, v2.Compose(crop), images)
    crop[1] = v2.RandomResizedCrop(32, interpolation=BILINEAR, antialias=True)
    assert _differs_for_some_seed(train, v2.Compose(crop), images)


def test_normalize_written_first_still_runs_after_the_crop_and_flip():
    augment = ({"kind": "normalize"}, {"kind": "random_resized_crop", "size": 48},
               {"kind": "horizontal_flip"})
    train, _, notes = _steps(_config(augment=augment), (3, None, None), (3, 48, 48))
    _same_for_every_seed(train, _preset_train(48, BILINEAR, None, erase=0),
                         _pil_images(((80, 60),)))
    assert ("normalize runs on float images after the crops, flips and policies "
            "(torchvision's reference order), though augment lists it before") in notes


def test_validation_drops_policies_and_erasing():
    augment = ({"kind": "center_crop", "size": 40}, {"kind": "augmix"},
               {"kind": "random_erasing", "p": 1.0}, {"kind": "normalize"})
    _, val, _ = _steps(_config(augment=augment), (3, 40, 40), (3, 40, 40))
    image = _pil_images(((40, 40),))[0]
    reference = _preset_eval(46, 40, BILINEAR)  # center_crop 40's 256/224 margin
    assert torch.equal(_seeded(val, image, 0), reference(image))


def test_policies_work_on_float_sources():
    """digits (1 channel) and synthetic images are float tensors; the policies and
    erasing take them as they are."""
    pytest.importorskip("sklearn")
    augment = ({"kind": "auto_augment", "policy": "svhn"},
               {"kind": "random_erasing", "p": 0.5}, {"kind": "normalize"})
    data = open_data("digits", (1, 16, 16), _config(augment=augment).augment)
    torch.manual_seed(0)
    draws = [data.train[5][0] for _ in range(6)]
    assert all(d.shape == (1, 16, 16) and d.dtype == torch.float32 for d in draws)
    assert any(not torch.equal(draws[0], d) for d in draws[1:])
    assert torch.equal(data.val[5][0], data.val[5][0])
    augment = ({"kind": "trivial_augment"}, {"kind": "horizontal_flip"})
    data = open_data("synthetic:8", (3, 12, 12), _config(augment=augment).augment)
    assert data.train[0][0].shape == (3, 12, 12)


def test_ten_crop_with_own_validation_sizes():
    config = _config(augment=({"kind": "random_resized_crop", "size": 20},),
                     val_resize=30, val_crop=24)
    _, val, _ = _steps(config, (3, None, None), (3, 24, 24), tta="ten_crop")
    image = _pil_images(((50, 40),))[0]
    views = val(image)
    assert views.shape == (10, 3, 24, 24)
    resized = v2.Compose([v2.PILToTensor(), v2.Resize(30, antialias=True),
                          v2.CenterCrop(24)])(image)
    assert torch.equal(views[4], v2.ToDtype(torch.float32, scale=True)(resized))


# --- bad input --------------------------------------------------------------------

def test_policies_refuse_channel_counts_torchvision_refuses():
    augment = _config(augment=({"kind": "rand_augment"},)).augment
    with pytest.raises(DataError, match="1 or 3 channels.*has 2"):
        pipelines((1, 8, 8), (2, 8, 8), augment)
    pipelines((1, 8, 8), (1, 8, 8), augment)  # one channel is fine


def test_bad_sizes_and_interpolation_are_data_errors():
    augment = _config(augment=({"kind": "random_resized_crop", "size": 20},)).augment
    with pytest.raises(DataError, match="val_crop 40 is larger than val_resize 30"):
        pipelines((3, None, None), (3, 24, 24), augment, val_resize=30, val_crop=40)
    with pytest.raises(DataError, match="unknown interpolation `lanczos`"):
        pipelines((3, None, None), (3, 24, 24), augment, interpolation="lanczos")


# --- MixUp and CutMix -------------------------------------------------------------

def _batch(classes=5):
    generator = torch.Generator().manual_seed(3)
    return (torch.rand(8, 3, 16, 16, generator=generator),
            torch.randint(0, classes, (8,), generator=generator))


@pytest.mark.parametrize("mixup, cutmix", [(0.2, None), (None, 1.0), (0.2, 1.0)])
def test_mixer_is_torchvisions_mixup_and_cutmix(mixup, cutmix):
    images, labels = _batch()
    config = _config(mixup=mixup and {"alpha": mixup},
                     cutmix=cutmix and {"alpha": cutmix})
    mixer = make_mixer(config.mixup, config.cutmix, 5)
    chosen = ([v2.MixUp(alpha=mixup, num_classes=5)] if mixup else []) + (
        [v2.CutMix(alpha=cutmix, num_classes=5)] if cutmix else [])
    reference = chosen[0] if len(chosen) == 1 else v2.RandomChoice(chosen)
    outputs = set()
    for seed in SEEDS:
        torch.manual_seed(seed)
        mixed, targets = mixer(images, labels)
        torch.manual_seed(seed)
        theirs, their_targets = reference(images, labels)
        assert torch.equal(mixed, theirs) and torch.equal(targets, their_targets)
        assert targets.shape == (8, 5) and torch.allclose(targets.sum(1), torch.ones(8))
        # CutMix takes each pixel from the image or its neighbour; MixUp blends them
        outputs.add(bool(((mixed == images) | (mixed == images.roll(1, 0))).all()))
    assert outputs == ({False} if not cutmix else {True} if not mixup else {False, True})


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_the_training_loss_is_cross_entropy_on_soft_targets(smoothing):
    """The loss the training loop computes (`Trainer.loss`) on mixed targets."""
    from types import SimpleNamespace

    from cnnspec.training.loop import Trainer

    def mixed_loss(logits, targets, smoothing):
        config = SimpleNamespace(label_smoothing=smoothing, channels_last=False)
        trainer = Trainer(None, None, torch.device("cpu"), config, {})
        return trainer.loss(logits, targets)[0]

    images, labels = _batch()
    torch.manual_seed(0)
    _, targets = make_mixer(Mixing(alpha=0.4), None, 5)(images, labels)
    logits = torch.randn(8, 5, generator=torch.Generator().manual_seed(1))
    smoothed = targets * (1 - smoothing) + smoothing / 5
    by_hand = -(smoothed * F.log_softmax(logits, dim=1)).sum(1).mean()
    assert torch.allclose(mixed_loss(logits, targets, smoothing), by_hand,
                          rtol=1e-6, atol=1e-7)
    hard = F.cross_entropy(logits, labels, label_smoothing=smoothing)
    assert not torch.allclose(mixed_loss(logits, targets, smoothing), hard)


def test_dominant_labels_and_notes():
    targets = torch.tensor([[0.3, 0.7, 0.0], [0.0, 0.45, 0.55], [0.6, 0.0, 0.4]])
    assert dominant_labels(targets).tolist() == [1, 2, 0]
    assert "dominant label" in MIXING_NOTE
    both = describe_mixing(Mixing(alpha=0.2), Mixing(alpha=1.0))
    assert both.startswith("mixup alpha=0.2 or cutmix alpha=1.0 (one per batch")
    assert describe_mixing(None, None) is None


def test_mixing_needs_two_classes():
    assert make_mixer(None, None, 1) is None
    with pytest.raises(UsageError, match="at least 2 classes"):
        make_mixer(Mixing(alpha=0.2), None, 1)
    with pytest.raises(UsageError, match="at least 2 classes"):
        make_mixer(None, Mixing(alpha=1.0), 0)
