"""What every command handler shares: `--set` values, printing a diagnostic or a
one-line error, and finding which optional packages are missing.

Takes: parsed flags and problems. Returns: parameters, exit statuses, module names.
"""

from __future__ import annotations

import argparse
import os
import sys

def _param_value(text: str):
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    return text


def spec_params(pairs: list[str], parser: argparse.ArgumentParser) -> dict:
    params = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.isidentifier():
            parser.error(f"--set takes NAME=VALUE, got {pair!r}")
        params[name] = _param_value(value)
    return params


def report(problem, stream) -> None:
    text = problem.render()
    if stream.isatty() and not os.environ.get("NO_COLOR"):
        text = text.replace("error[", "\x1b[1;31merror\x1b[0m[")
    print(text, file=stream)


def fail(message: str, status: int) -> int:
    print(f"cnnspec: error: {message}", file=sys.stderr)
    return status


def missing_modules(names: list[str]) -> list[str]:
    import importlib.util

    missing = []
    for name in names:
        try:
            if importlib.util.find_spec(name) is None:
                missing.append(name)
        except (ImportError, ValueError):
            missing.append(name)
    if "torch" not in missing and "torch" in names:
        try:
            import torch  # noqa: F401  (present but broken counts as missing)
        except ImportError:
            missing.insert(0, "torch")
    return missing
