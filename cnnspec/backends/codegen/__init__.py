"""Source backend: shaped IR -> a standalone, readable PyTorch file.

Takes: a checked `Spec`. Returns: the text of a Python module that imports only
torch (and the standard library), laid out as torchvision's model files are: one
`nn.Module` class per block of the spec, built from the block's arguments
(`Inception(in_channels, ch1x1, ...)`; `codegen_blocks` decides which instances
share a class and writes each layer's arguments as expressions of the block's),
then the network class, whose `__init__` creates its own layers and its block
instances at the spec's dotted names (so the state-dict keys are exactly
`cnnspec.build`'s) and whose `forward` is straight-line code, one line per layer,
block instance or join in topological order, each commented with the checked
`C x H x W` (in a block class, in terms of its arguments where instances differ).

Constructor calls are `layers.constructor`'s, the same table `torch_backend` builds
from, written out with PyTorch's keywords; every size (in_channels, in_features,
num_features) is read from the checker's side table. Layers cnnspec implements itself
(`DropPath`, `MeanJoin`, `GlobalDropPath`, the batchnorms of `frozen { }`) are copied
into the file from `torch_backend.py`'s source, which is read as text: this module
never imports torch.
"""

from __future__ import annotations

import ast
import keyword
import re
import textwrap
from pathlib import Path

from ... import ops as O
from ...ir import ancestors, in_place_nodes
from ...version import __version__
from . import blocks as B
from .blocks import literal
from ..layers import (GLOBAL_DROP_PATH, HELPERS, LAYER_SCALE, constructor, fractal_joins,
                     layer_scale_shape, pad_channels_widths)

_COMMENT_COLUMN = 64  # shape comments line up here (longer lines push them right)

_SCOPE_SOURCE = '''\
class Scope(nn.Module):
    """A group of layers under one name, as in the spec. Children are reached as
    attributes (`scope.conv1`) or, for numbered names, by index (`scope[0]`)."""

    def __getitem__(self, name):
        return getattr(self, str(name))

    def __setitem__(self, name, module):
        setattr(self, str(name), module)
'''


def to_python(spec, *, class_name: str | None = None, source: str | None = None,
              weights_file: str | None = None) -> str:
    """The standalone PyTorch source of a checked spec (see the module docstring).

    `class_name` defaults to the network's name in CamelCase; `source` (how the
    spec was given, for the docstring) defaults to the spec's path. With
    `weights_file` (a .safetensors file name, beside the .py), the source ends with
    a `load_trained()` that builds the network with those weights.
    """
    text = _Writer(spec, class_name or _camel(spec.name), source).text()
    if weights_file is not None:
        text += "\n\n" + _LOADER.format(cls=class_name_of(text), file=weights_file)
    return text


def class_name_of(text: str) -> str:
    """The network's class in generated source (it comes last)."""
    return re.findall(r"^class (\w+)\(", text, re.M)[-1]


# Reads the weights with the safetensors package, imported only when called so that
# the file itself still imports only torch.
_LOADER = '''def load_trained(path=None):
    """{cls} in eval mode with the trained weights of {file} (beside this
    file, or at `path`). Needs the safetensors package."""
    from pathlib import Path

    from safetensors.torch import load_file

    model = {cls}()
    path = path or Path(__file__).with_name("{file}")
    model.load_state_dict(load_file(str(path)))
    return model.eval()
'''


# -- values and constructor calls ----------------------------------------------------


def _call(func: str, positional=(), **keywords) -> str:
    parts = [literal(v) for v in positional]
    parts += [f"{k}={literal(v)}" for k, v in keywords.items()]
    return f"{func}({', '.join(parts)})"


def module_expr(op, in_shape: tuple[int, ...], in_place: bool = False,
                frozen: bool = False) -> str | None:
    """The constructor call for one layer (`layers.constructor`, as
    `torch_backend.module_for` builds it), or None when the op is a plain function."""
    made = constructor(op, in_shape, in_place, frozen)
    if made is None:
        return None
    return _call(made.name, made.args, **made.kwargs)


# -- names ---------------------------------------------------------------------------


def _camel(name: str) -> str:
    return B.camel(name, empty="Network", prefix="Net")


def _is_attribute(part: str) -> bool:
    return part.isidentifier() and not keyword.iskeyword(part)


def _access(base: str, path: list[str]) -> str:
    """`self` + ["layer1", "0", "conv1"] -> `self.layer1[0].conv1`."""
    text = base
    for part in path:
        if _is_attribute(part):
            text += f".{part}"
        elif part.isdigit() and (part == "0" or not part.startswith("0")):
            text += f"[{part}]"
        else:
            text += f'["{part}"]'
    return text


def _layer_expr(name: str, args: list[str], keywords: dict[str, str],
                in_shape: tuple[int, ...]) -> str:
    """A layer's constructor call, from its arguments written as Python (literals,
    or expressions of a block class's arguments). A layer scale is the bare parameter
    it stands for, shaped by `layer_scale_shape` as `torch_backend` makes it."""
    if name == LAYER_SCALE:
        shape = layer_scale_shape((args[0],) + in_shape[1:])
        shape_text = f"({', '.join(map(str, shape))}{',' if len(shape) == 1 else ''})"
        return f"nn.Parameter(torch.full({shape_text}, {keywords['init']}))"
    return f"{name}({', '.join(args + [f'{k}={v}' for k, v in keywords.items()])})"


def _variable(name: str) -> str:
    text = re.sub(r"\W", "_", name.replace(".", "_"))
    if not text or text[0].isdigit():
        text = "_" + text
    return text


def _wrap(line: str, indent: int, limit: int = 88) -> list[str]:
    """Break a long line after the commas of its `torch.cat([...], 1)` or else of its
    first call, aligned under the first argument; a line that fits is left whole.
    `indent`: columns before `line`."""
    if indent + len(line) <= limit:
        return [line]
    if "torch.cat([" in line:
        start = line.find("torch.cat([") + len("torch.cat([")
        end = line.rindex("], 1)")
    elif "(" in line and line.rstrip(":").endswith(")"):
        start = line.index("(") + 1
        end = len(line.rstrip(":")) - 1
    else:
        return [line]
    items, depth, current = [], 0, ""
    for char in line[start:end]:  # split at the top-level commas
        depth += char in "([{"
        depth -= char in ")]}"
        if char == "," and depth == 0:
            items.append(current.strip())
            current = ""
        else:
            current += char
    items.append(current.strip())
    closing = line[end:]
    pad = " " * start
    lines, current = [], line[:start]
    for index, item in enumerate(items):
        piece = item + (", " if index < len(items) - 1 else closing)
        if current.strip() and current != line[:start] and \
                indent + len(current + piece.rstrip()) > limit:
            lines.append(current.rstrip())
            current = pad
        current += piece
    return lines + [current]


def _shape(shape) -> str:
    return "x".join(map(str, shape))




def _helper_sources(names) -> dict[str, str]:
    """The source of torch_backend's own layer classes, read as text (no torch import)."""
    path = Path(__file__).resolve().parent.parent / "torch_backend.py"
    text = path.read_text(encoding="utf-8")
    found = {}
    for item in ast.parse(text).body:
        if isinstance(item, ast.ClassDef) and item.name in names:
            found[item.name] = ast.get_source_segment(text, item)
    missing = set(names) - set(found)
    if missing:
        raise RuntimeError(f"{path} defines no class {', '.join(sorted(missing))}")
    return found


# -- the file ------------------------------------------------------------------------


class _Body:
    """What one `__init__` and `forward` are written from: the network's, or a block
    class's (then names are relative to the class's first instance)."""

    def __init__(self, units, input_id, exprs, pads, comments, training, scopes):
        self.units = units
        self.input = input_id
        self.exprs = exprs  # unit index -> constructor, Parameter or block class call
        self.pads = pads  # unit index -> pad_channels widths
        self.comments = comments  # unit index -> shape comment
        self.training = training  # unit index -> runs in training only
        self.scopes = scopes  # relative path -> block, for scopes written inline


class _Writer:
    def __init__(self, spec, class_name: str, source: str | None):
        self.spec = spec
        self.table = spec.table
        self.class_name = class_name
        self.source = source if source is not None else spec.path
        self.outputs = spec.graph.outputs
        self.has_aux = len(self.outputs) > 1
        self.in_place = in_place_nodes(spec.graph)
        fractal = fractal_joins(spec.graph.nodes)  # (p, columns) of the column sampler
        self.sampler = _call("GlobalDropPath", fractal) if fractal else None
        reserved = {class_name, f"{class_name}Outputs", "Scope", "Network", *HELPERS}
        self.plan = B.plan(spec, reserved)
        self.class_names = {cls.name for cls in self.plan.classes}

    def text(self) -> str:
        classes = [self._block_class(cls) for cls in self.plan.classes]
        network = self._network_class()
        code = "\n".join(classes + [network])
        helpers = [h for h in HELPERS if re.search(rf"\b{h}\(", code)]
        parts = [self._docstring(), "import torch\nfrom torch import nn\n"]
        if self.has_aux:
            parts[-1] = "from collections import namedtuple\n\n" + parts[-1]
        sources = _helper_sources(helpers) if helpers else {}
        for name in helpers:
            parts.append(sources[name] + "\n")
        if "Scope" in code:
            parts.append(_SCOPE_SOURCE)
        if self.has_aux:
            names = ", ".join(f'"{n}"' for n in self._output_names())
            parts.append(f"{self.class_name}Outputs = namedtuple("
                         f'"{self.spec.name}_outputs", [{names}])\n')
        parts += classes + [network]
        head, *rest = (p.rstrip("\n") + "\n" for p in parts)
        return head + "\n" + "\n\n".join(rest)

    # docstring
    def _docstring(self) -> str:
        spec = self.spec
        origin = f"from {self.source}" if self.source else "from spec text"
        params = ", ".join(f"{k}={_param_text(v)}" for k, v in spec.graph.params.items())
        lines = [f"{spec.name}: generated by cnnspec {__version__} {origin}"
                 + (f" ({params})." if params else "."), ""]
        lines.append(f"Input {_shape(spec.input_shape)}, output "
                     f"{_shape(spec.output_shape)}.")
        lines.append(f"Parameters: {spec.params:,}"
                     + (f" ({spec.inference_params:,} without the auxiliary heads)."
                        if spec.inference_params != spec.params else "."))
        lines.append(f"Multiply-accumulates: {spec.macs:,} per image (eval mode).")
        lines += ["", "Standalone: this file imports only torch. Its state-dict keys are",
                  "the spec's layer names, the same as `cnnspec.build`'s, so weights",
                  "saved from either load into the other with strict=True."]
        if self.plan.classes:
            lines += ["", "Each block of the spec is a class built from the block's "
                      "arguments; shape",
                      "comments in a block's forward use its arguments and the "
                      "input's H x W."]
        if self.has_aux:
            lines += ["", "In training, forward returns "
                      f"{self.class_name}Outputs({', '.join(self._output_names())});",
                      "in eval mode, the logits alone."]
        body = "\n".join(lines).replace("\\", "\\\\").replace('"""', '\\"\\"\\"')
        return f'"""{body}\n"""\n'

    def _output_names(self) -> list[str]:
        return ["logits"] + [_variable(o.name) for o in self.outputs[1:]]

    # calls of block classes
    def _class_call(self, cls, values: dict[str, str]) -> str:
        parts = []
        for name, default in cls.params:
            if default is B.REQUIRED:
                parts.append(values[name])
            elif values[name] != literal(B.normal(default)):
                parts.append(f"{name}={values[name]}")
        return f"{cls.name}({', '.join(parts)})"

    def _literal_call(self, inst) -> str:
        env = B._env(inst, self.table, self.spec.graph.block_args)
        return self._class_call(inst.cls, {
            name: literal(env["in_channels" if name == "in_features" else name])
            for name, _ in inst.cls.params})

    # the network
    def _network_class(self) -> str:
        units = self.plan.units
        exprs, pads = {}, {}
        for j, unit in enumerate(units):
            if unit.child is not None:
                exprs[j] = self._literal_call(unit.child)
            elif unit.ctor is not None:
                exprs[j] = _layer_expr(
                    unit.ctor.name, [literal(a) for a in unit.ctor.args],
                    {k: literal(v) for k, v in unit.ctor.kwargs.items()},
                    self.table[unit.inputs[0]].shape)
            elif type(unit.node.op) is O.PadChannels:
                pads[j] = repr(pad_channels_widths(
                    unit.node.op, self.table[unit.node.inputs[0]].shape))
        main = self.outputs[0].node
        eval_needed = ancestors(self.spec.graph.nodes, [main])
        body = _Body(units, 0, exprs, pads,
                     {j: _shape(self.table[u.id].shape) for j, u in enumerate(units)},
                     {j: u.id not in eval_needed for j, u in enumerate(units)},
                     self.plan.scopes)
        init = self._init(body)
        if self.sampler:
            init.append(f"self.{GLOBAL_DROP_PATH} = {self.sampler}  # picks a column")
        init += self._frozen()
        forward = self._forward(body, [o.node for o in self.outputs])
        base = "Scope" if self._indexed(units) else "nn.Module"
        spec = self.spec
        lines = [f"class {self.class_name}({base}):",
                 f'    """{spec.name} as checked by cnnspec: input '
                 f'{_shape(spec.input_shape)}, output {_shape(spec.output_shape)}."""',
                 "",
                 f"    input_shape = {tuple(spec.input_shape)!r}"]
        if self.has_aux:
            weights = ", ".join(f'"{name}": {o.weight!r}' for o, name
                                in zip(self.outputs[1:], self._output_names()[1:]))
            lines.append(f"    aux_weights = {{{weights}}}  # loss weight of each "
                         "auxiliary head")
        lines += ["", "    def __init__(self):", "        super().__init__()"]
        lines += ["        " + line for line in init]
        lines += ["", "    def forward(self, x):"]
        lines += ["        " + line for line in forward]
        return "\n".join(lines) + "\n"

    def _frozen(self) -> list[str]:
        """`requires_grad_(False)` on each frozen layer with parameters (block
        instances with frozen layers are written inline, so all are reached here)."""
        frozen = [u.name.split(".") for u in self.plan.units if u.ctor is not None
                  and u.node.frozen and self.table[u.id].params]
        if not frozen:
            return []
        return (["# Frozen in the spec: these parameters are not trained."]
                + [f"{_access('self', path)}.requires_grad_(False)" for path in frozen])

    # a block class
    def _block_class(self, cls) -> str:
        units = cls.units
        first = cls.instances[0]
        exprs, pads, attributes = {}, {}, []
        for j, unit in enumerate(units):
            found = cls.exprs[j]
            if unit.child is not None:
                exprs[j] = self._class_call(unit.child.cls, {
                    name: found[("param", name)] for name, _ in unit.child.cls.params})
            elif unit.ctor is not None:
                defaults = B.keyword_defaults(unit.ctor.name)
                args = [found[("arg", i)] for i in range(len(unit.ctor.args))]
                keywords = {key: expr for (kind, *rest), expr in found.items()
                            for key in rest if kind == "kw" and not (
                                key in defaults and expr == literal(defaults[key]))}
                exprs[j] = _layer_expr(unit.ctor.name, args, keywords,
                                       self.table[unit.inputs[0]].shape)
            elif ("pad",) in found:
                widths = pad_channels_widths(
                    unit.node.op, self.table[unit.node.inputs[0]].shape)
                sides = [found[("pad",)]]
                if ("pad_before",) in found:
                    sides.insert(0, found[("pad_before",)])
                for i, extra in enumerate(sides):
                    if extra.isdigit():
                        continue  # set in __init__: forward cannot see arguments
                    attribute = "pad_" + _variable(unit.name).lstrip("_")
                    attribute += "_before" if len(sides) == 2 and i == 0 else ""
                    while any(u.name.split(".")[0] == attribute for u in units):
                        attribute += "_"
                    attributes.append(f"self.{attribute} = {extra}  # zero channels "
                                      "to add")
                    sides[i] = f"self.{attribute}"
                fixed = widths[:-len(sides)]
                pads[j] = "(" + ", ".join([str(w) for w in fixed] + sides) + ")"
        prefix = first.path + "."
        scopes = {p[len(prefix):]: b for p, b in self.plan.scopes.items()
                  if p.startswith(prefix)}
        body = _Body(units, first.input, exprs, pads,
                     {j: _symbolic_shape(cls, j, self.table) for j in range(len(units))},
                     {j: False for j in range(len(units))}, scopes)
        signature = ["self"]
        for name, default in cls.params:
            signature.append(name if default is B.REQUIRED
                             else f"{name}={literal(B.normal(default))}")
        uses = [i.path for i in cls.instances]
        where = ", ".join(uses) if len(uses) <= 3 else f"{uses[0]} ... {uses[-1]}"
        count = f"used {len(uses)} times" if len(uses) > 1 else "used once"
        base = "Scope" if self._indexed(units) else "nn.Module"
        doc = textwrap.wrap(f"The spec's block `{cls.block}`, {count}: {where}.", 80)
        doc[0] = '"""' + doc[0]
        doc[-1] += '"""'
        lines = [f"class {cls.name}({base}):"] + ["    " + d for d in doc] + [""]
        lines += _wrap(f"    def __init__({', '.join(signature)}):", 0)
        lines += ["        super().__init__()"]
        for line in self._init(body) + attributes:
            lines += _wrap("        " + line, 0)
        lines += ["", "    def forward(self, x):"]
        lines += ["        " + line for line in self._forward(body, [first.output])]
        return "\n".join(lines) + "\n"

    @staticmethod
    def _indexed(units) -> bool:
        return any(not _is_attribute(u.name.split(".")[0]) for u in units
                   if u.ctor is not None or u.child is not None)

    # __init__
    def _init(self, body: _Body) -> list[str]:
        lines: list[str] = []
        made: set[str] = set()
        for j, unit in enumerate(body.units):
            if j not in body.exprs:
                continue
            *path, leaf = unit.name.split(".")
            for depth in range(1, len(path) + 1):
                prefix = ".".join(path[:depth])
                if prefix not in made:
                    made.add(prefix)
                    block = body.scopes.get(prefix)
                    lines.append(f"{_access('self', path[:depth])} = Scope()"
                                 + (f"  # {block}" if block else ""))
            lines.append(f"{_access('self', path + [leaf])} = {body.exprs[j]}")
        return lines

    # forward
    def _forward(self, body: _Body, outputs: list[int]) -> list[str]:
        units = body.units
        position = {u.id: j for j, u in enumerate(units)}
        needed: set[int] = set()
        stack = list(outputs)
        while stack:  # the units the outputs depend on
            current = stack.pop()
            if current in position and current not in needed:
                needed.add(current)
                stack.extend(units[position[current]].inputs)
        emitted = [j for j, u in enumerate(units) if u.id in needed]
        consumers: dict[int, set[int]] = {units[j].id: set() for j in emitted}
        consumers.setdefault(body.input, set())
        for j in emitted:
            for i in units[j].inputs:
                consumers[i].add(units[j].id)
        network = body.input == 0 and units and units[0].id == 0
        names = self._variables(body, emitted, consumers, outputs, network)

        rows: list[tuple[bool, str, str]] = []  # (training only, code, comment)
        for j in emitted:
            unit = units[j]
            training, shape = body.training[j], body.comments[j]
            if unit.id == 0 and network:
                if names[0] != "x":
                    rows.append((False, f"{names[0]} = x", shape))
                if self.sampler:
                    rows.append((False, f"column = self.{GLOBAL_DROP_PATH}()",
                                 "global drop-path: one column, or None"))
                continue
            args = [names[i] for i in unit.inputs]
            op = unit.node.op if unit.node is not None else None
            if getattr(op, "columns", ()):
                args.append("column=column")
            if unit.ctor is not None and unit.ctor.name == LAYER_SCALE:
                expr = f"{_access('self', unit.name.split('.'))} * {args[0]}"
            elif j in body.exprs:
                expr = f"{_access('self', unit.name.split('.'))}({', '.join(args)})"
            elif type(op) is O.PadChannels:
                expr = f"nn.functional.pad({args[0]}, {body.pads[j]})"
            elif type(op) is O.Concat:
                expr = f"torch.cat([{', '.join(args)}], 1)"
            elif type(op) is O.Add and unit.id in self.in_place \
                    and names[unit.id] == args[0] and len(args) == 2:
                rows.append((training, f"{args[0]} += {args[1]}", shape))
                continue
            elif type(op) is O.Add:
                expr = " + ".join(args)
            elif type(op) is O.Multiply:
                expr = " * ".join(args)
            else:  # pragma: no cover - every op is a module or one of the joins
                raise ValueError(f"no Python form for `{op.op}`")
            rows.append((training, f"{names[unit.id]} = {expr}", shape))

        lines: list[str] = []
        block: list[str] = []
        width = min(_COMMENT_COLUMN, max((len(c) + (4 if t else 0) for t, c, _ in rows),
                                         default=0))

        def flush():
            if block:
                lines.append("if self.training:  # auxiliary head")
                lines.extend(block)
                block.clear()

        for train_only, code, comment in rows:
            indent = "    " if train_only else ""
            *first, last = _wrap(indent + code, 8)
            text = first + [last.ljust(width) + f"  # {comment}"]
            if train_only:
                block.extend(text)
            else:
                flush()
                lines.extend(text)
        flush()
        main_name = names[outputs[0]]
        if len(outputs) > 1:
            results = ", ".join(names[o] for o in outputs)
            lines += ["if self.training:",
                      f"    return {self.class_name}Outputs({results})",
                      f"return {main_name}"]
        else:
            lines.append(f"return {main_name}")
        return lines

    def _variables(self, body: _Body, emitted, consumers, outputs, network) -> dict:
        """One variable per value: `x` (in a block whose input is read twice, `out`)
        for a value the very next line alone reads, a name after its scope
        (`layer1_0`, `inception3a_branch2`) for the others."""
        units = body.units
        main = outputs[0]
        last_in: dict[str, int] = {}
        for unit in units:
            parts = unit.name.split(".")
            for depth in range(1, len(parts)):
                last_in[".".join(parts[:depth])] = unit.id
        reserved = ({"x", "out", "self", "torch", "nn", "namedtuple", "Scope", "column",
                     self.class_name, f"{self.class_name}Outputs", *HELPERS}
                    | self.class_names | set(self._output_names()) | set(keyword.kwlist)
                    | {"logits", "inputs"})
        names: dict[int, str] = {}
        chain = "x"
        if not network:
            names[body.input] = "x"
            readers = consumers[body.input]
            if emitted and readers != {units[emitted[0]].id}:
                chain = "out"
        scopes: dict[int, str] = {}  # values that need a name of their own
        used: set[str] = set()
        has_aux = len(outputs) > 1
        output_names = dict(zip(outputs, self._output_names())) if network else {}
        for position, j in enumerate(emitted):
            unit = units[j]
            after = units[emitted[position + 1]] if position + 1 < len(emitted) else None
            users = consumers[unit.id]
            if unit.id in outputs:
                if not has_aux and after is None and not users:
                    names[unit.id] = chain
                else:
                    names[unit.id] = "out" if unit.id == main and not has_aux \
                        else output_names[unit.id]
                continue
            # Branches of a wide join stay named, so the join line lists them all.
            wide_join = (after is not None and len(after.inputs) > 2 and
                         after.node is not None and type(after.node.op) in (O.Concat, O.Mean))
            if (users and after is not None and users == {after.id} and not wide_join
                    and body.training[j] == body.training[emitted[position + 1]]):
                names[unit.id] = chain
                continue
            if network and unit.id == 0:
                scopes[unit.id] = "inputs"
            else:  # the outermost scope this unit ends, else the unit itself
                parts = unit.name.split(".")
                if parts[0].isdigit():  # an unnamed top-level layer: `relu_2`
                    kind = unit.child.block if unit.child else unit.node.op.op
                    parts[0] = f"{kind}_{parts[0]}"
                scopes[unit.id] = next(
                    (".".join(parts[:d]) for d in range(1, len(parts))
                     if last_in.get(".".join(unit.name.split(".")[:d])) == unit.id),
                    ".".join(parts))
        # The shortest unambiguous tail of each scope name: `pool0`, not
        # `features_pool0`; `denseblock1_denselayer2`; never a bare number.
        tails: dict[int, list[str]] = {}
        owners: dict[str, set[int]] = {}
        for node_id, scope in scopes.items():
            parts = scope.split(".")
            tails[node_id] = [_variable(".".join(parts[d:])) for d in
                              range(len(parts) - 1, -1, -1) if not parts[d].isdigit()]
            tails[node_id].append(_variable(scope))
            for tail in tails[node_id]:
                owners.setdefault(tail, set()).add(node_id)
        for node_id in scopes:
            options = [t for t in tails[node_id] if owners[t] == {node_id}]
            options += [f"{tails[node_id][-1]}_{node_id}"]
            name = next(t for t in options if t not in reserved and t not in used)
            names[node_id] = name
            used.add(name)
        return names


def _symbolic_shape(cls, j: int, table) -> str:
    """A block class's shape comment: the shape when every instance has the same,
    else the channels as an expression of the arguments and H x W of the input."""
    shapes = [table[inst.units[j].id].shape for inst in cls.instances]
    if all(s == shapes[0] for s in shapes):
        return _shape(shapes[0])
    inputs = [table[inst.input].shape for inst in cls.instances]
    dims = []
    for d in range(len(shapes[0])):
        values = [s[d] for s in shapes]
        if all(v == values[0] for v in values):
            dims.append(str(values[0]))
        elif d == 0:
            channels = cls.channels[j] or "C"
            dims.append(f"({channels})" if " " in channels else channels)
        else:
            letter = "HW"[d - 1] if d <= 2 else "D"
            source = [s[d] if len(s) > d else None for s in inputs]
            if values == source:
                dims.append(letter)
            elif all(s and v == -(-s // 2) for v, s in zip(values, source)):
                dims.append(f"{letter}/2")
            else:  # changed in a way that differs between instances
                dims.append(letter + "'")
    return " x ".join(dims)


def _param_text(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
