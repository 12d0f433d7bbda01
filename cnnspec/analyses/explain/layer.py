"""Explain's per-layer arithmetic: one layer's numbers with their formulas.

Takes: a checked `Spec` and its layers (graph nodes). Returns: one `Record` per
layer (`layer_records`), each quantity the formula that `cnnspec/frontend/check.py`'s rule
gives with the layer's numbers substituted, and the checker's value: the output
size per axis, the parameters, the MACs, the activation values and bytes, the
receptive field and the jump. Imports neither torch nor rich.
"""

from __future__ import annotations

from ... import ops as O
from ...frontend.check import window_arithmetic, widest_bin, window_settings
from .model import Quantity, Record, bytes_quantity, evaluate, number


def _span_text(k: int, d: int) -> str:
    return str(k) if d == 1 else f"({d}*({k}-1)+1)"


def _window_size(size, k, s, p, d, ceil_mode, out) -> tuple[str, str, str]:
    """(formula, rule, note) of a sliding window's output length `out` (the
    checker's), with check._window's arithmetic."""
    arithmetic = window_arithmetic(size, k, s, p, d)
    exact = (arithmetic.padded - arithmetic.span) / s + 1
    base = f"({size} - {_span_text(k, d)} + 2*{p})"
    symbol = "k" if d == 1 else "(d*(k-1)+1)"
    if ceil_mode:
        rule = f"ceil((in - {symbol} + 2*p) / s) + 1"
        if out < arithmetic.floor + bool(arithmetic.leftover):
            return (f"ceil({base} / {s}) + 1 - 1", rule,
                    ("ceil mode; the last window would start in the padding, so "
                     "PyTorch drops it"))
        note = "ceil mode" + (f": {exact:g} rounds up" if arithmetic.leftover else "")
        return f"ceil({base} / {s}) + 1", rule, note
    if not arithmetic.leftover:
        return f"{base} / {s} + 1", f"(in - {symbol} + 2*p) / s + 1", ""
    return (f"floor({base} / {s}) + 1", f"floor((in - {symbol} + 2*p) / s) + 1",
            f"{exact:g} rounds down")


def _field_text(r, extra: str, j) -> str:
    """`r + extra` as the checker rounds it: whole pixels (ceil) when a fractional
    jump leaves the field part-way into a pixel."""
    formula = f"{r} + {extra}"
    if isinstance(j, float) and not float(evaluate(formula)).is_integer():
        return f"ceil({formula})"
    return formula


class _Layer:
    """Builds one layer's quantities from its op, its inputs' facts and its own."""

    def __init__(self, spec, node, origins: dict[int, int]):
        self.spec, self.node, self.op = spec, node, node.op
        self.origins = origins  # node id -> the node whose own rule first saw it all
        table = spec.table.facts  # complete: `load` checked every node
        self.facts = table[node.id]
        self.ins = [table[i] for i in node.inputs]
        self.x = self.ins[0] if self.ins else None
        self.quantities: list[Quantity] = []

    def add(self, *args, **kwargs):
        self.quantities.append(Quantity(*args, **kwargs))

    def build(self) -> Record:
        facts, node = self.facts, self.node
        self.shape()
        self.params()
        self.macs()
        self.memory()
        self.field()
        return Record.model_construct(
            name=node.name, op=node.op.label(), kind="layer", output_shape=list(facts.shape),
            quantities=self.quantities, members=[], receptive_field_global=facts.whole,
            training_only=node.training_only, frozen=node.frozen)

    # -- output shape
    def shape(self):
        op, x, out = self.op, self.x, self.facts.shape
        if isinstance(op, (O.Conv, O.DepthwiseConv, O._Pool)):
            if isinstance(op, O.DepthwiseConv) and op.channel_multiplier > 1:
                self.add("channels", f"{x.shape[0]}*{op.channel_multiplier}", out[0],
                         "c_in*channel_multiplier")
            if op.padding == "same":
                for key, size, value in zip(("height", "width"), x.shape[1:], out[1:]):
                    self.add(key, str(size), value, "in",
                             "padding=same keeps the size (stride 1; PyTorch pads "
                             "d*(k-1) in all)")
                return
            kernel, stride, padding, dilation = window_settings(op)
            for i, key in ((0, "height"), (1, "width")):
                formula, rule, note = _window_size(
                    x.shape[1 + i], kernel[i], stride[i], padding[i], dilation[i],
                    getattr(op, "ceil_mode", False), out[1 + i])
                self.add(key, formula, out[1 + i], rule, note)
        elif isinstance(op, O.AdaptivePool):
            for i, key in ((0, "height"), (1, "width")):
                self.add(key, str(op.output_size[i]), out[1 + i], "output_size",
                         f"adaptive: {x.shape[1 + i]} in, {op.output_size[i]} out")
        elif isinstance(op, O.ConvTranspose):
            for i, key in ((0, "height"), (1, "width")):
                self.add(key, f"({x.shape[1 + i]} - 1)*{op.stride[i]} - 2*{op.padding[i]}"
                         f" + {op.dilation[i]}*({op.kernel_size[i]} - 1) + "
                         f"{op.output_padding[i]} + 1", out[1 + i],
                         "(in - 1)*s - 2*p + d*(k - 1) + output_padding + 1")
        elif isinstance(op, O.Upsample):
            for i, key in ((0, "height"), (1, "width")):
                self.add(key, f"{x.shape[1 + i]}*{op.scale_factor[i]}", out[1 + i],
                         "in*scale_factor")
        elif isinstance(op, O.Flatten) and len(x.shape) == 3:
            self.add("channels", "*".join(map(str, x.shape)), out[0], "c*h*w")
        elif isinstance(op, O.Concat):
            self.add("channels", " + ".join(str(i.shape[0]) for i in self.ins), out[0],
                     "the sum of the branches' channels")

    # -- parameters
    def _features(self) -> str:
        """A linear's input features, as `(512*7*7)` when they come from a flatten."""
        nodes, table = self.spec.graph.nodes, self.spec.table.facts
        current = nodes[self.node.inputs[0]]
        n = self.x.shape[0]
        while len(current.inputs) == 1:
            before = table[current.inputs[0]].shape
            if isinstance(current.op, O.Flatten):
                return f"({'*'.join(map(str, before))})" if len(before) == 3 else str(n)
            if before != table[current.id].shape:
                break
            current = nodes[current.inputs[0]]
        return str(n)

    def params(self):
        op, x, value = self.op, self.x, self.facts.params
        weights = None
        if isinstance(op, O.Conv):
            c = x.shape[0]
            c_in = str(c) if op.groups == 1 else f"({c}/{op.groups})"
            k = op.kernel_size
            weights = f"{k[0]}*{k[1]}*{c_in}*{op.out_channels}"
            rule = "k_h*k_w*c_in*c_out" if op.groups == 1 else "k_h*k_w*(c_in/groups)*c_out"
            bias = op.out_channels
        elif isinstance(op, O.DepthwiseConv):
            k, c, m = op.kernel_size, x.shape[0], op.channel_multiplier
            weights = f"{k[0]}*{k[1]}*{c}" + (f"*{m}" if m > 1 else "")
            rule = "k_h*k_w*c_in" + ("*channel_multiplier" if m > 1 else "")
            bias = c * m
        elif isinstance(op, O.Linear):
            weights = f"{self._features()}*{op.out_features}"
            rule, bias = "in*out", op.out_features
        elif isinstance(op, O.ConvTranspose):
            k, out = op.kernel_size, op.out_channels
            c_out = str(out) if op.groups == 1 else f"({out}/{op.groups})"
            weights = f"{k[0]}*{k[1]}*{x.shape[0]}*{c_out}"
            rule = "k_h*k_w*c_in*" + ("c_out" if op.groups == 1 else "(c_out/groups)")
            bias = out
        if weights is not None:
            formula = weights + (f" + {bias}" if op.bias else "")
            rule += " + c_out" if op.bias else ""
            self.add("params", formula, value, rule,
                     "weights + biases" if op.bias else "weights (bias=false)")
            self.add("weights", weights, value - (bias if op.bias else 0),
                     rule.split(" + ")[0], "without the biases")
        elif isinstance(op, (O.BatchNorm, O.LayerNorm)):
            affine = op.affine if isinstance(op, O.BatchNorm) else op.elementwise_affine
            if affine:
                self.add("params", f"2*{x.shape[0]}", value, "2*c",
                         "γ and β per channel" + ("; the running mean and variance are "
                                                  "buffers, not parameters"
                                                  if isinstance(op, O.BatchNorm) else ""))
            else:
                self.add("params", "0", value, "", "no affine parameters")
        elif isinstance(op, O.LayerScale):
            self.add("params", str(x.shape[0]), value, "c", "one scale per channel")
        elif isinstance(op, O.Affine):
            self.add("params", "0", value, "",
                     "scale and shift are constants (buffers), not parameters")
        else:
            self.add("params", "0", value, "", "no parameters")

    # -- MACs
    def macs(self):
        op, x, out, value = self.op, self.x, self.facts.shape, self.facts.macs
        k = getattr(op, "kernel_size", None)
        if isinstance(op, O.Conv):
            c = x.shape[0]
            c_in = str(c) if op.groups == 1 else f"({c}/{op.groups})"
            self.add("macs", f"{out[1]}*{out[2]}*{out[0]} * {k[0]}*{k[1]}*{c_in}", value,
                     "h_out*w_out*c_out * k_h*k_w*c_in" + ("/groups" if op.groups > 1 else ""))
        elif isinstance(op, O.DepthwiseConv):
            self.add("macs", f"{out[1]}*{out[2]}*{out[0]} * {k[0]}*{k[1]}", value,
                     "h_out*w_out*c_out * k_h*k_w", "one input channel per filter")
        elif isinstance(op, O.Linear):
            if op.pointwise:
                self.add("macs", f"{x.shape[1]}*{x.shape[2]} * {x.shape[0]}*{op.out_features}",
                         value, "h*w * in*out", "once per position")
            else:
                self.add("macs", f"{self._features()}*{op.out_features}", value, "in*out")
        elif isinstance(op, O.ConvTranspose):
            out_g = str(op.out_channels) if op.groups == 1 \
                else f"({op.out_channels}/{op.groups})"
            self.add("macs", f"{x.shape[1]}*{x.shape[2]}*{x.shape[0]} * {out_g}*{k[0]}*{k[1]}",
                     value, "h_in*w_in*c_in * c_out/groups*k_h*k_w",
                     "every input pixel times a whole kernel (fvcore's count)")
        else:
            self.add("macs", "0", value, "",
                     "only conv and linear layers count (docs/costs.md)")

    # -- activation memory
    def memory(self):
        facts = self.facts
        size = self.spec.graph.options.bytes_per_element
        values = "*".join(map(str, facts.shape))
        self.add("values", values, facts.elements, "*".join("chw"[:len(facts.shape)])
                 if len(facts.shape) == 3 else "features")
        self.quantities.append(bytes_quantity(facts.elements, size))

    # -- receptive field and jump
    def field(self):
        facts = self.facts
        rf_out, jump_out = facts.receptive_field, facts.jump
        rules = self._field_rules()
        whole_inputs = [(i, f) for i, f in zip(self.node.inputs, self.ins) if f.whole]
        names = self.spec.graph.nodes
        for axis, suffix in ((0, "h"), (1, "w")):
            (rf, rf_rule, rf_note), (jump, jump_rule, jump_note) = rules[axis]
            if whole_inputs:
                values = [f.receptive_field[axis] for _, f in whole_inputs]
                rf = str(values[0]) if len(values) == 1 else \
                    f"max({', '.join(map(str, values))})"
                source = self.origins[whole_inputs[values.index(max(values))][0]]
                self.origins[self.node.id] = source
                rf_rule = "the first global view's field"
                rf_note = (f"global since `{names[source].name}` "
                           f"({names[source].op.label()}): the field stops there")
            elif facts.whole:
                self.origins[self.node.id] = self.node.id
                rf_note = (rf_note + "; " if rf_note else "") + \
                    "global: every output sees the whole input"
            self.add(f"rf_{suffix}", rf, rf_out[axis], rf_rule, rf_note)
            self.add(f"jump_{suffix}", jump, jump_out[axis], jump_rule, jump_note)

    def _field_rules(self):
        """Per axis ((rf formula, rule, note), (jump formula, rule, note))."""
        op, x = self.op, self.x
        if x is None:
            return [(("1", "", ""), ("1", "", ""))] * 2
        rfs, jumps = x.receptive_field, x.jump
        if isinstance(op, (O.Conv, O.DepthwiseConv, O._Pool)) and len(x.shape) == 3:
            kernel, stride, _, dilation = window_settings(op)
            result = []
            for a in (0, 1):
                k, s, d, r, j = kernel[a], stride[a], dilation[a], rfs[a], jumps[a]
                extra = f"({k}-1)*{number(j)}" if d == 1 else f"{d}*({k}-1)*{number(j)}"
                rf = _field_text(r, extra, j)
                rule = "rf_in + (k-1)*j_in" if d == 1 else "rf_in + d*(k-1)*j_in"
                result.append(((rf, rule, ""), (f"{number(j)}*{s}", "j_in*s", "")))
            return result
        if isinstance(op, O.AdaptivePool):
            result = []
            for a in (0, 1):
                size, out, r, j = x.shape[1 + a], op.output_size[a], rfs[a], jumps[a]
                b = widest_bin(size, out)
                rf = _field_text(r, f"({b}-1)*{number(j)}", j)
                jump = f"{number(j)}*({size}//{out})" if size >= out else f"{number(j)}*1"
                result.append(((rf, "rf_in + (widest bin - 1)*j_in",
                                f"the widest bin takes {b} of {size} inputs"),
                               (jump, "j_in*max(in // out, 1)", "")))
            return result
        if isinstance(op, O.Flatten) and len(x.shape) == 3:
            result = []
            for a in (0, 1):
                size, r, j = x.shape[1 + a], rfs[a], jumps[a]
                rf = _field_text(r, f"({size}-1)*{number(j)}", j)
                result.append(((rf, "rf_in + (in-1)*j_in", "every input position"),
                               (f"{number(j)}*{size}", "j_in*in", "")))
            return result
        if isinstance(op, O.ConvTranspose):
            result = []
            for a in (0, 1):
                k, s, d, r, j = (op.kernel_size[a], op.stride[a], op.dilation[a], rfs[a],
                                 jumps[a])
                rf = _field_text(r, f"(ceil({_span_text(k, d)}/{s}) - 1)*{number(j)}", j)
                result.append(((rf, "rf_in + (ceil(span/s) - 1)*j_in",
                                "the inputs one output overlaps"),
                               (f"{number(j)} / {s}", "j_in / s", "")))
            return result
        if isinstance(op, O.Upsample):
            result = []
            for a in (0, 1):
                r, j, f = rfs[a], jumps[a], op.scale_factor[a]
                if op.mode == "bilinear":
                    rf = _field_text(r, number(j), j)
                    rf_part = (rf, "rf_in + j_in", "bilinear: two neighbouring inputs")
                else:
                    rf_part = (str(r), "rf_in", "nearest: unchanged")
                result.append((rf_part, (f"{number(j)} / {f}", "j_in / scale_factor", "")))
            return result
        if isinstance(op, (O.Concat, O.Add, O.Mean, O.Multiply)):
            out = self.facts.shape
            grid = [f for f in self.ins if f.shape[1:] == out[1:]] or self.ins
            result = []
            for a in (0, 1):
                values = [f.receptive_field[a] for f in self.ins]
                widest = self.spec.graph.nodes[self.node.inputs[values.index(max(values))]]
                rf = str(values[0]) if len(values) == 1 else \
                    f"max({', '.join(map(str, values))})"
                jump_values = [number(f.jump[a]) for f in grid]
                jump = jump_values[0] if len(jump_values) == 1 else \
                    f"max({', '.join(jump_values)})"
                result.append(((rf, "the widest branch",
                                f"set by `{widest.name}`"),
                               (jump, "the branches' grid", "")))
            return result
        return [((str(rfs[a]), "rf_in", "unchanged"),
                 (number(jumps[a]), "j_in", "unchanged")) for a in (0, 1)]


def layer_records(spec, nodes) -> dict[int, Record]:
    """Node id -> the layer's record, for `nodes` in graph order (a global receptive
    field is traced back to the layer that made it global)."""
    origins: dict[int, int] = {}
    return {node.id: _Layer(spec, node, origins).build() for node in nodes}
