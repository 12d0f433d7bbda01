"""The highlighters agree with the language they highlight.

Takes: the grammar (grammar/cnnspec.lark), the op registry (cnnspec/ops.py), the
expression functions (cnnspec/frontend/expressions.py), the Pygments lexer
(cnnspec/frontend/highlight.py) and the VS Code extension (editors/vscode/). Checks: every
reserved word gets a keyword token and every layer kind a builtin one, in both the
Pygments lexer and the TextMate grammar; the comment markers match the grammar's;
every spec in specs/ lexes cleanly; Pygments finds the lexer through its entry
point. A new keyword or layer kind that one highlighter lacks fails here.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import pytest
from lark import Lark
from lark.lexer import PatternRE, PatternStr
from pygments.lexers import get_lexer_by_name, get_lexer_for_filename
from pygments.token import Comment, Error, Keyword, Name

from cnnspec.frontend import highlight
from cnnspec.frontend.expressions import FUNCTIONS
from cnnspec.frontend.highlight import CnnLexer
from cnnspec.ops import LAYER_MODELS, LAYER_SYNONYMS

ROOT = Path(__file__).resolve().parent.parent
GRAMMAR = ROOT / "grammar" / "cnnspec.lark"
VSCODE = ROOT / "editors" / "vscode"
SPECS = sorted((ROOT / "specs").rglob("*.cnn"))

# TextMate scopes a reserved word may get; a layer kind and a function get one each.
KEYWORD_SCOPES = ("keyword.", "storage.type.", "constant.language.", "variable.language.")
LAYER_SCOPE = "support.function.builtin.layer.cnn"
FUNCTION_SCOPE = "support.function.builtin.cnn"
# Regex syntax that Python's `re` accepts and Oniguruma (VS Code) reads otherwise or
# not at all; the TextMate grammar must stay in the subset both read alike.
NOT_ONIGURUMA = ("(?P", "\\Z", "\\A", "\\G", "\\h", "\\z")


@lru_cache(maxsize=1)
def grammar_parser() -> Lark:
    return Lark(GRAMMAR.read_text(), parser="lalr", lexer="basic")


def grammar_terminals():
    return grammar_parser().terminals


@lru_cache(maxsize=1)
def grammar_keywords() -> frozenset[str]:
    """The grammar's reserved words: its identifier string literals, and the words
    that regex terminals end with (`ELSE: /...else\\b/`)."""
    found = set()
    for terminal in grammar_terminals():
        pattern = terminal.pattern
        if isinstance(pattern, PatternStr) and pattern.value.isidentifier():
            found.add(pattern.value)
        elif isinstance(pattern, PatternRE):
            word = re.search(r"([A-Za-z_][A-Za-z0-9_]*)\\b$", pattern.value)
            if word:
                found.add(word.group(1))
    return frozenset(found)


LAYER_KINDS = frozenset(LAYER_MODELS) | frozenset(LAYER_SYNONYMS)


def keyword_line(word: str) -> str:
    """A statement in which `word` stands as the reserved word."""
    if word == "x":  # the shape separator is a keyword between dimensions only
        return "conv 8 -> 8 x 30 x 30"
    return word


def probe_spec(lines: list[str]) -> str:
    return "network probe {\n" + "".join(f"    {line}\n" for line in lines) + "}\n"


def pygments_tokens_by_line(text: str) -> list[list[tuple]]:
    """The lexer's (token, value) pairs, grouped by source line."""
    lines: list[list[tuple]] = [[]]
    for token, value in CnnLexer().get_tokens(text):
        parts = value.split("\n")
        for index, part in enumerate(parts):
            if index:
                lines.append([])
            if part:
                lines[-1].append((token, part))
    return lines


def pygments_token_of(word: str, line_tokens: list[tuple]):
    matches = [token for token, value in line_tokens if value == word]
    assert matches, f"`{word}` is not one token in {line_tokens}"
    return matches[0]


# --- a TextMate engine for the rules the grammar uses --------------------------------

@dataclass(frozen=True)
class MatchRule:
    regex: re.Pattern
    scope: str | None
    captures: dict[int, str]


@lru_cache(maxsize=1)
def textmate_grammar() -> dict:
    return json.loads((VSCODE / "syntaxes" / "cnn.tmLanguage.json").read_text())


@lru_cache(maxsize=1)
def textmate_rules() -> tuple[MatchRule, ...]:
    """The grammar's match rules in the order a TextMate engine tries them."""
    grammar = textmate_grammar()

    def expand(patterns):
        for pattern in patterns:
            if "include" in pattern:
                reference = pattern["include"]
                assert reference.startswith("#"), reference
                yield from expand(grammar["repository"][reference[1:]]["patterns"])
                continue
            assert set(pattern) <= {"match", "name", "captures", "comment"}, (
                f"this test's engine knows single-line `match` rules only: {pattern}")
            assert not any(part in pattern["match"] for part in NOT_ONIGURUMA), pattern
            captures = {int(group): capture["name"]
                        for group, capture in pattern.get("captures", {}).items()}
            yield MatchRule(re.compile(pattern["match"]), pattern.get("name"), captures)

    return tuple(expand(grammar["patterns"]))


def textmate_spans(line: str) -> list[tuple[int, int, str]]:
    """(start, end, scope) of `line` as VS Code scopes it: from each position, the rule
    whose match starts first wins, the earlier rule on a tie; captures nest inside."""
    text = line + "\n"  # VS Code's engine scans each line with its newline
    spans, position = [], 0
    while position < len(text):
        best = None
        for rule in textmate_rules():
            match = rule.regex.search(text, position)
            if match and (best is None or match.start() < best[0].start()):
                best = (match, rule)
        if best is None:
            break
        match, rule = best
        if rule.scope:
            spans.append((match.start(), match.end(), rule.scope))
        for group, scope in rule.captures.items():
            if match.start(group) >= 0:
                spans.append((match.start(group), match.end(group), scope))
        position = max(match.end(), position + 1)
    return spans


def textmate_scope_of(word: str, line: str) -> str:
    """The innermost scope over the first whole-word `word` in `line`."""
    found = re.search(rf"(?<![A-Za-z0-9_]){re.escape(word)}(?![A-Za-z0-9_])", line)
    assert found, (word, line)
    covering = [scope for start, end, scope in textmate_spans(line)
                if start <= found.start() and found.end() <= end]
    return covering[-1] if covering else "source.cnn"


def textmate_words(repository_entry: str) -> set[str]:
    """The words listed in one repository entry's `\\b(?:a|b|c)\\b` patterns."""
    words = set()
    for pattern in textmate_grammar()["repository"][repository_entry]["patterns"]:
        alternation = re.sub(r"\\b|\(\?[:=]|\\\(|[()]", " ", pattern["match"])
        words.update(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", alternation))
    return words


# --- (a) Pygments: keywords and layer kinds ------------------------------------------

def test_grammar_keywords_are_found():
    # Guards the derivation itself: an empty set would make the tests below vacuous.
    assert {"network", "block", "residual", "shortcut", "else", "x"} <= grammar_keywords()
    assert {"conv", "batchnorm", "swish", "deconv"} <= LAYER_KINDS


def test_pygments_gives_every_keyword_a_keyword_token():
    words = sorted(grammar_keywords())
    lines = pygments_tokens_by_line(probe_spec([keyword_line(word) for word in words]))
    wrong = {word: pygments_token_of(word, lines[index + 1])
             for index, word in enumerate(words)
             if pygments_token_of(word, lines[index + 1]) not in Keyword}
    assert not wrong, f"add these keywords to cnnspec/frontend/highlight.py: {wrong}"


def test_pygments_gives_every_layer_kind_a_builtin_token():
    kinds = sorted(LAYER_KINDS)
    statements = [f"{kind}" for kind in kinds] + [f"out: {kind}(1)" for kind in kinds]
    lines = pygments_tokens_by_line(probe_spec(statements))
    tokens = [pygments_token_of(kind, lines[index + 1])
              for index, kind in enumerate(kinds + kinds)]
    wrong = {kind: token for kind, token in zip(kinds + kinds, tokens)
             if token is not Name.Builtin}
    assert not wrong, f"add these layer kinds to cnnspec/frontend/highlight.py: {wrong}"


def test_pygments_gives_expression_functions_a_builtin_token():
    names = sorted(FUNCTIONS)
    lines = pygments_tokens_by_line(probe_spec([f"let v = {name}(1)" for name in names]))
    wrong = {name: pygments_token_of(name, lines[index + 1])
             for index, name in enumerate(names)
             if pygments_token_of(name, lines[index + 1]) is not Name.Builtin}
    assert not wrong, wrong


def test_pygments_lists_no_removed_words():
    assert highlight.KEYWORDS == grammar_keywords()
    assert highlight.LAYER_KINDS == LAYER_KINDS
    assert highlight.FUNCTIONS == frozenset(FUNCTIONS)


def test_a_layer_kind_as_an_argument_is_a_name():
    # `dropout dropout`: the layer, then the block parameter called dropout.
    [line] = pygments_tokens_by_line("dropout dropout\n")[:1]
    assert [token for token, value in line if value.strip()] == [Name.Builtin, Name]


# --- (b) TextMate: keywords and layer kinds ------------------------------------------

def test_textmate_patterns_compile_in_python():
    assert len(textmate_rules()) > 10


def test_textmate_gives_every_keyword_a_keyword_scope():
    wrong = {word: scope for word in sorted(grammar_keywords())
             if not (scope := textmate_scope_of(word, keyword_line(word))).startswith(
                 KEYWORD_SCOPES)}
    assert not wrong, f"add these keywords to syntaxes/cnn.tmLanguage.json: {wrong}"


def test_textmate_gives_every_layer_kind_the_layer_scope():
    wrong = {}
    for kind in sorted(LAYER_KINDS):
        for line in (kind, f"out: {kind} 1", f"{kind}(1)"):
            if (scope := textmate_scope_of(kind, line)) != LAYER_SCOPE:
                wrong[line] = scope
    assert not wrong, f"add these layer kinds to syntaxes/cnn.tmLanguage.json: {wrong}"


def test_textmate_gives_expression_functions_the_function_scope():
    wrong = {name: scope for name in sorted(FUNCTIONS)
             if (scope := textmate_scope_of(name, f"let v = {name}(1)")) != FUNCTION_SCOPE}
    assert not wrong, wrong


def test_textmate_lists_no_removed_words():
    assert textmate_words("keyword") <= grammar_keywords()
    assert textmate_words("layer") == LAYER_KINDS


@pytest.mark.parametrize("line, word, scope", [
    ("conv1: conv 64 k=7 s=2 p=3 bias=false", "conv1", "entity.name.label.cnn"),
    ("conv1: conv 64 k=7 s=2 p=3 bias=false", "k", "variable.parameter.cnn"),
    ("block{s + 1}-{i}: regnet_stage(s)", "regnet_stage", "entity.name.function.call.cnn"),
    ("block basic(c, stride = 1) {", "basic", "entity.name.function.block.cnn"),
    ("network resnet18(classes = 1000) {", "resnet18", "entity.name.type.network.cnn"),
    ("input 3x224x224", "3x224x224", "constant.numeric.shape.cnn"),
    ("layer_scale 1e-6", "1e-6", "constant.numeric.float.cnn"),
    ("conv in.c // 2 k=1", "in", "variable.language.input.cnn"),
    ('import "blocks/resnet.cnn"', '"blocks/resnet.cnn"', "string.quoted.double.cnn"),
    ("relu  # conv block: relu", "block", "comment.line.number-sign.cnn"),
    ("let x = 3", "x", "variable.other.definition.cnn"),
])
def test_textmate_scopes_the_rest_of_a_statement(line, word, scope):
    found = line.index(word)
    covering = [span_scope for start, end, span_scope in textmate_spans(line)
                if start <= found and found + len(word) <= end]
    assert covering and covering[-1] == scope, textmate_spans(line)


# --- (c) comments --------------------------------------------------------------------

def grammar_line_comment_marker() -> str:
    """The marker of the grammar's one comment form; fails for a form it does not know."""
    ignored = [terminal for terminal in grammar_terminals()
               if terminal.name in grammar_parser().ignore_tokens]
    # Whitespace and the backslash line continuation are ignored too; comments match neither.
    comments = [terminal.pattern.value for terminal in ignored
                if not any(re.fullmatch(terminal.pattern.to_regexp(), blank)
                           for blank in (" ", "\t", "\\\n"))]
    assert len(comments) == 1, f"comment forms: {comments}; update the highlighters"
    form = re.fullmatch(r"(.+?)\[\^(?:\n|\\n)\]\*", comments[0])
    assert form, f"not a line comment: {comments[0]!r}; update the highlighters"
    return re.sub(r"\\(.)", r"\1", form.group(1))


def test_editor_comment_markers_are_the_grammars():
    marker = grammar_line_comment_marker()
    configuration = json.loads((VSCODE / "language-configuration.json").read_text())
    assert configuration["comments"] == {"lineComment": marker}
    comment_line = f"relu {marker} a comment"
    [line] = pygments_tokens_by_line(comment_line)[:1]
    assert (Comment.Single, f"{marker} a comment") in line
    assert textmate_scope_of("comment", comment_line).startswith("comment.line")


def test_floor_division_is_not_a_comment():
    line = "conv in.c // 2 k=1"
    assert not any(token in Comment for token, _ in pygments_tokens_by_line(line)[0])
    assert textmate_scope_of("k", line) == "variable.parameter.cnn"


# --- (d) the specs -------------------------------------------------------------------

def test_every_spec_lexes_without_errors():
    failures = {}
    for spec in SPECS:
        text = spec.read_text()
        errors = [value for token, value in CnnLexer().get_tokens(text) if token in Error]
        invalid = [line for line in text.splitlines()
                   if any(scope.startswith("invalid") for *_, scope in textmate_spans(line))]
        if errors or invalid:
            failures[spec.relative_to(ROOT).as_posix()] = errors[:5] + invalid[:5]
    assert len(SPECS) > 50
    assert not failures, failures


# --- (e) the entry point and the extension's manifest --------------------------------

def test_pygments_finds_the_lexer_through_its_entry_point():
    assert isinstance(get_lexer_by_name("cnn"), CnnLexer)
    assert isinstance(get_lexer_by_name("cnnspec"), CnnLexer)
    assert isinstance(get_lexer_for_filename("x.cnn"), CnnLexer)


def test_vscode_manifest_ties_language_grammar_and_server_together():
    manifest = json.loads((VSCODE / "package.json").read_text())
    [language] = manifest["contributes"]["languages"]
    [grammar] = manifest["contributes"]["grammars"]
    setting = manifest["contributes"]["configuration"]["properties"]["cnnspec.serverCommand"]
    assert language["id"] == grammar["language"] == "cnn"
    assert language["extensions"] == [".cnn"]
    assert grammar["scopeName"] == textmate_grammar()["scopeName"] == "source.cnn"
    assert (VSCODE / grammar["path"]).is_file()
    assert (VSCODE / language["configuration"]).is_file()
    assert "onLanguage:cnn" in manifest["activationEvents"]
    assert setting["default"] == ["cnnspec", "lsp"]
    assert "vscode-languageclient" in manifest["dependencies"]
    assert (VSCODE / manifest["main"]).is_file()


def test_the_emacs_mode_in_the_docs_lists_the_grammar_keywords():
    """docs/editors.md gives Emacs users a cnn-mode; its keyword list is the grammar's."""
    text = (ROOT / "docs" / "editors.md").read_text()
    listed = re.search(r"\(defconst cnn-keywords\s+'\(([^)]*)\)", text)
    assert listed, "docs/editors.md has no (defconst cnn-keywords '(...))"
    assert frozenset(re.findall(r'"([^"]+)"', listed.group(1))) == grammar_keywords()
