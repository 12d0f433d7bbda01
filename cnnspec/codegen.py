"""Source backend: shaped IR -> a standalone, readable PyTorch file.

Takes: a checked `Spec`. Returns: the text of a Python module that imports only
torch (and the standard library): one `nn.Module` class whose `__init__` creates
every layer at the spec's dotted name (one line per layer, so the state-dict keys
are exactly `cnnspec.build`'s) and whose `forward` is straight-line code, one line
per IR node in topological order, each commented with the checked `C x H x W`.

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
from pathlib import Path

from . import __version__
from . import ops as O
from .ir import ancestors, in_place_nodes
from .layers import (GLOBAL_DROP_PATH, HELPERS, constructor, fractal_joins,
                     pad_channels_widths)

_COMMENT_COLUMN = 64  # shape comments line up here (longer lines push them right)

_SCOPE_SOURCE = '''\
class Scope(nn.Module):
    """A group of layers under one name, as in the spec. Children are reached as
    attributes (`scope.conv1`) or, for numbered names, by index (`scope[0]`)."""

    def __getitem__(self, name):
        return self._modules[str(name)]

    def __setitem__(self, name, module):
        self.add_module(str(name), module)
'''


def to_python(spec, *, class_name: str | None = None, source: str | None = None) -> str:
    """The standalone PyTorch source of a checked spec (see the module docstring).

    `class_name` defaults to the network's name in CamelCase; `source` (how the
    spec was given, for the docstring) defaults to the spec's path.
    """
    return _Writer(spec, class_name or _camel(spec.name), source).text()


# -- values and constructor calls ----------------------------------------------------


def _value(value) -> str:
    """A Python literal: (3, 3) -> 3 (torch accepts both), floats round-trip."""
    if isinstance(value, tuple):
        if len(value) == 2 and value[0] == value[1]:
            return _value(value[0])
        return "(" + ", ".join(_value(v) for v in value) + ")"
    if isinstance(value, str):
        return '"' + value + '"'
    return repr(value)


def _call(func: str, positional=(), **keywords) -> str:
    parts = [_value(v) for v in positional]
    parts += [f"{k}={_value(v)}" for k, v in keywords.items()]
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
    parts = [p for p in re.split(r"[^0-9A-Za-z]+", name) if p]
    text = "".join(p[:1].upper() + p[1:] for p in parts) or "Network"
    return text if text[0].isalpha() else "Net" + text


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


def _variable(name: str) -> str:
    text = re.sub(r"\W", "_", name.replace(".", "_"))
    if not text or text[0].isdigit():
        text = "_" + text
    return text


def _wrap(line: str, indent: int, limit: int = 88) -> list[str]:
    """Break a long `torch.cat([...], 1)` after commas, aligned under its first
    argument; any other line is left whole. `indent`: columns before `line`."""
    opening = line.find("torch.cat([")
    if indent + len(line) <= limit or opening < 0:
        return [line]
    start = opening + len("torch.cat([")
    items = line[start:line.rindex("], 1)")].split(", ")
    pad = " " * start
    lines, current = [], line[:start]
    for index, item in enumerate(items):
        piece = item + (", " if index < len(items) - 1 else "], 1)")
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
    path = Path(__file__).with_name("torch_backend.py")
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


class _Writer:
    def __init__(self, spec, class_name: str, source: str | None):
        self.spec = spec
        self.nodes = spec.graph.nodes
        self.class_name = class_name
        self.source = source if source is not None else spec.path
        self.outputs = spec.graph.outputs
        self.has_aux = len(self.outputs) > 1
        # A layer is a module exactly when module_for makes one (as _root_modules).
        self.modules: dict[int, str] = {}
        self.in_place = in_place_nodes(spec.graph)
        for node in self.nodes[1:]:
            in_shape = spec.table[node.inputs[0]].shape if node.inputs else ()
            expr = module_expr(node.op, in_shape, node.id in self.in_place, node.frozen)
            if expr is not None:
                self.modules[node.id] = expr
        self.needs_scope = any("." in self.nodes[i].name for i in self.modules)
        self.root_indexed = any(not _is_attribute(self.nodes[i].name.split(".")[0])
                                for i in self.modules)
        fractal = fractal_joins(self.nodes)  # (p, columns) of the column sampler
        self.sampler = _call("GlobalDropPath", fractal) if fractal else None
        made = list(self.modules.values()) + ([self.sampler] if self.sampler else [])
        self.helpers = [h for h in HELPERS if any(e.startswith(h + "(") for e in made)]

    def text(self) -> str:
        init = self._init()
        forward = self._forward()
        parts = [self._docstring(), "import torch\nfrom torch import nn\n"]
        if self.has_aux:
            parts[-1] = "from collections import namedtuple\n\n" + parts[-1]
        sources = _helper_sources(self.helpers) if self.helpers else {}
        for name in self.helpers:
            parts.append(sources[name] + "\n")
        if self.needs_scope or self.root_indexed:
            parts.append(_SCOPE_SOURCE)
        if self.has_aux:
            names = ", ".join(f'"{n}"' for n in self._output_names())
            parts.append(f"{self.class_name}Outputs = namedtuple("
                         f'"{self.spec.name}_outputs", [{names}])\n')
        parts.append(self._class(init, forward))
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
        if self.has_aux:
            lines += ["", "In training, forward returns "
                      f"{self.class_name}Outputs({', '.join(self._output_names())});",
                      "in eval mode, the logits alone."]
        body = "\n".join(lines).replace("\\", "\\\\").replace('"""', '\\"\\"\\"')
        return f'"""{body}\n"""\n'

    def _output_names(self) -> list[str]:
        return ["logits"] + [_variable(o.name) for o in self.outputs[1:]]

    # __init__
    def _init(self) -> list[str]:
        lines: list[str] = []
        made: set[str] = set()
        instances = {path: block for node in self.nodes for path, block in node.blocks}
        for node_id in self.modules:
            node = self.nodes[node_id]
            *path, leaf = node.name.split(".")
            for depth in range(1, len(path) + 1):
                prefix = ".".join(path[:depth])
                if prefix not in made:
                    made.add(prefix)
                    block = instances.get(prefix)
                    lines.append(f"{self._target(path[:depth])} = Scope()"
                                 + (f"  # {block}" if block else ""))
            lines.append(f"{self._target(path + [leaf])} = {self.modules[node_id]}")
        if self.sampler:
            lines.append(f"self.{GLOBAL_DROP_PATH} = {self.sampler}  # picks a column")
        frozen = [self.nodes[i].name.split(".") for i in self.modules
                  if self.nodes[i].frozen and self.spec.table[i].params]
        if frozen:
            lines.append("# Frozen in the spec: these parameters are not trained.")
            lines += [f"{self._target(path)}.requires_grad_(False)" for path in frozen]
        return lines

    def _target(self, path: list[str]) -> str:
        return _access("self", path)

    # forward
    def _forward(self) -> list[str]:
        main = self.outputs[0].node
        eval_needed = ancestors(self.nodes, [main])
        all_needed = ancestors(self.nodes, [o.node for o in self.outputs])
        emitted = [n for n in self.nodes if n.id in all_needed]
        consumers: dict[int, set[int]] = {n.id: set() for n in emitted}
        for node in emitted:
            for i in node.inputs:
                consumers[i].add(node.id)
        training = {n.id: n.id not in eval_needed for n in emitted}
        names = self._variables(emitted, consumers, training)

        rows: list[tuple[bool, str, str]] = []  # (training only, code, comment)
        for node in emitted:
            shape = _shape(self.spec.table[node.id].shape)
            if node.id == 0:
                if names[0] != "x":
                    rows.append((False, f"{names[0]} = x", shape))
                if self.sampler:
                    rows.append((False, f"column = self.{GLOBAL_DROP_PATH}()",
                                 "global drop-path: one column, or None"))
                continue
            args = [names[i] for i in node.inputs]
            if getattr(node.op, "columns", ()):
                args.append("column=column")
            if node.id in self.modules:
                expr = f"{_access('self', node.name.split('.'))}({', '.join(args)})"
            elif type(node.op) is O.PadChannels:
                in_shape = self.spec.table[node.inputs[0]].shape
                widths = pad_channels_widths(node.op, in_shape)
                expr = f"nn.functional.pad({args[0]}, {widths!r})"
            elif type(node.op) is O.Concat:
                expr = f"torch.cat([{', '.join(args)}], 1)"
            elif type(node.op) is O.Add and node.id in self.in_place \
                    and names[node.id] == args[0] and len(args) == 2:
                rows.append((training[node.id], f"{args[0]} += {args[1]}", shape))
                continue
            elif type(node.op) is O.Add:
                expr = " + ".join(args)
            elif type(node.op) is O.Multiply:
                expr = " * ".join(args)
            else:  # pragma: no cover - every op is a module or one of the joins
                raise ValueError(f"no Python form for `{node.op.op}`")
            rows.append((training[node.id], f"{names[node.id]} = {expr}", shape))

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
        main_name = names[main]
        if self.has_aux:
            results = ", ".join(names[o.node] for o in self.outputs)
            lines += ["if self.training:",
                      f"    return {self.class_name}Outputs({results})",
                      f"return {main_name}"]
        else:
            lines.append(f"return {main_name}")
        return lines

    def _variables(self, emitted, consumers, training) -> dict[int, str]:
        """One variable per value: `x` for a value the very next line alone reads,
        a name after its scope (`layer1_0`, `inception3a_branch2`) for the others."""
        nodes = self.nodes
        main = self.outputs[0].node
        last_in: dict[str, int] = {}
        for node in nodes:
            parts = node.name.split(".")
            for depth in range(1, len(parts)):
                last_in[".".join(parts[:depth])] = node.id
        reserved = ({"x", "self", "torch", "nn", "namedtuple", "Scope", "column",
                     self.class_name,
                     f"{self.class_name}Outputs", *HELPERS}
                    | set(self._output_names()) | set(keyword.kwlist)
                    | {"logits", "out"})
        names: dict[int, str] = {}
        scopes: dict[int, str] = {}  # values that need a name of their own
        used: set[str] = set()
        outputs = {o.node: name for o, name in zip(self.outputs, self._output_names())}
        for position, node in enumerate(emitted):
            after = emitted[position + 1] if position + 1 < len(emitted) else None
            users = consumers[node.id]
            if node.id in outputs:
                if not self.has_aux and after is None and not users:
                    names[node.id] = "x"
                else:
                    names[node.id] = "out" if node.id == main and not self.has_aux \
                        else outputs[node.id]
                continue
            # Branches of a wide join stay named, so the join line lists them all.
            wide_join = (after is not None and len(after.inputs) > 2
                         and type(after.op) in (O.Concat, O.Mean))
            if (users and after is not None and users == {after.id} and not wide_join
                    and training[node.id] == training[after.id]):
                names[node.id] = "x"
                continue
            if node.id == 0:
                scopes[node.id] = "inputs"
            else:  # the outermost scope this node ends, else the node itself
                parts = node.name.split(".")
                if parts[0].isdigit():  # an unnamed top-level layer: `relu_2`
                    parts[0] = f"{node.op.op}_{parts[0]}"
                scopes[node.id] = next(
                    (".".join(parts[:d]) for d in range(1, len(parts))
                     if last_in.get(".".join(parts[:d])) == node.id), ".".join(parts))
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

    # the class
    def _class(self, init: list[str], forward: list[str]) -> str:
        base = "Scope" if self.root_indexed else "nn.Module"
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


def _param_text(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
