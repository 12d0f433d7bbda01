"""The recipe's `augment` list as torchvision.transforms.v2 pipelines.

Takes: an image shape, the spec's input shape C x H x W and the recipe's
augmentations. Returns: the training steps, the deterministic validation steps
(random crops become center crops; flips and colour changes are dropped), and notes
on what was converted (channels, size). AlexNet's PCA lighting is written here by
hand: no library ships it.

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
                             v2.ColorJitter, PCALighting))


def pipelines(image_shape, input_shape, augment, *, tta: str = "none"
              ) -> tuple[list, list, list[str]]:
    """Train and validation steps for images of `image_shape` (C, H, W; H and W None
    when they vary), and notes on the conversions they make. With `tta` other than
    "none", the validation steps give each image's views (see the module docstring)."""
    v2 = v2_module()
    c, h, w = input_shape
    channels, *source_size = image_shape
    start = [v2.ToImage(), v2.ToDtype(torch.float32, scale=True),
             *_channel_steps(channels, c)]
    train, val = list(start), list(start)
    notes = [_channel_note(channels, c)] if channels != c else []
    seen = "" if None in source_size else "images are {}x{}x{}; ".format(*image_shape)
    first = next((a for a in augment if a.kind in SIZED), None)
    if first is not None and first.kind in ("random_crop", "center_crop"):
        short = _pre_crop_size(first, h, w)
        train.append(v2.Resize(short, antialias=True))
        val.append(v2.Resize(short, antialias=True))
        ratio = "" if first.padding else " (ImageNet's 256/224 ratio)"
        notes.append(f"{seen}shorter side resized to {short} before the "
                     f"{first.kind} {_size_text(first, h, w)}{ratio}")
    size, train_end, val_end = None, len(train), len(val)
    for a in augment:
        train += _train_steps(v2, a, c, h, w)
        val += _val_steps(v2, a, c, h, w)
        if a.kind in SIZED:
            size = _crop_size(a, h, w) if a.kind != "resize" else None
        if a.kind in GEOMETRIC:
            train_end, val_end = len(train), len(val)
    if size != (h, w):
        # A no-op for images already H x W (torchvision returns them as they are).
        train.insert(train_end, v2.Resize((h, w), antialias=True))
        val.insert(val_end, v2.Resize((h, w), antialias=True))
        if size is not None:
            notes.append(f"{size[0]}x{size[1]} crops resized to {h}x{w} "
                         "for the spec's input")
        elif first is None and source_size != [h, w]:
            notes.append(f"{seen or 'images '}resized to {c}x{h}x{w} "
                         "for the spec's input")
    if tta != "none":
        val = _test_time_views(v2, val, augment, tta)
    return train + [PlainTensor()], val + [PlainTensor()], notes


def _test_time_views(v2, val: list, augment, tta: str) -> list:
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
    crop = [a for a in augment if a.kind in SIZED - {"resize"}][-1]
    pad = [v2.Pad(crop.padding)] if crop.kind == "random_crop" and crop.padding else []
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
    return (a.size, a.size) if a.size is not None else (h, w)


def _size_text(a, h: int, w: int) -> str:
    ch, cw = _crop_size(a, h, w)
    return str(ch) if ch == cw else f"{ch}x{cw}"


def _pre_crop_size(crop, h: int, w: int) -> int:
    """The shorter side an image gets before `crop`: the crop itself when it pads
    (CIFAR's `random_crop 32 padding=4`), else ImageNet's 256/224 margin."""
    side = max(_crop_size(crop, h, w))
    return side if crop.padding else round(side * CROP_RATIO)


def _train_steps(v2, a, channels: int, h: int, w: int) -> list:
    size = _crop_size(a, h, w)
    if a.kind == "random_crop":
        return [v2.RandomCrop(size, padding=a.padding or None, pad_if_needed=True)]
    if a.kind == "random_resized_crop":
        return [v2.RandomResizedCrop(size, antialias=True)]
    if a.kind == "horizontal_flip":
        return [v2.RandomHorizontalFlip(a.p)]
    if a.kind == "color_jitter":
        return [_color_jitter(v2, a.strength, channels)]
    if a.kind == "pca_lighting":
        return [PCALighting(a.strength)]
    return _val_steps(v2, a, channels, h, w)


def _val_steps(v2, a, channels: int, h: int, w: int) -> list:
    size = _crop_size(a, h, w)
    if a.kind in ("random_crop", "center_crop"):
        return [v2.CenterCrop(size)]
    if a.kind == "random_resized_crop":
        return [v2.Resize(round(max(size) * CROP_RATIO), antialias=True),
                v2.CenterCrop(size)]
    if a.kind == "resize":
        return [v2.Resize(a.size if a.size is not None else (h, w), antialias=True)]
    if a.kind == "normalize":
        return [_normalize(v2, channels)]
    return []


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
