"""The commands that read one spec (`summary`, `lint`, `explain`, `compile`,
`render`, `graph`), plus `compare` over several and `lsp` for editors.

Takes: the loaded `Spec` (or file names) and the parsed flags. Returns: the exit
status; output goes to stdout, problems to stderr.
"""

from __future__ import annotations

import argparse
import os
import sys

from ..backends.export import FORMATS
from .common import fail, missing_modules, report, spec_params
from .training import with_exit_status

def check_output(args, parser: argparse.ArgumentParser) -> None:
    """Usage errors of `render` and `graph`, caught before the spec is read."""
    if args.command == "render":
        if args.dpi is not None and args.dpi < 1:
            parser.error("--dpi must be 1 or more")
        from ..diagrams import RenderError, output_format

        try:
            output_format(args.output)
        except RenderError as problem:
            parser.error(str(problem))
    elif args.command == "graph" and not args.output.lower().endswith((".graphml", ".json")):
        parser.error(f"cannot tell the graph format from {args.output!r}: "
                     "name it .graphml or .json")


def print_summary(spec, as_json: bool, depth: int | None) -> None:
    summary = spec.summary()
    if depth is not None:
        from ..analyses.summary import collapse

        summary = collapse(spec, summary, depth)
    if as_json:
        print(summary.model_dump_json(indent=2))
        return
    from rich.console import Console

    from ..analyses.summary import table, totals

    # Piped output is not cut to 80 columns: a table nobody can read helps nobody.
    console = Console(highlight=False, width=None if sys.stdout.isatty() else 200)
    console.print(table(summary))
    console.print(totals(summary))


def wants_train_memory(args, parser: argparse.ArgumentParser) -> bool:
    """`summary --train`; its other flags without it are a usage error."""
    given = [flag for flag, value, default in (
        ("--batch", args.batch, None), ("--optimizer", args.optimizer, "sgd"),
        ("--amp", args.amp, "off"), ("--fit", args.fit, None),
        ("--device", args.device, "cpu")) if value != default]
    if given and not args.train:
        parser.error(f"{' and '.join(given)} need{'s' if len(given) == 1 else ''} "
                     "--train (they plan training memory)")
    return args.train


def print_train_memory(spec, args, parser: argparse.ArgumentParser) -> int:
    """`summary --train`: the summary, then one training step's memory."""
    import json

    from ..analyses import memory as M

    batch = args.batch
    if batch is None and spec.recipe is not None:
        batch = spec.recipe.batch
    if batch is None:
        parser.error("--train needs --batch N (the spec's train { } gives no batch)")
    if batch < 1:
        parser.error(f"--batch must be 1 or more, found {batch}")
    plan = spec.train_memory(batch, optimizer=args.optimizer,
                             amp=None if args.amp == "off" else args.amp,
                             fit=args.fit, device=args.device)
    summary = spec.summary()
    layers = plan.layers
    if args.depth is not None:
        from ..analyses.summary import collapse

        summary = collapse(spec, summary, args.depth)
        layers = M.collapse(spec, plan, args.depth)
    if args.json:
        data = json.loads(summary.model_dump_json())
        data["train_memory"] = json.loads(plan.model_copy(
            update={"layers": layers}).model_dump_json())
        print(json.dumps(data, indent=2))
        return 0
    from rich.console import Console

    from ..analyses.summary import table, totals

    console = Console(highlight=False, width=None if sys.stdout.isatty() else 200)
    console.print(table(summary))
    console.print(totals(summary))
    console.print()
    console.print(M.table(plan, layers))
    console.print(M.totals(plan))
    return 0


def lint_command(spec, args) -> int:
    """Warnings on stdout, as linters print them; 1 with --strict when any."""
    from ..analyses.lint import lint

    warnings = lint(spec)
    colour = sys.stdout.isatty() and not os.environ.get("NO_COLOR")
    texts = [w.render() for w in warnings]
    if colour:
        texts = [t.replace("warning[", "\x1b[1;33mwarning\x1b[0m[", 1) for t in texts]
    if texts:
        print("\n\n".join(texts))
    if warnings:
        print(f"{args.file}: {len(warnings)} warning{'s' if len(warnings) > 1 else ''}",
              file=sys.stderr)
    return 1 if warnings and args.strict else 0


def explain_command(spec, args, parser: argparse.ArgumentParser) -> int:
    """`cnnspec explain`: the arithmetic of every number, as panels or markdown."""
    if args.depth is not None and args.depth < 1:
        parser.error("--depth must be 1 or more")
    from ..analyses.explain import UnknownLayer
    from ..analyses.explain.render import markdown, renderables

    try:
        explanation = spec.explain(args.layers or None, depth=args.depth)
    except UnknownLayer as problem:
        return fail(str(problem), 2)
    if args.markdown:
        print(markdown(explanation), end="")
        return 0
    from rich.console import Console

    console = Console(highlight=False, width=None if sys.stdout.isatty() else 200)
    for item in renderables(explanation):
        console.print(item)
    return 0


def compile_command(spec, args) -> int:
    """Print the summary, write the artifact, say what was written."""
    from pathlib import Path

    chosen = args.format
    if chosen is None:
        suffix = Path(args.output).suffix.lower() if args.output else ""
        chosen = next((f for f, ext in FORMATS.items() if ext == suffix), "py")
    out = Path(args.output) if args.output else Path(Path(args.file).stem + FORMATS[chosen])
    if out.is_dir():
        return fail(f"{out} is a directory; give a file name with -o", 2)
    if not out.parent.is_dir():
        return fail(f"cannot write {out}: there is no folder {out.parent}", 2)
    needed = (["torch"] if chosen != "py" or args.weights else []) \
        + (["onnx", "onnxscript"] if chosen == "onnx" else []) \
        + (["safetensors"] if args.weights else [])
    missing = missing_modules(needed)
    if missing:
        extra = "torch" if missing == ["torch"] else "train" if args.weights else "test"
        what = "--weights" if args.weights and chosen == "py" else f"--format {chosen}"
        return fail(f"{what} needs {' and '.join(missing)}, which cannot be imported; "
                     f"install it (pip install 'cnnspec[{extra}]')"
                     + ("" if args.weights else " or use --format py"), 2)
    return with_exit_status(lambda: _write_artifact(spec, args, out, chosen))


def _write_artifact(spec, args, out, chosen: str) -> int:
    from ..backends.export import ExportError, write

    model = None
    if args.weights:
        from ..training.evaluation import trained_model

        spec, model = trained_model(spec, args.weights)
    print_summary(spec, as_json=False, depth=args.depth)
    try:
        lines = write(spec, out, chosen, source=args.file, model=model,
                      weights=args.weights)
    except OSError as problem:
        return fail(f"cannot write {out}: {problem.strerror or problem}", 2)
    except ExportError as problem:
        return fail(str(problem), 1)
    for line in lines:
        print(f"wrote {line}")
    return 0


def render_command(spec, args) -> int:
    from ..diagrams import RenderError, render

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


def graph_command(spec, out: str) -> int:
    from ..diagrams.graph import write_graph

    try:
        write_graph(spec, out)
    except OSError as problem:
        print(f"error: cannot write {out}: {problem.strerror or problem}", file=sys.stderr)
        return 2
    return 0


def compare_command(args, parser: argparse.ArgumentParser) -> int:
    from ..analyses.compare import CHART_FORMATS, chart, compare, table
    from ..diagnostics import SpecError

    missing = [f for f in args.files if not os.path.isfile(f)]
    if missing:
        parser.error(f"no such file: {missing[0]}")
    if args.output and not args.output.lower().endswith(CHART_FORMATS):
        parser.error(f"cannot tell the chart format from {args.output!r}: "
                     "name it .png, .svg or .pdf")
    if args.output and missing_modules(["matplotlib"]):
        return fail("the chart needs matplotlib: pip install 'cnnspec[chart]' "
                     "(or leave out -o for the table alone)", 2)
    params = spec_params(args.params, parser)
    accuracies = {}
    if args.accuracy:
        from ..analyses.compare import AccuracyFileError, read_accuracies

        try:
            accuracies = read_accuracies(args.accuracy)
        except AccuracyFileError as problem:
            return fail(str(problem), 2)
    from ..api import load

    try:
        specs = [load(f, network=args.network, **params) for f in args.files]
    except SpecError as problem:
        report(problem, sys.stderr)
        return 1
    # torchvision's accuracies go in the table, the JSON and the chart alike;
    # torchvision is imported only when a spec could be one of its models (a
    # 1000-class classifier of 3xHxH images)
    comparison = compare(specs, accuracies=accuracies, torchvision=True)
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
            return fail(f"cannot write {args.output}: {problem.strerror or problem}", 2)
    return 0


def lsp_command() -> int:
    """`cnnspec lsp`: serve one editor until it says exit (docs/editors.md)."""
    try:
        from ..lsp.server import serve
    except ModuleNotFoundError as missing:
        package = (missing.name or "").split(".")[0]
        if package not in ("pygls", "lsprotocol"):
            raise
        return fail(f"`cnnspec lsp` needs {package}: pip install \"cnnspec[lsp]\"", 2)
    serve()
    return 0
