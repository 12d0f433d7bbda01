"""The signals that stop a run: Ctrl-C (SIGINT) and SIGTERM, what `kill`, schedulers
(SLURM, Kubernetes) and torchrun send by default, and the early warning of a time
limit or a preemption (SIGUSR1 unless `--stop-signal` names another: SLURM's
`sbatch --signal=B:USR1@90`).

Takes: the early-warning signal; `handled(warning)` wraps a run, `deferred()` wraps
each write that must not be cut short. Returns: while `handled()` is active, any of
those signals raises `Stopped` (a KeyboardInterrupt, so every path that handles
Ctrl-C handles them all) in the main thread; inside `deferred()` it is held until
the block ends. `received()` says which signal arrived, `preempted()` whether it
was the warning, and `exit_status` the status: 75 (`PREEMPTED`, sysexits'
EX_TEMPFAIL, "try again later") for the warning, else 128 + the signal's number as
shells report it: 130 for SIGINT, 143 for SIGTERM.
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
WARNING = signal.SIGUSR1  # the default early warning (--stop-signal)
PREEMPTED = 75            # sysexits.h EX_TEMPFAIL: saved, stopped, run it again

_received: list[int] = []
_warning: list[int] = [WARNING]  # the early-warning signal of the latest run


class Stopped(KeyboardInterrupt):
    """A stop signal arrived; `signal_number` says which."""

    def __init__(self, signal_number: int):
        super().__init__(signal.Signals(signal_number).name)
        self.signal_number = signal_number


def received() -> int | None:
    """The first stop signal of the current `handled()` block, if any."""
    return _received[0] if _received else None


def use_warning(number: int) -> None:
    """Make `number` the early-warning signal (`handled` and the launcher call this)."""
    _warning[0] = int(number)


def preempted(signal_number: int | None = None) -> bool:
    """Whether `signal_number` (by default the one received) is the early warning."""
    number = received() if signal_number is None else signal_number
    return number is not None and int(number) == _warning[0]


def exit_status(signal_number: int | None) -> int:
    """75 for the early warning; 128 + the signal otherwise (130 for none known)."""
    if signal_number is not None and preempted(signal_number):
        return PREEMPTED
    return 128 + (signal_number or signal.SIGINT)


def _stop(number, _frame) -> None:
    if _received:  # a second signal (a launcher passing ours on): already stopping
        return
    _received.append(number)
    raise Stopped(number)


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _install(handler) -> dict:
    """`handler` for each stop signal and the early warning that is not ignored (a
    shell starts a background job with SIGINT ignored, and it stays so); the
    previous handlers."""
    numbers = dict.fromkeys((*STOP_SIGNALS, _warning[0]))
    previous = {number: signal.getsignal(number) for number in numbers}
    for number, old in previous.items():
        if old is not signal.SIG_IGN:
            signal.signal(number, handler)
    return previous


def _restore(previous: dict) -> None:
    for number, handler in previous.items():
        signal.signal(number, handler)


@contextmanager
def handled(warning: int = WARNING):
    """SIGINT, SIGTERM and `warning` raise `Stopped` during the block (main thread
    only)."""
    _received.clear()
    use_warning(warning)
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
