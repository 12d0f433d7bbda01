"""The structural constructs of the language, for `elaborate`.

Takes: a construct's syntax (`residual`, the joins `concat`/`add`/`mean`/
`multiply`/`split`, `dense`, `gate`, `aux`, `frozen`, `fractal`, `repeat`), the
current node and the naming context. Returns: the node the construct ends with,
after adding its layers and its join to the graph. Mixed into `elaborate`'s
elaborator, whose graph building, naming and evaluation it uses.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from itertools import repeat

from .. import ops as O
from . import syntax as S
from .arguments import build_op
from ..diagnostics import error
from ..ir import Output
from ..ops import GLOBAL_DROP_PATH
from .scope import Context

# Statements inside a join that make no branch.
_NOT_BRANCHES = (S.LetStatement, S.AssertStatement)
_JOINS = {"concat": O.Concat, "add": O.Add, "mean": O.Mean, "multiply": O.Multiply,
          "split": O.Concat}


class Constructs:
    """`construct_<kind>` for each construct (see the module docstring)."""


    def construct_residual(self, unit: S.Residual, cur, ctx, label) -> int:
        _need_body("residual", unit)
        inner = self.child(ctx, label, unit.span) if label is not None else ctx
        body = self.sequence(unit.body, cur, inner)
        if unit.condition is not None and not self._truth(unit.condition, cur, ctx):
            return body
        shortcut = cur
        spec = unit.shortcut
        # A shortcut that may not be built (`auto`, `if`) is a scope of its own
        # (`shortcut` unless named), built or not: the positions of the layers after
        # it must not depend on shapes or conditions.
        optional = spec is not None and (spec.auto or spec.condition is not None)
        name = spec.name or ("shortcut" if optional else None) if spec else None
        if spec is None:
            build = False
        elif spec.condition is not None:
            build = self._truth(spec.condition, cur, ctx)
        else:
            build = not spec.auto or self.table[body].shape != self.table[cur].shape
        if build:
            target = self.child(inner, name, spec.span) if name else inner
            shortcut = self.sequence(spec.body, cur, target)
        elif spec is not None and name:
            inner.scope.next_position += 1
        return self.join(O.Add(), (body, shortcut), inner, unit.span)

    def construct_join(self, unit: S.Join, cur, ctx, label) -> int:
        inner = self.child(ctx, label, unit.span) if label is not None else ctx
        evaluate = self.evaluator(ctx, cur)
        values = [(arg, evaluate(arg.value)) for arg in unit.args]
        call = S.Call(unit.kind, unit.args, unit.span, unit.span)
        op = build_op(unit.kind, _JOINS[unit.kind], call, values)
        if unit.kind == "split":
            outputs = self._split_branches(unit, cur, inner)
        else:  # every branch reads the join's input
            outputs = self._build_branches(unit.body, repeat(cur), cur, inner)
        if not outputs:
            raise error("E0217", f"`{unit.kind}` has no branches", unit.span,
                        label="a join needs at least one branch",
                        help="write one branch per line inside the braces")
        return self.join(op, tuple(outputs), inner, unit.span)

    def _split_branches(self, unit: S.Join, cur: int, ctx: Context) -> list[int]:
        """`split { a; b }`: the input's channels cut into equal consecutive parts,
        one per branch, each branch reading its own part (ShuffleNetV2's channel
        split, Ma et al. 2018); the branch outputs are concatenated."""
        # Count first, running the body's `let`s in a copy of the environment: the
        # branches are built below from the same bindings.
        counting = replace(ctx, env=dict(ctx.env))
        count = sum(self._count(s.items[0].count, cur, counting) if _repeated(s) else 1
                    for s in self._branch_statements(unit.body, cur, counting))
        channels = self.table[cur].shape[0]
        if count == 0:
            return []
        if channels % count:
            raise error("E0310", f"{count} branches cannot split {channels} channels "
                        "evenly", unit.span,
                        label=f"{channels} / {count} = {channels / count:g}",
                        help="each branch of `split` reads an equal share of the input's "
                        "channels; change the channels before the split or the branches")
        size = channels // count
        parts = iter([self.join(O.Narrow(start=i * size, length=size), (cur,), ctx,
                                unit.span) for i in range(count)])
        return self._build_branches(unit.body, parts, cur, ctx)

    def _branch_statements(self, statements, cur: int, ctx: Context):
        """The statements of a join's body that make branches, in order, as they are
        reached: the `let`s and `assert`s run on the way, and an `if` gives the
        statements of its chosen side. Lazy: what follows a branch runs only after the
        consumer has built that branch, as the statements are written."""
        for statement in statements:
            if isinstance(statement, _NOT_BRANCHES):
                self.statement(statement, cur, ctx)
            elif isinstance(statement, S.IfStatement):
                chosen = statement.then if self._truth(statement.condition, cur, ctx) \
                    else statement.otherwise or ()
                yield from self._branch_statements(chosen, cur, ctx)
            else:
                yield statement

    def _build_branches(self, statements, inputs: Iterator[int], cur: int,
                        ctx: Context) -> list[int]:
        """The outputs of a join's branches, each reading the next node of `inputs`:
        a statement is one branch; `x * n` (one layer repeated) is n branches."""
        outputs = []
        for statement in self._branch_statements(statements, cur, ctx):
            if not _repeated(statement):
                outputs.append(self.statement(statement, next(inputs), ctx))
                continue
            item, inner = statement.items[0], ctx
            if statement.label is not None:
                inner = self.child(ctx, self._label(statement.label, cur, ctx),
                                   statement.label.span)
            outputs.extend(self.unit(item.unit, next(inputs), inner, None, item.unit.span)
                           for _ in range(self._count(item.count, cur, ctx)))
        return outputs

    def construct_dense(self, unit: S.Dense, cur, ctx, label) -> int:
        _need_body("dense", unit)
        inner = self.child(ctx, label, unit.span) if label is not None else ctx
        new = self.sequence(unit.body, cur, inner)
        return self.join(O.Concat(), (cur, new), inner, unit.span)

    def construct_gate(self, unit: S.Gate, cur, ctx, label) -> int:
        _need_body("gate", unit)
        inner = self.child(ctx, label, unit.span) if label is not None else ctx
        gate = self.sequence(unit.body, cur, inner)
        return self.join(O.Multiply(), (cur, gate), inner, unit.span)

    def construct_aux(self, unit: S.Aux, cur, ctx, label) -> int:
        _need_body("aux", unit)
        evaluate = self.evaluator(ctx, cur)
        weight = 1.0
        for arg in unit.args:
            if arg.name != "weight":
                raise error("E0203", "`aux` takes only `weight=`", arg.span,
                            help="the loss weight of this head, e.g. `aux weight=0.3`")
            weight = evaluate(arg.value)
            if isinstance(weight, bool) or not isinstance(weight, (int, float)) \
                    or weight < 0:
                raise error("E0206", "`weight` must be a number >= 0", arg.span)
        if label is not None:
            inner = replace(self.child(ctx, label, unit.span), training_only=True)
            name = inner.scope.path
        else:  # transparent: `aux { aux1: head() }` names the head `aux1`
            inner = replace(ctx, training_only=True)
            last = unit.body[-1] if unit.body else None
            name = None
            if isinstance(last, S.LayerStatement) and last.label is not None:
                name = self._label(last.label, cur, ctx)
            name = name or f"aux{len(self.graph.outputs) + 1}"
        out = self.sequence(unit.body, cur, inner)
        self.graph.outputs.append(Output(name, out, float(weight)))
        return cur

    def construct_frozen(self, unit: S.Frozen, cur, ctx, label) -> int:
        _need_body("frozen", unit)
        inner = self.child(ctx, label, unit.span) if label is not None else ctx
        return self.sequence(unit.body, cur, replace(inner, frozen=True))

    def construct_fractal(self, unit: S.Fractal, cur, ctx, label) -> int:
        """FractalNet's block as in the paper's figure 1 (Larsson et al. 2017): column
        j (1 = shallowest) chains 2^(j-1) copies of the body, and wherever columns
        end at the same depth one mean joins them and feeds all of them on. This is
        the expansion rule f_{C+1}(z) = mean(f_C(f_C(z)), unit(z)) with the joins
        that meet at one depth merged, as the paper's figure and code do."""
        _need_body("fractal", unit)
        settings = self._fractal_settings(unit, cur, ctx)
        inner = self.child(ctx, label, unit.span) if label is not None else ctx
        count = settings.columns
        columns = [self.child(inner, f"column{j}", unit.span) for j in range(1, count + 1)]
        sources = [cur] * count  # what each column's next unit reads
        for depth in range(1, 2 ** (count - 1) + 1):
            self.step(unit.span)
            ending = [j for j in range(count) if depth % 2 ** (count - 1 - j) == 0]
            outputs = [self.sequence(unit.body, sources[j], columns[j]) for j in ending]
            if len(ending) == 1:
                sources[ending[0]] = outputs[0]
                continue
            op = O.Mean(drop_path=settings.drop_path, columns=tuple(j + 1 for j in ending),
                        global_drop_path=settings.global_drop_path)
            joined = self.join(op, tuple(outputs), inner, unit.span)
            for j in ending:
                sources[j] = joined
        return sources[-1]

    def _fractal_settings(self, unit: S.Fractal, cur, ctx) -> O.Fractal:
        """The construct's arguments; all fractals of a network share one global
        drop-path sampler, so they must agree on its columns and probability."""
        evaluate = self.evaluator(ctx, cur)
        values = [(arg, evaluate(arg.value)) for arg in unit.args]
        call = S.Call("fractal", unit.args, unit.span, unit.span)
        settings = build_op("fractal", O.Fractal, call, values)
        if self.fractal is None:
            self.claim(GLOBAL_DROP_PATH, unit.span)
            self.fractal = (settings, unit.span)
            return settings
        first, where = self.fractal
        for field in ("columns", "global_drop_path"):
            if getattr(settings, field) != getattr(first, field):
                raise error("E0219", f"this fractal's `{field}` differs from the "
                            "first fractal's", unit.span,
                            label=f"{field}={getattr(settings, field):g} here, "
                            f"{getattr(first, field):g} in the first",
                            help="global drop-path keeps one column in every fractal "
                            "of the network at once: give them all the same "
                            "`columns` and `global_drop_path`",
                            notes=(f"the first fractal is at {where}",))
        return settings

    def construct_repeat(self, unit: S.Repeat, cur, ctx, label) -> int:
        inner = self.child(ctx, label, unit.span) if label is not None else ctx
        count = self._count(unit.count, cur, ctx)
        inner = replace(inner, env=dict(inner.env))
        for index in range(count):
            self.step(unit.span)
            if unit.variable is not None:
                inner.env[unit.variable] = index
            cur = self.sequence(unit.body, cur, inner)
        return cur


def _repeated(statement) -> bool:
    """`x * n` inside a join: one layer repeated, n branches. (With a shape check,
    `x * n -> (c, h, w)`, it is one branch: the n copies in a row.)"""
    return (isinstance(statement, S.LayerStatement) and len(statement.items) == 1
            and statement.items[0].count is not None and statement.expected is None)


def _need_body(kind: str, unit) -> None:
    if not any(isinstance(s, (S.LayerStatement, S.IfStatement)) for s in unit.body):
        raise error("E0217", f"`{kind}` has no layers", unit.span,
                    label="an empty body makes this construct act on its input alone",
                    help="put the layers of the branch inside the braces")
