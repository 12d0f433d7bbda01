"""Elaborate stage: syntax tree -> IR graph.

Takes: the parsed network definition, every block and `recipe` it can call, and
parameter overrides. Returns: an `ir.Graph` of primitive ops with deterministic
dotted names (and the network's training recipe, `recipe.py`), and the `ShapeTable`
that was filled while building it.

Blocks are instantiated, `repeat` and `* n` unrolled, expressions and conditionals
evaluated, and structural constructs lowered to joins: `residual` -> add,
`dense` -> concat with the input, `gate` -> multiply with the input, `aux` -> an
extra training-only output (the constructs are in `constructs.py`). Naming follows
nn.Sequential: a labelled entry takes its
label, an unlabelled one its position in the enclosing scope; a block call, a
labelled `{...}` and a labelled construct open a scope of their own.

Shapes are asked of the checker's table as nodes are added (so `in.c` and
`shortcut auto` work, and errors come in file order); no shape is computed here.
"""

from __future__ import annotations

import re
from dataclasses import replace

from pydantic import ValidationError

from .. import ops as O
from . import syntax as S
from .arguments import build_op, invalid_value, refuse_ambiguous_star
from .check import ShapeTable
from .constructs import Constructs
from ..diagnostics import Span, SpecError, did_you_mean, error
from .expressions import Evaluator, LayerRef, TensorRef
from ..ir import Assertion, BlockArgs, Graph, Options, Output
from .recipe import build_recipe, check_against_network
from .scope import Context, Scope

MAX_NODES = 50_000  # 7x the IR of a 2000-layer ResNet; stops exponential recursion fast
MAX_REPEAT = 100_000
MAX_BLOCK_DEPTH = 32
MAX_STEPS = 300_000  # statements expanded; bounds loops that add no layers
_NAME = re.compile(r"[A-Za-z0-9_]+(-[A-Za-z0-9_]+)*$")
_PIECE = re.compile(r"[A-Za-z0-9_]+$")  # what a `{...}` in a label may give
# torch.nn.Module's own attributes: a layer by one of these names would replace a
# method every module needs (`double`, `train`, `to`, ...), so the build would fail.
_MODULE_ATTRIBUTES = frozenset("""
T_destination add_module apply bfloat16 buffers call_super_init children compile cpu
cuda double dump_patches eval extra_repr float forward get_buffer get_extra_state
get_parameter get_submodule half ipu load_state_dict modules mtia named_buffers
named_children named_modules named_parameters parameters register_backward_hook
register_buffer register_forward_hook register_forward_pre_hook
register_full_backward_hook register_full_backward_pre_hook
register_load_state_dict_post_hook register_load_state_dict_pre_hook register_module
register_parameter register_state_dict_post_hook register_state_dict_pre_hook
requires_grad_ set_extra_state set_submodule share_memory state_dict to to_empty train
training type xpu zero_grad""".split())


def elaborate(network: S.Definition, blocks: dict[str, S.Definition],
              overrides: dict | None = None,
              recipes: dict[str, S.Definition] | None = None) -> tuple[Graph, ShapeTable]:
    return _Elaborator(blocks, recipes or {}).network(network, overrides or {})


_TRAIN = (S.TrainStatement, S.TrainCall)


class _Elaborator(Constructs):
    def __init__(self, blocks: dict[str, S.Definition],
                 recipes: dict[str, S.Definition] | None = None):
        self.blocks = blocks
        self.recipes = recipes or {}
        self.taken: dict[str, Span] = {}
        self.join_counts: dict[str, int] = {}
        self.steps = 0
        self.fractal: tuple[O.Fractal, Span] | None = None  # the network's first
        self.graph: Graph | None = None
        self.table: ShapeTable | None = None
        self.labelled: dict[str, int] = {}  # full label -> the node it ends with

    # ------------------------------------------------------------ network

    def network(self, net: S.Definition, overrides: dict) -> tuple[Graph, ShapeTable]:
        env = self._bind_network_params(net, overrides)
        top = [s for s in net.body if not isinstance(s, (S.OptionStatement, *_TRAIN))]
        options = self._options(net, env)
        self.graph = Graph(net.name, dict(env), options, span=net.name_span)
        built = build_recipe([s for s in net.body if isinstance(s, _TRAIN)], env,
                             self.recipes)
        if built is not None:
            self.graph.recipe, self.graph.recipe_sources = built.recipe, built.sources
        self.table = ShapeTable(self.graph)
        ctx = Context(env, Scope(""))
        first = next((s for s in top if not isinstance(s, (S.LetStatement,))), None)
        if not isinstance(first, S.InputStatement):
            where = first.span if first is not None else net.name_span
            raise error("E0214", f"network `{net.name}` must start with `input`", where,
                        label="the first layer needs an input shape before it",
                        help="add a line like `input 3x224x224` (C x H x W) at the top")
        cur = -1
        for statement in top:
            if isinstance(statement, S.InputStatement):
                if cur != -1:
                    raise error("E0216", "a network has one `input`", statement.span)
                cur = self._input(statement, ctx)
            else:
                cur = self.statement(statement, cur, ctx)
        self.graph.outputs.insert(0, Output("main", cur))
        self.table.complete()
        if built is not None:
            check_against_network(built, net.name,
                                  [node.name for node in self.graph.nodes[1:]],
                                  self.table[cur].shape)
        return self.graph, self.table

    def _bind_network_params(self, net: S.Definition, overrides: dict) -> dict:
        names = [p.name for p in net.params]
        for key in overrides:
            if key not in names:
                raise error("E0203", f"network `{net.name}` has no parameter `{key}`",
                            net.name_span, label="its parameters are "
                            + (", ".join(names) or "none"), help=did_you_mean(key, names))
        env: dict = {}
        for param in net.params:
            if param.name in overrides:
                env[param.name] = overrides[param.name]
            elif param.default is None:
                raise error("E0204", f"network parameter `{param.name}` has no value",
                            param.span, help=f"give it a default: `{param.name} = ...`")
            else:
                env[param.name] = Evaluator(env, _no_input(param.span))(param.default)
        return env

    def _options(self, net: S.Definition, env: dict) -> Options:
        values, spans = {}, {}
        for statement in net.body:
            if isinstance(statement, S.OptionStatement):
                if statement.name not in Options.model_fields:
                    raise error("E0215", f"unknown option `{statement.name}`",
                                statement.span, label="options are "
                                + ", ".join(Options.model_fields),
                                help=did_you_mean(statement.name, Options.model_fields))
                value = statement.value
                if isinstance(value, S.Variable) and value.name not in env:
                    values[statement.name] = value.name  # a bare word: `sizes = floor`
                else:
                    values[statement.name] = Evaluator(env, _no_input(statement.span))(value)
                spans[statement.name] = statement.span
        try:
            return Options(**values)
        except ValidationError as problem:
            raise invalid_value("option", problem, spans, net.span, Options) from None

    def _input(self, statement: S.InputStatement, ctx: Context) -> int:
        dims = self._dims(statement.dims, ctx, -1)
        if len(dims) not in (1, 3):
            raise error("E0206", "the input is C x H x W (or a flat vector)",
                        statement.span, label=f"found {len(dims)} dimensions")
        op = O.Input(shape=dims)
        self.taken["input"] = statement.span
        return self.add("input", op, (), statement.span, ctx)

    # ------------------------------------------------------------ statements

    def sequence(self, statements, cur: int, ctx: Context) -> int:
        for statement in statements:
            cur = self.statement(statement, cur, ctx)
        return cur

    def step(self, span: Span) -> None:
        """Count one unit of expansion work, so loops that add no layers still end."""
        self.steps += 1
        if self.steps > MAX_STEPS:
            raise error("E0209", f"the spec takes more than {MAX_STEPS:,} steps to expand",
                        span, label="still expanding here",
                        help="check repeat counts, fractal columns and recursive blocks")

    def statement(self, statement, cur: int, ctx: Context) -> int:
        self.step(statement.span)
        kind = type(statement)
        if kind is S.LayerStatement:
            return self.layer_statement(statement, cur, ctx)
        if kind is S.LetStatement:
            ctx.env[statement.name] = self.evaluator(ctx, cur)(statement.value)
            return cur
        if kind is S.AssertStatement:
            self._assert(statement, cur, ctx)
            return cur
        if kind is S.IfStatement:
            branch = statement.then if self._truth(statement.condition, cur, ctx) \
                else statement.otherwise or ()
            return self.sequence(branch, cur, ctx)
        word = {S.InputStatement: "input", S.OptionStatement: "option",
                S.TrainStatement: "train", S.TrainCall: "train:"}[kind]
        raise error("E0216", f"`{word}` belongs at the top level of a network",
                    statement.span, label="not allowed inside a block or a construct")

    def layer_statement(self, statement: S.LayerStatement, cur: int, ctx: Context) -> int:
        label = self._label(statement.label, cur, ctx) if statement.label else None
        items = statement.items
        if label is not None and (len(items) > 1 or items[0].count is not None):
            inner = self.child(ctx, label, statement.label.span)
            for item in items:
                cur = self.item(item, cur, inner, None, item.span)
        else:
            span = _head_span(statement)
            for item in items:
                cur = self.item(item, cur, ctx, label, span if len(items) == 1 else item.span)
        if label is not None:
            self.labelled[f"{ctx.scope.path}.{label}" if ctx.scope.path else label] = cur
        if statement.expected is not None:
            dims = self._dims(statement.expected, ctx, cur)
            self.graph.assertions.append(Assertion(cur, dims, statement.expected_span))
            self.table.check_assertions()
        return cur

    def item(self, item: S.Item, cur: int, ctx: Context, label, span: Span) -> int:
        if item.count is None:
            return self.unit(item.unit, cur, ctx, label, span)
        for _ in range(self._count(item.count, cur, ctx)):
            cur = self.unit(item.unit, cur, ctx, None, item.unit.span)
        return cur

    def unit(self, unit, cur: int, ctx: Context, label, span: Span) -> int:
        self.step(span)
        kind = type(unit)
        if kind is S.Call:
            return self.call(unit, cur, ctx, label, span)
        if kind is S.Group:
            inner = self.child(ctx, label, unit.span) if label is not None else ctx
            return self.sequence(unit.body, cur, inner)
        return getattr(self, "construct_" + kind.__name__.lower())(unit, cur, ctx, label)

    # ------------------------------------------------------------ calls

    def call(self, call: S.Call, cur: int, ctx: Context, label, span: Span) -> int:
        bound = ctx.env.get(call.name)
        if isinstance(bound, (LayerRef, TensorRef)):  # `act`, `skip`: a parameter
            return self._bound_call(call, bound, cur, ctx, label, span)
        block = self.blocks.get(call.name)
        if block is not None:
            return self.block_call(block, call, cur, ctx, label)
        kind = O.LAYER_SYNONYMS.get(call.name, call.name)
        model = O.LAYER_MODELS.get(kind)
        if model is None:
            if call.name in ctx.env:
                return self._bound_call(call, bound, cur, ctx, label, span)
            node = self._labelled(ctx, call.name)
            if node is not None:
                return self._bound_call(call, TensorRef(call.name, node), cur, ctx,
                                        label, span)
            known = set(O.LAYER_MODELS) | set(O.LAYER_SYNONYMS) | set(self.blocks)
            raise error("E0202", f"unknown layer or block `{call.name}`", call.name_span,
                        label="not a layer kind, a block defined or imported here, "
                        "nor the label of an earlier layer",
                        help=did_you_mean(call.name, known) or "an earlier layer's "
                        "output is used by its label (`enc1`), once that layer is "
                        "written above this line")
        refuse_ambiguous_star(call)
        evaluate = self.evaluator(ctx, cur)
        values = [(arg, _word(arg.value, ctx.env) or evaluate(arg.value))
                  for arg in call.args]
        op = build_op(kind, model, call, values)
        name = ctx.scope.place(label)
        self.claim(name, span)
        return self.add(name, op, (cur,), span, ctx)

    def _bound_call(self, call: S.Call, value, cur: int, ctx: Context, label,
                    span: Span) -> int:
        """A name whose value is a layer kind or block (called with the call's
        arguments) or an earlier layer's output (where the chain continues from)."""
        if isinstance(value, LayerRef):
            inner = replace(ctx, env={k: v for k, v in ctx.env.items() if k != call.name})
            return self.call(call._replace(name=value.name), cur, inner, label, span)
        if isinstance(value, TensorRef):
            if call.args:
                raise error("E0205", f"`{call.name}` is the output of an earlier layer",
                            call.args[0].span, label="it takes no arguments",
                            help="write the layers that follow it after a comma: "
                            f"`{call.name}, crop 56`")
            if label is not None:
                raise error("E0206", f"`{call.name}` adds no layer to name", span,
                            label="a reference to an earlier output is not a layer",
                            help=f"drop the label, or name the layer that follows "
                            f"`{call.name}`")
            return value.node
        raise error("E0202", f"`{call.name}` is a value, not a layer", call.name_span,
                    label=f"it is {value!r} here",
                    help="a parameter used as a layer must be given a layer kind, a "
                    "block or an earlier label: `act = relu`")

    def _labelled(self, ctx: Context, name: str) -> int | None:
        """The node an earlier label `name` ends with, looked up from the current
        scope outwards (`up4.skip`, then `skip`)."""
        path = ctx.scope.path.split(".") if ctx.scope.path else []
        for depth in range(len(path), -1, -1):
            full = ".".join(path[:depth] + [name])
            if full in self.labelled:
                return self.labelled[full]
        return None

    def _resolve(self, ctx: Context | None, name: str):
        """A bare name's meaning as a value: a layer kind, a block, an earlier label."""
        if O.LAYER_SYNONYMS.get(name, name) in O.LAYER_MODELS or name in self.blocks:
            return LayerRef(name)
        node = self._labelled(ctx, name) if ctx is not None else None
        return TensorRef(name, node) if node is not None else None

    def block_call(self, block: S.Definition, call: S.Call, cur: int, ctx: Context,
                   label) -> int:
        if len(ctx.blocks) >= MAX_BLOCK_DEPTH:
            chain = " -> ".join(name for _, name in ctx.blocks[-4:])
            raise error("E0208", f"blocks call each other more than {MAX_BLOCK_DEPTH} "
                        "deep", call.span, label=f"… {chain} -> {block.name}",
                        help="a block that calls itself needs a condition that stops it")
        env = self._bind_block_args(block, call, self.evaluator(ctx, cur), cur)
        path = ctx.scope.place(label)
        self.claim(path, call.span)
        positional = sum(1 for arg in call.args if arg.name is None)
        given = {p.name for p in block.params[:positional]} | \
            {arg.name for arg in call.args if arg.name is not None}
        self.graph.block_args[path] = BlockArgs(block.name, dict(env), frozenset(given))
        inner = Context(env, Scope(path), ctx.blocks + ((path, block.name),),
                         ctx.calls + (call.span,), ctx.training_only, ctx.frozen,
                         in_network=False)
        try:
            return self.sequence(block.body, cur, inner)
        except SpecError as problem:
            raise _noted(problem, f"block `{block.name}` instantiated as `{path}` at "
                         f"{call.span}") from None

    def _bind_block_args(self, block: S.Definition, call: S.Call, evaluate, cur) -> dict:
        names = [p.name for p in block.params]
        given: dict = {}
        positional = [a for a in call.args if a.name is None]
        if len(positional) > len(names):
            raise error("E0205", f"block `{block.name}` takes {len(names)} "
                        f"argument{'s' if len(names) != 1 else ''}",
                        positional[len(names)].span, label=f"{len(positional)} given",
                        notes=(f"`{block.name}` is defined at {block.span}",))
        for param, arg in zip(block.params, positional):
            given[param.name] = evaluate(arg.value)
        for arg in call.args:
            if arg.name is None:
                continue
            if arg.name not in names:
                raise error("E0203", f"block `{block.name}` has no parameter `{arg.name}`",
                            arg.span, label="its parameters are " + (", ".join(names)
                                                                    or "none"),
                            help=did_you_mean(arg.name, names))
            if arg.name in given:
                raise error("E0203", f"`{arg.name}` is given twice", arg.span)
            given[arg.name] = evaluate(arg.value)
        env: dict = {}
        for param in block.params:
            if param.name in given:
                env[param.name] = given[param.name]
            elif param.default is not None:
                env[param.name] = Evaluator(env, lambda: self.table[cur].shape,
                                            lambda n: self._resolve(None, n))(
                    param.default)
            else:
                raise error("E0204", f"block `{block.name}` needs `{param.name}`",
                            call.span, notes=(f"`{block.name}` is defined at {block.span}",))
        return env

    # ------------------------------------------------------------ graph building

    def add(self, name: str, op, inputs: tuple[int, ...], span: Span, ctx: Context) -> int:
        if len(self.graph.nodes) >= MAX_NODES:
            raise error("E0209", f"the network passes {MAX_NODES:,} layers", span,
                        label="cnnspec stops here rather than run out of memory",
                        help="check repeat counts, fractal columns and recursive blocks")
        node = self.graph.add(name=name, op=op, inputs=inputs, span=span,
                              blocks=ctx.blocks, calls=ctx.calls,
                              training_only=ctx.training_only, frozen=ctx.frozen)
        self.table.ensure(node.id)
        return node.id

    def join(self, op, inputs: tuple[int, ...], ctx: Context, span: Span) -> int:
        base = f"{ctx.scope.path}.{op.op}" if ctx.scope.path else op.op
        name, suffix = base, self.join_counts.get(base, 0)
        while name in self.taken:  # `add`, `add_1`, `add_2`, ... within one scope
            suffix += 1
            name = f"{base}_{suffix}"
        self.join_counts[base] = suffix
        self.taken[name] = span
        return self.add(name, op, inputs, span, ctx)

    def child(self, ctx: Context, label: str, span: Span) -> Context:
        path = ctx.scope.place(label)
        self.claim(path, span)
        return replace(ctx, scope=Scope(path))

    def claim(self, name: str, span: Span) -> None:
        earlier = self.taken.get(name)
        if earlier is not None:
            last = name.rsplit(".", 1)[-1]
            raise error("E0207", f"the name `{name}` is used twice", span,
                        label="layer names become state-dict keys and must be unique",
                        notes=(f"first used at {earlier}",),
                        help="an unlabelled layer takes the next position in its scope, "
                        "counting every entry before it, labelled or not; label the "
                        "later layers too" if last.isdigit() else "")
        self.taken[name] = span

    # ------------------------------------------------------------ values

    def evaluator(self, ctx: Context, cur: int) -> Evaluator:
        def resolve(name):
            return self._resolve(ctx, name)
        if cur < 0:  # before `input`
            return Evaluator(ctx.env, _no_input(self.graph.span), resolve)
        return Evaluator(ctx.env, lambda: self.table[cur].shape, resolve)

    def _assert(self, statement: S.AssertStatement, cur: int, ctx: Context) -> None:
        if self._truth(statement.condition, cur, ctx):
            return
        message = statement.message or "this condition does not hold"
        raise error("E0220", f"assertion failed: {message}", statement.span,
                    label="false here", help="the spec (or the block's caller) asked for "
                    "something this assertion rules out")

    def _truth(self, expr: S.Expr, cur: int, ctx: Context) -> bool:
        value = self.evaluator(ctx, cur)(expr)
        if not isinstance(value, bool):
            raise error("E0206", "a condition must be true or false", expr.span,
                        label=f"found {value!r}", help="compare it: `stride != 1`")
        return value

    def _count(self, expr: S.Expr, cur: int, ctx: Context) -> int:
        value = self.evaluator(ctx, cur)(expr)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise error("E0206", "a repeat count must be a whole number >= 0", expr.span,
                        label=f"found {value!r}")
        if value > MAX_REPEAT:
            raise error("E0209", f"repeat count {value:,} is over {MAX_REPEAT:,}",
                        expr.span, label="no real network repeats a block this often")
        return value

    def _label(self, label: S.Label, cur: int, ctx: Context) -> str:
        evaluate = self.evaluator(ctx, cur)
        pieces = [part if isinstance(part, str) else str(evaluate(part))
                  for part in label.parts]
        text = "".join(pieces)
        computed = (p for p, part in zip(pieces, label.parts) if not isinstance(part, str))
        if text in _MODULE_ATTRIBUTES:
            raise error("E0206", f"`{text}` cannot name a layer", label.span,
                        label="every torch module has a method or attribute by this name",
                        help=f"choose another name, such as `{text}_layer`")
        if not _NAME.match(text) or not all(_PIECE.match(p) for p in computed):
            raise error("E0206", f"`{text}` is not a valid layer name", label.span,
                        label="names use letters, digits and `_` (and `-` between parts)")
        return text

    def _dims(self, dims, ctx: Context, cur: int) -> tuple[int, ...]:
        evaluate = self.evaluator(ctx, cur)
        values = []
        for dim in dims:
            value = evaluate(dim)
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise error("E0206", "a shape dimension must be a whole number >= 1",
                            dim.span, label=f"found {value!r}")
            values.append(value)
        return tuple(values)


# ---------------------------------------------------------------- helpers


def _no_input(span: Span):
    def refuse():
        raise error("E0211", "`in` means the input of a layer", span,
                    label="there is no layer input here")
    return refuse


def _noted(problem: SpecError, note: str) -> SpecError:
    """An elaboration error inside a block, with the call that made the block (shape
    errors name their calls already; the expansion limits show their own chain)."""
    diagnostic = problem.diagnostics[0]
    if not diagnostic.code.startswith("E02") or diagnostic.code in ("E0208", "E0209"):
        return problem
    return SpecError(diagnostic._replace(notes=diagnostic.notes + (note,)))


def _word(value: S.Expr, env: dict) -> str | None:
    """A bare word such as `bilinear` given to a layer, unless a name shadows it."""
    if type(value) is S.Variable and value.name in O.WORDS and value.name not in env:
        return value.name
    return None


def _head_span(statement: S.LayerStatement) -> Span:
    """The statement without its `-> shape`: label through last item."""
    start = statement.label.span if statement.label else statement.items[0].span
    end = statement.items[-1].span
    return Span(start.source, start.line, start.column, end.end_line, end.end_column)
