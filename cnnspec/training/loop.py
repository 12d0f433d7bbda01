"""One epoch of training and one pass of evaluation.

Takes: a model (plain, DDP-wrapped or compiled), a DataLoader, the optimizer and the
run's settings, and optionally the recipe's per-step parts: a learning-rate schedule
(`schedule.LRSchedule`, told after every optimizer step), a weight average
(`ema.WeightAverage`), a batch mixer (`mixing.make_mixer`: MixUp/CutMix, soft
targets). Returns: the epoch's sums as plain numbers (`EpochStats`). Auxiliary heads
(a `TrainingHeads` model returns a named tuple in training) add their weighted
losses; mixed precision goes through `torch.autocast` and, for fp16, a GradScaler.
A non-finite loss raises `NonFiniteLoss` before the optimizer steps on it.

Gradient accumulation (`config.accumulate` = N): each loader batch (one process's
share of the recipe's batch) is split into N micro-batches whose losses, each
divided by N, are back-propagated one after another before a single optimizer step;
under DDP the gradients are synchronised only on the last (`no_sync`). Without
batchnorm this is the same update as the whole batch at once; with batchnorm it is
not, because each micro-batch is normalised with its own statistics.

With MixUp/CutMix the targets are soft; training accuracy is then measured against
each mixed image's dominant label (the larger weight), which is what
`train_top1` means in such a run.

Top-5 accuracy is measured only when the network scores more than 5 classes
(`reports_top5`): with 5 or fewer the true class is always among the 5 highest
scores, and top-5 would read 100% whatever the weights. It is None otherwise.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.nn import functional as F
from torch.nn.parallel import DistributedDataParallel

from .mixing import dominant_labels

AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
TOP_K = 5  # the k of top-k accuracy, as ImageNet reports it


def reports_top5(classes: int) -> bool:
    """Whether top-5 accuracy means anything for `classes` class scores: only with
    more than 5 (with 5 or fewer it is 100% whatever the network does)."""
    return classes > TOP_K


def top5_note(classes: int | None = None) -> str:
    """The one line that says why top-5 is missing: from an evaluation of `classes`
    classes, or (None) from a training run's epochs."""
    if classes is None:
        return ("top-5 is not reported with 5 or fewer classes: the true class is "
                "always among the 5 highest scores (val_top5 is null in metrics.jsonl "
                "and --json)")
    return (f"top-5 is not reported: the data has {classes} "
            f"{'class' if classes == 1 else 'classes'}, so the true class is always "
            "among the 5 highest scores (top5 is null in --json)")


class NonFiniteLoss(Exception):
    def __init__(self, epoch: int, step: int, value: float):
        super().__init__(f"the loss became {value} at epoch {epoch}, step {step}")
        self.epoch, self.step, self.value = epoch, step, value


@dataclass
class EpochStats:
    loss: float
    top1: float
    top5: float | None  # None: not measured (training, or 5 or fewer classes)
    images: int
    seconds: float


@dataclass
class Step:
    """What the progress display is told after each optimizer step."""
    index: int
    steps: int
    loss: float
    top1: float
    images: int
    seconds: float
    lr: float = 0.0  # the rate this step used (group 0)


class Trainer:
    """Holds what every step needs; `train_epoch` and `evaluate` run the loops."""

    def __init__(self, model, optimizer, device: torch.device, config, aux_weights: dict,
                 ema=None, scaler=None, schedule=None, mixer=None):
        self.model = model
        self.optimizer = optimizer
        self.device = device
        self.config = config
        self.aux_weights = aux_weights
        self.ema = ema
        self.scaler = scaler
        self.schedule = schedule
        self.mixer = mixer
        self.accumulate = getattr(config, "accumulate", 1)
        self.non_blocking = device.type == "cuda"
        self.memory_format = torch.channels_last if config.channels_last \
            else torch.contiguous_format

    def _autocast(self):
        dtype = AMP_DTYPES.get(self.config.amp)
        return torch.autocast(self.device.type, dtype=dtype, enabled=dtype is not None)

    def _to_device(self, images, labels):
        images = images.to(self.device, non_blocking=self.non_blocking,
                           memory_format=self.memory_format)
        return images, labels.to(self.device, non_blocking=self.non_blocking)

    def loss(self, outputs, labels):
        """Cross-entropy of the main output plus the weighted auxiliary losses."""
        smoothing = self.config.label_smoothing
        if isinstance(outputs, tuple):  # TrainingHeads: (logits, aux1, aux2, ...)
            logits = outputs[0]
            loss = F.cross_entropy(logits, labels, label_smoothing=smoothing)
            for name, aux in zip(outputs._fields[1:], outputs[1:]):
                loss = loss + self.aux_weights[name] * F.cross_entropy(
                    aux, labels, label_smoothing=smoothing)
            return loss, logits
        return F.cross_entropy(outputs, labels, label_smoothing=smoothing), outputs

    def train_epoch(self, loader, epoch: int, on_step=None) -> EpochStats:
        self.model.train()
        loss_sum, correct, seen = 0.0, 0, 0
        start = time.perf_counter()
        steps = len(loader)
        for index, (images, labels) in enumerate(loader, 1):
            images, labels = self._to_device(images, labels)
            targets = labels
            if self.mixer is not None:
                images, targets = self.mixer(images, labels)
                labels = dominant_labels(targets)
            lr = current_lr(self.optimizer)
            self.optimizer.zero_grad(set_to_none=True)
            value, logits = self._accumulated_step(images, targets, epoch, index)
            if self.schedule is not None:
                self.schedule.after_step()
            if self.ema is not None:
                self.ema.after_step(index - 1, epoch)
            count = labels.shape[0]
            loss_sum += value * count
            correct += int((logits.argmax(1) == labels).sum())
            seen += count
            if on_step is not None:
                on_step(Step(index, steps, loss_sum / seen, correct / seen, seen,
                             time.perf_counter() - start, lr))
        seconds = time.perf_counter() - start
        totals = torch.tensor([loss_sum, correct, seen], dtype=torch.float64,
                              device=self.device)
        loss_sum, correct, seen = _all_reduce(totals).tolist()
        seen = max(seen, 1)
        return EpochStats(loss_sum / seen, correct / seen, None, int(seen), seconds)

    def _accumulated_step(self, images, targets, epoch: int, index: int):
        """Forward and backward over the micro-batches, then one optimizer step;
        the batch's mean loss and its logits (detached)."""
        # Equal parts: the run checks that accumulate divides each process's batch.
        chunks = list(zip(images.chunk(self.accumulate), targets.chunk(self.accumulate)))
        total, outputs = 0.0, []
        for number, (micro_images, micro_targets) in enumerate(chunks, 1):
            last = number == len(chunks)
            with self._sync(last), self._autocast():
                loss, logits = self.loss(self.model(micro_images), micro_targets)
            value = loss.item()  # one sync a micro-batch: it guards the update below
            if not math.isfinite(value):
                raise NonFiniteLoss(epoch, index, value)
            self._backward(loss / len(chunks))
            total += value / len(chunks)
            outputs.append(logits.detach())
        self._step()
        return total, torch.cat(outputs)

    def _sync(self, last: bool):
        """DDP synchronises gradients only on the last micro-batch of a step."""
        if last or not isinstance(self.model, DistributedDataParallel):
            return contextlib.nullcontext()
        return self.model.no_sync()

    def _backward(self, loss) -> None:
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
        else:
            loss.backward()

    def _step(self) -> None:
        clip = self.config.clip_grad
        if self.scaler is not None:
            if clip is not None:
                self.scaler.unscale_(self.optimizer)
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), clip)
            self.scaler.step(self.optimizer)
            self.scaler.update()
            return
        if clip is not None:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), clip)
        self.optimizer.step()

    @torch.no_grad()
    def evaluate(self, model, loader) -> EpochStats:
        """Mean loss, top-1 and top-5 over the whole validation set (all ranks);
        top-5 is None when the model scores 5 or fewer classes (`reports_top5`)."""
        model.eval()
        totals = torch.zeros(4, dtype=torch.float64, device=self.device)
        start = time.perf_counter()
        classes = None
        for images, labels in loader:
            images, labels = self._to_device(images, labels)
            with self._autocast():
                logits = model(images)
            logits = logits.float()
            classes = logits.shape[1]
            top = logits.topk(min(TOP_K, classes), dim=1).indices
            hits = top == labels[:, None]
            totals += torch.stack([
                F.cross_entropy(logits, labels, reduction="sum").double(),
                hits[:, 0].sum().double(), hits.any(1).sum().double(),
                torch.tensor(labels.numel(), dtype=torch.float64, device=self.device)])
        loss_sum, top1, top5, count = _all_reduce(totals).tolist()
        count = max(count, 1)
        # classes stays None on a rank with no validation image (fewer images than
        # ranks); rank 0, the one that reports, always has the first.
        measured = classes is not None and reports_top5(classes)
        return EpochStats(loss_sum / count, top1 / count,
                          top5 / count if measured else None, int(count),
                          time.perf_counter() - start)


def _all_reduce(totals: torch.Tensor) -> torch.Tensor:
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(totals)
    return totals


def current_lr(optimizer) -> float:
    return float(optimizer.param_groups[0]["lr"])


def unwrap(model):
    """The plain module under torch.compile (`._orig_mod`) and DDP (`.module`)."""
    model = getattr(model, "_orig_mod", model)
    if isinstance(model, DistributedDataParallel):
        model = model.module
    return model
