"""Pygments lexer for `.cnn` specs.

Takes: `.cnn` source text. Returns: a Pygments token stream (`CnnLexer`), found by
`pygmentize -l cnn`, Sphinx, MkDocs and Jupyter through the `pygments.lexers` entry
point in pyproject.toml.

The word lists below copy the grammar (grammar/cnnspec.lark), the op registry
(cnnspec/ops.py) and the expression functions (cnnspec/frontend/expressions.py) instead of
importing them, so that highlighting needs neither Lark nor Pydantic;
tests/test_highlighting.py fails when they drift apart.

The lexer follows the grammar's statement shape: a statement starts with an
optional label, then an item head (a layer kind, a block call or a construct
keyword), then its arguments up to a newline, `;`, `,` or a closing brace. A word
is a layer kind only as an item head, so in `dropout dropout` the second word is
the block parameter it is.
"""

from __future__ import annotations

from pygments.lexer import RegexLexer, bygroups, default, include, words
from pygments.token import (Comment, Keyword, Name, Number, Operator, Punctuation,
                            String, Text, Whitespace)

__all__ = ["CnnLexer", "KEYWORDS", "LAYER_KINDS", "FUNCTIONS"]

# Reserved words of grammar/cnnspec.lark, grouped by the token type they get.
NAMESPACE_KEYWORDS = ("import",)
DECLARATION_KEYWORDS = ("block", "network", "recipe", "let")
CONSTANT_KEYWORDS = ("true", "false", "none", "same", "global", "auto")
STATEMENT_KEYWORDS = ("input", "option", "train", "if", "else", "assert", "repeat",
                      "as", "residual", "shortcut", "dense", "gate", "aux", "frozen",
                      "fractal", "concat", "add", "mean", "multiply", "split")
OPERATOR_KEYWORDS = ("and", "or", "not", "in")
# `x` separates shape dimensions (`-> c x 56`) and is an ordinary name elsewhere.
SHAPE_SEPARATOR = "x"
KEYWORDS = frozenset(NAMESPACE_KEYWORDS + DECLARATION_KEYWORDS + CONSTANT_KEYWORDS
                     + STATEMENT_KEYWORDS + OPERATOR_KEYWORDS + (SHAPE_SEPARATOR,))

# ops.LAYER_MODELS and ops.LAYER_SYNONYMS: every layer kind a spec may call.
LAYER_KINDS = frozenset((
    "conv", "dwconv", "conv_transpose", "deconv",
    "maxpool", "avgpool", "adaptive_avgpool", "adaptive_maxpool",
    "linear", "flatten", "pad_channels", "shuffle", "narrow", "upsample", "crop",
    "batchnorm", "layernorm", "layer_scale", "affine", "lrn", "dropout", "drop_path",
    "relu", "relu6", "tanh", "sigmoid", "silu", "swish", "gelu", "hardswish",
    "hardsigmoid", "mish", "softplus", "identity", "leaky_relu", "elu", "softmax",
))

# evaluate.FUNCTIONS: the functions an expression may call.
FUNCTIONS = frozenset(("min", "max", "abs", "ceil", "floor", "round", "int", "float",
                       "sqrt", "log", "exp", "pow", "make_divisible"))

_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
# A label: a name or a whole number, maybe with `{expr}` template parts and `-`
# joins (`block{s + 1}-{i}`), right before its `:`.
_LABEL_AHEAD = r"(?=(?:\{[^{}\n]*\}|[A-Za-z0-9_-])*[ \t]*:)"
# Words of the `words()` helper must not run into a longer name: `conv1`, `relu_out`.
_WORD_END = r"(?![A-Za-z0-9_])"


def _keyword_tokens():
    """(regex, token) rules giving each group of reserved words its token type."""
    return [
        (words(NAMESPACE_KEYWORDS, suffix=_WORD_END), Keyword.Namespace),
        (words(DECLARATION_KEYWORDS, suffix=_WORD_END), Keyword.Declaration),
        (words(CONSTANT_KEYWORDS, suffix=_WORD_END), Keyword.Constant),
        (words(STATEMENT_KEYWORDS + OPERATOR_KEYWORDS, suffix=_WORD_END), Keyword),
    ]


class CnnLexer(RegexLexer):
    """Lexer for cnnspec `.cnn` network specifications."""

    name = "cnnspec"
    aliases = ["cnn", "cnnspec"]
    filenames = ["*.cnn"]
    mimetypes = ["text/x-cnnspec"]

    tokens = {
        # The start of a statement: in a file, or inside any `{ }` body.
        "root": [
            (r"[ \t\f\r\n]+", Whitespace),
            include("comment"),
            (r"\\\r?\n", Text),
            (r";", Punctuation),
            (r"\{", Punctuation, "root"),
            (r"\}", Punctuation, "#pop"),
            # `train: tv(lr = 0.1)` applies a recipe (no layer is called `train`).
            (r"(train)([ \t]*)(:)", bygroups(Keyword, Whitespace, Punctuation), "arguments"),
            (r"(" + _NAME + r"|\d+)" + _LABEL_AHEAD, Name.Label, "label"),
            (r"(block)([ \t]+)(" + _NAME + r")",
             bygroups(Keyword.Declaration, Whitespace, Name.Function), "definition"),
            (r"(network)([ \t]+)(" + _NAME + r")",
             bygroups(Keyword.Declaration, Whitespace, Name.Class), "definition"),
            (r"(recipe)([ \t]+)(" + _NAME + r")",
             bygroups(Keyword.Declaration, Whitespace, Name.Function), "recipe-definition"),
            (r"(let)([ \t]+)(" + _NAME + r")",
             bygroups(Keyword.Declaration, Whitespace, Name.Variable), "arguments"),
            (r"(train)([ \t]*)(\{)", bygroups(Keyword, Whitespace, Punctuation), "train"),
            *[(regex, token, "arguments") for regex, token in _keyword_tokens()],
            (words(tuple(LAYER_KINDS), suffix=_WORD_END), Name.Builtin, "arguments"),
            (_NAME, Name.Function, "arguments"),
            (r"\(", Punctuation, "parentheses"),
            include("expression"),
        ],
        # `denselayer{i + 1}:`, `block{s + 1}-{i}:` after the label's first part.
        "label": [
            (r"\{", Punctuation, "label-template"),
            (r"-", Punctuation),
            (r"[A-Za-z0-9_]+", Name.Label),
            (r"([ \t]*)(:)", bygroups(Whitespace, Punctuation), "#pop"),
            default("#pop"),
        ],
        "label-template": [
            (r"\}", Punctuation, "#pop"),
            (r"\(", Punctuation, "parentheses"),
            include("expression"),
        ],
        # After `block NAME` / `network NAME`: the parameter list, if any.
        "definition": [
            (r"[ \t]+", Whitespace),
            (r"\(", Punctuation, ("#pop", "parameters")),
            default("#pop"),
        ],
        # After `recipe NAME`: the parameter list, if any, then entries as in `train`.
        "recipe-definition": [
            (r"[ \t]+", Whitespace),
            (r"\(", Punctuation, "parameters"),
            (r"\{", Punctuation, ("#pop", "train")),
            default("#pop"),
        ],
        "parameters": [
            (r"[ \t\f\r\n]+", Whitespace),
            include("comment"),
            (r",", Punctuation),
            (r"\)", Punctuation, "#pop"),
            (r"=", Operator, "parameter-default"),
            (_NAME, Name.Variable),
        ],
        "parameter-default": [
            (r"[\r\n]+", Whitespace),
            (r"\(", Punctuation, "parentheses"),
            include("expression"),
            default("#pop"),  # at the `,` or `)` that ends the default
        ],
        # The rest of a statement after its head.
        "arguments": [
            (r"[\r\n]+", Whitespace, "#pop"),
            (r";", Punctuation, "#pop"),
            (r",", Punctuation, "#pop"),  # the next item of a chain, or a message
            (r"\{", Punctuation, "root"),
            (r"\}", Punctuation, "#pop:2"),  # the statement ends with its body
            # `shortcut downsample: auto { }` names the shortcut.
            (r"(" + _NAME + r")([ \t]*)(:)", bygroups(Name.Label, Whitespace, Punctuation)),
            (r"\(", Punctuation, "parentheses"),
            include("expression"),
        ],
        # Inside `( )`: newlines and commas are part of the expression.
        "parentheses": [
            (r"[ \t\f\r\n]+", Whitespace),
            (r"\)", Punctuation, "#pop"),
            (r"\(", Punctuation, "#push"),
            (r",", Punctuation),
            include("expression"),
        ],
        # `train { key: value, value ... }`, and a recipe's body.
        "train": [
            (r"[ \t\f\r\n]+", Whitespace),
            (r"\}", Punctuation, "#pop"),
            (r"[;,]", Punctuation),
            (r"(train)([ \t]*)(:)", bygroups(Keyword, Whitespace, Punctuation)),
            (r"(" + _NAME + r")([ \t]*)(:)", bygroups(Name.Property, Whitespace, Punctuation)),
            (r"\(", Punctuation, "parentheses"),
            include("expression"),
        ],
        "comment": [
            (r"#[^\n]*", Comment.Single),
        ],
        # Tokens that mean the same wherever they stand.
        "expression": [
            # `x` separates shape dimensions only after a number, a name or `)`.
            (r"(?<=[A-Za-z0-9_)])([ \t]+)(" + SHAPE_SEPARATOR + r")(?=[ \t])",
             bygroups(Whitespace, Keyword)),
            (r"[ \t\f]+", Whitespace),
            (r"\\\r?\n", Text),
            include("comment"),
            (r'"[^"\n]*"', String.Double),
            (r"->", Punctuation),
            (r"\d+(?:x\d+)+(?![A-Za-z0-9_])", Number.Integer),  # a shape: 3x224x224
            (r"\d+\.\d*(?:[eE][+-]?\d+)?|\d+[eE][+-]?\d+|\.\d+(?:[eE][+-]?\d+)?",
             Number.Float),
            (r"\d+", Number.Integer),
            (r"(in)(\.)(" + _NAME + r")", bygroups(Keyword, Punctuation, Name.Attribute)),
            (r"==|!=|<=|>=|//|[-+*/%<>=]", Operator),
            (r"[.:]", Punctuation),
            (_NAME + r"(?=[ \t]*=(?!=))", Name.Attribute),  # a keyword argument
            *_keyword_tokens(),
            (words(tuple(FUNCTIONS), suffix=r"(?=\()"), Name.Builtin),
            (_NAME + r"(?=\()", Name.Function),
            (_NAME, Name),
        ],
    }
