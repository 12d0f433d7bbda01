"""The signals that stop a run: Ctrl-C (SIGINT) and SIGTERM, what `kill`, schedulers
(SLURM, Kubernetes) and torchrun send by default.

Takes: nothing; `handled()` wraps a run, `deferred()` wraps each write that must
not be cut short. Returns: while `handled()` is active, either signal raises
`Stopped` (a KeyboardInterrupt, so every path that handles Ctrl-C handles both) in
the main thread; inside `deferred()` it is held until the block ends.
`received()` says which signal arrived, for the exit status (128 + its number,
as shells report it: 130 for SIGINT, 143 for SIGTERM).
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)

_received: list[int] = []


class Stopped(KeyboardInterrupt):
    """A stop signal arrived; `signal_number` says which."""

    def __init__(self, signal_number: int):
        super().__init__(signal.Signals(signal_number).name)
        self.signal_number = signal_number


def received() -> int | None:
    """The first stop signal of the current `handled()` block, if any."""
    return _received[0] if _received else None


def exit_status(signal_number: int | None) -> int:
    return 128 + (signal_number or signal.SIGINT)


def _stop(number, _frame) -> None:
    if _received:  # a second signal (a launcher passing ours on): already stopping
        return
    _received.append(number)
    raise Stopped(number)


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _install(handler) -> dict:
    """`handler` for each stop signal that is not ignored (a shell starts a
    background job with SIGINT ignored, and it stays so); the previous handlers."""
    previous = {number: signal.getsignal(number) for number in STOP_SIGNALS}
    for number, old in previous.items():
        if old is not signal.SIG_IGN:
            signal.signal(number, handler)
    return previous


def _restore(previous: dict) -> None:
    for number, handler in previous.items():
        signal.signal(number, handler)


@contextmanager
def handled():
    """SIGINT and SIGTERM raise `Stopped` during the block (main thread only)."""
    _received.clear()
    if not _in_main_thread():
        yield
        return
    previous = _install(_stop)
    try:
        yield
    finally:
        _restore(previous)


@contextmanager
def deferred():
    """A stop signal during the block takes effect when the block ends, so a
    checkpoint being written is finished first (main thread only)."""
    if not _in_main_thread():
        yield
        return
    held: list[int] = []
    previous = _install(lambda number, _frame: held.append(number))
    try:
        yield
    finally:
        _restore(previous)
    if held:
        _received.append(held[0])
        raise Stopped(held[0])
