"""`cnnspec train` on clusters: `--stop-signal`, `--requeue` and `--resume auto`, from
flags to the training backend (`training.preemption`), and what a preempted run says.

Takes: parsed flags (and, for the `--nproc` launcher, the command line it passes on).
Returns: the signal number of `--stop-signal`; the flags with `--resume auto`
resolved to a folder or to a new run; exit statuses: 0 for a run that `--resume
auto` finds finished (nothing to do), 75 for a run stopped by the early warning,
after `scontrol requeue` when `--requeue` asks for it. Usage errors (exit 2) go
through the parser. See docs/clusters.md.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys

# The signals a scheduler can warn with (SLURM's --signal, Kubernetes' SIGTERM);
# SIGINT stays Ctrl-C, a person's.
WARNINGS = ("USR1", "USR2", "TERM", "HUP", "ALRM", "XCPU")
AUTO = "auto"


def stop_signal(text: str) -> int:
    """--stop-signal SIG: a name (USR1, SIGUSR1, usr1) or number of `WARNINGS`."""
    name = text.strip().upper().removeprefix("SIG")
    if name.isdigit():
        found = [n for n in WARNINGS if int(getattr(signal, "SIG" + n)) == int(name)]
        name = found[0] if found else name
    if name not in WARNINGS:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a signal a scheduler warns with; choose one of "
            f"{', '.join(WARNINGS)} (SLURM's --signal=B:USR1@90 sends USR1)")
    return int(getattr(signal, "SIG" + name))


def _speaks() -> bool:
    """One process speaks for a run: the only one, the launcher, or rank 0."""
    return int(os.environ.get("RANK", "0")) == 0


def check_flags(args, parser: argparse.ArgumentParser) -> None:
    """Refuse, before anything runs, `--resume auto` without `--out` and a
    `--requeue` that could not requeue anything here."""
    if args.resume == AUTO and args.out is None:
        parser.error("--resume auto continues the run in --out, or starts one there: "
                     "give --out RUN_DIR, the same folder on every start of the job")
    if args.requeue:
        from ..training.preemption import requeue_problem

        problem = requeue_problem()
        if problem:
            parser.error(problem)


def resolve_auto(args, parser: argparse.ArgumentParser) -> int | None:
    """`--resume auto`: `args.resume` becomes the `--out` folder (its run goes on) or
    None (a new run starts there), with a line saying which; or the status 0 of a
    run with nothing left to do, its metrics printed as a finished run's."""
    if args.resume != AUTO:
        return None
    from ..training.preemption import auto_start

    start = auto_start(args.out, args.epochs)
    if not (start.finished or start.resume) and args.data is None:
        parser.error(f"--resume auto: {args.out} holds no run to continue, so a new one "
                     "starts there: give the data to train on with --data (digits, "
                     "synthetic, cifar10:PATH or an image folder)")
    if _speaks():
        print(start.note, file=sys.stderr if args.json else sys.stdout, flush=True)
    if start.finished:
        if args.json and _speaks():
            import json

            print(json.dumps(start.metrics))
        return 0
    args.resume = str(start.run_dir) if start.resume else None
    return None


def worker_argv(argv: list[str], resume: str | None) -> list[str]:
    """The command the `--nproc` launcher gives each rank: `--resume auto` as the
    launcher resolved it (so every rank takes the same decision), and without
    `--requeue` (the launcher requeues, once, after every rank has stopped)."""
    kept, index, auto = [], 0, False
    while index < len(argv):
        item = argv[index]
        if item == "--resume" and argv[index + 1:index + 2] == [AUTO]:
            index, auto = index + 2, True
            continue
        auto = auto or item == f"--resume={AUTO}"
        if item not in ("--requeue", f"--resume={AUTO}"):
            kept.append(item)
        index += 1
    return kept + (["--resume", resume] if auto and resume else [])


def preempted(stop, args) -> int:
    """What a run stopped by the early warning says: what is saved, that the epoch
    cut short runs again, and how to go on; then `--requeue`. Status 75."""
    from ..training.signals import PREEMPTED

    if not _speaks():
        return PREEMPTED
    name = signal.Signals(stop.signal_number).name
    if stop.saved is None:
        print(f"\npreempted ({name}) before anything was saved; run the same command "
              "again to start over; exit status 75", file=sys.stderr)
    else:
        saved = ("the starting state is" if not stop.saved else "epoch 1 is"
                 if stop.saved == 1 else f"epochs 1-{stop.saved} are")
        print(f"\npreempted ({name}); {saved} saved in {stop.run_dir}, and epoch "
              f"{stop.saved + 1}, cut short, runs again from its start (checkpoints are "
              f"written per epoch). Continue with:\n"
              f"  cnnspec train {args.file} --resume {stop.run_dir}\n"
              f"or run the same command with --out {stop.run_dir} --resume auto; exit "
              "status 75", file=sys.stderr)
    if args.requeue:
        requeue(stop.signal_number)
    return PREEMPTED


def after_launch(status: int, args) -> int:
    """The `--nproc` launcher's status; it requeues the job (`--requeue`) once every
    rank has stopped on the early warning (rank 0 has said what is saved)."""
    from ..training.signals import PREEMPTED

    if status == PREEMPTED and args.requeue:
        requeue(args.stop_signal)
    return status


def requeue(warning: int) -> None:
    """`scontrol requeue $SLURM_JOB_ID`, saying what happened; a repeated warning
    meanwhile is ignored (everything is saved)."""
    from ..training.preemption import requeue as scontrol_requeue

    previous = signal.signal(warning, signal.SIG_IGN)
    try:
        done = scontrol_requeue()
    finally:
        signal.signal(warning, previous)
    if done.ok:
        print(f"requeued SLURM job {done.job} ({done.command}): it runs its script "
              "again when it starts, and --resume auto continues the run",
              file=sys.stderr)
    else:
        print(f"could not requeue SLURM job {done.job}: {done.detail}; requeue it "
              f"yourself: {done.command}", file=sys.stderr)
