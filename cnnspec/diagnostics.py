"""Source locations and user-facing diagnostics.

Takes: source text registered as `SourceFile`s and spans pointing into them.
Returns: `Diagnostic` records and `SpecError` (the one exception a bad spec raises),
rendered as text in the style

    error[E0301]: `conv1` output width is not a whole number
      --> specs/alexnet.cnn:7:5
       |
     7 |     conv1: conv 96 k=11 s=4
       |     ^^^^^^^^^^^^^^^^^^^^^^^ (227 - 11 + 2*0) / 4 + 1 = 54.25
       = help: ...

Nothing here prints or exits; only the CLI does.
"""

from __future__ import annotations

from typing import NamedTuple


class SourceFile:
    """One spec file's text, kept so diagnostics can quote the user's own line."""

    __slots__ = ("name", "text", "_lines")

    def __init__(self, name: str, text: str):
        self.name = name
        self.text = text
        self._lines: list[str] | None = None

    def line(self, number: int) -> str:
        if self._lines is None:  # "\n" alone ends a line, as the parser counts them
            self._lines = [line.rstrip("\r") for line in self.text.split("\n")]
        if 1 <= number <= len(self._lines):
            return self._lines[number - 1]
        return ""

    @property
    def line_count(self) -> int:
        return self.text.count("\n") + 1


class Span(NamedTuple):
    """A region of a source file: 1-based line and column, end exclusive."""

    source: SourceFile
    line: int
    column: int
    end_line: int
    end_column: int

    @property
    def file(self) -> str:
        return self.source.name

    def __str__(self) -> str:
        return f"{self.source.name}:{self.line}:{self.column}"

    def __repr__(self) -> str:
        return f"Span({self})"


class Diagnostic(NamedTuple):
    """One finding: a code, where, what was found, what was needed, and why. The
    checker's are errors (E codes); lint's advice is `severity="warning"` (W codes)."""

    code: str
    message: str
    span: Span | None
    label: str = ""
    help: str = ""
    notes: tuple[str, ...] = ()
    severity: str = "error"  # or "warning"
    suggestion: str | None = None  # the word a "did you mean" help names (quick fixes)

    def render(self) -> str:
        lines = [f"{self.severity}[{self.code}]: {self.message}"]
        pad = " "
        if self.span is not None:
            pad = " " * len(str(self.span.line))
            lines.extend(_quote(self.span, self.label))
        elif self.label:
            lines.append(f"{pad} = {self.label}")
        lines.extend(f"{pad} = note: {note}" for note in self.notes)
        if self.help:
            lines.append(f"{pad} = help: {self.help}")
        return "\n".join(lines)


def _quote(span: Span, label: str) -> list[str]:
    raw = span.source.line(span.line)
    text = raw.expandtabs(4)
    number = str(span.line)
    pad = " " * len(number)
    start = len(raw[:max(span.column - 1, 0)].expandtabs(4))
    if span.end_line == span.line and span.end_column > span.column:
        width = len(raw[:span.end_column - 1].expandtabs(4)) - start
    else:
        width = len(text.rstrip()) - start
    width = max(width, 1)
    carets = " " * start + "^" * width
    return [
        f"{pad}--> {span}",
        f"{pad} |",
        f"{number} | {text}",
        f"{pad} | {carets}{' ' + label if label else ''}",
    ]


class SpecError(Exception):
    """A spec is wrong. Carries one or more diagnostics; `str()` renders them."""

    def __init__(self, diagnostics: list[Diagnostic] | Diagnostic):
        if isinstance(diagnostics, Diagnostic):
            diagnostics = [diagnostics]
        self.diagnostics = list(diagnostics)
        super().__init__(self.render())

    def render(self) -> str:
        return "\n\n".join(d.render() for d in self.diagnostics)

    @property
    def code(self) -> str:
        return self.diagnostics[0].code


def error(code: str, message: str, span: Span | None, label: str = "", help: str = "",
          notes: tuple[str, ...] = ()) -> SpecError:
    """Build a one-diagnostic SpecError (callers `raise error(...)`)."""
    return SpecError(Diagnostic(code, message, span, label, help, tuple(notes),
                                suggestion=getattr(help, "word", None)))


class Suggestion(str):
    """A "did you mean `word`?" help line that remembers its word, so that the
    diagnostic built with it carries the word (editors offer it as a quick fix)."""

    word: str

    def __new__(cls, word: str):
        line = super().__new__(cls, f"did you mean `{word}`?")
        line.word = word
        return line


def did_you_mean(word: str, candidates) -> str:
    """A help line naming the closest known word (a `Suggestion`), or "" when nothing
    is close."""
    import difflib

    close = difflib.get_close_matches(word, sorted(candidates), n=1, cutoff=0.6)
    return Suggestion(close[0]) if close else ""
