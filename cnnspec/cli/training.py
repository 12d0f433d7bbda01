"""`cnnspec train`, `evaluate` and `predict`: flags -> the training backend
(`cnnspec.training`), its results -> tables or JSON, its errors -> exit statuses.

Takes: parsed flags. Returns: the exit status (0, 1 a spec or run problem, 2 usage
or data, 3 a run file could not be written, 130 Ctrl-C, 143 SIGTERM, 75 the early
warning of a time limit or preemption: see `clusters`). No training logic lives here.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys

from .clusters import after_launch, check_flags, resolve_auto, worker_argv
from .common import fail, missing_modules, report, spec_params

TRAIN_OVERRIDES = ("epochs", "batch", "accumulate", "lr", "weight_decay", "decay_norm_bias",
                   "label_smoothing", "clip_grad", "ema", "seed", "device", "amp",
                   "channels_last", "compile", "workers", "sync_batchnorm", "val_fraction",
                   "skip_bad_images",
                   "weights", "freeze", "unfreeze_from", "reinit", "lr_head",
                   "early_stop", "keep_top", "log")


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


def train_command(args, parser: argparse.ArgumentParser, argv: list[str]) -> int:
    """`cnnspec train`: flags to `cnnspec.training.run.train`, outcomes to exit codes."""
    if not os.path.isfile(args.file):
        parser.error(f"no such file: {args.file}")
    if args.nproc is not None and args.nproc < 1:
        parser.error("--nproc must be 1 or more")
    check_flags(args, parser)  # --resume auto needs --out; --requeue needs SLURM
    if args.data is None and args.resume is None:
        parser.error("give the data to train on: --data digits, --data synthetic, "
                     "--data cifar10:PATH or --data PATH (an image folder)")
    missing = missing_modules(["torch", "torchvision", "safetensors"])
    if missing:
        return fail(f"training needs {', '.join(missing)}: pip install "
                     "'cnnspec[train]'", 2)
    return with_exit_status(lambda: _train_run(args, parser, argv))


def _train_run(args, parser: argparse.ArgumentParser, argv: list[str]) -> int:
    from ..training.progress import Reporter
    from ..training.run import Interrupted, preflight, train
    from ..training.signals import handled, preempted

    finished = resolve_auto(args, parser)  # --resume auto: the folder, a new run, or done
    if finished is not None:
        return finished
    overrides = {name: getattr(args, name) for name in TRAIN_OVERRIDES}
    options = dict(network=args.network, params=spec_params(args.params, parser),
                   resume=args.resume, **overrides)
    if args.nproc and args.nproc > 1 and "WORLD_SIZE" not in os.environ:
        with handled(args.stop_signal):  # the early warning here: nothing saved, 75
            preflight(args.file, args.data, nproc=args.nproc, **options)
        from ..training.distributed import launch

        ranks = worker_argv(_without_nproc(argv), args.resume)
        return after_launch(launch(ranks, args.nproc, args.stop_signal), args)
    try:
        result = train(args.file, data=args.data, out=args.out,
                       reporter=Reporter(sys.stderr if args.json else sys.stdout),
                       command=" ".join(["cnnspec"] + argv),
                       stop_signal=args.stop_signal, **options)
    except Interrupted as stop:
        if preempted(stop.signal_number):  # the early warning: 75, then --requeue
            from .clusters import preempted as report_preempted

            return report_preempted(stop, args)
        return _interrupted(stop, args.file)
    if int(os.environ.get("RANK", "0")) != 0:
        return 0
    if args.json:
        import json

        print(json.dumps(result.metrics))
    else:
        print(f"weights: {result.run_dir / 'weights.safetensors'} (epoch "
              f"{result.metrics['best_epoch']}); curves: {result.run_dir / 'curves.png'}")
    return 0


# The flags of `cnnspec recipe`: the recipe's own, not how or where a run goes.
RECIPE_OVERRIDES = ("epochs", "batch", "accumulate", "lr", "weight_decay",
                    "decay_norm_bias", "label_smoothing", "clip_grad", "ema", "seed",
                    "val_fraction", "weights", "freeze", "unfreeze_from", "reinit",
                    "lr_head", "early_stop", "keep_top")


def recipe_command(args, parser: argparse.ArgumentParser) -> int:
    """`cnnspec recipe`: the resolved recipe as text (or JSON), and -o its rate."""
    if not os.path.isfile(args.file):
        parser.error(f"no such file: {args.file}")
    if args.nproc < 1:
        parser.error("--nproc must be 1 or more")
    if args.steps_per_epoch is not None and args.steps_per_epoch < 1:
        parser.error("--steps-per-epoch must be 1 or more")
    missing = missing_modules(["torch", "torchvision"])
    if missing:
        return fail(f"`cnnspec recipe` needs {', '.join(missing)}: pip install "
                    "'cnnspec[train]'", 2)
    return with_exit_status(lambda: _show_recipe(args, parser))


def _show_recipe(args, parser) -> int:
    from ..training.recipe_view import draw_lr, render_text, resolve_recipe

    overrides = {name: getattr(args, name) for name in RECIPE_OVERRIDES}
    view = resolve_recipe(args.file, args.data, network=args.network,
                          params=spec_params(args.params, parser), nproc=args.nproc,
                          steps_per_epoch=args.steps_per_epoch, **overrides)
    if args.output:
        draw_lr(view, args.output)
    if args.json:
        import json

        print(json.dumps(view))
    else:
        print(render_text(view))
        if args.output:
            print(f"learning rate chart: {args.output}")
    return 0


def _interrupted(stop, spec_file: str) -> int:
    """What a stopped run says: what is saved and how to go on; 128 + the signal."""
    from ..training.signals import exit_status

    if int(os.environ.get("RANK", "0")) != 0:  # rank 0 speaks for the run
        return exit_status(stop.signal_number)
    how = "terminated (SIGTERM)" if stop.signal_number == signal.SIGTERM else "interrupted"
    if stop.saved is None:
        print(f"\n{how} before anything was saved; run the same command again to "
              "start over", file=sys.stderr)
    else:
        saved = (f"epochs 1-{stop.saved} are" if stop.saved else
                 "the starting state is")
        print(f"\n{how}; {saved} saved in {stop.run_dir}. Continue with:\n"
              f"  cnnspec train {spec_file} --resume {stop.run_dir}", file=sys.stderr)
    return exit_status(stop.signal_number)


def with_exit_status(action) -> int:
    """Run a training-backend command; its errors become one message and a status:
    the spec 1, usage and data 2, a run that cannot go on 1, a file that cannot be
    written 3, a stop signal before the run began 130 or 143."""
    from ..diagnostics import SpecError
    from ..training.errors import StorageError, TrainingError, UsageError
    from ..training.signals import Stopped, exit_status

    try:
        return action()
    except SpecError as problem:
        report(problem, sys.stderr)
        return 1
    except UsageError as problem:
        return fail(str(problem), 2)
    except TrainingError as problem:
        return fail(str(problem), 1)
    except StorageError as problem:
        return fail(str(problem), 3)
    except Stopped as stop:  # before the run folder held anything
        print("\nstopped before training began; nothing was saved", file=sys.stderr)
        return exit_status(stop.signal_number)


def evaluate_or_predict(args, parser: argparse.ArgumentParser) -> int:
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
    missing = missing_modules(needed)
    if missing:
        return fail(f"{args.command} needs {', '.join(missing)}: pip install "
                     "'cnnspec[train]'", 2)
    options = {"network": args.network, "params": spec_params(args.params, parser),
               "tta": args.tta, "batch": args.batch, "device": args.device}
    run = _predict if args.command == "predict" else _evaluate
    return with_exit_status(lambda: run(args, options))


def _evaluate(args, options: dict) -> int:
    from ..training.evaluation import draw_confusion, evaluate

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
        console.print(f"data: {note}", markup=False)
    ensemble = f", an ensemble of {len(report.members)}" if report.members else ""
    console.print(f"{report.spec} on {report.data}: {report.images:,} validation "
                  f"images, tta {report.tta}{ensemble}", markup=False)
    top5 = report.top5 is not None  # None with 5 or fewer classes (a note says why)

    def cells(score) -> list[str]:
        return [f"{score.top1:.2%}", *([f"{score.top5:.2%}"] if top5 else []),
                f"{score.loss:.4f}"]

    scores = Table("weights", "top-1", *(["top-5"] if top5 else []), "loss")
    for member in report.members:
        scores.add_row(member.weights, *cells(member))
    scores.add_row("ensemble" if report.members else args.weights[0], *cells(report),
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
    from ..training.evaluation import predict

    if args.top < 1:
        return fail("--top must be 1 or more", 2)
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
