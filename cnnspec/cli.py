"""The `cnnspec` command line. The only module that prints or exits.

Exit status: 0 success, 1 the spec is wrong (diagnostics on stderr), 2 usage error
(bad flags, missing file).
"""

from __future__ import annotations

import argparse
import os
import sys

from . import __version__

EXAMPLES = """\
examples:
  cnnspec check specs/resnet50.cnn
  cnnspec summary specs/googlenet.cnn
  cnnspec summary specs/googlenet.cnn --set aux_logits=false --json
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cnnspec", epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Check, measure and compile convolutional networks written as .cnn specs.")
    parser.add_argument("--version", action="version", version=f"cnnspec {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def spec_command(name: str, help: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help, description=help)
        sub.add_argument("file", metavar="FILE", help="a .cnn spec")
        sub.add_argument("--network", metavar="NAME",
                         help="which network, when the file defines several")
        sub.add_argument("--set", metavar="NAME=VALUE", action="append", default=[],
                         dest="params", help="set a network parameter (repeatable), "
                         "e.g. --set classes=10")
        return sub

    spec_command("check", "prove a spec's shapes; silent when it is right")
    summary = spec_command("summary", "print each layer's shape, parameters, MACs and "
                           "receptive field")
    summary.add_argument("--json", action="store_true", help="print JSON instead of a table")
    summary.add_argument("--depth", type=int, metavar="N",
                         help="one row per block N levels deep (1: stem, stages, head)")
    return parser


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


def _params(pairs: list[str], parser: argparse.ArgumentParser) -> dict:
    params = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.isidentifier():
            parser.error(f"--set takes NAME=VALUE, got {pair!r}")
        params[name] = _param_value(value)
    return params


def _report(problem, stream) -> None:
    text = problem.render()
    if stream.isatty() and not os.environ.get("NO_COLOR"):
        text = text.replace("error[", "\x1b[1;31merror\x1b[0m[")
    print(text, file=stream)


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not os.path.isfile(args.file):
        parser.error(f"no such file: {args.file}")
    from .diagnostics import SpecError

    try:
        from .api import load

        spec = load(args.file, network=args.network, **_params(args.params, parser))
    except SpecError as problem:
        _report(problem, sys.stderr)
        return 1
    if args.command == "summary":
        if args.depth is not None and args.depth < 1:
            parser.error("--depth must be 1 or more")
        _print_summary(spec, as_json=args.json, depth=args.depth)
    return 0


def _print_summary(spec, as_json: bool, depth: int | None) -> None:
    summary = spec.summary()
    if depth is not None:
        from .summary import collapse

        summary = collapse(spec, summary, depth)
    if as_json:
        print(summary.model_dump_json(indent=2))
        return
    from rich.console import Console

    from .summary import table, totals

    # Piped output is not cut to 80 columns: a table nobody can read helps nobody.
    console = Console(highlight=False, width=None if sys.stdout.isatty() else 200)
    console.print(table(summary))
    console.print(totals(summary))
