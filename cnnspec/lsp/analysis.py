"""One editor document, checked: text + path -> `Analysis`.

Takes: a `.cnn` document's text, saved or not, and its file path (imports resolve
relative to it). Returns: an `Analysis` with the parsed module, every block in scope
(the document's and those of the files it imports), each network checked with its
default parameters, and the `Problem`s found: the checker's errors and lint's
warnings, placed in the document. Files with only blocks, or several networks, are
checked as what they are: blocks alone are parsed and their imports resolved.

Positions here are 0-based lines and characters counted in code points (`Range`);
the server converts them to the client's encoding. Imports neither torch nor pygls.
"""

from __future__ import annotations

import bisect
import difflib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import NamedTuple

from ..frontend import syntax as S
from ..api import Spec, _Modules, load_text
from ..diagnostics import Span, SpecError
from ..analyses.lint import lint
from ..frontend.parse import parse


class Range(NamedTuple):
    start_line: int
    start_character: int
    end_line: int
    end_character: int


class Related(NamedTuple):
    """Where a problem really is, when that is another file (an imported block)."""

    path: str
    range: Range
    message: str
    text: str  # that file's text, to convert the range to the client's units


class Problem(NamedTuple):
    range: Range
    severity: str  # "error" | "warning"
    code: str
    message: str
    related: tuple[Related, ...] = ()
    fix: Fix | None = None  # a "did you mean" help, as an edit


class Fix(NamedTuple):
    """A quick fix: replace `range` in the document by `text`."""

    range: Range
    text: str


def span_range(span: Span) -> Range:
    """Spans are 1-based with an exclusive end; LSP ranges are 0-based, end exclusive."""
    return Range(span.line - 1, span.column - 1, span.end_line - 1, span.end_column - 1)


def same_file(name: str | None, path: str | None) -> bool:
    if name is None or path is None or "<" in name or "<" in path:
        return name == path
    return name == path or os.path.realpath(name) == os.path.realpath(path)


@dataclass(eq=False)
class Analysis:
    text: str
    path: str | None
    module: S.Module | None  # None when the text does not parse
    blocks: dict[str, S.Definition]  # every block callable here, imported ones too
    imports: list[tuple[S.Import, str]]  # each import and the file it names
    specs: list[Spec]  # the networks that checked
    problems: list[Problem]
    _records: dict = field(default_factory=dict)  # network -> {layer: explain.Record}
    _anchors: list | None = None

    @cached_property
    def lines(self) -> list[str]:
        return self.text.split("\n")  # as the parser counts lines

    def records(self, spec: Spec, compute: bool = True) -> dict:
        """Every layer's explain record of `spec`, made on first use (~50 ms for the
        largest spec; `compute=False`: {} until `warm` has made them); {} if explaining
        fails, so hover still shows the facts."""
        records = self._records.get(spec.name)
        if records is None and not compute:
            return {}
        if records is None:
            try:
                records = {r.name: r for r in spec.explain().records}
            except Exception:  # noqa: BLE001 - a bug in explain must not take hover down
                records = {}
            self._records[spec.name] = records
        return records

    def warm(self) -> None:
        for spec in self.specs:
            self.records(spec)

    @property
    def explained(self) -> bool:
        return all(spec.name in self._records for spec in self.specs)

    def nodes_in(self, span: Span, network: str | None = None) -> list[tuple[Spec, object]]:
        """The IR nodes that the text in `span` made, in order: a node belongs to the
        statement its span lies in and to every block call (in this file) it came
        from. `network` keeps only that network's nodes."""
        if self._anchors is None:
            self._anchors = _anchors(self.specs, self.path)
        start, end = (span.line, span.column), (span.end_line, span.end_column)
        found = []
        index = bisect.bisect_left(self._anchors, (start,))
        for anchor in self._anchors[index:]:
            if anchor[0] >= end:
                break
            if anchor[1] <= end:
                spec = self.specs[anchor[2]]
                if network is None or spec.name == network:
                    found.append((anchor[2], anchor[3]))
        return [(self.specs[s], self.specs[s].graph.nodes[n]) for s, n in sorted(set(found))]


def _anchors(specs: list[Spec], path: str | None) -> list[tuple]:
    """(start, end, spec index, node id) for every span in this file that made a node."""
    here: dict[str, bool] = {}
    anchors = []
    for index, spec in enumerate(specs):
        for node in spec.graph.nodes:
            for span in (node.span, *node.calls):
                if span is None:
                    continue
                inside = here.get(span.file)
                if inside is None:
                    inside = here[span.file] = same_file(span.file, path)
                if inside:
                    anchors.append(((span.line, span.column), (span.end_line, span.end_column),
                                    index, node.id))
    anchors.sort()
    return anchors


# ---------------------------------------------------------------- checking


def analyse(text: str, path: str | os.PathLike | None = None,
            unsaved: Mapping[str, str] | None = None) -> Analysis:
    """Parse and check `text` as the file at `path` (unsaved changes included).
    `unsaved`: other files' editor text by real path, read instead of the disk when
    imported, so a spec follows the block file being edited beside it."""
    path = os.fspath(path) if path is not None else None
    unsaved = unsaved or {}
    found: list = []
    specs: list[Spec] = []
    blocks: dict[str, S.Definition] = {}
    imports: list[tuple[S.Import, str]] = []
    try:
        module = parse(text, path or "<string>")
    except SpecError as problem:
        module = None
        found.extend(problem.diagnostics)
    if module is not None:
        blocks, imports = _scope(module, path, unsaved)
        for network in module.networks:
            try:
                spec = load_text(text, path, network=network.name, unsaved=unsaved)
            except SpecError as problem:
                found.extend(problem.diagnostics)
            else:
                specs.append(spec)
                found.extend(lint(spec))
        if not module.networks:  # blocks only: their imports and names still count
            try:
                _Modules(unsaved).load(text, path)
            except SpecError as problem:
                found.extend(problem.diagnostics)
    problems = []
    for diagnostic in found:
        problem = _problem(diagnostic, text, path, imports)
        if problem not in problems:  # two networks calling one bad block
            problems.append(problem)
    return Analysis(text, path, module, blocks, imports, specs, problems)


def imports_file(result: Analysis, path: str) -> bool:
    """Whether the analysed document reads `path`: an import of it, or a block in
    scope defined there (an import of an import)."""
    return (any(same_file(target, path) for _, target in result.imports)
            or any(same_file(block.name_span.file, path)
                   for block in result.blocks.values()))


def _problem(found, text: str, path: str | None, imports) -> Problem:
    """A checker error or a lint warning (both `Diagnostic`s), placed in this
    document."""
    severity = found.severity
    lines = [found.message]
    if found.label:
        lines.append(found.label)
    lines.extend(f"note: {note}" for note in found.notes)
    if found.help:
        lines.append(f"help: {found.help}")
    span, related, fix = found.span, (), None
    if span is None:
        where = Range(0, 0, 0, 0)
    elif same_file(span.file, path):
        where = span_range(span)
        fix = _suggested_fix(found.suggestion, where, text)
    else:  # inside an imported block: point at the call (or import) that leads there
        lines.append(f"at {span}")
        related = (Related(span.file, span_range(span), found.label or found.message,
                           span.source.text),)
        where = (_call_site(found.notes, text, path) or _import_site(span.file, imports)
                 or Range(0, 0, 0, 0))
    return Problem(where, severity, found.code, "\n".join(lines), related, fix)


_WORD = re.compile(r"[A-Za-z_]\w*")


def _suggested_fix(suggestion: str | None, where: Range, text: str) -> Fix | None:
    """The word a diagnostic's suggestion would replace: in its range (`strid=2`,
    `in.chanels`, `rleu`), the identifier closest to the suggestion, as difflib
    judged it when it chose the suggestion."""
    if suggestion is None or where.start_line != where.end_line:
        return None
    line = text.split("\n")[where.start_line]
    words = [w for w in _WORD.finditer(line, where.start_character, where.end_character)
             if w.group() != suggestion]
    if not words:
        return None
    best = max(words, key=lambda w: difflib.SequenceMatcher(None, w.group(),
                                                             suggestion).ratio())
    return Fix(Range(where.start_line, best.start(), where.start_line, best.end()),
               suggestion)


_AT = re.compile(r" at (.+):(\d+):(\d+)$")


def _call_site(notes, text: str, path: str | None) -> Range | None:
    """The outermost block call in this file that a diagnostic's notes name."""
    for note in reversed(notes):
        match = _AT.search(note)
        if match and same_file(match.group(1), path):
            return word_range(text.split("\n"), int(match.group(2)) - 1,
                              int(match.group(3)) - 1)
    return None


def _import_site(file: str, imports) -> Range | None:
    for imported, target in imports:
        if same_file(file, target):
            return span_range(imported.span)
    return span_range(imports[0][0].span) if imports else None


def word_range(lines: list[str], line: int, character: int) -> Range:
    """The identifier that starts at (line, character), or one character."""
    text = lines[line] if 0 <= line < len(lines) else ""
    end = character
    while end < len(text) and (text[end].isalnum() or text[end] == "_"):
        end += 1
    return Range(line, character, line, max(end, character + 1))


# ---------------------------------------------------------------- scope


_IMPORTED: dict[str, tuple[tuple[int, int], S.Module | None]] = {}


def _scope(module: S.Module, path: str | None, unsaved: Mapping[str, str]):
    """Every block callable in `module` (its own first, then imported ones, as
    deep as imports go) and each import with the file it names."""
    blocks = {b.name: b for b in module.blocks}
    imports = []
    base = Path(path).parent if path else Path.cwd()
    queue = [(i, base, True) for i in module.imports]
    seen = {os.path.realpath(path)} if path else set()
    while queue:
        imported, folder, here = queue.pop(0)
        target = folder / imported.path
        if here:
            imports.append((imported, str(target)))
        key = os.path.realpath(target)
        if key in seen:
            continue
        seen.add(key)
        inner = _unsaved(str(target), unsaved[key]) if key in unsaved else _imported(target)
        if inner is None:
            continue
        for block in inner.blocks:
            blocks.setdefault(block.name, block)
        queue.extend((i, target.parent, False) for i in inner.imports)
    return blocks, imports


def _unsaved(file: str, text: str) -> S.Module | None:
    """An imported file open in the editor, parsed from its buffer."""
    try:
        return parse(text, file)
    except SpecError:
        return None


def _imported(file: Path) -> S.Module | None:
    """An imported file, parsed once per change on disk; None when unreadable or
    wrong (the check reports that at the import)."""
    try:
        status = file.stat()
    except OSError:
        return None
    key, stamp = os.path.realpath(file), (status.st_mtime_ns, status.st_size)
    cached = _IMPORTED.get(key)
    if cached is not None and cached[0] == stamp:
        return cached[1]
    try:
        module = parse(file.read_text(encoding="utf-8"), str(file))
    except (OSError, UnicodeDecodeError, SpecError):
        module = None
    _IMPORTED[key] = (stamp, module)
    return module


# ---------------------------------------------------------------- syntax at a position


def contains(span: Span, line: int, character: int, *, end_inclusive: bool = False) -> bool:
    """Whether 0-based (line, character) lies in `span` (end_inclusive: also right
    after it, where a cursor sits when it has just typed a word)."""
    point = (line + 1, character + 1)
    end = (span.end_line, span.end_column)
    return (span.line, span.column) <= point and (point <= end if end_inclusive
                                                  else point < end)


def is_syntax(value) -> bool:
    return isinstance(value, tuple) and "span" in getattr(value, "_fields", ())


def children(node):
    """The syntax nodes directly inside `node`, in source order."""
    for value in node:
        if is_syntax(value):
            yield value
        elif isinstance(value, tuple) and not hasattr(value, "_fields"):
            yield from (item for item in value if is_syntax(item))


def path_at(module: S.Module | None, line: int, character: int) -> list:
    """The syntax nodes containing the position, from its definition inwards."""
    if module is None:
        return []
    for definition in module.blocks + module.networks:
        if contains(definition.span, line, character, end_inclusive=True):
            path = [definition]
            while True:
                inner = next((c for c in children(path[-1])
                              if contains(c.span, line, character, end_inclusive=True)),
                             None)
                if inner is None:
                    return path
                path.append(inner)
    return []


def source_text(span: Span) -> str:
    """The text a span covers."""
    if span.line == span.end_line:
        return span.source.line(span.line)[span.column - 1:span.end_column - 1]
    lines = [span.source.line(span.line)[span.column - 1:]]
    lines += [span.source.line(n) for n in range(span.line + 1, span.end_line)]
    lines.append(span.source.line(span.end_line)[:span.end_column - 1])
    return "\n".join(lines)


def doc_comment(definition: S.Definition) -> str:
    """The `#` comment lines right above a definition, without their `#`."""
    lines = []
    number = definition.span.line - 1
    while number >= 1:
        text = definition.span.source.line(number).strip()
        if not text.startswith("#"):
            break
        lines.append(text[1:].removeprefix(" "))
        number -= 1
    return "\n".join(reversed(lines))


def signature(definition: S.Definition) -> str:
    """`block basic(c, stride = 1)`, as written."""
    params = ", ".join(source_text(p.span) for p in definition.params)
    return f"{definition.kind} {definition.name}({params})"
