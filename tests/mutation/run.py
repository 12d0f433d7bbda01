"""Mutation testing by groups of modules: `make mutate` (docs/testing.md).

Takes group names (the `*.cfg` files beside this script; all of them by default).
Each group is a mutmut configuration: the modules to mutate and the tests that may
kill their mutants. mutmut reads one configuration per directory, so each group runs
in its own copy of the tracked tree, `.mutation/<group>/`, which is kept: a second run
only tests what is left, and `cd .mutation/<group> && mutmut show NAME` shows a
mutant. Prints, per module, how many mutants were killed, survived, had no test, or
timed out. Slow (tens of minutes a group on two cores); not part of CI. With
`--sample N`, each module's outcome is that of N mutants drawn at random (seeded),
an estimate of the whole at a fraction of the time.
"""

from __future__ import annotations

import argparse
import collections
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
GROUPS = sorted(path.stem for path in HERE.glob("*.cfg"))


def prepare(group: str, fresh: bool) -> Path:
    """Copy the working tree as it is on disk (tracked files, and new files git does not
    ignore: a test not yet committed) to .mutation/<group>/ with the group's config."""
    workdir = ROOT / ".mutation" / group
    if fresh and workdir.exists():
        shutil.rmtree(workdir)
    tracked = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, check=True, capture_output=True
    ).stdout.decode().split("\0")
    for name in filter(None, tracked):
        source, target = ROOT / name, workdir / name
        if source.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    shutil.copy2(HERE / f"{group}.cfg", workdir / "setup.cfg")
    return workdir


def outcomes(workdir: Path, mutmut: str) -> dict[str, dict[str, str]]:
    """Per module, each mutant's state (killed, survived, not checked, ...)."""
    listing = subprocess.run(
        [mutmut, "results", "--all", "true"], cwd=workdir, check=True,
        capture_output=True, text=True,
    ).stdout
    by_module: dict[str, dict[str, str]] = collections.defaultdict(dict)
    for line in listing.splitlines():
        name, _, status = line.strip().rpartition(": ")
        if name:
            by_module[name.rsplit(".", 1)[0]][name] = status
    return by_module


def sample(by_module: dict[str, dict[str, str]], size: int) -> dict[str, dict[str, str]]:
    """`size` mutants of each module, the same ones on every run (seeded by its name)."""
    return {module: {name: states[name] for name in
                     random.Random(module).sample(sorted(states), min(size, len(states)))}
            for module, states in by_module.items()}


def report(by_module: dict[str, dict[str, str]]) -> None:
    states = ["killed", "survived", "no tests", "timeout"]
    print(f"{'module':34} {'mutants':>8} " + " ".join(f"{s:>9}" for s in states) + "  other")
    for module, mutants in sorted(by_module.items()):
        counts = collections.Counter(mutants.values())
        other = sum(n for s, n in counts.items() if s not in states)
        print(f"{module:34} {len(mutants):>8} "
              + " ".join(f"{counts[s]:>9}" for s in states) + f"  {other}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("groups", nargs="*", metavar="GROUP",
                        help=f"which groups to run (default: all of {', '.join(GROUPS)})")
    parser.add_argument("--fresh", action="store_true",
                        help="discard earlier results and test every mutant again")
    parser.add_argument("--max-children", type=int, default=2)
    parser.add_argument("--sample", type=int, metavar="N",
                        help="test N mutants of each module, drawn at random (seeded)")
    parser.add_argument("--report-only", action="store_true",
                        help="print the results of earlier runs without running")
    args = parser.parse_args()
    unknown = set(args.groups) - set(GROUPS)
    if unknown:
        parser.error(f"no group {', '.join(sorted(unknown))}; the groups are {', '.join(GROUPS)}")
    mutmut = str(Path(sys.executable).with_name("mutmut"))
    # One torch thread per mutant process: two processes with two threads each on two
    # cores spend most of their time waiting on each other.
    env = dict(os.environ, OMP_NUM_THREADS="1")
    for group in args.groups or GROUPS:
        print(f"== {group}", flush=True)
        workdir = ROOT / ".mutation" / group
        if not args.report_only:
            prepare(group, args.fresh)
            chosen: list[str] = []
            if args.sample:
                # A pattern that matches no mutant makes mutmut generate them all
                # (and collect which tests reach which function) without testing any.
                subprocess.run([mutmut, "run", "--max-children", str(args.max_children),
                                "no-such-mutant"], cwd=workdir, env=env,
                               capture_output=True)
                drawn = sample(outcomes(workdir, mutmut), args.sample)
                chosen = [name for states in drawn.values() for name, state in
                          states.items() if state == "not checked"]
            if chosen or not args.sample:
                # mutmut exits non-zero when mutants survive; the report says how many.
                subprocess.run([mutmut, "run", "--max-children", str(args.max_children),
                                *chosen], cwd=workdir, env=env)
        results = outcomes(workdir, mutmut)
        report(sample(results, args.sample) if args.sample else results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
