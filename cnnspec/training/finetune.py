"""Freezing layers of a built model without editing its spec (`--freeze`,
`--unfreeze-from`), the same way `frozen { }` does.

Takes: the model, its spec and the layer-name patterns. Returns: the names of the
layers frozen. A frozen layer's parameters stop requiring gradients (so the
optimizer leaves them out) and a frozen batchnorm becomes `FrozenBatchNorm2d`/`1d`,
which keeps its running statistics in train() as in eval().
"""

from __future__ import annotations

from torch import nn

from ..diagnostics import did_you_mean
from ..frontend.recipe import matches_layer
from .errors import UsageError


def select_layers(layers: list[str], patterns=(), unfreeze_from: str | None = None,
                  flag: str = "--freeze") -> list[str]:
    """The layers (in spec order) that `patterns` and `unfreeze_from` select; `flag`
    names the option in the error for a pattern that matches nothing."""
    chosen: set[str] = set()
    # Suggestions come from the top-level names first (`layer4`, not `layer4.1.6`).
    tops = sorted({name.split(".")[0] for name in layers})
    for pattern in patterns:
        hits = [name for name in layers if matches_layer(name, pattern)]
        if not hits:
            raise UsageError(f"{flag} {pattern} matches no layer of the spec; "
                             + (did_you_mean(pattern, tops)
                                or did_you_mean(pattern, layers) or
                                f"layers are named like {', '.join(layers[:4])}"))
        chosen.update(hits)
    if unfreeze_from is not None:
        first = next((i for i, name in enumerate(layers)
                      if matches_layer(name, unfreeze_from)), None)
        if first is None:
            raise UsageError(f"--unfreeze-from {unfreeze_from}: no such layer; "
                             + (did_you_mean(unfreeze_from, tops)
                                or did_you_mean(unfreeze_from, layers) or
                                f"layers are named like {', '.join(layers[:4])}"))
        chosen.update(layers[:first])
    return [name for name in layers if name in chosen]


def freeze(model: nn.Module, spec, patterns=(), unfreeze_from: str | None = None
           ) -> list[str]:
    """Freeze the selected layers of `model` in place; their names."""
    from ..backends.torch_backend import FrozenBatchNorm1d, FrozenBatchNorm2d

    names = select_layers(spec.layer_names, patterns, unfreeze_from)
    modules = dict(model.named_modules())
    for name in names:
        module = modules.get(name)
        if module is None:  # a function (add, concat): nothing to freeze
            continue
        module.requires_grad_(False)
        # Same parameters and buffers, a class whose train() keeps eval mode.
        if type(module) is nn.BatchNorm2d:
            module.__class__ = FrozenBatchNorm2d
        elif type(module) is nn.BatchNorm1d:
            module.__class__ = FrozenBatchNorm1d
        module.train(module.training)
    return names
