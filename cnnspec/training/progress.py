"""What a run shows while it trains: a rich progress bar per epoch on a terminal;
elsewhere (CI, a pipe, a log file) a plain progress line every `PROGRESS_EVERY`
seconds within an epoch; one line per epoch, a table of the best epoch at the end,
and the loss and accuracy curves (`curves.png`, matplotlib).

Takes: the epoch rows the runner produces (the dicts of `metrics.jsonl`). A row whose
`val_top5` is None (5 or fewer classes, see `loop.reports_top5`) shows no top-5:
not in its line, the table or the curves, and the run says why once.
Returns: nothing; writes to its stream and to the run directory. Only rank 0 of a
multi-process run makes one (the others get `Silent`).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, \
    TimeRemainingColumn
from rich.table import Table

from .checkpoint import atomic_write
from .loop import top5_note

PROGRESS_EVERY = 30.0  # seconds between the plain progress lines of an epoch


class Silent:
    """The reporter of a non-zero rank, or of `cnnspec.train(verbose=False)`."""

    def note(self, text: str) -> None: ...
    def start_epoch(self, epoch: int, epochs: int, steps: int) -> None: ...
    def step(self, step, lr: float) -> None: ...
    def end_epoch(self, row: dict) -> None: ...
    def finish(self, history: list[dict], best: dict | None) -> None: ...
    def close(self) -> None: ...


class Reporter(Silent):
    """Prints to `stream` (stdout by default): a live bar on a terminal; elsewhere a
    plain line (`step_line`) once `every` seconds of `clock` have passed since the
    epoch began or since the last such line, so a long epoch is not silent in a log."""

    def __init__(self, stream=None, every: float = PROGRESS_EVERY,
                 clock=time.monotonic):
        stream = stream or sys.stdout
        self.live = stream.isatty()
        self.console = Console(file=stream, highlight=False,
                               width=None if self.live else 200)
        self.bar: Progress | None = None
        self.task = None
        self.every, self.clock = every, clock
        self.epoch = self.epochs = 0
        self.last_line = 0.0          # the clock when the last plain line was due
        self.top5_explained = False

    def note(self, text: str) -> None:
        self.console.print(text, markup=False, soft_wrap=True)

    def start_epoch(self, epoch: int, epochs: int, steps: int) -> None:
        self.epoch, self.epochs = epoch, epochs
        if not self.live:
            self.last_line = self.clock()
            return
        self.bar = Progress(
            TextColumn(f"epoch {epoch}/{epochs}"), BarColumn(),
            TextColumn("{task.completed}/{task.total}"), TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
            console=self.console, transient=True)
        self.bar.start()
        self.task = self.bar.add_task("train", total=steps, info="")

    def step(self, step, lr: float) -> None:
        if self.bar is not None:
            self.bar.update(self.task, completed=step.index,
                            info=f"loss {step.loss:.4f}  acc {step.top1:.1%}  "
                                 f"lr {lr:.3g}  {_rate(step):,.0f} img/s")
            return
        if self.live or step.index >= step.steps:  # the last: its epoch line follows
            return
        now = self.clock()
        if now - self.last_line >= self.every:
            self.last_line = now
            self.console.print(step_line(step, lr, self.epoch, self.epochs),
                               markup=False, soft_wrap=True)

    def end_epoch(self, row: dict) -> None:
        self.close()
        if row.get("val_top5") is None and not self.top5_explained:
            self.top5_explained = True
            self.note(top5_note())
        self.console.print(epoch_line(row), markup=False, soft_wrap=True)

    def finish(self, history: list[dict], best: dict | None) -> None:
        if best is None:
            return
        top5 = best.get("val_top5") is not None
        table = Table(title=f"best epoch: {best['epoch']} of {len(history)}",
                      title_justify="left")
        columns = ("epoch", "train_loss", "val_loss", "val_top1") \
            + (("val_top5",) if top5 else ()) + ("lr",)
        for column in columns:
            table.add_column(column, justify="right")
        table.add_row(str(best["epoch"]), f"{best['train_loss']:.4f}",
                      f"{best['val_loss']:.4f}", f"{best['val_top1']:.2%}",
                      *([f"{best['val_top5']:.2%}"] if top5 else []), f"{best['lr']:.3g}")
        self.console.print(table)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None


def epoch_line(row: dict) -> str:
    """One finished epoch; `val_top5` only where it was measured."""
    top5 = row.get("val_top5")
    return (f"epoch {row['epoch']:>3}  train_loss {row['train_loss']:.4f}  "
            f"val_loss {row['val_loss']:.4f}  val_top1 {row['val_top1']:.2%}  "
            + (f"val_top5 {top5:.2%}  " if top5 is not None else "")
            + f"lr {row['lr']:.3g}  "
            f"{row['images_per_s']:,.0f} img/s  {row['seconds']:.1f}s")


def step_line(step, lr: float, epoch: int, epochs: int) -> str:
    """Where an epoch is, for a stream that is not a terminal: the running training
    loss and top-1, the learning rate, images per second and the epoch's time left."""
    left = step.seconds / step.index * (step.steps - step.index) if step.index else 0.0
    return (f"epoch {epoch}/{epochs}  step {step.index}/{step.steps}  "
            f"loss {step.loss:.4f}  acc {step.top1:.1%}  lr {lr:.3g}  "
            f"{_rate(step):,.0f} img/s  eta {duration(left)}")


def _rate(step) -> float:
    """Training images per second so far in the epoch."""
    return step.images / step.seconds if step.seconds > 0 else 0.0


def duration(seconds: float) -> str:
    """38s, 4m40s, 2h05m."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def draw_curves(history: list[dict], path: Path, title: str) -> None:
    """Loss (train and validation) and validation accuracy against epoch: top-1, and
    top-5 for the epochs that measured it (none with 5 or fewer classes)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    epochs = [row["epoch"] for row in history]
    figure, (loss_axes, accuracy_axes) = plt.subplots(1, 2, figsize=(10, 4))
    loss_axes.plot(epochs, [r["train_loss"] for r in history], "o-", label="train")
    loss_axes.plot(epochs, [r["val_loss"] for r in history], "o-", label="validation")
    loss_axes.set(xlabel="epoch", ylabel="loss", title="loss")
    loss_axes.legend()
    accuracy_axes.plot(epochs, [100 * r["val_top1"] for r in history], "o-", label="top-1")
    top5 = [(row["epoch"], 100 * row["val_top5"]) for row in history
            if row.get("val_top5") is not None]
    if top5:
        accuracy_axes.plot(*zip(*top5), "o-", label="top-5")
    accuracy_axes.set(xlabel="epoch", ylabel="validation accuracy (%)", title="accuracy")
    accuracy_axes.legend()
    for axes in (loss_axes, accuracy_axes):
        axes.grid(alpha=0.3)
        axes.xaxis.get_major_locator().set_params(integer=True)
    figure.suptitle(title)
    figure.tight_layout()
    atomic_write(Path(path), lambda p: figure.savefig(p, format="png", dpi=100))
    plt.close(figure)
