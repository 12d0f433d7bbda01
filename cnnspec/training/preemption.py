"""Runs that a cluster stops and starts again: `--resume auto` and SLURM's requeue.

Takes: the `--out` folder and the `--epochs` asked for (`auto_start`); the job's
environment (`requeue_problem`, `requeue`). Returns: an `AutoStart` that says
whether the run in the folder is continued, started there, or already finished
(with the metrics it ended with, as `train` gives them); why `--requeue` cannot
work here, or None; and what `scontrol requeue` answered.

`--resume auto` continues a folder whose `last.ckpt` holds a finished epoch or the
starting state (epoch 0), and starts a run in a folder that is missing or holds no
checkpoint, so one job script serves the first start and every requeue. A
checkpoint it cannot read is never started over: `UsageError` (exit 2) names it.
The decision is made before the folder is claimed; the claim (`rundir`) still
refuses a folder that another run holds. The `--nproc` launcher decides once and
tells its ranks; under a torchrun started by hand every rank decides before the
process group forms, so all of them see the same folder.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from . import checkpoint as files
from .errors import UsageError

AUTO = "auto"


@dataclass
class AutoStart:
    run_dir: Path
    resume: bool                 # continue the run in run_dir (else start one there)
    note: str                    # what was decided, in words
    metrics: dict | None = None  # a finished run: its final metrics (as `--json`)

    @property
    def finished(self) -> bool:
        return self.metrics is not None


def auto_start(out, epochs: int | None = None) -> AutoStart:
    """What `--resume auto --out OUT` does with OUT (`epochs`: the --epochs given)."""
    run_dir = Path(out)
    if not run_dir.is_dir():
        return AutoStart(run_dir, False, f"resume auto: {run_dir} does not exist yet; "
                                         "starting a new run in it")
    if not (run_dir / files.CHECKPOINT).is_file():
        return AutoStart(run_dir, False, f"resume auto: {run_dir} holds no checkpoint; "
                                         "starting a new run in it")
    state = _state(run_dir)
    done = int(state["epoch"])
    planned = json.loads(state["config"])["epochs"]
    target = planned if epochs is None else epochs
    if done >= target:
        why = (f"has finished its run ({_epochs(planned)})" if epochs is None else
               f"has already trained {_epochs(done)} (--epochs {epochs})")
        return _finished(run_dir, state, f"{run_dir} {why}; nothing to do",
                         f"To train it longer, give --epochs N above {done}")
    early = _stopped_early(state)
    if early:
        return _finished(run_dir, state, f"{run_dir} stopped early after epoch {done}: "
                                         f"{early}; nothing to do",
                         f"To train it on, give --resume {run_dir} a larger --early-stop "
                         "patience")
    held = (f"epoch{'s 1-' if done > 1 else ' '}{done} of {target}" if done else
            "the starting state (no finished epoch yet)")
    return AutoStart(run_dir, True, f"resume auto: {run_dir} holds {held}; continuing it")


def _epochs(count: int) -> str:
    return f"{count} epoch{'' if count == 1 else 's'}"


def _state(run_dir: Path) -> dict:
    """The checkpoint, memory-mapped (its tensors are not read); a checkpoint that
    cannot be read is refused as `--resume` refuses it, never started over."""
    import torch

    try:
        state = torch.load(run_dir / files.CHECKPOINT, map_location="cpu",
                           weights_only=True, mmap=True)
    except Exception:  # not memory-mappable: read it whole, which names any fault
        state = _readable(run_dir)
    if not isinstance(state, dict) or not {"epoch", "config", "spec_hash"} <= set(state):
        state = _readable(run_dir)
    return state


def _readable(run_dir: Path) -> dict:
    try:
        state = files.read_checkpoint(run_dir)
    except UsageError as problem:
        raise UsageError(f"{problem}; --resume auto does not start a new run over it: "
                         f"move {run_dir / files.CHECKPOINT} away to start again, or "
                         "choose another --out") from None
    if not {"epoch", "config"} <= set(state):
        raise UsageError(f"{run_dir / files.CHECKPOINT} does not say how far its run "
                         "got; continue it with --resume, or choose another --out")
    return state


def _stopped_early(state: dict) -> str | None:
    """Why the run stopped early (`early_stop` in its recipe), or None."""
    if not state.get("early_stop"):
        return None
    from .config import RunConfig
    from .retention import early_stopping

    rule = RunConfig.model_validate_json(state["config"]).early_stop
    stopping = early_stopping(rule, state["early_stop"], list(state["history"]))
    return stopping.reason() if stopping is not None and stopping.stopped else None


def _finished(run_dir: Path, state: dict, said: str, longer: str) -> AutoStart:
    """A run with nothing left to do: where its weights are, and its metrics."""
    history = list(state["history"])
    if not history:
        return AutoStart(run_dir, False, f"{said}.", {"epochs": 0,
                                                      "run_dir": str(run_dir)})
    best = max(history, key=lambda r: (r["val_top1"], -r["val_loss"]))
    metrics = {"val_top1": best["val_top1"], "val_top5": best["val_top5"],
               "val_loss": best["val_loss"], "best_epoch": best["epoch"],
               "epochs": len(history),
               "seconds": round(sum(r["seconds"] for r in history), 3),
               "run_dir": str(run_dir)}
    return AutoStart(run_dir, False, (
        f"{said} (weights: {run_dir / files.WEIGHTS}, epoch {best['epoch']}, "
        f"val_top1 {best['val_top1']:.2%}). {longer}"), metrics)


# -- SLURM

def requeue_problem(environ=os.environ) -> str | None:
    """Why `--requeue` could not requeue this job, or None when it can."""
    if not environ.get("SLURM_JOB_ID"):
        return ("--requeue asks SLURM to requeue the job after the early-warning "
                "signal, but SLURM_JOB_ID is not set: this is not a SLURM job. Leave "
                "--requeue out and test the exit status instead (75: saved, run it "
                "again; docs/clusters.md)")
    if shutil.which("scontrol", path=environ.get("PATH")) is None:
        return ("--requeue needs SLURM's scontrol, which is not on PATH here; add it "
                "to PATH, or leave --requeue out and requeue from the job script when "
                "the status is 75 (docs/clusters.md)")
    return None


@dataclass
class Requeued:
    job: str
    ok: bool
    detail: str  # scontrol's own words when it failed

    @property
    def command(self) -> str:
        return f"scontrol requeue {self.job}"


def requeue(environ=os.environ) -> Requeued:
    """`scontrol requeue $SLURM_JOB_ID`: the job goes back to the queue and, when it
    starts again, runs its script from the top (`--resume auto` continues)."""
    job = environ["SLURM_JOB_ID"]
    try:
        done = subprocess.run(["scontrol", "requeue", job], capture_output=True,
                              text=True, timeout=60, env=dict(environ))
    except (OSError, subprocess.TimeoutExpired) as problem:
        return Requeued(job, False, str(problem))
    words = (done.stderr or done.stdout).strip()
    return Requeued(job, done.returncode == 0,
                    words or f"scontrol exited with status {done.returncode}")
