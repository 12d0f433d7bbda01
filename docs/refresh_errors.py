"""Rewrite the outputs shown in docs/errors.md from what cnnspec prints today.

Each ```cnn-error example followed by a ```text block that starts with
`$ cnnspec check example.cnn` gets that block's body replaced by the real
diagnostic. `tests/test_docs.py` fails when the page and the program disagree;
run `.venv/bin/python docs/refresh_errors.py` after changing a message.
"""

from __future__ import annotations

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


def diagnostic_of(spec: str) -> str:
    """What `cnnspec check example.cnn` prints for this spec."""
    with tempfile.TemporaryDirectory() as folder:
        Path(folder, "example.cnn").write_text(spec, encoding="utf-8")
        here = os.getcwd()
        os.chdir(folder)
        try:
            cnnspec.load("example.cnn")
        except cnnspec.SpecError as problem:
            return problem.render() + "\n"
        finally:
            os.chdir(here)
    return "(no error)\n"


def refreshed(text: str) -> str:
    return _PAIR.sub(lambda m: m.group(1) + PROMPT + diagnostic_of(m.group("spec"))
                     + m.group(4), text)


def stale(text: str) -> list[str]:
    """The examples whose shown output differs from the real one."""
    return [m.group("spec").splitlines()[0] for m in _PAIR.finditer(text)
            if m.group("output") != diagnostic_of(m.group("spec"))]


if __name__ == "__main__":
    page = PAGE.read_text(encoding="utf-8")
    PAGE.write_text(refreshed(page), encoding="utf-8")
    print(f"{len(stale(page))} example outputs refreshed in {PAGE}", file=sys.stderr)
