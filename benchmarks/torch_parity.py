"""Compiled cnnspec modules against torchvision: build time, run time, training memory.

Run:  .venv/bin/python benchmarks/torch_parity.py [--quick] [--models resnet50,googlenet]

For each model (resnet50, googlenet with its auxiliary heads, densenet121) the
torchvision constructor (`weights=None`) and `cnnspec.build("specs/NAME.cnn")` are
measured side by side in one run, interleaved (A, B, A, B, ...), and the medians
compared. torchvision's state dict is loaded into the cnnspec module (strict=True)
so both compute the same function; the eval outputs are compared before timing.

(a) build: constructing the model; cnnspec's figure includes parsing and checking
    the spec. The first build in this process (lazy imports, parser tables) is
    reported separately from the median of later builds.
(b) eval forward, batch 8 x 3x224x224, under torch.no_grad().
(c) train step, batch 8: forward, cross-entropy summed over every output (googlenet
    in training returns the logits and the two auxiliary logits in both libraries,
    in different orders: the same loss on all three), backward.
(d) peak memory of one training step. CUDA: torch.cuda.max_memory_allocated over
    the step, minus what was allocated before it. CPU: each measurement runs in a
    fresh subprocess, which builds the model, then resets the kernel's peak-RSS
    mark (/proc/self/clear_refs) and reports VmHWM after the step minus VmRSS before
    it (falling back to ru_maxrss where clear_refs is unavailable). RSS includes the
    C allocator's fragmentation and varies by a few per cent between identical runs,
    so a second, deterministic figure is reported too: the peak of live tensor bytes
    (parameters, gradients, activations, temporaries) over the step, tracked op by op
    by torch.distributed._tools.mem_tracker.MemTracker (once per model, in-process).

Targets (cnnspec / torchvision): run time and memory <= 1.02, build time <= 1.10.
torch.set_num_threads(2) everywhere (the project's standard machine has 2 cores).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
import torchvision  # noqa: E402
import torchvision.models as tvm  # noqa: E402

THREADS = 2
BATCH = 8
RUN_TARGET = 1.02
MEMORY_TARGET = 1.02
BUILD_TARGET = 1.10

TORCHVISION = {
    "resnet50": lambda: tvm.resnet50(weights=None),
    "googlenet": lambda: tvm.googlenet(weights=None, aux_logits=True, init_weights=True),
    "densenet121": lambda: tvm.densenet121(weights=None),
}
IMPLS = ("torchvision", "cnnspec")


def spec_path(name: str) -> Path:
    return ROOT / "specs" / f"{name}.cnn"


def construct(name: str, impl: str) -> torch.nn.Module:
    if impl == "torchvision":
        return TORCHVISION[name]()
    import cnnspec

    return cnnspec.build(spec_path(name))


def outputs_of(result) -> list[torch.Tensor]:
    """Every output of a forward: a tensor, or the (named) tuple of a net with aux heads."""
    return [result] if isinstance(result, torch.Tensor) else list(result)


def train_step(model, x, target) -> torch.Tensor:
    loss = sum(F.cross_entropy(out, target) for out in outputs_of(model(x)))
    loss.backward()
    return loss


def sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def inputs(device, classes: int = 1000):
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(BATCH, 3, 224, 224, generator=generator).to(device)
    target = torch.randint(classes, (BATCH,), generator=generator).to(device)
    return x, target


# --------------------------------------------------------------------------- timing


def interleaved(fns: dict[str, callable], repeats: int, device, before=None) -> dict:
    """Run fns[A], fns[B], fns[A], ... `repeats` times each; seconds per call."""
    times = {impl: [] for impl in fns}
    for _ in range(repeats):
        for impl, fn in fns.items():
            if before is not None:
                before(impl)
            gc.collect()
            sync(device)
            start = time.perf_counter()
            fn()
            sync(device)
            times[impl].append(time.perf_counter() - start)
    return times


def measure_build(name: str, repeats: int, device) -> dict:
    first = {}
    for impl in IMPLS:  # the first build in this process, in the order A then B
        gc.collect()
        start = time.perf_counter()
        construct(name, impl)
        first[impl] = time.perf_counter() - start
    times = interleaved({impl: (lambda impl=impl: construct(name, impl)) for impl in IMPLS},
                        repeats, device)
    return {"first": first, "times": times}


def pair(name: str, device):
    reference = construct(name, "torchvision")
    model = construct(name, "cnnspec")
    model.load_state_dict(reference.state_dict(), strict=True)
    return {"torchvision": reference.to(device), "cnnspec": model.to(device)}


def measure_eval(models: dict, x, repeats: int, warmup: int, device) -> dict:
    for model in models.values():
        model.eval()
    with torch.no_grad():
        results = {impl: model(x) for impl, model in models.items()}
        difference = (results["cnnspec"] - results["torchvision"]).abs().max().item()
        del results
        for _ in range(warmup - 1):
            for model in models.values():
                model(x)
        times = interleaved({impl: (lambda m=m: m(x)) for impl, m in models.items()},
                            repeats, device)
    return {"times": times, "max_abs_diff": difference}


def measure_train(models: dict, x, target, repeats: int, warmup: int, device) -> dict:
    for model in models.values():
        model.train()

    def zero(impl):
        models[impl].zero_grad(set_to_none=True)

    # Same seed, same dropout masks (both draw them in the same order): same loss.
    losses = {}
    for impl, model in models.items():
        zero(impl)
        torch.manual_seed(1)
        losses[impl] = train_step(model, x, target).item()
    for _ in range(warmup - 1):
        for impl, model in models.items():
            zero(impl)
            train_step(model, x, target)
    times = interleaved({impl: (lambda m=m: train_step(m, x, target))
                         for impl, m in models.items()}, repeats, device, before=zero)
    for impl in models:
        zero(impl)
    return {"times": times, "loss": losses}


# --------------------------------------------------------------------------- memory


def _proc_status_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak_rss() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")
        return True
    except OSError:
        return False


def memory_child(name: str, impl: str, device_name: str) -> None:
    """One training step in this (fresh) process; print its peak memory as JSON."""
    torch.set_num_threads(THREADS)
    torch.manual_seed(0)
    device = torch.device(device_name)
    model = construct(name, impl).to(device).train()
    x, target = inputs(device)
    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        train_step(model, x, target)
        torch.cuda.synchronize(device)
        peak = torch.cuda.max_memory_allocated(device)
        method = "cuda.max_memory_allocated"
    else:
        base_kib = _proc_status_kib("VmRSS")
        if base_kib is not None and _reset_peak_rss():
            train_step(model, x, target)
            peak_kib = _proc_status_kib("VmHWM")
            method = "VmHWM-VmRSS"
        else:  # ru_maxrss is KiB on Linux; the build's own peak may hide a little
            base_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            train_step(model, x, target)
            peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            method = "ru_maxrss"
        base, peak = base_kib * 1024, peak_kib * 1024
    print(json.dumps({"base": base, "peak": peak, "delta": peak - base, "method": method}))


def tensor_peak(name: str, impl: str, device) -> int | None:
    """Peak live tensor bytes over one training step (MemTracker), or None."""
    try:
        from torch.distributed._tools.mem_tracker import MemTracker
    except Exception:  # a torch without distributed support
        return None
    torch.manual_seed(0)
    model = construct(name, impl).to(device).train()
    x, target = inputs(device)
    tracker = MemTracker()
    tracker.track_external(model)
    with tracker:
        train_step(model, x, target)
    snapshot = tracker.get_tracker_snapshot("peak")
    return max(stats["Total"] for stats in snapshot.values())


def measure_memory(name: str, runs: int, device) -> dict:
    deltas = {impl: [] for impl in IMPLS}
    method = None
    for _ in range(runs):
        for impl in IMPLS:
            done = subprocess.run(
                [sys.executable, __file__, "--memory-child", name, impl, str(device)],
                cwd=ROOT, capture_output=True, text=True)
            if done.returncode != 0:
                raise RuntimeError(f"memory child {name}/{impl} failed:\n{done.stderr}")
            report = json.loads(done.stdout.strip().splitlines()[-1])
            deltas[impl].append(report["delta"])
            method = report["method"]
    tensors = {impl: tensor_peak(name, impl, device) for impl in IMPLS}
    return {"deltas": deltas, "method": method, "tensor_peak": tensors}


# --------------------------------------------------------------------------- report


def median(values):
    return statistics.median(values)


def verdict(ratio: float | None, target: float | None) -> str:
    if target is None or ratio is None:
        return "-"
    return "PASS" if ratio <= target else "FAIL"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats (a smoke run)")
    parser.add_argument("--models", default=",".join(TORCHVISION),
                        help="comma-separated subset of: " + ", ".join(TORCHVISION))
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--json", type=Path, help="also write the raw figures here")
    parser.add_argument("--memory-child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        memory_child(*args.memory_child)
        return

    names = [n.strip() for n in args.models.split(",") if n.strip()]
    unknown = [n for n in names if n not in TORCHVISION]
    if unknown:
        parser.error(f"unknown model(s) {unknown}; choose from {list(TORCHVISION)}")
    if args.quick:
        build_reps, eval_reps, train_reps, warmup, mem_runs = 3, 3, 2, 1, 1
    else:
        build_reps, eval_reps, train_reps, warmup, mem_runs = 9, 9, 5, 2, 5

    torch.set_num_threads(THREADS)
    device = torch.device(args.device)
    from rich.console import Console
    from rich.table import Table

    console = Console(highlight=False, width=max(120, shutil.get_terminal_size().columns))
    import cnnspec

    console.print(f"cnnspec {cnnspec.__version__}, torch {torch.__version__}, torchvision "
                  f"{torchvision.__version__}, Python {platform.python_version()}, "
                  f"{os.cpu_count()} CPUs, {THREADS} torch threads, device {device}")
    console.print("load average before: %.2f %.2f %.2f" % os.getloadavg())
    console.print(f"repeats: build {build_reps}, eval {eval_reps}, train {train_reps} "
                  f"(after {warmup} warm-up), memory {mem_runs} fresh processes each; "
                  "interleaved torchvision, cnnspec, torchvision, ...")

    raw = {}
    rows = []
    for name in names:
        console.print(f"[bold]{name}[/]: build", end="")
        torch.manual_seed(0)
        build = measure_build(name, build_reps, device)
        models = pair(name, device)
        x, target = inputs(device)
        console.print(", eval", end="")
        evaluation = measure_eval(models, x, eval_reps, warmup, device)
        console.print(", train", end="")
        training = measure_train(models, x, target, train_reps, warmup, device)
        del models
        gc.collect()
        console.print(", memory")
        memory = measure_memory(name, mem_runs, device)
        raw[name] = {"build": build, "eval": evaluation, "train": training,
                     "memory": memory}
        console.print(f"  eval max |cnnspec - torchvision| = "
                      f"{evaluation['max_abs_diff']:.2e}; first train loss "
                      f"torchvision {training['loss']['torchvision']:.5f}, cnnspec "
                      f"{training['loss']['cnnspec']:.5f}")

        def add(metric, tv, cs, unit, target, digits=3):
            ratio = cs / tv if tv else None
            rows.append((name, metric, f"{tv:.{digits}f} {unit}", f"{cs:.{digits}f} {unit}",
                         "-" if ratio is None else f"{ratio:.3f}",
                         "-" if target is None else f"<= {target:.2f}",
                         verdict(ratio, target)))

        add("build, first (s)", build["first"]["torchvision"], build["first"]["cnnspec"],
            "", None)
        add("build, median (s)", median(build["times"]["torchvision"]),
            median(build["times"]["cnnspec"]), "", BUILD_TARGET)
        add("eval forward (s)", median(evaluation["times"]["torchvision"]),
            median(evaluation["times"]["cnnspec"]), "", RUN_TARGET)
        add("train fwd+bwd (s)", median(training["times"]["torchvision"]),
            median(training["times"]["cnnspec"]), "", RUN_TARGET)
        mib = 1024 * 1024
        add("train peak RSS (MiB)", median(memory["deltas"]["torchvision"]) / mib,
            median(memory["deltas"]["cnnspec"]) / mib, "", MEMORY_TARGET, digits=1)
        if None not in memory["tensor_peak"].values():
            add("train tensor peak (MiB)", memory["tensor_peak"]["torchvision"] / mib,
                memory["tensor_peak"]["cnnspec"] / mib, "", MEMORY_TARGET, digits=1)

    table = Table(title=f"cnnspec vs torchvision, batch {BATCH}, {device}, medians "
                        f"(memory: {raw[names[-1]]['memory']['method']})")
    for column in ("model", "metric", "torchvision", "cnnspec", "ratio", "target", ""):
        table.add_column(column, justify="left" if column in ("model", "metric") else "right")
    previous = None
    for row in rows:
        table.add_row(row[0] if row[0] != previous else "", *row[1:])
        previous = row[0]
    console.print(table)
    console.print("load average after: %.2f %.2f %.2f" % os.getloadavg())
    failed = [f"{r[0]} {r[1]}" for r in rows if r[6] == "FAIL"]
    console.print("all targets met" if not failed else "targets missed: " + "; ".join(failed))
    if args.json:
        args.json.write_text(json.dumps(raw, indent=1))


if __name__ == "__main__":
    main()
