"""Torch backend: shaped IR -> a `torch.nn.Module` whose forward is generated code.

Takes: a checked `Spec`. Returns: a `torch.fx.GraphModule` (one `call_module` per
layer, `call_function` for concat/add/multiply), whose submodule paths are the
spec's dotted layer names, so torchvision state dicts load with `strict=True`.
Networks with auxiliary heads come back as a `TrainingHeads` module: the same
submodules, one generated graph for training (main + auxiliary outputs, as a named
tuple) and one for eval (plain logits).

Which layer each op becomes is `layers.constructor` (shared with the source backend);
every size a module needs (in_channels, in_features, num_features) is read from the
checker's side table; nothing here re-derives a shape. A network with `fractal`
blocks gets one `GlobalDropPath` module whose chosen column the fractal joins read.
"""

from __future__ import annotations

import operator
from collections import namedtuple

import torch
import torch.fx as fx
from torch import nn
from torch.nn import functional as F

from .. import ops as O
from ..ir import Node, ancestors, in_place_nodes
from .layers import (GLOBAL_DROP_PATH, LAYER_SCALE, constructor, fractal_joins,
                     layer_scale_shape, pad_channels_widths)


class DropPath(nn.Module):
    """Stochastic depth (Huang et al. 2016): in training, zero a whole sample's path
    with probability p and scale survivors by 1/(1-p); identity in eval. Same
    arithmetic as torchvision.ops.StochasticDepth(mode="row")."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, x):
        if not self.training or self.p == 0.0:
            return x
        keep = 1.0 - self.p
        mask = torch.empty((x.shape[0],) + (1,) * (x.dim() - 1), dtype=x.dtype,
                           device=x.device).bernoulli_(keep)
        return x * mask.div_(keep) if keep > 0 else x * mask

    def extra_repr(self):
        return f"p={self.p}"


class FrozenBatchNorm2d(nn.BatchNorm2d):
    """Batchnorm inside `frozen { }`: it normalises with its running statistics and
    never updates them, in train() as in eval(), so a frozen backbone computes the
    same function while the head trains (Keras treats a non-trainable
    BatchNormalization layer the same way). Unlike torchvision.ops.FrozenBatchNorm2d
    it is an nn.BatchNorm2d: the same parameters and state-dict keys."""

    def train(self, mode: bool = True):
        return super().train(False)


class FrozenBatchNorm1d(nn.BatchNorm1d):
    """FrozenBatchNorm2d's behaviour on flat vectors."""

    def train(self, mode: bool = True):
        return super().train(False)


class LayerNorm2d(nn.LayerNorm):
    """Layer normalization over the channels at each position of an N x C x H x W
    batch, as torchvision's ConvNeXt LayerNorm2d: nn.LayerNorm's parameters and
    state-dict keys, applied channels-last."""

    def forward(self, x):
        x = x.permute(0, 2, 3, 1)
        x = nn.functional.layer_norm(x, self.normalized_shape, self.weight, self.bias,
                                     self.eps)
        return x.permute(0, 3, 1, 2)


class PointwiseLinear(nn.Linear):
    """nn.Linear over the channels at every position of an N x C x H x W batch (a 1x1
    conv with nn.Linear's weights, as ConvNeXt's blocks store them)."""

    def forward(self, x):
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class ChannelShuffle(nn.Module):
    """ShuffleNet's channel shuffle (Zhang et al. 2018): channels viewed as
    groups x (C / groups), transposed and flattened back."""

    def __init__(self, groups: int):
        super().__init__()
        self.groups = groups

    def forward(self, x):
        n, c, h, w = x.shape
        x = x.view(n, self.groups, c // self.groups, h, w).transpose(1, 2)
        return x.reshape(n, c, h, w)

    def extra_repr(self):
        return f"groups={self.groups}"


class Narrow(nn.Module):
    """Channels start ... start + length - 1 (a view, no copy)."""

    def __init__(self, start: int, length: int):
        super().__init__()
        self.start, self.length = start, length

    def forward(self, x):
        return x.narrow(1, self.start, self.length)

    def extra_repr(self):
        return f"start={self.start}, length={self.length}"


class CenterCrop(nn.Module):
    """The centre size[0] x size[1] of each channel (U-Net's "copy and crop"); the
    first row kept is floor((H - h) / 2)."""

    def __init__(self, size: int | tuple[int, int]):
        super().__init__()
        self.size = (size, size) if isinstance(size, int) else tuple(size)

    def forward(self, x):
        h, w = self.size
        top, left = (x.shape[-2] - h) // 2, (x.shape[-1] - w) // 2
        return x[..., top:top + h, left:left + w]

    def extra_repr(self):
        return f"size={self.size}"


class ChannelAffine(nn.Module):
    """y[:, k] = x[:, k] * scale[k] + shift[k] with constant scale and shift (a number
    applies to every channel): torchvision's `transform_input` in GoogLeNet and
    Inception-v3. The constants are buffers, so they follow `.to()`, but not
    persistent ones: the state dict has no entry for them, as torchvision's has none."""

    def __init__(self, num_channels: int, scale=1.0, shift=0.0):
        super().__init__()
        self.num_channels = num_channels
        for name, value in (("scale", scale), ("shift", shift)):
            value = torch.as_tensor(value, dtype=torch.get_default_dtype())
            self.register_buffer(name, value.expand(num_channels).clone(), persistent=False)

    def forward(self, x):
        shape = (-1,) + (1,) * (x.dim() - 2)  # one value per channel, broadcast over H x W
        # A multiply, then an add (not addcmul): torchvision's rounding, bit for bit.
        return x * self.scale.view(shape) + self.shift.view(shape)

    def extra_repr(self):
        return f"{self.num_channels}"


class MeanJoin(nn.Module):
    """Mean of branches; in training each branch is dropped with probability p,
    keeping at least one (FractalNet's local drop-path, Larsson et al. 2017).

    The joins of a `fractal` know which column each branch ends (`columns`) and
    take the column that global drop-path chose for this batch: the branch of that
    column passes alone. A join the column does not reach is off the chosen path;
    it returns the plain mean, which nothing downstream of the chosen path reads."""

    def __init__(self, p: float = 0.0, columns: tuple[int, ...] = ()):
        super().__init__()
        self.p = p
        self.columns = tuple(columns)

    def forward(self, *branches, column=None):
        if column is not None and column in self.columns:
            return branches[self.columns.index(column)]
        if not self.training or self.p == 0.0:
            return torch.stack(branches).mean(0)
        keep = torch.rand(len(branches)) >= self.p
        if not keep.any():
            keep[torch.randint(len(branches), ())] = True
        kept = [b for b, k in zip(branches, keep.tolist()) if k]
        return torch.stack(kept).mean(0)

    def extra_repr(self):
        text = f"drop_path={self.p}"
        return text + (f", columns={self.columns}" if self.columns else "")


class GlobalDropPath(nn.Module):
    """FractalNet's global drop-path (Larsson et al. 2017, section 3.1): in training,
    with probability p a mini-batch keeps a single column, chosen uniformly, in every
    fractal block of the network; otherwise the batch uses local drop-path. Returns
    the chosen column (1 = the shallowest) or None. Setting `column` runs that column
    alone in training and eval (the paper's single-column subnetworks, table 3)."""

    def __init__(self, p: float, columns: int):
        super().__init__()
        self.p = p
        self.columns = columns
        self.column: int | None = None

    def forward(self):
        if self.column is not None:
            return self.column
        if not self.training or self.p == 0.0 or float(torch.rand(())) >= self.p:
            return None
        return int(torch.randint(1, self.columns + 1, ()))

    def extra_repr(self):
        return f"p={self.p}, columns={self.columns}"


def module_for(op, in_shape: tuple[int, ...], in_place: bool = False,
               frozen: bool = False) -> nn.Module | None:
    """The nn.Module for one layer (`layers.constructor`), or None for a function."""
    made = constructor(op, in_shape, in_place, frozen)
    if made is None or made.name == LAYER_SCALE:
        return None
    kind = getattr(nn, made.name[3:]) if made.name.startswith("nn.") \
        else globals()[made.name]
    return kind(*made.args, **made.kwargs)


def _function_node(graph: fx.Graph, node: Node, args: list[fx.Node],
                   in_place: bool, in_shape: tuple[int, ...]) -> fx.Node:
    kind = type(node.op)
    if kind is O.Concat:
        return graph.call_function(torch.cat, (args, 1))
    if kind is O.PadChannels:
        return graph.call_function(F.pad, (args[0], pad_channels_widths(node.op, in_shape)))
    if kind is O.Add:
        combine = operator.iadd if in_place else operator.add
    else:
        combine = operator.mul
    result = args[0]
    for other in args[1:]:
        result = graph.call_function(combine, (result, other))
    return result


def _root_modules(spec, in_place: set[int]) -> tuple[nn.Module, set[str]]:
    """A module tree holding every layer at its dotted name, and those names."""
    root = nn.Module()
    names = set()
    for node in spec.graph.nodes[1:]:
        in_shape = spec.table[node.inputs[0]].shape if node.inputs else ()
        if type(node.op) is O.LayerScale:
            parent, leaf = _parent(root, node.name)
            value = torch.full(layer_scale_shape(in_shape), float(node.op.init))
            parent.register_parameter(leaf, nn.Parameter(value,
                                                         requires_grad=not node.frozen))
            continue
        module = module_for(node.op, in_shape, node.id in in_place, node.frozen)
        if module is not None:
            names.add(node.name)
            parent, leaf = _parent(root, node.name)
            parent.add_module(leaf, module.requires_grad_(not node.frozen))
    fractal = fractal_joins(spec.graph.nodes)
    if fractal:
        root.add_module(GLOBAL_DROP_PATH, GlobalDropPath(*fractal))
    return root, names


def _parent(root: nn.Module, name: str) -> tuple[nn.Module, str]:
    """The module that holds `name` (containers made as needed), and its last part."""
    parent = root
    *path, leaf = name.split(".")
    for part in path:
        if not hasattr(parent, part):
            parent.add_module(part, nn.Module())
        parent = getattr(parent, part)
    return parent, leaf


def _graph(spec, modules: set[str], in_place: set[int], training: bool) -> fx.Graph:
    """The straight-line graph: every node reachable from the outputs, in order."""
    outputs = spec.graph.outputs if training else spec.graph.outputs[:1]
    needed = ancestors(spec.graph.nodes, [o.node for o in outputs])
    graph = fx.Graph()
    values: dict[int, fx.Node] = {}
    column = None  # the column global drop-path chose, read by the fractal joins
    for node in spec.graph.nodes:
        if node.id not in needed:
            continue
        args = [values[i] for i in node.inputs]
        if type(node.op) is O.Input:
            values[node.id] = graph.placeholder("x")
            if fractal_joins(spec.graph.nodes):
                column = graph.call_module(GLOBAL_DROP_PATH, ())
        elif type(node.op) is O.LayerScale:
            scale = graph.get_attr(node.name)
            values[node.id] = graph.call_function(operator.mul, (scale, args[0]))
        elif node.name in modules:
            extra = {"column": column} if getattr(node.op, "columns", ()) else {}
            values[node.id] = graph.call_module(node.name, tuple(args), extra)
        else:
            in_shape = spec.table[node.inputs[0]].shape if node.inputs else ()
            values[node.id] = _function_node(graph, node, args, node.id in in_place,
                                             in_shape)
        values[node.id].meta["cnnspec_shape"] = spec.table[node.id].shape
        values[node.id].meta["cnnspec_name"] = node.name
    if len(outputs) == 1:
        graph.output(values[outputs[0].node])
    else:
        graph.output(tuple(values[o.node] for o in outputs))
    return graph




class TrainingHeads(nn.Module):
    """A network with auxiliary heads: `forward` returns a named tuple of the main
    and auxiliary outputs in training and the main output alone in eval (as
    torchvision's GoogLeNet). Both paths are generated fx code over one set of
    submodules, registered here under the spec's names."""

    def __init__(self, train: fx.GraphModule, infer: fx.GraphModule, names, weights,
                 name: str):
        super().__init__()
        for child_name, child in train.named_children():
            self.add_module(child_name, child)
        # Held outside the module registry so parameters are not listed twice.
        self.__dict__["_train_graph"] = train
        self.__dict__["_eval_graph"] = infer
        self.outputs_type = namedtuple(f"{name}_outputs", names)
        self.aux_weights = dict(zip(names[1:], weights[1:]))

    def forward(self, x):
        # `.forward` rather than a module call: the graphs are not submodules, so
        # tracers (fx, torch.export) see only the shared layers they call.
        if self.training:
            return self.outputs_type(*self._train_graph.forward(x))
        return self._eval_graph.forward(x)


def initialize(model: nn.Module, init) -> None:
    """Apply a recipe's `init` to every conv and linear layer; batchnorm gets 1 and 0.

    he: normal with std sqrt(2 / fan_in) (He et al. 2015, "Delving Deep into
    Rectifiers"); xavier: uniform, Glorot & Bengio 2010; normal: N(0, std) (AlexNet
    uses 0.01); torchvision: its ResNet convention, conv He-normal over fan_out and
    linear N(0, 0.01). Biases of conv and linear layers are set to `init.bias`.
    Without an `init`, layers keep PyTorch's own defaults.
    """
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            weight = module.weight
            if init.kind == "he":
                nn.init.kaiming_normal_(weight, mode="fan_in", nonlinearity="relu")
            elif init.kind == "xavier":
                nn.init.xavier_uniform_(weight)
            elif init.kind == "normal":
                nn.init.normal_(weight, 0.0, init.std)
            elif isinstance(module, nn.Conv2d):  # torchvision
                nn.init.kaiming_normal_(weight, mode="fan_out", nonlinearity="relu")
            else:
                nn.init.normal_(weight, 0.0, 0.01)
            if module.bias is not None:
                nn.init.constant_(module.bias, init.bias)
        elif isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)) and module.affine:
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)


def to_torch(spec) -> nn.Module:
    """Build the module for a checked spec (see the module docstring), on the CPU in
    float32; `cnnspec.build` moves it after any weights are loaded."""
    in_place = in_place_nodes(spec.graph)
    root, modules = _root_modules(spec, in_place)
    if spec.recipe is not None and spec.recipe.init is not None:
        initialize(root, spec.recipe.init)
    infer = fx.GraphModule(root, _graph(spec, modules, in_place, False), spec.name)
    if len(spec.graph.outputs) > 1:
        train = fx.GraphModule(root, _graph(spec, modules, in_place, True), spec.name)
        names = ["logits"] + [o.name.replace(".", "_") for o in spec.graph.outputs[1:]]
        model = TrainingHeads(train, infer, names,
                              [o.weight for o in spec.graph.outputs], spec.name)
    else:
        model = infer
    return model
