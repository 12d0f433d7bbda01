"""Claiming a run folder: one run at a time in a folder, and nothing lost to the
runs before it.

Takes: the `--out` or `--resume` folder (or None: runs/NAME, runs/NAME-2, ...), the
spec's name and the process's place in the world. Returns: a `RunFolder` that holds
an exclusive lock on `RUN/.lock` (fcntl.flock, released by the system when the
process ends in any way, SIGKILL included, so a lock is never stale) until
`release()`. The lock file names the holder's process and command, so a second run
is refused with a message naming the first. Writes killed midway (`.NAME.PID.tmp`)
are removed once the lock is held. Raises `UsageError` (exit 2) for a folder that
is in use or holds a finished epoch, and `StorageError` (exit 3) for one that
cannot be written.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from .checkpoint import CHECKPOINT, remove_temporaries
from .errors import StorageError, UsageError

LOCK = ".lock"


@dataclass
class RunFolder:
    path: Path
    notes: list[str]
    handle: object | None = None  # the open lock file (rank 0 only)

    def release(self) -> None:
        if self.handle is not None:
            self.handle.close()  # closing the descriptor releases the flock
            self.handle = None


def claim(out, name: str, resume: bool, command: str) -> RunFolder:
    """The run folder, made if need be and locked (by the main process; the other
    ranks are told its path, see `run._claim`)."""
    if out is None:
        path = _free_default(name)
    else:
        path = Path(out)
        if not resume:
            _make(path)
    handle = _lock(path, command)
    try:
        notes = _take_over(path, resume)
    except BaseException:
        handle.close()
        raise
    return RunFolder(path, notes, handle)


def _free_default(name: str) -> Path:
    """runs/NAME, runs/NAME-2, ...: the first that this call itself creates, so two
    runs started together never share one."""
    number = 1
    while True:
        path = Path("runs") / (name if number == 1 else f"{name}-{number}")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.mkdir()
            return path
        except FileExistsError:
            number += 1
        except OSError as problem:
            raise StorageError(path, problem.strerror or str(problem),
                               f"cannot make the run folder {path}: "
                               f"{problem.strerror or problem}") from None


def _make(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as problem:
        raise StorageError(path, problem.strerror or str(problem),
                           f"cannot make the run folder {path}: "
                           f"{problem.strerror or problem}") from None


def _lock(path: Path, command: str):
    """The open, exclusively locked RUN/.lock, rewritten with our process's id."""
    lock = path / LOCK
    try:
        handle = open(lock, "a+", encoding="utf-8")
    except OSError as problem:
        raise StorageError(path, problem.strerror or str(problem),
                           f"cannot write in the run folder {path}: "
                           f"{problem.strerror or problem}; nothing in it was changed. "
                           "Make it writable, or copy it to a writable place and "
                           "--resume the copy") from None
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = _holder(handle.read())
        handle.close()
        raise UsageError(f"{path} is in use by another run ({holder}); wait for it to "
                         "end, or choose another --out") from None
    handle.seek(0)
    handle.truncate()
    handle.write(json.dumps({"pid": os.getpid(), "command": command,
                             "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
                             "host": os.uname().nodename}) + "\n")
    handle.flush()
    return handle


def _holder(text: str) -> str:
    try:
        holder = json.loads(text)
        return (f"process {holder['pid']} on {holder['host']}, started "
                f"{holder['started']}: {holder['command']}")
    except (ValueError, KeyError, TypeError):
        return "a process that has not yet said which"


def _take_over(path: Path, resume: bool) -> list[str]:
    """Notes on what was cleaned up; refuses a fresh run over finished epochs."""
    notes = []
    removed = remove_temporaries(path)
    if removed:
        notes.append(f"removed {', '.join(removed)}, left by a write that was cut short")
    checkpoint = path / CHECKPOINT
    if resume or not checkpoint.exists():
        return notes
    epoch = saved_epoch(checkpoint)
    if epoch is None or epoch > 0:
        done = f"{epoch} finished epochs" if epoch else "a checkpoint"
        raise UsageError(f"{path} already holds a run ({done}); continue it with "
                         f"--resume {path}, or choose another --out")
    notes.append(f"{path} held a run that ended before finishing an epoch; "
                 "starting it again")
    return notes


def saved_epoch(checkpoint: Path) -> int | None:
    """The last finished epoch recorded in a checkpoint (0: only the starting
    state), or None if it cannot be read. Memory-mapped: the tensors are not read."""
    try:
        state = torch.load(checkpoint, map_location="cpu", weights_only=True, mmap=True)
        return int(state["epoch"])
    except Exception:  # unreadable: refused as a run, the user decides
        return None
