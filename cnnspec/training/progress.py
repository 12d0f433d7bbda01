"""What a run shows while it trains: a rich progress bar per epoch on a terminal,
plain lines elsewhere (CI, a pipe), a table of the best epoch at the end, and the
loss and accuracy curves (`curves.png`, matplotlib).

Takes: the epoch rows the runner produces (the dicts of `metrics.jsonl`).
Returns: nothing; writes to its stream and to the run directory. Only rank 0 of a
multi-process run makes one (the others get `Silent`).
"""

from __future__ import annotations

import sys
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, \
    TimeRemainingColumn
from rich.table import Table

from .checkpoint import atomic_write


class Silent:
    """The reporter of a non-zero rank, or of `cnnspec.train(verbose=False)`."""

    def note(self, text: str) -> None: ...
    def start_epoch(self, epoch: int, epochs: int, steps: int) -> None: ...
    def step(self, step, lr: float) -> None: ...
    def end_epoch(self, row: dict) -> None: ...
    def finish(self, history: list[dict], best: dict | None) -> None: ...
    def close(self) -> None: ...


class Reporter(Silent):
    """Prints to `stream` (stdout by default); a live bar only on a terminal."""

    def __init__(self, stream=None):
        stream = stream or sys.stdout
        self.live = stream.isatty()
        self.console = Console(file=stream, highlight=False,
                               width=None if self.live else 200)
        self.bar: Progress | None = None
        self.task = None

    def note(self, text: str) -> None:
        self.console.print(text, markup=False, soft_wrap=True)

    def start_epoch(self, epoch: int, epochs: int, steps: int) -> None:
        if not self.live:
            return
        self.bar = Progress(
            TextColumn(f"epoch {epoch}/{epochs}"), BarColumn(),
            TextColumn("{task.completed}/{task.total}"), TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
            console=self.console, transient=True)
        self.bar.start()
        self.task = self.bar.add_task("train", total=steps, info="")

    def step(self, step, lr: float) -> None:
        if self.bar is None:
            return
        rate = step.images / step.seconds if step.seconds > 0 else 0.0
        self.bar.update(self.task, completed=step.index,
                        info=f"loss {step.loss:.4f}  acc {step.top1:.1%}  lr {lr:.3g}  "
                             f"{rate:,.0f} img/s")

    def end_epoch(self, row: dict) -> None:
        self.close()
        self.console.print(epoch_line(row), markup=False, soft_wrap=True)

    def finish(self, history: list[dict], best: dict | None) -> None:
        if best is None:
            return
        table = Table(title=f"best epoch: {best['epoch']} of {len(history)}",
                      title_justify="left")
        for column in ("epoch", "train_loss", "val_loss", "val_top1", "val_top5", "lr"):
            table.add_column(column, justify="right")
        table.add_row(str(best["epoch"]), f"{best['train_loss']:.4f}",
                      f"{best['val_loss']:.4f}", f"{best['val_top1']:.2%}",
                      f"{best['val_top5']:.2%}", f"{best['lr']:.3g}")
        self.console.print(table)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None


def epoch_line(row: dict) -> str:
    return (f"epoch {row['epoch']:>3}  train_loss {row['train_loss']:.4f}  "
            f"val_loss {row['val_loss']:.4f}  val_top1 {row['val_top1']:.2%}  "
            f"val_top5 {row['val_top5']:.2%}  lr {row['lr']:.3g}  "
            f"{row['images_per_s']:,.0f} img/s  {row['seconds']:.1f}s")


def draw_curves(history: list[dict], path: Path, title: str) -> None:
    """Loss (train and validation) and validation accuracy against epoch."""
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
    accuracy_axes.plot(epochs, [100 * r["val_top5"] for r in history], "o-", label="top-5")
    accuracy_axes.set(xlabel="epoch", ylabel="validation accuracy (%)", title="accuracy")
    accuracy_axes.legend()
    for axes in (loss_axes, accuracy_axes):
        axes.grid(alpha=0.3)
        axes.xaxis.get_major_locator().set_params(integer=True)
    figure.suptitle(title)
    figure.tight_layout()
    atomic_write(Path(path), lambda p: figure.savefig(p, format="png", dpi=100))
    plt.close(figure)
