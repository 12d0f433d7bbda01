"""How fast is `cnnspec check`? Cold start, every shipped spec, and scaling with depth.

Run:  .venv/bin/python benchmarks/check_speed.py [--quick]

(a) cold `python -m cnnspec check specs/resnet50.cnn` (a fresh interpreter each run)
    against cold `python -c "import torch"` and `python -c pass`; target: < 0.3 s.
(b) in-process `cnnspec.load` time for every spec in specs/.
(c) in-process check time per IR node for bottleneck ResNets from 50 to 2000 layers,
    generated as .cnn text that imports specs/blocks/resnet.cnn; per-node time
    should stay flat (largest / smallest us-per-node < 1.5).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import cnnspec  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

COLD_TARGET_S = 0.3
FLATNESS_LIMIT = 1.5
DEPTHS = [50, 101, 152, 200, 350, 500, 1000, 1500, 2000]
console = Console(highlight=False, width=max(110, shutil.get_terminal_size().columns))


def cold_median(argv: list[str], runs: int) -> tuple[float, float, float, int]:
    """Median, min and max wall seconds of a fresh process, and its exit code."""
    times, rc = [], 0
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="0")
    for _ in range(runs):
        start = time.perf_counter()
        done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True)
        times.append(time.perf_counter() - start)
        rc = rc or done.returncode
    return statistics.median(times), min(times), max(times), rc


def section_cold(runs: int) -> float:
    py = sys.executable
    rows = [("python -m cnnspec check specs/resnet50.cnn",
             [py, "-m", "cnnspec", "check", "specs/resnet50.cnn"])]
    has_torch = importlib.util.find_spec("torch") is not None
    if has_torch:
        rows.append(('python -c "import torch"', [py, "-c", "import torch"]))
    rows.append(("python -c pass", [py, "-c", "pass"]))
    # One untimed run warms the OS file cache and cnnspec's on-disk parser cache.
    subprocess.run(rows[0][1], cwd=ROOT, capture_output=True)

    table = Table(title=f"(a) cold start, median of {runs} fresh processes")
    for column in ("command", "median s", "min s", "max s", "exit"):
        table.add_column(column, justify="left" if column == "command" else "right")
    results = {}
    for label, argv in rows:
        median, low, high, rc = cold_median(argv, runs)
        results[label] = median
        table.add_row(label, f"{median:.3f}", f"{low:.3f}", f"{high:.3f}", str(rc))
    console.print(table)
    check = results[rows[0][0]]
    bare = results["python -c pass"]
    if not has_torch:
        console.print('torch: not installed in this environment; `import torch` not timed')
    else:
        console.print(f"torch import alone: {results[rows[1][0]]:.3f} s "
                      f"({results[rows[1][0]] / check:.1f}x the whole cnnspec check)")
    verdict = "PASS" if check < COLD_TARGET_S else "FAIL"
    console.print(f"target: cold check under {COLD_TARGET_S} s -> {check:.3f} s "
                  f"({check - bare:.3f} s above a bare interpreter): [bold]{verdict}[/]")
    return check


def time_load(source, repeats: int) -> tuple[float, object]:
    """Median seconds of cnnspec.load(source) in this process (after one warm-up)."""
    spec = cnnspec.load(source)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        cnnspec.load(source)
        times.append(time.perf_counter() - start)
    return statistics.median(times), spec


def section_specs(repeats: int) -> None:
    table = Table(title=f"(b) in-process check (cnnspec.load), median of {repeats}")
    for column in ("spec", "nodes", "params", "ms", "us/node"):
        table.add_column(column, justify="left" if column == "spec" else "right")
    for path in sorted((ROOT / "specs").glob("*.cnn")):
        try:
            seconds, spec = time_load(path, repeats)
        except cnnspec.SpecError as problem:
            table.add_row(path.name, "-", "-", "error", problem.code)
            continue
        nodes = len(spec.graph.nodes)
        table.add_row(path.name, f"{nodes:,}", f"{spec.params:,}", f"{seconds * 1e3:.1f}",
                      f"{seconds * 1e6 / nodes:.0f}")
    console.print(table)


def resnet_text(depth: int) -> tuple[str, list[int]]:
    """A bottleneck ResNet of about `depth` layers (3 per block + stem + fc)."""
    blocks = max(4, round((depth - 2) / 3))
    shares = [3, 4, 6, 3]  # ResNet-50's proportions
    counts = [max(1, blocks * s // 16) for s in shares]
    counts[2] += blocks - sum(counts)
    lines = ['import "blocks/resnet.cnn"', "", f"network resnet{depth}(classes = 1000) {{",
             "    input 3x224x224",
             "    conv1:   conv 64 k=7 s=2 p=3 bias=false -> 64x112x112",
             "    bn1:     batchnorm", "    relu:    relu",
             "    maxpool: maxpool 3 s=2 p=1 -> 64x56x56"]
    for stage, (count, width) in enumerate(zip(counts, (64, 128, 256, 512)), start=1):
        first = f"bottleneck({width})" if stage == 1 else f"bottleneck({width}, stride=2)"
        rest = f", bottleneck({width}) * {count - 1}" if count > 1 else ""
        lines.append(f"    layer{stage}: {first}{rest}")
    lines += ["    avgpool: avgpool global", "    flatten",
              "    fc:      linear classes -> classes", "}", ""]
    return "\n".join(lines), counts


def section_depth(repeats: int) -> None:
    rows = []  # (depth, counts, nodes, params, microseconds)
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copytree(ROOT / "specs" / "blocks", Path(tmp) / "blocks")
        for depth in DEPTHS:
            text, counts = resnet_text(depth)
            path = Path(tmp) / f"resnet{depth}.cnn"
            path.write_text(text)
            seconds, spec = time_load(path, repeats)
            rows.append((3 * sum(counts) + 2, counts, len(spec.graph.nodes), spec.params,
                         seconds * 1e6))
    # Marginal cost: what each node adds over the 50-layer network. It separates the
    # per-node cost from the fixed cost (parsing the block library, the entry call).
    base_nodes, base_us = rows[0][2], rows[0][4]
    per_node = [us / nodes for _, _, nodes, _, us in rows]
    marginal = [None] + [(us - base_us) / (nodes - base_nodes)
                         for _, _, nodes, _, us in rows[1:]]

    table = Table(title=f"(c) generated bottleneck ResNets, median of {repeats}")
    for column in ("depth", "blocks/stage", "nodes", "params", "total ms", "us/node",
                   "marginal us/node"):
        table.add_column(column, justify="right")
    for (depth, counts, nodes, params, us), each, extra in zip(rows, per_node, marginal):
        table.add_row(str(depth), "-".join(map(str, counts)), f"{nodes:,}", f"{params:,}",
                      f"{us / 1e3:.1f}", f"{each:.1f}", "-" if extra is None else f"{extra:.1f}")
    console.print(table)

    ratio = max(per_node) / min(per_node)
    trend = "falls" if per_node[-1] < per_node[0] else "rises"
    console.print(f"us/node (total / nodes): {min(per_node):.1f}-{max(per_node):.1f}, "
                  f"largest/smallest = {ratio:.2f}; it {trend} with depth")
    steady = [m for m in marginal[1:] if m > 0]
    marginal_ratio = max(steady) / min(steady)
    fixed_ms = (base_us - base_nodes * statistics.median(steady)) / 1e3
    flat = marginal_ratio < FLATNESS_LIMIT and per_node[-1] <= per_node[0] * FLATNESS_LIMIT
    console.print(f"marginal us/node: {min(steady):.1f}-{max(steady):.1f}, largest/smallest = "
                  f"{marginal_ratio:.2f} (limit {FLATNESS_LIMIT}); fixed cost ~{fixed_ms:.1f} ms")
    console.print("verdict: per-node time "
                  + ("[bold]stays flat[/] (check time is linear in depth)" if flat else
                     "[bold]does NOT stay flat[/] (check time grows faster than depth)"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    args = parser.parse_args()
    cold_runs, repeats = (3, 2) if args.quick else (7, 5)
    console.print(f"cnnspec {cnnspec.__version__} on Python {sys.version.split()[0]}, "
                  f"{os.cpu_count()} CPUs")
    section_cold(cold_runs)
    section_specs(repeats)
    section_depth(repeats)


if __name__ == "__main__":
    main()
