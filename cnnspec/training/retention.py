"""When a run has stopped improving (`early_stop`), and which epochs' weights it keeps
(`keep_top`).

Takes: the run's history (the rows of metrics.jsonl, in epoch order), the recipe's
`early_stop` (an `EarlyStop`) and `keep_top` (K), and the run folder. Returns: an
`EarlyStopping` (`early_stopping`), updated after each epoch's validation, whose
`state_dict` goes into the checkpoint so that a resumed run stops where the
uninterrupted one would; the K best epochs (`top_epochs`), ranked as
`weights.safetensors` is chosen (higher val_top1, then lower val_loss, then the
earlier epoch); `keep`, which writes an epoch's weights as `weights-e012.safetensors`
when it is among them, and `prune`, which deletes the files of the epochs it
displaced (call it only after the new file is written). Raises `StorageError`
(from `checkpoint.save_weights`) when a file cannot be written; never prints.
"""

from __future__ import annotations

import re
from pathlib import Path

from ..frontend.recipe import EarlyStop
from .checkpoint import save_weights

KEPT = re.compile(r"weights-e(\d{3,})\.safetensors")


# -- early stopping


class EarlyStopping:
    """The best value of the rule's metric so far, its epoch, and how many epochs
    since have not improved on it by more than `min_delta`."""

    def __init__(self, rule: EarlyStop):
        self.rule = rule
        self.best: float | None = None
        self.best_epoch: int | None = None
        self.waited = 0

    def update(self, row: dict) -> bool:
        """Take one epoch's row; True when the run should stop after it."""
        value = row[self.rule.metric]
        if self.best is None or self._improves(value):
            self.best, self.best_epoch, self.waited = value, row["epoch"], 0
        else:
            self.waited += 1
        return self.stopped

    def _improves(self, value: float) -> bool:
        if self.rule.metric == "val_loss":
            return value < self.best - self.rule.min_delta
        return value > self.best + self.rule.min_delta

    @property
    def stopped(self) -> bool:
        return self.waited >= self.rule.patience

    def state_dict(self) -> dict:
        return {"metric": self.rule.metric, "min_delta": self.rule.min_delta,
                "best": self.best, "best_epoch": self.best_epoch, "waited": self.waited}

    def reason(self) -> str:
        """Why the run stops, in words: `val_top1 has not improved by more than 0.001
        for 3 epochs (since epoch 5)`."""
        rule = self.rule
        by = f" by more than {rule.min_delta:g}" if rule.min_delta else ""
        epochs = "epoch" if self.waited == 1 else "epochs"
        return (f"{rule.metric} has not improved{by} for {self.waited} {epochs} (since "
                f"epoch {self.best_epoch})")


def early_stopping(rule: EarlyStop | None, saved: dict | None,
                   history: list[dict]) -> EarlyStopping | None:
    """The run's early stopping (None without a rule), as a resumed run continues
    it: from the checkpoint's `saved` state when it counted the same metric with the
    same `min_delta`; otherwise (a checkpoint without it, a rule given or changed on
    resuming) counted again over `history`."""
    if rule is None:
        return None
    stopping = EarlyStopping(rule)
    same = saved is not None and saved.get("metric") == rule.metric \
        and saved.get("min_delta") == rule.min_delta
    if same:
        stopping.best, stopping.best_epoch = saved["best"], saved["best_epoch"]
        stopping.waited = saved["waited"]
    else:
        for row in history:
            stopping.update(row)
    return stopping


def describe(rule: EarlyStop | None, keep_top: int | None) -> str:
    """The run's line about both: `early stop: after 5 epochs without val_top1
    improving by more than 0.001; keep_top: the 3 best epochs' weights`."""
    parts = []
    if rule is not None:
        by = f" by more than {rule.min_delta:g}" if rule.min_delta else ""
        parts.append(f"early stop: after {rule.patience} epoch"
                     f"{'s' if rule.patience > 1 else ''} without {rule.metric} "
                     f"improving{by}")
    if keep_top:
        parts.append(f"keep_top: the {keep_top} best epochs' weights as "
                     f"{weights_name(1).replace('001', 'NNN')}")
    return "; ".join(parts)


# -- the K best epochs


def ranked(history: list[dict]) -> list[dict]:
    """The rows best first: higher val_top1, then lower val_loss, then the earlier
    epoch (the first is the epoch of weights.safetensors)."""
    return sorted(history, key=lambda r: (-r["val_top1"], r["val_loss"], r["epoch"]))


def top_epochs(history: list[dict], k: int) -> list[int]:
    """The K best epochs, best first."""
    return [row["epoch"] for row in ranked(history)[:k]]


def weights_name(epoch: int) -> str:
    """`weights-e012.safetensors` (three digits, more when needed)."""
    return f"weights-e{epoch:03d}.safetensors"


def kept_files(run_dir: Path) -> dict[int, Path]:
    """The kept weights files in `run_dir`, by epoch."""
    found = {}
    for path in Path(run_dir).glob("weights-e*.safetensors"):
        match = KEPT.fullmatch(path.name)
        if match:
            found[int(match.group(1))] = path
    return found


def keep(run_dir: Path, history: list[dict], k: int, state_dict: dict,
         metadata: dict[str, str]) -> Path | None:
    """Write the last epoch's weights (`state_dict`, what validation scored) when
    that epoch is among the K best; returns the file written, or None."""
    row = history[-1]
    if row["epoch"] not in top_epochs(history, k):
        return None
    path = Path(run_dir) / weights_name(row["epoch"])
    save_weights(path, state_dict, {**metadata, "epoch": str(row["epoch"]),
                                    "val_top1": f"{row['val_top1']:.6f}"})
    return path


def prune(run_dir: Path, history: list[dict], k: int) -> list[str]:
    """Delete the kept files of epochs no longer among the K best of `history` (the
    ones a better epoch displaced, and any of an epoch the history does not hold:
    written by a run stopped before it saved that epoch). Returns the names
    deleted; a file that cannot be deleted stays (it is only surplus)."""
    best = set(top_epochs(history, k))
    removed = []
    for epoch, path in sorted(kept_files(run_dir).items()):
        if epoch not in best:
            try:
                path.unlink()
                removed.append(path.name)
            except OSError:
                pass
    return removed


def missing(run_dir: Path, history: list[dict], k: int) -> list[int]:
    """The K best epochs whose weights are not in `run_dir` (not kept by the run
    before it was resumed with `keep_top`, or with a larger K)."""
    files = kept_files(run_dir)
    return sorted(e for e in top_epochs(history, k) if e not in files)
