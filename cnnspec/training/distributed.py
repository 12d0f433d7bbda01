"""Multi-process data parallel: torchrun's environment, the process group, samplers.

Takes: the environment torchrun sets (RANK, WORLD_SIZE, LOCAL_RANK) and the run's
device choice. Returns: a `World` (rank, size, device); data samplers that give
every rank its share; `launch`, which starts N processes of the same command
through `torch.distributed.run`. One process is simply a world of size 1: the same
code path, no process group.
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.utils.data import DistributedSampler, Sampler

from . import signals
from .errors import UsageError


@dataclass
class World:
    rank: int
    size: int
    local_rank: int
    device: torch.device

    @property
    def main(self) -> bool:
        return self.rank == 0


def pick_device(choice: str, local_rank: int = 0) -> torch.device:
    if choice == "auto":
        if torch.cuda.is_available():
            choice = "cuda"
        elif getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            choice = "mps"
        else:
            choice = "cpu"
    if choice == "cuda":
        if not torch.cuda.is_available():
            raise UsageError("--device cuda: no CUDA device is visible to PyTorch "
                             "(use --device cpu, or auto)")
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    if choice == "mps" and not (getattr(torch.backends, "mps", None)
                                and torch.backends.mps.is_available()):
        raise UsageError("--device mps: Apple's Metal backend is not available here")
    return torch.device(choice)


def join(device_choice: str) -> World:
    """This process's place in the run; joins the process group under torchrun."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = pick_device(device_choice, local_rank)
    if size > 1 and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return World(rank, size, local_rank, device)


def leave() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def train_sampler(dataset, world: World, seed: int) -> DistributedSampler:
    """A new permutation each epoch (`set_epoch`), seeded, split across ranks.

    Rank r takes positions r, r+N, r+2N... of the permutation, so the k-th batches
    of all ranks together are exactly the k-th global batch of a one-process run
    with the same seed (with the loader's drop_last): the same optimization."""
    return DistributedSampler(dataset, num_replicas=world.size, rank=world.rank,
                              shuffle=True, seed=seed, drop_last=True)


class ShardSampler(Sampler):
    """Validation: every image exactly once over all ranks (no padding, unlike
    DistributedSampler), so the summed metrics are exact."""

    def __init__(self, dataset, world: World):
        self.indices = range(world.rank, len(dataset), world.size)

    def __iter__(self):
        return iter(self.indices)

    def __len__(self):
        return len(self.indices)


def sync_batchnorm(module: torch.nn.Module) -> torch.nn.Module:
    """Every trainable batchnorm as a SyncBatchNorm (CUDA only); the frozen ones of
    `frozen { }` keep their own statistics."""
    from ..backends.torch_backend import FrozenBatchNorm1d, FrozenBatchNorm2d

    for name, child in module.named_children():
        if isinstance(child, (FrozenBatchNorm1d, FrozenBatchNorm2d)):
            continue
        if isinstance(child, torch.nn.modules.batchnorm._BatchNorm):
            setattr(module, name, torch.nn.SyncBatchNorm.convert_sync_batchnorm(child))
        else:
            sync_batchnorm(child)
    return module


def check_sync_batchnorm(wanted: bool, device: torch.device) -> None:
    if wanted and device.type != "cuda":
        raise UsageError("--sync-batchnorm needs CUDA devices (torch.nn.SyncBatchNorm "
                         "runs only there); on the CPU each process normalizes its "
                         "own share of the batch")


def launch(argv: list[str], nproc: int, warning: int = signals.WARNING) -> int:
    """Run `cnnspec ARGV` in `nproc` processes on this machine through torchrun's
    launcher, in this process, so that a stop signal reaches it here: SIGTERM,
    Ctrl-C or the early warning (`warning`, SIGUSR1 by default) is passed on to
    every rank (each saves and stops as one process does) and the status is 128 +
    the signal, or 75 for the warning. A rank that fails gives its own status.
    Multi-node runs call torchrun directly (see docs/training.md, docs/clusters.md)."""
    import logging

    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser, run

    def warned(number, _frame):
        # torchrun's agent passes the signal of a SignalException on to every rank,
        # as it does for the signals it handles itself (SIGTERM, SIGINT, ...)
        raise SignalException(f"process {os.getpid()} got the early warning",
                              sigval=signal.Signals(number))

    # torchrun would set one thread per process and say so; share the cores instead.
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    # The ranks say what happened; the launcher's own log lines would only repeat it
    # (each of its modules' loggers sets its own level, so each is quieted).
    for name in list(logging.root.manager.loggerDict):
        if name.startswith("torch.distributed"):
            logging.getLogger(name).setLevel(logging.ERROR)
    options = get_args_parser().parse_args(
        ["--standalone", f"--nproc-per-node={nproc}", "-m", "cnnspec", *argv])
    signals.use_warning(warning)
    # torchrun installs its own handlers (and leaves them): put ours back afterwards
    previous = {number: signal.getsignal(number) for number in dict.fromkeys(
        (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, warning))}
    if previous[warning] is not signal.SIG_IGN:
        signal.signal(warning, warned)
    try:
        run(options)
    except SignalException as stop:
        return signals.exit_status(int(stop.sigval))
    except ChildFailedError as failed:
        _, failure = failed.get_first_failure()
        code = failure.exitcode
        return 128 - code if code < 0 else code  # a rank killed by signal N: -N
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
    return 0
