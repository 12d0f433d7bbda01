"""Training-memory planner: how many bytes one training step of a batch needs.

Takes: a checked `Spec` (its graph and side table), a batch size, an optimizer, an
AMP mode and a device kind. Returns: a `TrainMemory` with the bytes of the
parameters, their gradients, the optimizer's state, the buffers (batchnorm's running
statistics, affine's constants), autocast's half-precision copies of the weights,
and the activations autograd keeps for the backward pass, per layer and in total;
given a budget, the largest batch that fits. Pure Python: no torch import. The
rules (docs/costs.md, "Training memory") were measured on the built module with
`torch.autograd.graph.saved_tensors_hooks`; tests/test_memory.py and
benchmarks/memory_planner.py hold the planner to that measurement.

The walk follows the built module (`torch_backend`): every node that one of the
training outputs needs, in order. Each value is a *storage* (a view or an in-place
op shares its input's), a dtype, whether it requires grad, and whether its memory is
channels-last. Each op names the storages its backward keeps; a storage is counted
once, charged to the first layer that keeps it. Every storage is `per_image * batch
+ fixed` bytes, so the whole plan is a straight line in the batch size.
"""

from __future__ import annotations

import math
import re
from typing import NamedTuple

from pydantic import BaseModel, ConfigDict

from ..ir import ancestors, in_place_nodes
from .summary import block_groups, human_bytes

# Buffers of per-parameter state each optimizer keeps (fp32, one per trainable weight).
OPTIMIZER_BUFFERS = {"sgd": 0, "sgd_momentum": 1, "adam": 2}
AMP_MODES = ("bf16", "fp16")
DEVICES = ("cpu", "cuda")
FLOAT, HALF, INDEX, MASK = 4, 2, 8, 1  # bytes: fp32, bf16/fp16, int64 indices, bool

# Activations whose backward reads their output (`result`); the others (relu6, silu,
# gelu, hardswish, hardsigmoid, mish, softplus, elu, leaky_relu) read their input.
_SAVE_OUTPUT = {"relu", "tanh", "sigmoid", "softmax"}
_ACTIVATIONS = _SAVE_OUTPUT | {"relu6", "silu", "gelu", "hardswish", "hardsigmoid",
                               "mish", "softplus", "elu", "leaky_relu"}
# Under CUDA autocast these run in fp32 (autocast's "float32" list); on the CPU they
# keep their input's dtype.
_CUDA_FP32 = {"layernorm", "softmax", "softplus"}


class LayerMemory(BaseModel):
    model_config = ConfigDict(frozen=True)
    name: str
    op: str
    saved_bytes: int  # at the plan's batch size; storages first kept by this layer
    training_only: bool = False


class TrainMemory(BaseModel):
    """One training step's memory at `batch` images (see docs/costs.md)."""

    model_config = ConfigDict(frozen=True)
    batch: int
    optimizer: str
    amp: str | None
    device: str
    params_bytes: int  # every parameter, fp32 (auxiliary heads and frozen included)
    grads_bytes: int  # trainable parameters only, fp32
    optimizer_bytes: int  # OPTIMIZER_BUFFERS[optimizer] fp32 copies of the trainable
    # (adam: plus its 4-byte step count per parameter tensor)
    buffers_bytes: int  # batchnorm running mean, variance and step count; affine's
    # scale and shift
    amp_weight_bytes: int  # autocast's half copies of conv and linear weights
    saved_activation_bytes: int  # what autograd keeps for backward (input included)
    total_bytes: int  # the sum of the six above
    fixed_bytes: int  # the part of total_bytes that does not grow with the batch
    bytes_per_image: int  # what each further image adds
    fit_bytes: int | None = None
    max_batch: int | None = None  # the largest batch whose total fits in fit_bytes
    layers: list[LayerMemory]


class _Value(NamedTuple):
    store: int  # index into the plan's storages
    dtype: int  # bytes per element
    grad: bool  # requires grad: ops on it record what their backward needs
    nhwc: bool = False  # channels-last memory (after layernorm / pointwise linear)


class _Plan(NamedTuple):
    storages: list[tuple[int, int]]  # (bytes per image, fixed bytes)
    charged: dict[int, list[int]]  # node id -> storages first kept there
    amp_weight_bytes: int


def _walk(graph, table, amp: str | None, device: str) -> _Plan:
    """Follow the training graph once; see the module docstring."""
    nodes = graph.nodes
    needed = ancestors(nodes, [o.node for o in graph.outputs])
    in_place = in_place_nodes(graph)
    cuda = device == "cuda"
    storages: list[tuple[int, int]] = []

    def new(per_image: int = 0, fixed: int = 0) -> int:
        storages.append((per_image, fixed))
        return len(storages) - 1

    values: dict[int, _Value] = {}
    charged: dict[int, list[int]] = {}
    seen: set[int] = set()
    weight_copies = 0
    for node in nodes:
        if node.id not in needed:
            continue
        op, kind = node.op, node.op.op
        facts = table[node.id]
        elements = facts.elements
        ins = [values[i] for i in node.inputs]
        x = ins[0] if ins else None
        in_elements = table[node.inputs[0]].elements if ins else 0
        trainable = facts.params > 0 and not node.frozen
        grad = trainable or any(v.grad for v in ins)
        keeps: list[int] = []  # storages this op's backward keeps
        # Under autocast a conv or linear casts a fp32 input to a half copy of its
        # own, and keeps that.
        cast = bool(amp) and x is not None and x.dtype != HALF

        if kind == "input":
            out = _Value(new(elements * FLOAT), FLOAT, False)
        elif kind in ("conv", "dwconv", "conv_transpose"):
            dtype = HALF if amp else FLOAT
            if grad:  # one backward formula for input and weight: both kept
                keeps.append(new(in_elements * HALF) if cast else x.store)
                if amp:
                    weight_copies += HALF * (facts.params - _bias(op, facts))
            out = _Value(new(elements * dtype), dtype, grad, x.nhwc)
        elif kind == "linear":
            dtype = HALF if amp else FLOAT
            if grad and trainable:  # the weight's gradient reads the input
                if cast or (op.pointwise and not x.nhwc):
                    # a half copy; or permuted to N x H x W x C, not contiguous, so
                    # flattening positions copies
                    keeps.append(new(in_elements * dtype))
                else:
                    keeps.append(x.store)
            if grad and x.grad and amp:  # the input's gradient reads the weight
                weight_copies += HALF * (facts.params - _bias(op, facts))
            out = _Value(new(elements * dtype), dtype, grad, op.pointwise)
        elif kind == "batchnorm":
            if grad:
                keeps.append(x.store)
                if not node.frozen:  # batch mean and 1/std, fp32, per channel
                    keeps.append(new(fixed=2 * FLOAT * facts.shape[0]))
            out = _Value(new(elements * x.dtype), x.dtype, grad, x.nhwc)
        elif kind == "layernorm":
            dtype = FLOAT if (cuda and amp) else x.dtype
            if grad:
                keeps.append(new(in_elements * FLOAT) if dtype != x.dtype else x.store)
                positions = elements // facts.shape[0]
                keeps.append(new(2 * FLOAT * positions))  # mean and 1/std per position
            out = _Value(new(elements * dtype), dtype, grad, len(facts.shape) == 3)
        elif kind == "layer_scale":
            if grad and trainable:  # the scale's gradient reads the input
                keeps.append(x.store)
            # a half input times the fp32 scale is promoted to fp32
            out = _Value(new(elements * FLOAT), FLOAT, grad, x.nhwc)
        elif kind in _ACTIVATIONS:
            dtype = FLOAT if (cuda and amp and kind in _CUDA_FP32) else x.dtype
            if node.id in in_place:
                out = _Value(x.store, x.dtype, grad, x.nhwc)
            else:
                out = _Value(new(elements * dtype), dtype, grad, x.nhwc)
            if grad:
                if kind in _SAVE_OUTPUT or node.id in in_place:
                    keeps.append(out.store)
                elif dtype != x.dtype:  # kept as the fp32 copy autocast made
                    keeps.append(new(in_elements * dtype))
                else:
                    keeps.append(x.store)
        elif kind in ("maxpool", "adaptive_maxpool"):
            if grad:
                keeps += [x.store, new(elements * INDEX)]
            out = _Value(new(elements * x.dtype), x.dtype, grad, x.nhwc)
        elif kind == "avgpool":
            if grad:
                keeps.append(x.store)
            out = _Value(new(elements * x.dtype), x.dtype, grad, x.nhwc)
        elif kind == "adaptive_avgpool":
            # to 1x1 PyTorch takes a mean, whose backward keeps nothing
            if grad and op.output_size != (1, 1):
                keeps.append(x.store)
            out = _Value(new(elements * x.dtype), x.dtype, grad, x.nhwc)
        elif kind in ("dropout", "drop_path"):
            if op.p == 0:
                out = x
            else:
                if grad:  # the mask: per element (dropout) or per image (drop_path)
                    size = elements if kind == "dropout" else 1
                    mask = MASK if (cuda and kind == "dropout") else x.dtype
                    keeps.append(new(size * mask))
                out = _Value(new(elements * x.dtype), x.dtype, grad, x.nhwc)
        elif kind == "lrn":
            out = _Value(new(elements * FLOAT), FLOAT, grad, x.nhwc)
            if grad:  # input * input, padded over channels, averaged, ^beta, input / it
                c = facts.shape[0]
                padded = elements // c * (c + op.size // 2 + (op.size - 1) // 2)
                keeps += [x.store,
                          new(padded * (x.dtype if cuda else FLOAT)),  # avg_pool3d's input
                          new(elements * FLOAT),  # pow's input
                          new(elements * FLOAT)]  # pow's output, read by the division
        elif kind == "multiply":
            acc = x
            for other in ins[1:]:
                if acc.grad:
                    keeps.append(other.store)
                if other.grad:
                    keeps.append(acc.store)
                dtype = max(acc.dtype, other.dtype)
                acc = _Value(new(elements * dtype), dtype, acc.grad or other.grad, acc.nhwc)
            out = acc
        elif kind == "add" and node.id in in_place:
            out = _Value(x.store, x.dtype, grad, x.nhwc)
        elif kind in ("add", "concat", "mean"):
            dtype = max(v.dtype for v in ins)
            out = _Value(new(elements * dtype), dtype, grad, all(v.nhwc for v in ins))
        elif kind in ("narrow", "crop", "identity"):
            out = x  # a view: the same storage
        elif kind == "flatten":
            h_w = in_elements // table[node.inputs[0]].shape[0]
            copies = x.nhwc and h_w > 1 and table[node.inputs[0]].shape[0] > 1
            out = _Value(new(elements * x.dtype), x.dtype, grad) if copies \
                else x._replace(nhwc=False)
        elif kind == "shuffle":
            # view, transpose, reshape: a copy unless each group holds one channel
            copies = facts.shape[0] // op.groups > 1
            out = _Value(new(elements * x.dtype), x.dtype, grad) if copies else x
        elif kind == "affine":
            # x * scale + shift: the multiply keeps the scale (a buffer, not counted)
            # and the add nothing; a half input times the fp32 scale is promoted
            dtype = max(x.dtype, FLOAT)
            out = _Value(new(elements * dtype), dtype, grad, x.nhwc)
        elif kind in ("pad_channels", "upsample"):
            out = _Value(new(elements * x.dtype), x.dtype, grad, x.nhwc)
        else:
            raise ValueError(f"the memory planner has no rule for `{kind}`")
        values[node.id] = out
        mine = [s for s in dict.fromkeys(keeps) if s not in seen]
        seen.update(mine)
        charged[node.id] = mine
    return _Plan(storages, charged, weight_copies)


def _bias(op, facts) -> int:
    """The bias elements among a conv's or linear's parameters."""
    return facts.shape[0] if getattr(op, "bias", False) else 0


def _trainable_tensors(graph, table) -> int:
    """How many parameter tensors train (a weight and a bias are two): Adam keeps a
    step count (a 4-byte float tensor) for each."""
    count = 0
    for node in graph.nodes:
        op = node.op
        if node.frozen or not table[node.id].params:
            continue
        if op.op in ("batchnorm", "layernorm"):
            count += 2
        elif op.op == "layer_scale":
            count += 1
        else:  # conv, dwconv, conv_transpose, linear: the weight, and a bias
            count += 1 + bool(getattr(op, "bias", False))
    return count


def _buffers(graph, table) -> int:
    """Batchnorm's running mean and variance (fp32) and its step count (int64);
    affine's scale and shift (fp32, one per channel each)."""
    return sum(2 * FLOAT * table[n.id].shape[0] + (INDEX if n.op.op == "batchnorm" else 0)
               for n in graph.nodes if n.op.op in ("batchnorm", "affine"))


def plan(spec, batch: int, optimizer: str = "sgd", amp: str | None = None,
         fit: int | None = None, device: str = "cpu") -> TrainMemory:
    """The training memory of `spec` at `batch` images; with `fit` (bytes), also the
    largest batch whose total fits."""
    if optimizer not in OPTIMIZER_BUFFERS:
        raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZER_BUFFERS)}, "
                         f"not {optimizer!r}")
    if amp in ("off", "none"):
        amp = None
    if amp is not None and amp not in AMP_MODES:
        raise ValueError(f"amp must be bf16, fp16 or None, not {amp!r}")
    if device not in DEVICES:
        raise ValueError(f"device must be cpu or cuda, not {device!r}")
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ValueError(f"batch must be a whole number of at least 1, not {batch!r}")
    if fit is not None and (isinstance(fit, bool) or not isinstance(fit, int) or fit < 0):
        raise ValueError(f"fit must be a number of bytes, not {fit!r}")
    graph, table = spec.graph, spec.table
    walked = _walk(graph, table, amp, device)
    trainable = spec.trainable_params
    params = FLOAT * spec.params
    grads = FLOAT * trainable
    state = OPTIMIZER_BUFFERS[optimizer] * FLOAT * trainable
    if optimizer == "adam":
        state += FLOAT * _trainable_tensors(graph, table)
    buffers = _buffers(graph, table)
    saved_fixed = saved_per_image = 0
    layers = []
    for node in graph.nodes:
        if node.id not in walked.charged or node.id == 0:
            continue
        per_image = sum(walked.storages[s][0] for s in walked.charged[node.id])
        fixed = sum(walked.storages[s][1] for s in walked.charged[node.id])
        saved_fixed += fixed
        saved_per_image += per_image
        layers.append(LayerMemory(name=node.name, op=node.op.label(),
                                  saved_bytes=per_image * batch + fixed,
                                  training_only=node.training_only))
    fixed_total = params + grads + state + buffers + walked.amp_weight_bytes + saved_fixed
    max_batch = None
    if fit is not None:
        max_batch = max(0, (fit - fixed_total) // saved_per_image) if saved_per_image \
            else 0
    saved = saved_fixed + saved_per_image * batch
    return TrainMemory(
        batch=batch, optimizer=optimizer, amp=amp, device=device, params_bytes=params,
        grads_bytes=grads, optimizer_bytes=state, buffers_bytes=buffers,
        amp_weight_bytes=walked.amp_weight_bytes, saved_activation_bytes=saved,
        total_bytes=fixed_total + saved_per_image * batch, fixed_bytes=fixed_total,
        bytes_per_image=saved_per_image, fit_bytes=fit, max_batch=max_batch,
        layers=layers)


_UNITS = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6,
          "g": 10**9, "gb": 10**9, "t": 10**12, "tb": 10**12,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


def parse_size(text: str) -> int:
    """`24GiB`, `80GB`, `512MiB`, `1.5GiB`, `1000000` -> bytes (GiB = 2^30, GB = 10^9).
    Raises ValueError on anything else."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([A-Za-z]*)\s*", str(text))
    unit = match and match.group(2).lower()
    if not match or unit not in _UNITS:
        raise ValueError(f"not a size: {text!r} (write e.g. 24GiB, 80GB, 512MiB)")
    value = float(match.group(1)) * _UNITS[unit]
    if not math.isfinite(value):
        raise ValueError(f"not a size: {text!r}")
    return int(value)


# ---------------------------------------------------------------- presentation


def collapse(spec, memory: TrainMemory, depth: int) -> list[LayerMemory]:
    """One row per block instance nested `depth` deep (as `summary --depth`): the
    saved bytes of its layers summed, the block's name as the op."""
    nodes = {node.name: node for node in spec.graph.nodes}
    rows = []
    for path, block, members in block_groups(
            ((nodes[layer.name], layer) for layer in memory.layers), depth):
        if block is None:
            rows.extend(members)
        else:
            rows.append(LayerMemory(name=path, op=block,
                                    saved_bytes=sum(m.saved_bytes for m in members),
                                    training_only=all(m.training_only for m in members)))
    return rows


def table(memory: TrainMemory, layers: list[LayerMemory] | None = None):
    """The saved activations per layer (layers that keep nothing left out), as a rich
    Table."""
    from rich.table import Table

    rows = [layer for layer in (memory.layers if layers is None else layers)
            if layer.saved_bytes]
    total = memory.saved_activation_bytes or 1
    grid = Table(title=f"Saved for backward, batch {memory.batch}", title_justify="left",
                 show_footer=True, header_style="bold", footer_style="bold")
    grid.add_column("Layer", footer="Total")
    grid.add_column("Op")
    grid.add_column("Saved", justify="right",
                    footer=human_bytes(memory.saved_activation_bytes))
    grid.add_column("Share", justify="right")
    for layer in rows:
        grid.add_row(layer.name + (" (aux)" if layer.training_only else ""), layer.op,
                     human_bytes(layer.saved_bytes),
                     f"{100 * layer.saved_bytes / total:.1f}%")
    return grid


def totals(memory: TrainMemory) -> str:
    """The lines printed under the table: each part, the total, and what fits."""
    precision = f"AMP {memory.amp}" if memory.amp else "fp32"
    buffers = OPTIMIZER_BUFFERS[memory.optimizer]
    lines = [f"Training memory, batch {memory.batch}, {memory.optimizer}, {precision} "
             f"({memory.device} rules):",
             f"  parameters         {human_bytes(memory.params_bytes):>11}",
             f"  gradients          {human_bytes(memory.grads_bytes):>11}  "
             "(trainable parameters)",
             f"  optimizer state    {human_bytes(memory.optimizer_bytes):>11}  "
             f"({buffers} fp32 buffer{'s' if buffers != 1 else ''} per trainable "
             "parameter)",
             f"  buffers            {human_bytes(memory.buffers_bytes):>11}  "
             "(batchnorm running statistics)"]
    if memory.amp:
        lines.append(f"  half weights       {human_bytes(memory.amp_weight_bytes):>11}  "
                     "(autocast's copies of conv and linear weights)")
    lines += [f"  saved activations  {human_bytes(memory.saved_activation_bytes):>11}  "
              f"({human_bytes(memory.bytes_per_image)} per image)",
              f"  total              {human_bytes(memory.total_bytes):>11}  "
              f"({memory.total_bytes:,} bytes = {memory.fixed_bytes:,} + "
              f"{memory.bytes_per_image:,} x {memory.batch})"]
    if memory.fit_bytes is not None:
        if memory.max_batch:
            lines.append(f"  fits {human_bytes(memory.fit_bytes)}: batch up to "
                         f"{memory.max_batch:,}")
        else:
            lines.append(f"  fits {human_bytes(memory.fit_bytes)}: no batch (the "
                         f"fixed part alone is {human_bytes(memory.fixed_bytes)})")
    lines.append("  not counted: the loss, gradients in flight during backward, "
                 "workspaces, allocator rounding")
    return "\n".join(lines)
