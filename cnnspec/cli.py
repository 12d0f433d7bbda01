"""The `cnnspec` command line. The only module that prints or exits.

Exit status: 0 success, 1 the spec is wrong (diagnostics on stderr; `lint --strict`:
a warning), 2 usage error (bad flags, missing file). A reader that closes the pipe
early (`| head`) is not an error: the rest of stdout is dropped, the command finishes
its work and exits as it would have (0), with no traceback.
"""

from __future__ import annotations

import argparse
import os
import sys

from . import __version__
from .export import FORMATS

EXAMPLES = """\
examples:
  cnnspec check specs/resnet50.cnn
  cnnspec summary specs/googlenet.cnn
  cnnspec summary specs/googlenet.cnn --set aux_logits=false --json
  cnnspec compile specs/resnet18.cnn                 # writes resnet18.py (imports only torch)
  cnnspec compile specs/googlenet.cnn --format onnx  # writes googlenet.onnx
  cnnspec compile specs/lenet5.cnn --weights runs/lenet5/weights.safetensors
  cnnspec render specs/googlenet.cnn -o googlenet.svg --depth 1
  cnnspec render specs/googlenet.cnn -o googlenet.html   # click blocks open, search layers
  cnnspec graph specs/resnet50.cnn -o resnet50.graphml
  cnnspec compare specs/*.cnn -o comparison.png
  cnnspec explain specs/alexnet.cnn conv1            # every number with its arithmetic
  cnnspec explain specs/vgg16.cnn --markdown         # a table for lecture notes
  cnnspec train specs/lenet5.cnn --data digits       # trains in seconds; see runs/lenet5
  cnnspec train specs/resnet18.cnn --data ~/pets --epochs 30 --nproc 2
  cnnspec train specs/resnet18.cnn --resume runs/resnet18
  cnnspec evaluate specs/lenet5.cnn --weights runs/lenet5/weights.safetensors --data digits
  cnnspec evaluate specs/lenet5.cnn --weights runs/lenet5*/weights.safetensors --json
  cnnspec evaluate specs/alexnet.cnn --weights alexnet.pth --data ~/val --tta ten_crop -o confusion.png
  cnnspec predict specs/lenet5.cnn --weights runs/lenet5/weights.safetensors digit.png
  cnnspec lsp                                        # the language server editors start
"""



def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cnnspec", epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Check, measure and compile convolutional networks written as .cnn specs.")
    parser.add_argument("--version", action="version", version=f"cnnspec {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def spec_command(name: str, help: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help, description=help)
        _spec_arguments(sub, "e.g. --set classes=10")
        return sub

    spec_command("check", "prove a spec's shapes; silent when it is right")
    lint = spec_command("lint", "warn about legal but doubtful design: uneven "
                        "padding, unread pixels, oversized classifiers, memory-heavy "
                        "concatenations, squashed logits, wasted biases")
    lint.add_argument("--strict", action="store_true",
                      help="exit 1 when there is any warning (for CI)")
    summary = spec_command("summary", "print each layer's shape, parameters, MACs and "
                           "receptive field")
    summary.add_argument("--json", action="store_true", help="print JSON instead of a table")
    summary.add_argument("--depth", type=_depth, metavar="N",
                         help="one row per block instance nested N levels deep, N >= 1 "
                         "(1: GoogLeNet's stem, nine Inception modules and head; "
                         "without --depth: every layer)")
    train = summary.add_argument_group(
        "training memory (docs/costs.md, Training memory)")
    train.add_argument("--train", action="store_true",
                       help="also plan one training step's memory: parameters, "
                       "gradients, optimizer state and what autograd saves, per layer")
    train.add_argument("--batch", type=int, metavar="N",
                       help="images per step (default: the spec's train { batch })")
    train.add_argument("--optimizer", choices=("sgd", "sgd_momentum", "adam"),
                       default="sgd", help="state per trainable parameter: sgd none, "
                       "sgd_momentum one buffer, adam two (default: sgd)")
    train.add_argument("--amp", choices=("off", "bf16", "fp16"), default="off",
                       help="autocast: conv and linear run (and save) in half precision")
    train.add_argument("--fit", type=_size, metavar="SIZE",
                       help="also the largest batch that fits SIZE (24GiB, 80GB, 512MiB)")
    train.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                       help="cpu: the rules measured on this build (default); cuda: "
                       "dropout keeps a 1-byte mask, autocast runs layernorm, softmax "
                       "and softplus in fp32")
    compile_ = spec_command("compile", "check a spec, print its summary and write it as "
                            "PyTorch source (py), a torch.export program (pt2) or ONNX")
    compile_.add_argument("-o", "--output", metavar="OUT",
                          help="where to write (default: the spec's name with the "
                          "format's extension, in the current directory)")
    compile_.add_argument("--format", choices=sorted(FORMATS),
                          help="py: a standalone nn.Module file that imports only torch "
                          "(default, or taken from OUT's extension); pt2: "
                          "torch.export.save of the eval-mode model; onnx: torch.onnx.export")
    compile_.add_argument("--depth", type=_depth, metavar="N",
                          help="summary rows per block N levels deep (N >= 1)")
    compile_.add_argument("--weights", metavar="FILE",
                          help="trained weights to carry (a run's weights.safetensors "
                          "or a state dict of this network): py writes them beside "
                          "the source with a load_trained(); pt2 and onnx hold them")
    render = spec_command("render", "draw the network: one node per layer, blocks as "
                          "clusters, shapes on the edges")
    render.add_argument("-o", "--output", required=True, metavar="OUT",
                        help="the diagram; its extension picks the format: .svg, .png, "
                        ".pdf (these need Graphviz's dot), .dot (DOT source) or .html "
                        "(an interactive explorer in one offline file, needs dot: "
                        "blocks open by click, pan, zoom, search, each layer's facts)")
    render.add_argument("--depth", type=_depth, metavar="N",
                        help="one node per block nested N levels deep (N >= 1); repeated "
                        "identical blocks become one node marked xN (1: stem, blocks, head); "
                        ".html starts at N (default 1) and opens down to single layers")
    render.add_argument("--rankdir", choices=("TB", "LR"), default="TB",
                        help="top to bottom (default) or left to right")
    render.add_argument("--no-shapes", dest="shapes", action="store_false",
                        help="leave the output shapes off the edges")
    render.add_argument("--theme", choices=("light", "dark"), default="light")
    render.add_argument("--dpi", type=int, metavar="N",
                        help="resolution of a .png (Graphviz's default is 96)")
    explain = spec_command("explain", "every number with its arithmetic: output sizes, "
                           "parameters, MACs, memory and receptive fields, formulas "
                           "with the numbers substituted")
    explain.add_argument("layers", metavar="LAYER", nargs="*",
                         help="layers to explain (default: all); a block or group name "
                         "(inception3a, features) gives its layers, then their sums")
    explain.add_argument("--depth", type=int, metavar="N",
                         help="one record per block instance nested N levels deep, "
                         "summing its layers")
    explain.add_argument("--markdown", action="store_true",
                         help="print a markdown table for lecture notes, with totals "
                         "and where the parameters and the memory are")
    compare = commands.add_parser(
        "compare", help="compare networks: a cost table and the accuracy-versus-cost "
        "chart", formatter_class=argparse.RawDescriptionHelpFormatter,
        description=COMPARE_DESCRIPTION)
    compare.add_argument("files", metavar="FILE", nargs="+", help=".cnn specs")
    compare.add_argument("--network", metavar="NAME",
                         help="which network to take from every FILE (for files "
                         "that define several; each FILE must define NAME)")
    compare.add_argument("--set", metavar="NAME=VALUE", action="append", default=[],
                         dest="params", help="set a network parameter of every FILE "
                         "(repeatable); e.g. --set classes=10")
    compare.add_argument("-o", "--output", metavar="OUT",
                         help="also draw the chart: .png, .svg or .pdf")
    compare.add_argument("--accuracy", metavar="CSV",
                         help="top-1 accuracies (%%) for the chart: a CSV file with the "
                         "header spec,top1 (spec: the network's or the file's name); "
                         "it overrides torchvision's")
    compare.add_argument("--json", action="store_true", help="print JSON instead of a table")
    graph = spec_command("graph", "write the layer graph with every layer's shape and "
                         "cost, for networkx and other graph tools")
    graph.add_argument("-o", "--output", required=True, metavar="OUT",
                       help="a .graphml file, or .json (networkx node-link data)")
    lsp = commands.add_parser(
        "lsp", help="run the language server for editors on stdin/stdout",
        description="The language server for .cnn files: diagnostics as you type, hover "
        "(shapes, parameters, MACs, arithmetic), go to definition, completion, outline. "
        "Editors start it; see docs/editors.md. Needs pip install \"cnnspec[lsp]\".")
    lsp.add_argument("--stdio", action="store_true",
                     help="talk over stdin/stdout (the default and only transport; "
                     "accepted because editors pass it)")
    _train_parser(commands)
    _evaluate_parsers(commands)
    for sub in commands.choices.values():  # errors after parsing show its own usage
        sub.set_defaults(command_parser=sub)
    return parser


def _size(text: str) -> int:
    """--fit SIZE: bytes, as 24GiB (2^30), 80GB (10^9), 512MiB or a plain number."""
    from .memory import parse_size

    try:
        return parse_size(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a memory size: {text!r} (write e.g. 24GiB, 80GB, 512MiB or a number "
            "of bytes)") from None


def _depth(text: str) -> int:
    """--depth N: a whole number >= 1 (0 would be the network as one row)."""
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or value < 1:
        raise argparse.ArgumentTypeError(
            f"must be a whole number >= 1, found {text!r} (1: one row per top-level "
            "block; leave --depth out for every layer)")
    return value


def _spec_arguments(sub: argparse.ArgumentParser, set_example: str) -> None:
    """FILE, --network and --set, as every command that reads a spec takes them."""
    sub.add_argument("file", metavar="FILE", help="a .cnn spec")
    sub.add_argument("--network", metavar="NAME",
                     help="which network, when the file defines several")
    sub.add_argument("--set", metavar="NAME=VALUE", action="append", default=[],
                     dest="params", help=f"set a network parameter (repeatable); "
                     f"{set_example}")


def _evaluate_parsers(commands) -> None:
    evaluate = commands.add_parser(
        "evaluate", help="score trained weights on a data set's validation split: "
        "top-1, top-5, loss, per-class accuracy, confusion matrix",
        description="Score trained weights on the validation split of a data set. "
        "Several weights files make an ensemble that averages their softmax. "
        "See docs/training.md, section 10.")
    predict = commands.add_parser(
        "predict", help="the most probable classes of image files, with probabilities",
        description="Classify image files with trained weights: the top-5 classes and "
        "their probabilities per image (class names from the run.json beside the "
        "weights, else indices).")
    for sub in (evaluate, predict):
        _spec_arguments(sub, "by default those of the weights' run.json")
        # predict: the images follow, so one file per --weights (repeatable)
        several = {"nargs": "+", "action": "extend"} if sub is evaluate \
            else {"action": "append"}
        sub.add_argument("--weights", metavar="W", required=True, **several,
                         help="a weights file (a run's weights.safetensors, or a .pth "
                         "state dict); several make an ensemble"
                         + ("" if sub is evaluate else " (repeat --weights)"))
        sub.add_argument("--tta", choices=("none", "flip", "ten_crop"), default="none",
                         help="test-time augmentation: average the softmax over the "
                         "image and its mirror (flip), or AlexNet's ten crops")
        sub.add_argument("--batch", type=int, default=64, metavar="N",
                         help="images per forward pass (64)")
        sub.add_argument("--device", choices=("auto", "cpu", "cuda", "mps"),
                         default="auto")
        sub.add_argument("--json", action="store_true", help="print one JSON object")
    evaluate.add_argument("--data", metavar="SOURCE", help="digits, synthetic[:N], "
                          "cifar10:PATH, cifar100:PATH or an image folder; default: "
                          "the data of the weights' run")
    evaluate.add_argument("-o", "--output", metavar="OUT", help="also draw the "
                          "confusion matrix: .png, .svg or .pdf")
    predict.add_argument("images", metavar="IMAGE", nargs="+", help="image files")
    predict.add_argument("--top", type=int, default=5, metavar="K",
                         help="how many classes per image (5)")


def _train_parser(commands) -> None:
    train = commands.add_parser(
        "train", help="train a spec on a data set with its `train { }` recipe",
        description="Train a spec with its `train { }` recipe (flags override it). "
        "Writes a run folder: run.json, metrics.jsonl, weights.safetensors (the best "
        "epoch), last.ckpt (for --resume) and curves.png. See docs/training.md.",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=TRAIN_EXAMPLES)
    _spec_arguments(train, "`classes` is taken from the data unless set")
    data = train.add_argument_group("data and output")
    data.add_argument("--data", metavar="SOURCE", help="digits (scikit-learn's "
                      "handwritten digits), synthetic[:N], cifar10:PATH, cifar100:PATH, "
                      "or an image folder PATH (PATH/train/CLASS/*, PATH/val/CLASS/*); "
                      "on --resume, the run's own data by default")
    data.add_argument("--val-fraction", type=float, metavar="F",
                      help="held out for validation when a folder has no val/ (0.1)")
    data.add_argument("--workers", type=int, metavar="N",
                      help="data-loading processes (0: load in the training process)")
    data.add_argument("--out", metavar="RUN_DIR",
                      help="the run folder (default runs/NAME, runs/NAME-2, ...)")
    data.add_argument("--resume", metavar="RUN_DIR",
                      help="continue the run in RUN_DIR from its last.ckpt, exactly")
    data.add_argument("--json", action="store_true", help="print the final metrics as "
                      "one JSON object on the last line (progress goes to stderr)")
    recipe = train.add_argument_group("recipe (overrides the spec's `train { }`)")
    recipe.add_argument("--epochs", type=int, metavar="N")
    recipe.add_argument("--batch", type=int, metavar="N",
                        help="the global batch, split over --nproc processes")
    recipe.add_argument("--lr", type=float, metavar="X", help="the optimizer's learning rate")
    recipe.add_argument("--weight-decay", type=float, metavar="X")
    recipe.add_argument("--no-decay-norm-bias", dest="decay_norm_bias",
                        action="store_false", default=None,
                        help="no weight decay on batchnorm and bias parameters")
    recipe.add_argument("--label-smoothing", type=float, metavar="X")
    recipe.add_argument("--clip-grad", type=float, metavar="NORM",
                        help="clip the gradient norm to NORM")
    recipe.add_argument("--ema", type=float, metavar="DECAY",
                        help="validate and save an exponential moving average of the "
                        "weights (e.g. 0.999)")
    recipe.add_argument("--seed", type=int, metavar="N", help="random seed (0)")
    tune = train.add_argument_group("fine-tuning")
    tune.add_argument("--weights", metavar="FILE", help="start from these weights: "
                      ".safetensors, or a PyTorch .pth/.pt state dict (torchvision's, "
                      "timm's, a DDP or torch.compile checkpoint); the classifier may "
                      "differ, the rest must fit")
    tune.add_argument("--freeze", metavar="PATTERNS", help="freeze layers by name: "
                      "comma-separated globs, e.g. conv1,bn1,layer1.*")
    tune.add_argument("--unfreeze-from", metavar="LAYER",
                      help="freeze every layer before LAYER (e.g. layer4)")
    tune.add_argument("--reinit", metavar="PATTERNS", help="layers to start fresh "
                      "instead of from --weights (globs, as --freeze), e.g. the "
                      "task-specific top: c5,f6,output")
    tune.add_argument("--lr-head", type=float, metavar="X",
                      help="the classifier's own learning rate (the rest keeps --lr), "
                      "for discriminative fine-tuning")
    device = train.add_argument_group("device and scale")
    device.add_argument("--device", choices=("auto", "cpu", "cuda", "mps"))
    device.add_argument("--amp", choices=("off", "bf16", "fp16"),
                        help="mixed precision (fp16 uses a gradient scaler)")
    device.add_argument("--channels-last", action="store_true", default=None)
    device.add_argument("--compile", action="store_true", default=None,
                        help="torch.compile the model")
    device.add_argument("--nproc", type=int, metavar="N", help="train in N processes "
                        "on this machine (data parallel, through torchrun)")
    device.add_argument("--sync-batchnorm", action="store_true", default=None,
                        help="batchnorm statistics over all processes' batches")


COMPARE_DESCRIPTION = """\
compare networks: a cost table and the chart of Canziani et al. (2017), "An Analysis of
Deep Neural Network Models for Practical Applications".

The table: eval-mode cost per image. Params and MACs (multiply-accumulates) leave
auxiliary heads out; Activations is every layer's output; RF is the receptive field of
the features before the network pools globally; Depth is the number of conv and
linear layers on the longest input-to-output path, the way papers count depth
(ResNet-50: 50, VGG-16: 16, GoogLeNet: 22).

The chart (-o): top-1 accuracy against MACs, bubble area proportional to parameters,
for the networks whose ImageNet top-1 is known: from torchvision's weights when the
file's name is a torchvision model (resnet50.cnn, alexnet_torchvision.cnn) and its
input matches the weights' crop, or from --accuracy. When no accuracy is known: MACs
against parameters, bubble area proportional to activation memory.
"""

TRAIN_EXAMPLES = """\
examples:
  cnnspec train specs/lenet5.cnn --data digits
  cnnspec train specs/alexnet.cnn --data ~/imagenette --epochs 30 --device cuda --amp bf16
  cnnspec train specs/resnet18.cnn --data cifar10:~/cifar --set classes=10 --nproc 2
  cnnspec train specs/lenet5.cnn --resume runs/lenet5 --epochs 40
  cnnspec train specs/resnet18_transfer.cnn --data ~/bees --weights resnet18.pth
  cnnspec train specs/resnet18.cnn --data ~/bees --weights resnet18.pth --freeze 'conv1,bn1,layer1.*'
  torchrun --nproc-per-node 4 -m cnnspec train specs/resnet50.cnn --data ~/imagenet

exit status: 0 trained, 1 the spec or the run is wrong (a non-finite loss), 2 usage
(a bad flag, missing data), 130 interrupted (the last finished epoch is kept)
"""

TRAIN_OVERRIDES = ("epochs", "batch", "lr", "weight_decay", "decay_norm_bias",
                   "label_smoothing", "clip_grad", "ema", "seed", "device", "amp",
                   "channels_last", "compile", "workers", "sync_batchnorm", "val_fraction",
                   "weights", "freeze", "unfreeze_from", "reinit", "lr_head")


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
    parser = _parser()
    args = parser.parse_args(argv)
    parser = args.command_parser
    if args.command == "train":
        return _train(args, parser, sys.argv[1:] if argv is None else list(argv))
    if args.command == "compare":
        return _compare(args, parser)
    if args.command in ("evaluate", "predict"):
        return _evaluate_or_predict(args, parser)
    if args.command == "lsp":
        return _lsp()
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
    if args.command == "lint":
        return _lint(spec, args)
    if args.command == "summary":
        if _wants_train_memory(args, parser):
            return _print_train_memory(spec, args, parser)
        _print_summary(spec, as_json=args.json, depth=args.depth)
    if args.command == "compile":
        return _compile(spec, args)
    if args.command == "render":
        return _render(spec, args)
    if args.command == "graph":
        return _write_graph(spec, args.output)
    if args.command == "explain":
        return _explain(spec, args, parser)
    return 0


def _lsp() -> int:
    """`cnnspec lsp`: serve one editor until it says exit (docs/editors.md)."""
    try:
        from .lsp.server import serve
    except ModuleNotFoundError as missing:
        package = (missing.name or "").split(".")[0]
        if package not in ("pygls", "lsprotocol"):
            raise
        return _fail(f"`cnnspec lsp` needs {package}: pip install \"cnnspec[lsp]\"", 2)
    serve()
    return 0


def _explain(spec, args, parser: argparse.ArgumentParser) -> int:
    """`cnnspec explain`: the arithmetic of every number, as panels or markdown."""
    if args.depth is not None and args.depth < 1:
        parser.error("--depth must be 1 or more")
    from .explain import UnknownLayer
    from .explain_render import markdown, renderables

    try:
        explanation = spec.explain(args.layers or None, depth=args.depth)
    except UnknownLayer as problem:
        return _fail(str(problem), 2)
    if args.markdown:
        print(markdown(explanation), end="")
        return 0
    from rich.console import Console

    console = Console(highlight=False, width=None if sys.stdout.isatty() else 200)
    for item in renderables(explanation):
        console.print(item)
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
    params = _params(args.params, parser)
    accuracies = {}
    if args.accuracy:
        from .compare import AccuracyFileError, read_accuracies

        try:
            accuracies = read_accuracies(args.accuracy)
        except AccuracyFileError as problem:
            return _fail(str(problem), 2)
    from .api import load

    try:
        specs = [load(f, network=args.network, **params) for f in args.files]
    except SpecError as problem:
        _report(problem, sys.stderr)
        return 1
    # torchvision's accuracies are for the chart; it is imported only when a spec
    # could be one of its models (a 1000-class 3xHxH classifier)
    comparison = compare(specs, accuracies=accuracies, torchvision=bool(args.output))
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


def _lint(spec, args) -> int:
    """Warnings on stdout, as linters print them; 1 with --strict when any."""
    from .lint import lint

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


def _without_nproc(argv: list[str]) -> list[str]:
    kept, skip = [], False
    for item in argv:
        if skip:
            skip = False
        elif item == "--nproc":
            skip = True
        elif not item.startswith("--nproc="):
            kept.append(item)
    return kept


def _train(args, parser: argparse.ArgumentParser, argv: list[str]) -> int:
    """`cnnspec train`: flags to `cnnspec.training.run.train`, outcomes to exit codes."""
    if not os.path.isfile(args.file):
        parser.error(f"no such file: {args.file}")
    if args.nproc is not None and args.nproc < 1:
        parser.error("--nproc must be 1 or more")
    if args.data is None and args.resume is None:
        parser.error("give the data to train on: --data digits, --data synthetic, "
                     "--data cifar10:PATH or --data PATH (an image folder)")
    missing = _missing_modules(["torch", "torchvision", "safetensors"])
    if missing:
        return _fail(f"training needs {', '.join(missing)}: pip install "
                     "'cnnspec[train]'", 2)
    return _with_exit_status(lambda: _train_run(args, parser, argv))


def _train_run(args, parser: argparse.ArgumentParser, argv: list[str]) -> int:
    from .training.progress import Reporter
    from .training.run import Interrupted, preflight, train

    overrides = {name: getattr(args, name) for name in TRAIN_OVERRIDES}
    options = dict(network=args.network, params=_params(args.params, parser),
                   resume=args.resume, **overrides)
    if args.nproc and args.nproc > 1 and "WORLD_SIZE" not in os.environ:
        preflight(args.file, args.data, nproc=args.nproc, **options)
        from .training.distributed import launch

        return launch(_without_nproc(argv), args.nproc)
    try:
        result = train(args.file, data=args.data, out=args.out,
                       reporter=Reporter(sys.stderr if args.json else sys.stdout),
                       command=" ".join(["cnnspec"] + argv), **options)
    except Interrupted as stop:
        if stop.saved == 0:
            print("\ninterrupted during the first epoch; nothing was saved",
                  file=sys.stderr)
        else:
            print(f"\ninterrupted; epochs 1-{stop.saved} are saved in {stop.run_dir}. "
                  f"Continue with:\n  cnnspec train {args.file} --resume {stop.run_dir}",
                  file=sys.stderr)
        return 130
    if int(os.environ.get("RANK", "0")) != 0:
        return 0
    if args.json:
        import json

        print(json.dumps(result.metrics))
    else:
        print(f"weights: {result.run_dir / 'weights.safetensors'} (epoch "
              f"{result.metrics['best_epoch']}); curves: {result.run_dir / 'curves.png'}")
    return 0


def _with_exit_status(action) -> int:
    """Run a training-backend command; its errors become one message and a status:
    the spec 1, usage and data 2, a run that cannot go on 1."""
    from .diagnostics import SpecError
    from .training.errors import TrainingError, UsageError

    try:
        return action()
    except SpecError as problem:
        _report(problem, sys.stderr)
        return 1
    except UsageError as problem:
        return _fail(str(problem), 2)
    except TrainingError as problem:
        return _fail(str(problem), 1)


def _evaluate_or_predict(args, parser: argparse.ArgumentParser) -> int:
    """`cnnspec evaluate` and `cnnspec predict`: flags to
    `cnnspec.training.evaluation`, the report to a table or JSON, errors to exit codes."""
    if not os.path.isfile(args.file):
        parser.error(f"no such file: {args.file}")
    if args.batch < 1:
        parser.error("--batch must be 1 or more")
    output = getattr(args, "output", None)
    if output and not output.lower().endswith((".png", ".svg", ".pdf")):
        parser.error(f"cannot tell the image format from {output!r}: "
                     "name it .png, .svg or .pdf")
    needed = ["torch", "torchvision", "safetensors"] + (["matplotlib"] if output else [])
    missing = _missing_modules(needed)
    if missing:
        return _fail(f"{args.command} needs {', '.join(missing)}: pip install "
                     "'cnnspec[train]'", 2)
    options = {"network": args.network, "params": _params(args.params, parser),
               "tta": args.tta, "batch": args.batch, "device": args.device}
    run = _predict if args.command == "predict" else _evaluate
    return _with_exit_status(lambda: run(args, options))


def _evaluate(args, options: dict) -> int:
    from .training.evaluation import draw_confusion, evaluate

    report = evaluate(args.file, args.weights, args.data, **options)
    if args.output:
        draw_confusion(report, args.output)
    if args.json:
        import json

        print(json.dumps(report.to_json()))
        return 0
    from rich.console import Console
    from rich.table import Table

    console = Console(highlight=False, width=None if sys.stdout.isatty() else 200)
    for note in report.notes:
        console.print(f"data: {note}")
    ensemble = f", an ensemble of {len(report.members)}" if report.members else ""
    console.print(f"{report.spec} on {report.data}: {report.images:,} validation "
                  f"images, tta {report.tta}{ensemble}")
    scores = Table("weights", "top-1", "top-5", "loss")
    for member in report.members:
        scores.add_row(member.weights, f"{member.top1:.2%}", f"{member.top5:.2%}",
                       f"{member.loss:.4f}")
    scores.add_row("ensemble" if report.members else args.weights[0],
                   f"{report.top1:.2%}", f"{report.top5:.2%}", f"{report.loss:.4f}",
                   style="bold" if report.members else None)
    console.print(scores)
    console.print(_per_class_table(report))
    if args.output:
        console.print(f"confusion matrix: {args.output}")
    return 0


def _per_class_table(report):
    """Every class's accuracy, or the 10 lowest when there are more than 20."""
    from rich.table import Table

    rows = [(name, sum(row), accuracy) for (name, accuracy), row
            in zip(report.per_class.items(), report.confusion)]
    title = None
    if len(rows) > 20:
        rows = sorted(rows, key=lambda r: (r[2] is None, r[2]))[:10]
        title = f"the 10 lowest of {len(report.classes)} classes (all in --json)"
    table = Table("class", "images", "accuracy", title=title)
    for name, count, accuracy in rows:
        table.add_row(name, f"{count:,}", "-" if accuracy is None else f"{accuracy:.2%}")
    return table


def _predict(args, options: dict) -> int:
    from .training.evaluation import predict

    if args.top < 1:
        return _fail("--top must be 1 or more", 2)
    predictions = predict(args.file, args.weights, args.images, top=args.top,
                          **options)
    if args.json:
        import json

        print(json.dumps({"predictions": [p.model_dump() for p in predictions]}))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table("image", "class", "probability")
    for prediction in predictions:
        for rank, (name, p) in enumerate(zip(prediction.classes,
                                             prediction.probabilities)):
            table.add_row(prediction.image if rank == 0 else "", name, f"{p:.2%}",
                          end_section=rank == len(prediction.classes) - 1)
    Console(highlight=False, width=None if sys.stdout.isatty() else 200).print(table)
    return 0


def _check_output(args, parser: argparse.ArgumentParser) -> None:
    """Usage errors of `render` and `graph`, caught before the spec is read."""
    if args.command == "render":
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
    needed = (["torch"] if chosen != "py" or args.weights else []) \
        + (["onnx", "onnxscript"] if chosen == "onnx" else []) \
        + (["safetensors"] if args.weights else [])
    missing = _missing_modules(needed)
    if missing:
        extra = "torch" if missing == ["torch"] else "train" if args.weights else "test"
        what = "--weights" if args.weights and chosen == "py" else f"--format {chosen}"
        return _fail(f"{what} needs {' and '.join(missing)}, which cannot be imported; "
                     f"install it (pip install 'cnnspec[{extra}]')"
                     + ("" if args.weights else " or use --format py"), 2)
    return _with_exit_status(lambda: _write_artifact(spec, args, out, chosen))


def _write_artifact(spec, args, out, chosen: str) -> int:
    from .export import ExportError, write

    model = None
    if args.weights:
        from .training.evaluation import trained_model

        spec, model = trained_model(spec, args.weights)
    _print_summary(spec, as_json=False, depth=args.depth)
    try:
        lines = write(spec, out, chosen, source=args.file, model=model,
                      weights=args.weights)
    except OSError as problem:
        return _fail(f"cannot write {out}: {problem.strerror or problem}", 2)
    except ExportError as problem:
        return _fail(str(problem), 1)
    for line in lines:
        print(f"wrote {line}")
    return 0


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


def _wants_train_memory(args, parser: argparse.ArgumentParser) -> bool:
    """`summary --train`; its other flags without it are a usage error."""
    given = [flag for flag, value, default in (
        ("--batch", args.batch, None), ("--optimizer", args.optimizer, "sgd"),
        ("--amp", args.amp, "off"), ("--fit", args.fit, None),
        ("--device", args.device, "cpu")) if value != default]
    if given and not args.train:
        parser.error(f"{' and '.join(given)} need{'s' if len(given) == 1 else ''} "
                     "--train (they plan training memory)")
    return args.train


def _print_train_memory(spec, args, parser: argparse.ArgumentParser) -> int:
    """`summary --train`: the summary, then one training step's memory."""
    import json

    from . import memory as M

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
        from .summary import collapse

        summary = collapse(spec, summary, args.depth)
        layers = M.collapse(spec, plan, args.depth)
    if args.json:
        data = json.loads(summary.model_dump_json())
        data["train_memory"] = json.loads(plan.model_copy(
            update={"layers": layers}).model_dump_json())
        print(json.dumps(data, indent=2))
        return 0
    from rich.console import Console

    from .summary import table, totals

    console = Console(highlight=False, width=None if sys.stdout.isatty() else 200)
    console.print(table(summary))
    console.print(totals(summary))
    console.print()
    console.print(M.table(plan, layers))
    console.print(M.totals(plan))
    return 0
