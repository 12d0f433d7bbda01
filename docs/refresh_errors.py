"""Rewrite the outputs shown in docs/errors.md from what cnnspec prints today.

Each ```cnn-error example followed by a ```text block that starts with
`$ cnnspec check example.cnn` gets that block's body replaced by the real
diagnostic; each ```cnn example (a right spec) followed by a ```text block that
starts with `$ cnnspec lint example.cnn` gets the real warnings (the W codes).
`tests/test_docs.py` fails when the page and the program disagree; run
`.venv/bin/python docs/refresh_errors.py` after changing a message.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
from pathlib import Path

import cnnspec

PAGE = Path(__file__).with_name("errors.md")
PROMPT = "$ cnnspec check example.cnn\n"
_PAIR = re.compile(r"(```cnn-error\n(?P<spec>.*?)```\s*\n```text\n)"
                   + re.escape(PROMPT) + r"(?P<output>.*?)(```)", re.S)
LINT_PROMPT = "$ cnnspec lint example.cnn\n"
# The spec may not run over a fence: only a ```cnn block directly before the output.
_LINT_PAIR = re.compile(r"(```cnn\n(?P<spec>(?:(?!```).)*?)```\s*\n```text\n)"
                        + re.escape(LINT_PROMPT) + r"(?P<output>.*?)(```)", re.S)


@contextlib.contextmanager
def _example(spec: str):
    """The spec saved as example.cnn in a scratch folder, which is the working
    directory meanwhile (the outputs name `example.cnn`)."""
    with tempfile.TemporaryDirectory() as folder:
        Path(folder, "example.cnn").write_text(spec, encoding="utf-8")
        here = os.getcwd()
        os.chdir(folder)
        try:
            yield
        finally:
            os.chdir(here)


def diagnostic_of(spec: str) -> str:
    """What `cnnspec check example.cnn` prints for this spec."""
    with _example(spec):
        try:
            cnnspec.load("example.cnn")
        except cnnspec.SpecError as problem:
            return problem.render() + "\n"
    return "(no error)\n"


def warnings_of(spec: str) -> str:
    """What `cnnspec lint example.cnn` prints on stdout for this (right) spec."""
    from cnnspec.analyses.lint import lint

    with _example(spec):
        try:
            found = lint(cnnspec.load("example.cnn"))
        except cnnspec.SpecError as problem:
            return problem.render() + "\n"
    return "\n\n".join(w.render() for w in found) + "\n" if found else "(no warning)\n"


def refreshed(text: str) -> str:
    text = _PAIR.sub(lambda m: m.group(1) + PROMPT + diagnostic_of(m.group("spec"))
                     + m.group(4), text)
    return _LINT_PAIR.sub(lambda m: m.group(1) + LINT_PROMPT
                          + warnings_of(m.group("spec")) + m.group(4), text)


def stale(text: str) -> list[str]:
    """The examples whose shown output differs from the real one."""
    return [m.group("spec").splitlines()[0] for m in _PAIR.finditer(text)
            if m.group("output") != diagnostic_of(m.group("spec"))] + [
        m.group("spec").splitlines()[0] for m in _LINT_PAIR.finditer(text)
        if m.group("output") != warnings_of(m.group("spec"))]


if __name__ == "__main__":
    page = PAGE.read_text(encoding="utf-8")
    PAGE.write_text(refreshed(page), encoding="utf-8")
    print(f"{len(stale(page))} example outputs refreshed in {PAGE}", file=sys.stderr)
