"""Explain backend: shaped IR -> every number with its arithmetic.

Takes: a checked `Spec`, optionally layer or block names and a block depth. Returns:
an `Explanation`, one `Record` per layer (or per block), each quantity as the formula
text with the numbers substituted and its value: the output size per axis, the
parameters, the MACs, the activation values and bytes, the receptive field and the
jump. The values are the checker's (`spec.table`); the formulas restate the rule of
`cnnspec/check.py` that gave them, so evaluating a formula gives its value
(`evaluate`; tests/test_explain.py checks it for every layer of every spec).

`explain_render` shows it as rich panels or as a markdown table for lecture notes.
Imports neither torch nor rich.
"""

from __future__ import annotations

import ast
import difflib
import math
import operator
from dataclasses import dataclass
from fractions import Fraction
from typing import Literal

from pydantic import BaseModel, ConfigDict

from . import ops as O
from .ir import block_at

SHAPE_KEYS = ("channels", "height", "width")  # the output shape's dimensions, in order
LIMIT = 100  # the terminal names a longer sum by its number of terms


@dataclass(frozen=True, slots=True)
class Quantity:
    """One number and how it is computed: `formula` evaluates to `value`. (A dataclass,
    not a model: a large network's explanation holds some 10,000 of them; the models
    below still validate and serialize it.)"""

    # channels | height | width (the output shape) | params | weights (params without
    # biases) | macs | values | bytes (activation memory) | rf_h | rf_w | jump_h | jump_w
    key: str
    formula: str  # the arithmetic with the numbers substituted: "11*11*3*96 + 96"
    value: int | float
    rule: str = ""  # the same in symbols: "k_h*k_w*c_in*c_out + c_out"
    note: str = ""


class Record(BaseModel):
    """One layer, or one block (`kind="block"`: the sums of its `members`), or the
    network's totals (`kind="total"`: eval mode, as `summary` totals them)."""

    model_config = ConfigDict(frozen=True)
    name: str
    op: str  # the layer's label (`conv 11x11/4, 96`) or the block's name
    kind: Literal["layer", "block", "total"] = "layer"
    output_shape: list[int]
    quantities: list[Quantity]
    members: list[str] = []
    receptive_field_global: bool = False
    training_only: bool = False
    frozen: bool = False

    def get(self, key: str) -> Quantity | None:
        return next((q for q in self.quantities if q.key == key), None)

    def value(self, key: str, default=0):
        quantity = self.get(key)
        return default if quantity is None else quantity.value

    @property
    def params(self) -> int:
        return self.value("params")

    @property
    def macs(self) -> int:
        return self.value("macs")

    @property
    def activation_bytes(self) -> int:
        return self.value("bytes")

    @property
    def receptive_field(self) -> tuple:
        return (self.value("rf_h", None), self.value("rf_w", None))

    @property
    def jump(self) -> tuple:
        return (self.value("jump_h", None), self.value("jump_w", None))


class Share(BaseModel):
    model_config = ConfigDict(frozen=True)
    label: str
    value: int
    share: float  # of the total, 0..1


class Explanation(BaseModel):
    """What `Spec.explain` returns: the records, and for a whole network its totals
    and where the parameters and the memory are."""

    model_config = ConfigDict(frozen=True)
    network: str
    input_shape: list[int]
    bytes_per_element: int
    depth: int | None = None
    records: list[Record]
    totals: Record | None = None  # only when the whole network is explained
    param_shares: list[Share] = []  # parameters by layer kind (conv, linear, ...)
    memory_shares: list[Share] = []  # eval-mode activation values by output size
    memory_half: str = ""  # "the first 5 of 38 layers (through `features.4`)"

    def __getitem__(self, name: str) -> Record:
        for record in self.records:
            if record.name == name:
                return record
        raise KeyError(name)


class UnknownLayer(KeyError):
    """A name that is neither a layer nor a block (or group) of the network."""

    def __init__(self, name: str, network: str, close: list[str]):
        super().__init__(name)
        self.name, self.network, self.close = name, network, close

    def __str__(self) -> str:
        text = f"no layer or block `{self.name}` in {self.network}"
        if self.close:
            return text + "; did you mean " + ", ".join(f"`{c}`" for c in self.close) + "?"
        return text + " (`cnnspec summary` lists the layers)"


# ---------------------------------------------------------------- numbers as text


def number(x) -> str:
    """A number as formula text: 4, 0.5, (1/3) for a fraction with a long decimal."""
    if isinstance(x, float):
        if x.is_integer():
            return str(int(x))
        text = repr(x)
        if len(text) > 8:
            fraction = Fraction(x).limit_denominator(1 << 20)
            if fraction.numerator / fraction.denominator == x:
                return f"({fraction.numerator}/{fraction.denominator})"
        return text
    return str(x)


def value_text(x) -> str:
    """34944 -> '34,944'; 0.5 -> '0.5'."""
    if isinstance(x, float) and not x.is_integer():
        return f"{x:g}"
    return f"{int(x):,}"


def human_bytes(count: int) -> str:
    for factor, prefix in ((2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")):
        if count >= factor:
            return f"{count / factor:.1f} {prefix}"
    return f"{count} B"


def rounded(count: int) -> str:
    """The lecture's shorthand: 3211264 -> 3.2M, 802816 -> 800K, 150528 -> 150K."""
    for factor, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "K")):
        if count >= factor:
            scaled = count / factor
            return f"{round(scaled, 1 - math.floor(math.log10(scaled))):g}{suffix}"
    return str(count)


_OPERATORS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
              ast.Div: operator.truediv, ast.FloorDiv: operator.floordiv,
              ast.Mod: operator.mod}
_FUNCTIONS = {"max": max, "min": min, "ceil": math.ceil, "floor": math.floor}


def evaluate(formula: str):
    """The value of a formula's arithmetic: numbers, + - * / // %, parentheses and
    max, min, ceil, floor. Anything else raises ValueError (nothing is executed)."""

    def walk(node):
        if isinstance(node, ast.Expression):
            return walk(node.body)
        if isinstance(node, ast.Constant) and type(node.value) in (int, float):
            return node.value
        if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
            chain = []  # a long sum nests to the left: fold it without recursing
            while isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
                chain.append((node.op, node.right))
                node = node.left
            value = walk(node)
            for op, right in reversed(chain):
                value = _OPERATORS[type(op)](value, walk(right))
            return value
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            value = walk(node.operand)
            return -value if isinstance(node.op, ast.USub) else value
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                and node.func.id in _FUNCTIONS and not node.keywords and node.args):
            args = [walk(a) for a in node.args]
            function = _FUNCTIONS[node.func.id]
            return function(args) if node.func.id in ("max", "min") else function(*args)
        raise ValueError(f"not plain arithmetic: {ast.dump(node)[:60]}")

    return walk(ast.parse(formula, mode="eval"))


# ---------------------------------------------------------------- one layer


def _q(key, formula, value, rule="", note="") -> Quantity:
    return Quantity(key, formula, value, rule, note)


def _span_text(k: int, d: int) -> str:
    return str(k) if d == 1 else f"({d}*({k}-1)+1)"


def _window_size(size, k, s, p, d, ceil_mode) -> tuple[str, str, str]:
    """(formula, rule, note) of a sliding window's output length, as check._window."""
    span = d * (k - 1) + 1
    padded = size + 2 * p
    base = f"({size} - {_span_text(k, d)} + 2*{p})"
    symbol = "k" if d == 1 else "(d*(k-1)+1)"
    if ceil_mode:
        out = -(-(padded - span) // s) + 1
        if (out - 1) * s >= size + p:
            return (f"ceil({base} / {s}) + 1 - 1", f"ceil((in - {symbol} + 2*p) / s) + 1",
                    ("ceil mode; the last window would start in the padding, so "
                     "PyTorch drops it"))
        note = "ceil mode" + ("" if (padded - span) % s == 0 else
                              f": {(padded - span) / s + 1:g} rounds up")
        return f"ceil({base} / {s}) + 1", f"ceil((in - {symbol} + 2*p) / s) + 1", note
    if (padded - span) % s == 0:
        return f"{base} / {s} + 1", f"(in - {symbol} + 2*p) / s + 1", ""
    return (f"floor({base} / {s}) + 1", f"floor((in - {symbol} + 2*p) / s) + 1",
            f"{(padded - span) / s + 1:g} rounds down")


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
        self.quantities.append(_q(*args, **kwargs))

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
            stride = op.effective_stride if isinstance(op, O._Pool) else op.stride
            dilation = getattr(op, "dilation", (1, 1))
            for i, key in ((0, "height"), (1, "width")):
                formula, rule, note = _window_size(
                    x.shape[1 + i], op.kernel_size[i], stride[i], op.padding[i],
                    dilation[i], getattr(op, "ceil_mode", False))
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
        self.add("bytes", f"{facts.elements}*{size}", facts.elements * size,
                 "values*bytes_per_element", f"{size} bytes per value")

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
        unchanged = [((str(rfs[a]), "rf_in", "unchanged"), (number(jumps[a]), "j_in",
                                                             "unchanged"))
                     for a in (0, 1)]
        if isinstance(op, (O.Conv, O.DepthwiseConv, O._Pool)) and len(x.shape) == 3:
            stride = op.effective_stride if isinstance(op, O._Pool) else op.stride
            dilation = getattr(op, "dilation", (1, 1))
            result = []
            for a in (0, 1):
                k, s, d, r, j = op.kernel_size[a], stride[a], dilation[a], rfs[a], jumps[a]
                extra = f"({k}-1)*{number(j)}" if d == 1 else f"{d}*({k}-1)*{number(j)}"
                rf = _field_text(r, extra, j)
                rule = "rf_in + (k-1)*j_in" if d == 1 else "rf_in + d*(k-1)*j_in"
                result.append(((rf, rule, ""), (f"{number(j)}*{s}", "j_in*s", "")))
            return result
        if isinstance(op, O.AdaptivePool):
            from .check import _widest_bin

            result = []
            for a in (0, 1):
                size, out, r, j = x.shape[1 + a], op.output_size[a], rfs[a], jumps[a]
                b = _widest_bin(size, out)
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
        return unchanged


def _layer_records(spec, nodes) -> dict[int, Record]:
    origins: dict[int, int] = {}
    return {node.id: _Layer(spec, node, origins).build() for node in nodes}


# ---------------------------------------------------------------- blocks and totals


def _sum(key: str, terms: list, rule: str = "", note: str = "") -> Quantity:
    shown = [t for t in terms if t]
    formula = " + ".join(map(str, shown)) if shown else "0"
    return _q(key, formula, sum(terms), rule, note)


def _block_record(name: str, op: str, members: list[Record], size: int) -> Record:
    """A block's sums, as `summary --depth` collapses it: params, MACs and memory add
    up; the receptive field is the widest member's; the shape and jump the last's."""
    last = members[-1]
    quantities = [_sum("params", [m.params for m in members], "the sum of its layers")]
    if any(m.get("weights") for m in members):
        quantities.append(_sum("weights", [m.value("weights") for m in members],
                               "the sum of its layers", "without the biases"))
    quantities.append(_sum("macs", [m.macs for m in members], "the sum of its layers"))
    values = _sum("values", [m.value("values") for m in members],
                  "the sum of its layers' outputs")
    quantities.append(values)
    quantities.append(_q("bytes", f"{values.value}*{size}", values.value * size,
                         "values*bytes_per_element", f"{size} bytes per value"))
    for key in ("rf_h", "rf_w"):
        distinct = list(dict.fromkeys(m.value(key) for m in members))
        formula = str(distinct[0]) if len(distinct) == 1 else \
            f"max({', '.join(map(number, distinct))})"
        widest = next(m for m in members if m.value(key) == max(distinct))
        quantities.append(_q(key, formula, max(distinct), "the widest layer's field",
                             f"set by `{widest.name}`"))
    for key in ("jump_h", "jump_w"):
        quantities.append(_q(key, number(last.value(key)), last.value(key),
                             "the last layer's jump"))
    return Record(name=name, op=op, kind="block", output_shape=last.output_shape,
                  quantities=quantities, members=[m.name for m in members],
                  receptive_field_global=any(m.receptive_field_global for m in members),
                  training_only=all(m.training_only for m in members),
                  frozen=all(m.frozen for m in members))


def _collapsed(spec, nodes, layers: dict, depth: int | None) -> list[Record]:
    """One record per node, or per block instance `depth` deep (as `collapse`)."""
    if depth is None:
        return [layers[n.id] for n in nodes]
    size = spec.graph.options.bytes_per_element
    groups: dict[str, tuple[str | None, list[Record]]] = {}
    for node in nodes:
        path, block = block_at(node, depth) or (node.name, None)
        groups.setdefault(path, (block, []))[1].append(layers[node.id])
    records = []
    for path, (block, members) in groups.items():
        if block is None:
            records.extend(members)
        else:
            records.append(_block_record(path, block, members, size))
    return records


def _totals(spec, layers: list[Record]) -> Record:
    """The network's totals, as `summary` reports them: every parameter (auxiliary
    heads included); MACs and memory in eval mode (auxiliary heads left out)."""
    size = spec.graph.options.bytes_per_element
    run = [r for r in layers if not r.training_only]
    aux = len(run) != len(layers)
    quantities = [
        _sum("params", [r.params for r in layers], "the sum of the layers",
             "auxiliary heads included" if aux else ""),
        _sum("weights", [r.value("weights") for r in layers], "the sum of the layers",
             "without the biases"),
        _sum("macs", [r.macs for r in run], "the sum of the layers",
             "eval mode: auxiliary heads left out" if aux else ""),
    ]
    values = _sum("values", [r.value("values") for r in run], "the sum of the layers",
                  "every layer's output, the input not counted"
                  + ("; eval mode" if aux else ""))
    quantities.append(values)
    quantities.append(_q("bytes", f"{values.value}*{size}", values.value * size,
                         "values*bytes_per_element", f"{size} bytes per value"))
    return Record(name="total", op=spec.name, kind="total",
                  output_shape=list(spec.output_shape), quantities=quantities)


def _shares(spec, layers: list[Record], nodes) -> tuple[list[Share], list[Share], str]:
    """Parameters by layer kind; eval-mode memory by output size; where half the
    memory is reached."""
    by_kind: dict[str, int] = {}
    for node, record in zip(nodes, layers):
        if record.params:
            by_kind[node.op.op] = by_kind.get(node.op.op, 0) + record.params
    total = sum(by_kind.values()) or 1
    params = [Share(label=k, value=v, share=v / total)
              for k, v in sorted(by_kind.items(), key=lambda kv: -kv[1])]
    by_size: dict[str, int] = {}
    run = [(n, r) for n, r in zip(nodes, layers) if not r.training_only]
    for node, record in run:
        shape = record.output_shape
        label = f"{shape[1]}x{shape[2]}" if len(shape) == 3 else "flat"
        by_size[label] = by_size.get(label, 0) + record.value("values")
    total = sum(by_size.values()) or 1
    memory = [Share(label=k, value=v, share=v / total) for k, v in by_size.items()]
    running, half = 0, ""
    for i, (node, record) in enumerate(run, 1):
        running += record.value("values")
        if running * 2 >= total:
            half = (f"half of the activation memory ({running / total:.1%}) is in the "
                    f"first {i} of {len(run)} layers, through `{node.name}` "
                    f"({'x'.join(map(str, record.output_shape))})")
            break
    return params, memory, half


# ---------------------------------------------------------------- the entry point


def explain(spec, layer=None, *, depth: int | None = None) -> Explanation:
    """Every number of the network (or of the named layers and blocks) with its
    arithmetic. `layer`: None (every layer), a name, or a list of names; a block
    instance or dotted group (`inception3a`, `features`) gives its layers, then its
    sums. `depth`: collapse block instances nested that deep into one record each."""
    if depth is not None and depth < 1:
        raise ValueError("depth must be 1 or more")
    nodes = spec.graph.nodes[1:]
    layers = _layer_records(spec, nodes)
    common = {"network": spec.name, "input_shape": list(spec.input_shape),
              "bytes_per_element": spec.graph.options.bytes_per_element, "depth": depth}
    if layer is None or (not isinstance(layer, str) and not list(layer)):
        every = [layers[n.id] for n in nodes]
        params, memory, half = _shares(spec, every, nodes)
        return Explanation(records=_collapsed(spec, nodes, layers, depth),
                           totals=_totals(spec, every), param_shares=params,
                           memory_shares=memory, memory_half=half, **common)
    records = []
    for name in [layer] if isinstance(layer, str) else list(layer):
        records.extend(_named(spec, nodes, layers, name, depth))
    return Explanation(records=records, **common)


def _named(spec, nodes, layers, name: str, depth) -> list[Record]:
    exact = [n for n in nodes if n.name == name]
    if exact:
        return [layers[exact[0].id]]
    members = [n for n in nodes if n.name.startswith(name + ".")]
    if not members:
        names = [n.name for n in nodes]
        groups = {n.name.rsplit(".", i)[0] for n in nodes
                  for i in range(1, n.name.count(".") + 1)}
        close = difflib.get_close_matches(name, sorted(set(names) | groups), n=5,
                                          cutoff=0.6)
        # An op's keyword (`flatten`): the layers of that kind, often unnamed.
        kind = [n.name for n in nodes if n.op.op == name]
        raise UnknownLayer(name, spec.name, list(dict.fromkeys(kind[:5] + close))[:5])
    block = next((b for n in members for path, b in n.blocks if path == name), None)
    level = next((i + 1 for n in members for i, (path, _) in enumerate(n.blocks)
                  if path == name), 0)
    inner = depth if depth is not None and depth > level else None
    size = spec.graph.options.bytes_per_element
    records = _collapsed(spec, members, layers, inner)
    return records + [_block_record(name, block or "group",
                                    [layers[n.id] for n in members], size)]
