"""The command line's grammar: every subcommand, flag, help text and example.

Takes: nothing. Returns: `build_parser()`, the `argparse.ArgumentParser` that
`cnnspec.cli.main` parses with; each subcommand's parser is in its `command_parser`
default, so that later usage errors show that subcommand's usage.
"""

from __future__ import annotations

import argparse

from ..version import __version__
from ..backends.export import FORMATS
from .clusters import stop_signal

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


def build_parser() -> argparse.ArgumentParser:
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
                          "clusters, shapes on the edges; or (.html) an interactive "
                          "explorer")
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
                         help="top-1 accuracies (%%) for the table and the chart: a CSV "
                         "file with the header spec,top1 (spec: the network's or the "
                         "file's name); it overrides torchvision's")
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
    _recipe_parser(commands)
    _evaluate_parsers(commands)
    for sub in commands.choices.values():  # errors after parsing show its own usage
        sub.set_defaults(command_parser=sub)
    return parser


def _size(text: str) -> int:
    """--fit SIZE: bytes, as 24GiB (2^30), 80GB (10^9), 512MiB or a plain number."""
    from ..analyses.memory import parse_size

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


COMPARE_DESCRIPTION = """\
compare networks: a cost table and the chart of Canziani et al. (2017), "An Analysis of
Deep Neural Network Models for Practical Applications".

The table: eval-mode cost per image. Params and MACs (multiply-accumulates) leave
auxiliary heads out; Activations is every layer's output; RF is the receptive field of
the features before the network pools globally; Depth is the number of conv and
linear layers on the longest input-to-output path, the way papers count depth
(ResNet-50: 50, VGG-16: 16, GoogLeNet: 22); Top-1, where a top-1 accuracy is known
(as below), is in the table and --json whether or not -o draws the chart.

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
  cnnspec train specs/resnet50.cnn --data ~/imagenet --out runs/r50 --resume auto --requeue

exit status: 0 trained, 1 the spec or the run is wrong (a non-finite loss), 2 usage
(a bad flag, missing or unreadable data, a folder in use), 3 a run file could not be
written (a full disk, a read-only folder; what was saved is kept), 130 Ctrl-C and 143
SIGTERM (the last finished epoch is kept; continue with --resume), 75 stopped by the
early warning of --stop-signal (SIGUSR1; the same, and requeue the job: docs/clusters.md)
"""


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
    data.add_argument("--skip-bad-images", action="store_true", default=None,
                      help="leave out, and list, the images of a folder that cannot be "
                      "decoded (default: stop before the run starts, naming them)")
    data.add_argument("--workers", type=int, metavar="N",
                      help="data-loading processes (0: load in the training process)")
    data.add_argument("--out", metavar="RUN_DIR",
                      help="the run folder (default runs/NAME, runs/NAME-2, ...)")
    data.add_argument("--resume", metavar="RUN_DIR",
                      help="continue the run in RUN_DIR from its last.ckpt, exactly; "
                      "`--resume auto` (with --out): continue the run in --out if it "
                      "has a checkpoint, else start it there, and exit 0 if it is "
                      "finished (one job script for the first start and every requeue)")
    data.add_argument("--json", action="store_true", help="print the final metrics as "
                      "one JSON object on the last line (progress goes to stderr)")
    data.add_argument("--log", action="append", metavar="TRACKER",
                      help="also log to tensorboard (RUN/tensorboard/) or mlflow "
                      "(MLFLOW_TRACKING_URI, else MLflow's default store); repeat it or "
                      "give both comma-separated; a resumed run continues its logs")
    _recipe_flags(train)
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
    cluster = train.add_argument_group("clusters (docs/clusters.md)")
    cluster.add_argument("--stop-signal", type=stop_signal, default="USR1", metavar="SIG",
                         help="the early warning of a time limit or preemption (USR1, "
                         "as SLURM's --signal=B:USR1@90 sends; or USR2, TERM, HUP, ALRM, "
                         "XCPU): the run stops, keeps its last saved epoch and exits 75 "
                         "(default USR1)")
    cluster.add_argument("--requeue", action="store_true",
                         help="in a SLURM job: after the early warning, run `scontrol "
                         "requeue $SLURM_JOB_ID` (the job needs --requeue, and its "
                         "script --resume auto)")


def _recipe_flags(parser: argparse.ArgumentParser) -> None:
    """The flags that override a spec's recipe, shared by `train` and `recipe`."""
    recipe = parser.add_argument_group("recipe (overrides the spec's `train { }`)")
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
                        "weights, updated every step (e.g. 0.999)")
    recipe.add_argument("--accumulate", type=int, metavar="N",
                        help="split each step's batch into N micro-batches (the same "
                        "effective batch in less memory)")
    recipe.add_argument("--early-stop", type=int, metavar="PATIENCE",
                        help="stop once validation top-1 (or the recipe's "
                        "`early_stop` metric) has not improved for PATIENCE epochs; "
                        "the recipe's min_delta is kept")
    recipe.add_argument("--keep-top", type=int, metavar="K",
                        help="keep the K best epochs' weights as weights-e012.safetensors "
                        "... besides weights.safetensors")
    recipe.add_argument("--seed", type=int, metavar="N", help="random seed (0)")
    tune = parser.add_argument_group("fine-tuning")
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


RECIPE_EXAMPLES = """\
examples:
  cnnspec recipe specs/resnet50.cnn
  cnnspec recipe specs/resnet50.cnn --data ~/imagenet --nproc 8 -o lr.png
  cnnspec recipe specs/resnet20_cifar.cnn --data digits --epochs 5 --json
"""


def _recipe_parser(commands) -> None:
    recipe = commands.add_parser(
        "recipe", help="show a spec's training recipe, fully resolved, without training",
        description="Show the recipe `cnnspec train` would follow, without training: "
        "every entry with its value and where it came from (the spec, a recipe "
        "definition, a flag, a default), the effective and micro batch, the parameter "
        "groups, the learning rate over the whole run, and the train and validation "
        "transforms. Takes the same recipe flags as `train`.",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=RECIPE_EXAMPLES)
    _spec_arguments(recipe, "`classes` is taken from --data when given")
    recipe.add_argument("--data", metavar="SOURCE", help="the data the run would use: "
                        "gives the steps per epoch (and so every step's rate) and the "
                        "image sizes")
    recipe.add_argument("--steps-per-epoch", type=int, metavar="N",
                        help="optimizer steps per epoch when --data is not given "
                        "(default: the rate is shown per epoch)")
    recipe.add_argument("--nproc", type=int, metavar="N", default=1,
                        help="processes the run would use (splits the batch)")
    recipe.add_argument("--val-fraction", type=float, metavar="F")
    recipe.add_argument("-o", "--output", metavar="FILE.png",
                        help="also draw the learning rate over the run to a PNG")
    recipe.add_argument("--json", action="store_true", help="print JSON for tools")
    _recipe_flags(recipe)
