"""Lint: a checked spec -> warnings, the lecture notes' advice applied to one network.

Takes: a `Spec` (already proved: every shape is known). Returns: warnings, the
checker's `Diagnostic` with severity "warning", each with a code (W03xx shapes and
padding, W04xx cost and training), the layer's span, what was found, why it matters
and what to do, rendered like the checker's errors:

    warning[W0404]: `conv1` has a bias that the batchnorm after it cancels
      --> example.cnn:3:5
       |
     3 |     conv1: conv 64 k=3 p=1
       |     ^^^^^^^^^^^^^^^^^^^^^^ bias=true (the default): 64 parameters
       = note: ...
       = help: write `bias=false` on the conv, as torchvision's ResNets do

A spec with warnings is still a right spec: `cnnspec lint` exits 0 unless `--strict`.
The rules and their examples are in docs/errors.md (section "Warnings"). Nothing
here imports torch.
"""

from __future__ import annotations

from .. import ops as O
from ..frontend.check import describe, window_arithmetic, window_settings
from ..frontend.check import _where as _block_notes
from ..diagnostics import Diagnostic, Span
from ..ir import user_counts


def warning(code: str, message: str, span: Span | None, label: str = "",
            help: str = "", notes: tuple[str, ...] = ()) -> Diagnostic:
    """One piece of advice: a code, where, what was found, why and what to do."""
    return Diagnostic(code, message, span, label, help, notes, severity="warning")


CODES = {
    "W0301": "a stride that leaves input pixels unread (`option sizes = floor`)",
    "W0302": "an even kernel with `padding=same` pads unevenly",
    "W0401": "fully connected layers hold most of the parameters",
    "W0402": "concatenations dominate the activation memory",
    "W0403": "an activation after the final classifier",
    "W0404": "a conv bias that the batchnorm after it cancels",
}

# Layers that keep a value's meaning: walking back from an output through these
# reaches the layer that computed the scores.
_PASS_THROUGH = {"flatten", "dropout", "drop_path", "identity"}
# Activations that change logits into something CrossEntropyLoss does not expect.
_SQUASHING = {"softmax", "sigmoid", "hardsigmoid", "relu", "relu6", "tanh"}
_CLASSIFIERS = {"linear", "conv", "dwconv", "conv_transpose"}
# Per-element layers that DenseNet applies to the whole concatenation (BN-ReLU-Conv):
# their outputs are as wide as the concatenation and grow with it.
_PER_ELEMENT = {"batchnorm", "relu", "relu6", "silu", "gelu", "hardswish", "leaky_relu",
                "elu", "dropout", "identity", "layernorm"}


def lint(spec) -> list[Diagnostic]:
    """Every warning for `spec`, in the order of the layers they are about; one
    warning per source line and code (a block called 20 times warns once)."""
    found: list[tuple[Diagnostic, str]] = []  # (warning, the layer's name)
    for rule in (_strided_floor, _even_same, _fully_connected, _concat_memory,
                 _squashed_output, _bias_before_batchnorm):
        found.extend(rule(spec))
    order = {node.name: node.id for node in spec.graph.nodes}
    found.sort(key=lambda item: (order.get(item[1], 0), item[0].code))
    return _merged(found)


def _merged(found: list[tuple[Diagnostic, str]]) -> list[Diagnostic]:
    """Warnings about the same line for the same reason (a block's layer, once per
    call) become one, whose note names the other layers."""
    groups: dict[tuple, list[tuple[Diagnostic, str]]] = {}
    for warning, name in found:
        key = (warning.code, str(warning.span) if warning.span else name)
        groups.setdefault(key, []).append((warning, name))
    merged = []
    for group in groups.values():
        first, _ = group[0]
        others = [name for _, name in group[1:]]
        if others:
            shown = ", ".join(f"`{n}`" for n in others[:4])
            more = f" and {len(others) - 4} more" if len(others) > 4 else ""
            first = first._replace(notes=first.notes + (
                f"the same line makes {len(others)} more layer"
                f"{'s' if len(others) > 1 else ''}: {shown}{more}",))
        merged.append(first)
    return merged


# ---------------------------------------------------------------- helpers


def _where(node) -> tuple[str, ...]:
    """Which block instances a layer written in a block belongs to (the checker's
    notes, without its `in `name`` line: the message names the layer)."""
    return _block_notes(node)[1:]


def _eval_layers(spec):
    return [(n, spec.table[n.id]) for n in spec.graph.nodes[1:] if not n.training_only]


def _percent(part: float, whole: float) -> str:
    """One decimal; never 100.0% for a part that is not the whole."""
    share = 100 * part / whole
    return "99.9%" if 99.9 < share < 100 else f"{share:.1f}%"


def _mib(elements: int, spec) -> str:
    return f"{elements * spec.graph.options.bytes_per_element / 2**20:.1f} MiB"


# ---------------------------------------------------------------- W03xx shapes


def _strided_floor(spec):
    """W0301: under `option sizes = floor`, a window whose stride does not fit the
    input leaves its last rows or columns unread (the case `sizes = strict` refuses
    as E0301)."""
    if spec.graph.options.sizes != "floor":
        return
    for node in spec.graph.nodes[1:]:
        op = node.op
        if not isinstance(op, (O.Conv, O.DepthwiseConv, O.MaxPool, O.AvgPool)) \
                or op.padding == "same" or getattr(op, "ceil_mode", False):
            continue
        shape = spec.table[node.inputs[0]].shape
        if len(shape) != 3:
            continue
        lost = []  # (axis, edge, arithmetic, fix)
        for size, k, s, p, d, axis, edge in zip(
                shape[1:], *window_settings(op), ("height", "width"), ("row", "column")):
            window = window_arithmetic(size, k, s, p, d)
            span, leftover = window.span, window.leftover
            unseen = leftover - p  # trailing input pixels that no window covers
            if unseen <= max(0, s - span):  # a stride wider than the window skips
                continue                     # pixels anyway; that is by design
            fits = [n for n in (size - leftover, size + s - leftover) if n >= span]
            pads = [q for q in range(p + 1, p + s + 1) if (size + 2 * q - span) % s == 0]
            fix = " or ".join(map(str, fits)) + (f" (or padding {pads[0]})" if pads else "")
            lost.append((axis, f"{unseen} {edge}s" if unseen > 1 else edge,
                         f"{window.equation} floors to {window.floor}",
                         f"{fix} fits stride {s}"))
        if not lost:
            continue
        edges = " and ".join(item[1] for item in lost)
        axes = " and ".join(item[0] for item in lost)
        if len(lost) == 1 or lost[0][2:] == lost[1][2:]:
            label, fix = f"the {axes}: {lost[0][2]}", f"an input {axes} of {lost[0][3]}"
        else:
            label = "; ".join(f"the {item[0]}: {item[2]}" for item in lost)
            fix = "; ".join(f"an input {item[0]} of {item[3]}" for item in lost)
        verb = "lie" if len(lost) > 1 or edges[0].isdigit() else "lies"
        yield warning(
            "W0301", f"{describe(node)} never reads the last input {edges}", node.span,
            label=label,
            notes=(f"`option sizes = floor` floors as PyTorch does: the last input "
                   f"{edges} {verb} outside every window, so whatever the layers before "
                   "computed there is thrown away",) + _where(node),
            help=fix + ", and covers every pixel"), node.name


def _even_same(spec):
    """W0302: `padding=same` with an even kernel (or dilated span) cannot pad both
    sides alike: PyTorch puts the extra row and column at the bottom and right."""
    for node in spec.graph.nodes[1:]:
        op = node.op
        if not isinstance(op, (O.Conv, O.DepthwiseConv)) or op.padding != "same":
            continue
        totals = [d * (k - 1) for k, d in zip(op.kernel_size, op.dilation)]
        if not any(total % 2 for total in totals):
            continue
        kernel = "x".join(map(str, op.kernel_size))
        sides = ", ".join(f"{axis} {t // 2} before and {t - t // 2} after"
                          for axis, t in zip(("rows", "columns"), totals) if t % 2)
        yield warning(
            "W0302", f"{describe(node)} has an even kernel with `padding=same`",
            node.span,
            label=f"a {kernel} kernel pads {sides}",
            notes=("each output is centred half a pixel below and right of its input "
                   "pixel, and the shift adds up layer after layer; PyTorch also has "
                   "to copy the input to pad it unevenly",)
            + _where(node),
            help="use an odd kernel (3, 5, 7), or pad explicitly with `p=`"), node.name


# ---------------------------------------------------------------- W04xx cost, training


def _fully_connected(spec):
    """W0401: linear layers (not pointwise ones) holding over half the parameters
    while one of them reads a whole feature map flattened, as in AlexNet and VGG (a
    small network whose pooled classifier is its bulk is not warned about)."""
    total = spec.inference_params
    linear = [(n, f) for n, f in _eval_layers(spec)
              if isinstance(n.op, O.Linear) and not n.op.pointwise and f.params]
    held = sum(f.params for _, f in linear)
    flattened = [(n, _before_flatten(spec, n)) for n, _ in linear]
    flattened = [(n, s) for n, s in flattened if s is not None and len(s) == 3
                 and s[1:] != (1, 1)]
    if not total or held * 2 <= total or not flattened:
        return
    node, facts = max(linear, key=lambda item: item[1].params)
    reader, (c, h, w) = flattened[0]
    notes = [f"{len(linear)} linear layer{'s' if len(linear) > 1 else ''} hold "
             f"{held:,} of the {total:,} parameters; the largest holds {facts.params:,}",
             f"{describe(reader)} reads a {c}x{h}x{w} map flattened to {c * h * w:,} "
             f"values: each of its {reader.op.out_features:,} outputs has "
             f"{c * h * w:,} weights"]
    help = ("pool globally before the classifier (`avgpool global`, `flatten`, one "
            "`linear`), as NIN, GoogLeNet and ResNet do")
    out = spec.output_shape
    if len(out) == 1:
        help += (f": one linear layer from {c} pooled channels to {out[0]:,} classes "
                 f"holds {c * out[0] + out[0]:,} parameters")
    yield warning(
        "W0401", f"fully connected layers hold {_percent(held, total)} of the "
        "parameters", node.span,
        label=f"{facts.params:,} parameters ({_percent(facts.params, total)})",
        notes=tuple(notes) + _where(node), help=help), node.name


def _before_flatten(spec, node):
    """The shape that a `flatten` before `node` flattened (through dropout)."""
    nodes = spec.graph.nodes
    current = _back_through(nodes, nodes[node.inputs[0]], {"dropout", "identity"})
    if current.op.op != "flatten":
        return None
    return spec.table[current.inputs[0]].shape


def _concat_memory(spec):
    """W0402: concatenations, and the per-element layers applied to them at full
    width, holding over half the activation memory (DenseNet)."""
    layers = _eval_layers(spec)
    total = sum(f.elements for _, f in layers)
    wide: set[int] = set()
    for node in spec.graph.nodes[1:]:
        if node.op.op == "concat" or (node.op.op in _PER_ELEMENT and node.inputs
                                      and node.inputs[0] in wide):
            wide.add(node.id)
    held = sum(f.elements for n, f in layers if n.id in wide)
    if not total or held * 2 <= total:
        return
    # Blame the statement of the network's own file that holds the most: the call
    # of a dense block, or a concat written there.
    by_statement: dict[str, list] = {}
    for node, facts in layers:
        if node.id in wide:
            span = node.calls[0] if node.calls else node.span
            entry = by_statement.setdefault(str(span), [span, 0, node, set()])
            entry[1] += facts.elements
            if node.blocks:
                entry[3].add(node.blocks[0][0])
    span, most, node, instances = max(by_statement.values(), key=lambda entry: entry[1])
    concats = sum(1 for n, _ in layers if n.op.op == "concat")
    block = f" of `{node.blocks[0][0]}`" if len(instances) == 1 else \
        f" of the {len(instances)} blocks this line makes" if instances else ""
    yield warning(
        "W0402", f"concatenations hold {_percent(held, total)} of the activation "
        "memory", span,
        label=f"the concatenations{block}: {_mib(most, spec)} "
        f"({_percent(most, total)})",
        notes=(f"{concats} concatenations and the normalisations and activations "
               f"applied to them hold {_mib(held, spec)} of the {_mib(total, spec)} "
               "written per image in a forward pass",
               "each concatenation copies every earlier feature map of its block, so "
               "memory grows with the square of the block's depth, and training keeps "
               "it all for the backward pass"),
        help="train with checkpointing: torchvision's DenseNet(memory_efficient=True) "
        "recomputes the concatenations in the backward pass (Pleiss et al. 2017, "
        "\"Memory-Efficient Implementation of DenseNets\")"), node.name


def _squashed_output(spec):
    """W0403: softmax, sigmoid, tanh or a ReLU after the layer that computes the
    class scores; CrossEntropyLoss takes the raw scores (logits)."""
    nodes = spec.graph.nodes
    for output in spec.graph.outputs:
        node = _back_through(nodes, nodes[output.node], _PASS_THROUGH | {
            "adaptive_avgpool", "avgpool"})
        if node.op.op not in _SQUASHING or not node.inputs:
            continue
        scores = _back_through(nodes, nodes[node.inputs[0]], _PASS_THROUGH)
        if scores.op.op not in _CLASSIFIERS:
            continue
        kind = node.op.op
        why = {
            "softmax": "it applies (log-)softmax itself, so softmax would be applied "
                       "twice: scores squeezed into [0, 1] barely move the loss",
            "relu": "every negative score becomes 0, so the network cannot score a "
                    "class below the others, and its gradient there is 0",
            "relu6": "scores are clipped to [0, 6]; below 0 the gradient is 0",
        }.get(kind, f"{kind} squeezes the scores into a narrow range where its "
                    "gradient vanishes, and the loss cannot make the right class win "
                    "by a margin")
        head = "" if output.name == "main" else f" of the auxiliary head `{output.name}`"
        yield warning(
            "W0403", f"`{kind}` after the final classifier{head}", node.span,
            label=f"the scores of {describe(scores)} pass through {kind}",
            notes=("the training loss (CrossEntropyLoss) expects logits, the raw "
                   "scores of the last linear or conv layer; " + why,) + _where(node),
            help=f"remove the {kind}; take the softmax of the scores when you need "
            "probabilities (`cnnspec predict` does)"), node.name


def _back_through(nodes, node, kinds):
    while node.op.op in kinds and node.inputs:
        node = nodes[node.inputs[0]]
    return node


def _bias_before_batchnorm(spec):
    """W0404: a conv (or linear) with a bias whose only reader is a batchnorm: the
    normalisation subtracts each channel's mean, bias included."""
    nodes = spec.graph.nodes
    users = user_counts(spec.graph)
    for node in nodes[1:]:
        if node.op.op != "batchnorm" or not node.inputs:
            continue
        source = nodes[node.inputs[0]]
        if source.op.op not in ("conv", "dwconv", "conv_transpose", "linear") \
                or not source.op.bias or users[source.id] != 1:
            continue
        channels = spec.table[source.id].shape[0]
        yield warning(
            "W0404", f"{describe(source)} has a bias that the batchnorm after it cancels",
            source.span,
            label=f"bias=true (the default): {channels:,} parameters that learn nothing",
            notes=(f"the batchnorm `{node.name}` subtracts each channel's mean over "
                   "the batch, which removes any constant the layer adds; its own "
                   "shift (beta) takes the bias's place",) + _where(source),
            help=f"write `bias=false` on the {source.op.op}, as torchvision's ResNets "
            "do"), source.name
