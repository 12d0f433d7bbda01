"""Parse stage: `.cnn` text -> `syntax.Module`.

Takes: source text and a file name. Returns: a `syntax.Module` whose every node keeps
its span. Raises `SpecError` (codes E00xx, E01xx) for unreadable, oversized, too
deeply nested or syntactically wrong text. The grammar is `grammar/cnnspec.lark`
(LALR, basic lexer); the built parser is cached on disk between runs.
"""

from __future__ import annotations

import re

import os
import tempfile
from functools import lru_cache
from pathlib import Path

from . import syntax as S
from ..diagnostics import SourceFile, Span, error

MAX_SOURCE_BYTES = 200_000  # 50x the largest spec in specs/; bounds parse time
MAX_NESTING = 32
MAX_TERMS = 256

# How parse errors name what was expected, in words.
_TERMINAL_WORDS = {
    "NAME": "a name", "CALLNAME": "a call", "INT": "a whole number", "FLOAT": "a number",
    "STRING": "a quoted path", "_NL": "a new line", "_LBRACE_NAME": "`{`",
    "COMPARE": "a comparison", "ELSE": "`else`", "SHORTCUT": "`shortcut`",
    "$END": "the end of the file",
}


def grammar_path() -> Path:
    """The grammar file: inside the installed package, else the repository's copy."""
    package = Path(__file__).resolve().parent.parent
    packaged = package / "grammar" / "cnnspec.lark"
    if packaged.exists():
        return packaged
    return package.parent / "grammar" / "cnnspec.lark"


class _PostLexer:
    """Drops newlines inside parentheses and after a trailing comma, refuses absurd nesting depth, lets `x` be an
    ordinary name except between shape dimensions (`c x 56`), and lets a keyword
    name a layer (`block: {...}`)."""

    always_accept = ("_NL",)

    def process(self, stream):
        from lark import Token

        yield from self._checked(self._keywords_as_labels(stream, Token))

    @staticmethod
    def _keywords_as_labels(stream, Token):
        """A keyword right before `:` is a label: torchvision calls a module `block`
        (but `train:` applies a recipe; no layer may be called `train`). Right after
        `network`, `block` or `recipe`, it is the definition's name; `block{` starts a
        label template (RegNet's `block{s}-{i}`)."""
        held = before = None
        for token in stream:
            if held is not None:
                if held.type.isupper() and held.type not in _NOT_KEYWORDS and (
                        (token.type == "COLON" and held.type != "TRAIN")
                        or before in ("NETWORK", "BLOCK", "RECIPE")
                        or (held.type == "BLOCK" and token.type == "_LBRACE_NAME")):
                    yield from _as_label(held, Token)
                else:
                    yield held
                before = held.type
            held = token
        if held is not None:
            yield held

    def _checked(self, stream):
        from lark import Token

        depth = 0
        parens = 0
        signs = ifs = 0
        first = None
        previous = None
        for token in stream:
            kind = token.type
            if kind == "X" and previous not in ("INT", "NAME", "RPAR"):
                token = Token.new_borrow_pos("NAME", token, token)
                kind = "NAME"
            elif kind == "CALLNAME" and token == "x" and previous in ("INT", "NAME", "RPAR"):
                token = Token.new_borrow_pos("X", token, token)  # `3x(c*2)`
                kind = "X"
            # A run of signs (`- - - 1`) and a chain of `a if c else b if ...` nest
            # without brackets: bound them too. A flat `1 + 1 + 1` is no nesting.
            if kind in ("MINUS", "PLUS", "NOT"):
                signs += 1
                first = first if signs > 1 else token
            else:
                signs = 0
            if kind == "IF":
                ifs += 1
                first = first if ifs > 1 else token
            elif kind in ("_NL", "SEMICOLON", "LBRACE", "RBRACE"):
                ifs = 0
            if signs > MAX_NESTING or ifs > MAX_NESTING:
                raise _TooDeep(first, "operators")
            before, previous = previous, kind
            if kind in ("LPAR", "LBRACE", "_LBRACE_NAME"):
                depth += 1
                parens += kind == "LPAR"
                if depth > MAX_NESTING:
                    raise _TooDeep(token)
            elif kind in ("RPAR", "RBRACE"):
                depth -= 1
                parens -= kind == "RPAR"
            elif kind == "_NL" and (parens > 0 or before == "COMMA"):
                previous = before  # a line after a trailing comma continues the list
                continue
            yield token


_NOT_KEYWORDS = frozenset({"NAME", "CALLNAME"})


def _as_label(token, Token):
    """A keyword token as a NAME. `else`/`shortcut` tokens carry the blank lines
    before them (see the grammar); give those back as a newline first."""
    word = token.strip()
    if not word.isidentifier():
        yield token
        return
    if word == token:
        yield Token.new_borrow_pos("NAME", token, token)
        return
    if "\n" in token:
        yield Token.new_borrow_pos("_NL", "\n", token)
    lines = token[:token.rindex(word)].split("\n")
    line = token.line + len(lines) - 1
    column = (token.column if len(lines) == 1 else 1) + len(lines[-1])
    yield Token("NAME", word, token.start_pos + token.rindex(word), line, column,
                line, column + len(word), token.start_pos + len(token))


class _TooDeep(Exception):
    def __init__(self, token, what="brackets"):
        self.token = token
        self.what = what


@lru_cache(maxsize=1)
def _parser():
    from lark import Lark

    cache_dir = Path(os.environ.get("XDG_CACHE_HOME", tempfile.gettempdir())) / "cnnspec"
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        cache = str(cache_dir / "parser.cache")
    except OSError:
        cache = False
    return Lark(grammar_path().read_text(), parser="lalr", lexer="basic",
                propagate_positions=True, postlex=_PostLexer(), cache=cache,
                maybe_placeholders=False)


def parse(text: str, file: str = "<string>") -> S.Module:
    """Parse one spec file's text into a syntax tree."""
    source = SourceFile(file, text)
    if len(text) > MAX_SOURCE_BYTES:
        what = "the spec" if file == "<string>" else file
        raise error("E0001", f"{what} is {len(text):,} characters long", None,
                    label=f"cnnspec reads at most {MAX_SOURCE_BYTES:,} characters per file",
                    help="split block definitions into files and `import` them")
    from lark.exceptions import UnexpectedInput, VisitError

    try:
        tree = _parser().parse(text)
    except _TooDeep as deep:
        span = _token_span(source, deep.token)
        if deep.what == "brackets":
            raise error("E0002", f"brackets nest deeper than {MAX_NESTING} levels", span,
                        label="this bracket is one too deep",
                        help="write the inner part as a block or a `let`") from None
        raise error("E0002", f"more than {MAX_NESTING} operators or `if`s nest in one "
                    "statement", span, label="the run of operators starts here",
                    help="split the expression with `let`") from None
    except UnexpectedInput as bad:
        raise _syntax_error(source, bad) from None
    try:
        return _ToSyntax(source).transform(tree)
    except VisitError as wrapped:  # a transformer method raised: re-raise the original
        raise wrapped.orig_exc from None


# ---------------------------------------------------------------- syntax errors


def _syntax_error(source: SourceFile, bad):
    from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedToken

    line = getattr(bad, "line", None) or source.line_count
    column = getattr(bad, "column", None) or 1
    if isinstance(bad, UnexpectedEOF) or (isinstance(bad, UnexpectedToken)
                                         and bad.token.type == "$END"):
        line = source.line_count
        while line > 1 and not source.line(line).strip():
            line -= 1
        column = len(source.line(line)) + 1
        span = Span(source, line, column, line, column + 1)
        expected = _expected_words(getattr(bad, "expected", None) or bad.accepts)
        return error("E0103", "the file ends in the middle of a statement", span,
                     label=f"expected {expected}",
                     help="look for an unclosed `{` or `(` above")
    if isinstance(bad, UnexpectedCharacters):
        char = source.text[bad.pos_in_stream] if bad.pos_in_stream < len(source.text) else ""
        span = Span(source, line, column, line, column + 1)
        shown = char if char.isprintable() else repr(char)
        return error("E0102", f"unexpected character `{shown}`", span,
                     label="no word of the .cnn language starts with it",
                     help="comments start with `#`; names use letters, digits and `_`")
    assert isinstance(bad, UnexpectedToken)
    token = bad.token
    span = _token_span(source, token)
    found = "end of line" if token.type == "_NL" else f"`{str(token).strip()}`"
    expected = _expected_words(bad.accepts or bad.expected)
    return error("E0101", f"unexpected {found}", span, label=f"expected {expected}",
                 help=_syntax_help(source, token, bad.accepts or bad.expected))


def _syntax_help(source: SourceFile, token, expected) -> str:
    text = str(token).strip()
    before = source.text[token.start_pos - 1] if token.start_pos else ""
    line = source.text[source.text.rfind("\n", 0, token.start_pos) + 1:token.start_pos]
    if re.match(r"\s*train\s*:", line):
        return ("`train:` applies a recipe: `train: name(arguments)`; no layer may be "
                "called `train`")
    if text == "=" and "COLON" in expected:
        return "a layer is named with a colon: `conv1: conv 64 k=3`"
    if token.type == "STAR" and before == "*":
        return "there is no power operator; write the product out or use a `let`"
    if text.startswith("x") and (before == ")" or token.type == "X"):
        return ("with a name or an expression in a shape, put spaces around `x`: "
                "`-> (c*2) x 32 x 32`")
    if token.type == "STAR" or text == "x":
        return "shapes are written with `x`, like `-> 64x56x56`; repeats with `* n`"
    if token.type == "COLON":
        return "only layers take a name (`name: layer`); is a newline missing before it?"
    if token.type in ("MINUS", "PLUS", "SLASH", "DSLASH"):
        line = source.text[source.text.rfind("\n", 0, token.start_pos) + 1:token.start_pos]
        count = re.search(r"\*\s*([A-Za-z_]\w*|\d+)\s*$", line)
        if count:
            return (f"a repeat count that is an expression needs parentheses: "
                    f"`* ({count.group(1)} {text} ...)`")
    return ""


# Families of tokens named as one thing in "expected ..." lists.
_FAMILIES = (
    ("a layer or statement", {"RESIDUAL", "CONCAT", "ADD", "MEAN", "MULTIPLY", "SPLIT", "DENSE", "INT", "ASSERT",
                              "GATE", "AUX", "REPEAT", "INPUT", "OPTION", "LET", "IF",
                              "TRAIN", "LBRACE", "NAME", "CALLNAME"}),
    ("a value", {"INT", "FLOAT", "STRING", "NAME", "CALLNAME", "LPAR", "MINUS", "PLUS",
                 "NOT", "IN", "TRUE", "FALSE", "SAME", "GLOBAL", "NONE", "DIMS"}),
    ("an operator", {"STAR", "SLASH", "DSLASH", "PERCENT", "PLUS", "MINUS", "COMPARE",
                     "AND", "OR", "IF"}),
)


def _expected_words(names) -> str:
    names = {"LBRACE" if n == "_LBRACE_NAME" else n for n in names}
    words = []
    for word, family in _FAMILIES:
        if len(names & family) >= 3:
            words.append(word)
            names -= family
    for name in sorted(names):
        word = _TERMINAL_WORDS.get(name) or _literal_of(name)
        if word and word not in words:
            words.append(word)
    if not words:
        return "something else"
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]


def _literal_of(terminal: str) -> str:
    for term in _parser().terminals:
        if term.name == terminal:
            if term.pattern.type == "str":
                return f"`{term.pattern.value}`"
            return terminal.lower().strip("_")
    return terminal.lower()


def _token_span(source: SourceFile, token) -> Span:
    line = token.line or 1
    column = token.column or 1
    text = str(token)
    # ELSE/SHORTCUT tokens swallow the newlines before their keyword.
    if token.type in ("ELSE", "SHORTCUT") and "\n" in text:
        line += text.count("\n")
        column = len(text) - len(text.rstrip().split()[-1]) - text.rfind("\n")
    end_line = token.end_line or line
    end_column = token.end_column or column + 1
    if end_line != line:
        end_line, end_column = line, column + max(len(text.strip()), 1)
    return Span(source, line, column, end_line, end_column)


# ---------------------------------------------------------------- tree -> syntax


def _span(source: SourceFile, meta) -> Span:
    return Span(source, meta.line, meta.column, meta.end_line, meta.end_column)


class _ToSyntax:
    """Turns the Lark tree into `syntax` named tuples, bottom-up."""

    def __init__(self, source: SourceFile):
        from lark import Transformer, v_args

        self.source = source
        owner = self

        @v_args(meta=True)
        class Builder(Transformer):
            def __default__(self, data, children, meta):
                return getattr(owner, "rule_" + data)(children, meta)

            def __default_token__(self, token):
                return token

        self._builder = Builder()

    def transform(self, tree) -> S.Module:
        return self._builder.transform(tree)

    def span(self, meta) -> Span:
        return _span(self.source, meta)

    def tspan(self, token) -> Span:
        return _token_span(self.source, token)

    # -- top level
    def rule_start(self, children, meta):
        imports = tuple(c for c in children if isinstance(c, S.Import))
        defs = [c for c in children if isinstance(c, S.Definition)]
        return S.Module(self.source.name, imports,
                        tuple(d for d in defs if d.kind == "block"),
                        tuple(d for d in defs if d.kind == "network"),
                        tuple(d for d in defs if d.kind == "recipe"))

    def rule_import_stmt(self, children, meta):
        return S.Import(str(children[0])[1:-1], self.span(meta))

    def _definition(self, kind, children, meta):
        name, rest = children[0], children[1:]
        params = rest[0] if len(rest) == 2 else ()
        body = rest[-1]
        return S.Definition(kind, str(name), tuple(params), body.body, self.span(meta),
                            self.tspan(name))

    def rule_block_def(self, children, meta):
        return self._definition("block", children, meta)

    def rule_network_def(self, children, meta):
        return self._definition("network", children, meta)

    def rule_recipe_def(self, children, meta):
        return self._definition("recipe", children, meta)

    def rule_recipe_body(self, children, meta):
        return S.Group(tuple(children), self.span(meta))

    def rule_params(self, children, meta):
        return list(children)

    def rule_param(self, children, meta):
        default = children[1] if len(children) > 1 else None
        return S.Parameter(str(children[0]), default, self.span(meta))

    def rule_body(self, children, meta):
        return S.Group(tuple(children), self.span(meta))

    # -- statements
    def rule_input_stmt(self, children, meta):
        return S.InputStatement(children[0], self.span(meta))

    def rule_option_stmt(self, children, meta):
        return S.OptionStatement(str(children[0]), children[1], self.span(meta))

    def rule_let_stmt(self, children, meta):
        return S.LetStatement(str(children[0]), children[1], self.span(meta))

    def rule_assert_stmt(self, children, meta):
        message = str(children[1])[1:-1] if len(children) > 1 else None
        return S.AssertStatement(children[0], message, self.span(meta))

    def rule_if_stmt(self, children, meta):
        condition, then = children[0], children[1].body
        otherwise = None
        if len(children) > 2:
            branch = children[3]
            otherwise = (branch,) if isinstance(branch, S.IfStatement) else branch.body
        return S.IfStatement(condition, then, otherwise, self.span(meta))

    def rule_train_stmt(self, children, meta):
        return S.TrainStatement(tuple(children), self.span(meta))

    def rule_train_entry(self, children, meta):
        return S.TrainEntry(str(children[0]), tuple(children[1:]), self.span(meta))

    def rule_train_value(self, children, meta):
        return S.TrainValue(self._arguments(children), self.span(meta))

    def rule_pattern_kwarg(self, children, meta):
        return S.Argument(str(children[0])[1:-1], children[1], self.span(meta))

    def rule_train_call(self, children, meta):
        name = children[0]
        return S.TrainCall(str(name), self._arguments(children[1:]), self.span(meta),
                           self.tspan(name))

    def rule_layer_stmt(self, children, meta):
        label = children[0] if isinstance(children[0], S.Label) else None
        items = tuple(c for c in children if isinstance(c, S.Item))
        expected = expected_span = None
        if isinstance(children[-1], list):
            expected, expected_span = children[-1]
        return S.LayerStatement(label, items, expected, expected_span, self.span(meta))

    def rule_label(self, children, meta):
        parts = tuple(str(c) if _is_token(c) else c for c in children)
        return S.Label(parts, self.span(meta))

    def rule_item(self, children, meta):
        count = children[2] if len(children) == 3 else None
        return S.Item(children[0], count, self.span(meta))

    def rule_shape_assert(self, children, meta):
        return [children[0], self.span(meta)]

    def rule_dims(self, children, meta):
        if len(children) == 1 and _is_token(children[0]) and children[0].type == "DIMS":
            token = children[0]
            return tuple(S.Number(int(part), self.tspan(token))
                         for part in str(token).split("x"))
        return tuple(self._dim(c) for c in children)

    def _dim(self, child):
        if not _is_token(child):
            return child
        if child.type == "INT":
            return S.Number(int(child), self.tspan(child))
        return S.Variable(str(child), self.tspan(child))

    # -- units
    def rule_call(self, children, meta):
        name = children[0]
        return S.Call(str(name), self._arguments(children[1:]), self.span(meta),
                      self.tspan(name), name.type == "CALLNAME")

    def _arguments(self, children) -> tuple[S.Argument, ...]:
        return tuple(c if isinstance(c, S.Argument) else S.Argument(None, c, c.span)
                     for c in children)

    def rule_kwarg(self, children, meta):
        return S.Argument(str(children[0]), children[1], self.span(meta))

    def rule_group(self, children, meta):
        return children[0]

    def rule_residual(self, children, meta):
        condition = None if isinstance(children[0], S.Group) else children[0]
        rest = children[1:] if condition is not None else children
        body = rest[0].body
        shortcut = rest[1] if len(rest) > 1 else None
        return S.Residual(condition, body, shortcut, self.span(meta))

    def rule_shortcut(self, children, meta):
        name = condition = None
        auto = False
        for child in children[1:-1]:
            if not _is_token(child):
                condition = child
            elif child.type == "AUTO":
                auto = True
            else:
                name = str(child)
        return S.Shortcut(name, auto, children[-1].body, self.span(meta), condition)

    def rule_join(self, children, meta):
        kind = str(children[0])
        return S.Join(kind, self._arguments(children[1:-1]), children[-1].body,
                      self.span(meta))

    def rule_dense(self, children, meta):
        return S.Dense(children[0].body, self.span(meta))

    def rule_gate(self, children, meta):
        return S.Gate(children[0].body, self.span(meta))

    def rule_aux(self, children, meta):
        return S.Aux(self._arguments(children[:-1]), children[-1].body, self.span(meta))

    def rule_frozen(self, children, meta):
        return S.Frozen(children[0].body, self.span(meta))

    def rule_fractal(self, children, meta):
        return S.Fractal(self._arguments(children[:-1]), children[-1].body, self.span(meta))

    def rule_repeat(self, children, meta):
        variable = str(children[1]) if len(children) == 3 else None
        return S.Repeat(children[0], variable, children[-1].body, self.span(meta))

    # -- expressions
    def rule_int(self, children, meta):
        token = children[0]
        try:
            value = int(token)
        except ValueError:  # beyond Python's digit limit for int()
            raise error("E0104", "this number has too many digits", self.tspan(token),
                        label=f"{len(token):,} digits") from None
        return S.Number(value, self.tspan(token))

    def rule_float(self, children, meta):
        value = float(children[0])
        if value != value or value in (float("inf"), float("-inf")):
            raise error("E0104", "this number is too large", self.tspan(children[0]),
                        label="it does not fit a 64-bit float")
        return S.Number(value, self.tspan(children[0]))

    def rule_string(self, children, meta):
        return S.String(str(children[0])[1:-1], self.span(meta))

    def rule_var(self, children, meta):
        return S.Variable(str(children[0]), self.span(meta))

    def rule_const(self, children, meta):
        return S.Constant(str(children[0]), self.span(meta))

    def rule_input_attr(self, children, meta):
        return S.InputAttribute(str(children[0]), self.span(meta))

    def rule_func(self, children, meta):
        return S.FunctionCall(str(children[0]), tuple(children[1:]), self.span(meta))

    def rule_tuple(self, children, meta):
        return S.TupleExpr(tuple(children), self.span(meta))

    def rule_neg(self, children, meta):
        return S.Unary("-", children[1], self.span(meta))

    def rule_pos(self, children, meta):
        return S.Unary("+", children[1], self.span(meta))

    def rule_not_(self, children, meta):
        return S.Unary("not", children[0], self.span(meta))

    def rule_ternary(self, children, meta):
        then, condition, _else, otherwise = children
        return S.Conditional(condition, then, otherwise, self.span(meta))

    def _binary_chain(self, children, meta, operator=None):
        if len(children) > 2 * MAX_TERMS:  # the chain becomes a left-deep tree
            raise error("E0002", f"an expression with more than {MAX_TERMS} terms",
                        self.span(meta), label=f"{len(children) // 2 + 1:,} terms",
                        help="split it with `let`")
        result = children[0]
        index = 1
        while index < len(children):
            if operator is None:
                op, right = str(children[index]), children[index + 1]
                index += 2
            else:
                op, right = operator, children[index]
                index += 1
            span = Span(self.source, result.span.line, result.span.column,
                        right.span.end_line, right.span.end_column)
            result = S.Binary(op, result, right, span)
        return result

    def rule_or_expr(self, children, meta):
        return self._binary_chain(children, meta, "or")

    def rule_and_expr(self, children, meta):
        return self._binary_chain(children, meta, "and")

    def rule_comparison(self, children, meta):
        return self._binary_chain(children, meta)

    def rule_sum(self, children, meta):
        return self._binary_chain(children, meta)

    def rule_product(self, children, meta):
        return self._binary_chain(children, meta)


def _is_token(value) -> bool:
    from lark import Token

    return isinstance(value, Token)
