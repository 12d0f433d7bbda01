"""Completion: (`Analysis`, current text, position) -> `Completion`s.

Takes: the latest `analysis.Analysis` (for the blocks and names in scope; it may be
a keystroke older than the text), the document's current text and a 0-based (line,
character) in code points. Returns: what fits there, judged from the line up to
the cursor: at a statement, layer kinds (from the op registry, with their
arguments), blocks in scope (with signature and doc comment), keywords (from the
grammar) and names in scope; after a layer or block call, its keyword arguments;
after `name=`, values; inside `import "`, `.cnn` files.
"""

from __future__ import annotations

import os
import re
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

from .. import ops as O
from ..frontend import syntax as S
from ..frontend.expressions import FUNCTIONS, INPUT_ATTRIBUTES
from .analysis import Analysis, children, path_at, signature
from .hover import block_doc, layer_signature, value_text

CONSTANTS = ("true", "false", "same", "global", "none")
_CALL = re.compile(r"\s*([A-Za-z_]\w*)(\s+|\()(.*)$", re.DOTALL)
_VALUE = re.compile(r"[A-Za-z_]\w*\s*=\s*[\w.]*$")
_IMPORT = re.compile(r'\s*import\s+"([^"]*)$')
# Keywords whose arguments are values: `input 3 x size x size`, `repeat n`, `if c`.
_BEFORE_VALUES = frozenset({"input", "let", "option", "if", "assert", "repeat"})


class Completion(NamedTuple):
    label: str
    kind: str  # layer | block | keyword | variable | argument | function | value | file
    detail: str = ""
    documentation: str = ""
    insert_text: str | None = None
    replace_from: int | None = None  # replace the line from here to the cursor


def completions(analysis: Analysis | None, text: str, line: int,
                character: int) -> list[Completion]:
    lines = text.split("\n")
    before = lines[line][:character] if line < len(lines) else ""
    imported = _IMPORT.match(before)
    if imported:
        return _files(analysis.path if analysis else None, imported.group(1),
                      imported.start(1))
    if "#" in re.sub(r'"[^"]*"', "", before):  # in a comment
        return []
    module = analysis.module if analysis else None
    names = _names(path_at(module, line, character)[:1])
    blocks = analysis.blocks if analysis else {}
    call = _CALL.match(_current_item(before))
    if call is None:  # at the first word of a statement or chain item
        return _statement(blocks, names)
    name, rest = call.group(1), call.group(3)
    if _VALUE.search(rest) or name in _BEFORE_VALUES:
        return _values(names)
    if name in keywords():  # `residual {`, `shortcut`, `else`: a statement follows
        return _statement(blocks, names)
    return _arguments(name, blocks) + _values(names)


def _current_item(before: str) -> str:
    """The chain item the cursor is in, without its statement's label: what follows
    the last top-level `,`, `;` or opening `{` (a comma inside parentheses parts
    arguments; a `{` glued to a name is a label template, `denselayer{i + 1}`)."""
    depth, start, statement = 0, 0, True
    for index, char in enumerate(before):
        if char == "(":
            depth += 1
        elif char == ")":
            depth = max(depth - 1, 0)
        elif depth == 0 and (char in ",;" or char == "{" and not _glued(before, index)):
            start, statement = index + 1, char != ","
    item = before[start:]
    label = _LABEL.match(item) if statement else None
    return item[label.end():] if label else item


_LABEL = re.compile(r"\s*(\d+|[A-Za-z_][\w{}+\-*/ ]*?)\s*:")


def _glued(text: str, index: int) -> bool:
    return index > 0 and (text[index - 1].isalnum() or text[index - 1] == "_")


def _statement(blocks: dict, names: list[Completion]) -> list[Completion]:
    items = [Completion(kind, "layer", layer_signature(kind).split("\n")[0])
             for kind in sorted({*O.LAYER_MODELS, *O.LAYER_SYNONYMS})]
    items += [Completion(name, "block", signature(block), block_doc(block))
              for name, block in sorted(blocks.items())]
    items += [Completion(word, "keyword") for word in keywords()]
    return items + names + _functions()


def _arguments(name: str, blocks: dict) -> list[Completion]:
    """`stride=`, `s=`, ... of a layer kind, or a block's parameters."""
    block = blocks.get(name)
    if block is not None:
        return [Completion(f"{p.name}=", "argument", signature(block),
                           insert_text=f"{p.name}=") for p in block.params]
    model = O.LAYER_MODELS.get(O.LAYER_SYNONYMS.get(name, name))
    if model is None:
        return []
    items = []
    for field, info in model.model_fields.items():
        if field != "op":
            default = "" if info.is_required() else f" (default {value_text(info.default)})"
            items.append(Completion(f"{field}=", "argument", f"{name} {field}{default}",
                                    insert_text=f"{field}="))
    items += [Completion(f"{alias}=", "argument", f"{name}: short for {field}",
                         insert_text=f"{alias}=")
              for alias, field in O.ALIASES.items() if field in model.model_fields]
    return items


def _values(names: list[Completion]) -> list[Completion]:
    items = [Completion(word, "value") for word in (*CONSTANTS, *sorted(O.WORDS))]
    items += [Completion(f"in.{a}", "variable", "the shape of this layer's input")
              for a in INPUT_ATTRIBUTES]
    return names + items + _functions()


def _functions() -> list[Completion]:
    from ..frontend.expressions import _USAGE

    return [Completion(name, "function", _USAGE.get(name, f"{name}(x)"))
            for name in sorted(FUNCTIONS)]


def _names(definitions: list) -> list[Completion]:
    """Parameters, `let`s and `repeat ... as` names of the enclosing definition."""
    if not definitions:
        return []
    definition = definitions[0]
    items = {p.name: Completion(p.name, "variable", f"parameter of {definition.kind} "
                                f"{definition.name}") for p in definition.params}
    stack = list(definition.body)
    while stack:
        node = stack.pop()
        if type(node) is S.LetStatement:
            items.setdefault(node.name, Completion(node.name, "variable", "let"))
        elif type(node) is S.Repeat and node.variable:
            items.setdefault(node.variable, Completion(node.variable, "variable",
                                                       "repeat variable"))
        stack.extend(children(node))
    return list(items.values())


def _files(path: str | None, typed: str, start: int) -> list[Completion]:
    """`.cnn` files and folders next to the document, under the folder typed so far;
    each replaces the whole typed path (from `start`), which has `/` and `.` in it."""
    folder = os.path.dirname(typed)
    base = (Path(path).parent if path else Path.cwd()) / folder
    try:
        entries = sorted(base.iterdir())
    except OSError:
        return []
    items = []
    for entry in entries:
        relative = f"{folder}/{entry.name}" if folder else entry.name
        if entry.is_dir() and not entry.name.startswith("."):
            items.append(Completion(relative + "/", "file", "folder", replace_from=start))
        elif entry.suffix == ".cnn" and (path is None or os.path.realpath(entry)
                                         != os.path.realpath(path)):
            items.append(Completion(relative, "file", "spec file", replace_from=start))
    return items


@lru_cache(maxsize=1)
def keywords() -> tuple[str, ...]:
    """The language's reserved words, read from the grammar's terminals."""
    from ..frontend.parse import _parser

    words = set()
    for terminal in _parser().terminals:
        pattern = terminal.pattern
        if pattern.type == "str" and pattern.value.isidentifier():
            words.add(pattern.value)
        elif pattern.type == "re":
            keyword = re.search(r"([a-z]+)\\b$", pattern.value)  # `else`, `shortcut`
            if keyword:
                words.add(keyword.group(1))
    return tuple(sorted(words - {"x"}))  # `x` only separates shape dimensions
