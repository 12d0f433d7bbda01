"""The training-memory planner against what PyTorch really saves, for every spec.

Run:  .venv/bin/python benchmarks/memory_planner.py [--specs resnet18,vgg16] [--amp off,bf16]

For each spec in specs/ (the 68 with a torchvision twin and the others): build the
module, put it in train mode and run one forward pass of a batch of 2 at the spec's
input size on the CPU under `torch.autograd.graph.saved_tensors_hooks`. The hook sees
every tensor autograd keeps for the backward pass; `measure_saved` counts each
storage once (by its data pointer, at its full size, as a view keeps its base
alive), leaves out parameters and buffers, and sets apart autocast's half copies of
parameters. Against that it prints the planner's `saved_activation_bytes` (and with
AMP its `amp_weight_bytes`), their ratio, and checks `params_bytes` and
`buffers_bytes` against the module's own tensors. FractalNet is run with its
drop-path off (every branch kept, the planner's case): with it on, the branches a
batch drops are freed and the figure changes from batch to batch. Each spec runs in
a process of its own (so one model's memory is given back before the next); a spec
whose planned batch of 2 would not fit in the memory available runs at batch 1
(the row says which).

No GPU was available where this was written: the figures are CPU figures (the
planner's default `device="cpu"` rules); `torch.cuda.max_memory_allocated` would
also count the allocator's rounding and what is alive during backward.
Results go to benchmarks/results/memory_planner.json.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import subprocess
import sys
import time
import weakref
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import torch.fx as fx  # noqa: E402
from torch.utils._python_dispatch import TorchDispatchMode  # noqa: E402

import cnnspec  # noqa: E402

SPECS = ROOT / "specs"
RESULTS = ROOT / "benchmarks" / "results" / "memory_planner.json"
BATCH = 2
AMP = {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}


class _ParameterCopies(TorchDispatchMode):
    """Notes the storages of copies made of parameters (autocast's `_to_copy`)."""

    def __init__(self, parameters: set[int]):
        super().__init__()
        self.parameters, self.copies = parameters, set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if func is torch.ops.aten._to_copy.default and \
                args[0].untyped_storage().data_ptr() in self.parameters:
            self.copies.add(out.untyped_storage().data_ptr())
        return out


def measure_saved(model: torch.nn.Module, x: torch.Tensor, amp=None):
    """What one train-mode forward pass keeps for backward: ({layer name: bytes}, bytes
    of half copies of parameters). Each storage counts once, at its full size, charged
    to the first layer that saves it (as the planner charges it); parameters and
    buffers are left out; a storage freed before the pass ends (a dropped branch)
    does not count. `amp`: a torch dtype to autocast to on the CPU."""
    model.train()
    graph_module = getattr(model, "_train_graph", model)  # TrainingHeads: aux heads on
    state = {t.untyped_storage().data_ptr()
             for t in itertools.chain(model.parameters(), model.buffers())}
    records: list[tuple[weakref.ref, str]] = []
    current = [""]

    def pack(tensor):
        records.append((weakref.ref(tensor), current[0]))
        return tensor

    class Tracker(fx.Interpreter):
        def run_node(self, node):
            current[0] = node.meta.get("cnnspec_name", node.name)
            return super().run_node(node)

    copies = _ParameterCopies({p.untyped_storage().data_ptr() for p in model.parameters()})
    autocast = torch.autocast("cpu", dtype=amp) if amp else contextlib.nullcontext()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), autocast, copies:
        out = Tracker(graph_module).run(x)
    per_layer: dict[str, int] = {}
    seen: set[int] = set()
    copy_bytes = 0
    for ref, name in records:
        tensor = ref()
        if tensor is None:  # its graph was freed during the pass
            continue
        storage = tensor.untyped_storage()
        pointer = storage.data_ptr()
        if pointer in state or pointer in seen:
            continue
        seen.add(pointer)
        if pointer in copies.copies:
            copy_bytes += storage.nbytes()
        else:
            per_layer[name] = per_layer.get(name, 0) + storage.nbytes()
    del out
    return per_layer, copy_bytes


def torchvision_twins() -> dict[str, str]:
    """spec stem -> torchvision model name (zoo_parity.py's rule: 68 specs)."""
    import torchvision.models as tvm

    names = set(tvm.list_models(module=tvm))
    return {p.stem: p.stem.removesuffix("_torchvision") for p in sorted(SPECS.glob("*.cnn"))
            if p.stem.removesuffix("_torchvision") in names and p.stem != "alexnet"}


def without_drop_path(model: torch.nn.Module) -> None:
    """FractalNet's joins keep every branch (local and global drop-path off)."""
    for module in model.modules():
        if type(module).__name__ in ("MeanJoin", "GlobalDropPath"):
            module.p = 0.0


def _available_bytes() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return 2**62


def compare(stem: str, amp: str) -> dict:
    spec = cnnspec.load(SPECS / f"{stem}.cnn")
    batch = BATCH
    need = spec.train_memory(BATCH, amp=None if amp == "off" else amp)
    if 1.5 * need.saved_activation_bytes + 2 * need.params_bytes > 0.8 * _available_bytes():
        batch = 1  # room for the kept tensors, the model and the pass's temporaries
    plan = spec.train_memory(batch, amp=None if amp == "off" else amp)
    torch.manual_seed(0)
    model = cnnspec.build(spec)
    without_drop_path(model)
    x = torch.randn((batch,) + spec.input_shape)
    start = time.perf_counter()
    per_layer, copies = measure_saved(model, x, AMP[amp])
    seconds = time.perf_counter() - start
    measured = sum(per_layer.values())
    predicted = {layer.name: layer.saved_bytes for layer in plan.layers}
    differing = sorted(name for name in set(predicted) | set(per_layer)
                       if predicted.get(name, 0) != per_layer.get(name, 0))
    params = sum(p.numel() * p.element_size() for p in model.parameters())
    buffers = sum(b.numel() * b.element_size() for b in model.buffers())
    del model
    return dict(
        spec=stem, amp=amp, input_shape=list(spec.input_shape), batch=batch,
        predicted_saved_bytes=plan.saved_activation_bytes, measured_saved_bytes=measured,
        ratio=plan.saved_activation_bytes / measured if measured else None,
        exact=plan.saved_activation_bytes == measured,
        predicted_amp_weight_bytes=plan.amp_weight_bytes, measured_amp_weight_bytes=copies,
        params_bytes_exact=plan.params_bytes == params,
        buffers_bytes_exact=plan.buffers_bytes == buffers,
        layers_differing=differing[:20], seconds=round(seconds, 2))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--specs", help="comma-separated spec names (default: all)")
    parser.add_argument("--amp", default="off,bf16",
                        help="comma-separated modes among off, bf16, fp16 (default: off,bf16)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--one", metavar="SPEC", help=argparse.SUPPRESS)  # a child
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.one:
        print(json.dumps(compare(args.one, args.amp)))
        return 0
    twins = torchvision_twins()
    stems = args.specs.split(",") if args.specs else [p.stem for p in
                                                      sorted(SPECS.glob("*.cnn"))]
    modes = args.amp.split(",")
    rows = []
    print(f"{'spec':26} {'amp':4} {'predicted':>15} {'measured':>15} {'ratio':>8}  "
          f"{'twin':22} s")
    for mode in modes:
        for stem in stems:
            child = subprocess.run(
                [sys.executable, __file__, "--one", stem, "--amp", mode, "--threads",
                 str(args.threads)], capture_output=True, text=True, check=False)
            if child.returncode:
                print(f"{stem:26} {mode:4} FAILED: {child.stderr.strip()[-300:]}")
                continue
            row = json.loads(child.stdout.strip().splitlines()[-1])
            row["torchvision"] = twins.get(stem)
            rows.append(row)
            print(f"{stem:26} {mode:4} {row['predicted_saved_bytes']:15,} "
                  f"{row['measured_saved_bytes']:15,} {row['ratio']:8.5f}  "
                  f"{row['torchvision'] or '-':22} {row['seconds']}"
                  + ("" if row["exact"] else f"  differ: {', '.join(row['layers_differing'][:4])}")
                  + ("" if row["predicted_amp_weight_bytes"] == row["measured_amp_weight_bytes"]
                     else "  AMP WEIGHT COPIES DIFFER")
                  + ("" if row["params_bytes_exact"] and row["buffers_bytes_exact"]
                     else "  PARAMS/BUFFERS DIFFER")
                  + ("" if row["batch"] == BATCH else f"  (batch {row['batch']})"),
                  flush=True)
    summary = {}
    for mode in modes:
        mine = [r for r in rows if r["amp"] == mode]
        twin_rows = [r for r in mine if r["torchvision"]]
        worst = max(mine, key=lambda r: abs(r["ratio"] - 1))
        summary[mode] = dict(
            specs=len(mine), twins=len(twin_rows), exact=sum(r["exact"] for r in mine),
            exact_twins=sum(r["exact"] for r in twin_rows),
            within_5_percent=sum(abs(r["ratio"] - 1) <= 0.05 for r in mine),
            at_batch_1=[r["spec"] for r in mine if r["batch"] != BATCH],
            worst_spec=worst["spec"], worst_ratio=worst["ratio"],
            amp_weight_copies_exact=sum(r["predicted_amp_weight_bytes"]
                                        == r["measured_amp_weight_bytes"] for r in mine),
            params_and_buffers_exact=sum(r["params_bytes_exact"] and r["buffers_bytes_exact"]
                                         for r in mine))
        print(f"\n{mode}: {summary[mode]['exact']} of {len(mine)} specs exact "
              f"({summary[mode]['exact_twins']} of {len(twin_rows)} torchvision twins); "
              f"worst ratio {worst['ratio']:.5f} ({worst['spec']})")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(dict(
        batch=BATCH, device="cpu", torch=torch.__version__, threads=args.threads,
        note="saved-for-backward bytes: planner (spec.train_memory) against "
        "saved_tensors_hooks on the built module in train mode; no GPU measured",
        summary=summary, results=rows), indent=2) + "\n")
    print(f"wrote {RESULTS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
