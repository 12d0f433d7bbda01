"""The two ways a training run fails, each with one clear message for the user.

`UsageError`: the command cannot run as given (a missing or unreadable checkpoint,
an option out of range): exit status 2. `DataError`, a kind of it: the data cannot
be used (missing folder, one class, an unreadable image, a bad source string).
`TrainingError`: the spec or the run is wrong (output not a class vector, a class
count that disagrees with the data, a non-finite loss, a resume from another spec):
exit status 1. `StorageError`: a file of the run could not be written (a full
disk, a read-only folder, no permission): exit status 3, and everything saved
before is kept. The CLI prints `str(problem)`; no traceback reaches a user.
"""

from __future__ import annotations


class UsageError(Exception):
    """The command cannot run as given; the message says what to change."""


class DataError(UsageError):
    """The data source cannot be read or used; the message says which file or folder."""

    def __str__(self) -> str:
        # A DataLoader worker re-raises our error with its traceback prepended;
        # the user needs only our own last line.
        text = super().__str__().strip()
        last = text.splitlines()[-1] if text else text
        head, sep, rest = last.partition("DataError: ")
        return rest if sep and " " not in head else last


class TrainingError(Exception):
    """The spec does not fit the task, or training itself failed."""


class StorageError(Exception):
    """A run file could not be written; `path` is the file, `reason` the system's
    words ("No space left on device"). The run adds what is still saved."""

    def __init__(self, path, reason: str, message: str | None = None):
        super().__init__(message or f"cannot write {path}: {reason}")
        self.path, self.reason = path, reason
