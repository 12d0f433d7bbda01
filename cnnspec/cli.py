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
  cnnspec compile specs/resnet18.cnn                 # writes resnet18.py (imports only torch)
  cnnspec compile specs/googlenet.cnn --format onnx  # writes googlenet.onnx
  cnnspec render specs/googlenet.cnn -o googlenet.svg --depth 1
  cnnspec graph specs/resnet50.cnn -o resnet50.graphml
  cnnspec compare specs/*.cnn -o comparison.png
"""

FORMATS = {"py": ".py", "pt2": ".pt2", "onnx": ".onnx"}


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
                         help="one row per block instance nested N levels deep "
                         "(1: GoogLeNet's stem, nine Inception modules and head)")
    compile_ = spec_command("compile", "check a spec, print its summary and write it as "
                            "PyTorch source (py), a torch.export program (pt2) or ONNX")
    compile_.add_argument("-o", "--output", metavar="OUT",
                          help="where to write (default: the spec's name with the "
                          "format's extension, in the current directory)")
    compile_.add_argument("--format", choices=sorted(FORMATS),
                          help="py: a standalone nn.Module file that imports only torch "
                          "(default, or taken from OUT's extension); pt2: "
                          "torch.export.save of the eval-mode model; onnx: torch.onnx.export")
    compile_.add_argument("--depth", type=int, metavar="N",
                          help="summary rows per block N levels deep")
    render = spec_command("render", "draw the network: one node per layer, blocks as "
                          "clusters, shapes on the edges")
    render.add_argument("-o", "--output", required=True, metavar="OUT",
                        help="the diagram; its extension picks the format: .svg, .png, "
                        ".pdf (these need Graphviz's dot) or .dot (DOT source)")
    render.add_argument("--depth", type=int, metavar="N",
                        help="one node per block nested N levels deep; repeated "
                        "identical blocks become one node marked xN (1: stem, blocks, head)")
    render.add_argument("--rankdir", choices=("TB", "LR"), default="TB",
                        help="top to bottom (default) or left to right")
    render.add_argument("--no-shapes", dest="shapes", action="store_false",
                        help="leave the output shapes off the edges")
    render.add_argument("--theme", choices=("light", "dark"), default="light")
    render.add_argument("--dpi", type=int, metavar="N",
                        help="resolution of a .png (Graphviz's default is 96)")
    compare = commands.add_parser(
        "compare", help="compare networks: a cost table and the MACs-versus-parameters "
        "chart", description="compare networks: a cost table and the classic chart of "
        "MACs against parameters, bubble area proportional to activation memory")
    compare.add_argument("files", metavar="FILE", nargs="+", help=".cnn specs")
    compare.add_argument("-o", "--output", metavar="OUT",
                         help="also draw the chart: .png, .svg or .pdf")
    compare.add_argument("--json", action="store_true", help="print JSON instead of a table")
    graph = spec_command("graph", "write the layer graph with every layer's shape and "
                         "cost, for networkx and other graph tools")
    graph.add_argument("-o", "--output", required=True, metavar="OUT",
                       help="a .graphml file, or .json (networkx node-link data)")
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
    if args.command == "compare":
        return _compare(args, parser)
    if not os.path.isfile(args.file):
        parser.error(f"no such file: {args.file}")
    _check_output(args, parser)
    from .diagnostics import SpecError

    try:
        from .api import load

        spec = load(args.file, network=args.network, **_params(args.params, parser))
    except SpecError as problem:
        _report(problem, sys.stderr)
        return 1
    if args.command in ("summary", "compile"):
        if args.depth is not None and args.depth < 1:
            parser.error("--depth must be 1 or more")
    if args.command == "summary":
        _print_summary(spec, as_json=args.json, depth=args.depth)
    if args.command == "compile":
        return _compile(spec, args)
    if args.command == "render":
        return _render(spec, args)
    if args.command == "graph":
        return _write_graph(spec, args.output)
    return 0


def _compare(args, parser: argparse.ArgumentParser) -> int:
    from .compare import CHART_FORMATS, chart, compare, table
    from .diagnostics import SpecError

    missing = [f for f in args.files if not os.path.isfile(f)]
    if missing:
        parser.error(f"no such file: {missing[0]}")
    if args.output and not args.output.lower().endswith(CHART_FORMATS):
        parser.error(f"cannot tell the chart format from {args.output!r}: "
                     "name it .png, .svg or .pdf")
    if args.output and _missing_modules(["matplotlib"]):
        return _fail("the chart needs matplotlib: pip install 'cnnspec[chart]' "
                     "(or leave out -o for the table alone)", 2)
    from .api import load

    try:
        specs = [load(f) for f in args.files]
    except SpecError as problem:
        _report(problem, sys.stderr)
        return 1
    comparison = compare(specs)
    if args.json:
        print(comparison.model_dump_json(indent=2))
    else:
        from rich.console import Console

        Console(highlight=False, width=None if sys.stdout.isatty() else 200).print(
            table(comparison))
    if args.output:
        try:
            chart(comparison, args.output)
        except OSError as problem:
            return _fail(f"cannot write {args.output}: {problem.strerror or problem}", 2)
    return 0


def _check_output(args, parser: argparse.ArgumentParser) -> None:
    """Usage errors of `render` and `graph`, caught before the spec is read."""
    if args.command == "render":
        if args.depth is not None and args.depth < 1:
            parser.error("--depth must be 1 or more")
        if args.dpi is not None and args.dpi < 1:
            parser.error("--dpi must be 1 or more")
        from .render import RenderError, output_format

        try:
            output_format(args.output)
        except RenderError as problem:
            parser.error(str(problem))
    elif args.command == "graph" and not args.output.lower().endswith((".graphml", ".json")):
        parser.error(f"cannot tell the graph format from {args.output!r}: "
                     "name it .graphml or .json")


def _render(spec, args) -> int:
    from .render import RenderError, render

    try:
        render(spec, args.output, depth=args.depth, rankdir=args.rankdir,
               shapes=args.shapes, theme=args.theme, dpi=args.dpi)
    except RenderError as problem:  # no `dot`, or dot failed
        print(f"error: {problem}", file=sys.stderr)
        return 2
    except OSError as problem:
        print(f"error: cannot write {args.output}: {problem.strerror or problem}",
              file=sys.stderr)
        return 2
    return 0


def _write_graph(spec, out: str) -> int:
    from .graph import write_graph

    try:
        write_graph(spec, out)
    except OSError as problem:
        print(f"error: cannot write {out}: {problem.strerror or problem}", file=sys.stderr)
        return 2
    return 0


def _compile(spec, args) -> int:
    """Print the summary, write the artifact, say what was written."""
    from pathlib import Path

    chosen = args.format
    if chosen is None:
        suffix = Path(args.output).suffix.lower() if args.output else ""
        chosen = next((f for f, ext in FORMATS.items() if ext == suffix), "py")
    out = Path(args.output) if args.output else Path(Path(args.file).stem + FORMATS[chosen])
    if out.is_dir():
        return _fail(f"{out} is a directory; give a file name with -o", 2)
    if not out.parent.is_dir():
        return _fail(f"cannot write {out}: there is no folder {out.parent}", 2)
    if chosen != "py":
        missing = _missing_modules(["torch"] + (["onnx", "onnxscript"]
                                                if chosen == "onnx" else []))
        if missing:
            extra = "torch" if missing == ["torch"] else "test"
            return _fail(f"--format {chosen} needs {' and '.join(missing)}, which "
                         f"cannot be imported; install it (pip install "
                         f"'cnnspec[{extra}]') or use --format py", 2)
    _print_summary(spec, as_json=False, depth=args.depth)
    try:
        if chosen == "py":
            from .codegen import to_python

            text = to_python(spec, source=args.file)
            out.write_text(text, encoding="utf-8")
            what = f"PyTorch source, class {_class_name(text)}, imports only torch"
        else:
            what = _export(spec, out, chosen)
    except OSError as problem:
        return _fail(f"cannot write {out}: {problem.strerror or problem}", 2)
    except _ExportError as problem:
        return _fail(str(problem), 1)
    print(f"wrote {out} ({what})")
    return 0


class _ExportError(Exception):
    pass


def _missing_modules(names: list[str]) -> list[str]:
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


def _export(spec, out, chosen: str) -> str:
    """torch.export (pt2) or ONNX of the eval-mode model, batch size dynamic."""
    import warnings

    import torch

    from .torch_backend import to_torch

    model = to_torch(spec).eval()
    example = (torch.randn((2,) + tuple(spec.input_shape)),)
    dynamic = {"x": {0: torch.export.Dim("batch")}}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if chosen == "pt2":
                program = torch.export.export(model, example, dynamic_shapes=dynamic)
                torch.export.save(program, str(out))
                return "torch.export program of the eval-mode model; " \
                    "load with torch.export.load(...).module()"
            large = spec.params * 4 > 1_500_000_000  # protobuf stops at 2 GB
            torch.onnx.export(model, example, str(out), dynamo=True, verbose=False,
                              input_names=["input"], output_names=["output"],
                              dynamic_shapes=dynamic, external_data=large)
    except OSError:
        raise
    except Exception as problem:  # an exporter's failure, not the user's spec
        raise _ExportError(f"{'torch.export' if chosen == 'pt2' else 'ONNX export'} "
                           f"failed: {type(problem).__name__}: {problem}") from None
    return "ONNX, eval mode, dynamic batch" + (f"; weights in {out}.data" if large else "")


def _class_name(text: str) -> str:
    import re

    return re.findall(r"^class (\w+)\(", text, re.M)[-1]  # the network comes last


def _fail(message: str, status: int) -> int:
    print(f"cnnspec: error: {message}", file=sys.stderr)
    return status


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
