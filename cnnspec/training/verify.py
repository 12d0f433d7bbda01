"""Every image of an image folder opened and decoded before a run starts, so a bad
file stops the run before its folder exists (or is left out, when asked), instead
of failing mid-epoch or, in a dropped last batch, never being read at all.

Takes: image paths, and optionally a stream for a progress bar (drawn only on a
terminal, for more than `LARGE` files). Returns: `Scan`, the distinct sizes (H, W)
of the images that decode and, for every file that does not, the reason in a few
words.
`listing` writes the first few bad files and a count for a message or a note.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

LARGE = 2000   # more files than this get a progress bar (on a terminal)
LISTED = 5     # bad files named in a message; the rest are counted
CHUNK = 64     # files per task of the thread pool


@dataclass
class Scan:
    sizes: set[tuple[int, int]] = field(default_factory=set)  # (H, W), not per file
    bad: dict[str, str] = field(default_factory=dict)         # path -> reason


def scan_images(paths: list[str], progress=None) -> Scan:
    """Decode every file of `paths` as the training loader will; `progress` is a
    text stream for the bar (None: no bar)."""
    # Threads, not processes: Pillow releases the GIL while it decodes, so on 2 cores
    # two threads check 128-500 px JPEGs 1.6-2.4x faster than one (measured), and a
    # process pool would have to spawn (forking a process that runs torch's threads
    # can deadlock), which re-runs the user's script in each worker and costs
    # seconds when it imports torch. Tiny PNGs, mostly Python work, check ~2x slower
    # on threads than serially, but they take 40 us each either way. Chunks of
    # CHUNK files keep the pool's per-task cost off small files.
    scan = Scan()
    chunks = [paths[i:i + CHUNK] for i in range(0, len(paths), CHUNK)]
    pool = ThreadPoolExecutor(_workers())
    try:
        with _bar(progress, len(paths)) as advance:
            for chunk, results in zip(chunks, pool.map(_decode_all, chunks)):
                for path, (size, why) in zip(chunk, results):
                    if why is None:
                        scan.sizes.add(size)
                    else:
                        scan.bad[path] = why
                advance(len(chunk))
    finally:  # on Ctrl-C, stop after the chunks in hand, not after the whole folder
        pool.shutdown(cancel_futures=True)
    return scan


def _decode_all(paths: list[str]) -> list:
    return [decode(path) for path in paths]


def decode(path: str) -> tuple[tuple[int, int] | None, str | None]:
    """((H, W), None) if `path` decodes as an RGB image, else (None, reason).
    `Image.verify()` would pass a truncated file; only decoding finds it."""
    from PIL import Image

    try:
        with open(path, "rb") as f, Image.open(f) as image:
            image.load()
            if image.mode != "RGB":
                image.convert("RGB")  # what the loader does; some modes fail here
            return (image.height, image.width), None
    except Exception as problem:  # PIL raises many kinds; any means "unusable file"
        return None, reason(problem)


def reason(problem: Exception) -> str:
    """Why PIL could not read a file, in a few words."""
    text = str(problem) or type(problem).__name__
    if type(problem).__name__ == "UnidentifiedImageError":
        return "not an image PIL can decode"
    if isinstance(problem, OSError) and problem.strerror:
        return problem.strerror  # "Permission denied"
    if "truncated" in text.lower():  # "Truncated File Read", "image file is truncated"
        return "truncated: the file ends before the image does"
    return text


def listing(bad: dict[str, str], root: Path) -> str:
    """The first LISTED bad files (relative to `root`) with their reasons, then
    how many more."""
    shown = [f"{_relative(path, root)} ({why})" for path, why in list(bad.items())[:LISTED]]
    rest = len(bad) - len(shown)
    return ", ".join(shown) + (f" and {rest:,} more" if rest else "")


def _relative(path: str, root: Path) -> str:
    try:
        return str(Path(path).relative_to(root))
    except ValueError:
        return path


def _workers() -> int:
    # One thread per core: on 2 cores, 4 threads were slower than 2.
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return min(8, cores or os.cpu_count() or 1)


@contextmanager
def _bar(stream, total: int):
    """Yields `advance(count)`: it moves a rich progress bar on `stream` when that is
    a terminal and the scan is large, and does nothing otherwise."""
    if stream is None or total <= LARGE or not _is_terminal(stream):
        yield lambda count: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, \
        TimeRemainingColumn

    with Progress(TextColumn("checking images"), BarColumn(), MofNCompleteColumn(),
                  TimeRemainingColumn(), console=Console(file=stream),
                  transient=True) as bar:
        task = bar.add_task("check", total=total)
        yield lambda count: bar.advance(task, count)


def _is_terminal(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False
