"""The `cnnspec` command line, the only package that prints or exits: `parser` (the
flags and help), `spec_commands` (summary, lint, explain, compile, render, graph,
compare, lsp), `training` (train, evaluate, predict: flags to `cnnspec.training`),
`common` (what they share); `main` here parses and dispatches.

Exit status: 0 success, 1 the spec is wrong (diagnostics on stderr; `lint --strict`:
a warning), 2 usage error (bad flags, missing file). A reader that closes the pipe
early (`| head`) is not an error: the rest of stdout is dropped, the command finishes
its work and exits as it would have (0), with no traceback.
"""

from __future__ import annotations

import os
import sys

from .common import report, spec_params
from .parser import build_parser
from .spec_commands import (
    check_output,
    compare_command,
    compile_command,
    explain_command,
    graph_command,
    lint_command,
    lsp_command,
    print_summary,
    print_train_memory,
    render_command,
    wants_train_memory,
)
from .training import evaluate_or_predict, recipe_command, train_command

def main(argv: list[str] | None = None) -> int:
    """Run one command; its exit status. Output cut short by a reader that stops
    reading (`cnnspec summary X | head`) is not an error: the rest of the output is
    dropped, the command still does its work (compile still writes its file) and
    the status is what it would have been (0), with no traceback."""
    guard = _ClosedPipeGuard(sys.stdout)
    sys.stdout = guard
    try:
        return _main(argv)
    finally:
        if sys.stdout is guard:
            sys.stdout = guard.stream


class _ClosedPipeGuard:
    """stdout, except that a broken pipe silently discards what follows."""

    def __init__(self, stream):
        self.stream = stream
        self.broken = False

    def write(self, text):
        if not self.broken:
            try:
                return self.stream.write(text)
            except BrokenPipeError:
                self._discard()
        return len(text)

    def writelines(self, lines):
        for line in lines:
            self.write(line)

    def flush(self):
        if not self.broken:
            try:
                self.stream.flush()
            except BrokenPipeError:
                self._discard()

    def _discard(self):
        """From now on write nowhere; point the file descriptor at os.devnull too,
        so that the flush at exit finds no closed pipe to complain about."""
        self.broken = True
        try:
            fd = self.stream.fileno()
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, fd)
            os.close(devnull)
        except (AttributeError, OSError, ValueError):
            pass

    def __getattr__(self, name):
        return getattr(self.stream, name)


def _main(argv: list[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    parser = args.command_parser
    if args.command == "train":
        return train_command(args, parser, sys.argv[1:] if argv is None else list(argv))
    if args.command == "compare":
        return compare_command(args, parser)
    if args.command == "recipe":
        return recipe_command(args, parser)
    if args.command in ("evaluate", "predict"):
        return evaluate_or_predict(args, parser)
    if args.command == "lsp":
        return lsp_command()
    if not os.path.isfile(args.file):
        parser.error(f"no such file: {args.file}")
    check_output(args, parser)
    from ..diagnostics import SpecError

    try:
        from ..api import load

        spec = load(args.file, network=args.network, **spec_params(args.params, parser))
    except SpecError as problem:
        report(problem, sys.stderr)
        return 1
    if args.command == "lint":
        return lint_command(spec, args)
    if args.command == "summary":
        if wants_train_memory(args, parser):
            return print_train_memory(spec, args, parser)
        print_summary(spec, as_json=args.json, depth=args.depth)
    if args.command == "compile":
        return compile_command(spec, args)
    if args.command == "render":
        return render_command(spec, args)
    if args.command == "graph":
        return graph_command(spec, args.output)
    if args.command == "explain":
        return explain_command(spec, args, parser)
    return 0


__all__ = ["main"]
