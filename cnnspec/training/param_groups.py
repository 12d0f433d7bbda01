"""The optimizer's parameter groups: which weight decay and which rate each
trainable parameter gets.

Takes: a model, a `RunConfig` (weight_decay, norm_weight_decay, bias_weight_decay,
decay_norm_bias, lr_mult, decay_mult, lr_head), the spec's layer names (for the
suggestion when a pattern matches nothing) and the classifier's layers (`head`).
Returns: a list of torch.optim parameter-group dicts, each with `params`,
`weight_decay`, `lr` (absolute) and a `name` saying what it holds ("norm", "bias",
"layer4 x0.1"); `describe_groups` turns them into rows for a printout. A layer
pattern that matches no parameter raises `UsageError` naming it.

The decay follows torchvision's reference `set_weight_decay(model, weight_decay,
norm_weight_decay, custom_keys_weight_decay=[("bias", bias_weight_decay)])`: a
parameter named `bias` goes to the bias group when `bias_weight_decay` is set (even
inside a normalisation layer), else a parameter of a normalisation layer goes to
the norm group when `norm_weight_decay` is set, else it gets `weight_decay`; the
groups come in the reference's order (other, norm, bias), empty ones left out.
`decay_norm_bias=False` (the older switch) takes the decay off every
one-dimensional parameter the two rules above leave. `lr_mult` and `decay_mult`
then split the groups by layer: each parameter's layer (its name without the last
component) is matched against the patterns, the last matching entry wins, and its
rate is the base rate times that factor (its decay the group's times the decay
factor). `lr_head` gives the classifier's layers that rate instead.
"""

from __future__ import annotations

from torch import nn

from ..backends.torch_backend import FrozenBatchNorm1d, FrozenBatchNorm2d, LayerNorm2d
from ..diagnostics import did_you_mean
from ..frontend.recipe import matches_layer
from .errors import UsageError

# The normalisation layers whose scales and shifts `norm_weight_decay` sets: torch's
# (torchvision's `split_normalization_params` list) and cnnspec's own, which
# subclass them (named here so the list says so).
NORM_CLASSES = (nn.modules.batchnorm._BatchNorm, nn.LayerNorm, nn.GroupNorm,
                nn.modules.instancenorm._InstanceNorm, nn.LocalResponseNorm,
                FrozenBatchNorm1d, FrozenBatchNorm2d, LayerNorm2d)

# The decay kinds, in the order of the reference's groups.
KINDS = ("other", "no decay", "norm", "bias")


def parameter_groups(model: nn.Module, config, layer_names,
                     head: frozenset[str] = frozenset()) -> list[dict]:
    """The trainable parameters of `model` in groups (see the module docstring)."""
    owners = _owners(model)
    _check_patterns(model, config, layer_names)
    groups: dict[tuple, dict] = {}
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        layer = name.rpartition(".")[0] or name
        kind = _decay_kind(name, parameter, owners[name], config)
        lr_entry = _last_match(layer, config.lr_mult)
        decay_entry = _last_match(layer, config.decay_mult)
        in_head = config.lr_head is not None and layer in head
        key = (in_head, KINDS.index(kind), lr_entry, decay_entry)
        if key not in groups:
            groups[key] = _group(kind, config, lr_entry, decay_entry, in_head)
        groups[key]["params"].append(parameter)
    if not groups:  # nothing trains: one empty group, as torch.optim needs one
        return [_group("other", config, None, None, False)]
    # The reference's order (other, norm, bias); the classifier's own rate last.
    return [groups[key] for key in sorted(groups, key=lambda k: (k[0], k[1]))]


def describe_groups(groups: list[dict]) -> list[dict]:
    """One row per group: name, tensors, parameters (elements), lr (the base rate
    the schedule scales: `initial_lr` once a scheduler has been built), weight_decay."""
    return [{"name": group["name"], "tensors": len(group["params"]),
             "parameters": sum(p.numel() for p in group["params"]),
             "lr": group.get("initial_lr", group["lr"]),
             "weight_decay": group["weight_decay"]}
            for group in groups]


def _owners(model: nn.Module) -> dict[str, nn.Module]:
    """Each parameter's name -> the module that holds it directly."""
    return {f"{prefix}.{name}" if prefix else name: module
            for prefix, module in model.named_modules()
            for name, _ in module.named_parameters(recurse=False)}


def _decay_kind(name: str, parameter, owner: nn.Module, config) -> str:
    """bias first (as the reference's custom key), then norm, then the older
    one-dimensional rule, then other."""
    if config.bias_weight_decay is not None and name.rpartition(".")[2] == "bias":
        return "bias"
    if config.norm_weight_decay is not None and isinstance(owner, NORM_CLASSES):
        return "norm"
    if not config.decay_norm_bias and config.weight_decay > 0 and parameter.ndim <= 1:
        return "no decay"
    return "other"


def _last_match(layer: str, entries) -> tuple[str, float] | None:
    """The last (pattern, factor) entry whose pattern matches `layer`."""
    found = None
    for pattern, factor in entries:
        if matches_layer(layer, pattern):
            found = (pattern, factor)
    return found


def _group(kind: str, config, lr_entry, decay_entry, in_head: bool) -> dict:
    decay = {"other": config.weight_decay, "no decay": 0.0,
             "norm": config.norm_weight_decay, "bias": config.bias_weight_decay}[kind]
    lr = config.optimizer.lr
    words = [] if kind == "other" and (lr_entry or decay_entry or in_head) else [kind]
    if lr_entry is not None:
        lr *= lr_entry[1]
        words.append(f"{lr_entry[0]} x{lr_entry[1]:g}")
    if decay_entry is not None:
        decay *= decay_entry[1]
        words.append(f"{decay_entry[0]} decay x{decay_entry[1]:g}")
    if in_head:
        lr = config.lr_head
        words.append("head")
    # `lr_scale`: the group's rate over the optimizer's (None: a rate of its own,
    # `lr_head`), so a new --lr on resuming moves every group that follows it.
    return {"params": [], "weight_decay": decay, "lr": lr, "name": ", ".join(words),
            "lr_scale": None if in_head else lr / config.optimizer.lr}


def _check_patterns(model: nn.Module, config, layer_names) -> None:
    """Every lr_mult/decay_mult pattern matches some parameter's layer (frozen ones
    count: the factor is harmless there)."""
    layers = {name.rpartition(".")[0] or name for name, _ in model.named_parameters()}
    for entry, entries in (("lr_mult", config.lr_mult), ("decay_mult", config.decay_mult)):
        for pattern, _ in entries:
            if any(matches_layer(layer, pattern) for layer in layers):
                continue
            names = list(layer_names) or sorted(layers)
            tops = sorted({name.split(".")[0] for name in names})
            raise UsageError(f"{entry} {pattern} matches no layer with parameters; "
                             + (did_you_mean(pattern, tops) or did_you_mean(pattern, names)
                                or f"layers are named like {', '.join(names[:4])}"))
