"""Pretrained weights in: read a weights file, match it to a spec's model, report.

Takes: a path to `.safetensors`, or a PyTorch `.pth`/`.pt`/`.bin` state dict as
torchvision and timm publish them (also nested under `model`, `state_dict` or
`model_state_dict`, with keys prefixed by `module.` from DDP or `_orig_mod.` from
torch.compile), and a built model. Returns: a `WeightsReport` of what loaded and
what was skipped, and why. Nothing is unpickled with code execution
(`torch.load(weights_only=True)`). A file that matches nothing, or whose backbone
does not fit the spec (anything but the classifier), raises `WeightsError`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from .checkpoint import first_sentence
from .errors import UsageError

NESTED = ("model", "state_dict", "model_state_dict")
PREFIXES = ("module.", "_orig_mod.")
TORCH_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt")
# Buffers older checkpoints lack; their absence changes nothing the model computes.
OPTIONAL = ("num_batches_tracked",)


class WeightsError(UsageError):
    """The weights file cannot be read, or does not fit the spec."""


@dataclass
class WeightsReport:
    path: str
    loaded: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)  # reason lines
    missing: list[str] = field(default_factory=list)      # in the spec, not in the file
    unused: list[str] = field(default_factory=list)       # in the file, not in the spec
    reinitialised: list[str] = field(default_factory=list)  # left fresh (--reinit)

    def lines(self) -> list[str]:
        total = (len(self.loaded) + len(self.mismatched) + len(self.missing)
                 + len(self.reinitialised))
        out = [f"weights: {len(self.loaded)} of {total} tensors loaded from {self.path}"]
        out += [f"  skipped {reason}" for reason in self.mismatched]
        out += [f"  skipped {name}: missing from the file" for name in self.missing
                if not name.endswith(OPTIONAL)]
        out += [f"  unused {name}: not in the spec" for name in self.unused]
        out += [f"  re-initialised {name} (--reinit)" for name in self.reinitialised
                if not name.endswith(OPTIONAL)]
        return out


def read_state_dict(path) -> dict[str, torch.Tensor]:
    """The tensors of a weights file, unnested and without wrapper prefixes."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"no weights file {path}")
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        state = _read_safetensors(path)
    elif suffix in TORCH_SUFFIXES:
        state = _read_torch(path)
    else:
        raise WeightsError(f"cannot tell the format of {path}: name it .safetensors, or "
                           ".pth/.pt/.bin for a PyTorch state dict")
    return _strip_prefixes(state)


def _read_safetensors(path: Path) -> dict:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as problem:
        raise WeightsError(f"{path} is not a readable safetensors file ({problem})"
                           ) from None


def _read_torch(path: Path) -> dict:
    import pickle
    import warnings

    try:
        with warnings.catch_warnings():  # torch's note on pickle protocols
            warnings.simplefilter("ignore", UserWarning)
            state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as problem:
        raise WeightsError(
            f"{path} holds more than tensors (a pickled object: "
            f"{first_sentence(problem) or type(problem).__name__}); it was not "
            "executed. Save the model's state_dict() instead") from None
    except Exception as problem:  # truncated, not a zip or pickle at all
        raise WeightsError(f"{path} is not a readable PyTorch file "
                           f"({type(problem).__name__}: {first_sentence(problem)})"
                           ) from None
    for key in NESTED:
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
            break
    if not isinstance(state, dict) or not state or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise WeightsError(f"{path} is not a state dict (names to tensors), nor one "
                           f"nested under {', '.join(NESTED)}")
    return state


def _strip_prefixes(state: dict) -> dict:
    for prefix in PREFIXES:
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
    return state


def shape_text(tensor) -> str:
    return "x".join(map(str, tensor.shape)) or "scalar"


def compare(model: torch.nn.Module, state: dict, path) -> tuple[WeightsReport, dict]:
    """Which tensors of `state` fit `model`: the report and the loadable subset."""
    own = model.state_dict()
    report, usable = WeightsReport(str(path)), {}
    for name, tensor in own.items():
        if name not in state:
            report.missing.append(name)
        elif state[name].shape != tensor.shape:
            report.mismatched.append(f"{name}: {shape_text(state[name])} in the file, "
                                     f"{shape_text(tensor)} in the spec")
        else:
            usable[name] = state[name]
            report.loaded.append(name)
    report.unused = [name for name in state if name not in own]
    return report, usable


def match(model: torch.nn.Module, state: dict, path, head: set[str] = frozenset()
          ) -> tuple[WeightsReport, dict]:
    """`compare`, refusing a file that does not fit outside `head` (the classifier
    a fine-tuning replaces)."""
    report, usable = compare(model, state, path)
    _check_fit(report, head, path)
    return report, usable


def _check_fit(report: WeightsReport, head: set[str], path) -> None:
    if not [name for name in report.loaded if not name.endswith(OPTIONAL)]:
        first = (report.mismatched[:3] or [f"{n}: missing from the file"
                                           for n in report.missing[:3]])
        raise WeightsError(f"no tensor of {path} fits the spec; first mismatches: "
                           + "; ".join(first) + (". The file's names start "
                           + ", ".join(report.unused[:3]) if report.unused else ""))
    backbone = [r for r in report.mismatched if r.split(":")[0] not in head]
    backbone += [f"{n}: missing from the file" for n in report.missing
                 if n not in head and not n.endswith(OPTIONAL)]
    if backbone:
        raise WeightsError(f"{path} does not fit the spec's backbone ({len(backbone)} "
                           "tensors outside the classifier differ): "
                           + "; ".join(backbone[:3])
                           + ("; ..." if len(backbone) > 3 else ""))


def head_layers(spec) -> set[str]:
    """Names of the classifier's layers, read from the checker's side table: the
    layers whose parameter count follows the network's `classes` (the main and
    auxiliary heads), or else the last layer that has parameters."""
    layers = [(node.name, spec.table[node.id].params) for node in spec.graph.nodes[1:]]
    if "classes" in spec.graph.params:
        other = spec.with_params(classes=spec.graph.params["classes"] + 1)
        counts = {node.name: other.table[node.id].params for node in other.graph.nodes[1:]}
        return {name for name, params in layers if counts.get(name) != params}
    with_params = [name for name, params in layers if params]
    return set(with_params[-1:])


def load_weights(model: torch.nn.Module, path, spec, reinit=()) -> WeightsReport:
    """Load what fits of the file at `path` into `model` (built from `spec`). The
    layers that the `reinit` patterns select keep their fresh initialization, as a
    new classifier does: the later layers of a network are the task-specific ones
    (Yosinski et al. 2014), so a transfer may keep only the early ones."""
    from .finetune import select_layers

    fresh = set(select_layers(spec.layer_names, reinit, flag="--reinit"))
    state = {name: tensor for name, tensor in read_state_dict(path).items()
             if name.rpartition(".")[0] not in fresh}
    head = head_layers(spec) | fresh
    report, usable = match(model, state, path,
                           {n for n in model.state_dict() if n.rpartition(".")[0] in head})
    report.reinitialised = [n for n in report.missing if n.rpartition(".")[0] in fresh]
    report.missing = [n for n in report.missing if n not in report.reinitialised]
    with torch.no_grad():
        own = model.state_dict()
        for name, tensor in usable.items():
            own[name].copy_(tensor)
    return report
