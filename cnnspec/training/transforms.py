"""The recipe's `augment` list as torchvision.transforms.v2 pipelines.

Takes: an image shape, the spec's input shape C x H x W, the recipe's augmentations
and its `interpolation`, `val_resize` and `val_crop`. Returns: the training steps, the
deterministic validation steps (random crops become center crops; flips, colour
changes, policies and random erasing are dropped), and notes on what was converted
(channels, sizes, order). AlexNet's PCA lighting is written here by hand: no library
ships it.

The steps run in the order of torchvision's reference presets
(references/classification/presets.py, ClassificationPresetTrain/Eval with the
tensor backend): the image becomes a uint8 tensor image (v2.ToImage; a source of
float tensors, like `digits`, stays float), its channels are converted, then the
crops, flips, colour jitter and policies (`trivial_augment`, `rand_augment`,
`auto_augment`, `augmix`) run in the order written, then
`v2.ToDtype(float32, scale=True)`, then `pca_lighting` and `normalize` (they need
floats) in the order written, then `random_erasing`, then a plain tensor. Written
elsewhere in `augment`, those last three still run there, and a note says so.

Sizes. Without `val_resize`/`val_crop`, training crops are resized to the spec's
input and validation follows ImageNet's 256/224 convention (the shorter side
resized to S * 256/224, then the centre S x S). With them, as torchvision's weights
document their recipes (ResNet-50 V2 trains on 176 crops and validates with resize
232, crop 224): the training crop keeps its own size, and validation is
Resize(val_resize) then CenterCrop(val_crop); `val_crop` defaults to the spec's
input, `val_resize` to val_crop * 256/224. `interpolation` (bilinear, bicubic or
nearest) is the one of every resize, of RandomResizedCrop and of the policies, except
that torchvision's policies rotate and shear tensor images with nearest or bilinear
only: with bicubic they use bilinear, and a note says so.

Test-time augmentation (`tta`) turns each validation image into a V x C x H x W stack
of views: `flip`, the image and its horizontal flip (V = 2); `ten_crop`, AlexNet's
four corner crops and centre crop and their flips (V = 10, torchvision's `TenCrop`
in place of the final centre crop).

`normalize` uses ImageNet's mean and std (0.485, 0.456, 0.406) / (0.229, 0.224,
0.225) for 3 channels and 0.5 / 0.5 for any other count.
"""

from __future__ import annotations

import torch

from .errors import DataError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# ImageNet's convention: 224 crops out of images whose shorter side is 256.
CROP_RATIO = 256 / 224
SIZED = {"random_crop", "random_resized_crop", "center_crop", "resize"}
GEOMETRIC = SIZED | {"horizontal_flip"}
POLICIES = {"trivial_augment": "TrivialAugmentWide", "rand_augment": "RandAugment",
            "auto_augment": "AutoAugment", "augmix": "AugMix"}  # kind -> v2 class
ON_FLOATS = ("pca_lighting", "normalize")  # after ToDtype: they need floats in [0, 1]
LAST = ("random_erasing",)  # after normalize, as torchvision's references erase
INTERPOLATIONS = ("bilinear", "bicubic", "nearest")
TTA = {"none": 1, "flip": 2, "ten_crop": 10}  # test-time augmentation -> views per image


class PCALighting(torch.nn.Module):
    """AlexNet's colour augmentation (Krizhevsky et al. 2012, section 4.1).

    Adds to every RGB pixel sum_i alpha_i * lambda_i * p_i, with alpha_i ~ N(0, strength)
    drawn once per image from torch's global RNG (reproducible with torch.manual_seed),
    and lambda_i, p_i the eigenvalues and eigenvectors of ImageNet's RGB covariance as
    published with fb.resnet.torch. Expects float images in [0, 1]; an image that
    does not have 3 channels passes unchanged.
    """

    # No library ships this transform, so it is written here.
    EIGVAL = torch.tensor([0.2175, 0.0188, 0.0045])
    EIGVEC = torch.tensor([[-0.5675, 0.7192, 0.4009],
                           [-0.5808, -0.0045, -0.8140],
                           [-0.5836, -0.6948, 0.4203]])

    def __init__(self, strength: float = 0.1) -> None:
        super().__init__()
        self.strength = strength

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        if self.strength == 0 or image.shape[-3] != 3:
            return image
        alpha = torch.randn(3) * self.strength
        shift = self.EIGVEC @ (alpha * self.EIGVAL)
        return image + shift.to(image.dtype).view(3, 1, 1)

    def extra_repr(self) -> str:
        return f"strength={self.strength}"


class RepeatChannels(torch.nn.Module):
    """A 1-channel image as `channels` identical channels."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = channels

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return image.expand(*image.shape[:-3], self.channels, *image.shape[-2:]).clone()


class StackViews(torch.nn.Module):
    """The views TenCrop returns (a tuple) as one V x C x H x W tensor (per image:
    a batch N x C x H x W becomes N x V x C x H x W)."""

    def forward(self, views) -> torch.Tensor:
        from torchvision import tv_tensors

        return tv_tensors.Image(torch.stack(list(views), dim=-4))


class FlipViews(torch.nn.Module):
    """An image and its horizontal flip, stacked: 2 x C x H x W."""

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return torch.stack([image, image.flip(-1)], dim=-4)


class PlainTensor(torch.nn.Module):
    """Drops torchvision's `Image` tensor subclass, so batches are plain tensors."""

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return image.as_subclass(torch.Tensor)


def v2_module():
    try:
        from torchvision.transforms import v2
    except ImportError:
        raise DataError("image data needs torchvision: pip install torchvision") from None
    return v2


def is_random(step) -> bool:
    v2 = v2_module()
    return isinstance(step, (v2.RandomCrop, v2.RandomResizedCrop, v2.RandomHorizontalFlip,
                             v2.ColorJitter, v2.TrivialAugmentWide, v2.RandAugment,
                             v2.AutoAugment, v2.AugMix, v2.RandomErasing, PCALighting))


def pipelines(image_shape, input_shape, augment, *, tta: str = "none",
              interpolation: str = "bilinear", val_resize: int | None = None,
              val_crop: int | None = None) -> tuple[list, list, list[str]]:
    """Train and validation steps for images of `image_shape` (C, H, W; H and W None
    when they vary), and notes on the conversions they make. `val_resize` and
    `val_crop` give validation its own sizes; with `tta` other than "none", the
    validation steps give each image's views (see the module docstring)."""
    v2 = v2_module()
    mode = _interpolation(v2, interpolation)
    c = input_shape[0]
    channels = image_shape[0]
    _check_policies(augment, c)
    start = [v2.ToImage(), *_channel_steps(channels, c)]
    notes = [_channel_note(channels, c)] if channels != c else []
    notes += _policy_interpolation_note(augment, mode)
    own_sizes = val_resize is not None or val_crop is not None
    on_bytes = [a for a in augment if a.kind not in ON_FLOATS + LAST]
    train, val, size, size_notes = _byte_steps(v2, image_shape, input_shape, on_bytes,
                                               mode, own_sizes)
    notes += size_notes
    if own_sizes:
        val, note = _own_val_steps(v2, input_shape, size, val_resize, val_crop, mode)
        notes.append(note)
    on_floats = [a for a in augment if a.kind in ON_FLOATS]
    last = [a for a in augment if a.kind in LAST]
    to_float = v2.ToDtype(torch.float32, scale=True)
    train = (start + train + [to_float]
             + _steps_of(_train_steps, v2, on_floats + last, input_shape, mode))
    val = start + val + [to_float] + _steps_of(_val_steps, v2, on_floats, input_shape,
                                               mode)
    notes += _order_notes(augment)
    if tta != "none":
        val = _test_time_views(v2, val, augment, tta, own_sizes)
    return train + [PlainTensor()], val + [PlainTensor()], notes


def _byte_steps(v2, image_shape, input_shape, augment, mode, own_sizes: bool):
    """The steps on uint8 images (crops, flips, colour jitter, policies) for training
    and their deterministic counterparts for validation, the size (H, W) of the
    training images they give, and notes on the resizing. The training crop is
    resized to the spec's input unless validation has its own sizes."""
    c, h, w = input_shape
    _, *source_size = image_shape
    train, val, notes = [], [], []
    seen = "" if None in source_size else "images are {}x{}x{}; ".format(*image_shape)
    first = next((a for a in augment if a.kind in SIZED), None)
    if first is not None and first.kind in ("random_crop", "center_crop"):
        short = _pre_crop_size(first, h, w)
        train.append(v2.Resize(short, interpolation=mode, antialias=True))
        val.append(v2.Resize(short, interpolation=mode, antialias=True))
        ratio = "" if first.padding else " (ImageNet's 256/224 ratio)"
        notes.append(f"{seen}shorter side resized to {short} before the "
                     f"{first.kind} {_size_text(first, h, w)}{ratio}")
    size, train_end, val_end = None, len(train), len(val)
    for a in augment:
        train += _train_steps(v2, a, c, h, w, mode)
        val += _val_steps(v2, a, c, h, w, mode)
        if a.kind in SIZED:
            size = _crop_size(a, h, w) if a.kind != "resize" else None
        if a.kind in GEOMETRIC:
            train_end, val_end = len(train), len(val)
    if own_sizes and size is not None:
        return train, val, size, notes
    if size != (h, w):
        # A no-op for images already H x W (torchvision returns them as they are).
        train.insert(train_end, v2.Resize((h, w), interpolation=mode, antialias=True))
        val.insert(val_end, v2.Resize((h, w), interpolation=mode, antialias=True))
        if size is not None:
            notes.append(f"{size[0]}x{size[1]} crops resized to {h}x{w} "
                         "for the spec's input")
        elif first is None and source_size != [h, w]:
            notes.append(f"{seen or 'images '}resized to {c}x{h}x{w} "
                         "for the spec's input")
    return train, val, (h, w), notes


def _steps_of(make, v2, augment, input_shape, mode) -> list:
    """The steps `make` (_train_steps or _val_steps) gives for each entry."""
    c, h, w = input_shape
    return [step for a in augment for step in make(v2, a, c, h, w, mode)]


def _own_val_steps(v2, input_shape, train_size, val_resize, val_crop, mode):
    """Validation at its own sizes, as torchvision's weights document theirs: the
    shorter side resized to `val_resize`, then the centre `val_crop`; and the note
    saying what sizes training and validation use."""
    _, h, w = input_shape
    for name, value in (("val_resize", val_resize), ("val_crop", val_crop)):
        if value is not None and not (isinstance(value, int) and value >= 1):
            raise DataError(f"{name} must be a whole number of pixels, 1 or more, "
                            f"not {value!r}")
    crop = (val_crop, val_crop) if val_crop is not None else (h, w)
    resize = val_resize if val_resize is not None else round(max(crop) * CROP_RATIO)
    if max(crop) > resize:
        raise DataError(f"val_crop {_pair_text(crop)} is larger than val_resize "
                        f"{resize}: the centre crop would be padded with black; make "
                        "val_resize at least val_crop")
    steps = [v2.Resize(resize, interpolation=mode, antialias=True), v2.CenterCrop(crop)]
    note = (f"training at {_pair_text(train_size)}, validation at {_pair_text(crop)} "
            f"(shorter side resized to {resize}, then the centre crop); the spec's "
            f"input is {h}x{w}")
    return steps, note


def _order_notes(augment) -> list[str]:
    """Notes for the steps that run elsewhere than `augment` lists them."""
    kinds = [a.kind for a in augment]
    last_on_bytes = max((i for i, kind in enumerate(kinds)
                         if kind not in ON_FLOATS + LAST), default=-1)
    early = list(dict.fromkeys(k for k in kinds[:last_on_bytes] if k in ON_FLOATS))
    notes = []
    if early:
        run, them = ("runs", "it") if len(early) == 1 else ("run", "them")
        notes.append(f"{' and '.join(early)} {run} on float images after the crops, "
                     "flips and policies (torchvision's reference order), though "
                     f"augment lists {them} before")
    erased = kinds.index("random_erasing") if "random_erasing" in kinds else len(kinds)
    if any(kind not in LAST for kind in kinds[erased:]):
        notes.append("random_erasing runs last, after normalize (torchvision's "
                     "reference order), though augment lists it earlier")
    return notes


def _check_policies(augment, channels: int) -> None:
    """torchvision's policies work on 1- and 3-channel images only."""
    policy = next((a for a in augment if a.kind in POLICIES), None)
    if policy is not None and channels not in (1, 3):
        raise DataError(f"`{policy.kind}` (torchvision's {POLICIES[policy.kind]}) works "
                        f"on images of 1 or 3 channels, and the spec's input has "
                        f"{channels}: remove it from augment or change the input")


def _policy_interpolation_note(augment, mode) -> list[str]:
    policies = list(dict.fromkeys(a.kind for a in augment if a.kind in POLICIES))
    if not policies or _policy_mode(mode) == mode:
        return []
    return [f"{' and '.join(policies)} rotate and shear with bilinear interpolation: "
            f"torchvision's policies do not take {mode.value} on tensor images (the "
            f"crops and resizes use {mode.value})"]


def _policy_mode(mode):
    """The interpolation the policies use: torchvision's rotations and shears of
    tensor images take only nearest and bilinear, so bicubic becomes bilinear."""
    modes = type(mode)
    return mode if mode in (modes.NEAREST, modes.BILINEAR) else modes.BILINEAR


def _interpolation(v2, name: str):
    if name not in INTERPOLATIONS:
        raise DataError(f"unknown interpolation `{name}`; choose "
                        + ", ".join(INTERPOLATIONS))
    return v2.InterpolationMode(name)


def _test_time_views(v2, val: list, augment, tta: str, own_sizes: bool = False) -> list:
    """`val` with its views: flips appended, or the final centre crop as TenCrop."""
    if tta not in TTA:
        raise DataError(f"unknown test-time augmentation `{tta}`; choose "
                        + ", ".join(TTA))
    if tta == "flip":
        return val + [FlipViews()]
    last = max((i for i, step in enumerate(val) if isinstance(step, v2.CenterCrop)),
               default=None)
    if last is None or any(isinstance(step, v2.Resize) for step in val[last:]):
        raise DataError("ten_crop needs a recipe whose images end in a crop of the "
                        "input's size (`augment: random_crop N`, `random_resized_crop N` "
                        "or `center_crop N`); this one resizes whole images, so the "
                        "crops would all be the same: use flip instead")
    crop = None if own_sizes else [a for a in augment if a.kind in SIZED - {"resize"}][-1]
    pad = ([v2.Pad(crop.padding)] if crop is not None and crop.kind == "random_crop"
           and crop.padding else [])
    return (val[:last] + pad + [v2.TenCrop(val[last].size), StackViews()]
            + val[last + 1:])


def _channel_note(have: int, want: int) -> str:
    if have == 3 and want == 1:
        return "converted RGB to 1 channel"
    return f"converted 1 channel to {want} by repeating it"


def _channel_steps(have: int, want: int) -> list:
    if have == want:
        return []
    if have == 3 and want == 1:
        return [v2_module().Grayscale(1)]
    if have == 1:
        return [RepeatChannels(want)]
    raise DataError(f"the images have {have} channels but the spec's input has {want}; "
                    "cnnspec converts only RGB to 1 channel and 1 channel to any count: "
                    "change the spec's input or convert the images")


def _crop_size(a, h: int, w: int) -> tuple[int, int]:
    """The (H, W) of a crop or resize entry: its size, else the spec's input."""
    return (a.size, a.size) if a.size is not None else (h, w)


def _pair_text(size) -> str:
    return str(size[0]) if size[0] == size[1] else f"{size[0]}x{size[1]}"


def _size_text(a, h: int, w: int) -> str:
    return _pair_text(_crop_size(a, h, w))


def _pre_crop_size(crop, h: int, w: int) -> int:
    """The shorter side an image gets before `crop`: the crop itself when it pads
    (CIFAR's `random_crop 32 padding=4`), else ImageNet's 256/224 margin."""
    side = max(_crop_size(crop, h, w))
    return side if crop.padding else round(side * CROP_RATIO)


def _train_steps(v2, a, channels: int, h: int, w: int, mode) -> list:
    if a.kind == "random_crop":
        return [v2.RandomCrop(_crop_size(a, h, w), padding=a.padding or None,
                              pad_if_needed=True)]
    if a.kind == "random_resized_crop":
        return [v2.RandomResizedCrop(_crop_size(a, h, w), interpolation=mode,
                                     antialias=True)]
    if a.kind == "horizontal_flip":
        return [v2.RandomHorizontalFlip(a.p)]
    if a.kind == "color_jitter":
        return [_color_jitter(v2, a.strength, channels)]
    if a.kind == "pca_lighting":
        return [PCALighting(a.strength)]
    if a.kind in POLICIES:
        return [_policy(v2, a, mode)]
    if a.kind == "random_erasing":
        return [v2.RandomErasing(p=a.p)]
    return _val_steps(v2, a, channels, h, w, mode)


def _val_steps(v2, a, channels: int, h: int, w: int, mode) -> list:
    if a.kind in ("random_crop", "center_crop"):
        return [v2.CenterCrop(_crop_size(a, h, w))]
    if a.kind == "random_resized_crop":
        size = _crop_size(a, h, w)
        return [v2.Resize(round(max(size) * CROP_RATIO), interpolation=mode,
                          antialias=True),
                v2.CenterCrop(size)]
    if a.kind == "resize":
        return [v2.Resize(a.size if a.size is not None else (h, w),
                          interpolation=mode, antialias=True)]
    if a.kind == "normalize":
        return [_normalize(v2, channels)]
    return []


def _policy(v2, a, mode):
    """The v2 policy of `a` (trivial_augment, rand_augment, auto_augment, augmix)."""
    mode = _policy_mode(mode)
    if a.kind == "trivial_augment":
        return v2.TrivialAugmentWide(interpolation=mode)
    if a.kind == "rand_augment":
        return v2.RandAugment(num_ops=a.ops, magnitude=a.magnitude, interpolation=mode)
    if a.kind == "auto_augment":
        return v2.AutoAugment(v2.AutoAugmentPolicy(a.policy), interpolation=mode)
    return v2.AugMix(severity=a.severity, interpolation=mode)


def _normalize(v2, channels: int):
    if channels == 3:
        return v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)
    return v2.Normalize((0.5,) * channels, (0.5,) * channels)


def _color_jitter(v2, strength: float, channels: int):
    if channels == 3:
        return v2.ColorJitter(brightness=strength, contrast=strength, saturation=strength)
    # Saturation needs colour; contrast needs a grey level, defined for 1 or 3 channels.
    return v2.ColorJitter(brightness=strength, contrast=strength if channels == 1 else 0)


# --- Datasets ---------------------------------------------------------------------
