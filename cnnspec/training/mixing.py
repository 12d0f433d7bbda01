"""MixUp and CutMix: batches of mixed images with soft targets, as torchvision mixes.

Takes: the recipe's `mixup` and `cutmix` entries (`Mixing(alpha)` or None) and the
class count. Returns: a mixer (`make_mixer`), called on a batch of images
N x C x H x W and int64 labels N, that gives the mixed images and soft targets
N x classes (each row sums to 1), from torchvision.transforms.v2's MixUp and CutMix;
with both, one of them per batch, chosen at random (v2.RandomChoice), as
torchvision's reference train.py does. Mixing weights come from Beta(alpha, alpha)
and are drawn from torch's global RNG, so torch.manual_seed reproduces them.

The loss on soft targets is `F.cross_entropy(logits, targets, label_smoothing=...)`
(torch takes class probabilities as targets, and smooths them to
targets * (1 - eps) + eps / classes): the training loop's loss takes them as they
are. Training accuracy
is measured against each mixed image's dominant label (`dominant_labels`, the class
with the largest share), which `MIXING_NOTE` says.
"""

from __future__ import annotations

import torch

from .errors import UsageError

MIXING_NOTE = ("with MixUp/CutMix the targets are soft: training accuracy counts "
               "each mixed image's dominant label (the class with the largest share)")


def make_mixer(mixup, cutmix, classes: int):
    """A callable (images, labels) -> (mixed images, soft targets N x classes), or
    None when the recipe mixes nothing. `mixup` and `cutmix` are `Mixing` entries
    (with `alpha`) or None."""
    if mixup is None and cutmix is None:
        return None
    if classes < 2:
        raise UsageError(f"MixUp/CutMix mixes the labels of two classes and needs at "
                         f"least 2 classes; the network scores {classes}: remove "
                         "`mixup`/`cutmix` from the recipe or give it more classes")
    from torchvision.transforms import v2

    chosen = []
    if mixup is not None:
        chosen.append(v2.MixUp(alpha=mixup.alpha, num_classes=classes))
    if cutmix is not None:
        chosen.append(v2.CutMix(alpha=cutmix.alpha, num_classes=classes))
    return chosen[0] if len(chosen) == 1 else v2.RandomChoice(chosen)


def describe_mixing(mixup, cutmix) -> str | None:
    """`mixup alpha=0.2 or cutmix alpha=1.0 (one per batch)`, with MIXING_NOTE, or
    None when the recipe mixes nothing."""
    parts = [f"{name} alpha={entry.alpha}" for name, entry
             in (("mixup", mixup), ("cutmix", cutmix)) if entry is not None]
    if not parts:
        return None
    how = " or ".join(parts) + (" (one per batch, chosen at random)"
                                if len(parts) == 2 else "")
    return f"{how}; {MIXING_NOTE}"


def dominant_labels(targets: torch.Tensor) -> torch.Tensor:
    """Each soft target's class with the largest share: N x classes -> N."""
    return targets.argmax(1)
