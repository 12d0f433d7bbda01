"""Block classes for the source backend: which block instances `codegen` writes as
one `nn.Module` class each, and what that class's code says.

Takes: a checked `Spec`. Returns: a `Plan`: the network's units in order (its own
layers and joins, and the block instances it calls as one module) and the block
classes, children first, each with its constructor parameters and, for every unit
of its body, the constructor arguments as Python expressions of those parameters.

How classes are chosen. A block instance becomes one module call when it reads one
value and yields one (no auxiliary head or fractal column escapes it) and holds
no frozen layer (those stay in the network class, frozen one by one). Instances of
one spec block with the same structure (the same layers, joins and child classes,
wired the same way) share a class; each constructor argument of each layer is
written as a literal when it is the same in every instance (a block argument
when one alone has that telling value: `classes`, `dropout`, not a 3), else as the block
argument (or `in_channels`, or a small expression of them: `4 * c`,
`in_channels // 2`, `bn_size * growth_rate`) that equals it in every instance;
an input size follows the layer that made it (`nn.BatchNorm2d(c)` after
`nn.Conv2d(..., c, ...)`). Where no expression fits, the instances are split by
that value. A block whose instances need more than `MAX_VARIANTS` classes, or one class
each (a `repeat` of a different length in each, say), or that calls itself, is written
inline in its caller, as a scope of named layers, as are instances that cannot be
one call. Every expression is checked against every instance's value, so each
instance builds exactly the layers (and state-dict keys) of `cnnspec.build`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ... import ops as O
from ...ir import Node, in_place_nodes
from ..layers import Constructor, constructor, pad_channels_widths

MAX_VARIANTS = 4  # classes per spec block before the block is written inline
REQUIRED = object()  # a constructor parameter without a default

# The keywords `layers.constructor` leaves out at PyTorch's default, per class.
_CONV = {"stride": 1, "padding": 0, "dilation": 1, "groups": 1, "bias": True}
_NORM = {"eps": 1e-5, "momentum": 0.1, "affine": True}
KEYWORD_DEFAULTS = {
    "nn.Conv2d": _CONV,
    "nn.MaxPool2d": {"padding": 0, "ceil_mode": False, "dilation": 1},
    "nn.AvgPool2d": {"padding": 0, "ceil_mode": False, "count_include_pad": True},
    "nn.BatchNorm2d": _NORM, "nn.BatchNorm1d": _NORM,
    "FrozenBatchNorm2d": _NORM, "FrozenBatchNorm1d": _NORM,
    "nn.Linear": {"bias": True}, "PointwiseLinear": {"bias": True},
    "nn.ConvTranspose2d": {**_CONV, "output_padding": 0},
    "LayerNorm2d": {"eps": 1e-5, "elementwise_affine": True},
    "nn.LayerNorm": {"eps": 1e-5, "elementwise_affine": True},
    "nn.Upsample": {"mode": "nearest"},
    "MeanJoin": {"p": 0.0},
    "ChannelAffine": {"scale": 1.0, "shift": 0.0},
}
_ACTIVATION_DEFAULTS = {"inplace": False}
_KEYWORD_ORDER = ("kernel_size", "stride", "padding", "output_padding", "dilation",
                  "groups", "bias", "eps", "momentum", "affine", "elementwise_affine",
                  "ceil_mode", "count_include_pad", "inplace", "p", "scale_factor", "mode",
                  "align_corners", "init", "scale", "shift")
# Layers whose first argument is the size of their input.
_SIZED = ("nn.Conv2d", "nn.Linear", "nn.BatchNorm2d", "nn.BatchNorm1d",
          "FrozenBatchNorm2d", "FrozenBatchNorm1d", "nn.ConvTranspose2d",
          "PointwiseLinear", "LayerNorm2d", "nn.LayerNorm", "LayerScale", "ChannelAffine")
# Ops whose output has their (first) input's channels.
_SAME_CHANNELS = ("nn.BatchNorm", "FrozenBatchNorm", "nn.MaxPool2d", "nn.AvgPool2d",
                  "nn.Adaptive", "nn.Dropout", "DropPath", "MeanJoin", "nn.LocalResponse",
                  "nn.Softmax", "LayerNorm2d", "nn.LayerNorm", "LayerScale",
                  "ChannelShuffle", "nn.Upsample", "CenterCrop", "ChannelAffine")


def keyword_defaults(name: str) -> dict:
    if name in KEYWORD_DEFAULTS:
        return KEYWORD_DEFAULTS[name]
    return _ACTIVATION_DEFAULTS if name.startswith("nn.") else {}


def normal(value):
    """(3, 3) -> 3, as the generated file writes it."""
    if isinstance(value, tuple) and len(value) == 2 and value[0] == value[1]:
        return value[0]
    return value


@dataclass(eq=False)
class Unit:
    """One line of a body's forward: a layer or join, or a block instance called as
    one module. `id` is the node whose value it yields."""

    id: int
    first: int
    name: str  # dotted, relative to the body
    inputs: tuple[int, ...]
    node: Node | None = None
    child: Instance | None = None
    ctor: Constructor | None = None


@dataclass(eq=False)
class Instance:
    path: str
    block: str
    members: list[int]
    input: int = -1
    output: int = -1
    units: list[Unit] = field(default_factory=list)
    cls: BlockClass | None = None


@dataclass(eq=False)
class BlockClass:
    name: str
    block: str
    instances: list[Instance]
    exprs: list[dict]  # per unit: slot key -> Python expression
    channels: list[str | None]  # per unit: its output channels as an expression
    params: list[tuple[str, object]] = field(default_factory=list)  # (name, default)
    sources: dict[str, str] = field(default_factory=dict)  # param -> spec argument

    @property
    def units(self) -> list[Unit]:
        return self.instances[0].units


@dataclass
class Plan:
    units: list[Unit]  # the network's
    classes: list[BlockClass]  # children before the classes that call them
    scopes: dict[str, str]  # path -> block, for the instances written inline


def plan(spec, reserved: set[str]) -> Plan:
    return _Planner(spec, reserved).run()


def is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def python_name(name: str) -> str:
    import keyword
    if keyword.iskeyword(name) or name in ("self", "in_channels", "in_features", "x",
                                            "out", "torch", "nn", "super"):
        return name + "_"
    return name


def camel(name: str, empty: str = "Block", prefix: str = "Block") -> str:
    """`dense_layer` -> `DenseLayer`; `empty` when no letter or digit is left, and
    `prefix` before a name that would start with a digit."""
    parts = [p for p in re.split(r"[^0-9A-Za-z]+", name) if p]
    text = "".join(p[:1].upper() + p[1:] for p in parts) or empty
    return text if text[0].isalpha() else prefix + text


class _Planner:
    def __init__(self, spec, reserved: set[str]):
        self.spec = spec
        self.nodes = spec.graph.nodes
        self.table = spec.table
        self.in_place = in_place_nodes(spec.graph)
        self.ctors: dict[int, Constructor] = {}
        for node in self.nodes[1:]:
            in_shape = self.table[node.inputs[0]].shape if node.inputs else ()
            made = constructor(node.op, in_shape, node.id in self.in_place, node.frozen)
            if made is not None:
                self.ctors[node.id] = made
        self.taken = set(reserved)
        self.classes: list[BlockClass] = []
        self.collapsed: dict[str, Instance] = {}

    # ---------------------------------------------------------------- instances

    def run(self) -> Plan:
        nodes = self.nodes
        instances: dict[str, Instance] = {}
        nested: dict[str, set[str]] = {}  # block -> blocks called inside it
        recursive: set[str] = set()
        for node in nodes:
            chain = node.blocks
            for depth, (path, block) in enumerate(chain):
                if path not in instances:
                    instances[path] = Instance(path, block, [])
                    outer = {b for _, b in chain[:depth]}
                    if block in outer:
                        recursive.add(block)
                    for b in outer:
                        nested.setdefault(b, set()).add(block)
                instances[path].members.append(node.id)
        users: dict[int, set[int]] = {n.id: set() for n in nodes}
        for node in nodes:
            for i in node.inputs:
                users[i].add(node.id)
        outputs = {o.node for o in self.spec.graph.outputs}
        by_block: dict[str, list[Instance]] = {}
        for inst in instances.values():
            members = set(inst.members)
            reads = {i for m in inst.members for i in nodes[m].inputs if i not in members}
            leaves = {m for m in inst.members
                      if m in outputs or any(u not in members for u in users[m])}
            uniform = len({nodes[m].training_only for m in inst.members}) == 1 \
                and not any(nodes[m].frozen for m in inst.members)
            columns = any(getattr(nodes[m].op, "columns", ()) for m in inst.members)
            if len(reads) == 1 and len(leaves) == 1 and uniform and not columns \
                    and inst.path in self.spec.graph.block_args:
                inst.input, inst.output = reads.pop(), leaves.pop()
                by_block.setdefault(inst.block, []).append(inst)
        pending = [b for b in by_block if b not in recursive]
        done = set(recursive)
        while pending:
            ready = [b for b in pending if nested.get(b, set()) - {b} <= done]
            if not ready:
                break
            for block in ready:
                self._decide(block, by_block[block])
                done.add(block)
                pending.remove(block)
        scopes = {path: inst.block for path, inst in instances.items()
                  if path not in self.collapsed}
        return Plan(self._units(None), self.classes, scopes)

    def _units(self, inst: Instance | None) -> list[Unit]:
        """The units of a body: its nodes outside collapsed children, and those
        children, in order."""
        members = inst.members if inst is not None else [n.id for n in self.nodes]
        prefix = inst.path + "." if inst is not None else ""
        units: list[Unit] = []
        seen: set[str] = set()
        for m in members:
            node = self.nodes[m]
            chain = [p for p, _ in node.blocks]
            start = chain.index(inst.path) + 1 if inst is not None else 0
            child = next((self.collapsed[p] for p in chain[start:]
                          if p in self.collapsed), None)
            if child is None:
                units.append(Unit(m, m, node.name[len(prefix):], node.inputs, node=node,
                                  ctor=self.ctors.get(m)))
            elif child.path not in seen:
                seen.add(child.path)
                units.append(Unit(child.output, m, child.path[len(prefix):],
                                  (child.input,), child=child))
        return units

    # ---------------------------------------------------------------- classes

    def _decide(self, block: str, instances: list[Instance]) -> None:
        groups: dict[tuple, list[Instance]] = {}
        for inst in instances:
            inst.units = self._units(inst)
            groups.setdefault(self._signature(inst), []).append(inst)
        made: list[tuple[list[Instance], list[dict], list]] = []
        for group in groups.values():
            made += self._parameterize(group)
            if len(made) > MAX_VARIANTS:
                return  # written inline
        if 1 < len(made) == len(instances):
            return  # no two instances alike: written inline
        # The base class (plain name) is the most used structure; the others are
        # named after a true/false argument they agree on, or a layer only they
        # have (`BasicDownsample`), else numbered.
        made.sort(key=lambda m: (-len(m[0]), len(m[0][0].units), m[0][0].members[0]))
        base_parts = {part for u in made[0][0][0].units for part in u.name.split(".")}
        base_args = self._flags(made[0][0])
        for index, (group, exprs, channels) in enumerate(made):
            name = camel(block)
            if index:
                flags = self._flags(group)
                flag = next((f for f, v in flags.items() if base_args.get(f) == (not v)),
                            None)
                extra = next((part for u in group[0].units for part in u.name.split(".")
                              if part not in base_parts and not part.isdigit()), None)
                if flag is not None:
                    name += camel(flag) if flags[flag] else "No" + camel(flag)
                elif extra is not None:
                    name += camel(extra)
                else:
                    name += str(index + 1)
            while name in self.taken:
                name = name + "_" if name.endswith("Block") else name + "Block"
            self.taken.add(name)
            cls = BlockClass(name, block, group, exprs, channels)
            self._parameters(cls)
            for inst in group:
                inst.cls = cls
                self.collapsed[inst.path] = inst
            self.classes.append(cls)

    def _flags(self, group: list[Instance]) -> dict[str, bool]:
        """The true/false arguments every instance of a group gives the same value."""
        values = [self.spec.graph.block_args[i.path].values for i in group]
        return {name: value for name, value in values[0].items()
                if isinstance(value, bool) and all(v.get(name) is value for v in values)}

    def _signature(self, inst: Instance) -> tuple:
        index = {u.id: j for j, u in enumerate(inst.units)}
        index[inst.input] = -1
        parts: list = [len(self.table[inst.input].shape), index[inst.output]]
        for unit in inst.units:
            wiring = tuple(index[i] for i in unit.inputs)
            if unit.child is not None:
                parts.append(("call", unit.name, unit.child.cls.name, wiring))
            elif unit.ctor is not None:
                defaults = keyword_defaults(unit.ctor.name)
                parts.append(("layer", unit.name, unit.ctor.name, len(unit.ctor.args),
                              frozenset(k for k in unit.ctor.kwargs if k not in defaults),
                              wiring))
            else:
                parts.append(("function", unit.name, type(unit.node.op).__name__,
                              unit.id in self.in_place, wiring))
        return tuple(parts)

    def _slots(self, unit: Unit, group_units: list[Unit]) -> list[tuple]:
        """(key, values in each instance, is an input size) for each argument."""
        if unit.child is not None:
            cls = unit.child.cls
            envs = [_env(u.child, self.table, self.spec.graph.block_args)
                    for u in group_units]
            return [(("param", name),
                     [e["in_channels" if name == "in_features" else name] for e in envs],
                     name in ("in_channels", "in_features"))
                    for name, _ in cls.params]
        if unit.ctor is not None:
            slots = [(("arg", i), [normal(u.ctor.args[i]) for u in group_units],
                      i == 0 and unit.ctor.name in _SIZED)
                     for i in range(len(unit.ctor.args))]
            defaults = keyword_defaults(unit.ctor.name)
            keys = {k for u in group_units for k in u.ctor.kwargs}
            order = [k for k in _KEYWORD_ORDER if k in keys]
            order += sorted(keys - set(order))
            for key in order:
                values = [normal(u.ctor.kwargs.get(key, defaults.get(key)))
                          for u in group_units]
                slots.append((("kw", key), values, False))
            return slots
        if type(unit.node.op) is O.PadChannels:
            widths = [pad_channels_widths(u.node.op, self.table[u.node.inputs[0]].shape)
                      for u in group_units]
            slots = [(("pad",), [w[-1] for w in widths], False)]
            if unit.node.op.where == "both":  # zero channels before the input's too
                slots.append((("pad_before",), [w[-2] for w in widths], False))
            return slots
        return []

    def _parameterize(self, group: list[Instance]) -> list:
        envs = [_env(inst, self.table, self.spec.graph.block_args) for inst in group]
        search = _Search(envs)
        index = {u.id: j for j, u in enumerate(group[0].units)}
        index[group[0].input] = -1
        channels: dict[int, str | None] = {-1: search.find(
            [self.table[inst.input].shape[0] for inst in group], first="in_channels")}
        exprs: list[dict] = []
        for j, unit in enumerate(group[0].units):
            column = [inst.units[j] for inst in group]
            found = {}
            for key, values, sized in self._slots(unit, column):
                hint = channels.get(index[unit.inputs[0]]) if sized else None
                if key == ("pad",) and unit.node.op.where == "end":  # out - in
                    out = search.find([self.table[u.id].shape[0] for u in column])
                    source = channels.get(index[unit.inputs[0]])
                    hint = f"{out} - {source}" if out and source else None
                expr = search.find(values, hint=hint,
                                   field=key[1] if key[0] == "kw" else None)
                if expr is None:  # split by this value
                    parts: dict = {}
                    for inst, value in zip(group, values):
                        parts.setdefault(repr(value), []).append(inst)
                    return [made for part in parts.values()
                            for made in self._parameterize(part)]
                found[key] = expr
            exprs.append(found)
            out = [self.table[u.id].shape[0] for u in column]
            ins = [self.table[u.inputs[0]].shape[0] if u.inputs else None for u in column]
            hint = None
            if unit.ctor is not None and unit.ctor.name in (
                    "nn.Conv2d", "nn.Linear", "nn.ConvTranspose2d", "PointwiseLinear"):
                hint = found[("arg", 1)]
            elif unit.node is not None and type(unit.node.op) is O.Concat:
                terms = [channels.get(index[i]) for i in unit.inputs]
                if all(terms):
                    hint = " + ".join(terms)
            elif out == ins:
                hint = channels.get(index[unit.inputs[0]])
            channels[j] = search.find(out, hint=hint)
        return [(group, exprs, [channels[j] for j in range(len(exprs))])]

    def _parameters(self, cls: BlockClass) -> None:
        """The class's constructor parameters: the input size and the block arguments
        its expressions use, required ones first; a default where every instance
        that left the argument out got the same value."""
        used = {name for e in cls.exprs for expr in e.values()
                for name in re.findall(r"[A-Za-z_]\w*", expr)}
        first = cls.instances[0]
        size = "in_features" if len(self.table[first.input].shape) == 1 else "in_channels"
        required, optional = [], []
        if "in_channels" in used:
            required.append((size, REQUIRED))
            cls.sources[size] = "in_channels"
        args = self.spec.graph.block_args[first.path]
        for name in args.values:
            py = python_name(name)
            if py not in used:
                continue
            cls.sources[py] = name
            left_out = [self.spec.graph.block_args[i.path].values[name]
                        for i in cls.instances
                        if name not in self.spec.graph.block_args[i.path].given]
            if left_out and all(type(v) is type(left_out[0]) and v == left_out[0]
                                for v in left_out):
                optional.append((py, left_out[0]))
            else:
                required.append((py, REQUIRED))
        cls.params = required + optional
        if size == "in_features":  # the expressions say in_channels
            for e in cls.exprs:
                for key, expr in e.items():
                    e[key] = re.sub(r"\bin_channels\b", "in_features", expr)
            cls.channels = [re.sub(r"\bin_channels\b", "in_features", c) if c else c
                            for c in cls.channels]


def literal(value) -> str:
    """A Python literal: (3, 3) -> 3 (torch accepts both), floats round-trip."""
    if isinstance(value, tuple):
        if len(value) == 2 and value[0] == value[1]:
            return literal(value[0])
        return "(" + ", ".join(literal(v) for v in value) + ")"
    if isinstance(value, str):
        return '"' + value + '"'
    return repr(value)


def _env(inst: Instance, table, block_args) -> dict:
    """The values a class's expressions may use: the input size and the numeric
    block arguments (by their Python names)."""
    env = {"in_channels": table[inst.input].shape[0]}
    for name, value in block_args[inst.path].values.items():
        if is_number(value):
            env[python_name(name)] = value
    return env


def _key(values) -> tuple:
    return tuple((type(v).__name__, v) for v in values)


def _trivial(value) -> bool:
    return not is_number(value) or value in (0, 1)


_FIELD_WORDS = {"p": {"p", "drop", "dropout", "prob", "rate"}, "init": {"init", "scale"}}


def _names_field(argument: str, field: str) -> bool:
    """Whether a block argument's name speaks of a constructor keyword."""
    words = set(argument.lower().split("_"))
    return bool(words & (_FIELD_WORDS.get(field, set()) | set(field.split("_"))))


class _Search:
    """Expressions over a group's values, by what they evaluate to in every instance."""

    def __init__(self, envs: list[dict]):
        self.envs = envs
        names = [n for n in envs[0] if n != "in_channels"] + ["in_channels"]
        names = [n for n in names if all(n in e for e in envs)]
        self.single: dict[tuple, str] = {}
        self.unique: dict[tuple, str | None] = {}  # for constants: one argument only
        for name in names:
            key = _key([e[name] for e in envs])
            self.single.setdefault(key, name)
            if name != "in_channels":
                self.unique[key] = None if key in self.unique else name
        ints = [n for n in names if all(type(e[n]) is int for e in envs)]
        self.products: dict[tuple, str] = {}
        self.composite: dict[tuple, str] = {}
        for a in ints:
            for b in ints:
                if a != b and names.index(a) < names.index(b):
                    self.products.setdefault(_key([e[a] * e[b] for e in envs]),
                                             f"{a} * {b}")
        for key, expr in self.products.items():
            self.composite.setdefault(key, expr)
        for a in ints:
            for k in range(2, 9):
                self.composite.setdefault(_key([k * e[a] for e in envs]), f"{k} * {a}")
                self.composite.setdefault(_key([e[a] // k for e in envs]), f"{a} // {k}")
        for key, expr in self.products.items():
            self.composite.setdefault(key, expr)
        for a in ints:
            for b in ints:
                if a != b:
                    if names.index(a) < names.index(b):
                        self.composite.setdefault(_key([e[a] + e[b] for e in envs]),
                                                  f"{a} + {b}")
                    self.composite.setdefault(_key([e[a] - e[b] for e in envs]),
                                              f"{a} - {b}")

    def check(self, expr: str, values) -> bool:
        try:
            found = [eval(expr, {"__builtins__": {}}, dict(e)) for e in self.envs]
        except Exception:  # noqa: BLE001 - a hint that does not apply
            return False
        return _key(found) == _key(values)

    def find(self, values, hint: str | None = None, first: str | None = None,
             field: str | None = None):
        """A literal, a block argument or a small expression equal to `values`
        in every instance; None when there is none. `field`: the keyword the value
        is for; a float that is the same everywhere becomes an argument only when
        the argument's name says it is this field (`eps`, `bn_eps`; `p`, `dropout`),
        not merely because the numbers agree (eps 1e-6 is not a layer-scale init)."""
        if hint and self.check(hint, values):
            return hint
        if first and self.check(first, values):
            return first
        same = all(type(v) is type(values[0]) and v == values[0] for v in values)
        if same and _trivial(values[0]):
            return literal(values[0])
        key = _key(values)
        if same:  # an argument only where the value is telling: 0.7, 1000, not 3
            if isinstance(values[0], float) and field is not None:
                name = self.unique.get(key)
                return name if name and _names_field(name, field) else literal(values[0])
            if isinstance(values[0], float) or values[0] > 8:
                return self.unique.get(key) or self.products.get(key) \
                    or literal(values[0])
            return literal(values[0])
        if key in self.single:
            return self.single[key]
        return self.composite.get(key)
