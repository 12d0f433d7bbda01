"""The whole library: parse + check + build every spec, against torchvision's constructors.

Run:  .venv/bin/python benchmarks/library_speed.py [--quick] [--repeats N]

For every spec in specs/*.cnn: `cnnspec.load` (parse, elaborate, check) and then
`cnnspec.build` of the loaded Spec (module tree, fx graph, weight init), timed
separately and summed. Where the spec's network name is a torchvision constructor,
`torchvision.models.<name>(weights=None)` is timed in the same run (googlenet with
aux_logits=True, init_weights=True, as the spec keeps the auxiliary heads). A pair
counts only if both modules hold the same number of parameters; a spec that borrows
a torchvision name for another variant (specs/alexnet.cnn, the paper's AlexNet) is
reported without a ratio.

One untimed warm-up round (lazy imports, parser tables), then N rounds; within a
round every spec is measured in turn, cnnspec and torchvision interleaved (the order
alternating between rounds). Medians per spec; totals are sums of medians.
torch.set_num_threads(2) (the project's standard machine has 2 cores).
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import shutil
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import torchvision  # noqa: E402
import torchvision.models as tvm  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

import cnnspec  # noqa: E402

THREADS = 2
EXTRA_ARGS = {"googlenet": {"aux_logits": True, "init_weights": True}}
console = Console(highlight=False, width=max(120, shutil.get_terminal_size().columns))


def torchvision_constructor(name: str):
    if name not in tvm.list_models(module=tvm):
        return None
    builder = getattr(tvm, name)
    return lambda: builder(weights=None, **EXTRA_ARGS.get(name, {}))


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def timed(fn):
    gc.collect()
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


class Case:
    def __init__(self, path: Path):
        self.path = path
        self.load_s: list[float] = []
        self.build_s: list[float] = []
        self.tv_s: list[float] = []
        self.error: str | None = None
        spec = cnnspec.load(path)  # warm-up; raises for a refused spec
        self.name = spec.name
        self.params = count(cnnspec.build(spec))
        self.tv = torchvision_constructor(self.name)
        self.tv_params = count(self.tv()) if self.tv else None
        self.paired = self.tv is not None and self.tv_params == self.params

    def run_cnnspec(self) -> None:
        seconds, spec = timed(lambda: cnnspec.load(self.path))
        self.load_s.append(seconds)
        seconds, module = timed(lambda: cnnspec.build(spec))
        self.build_s.append(seconds)
        del module

    def run_torchvision(self) -> None:
        seconds, module = timed(self.tv)
        self.tv_s.append(seconds)
        del module

    @property
    def cnnspec_s(self) -> float:
        return statistics.median(a + b for a, b in zip(self.load_s, self.build_s))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 rounds instead of 5")
    parser.add_argument("--repeats", type=int, help="timed rounds (default 5, quick 2)")
    args = parser.parse_args()
    rounds = args.repeats or (2 if args.quick else 5)
    torch.set_num_threads(THREADS)
    started = time.perf_counter()
    console.print(f"cnnspec {cnnspec.__version__}, torch {torch.__version__}, torchvision "
                  f"{torchvision.__version__}, Python {platform.python_version()}, "
                  f"{os.cpu_count()} CPUs, torch threads {THREADS}, {rounds} rounds")

    cases, refused = [], []
    for path in sorted((ROOT / "specs").glob("*.cnn")):
        try:
            cases.append(Case(path))
        except cnnspec.SpecError as problem:
            refused.append((path.name, problem.code))

    for index in range(rounds):
        for case in cases:
            steps = [case.run_cnnspec] + ([case.run_torchvision] if case.paired else [])
            for step in steps if index % 2 == 0 else steps[::-1]:
                step()

    table = Table(title=f"parse + check + build, median of {rounds} (ms)",
                  title_justify="left")
    for column in ("spec", "params", "load", "build", "cnnspec", "torchvision", "ratio"):
        table.add_column(column, justify="left" if column == "spec" else "right")
    total = {"load": 0.0, "build": 0.0, "cnnspec": 0.0, "paired_cnnspec": 0.0, "tv": 0.0}
    for case in cases:
        load, build = statistics.median(case.load_s), statistics.median(case.build_s)
        mine = case.cnnspec_s
        total["load"] += load
        total["build"] += build
        total["cnnspec"] += mine
        if case.paired:
            theirs = statistics.median(case.tv_s)
            total["paired_cnnspec"] += mine
            total["tv"] += theirs
            tv_cell, ratio = f"{theirs * 1e3:.1f}", f"{mine / theirs:.2f}"
        elif case.tv is not None:
            tv_cell, ratio = f"({case.tv_params:,} params)", "variant"
        else:
            tv_cell, ratio = "–", "–"
        table.add_row(case.path.stem, f"{case.params:,}", f"{load * 1e3:.1f}",
                      f"{build * 1e3:.1f}", f"{mine * 1e3:.1f}", tv_cell, ratio)
    paired = sum(c.paired for c in cases)
    table.add_section()
    table.add_row(f"all {len(cases)} specs", "", f"{total['load'] * 1e3:.0f}",
                  f"{total['build'] * 1e3:.0f}", f"{total['cnnspec'] * 1e3:.0f}", "", "")
    table.add_row(f"the {paired} with a torchvision twin", "", "", "",
                  f"{total['paired_cnnspec'] * 1e3:.0f}", f"{total['tv'] * 1e3:.0f}",
                  f"{total['paired_cnnspec'] / total['tv']:.2f}")
    console.print(table)
    for name, code in refused:
        console.print(f"refused by cnnspec (not timed): {name} ({code})")
    console.print(f"parse + check share of cnnspec's total: "
                  f"{total['load'] / total['cnnspec']:.1%}; wall {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
