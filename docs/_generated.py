"""The command line shared by the scripts that generate a page of docs/
(make_architectures.py, make_explain.py): write the page, or with --check only
report whether the page on disk is what the script would write."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def write_or_check(script: str, description: str, output: Path,
                   render: Callable[[], str], argv: list[str] | None = None) -> int:
    """The main of `script` (its __file__): rewrite `output` with `render()`, or with
    --check write nothing and return 1, naming the script to run, if `output`
    differs from what it would write. Returns the exit status."""
    page = output.relative_to(ROOT).as_posix()
    command = Path(script).resolve().relative_to(ROOT).as_posix()
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--check", action="store_true",
                        help=f"do not write; exit 1 if {page} is out of date")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = output.read_text(encoding="utf-8") if output.exists() else ""
        if current != text:
            print(f"{page} is out of date: run .venv/bin/python {command}",
                  file=sys.stderr)
            return 1
        return 0
    output.write_text(text, encoding="utf-8")
    print(f"wrote {page}")
    return 0
