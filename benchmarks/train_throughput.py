"""Training throughput: `cnnspec.train` against a minimal hand-written PyTorch loop.

Run:  .venv/bin/python benchmarks/train_throughput.py [--quick] [--rounds N]

Two cases, each measured side by side in one process, interleaved (cnnspec then hand,
hand then cnnspec, ...), medians compared:
  - resnet18 (specs/resnet18.cnn at a 3x64x64 input) on `synthetic:1024`, batch 64,
    the spec's default recipe (AdamW);
  - lenet5 (specs/lenet5.cnn, its own recipe: Adam, batch 32) on `digits`.
Both sides train the same compiled model from the same seed on the same Datasets
(`open_data`), the same batch and optimizer, with DataLoaders of the same settings.
The hand loop is what a user would write: shuffle, forward, cross-entropy (with the
recipe's label smoothing), zero_grad, backward, step; nothing else.

Figures:
  train img/s   images over the time of the training loop of an epoch (data loading
                included); cnnspec's is its own `images_per_s` column of metrics.jsonl
  epoch s       wall time of a whole epoch as the user waits for it: cnnspec's
                includes validation, the checkpoint, weights and curves.png; the hand
                loop's includes the same validation pass and a torch.save
  data wait     the hand loop's time blocked on the DataLoader, as a share of its
                epoch: a data-loading stall shows here
The first epoch of every run is left out (allocator and thread-pool warm-up).
Target: cnnspec / hand train img/s >= 0.97. torch.set_num_threads(2).
"""

from __future__ import annotations

import argparse
import re
import statistics
import tempfile
import time
from pathlib import Path

import torch
from torch.nn import functional as F
from torch.utils.data import DataLoader

import cnnspec
from cnnspec.training.data import open_data
from cnnspec.training.optim import make_optimizer
from cnnspec.training.config import resolve

ROOT = Path(__file__).resolve().parent.parent


def resnet18_at_64() -> "cnnspec.Spec":
    """specs/resnet18.cnn with a 3x64x64 input (its shape assertions dropped)."""
    text = (ROOT / "specs" / "resnet18.cnn").read_text()
    text = text.replace('import "blocks/resnet.cnn"',
                        f'import "{ROOT / "specs" / "blocks" / "resnet.cnn"}"')
    text = text.replace("input 3x224x224", "input 3x64x64")
    text = re.sub(r"->\s*[\w x]+$", "", text, flags=re.M)
    return cnnspec.load(text, classes=10)


def cnnspec_run(spec, data: str, epochs: int, out: Path, **overrides) -> dict:
    start = time.perf_counter()
    result = cnnspec.train(spec, data=data, out=out, epochs=epochs, verbose=False,
                           **overrides)
    total = time.perf_counter() - start
    rows = result.history[1:]
    return {"train_img_s": statistics.median(r["images_per_s"] for r in rows),
            "epoch_s": total / epochs, "data_wait": float("nan")}


def hand_run(spec, data: str, epochs: int, out: Path, **overrides) -> dict:
    config = resolve(spec.recipe, epochs=epochs, **overrides)
    datasets = open_data(data, tuple(spec.input_shape), config.augment, seed=0)
    torch.manual_seed(0)
    model = cnnspec.build(spec)
    optimizer = make_optimizer(model, config)  # the same optimizer, built the same way
    train = DataLoader(datasets.train, batch_size=config.batch, shuffle=True,
                       drop_last=True)
    val = DataLoader(datasets.val, batch_size=config.batch)
    rates, epoch_seconds, waits = [], [], []
    for _ in range(epochs):
        epoch_start = time.perf_counter()
        model.train()
        images_seen, waited = 0, 0.0
        loop_start = time.perf_counter()
        batches = iter(train)
        while True:
            fetch = time.perf_counter()
            try:
                images, labels = next(batches)
            except StopIteration:
                break
            waited += time.perf_counter() - fetch
            loss = F.cross_entropy(model(images), labels,
                                   label_smoothing=config.label_smoothing)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            images_seen += len(labels)
        loop = time.perf_counter() - loop_start
        model.eval()
        with torch.no_grad():
            for images, labels in val:
                F.cross_entropy(model(images), labels)
        torch.save(model.state_dict(), out / "hand.pt")
        rates.append(images_seen / loop)
        epoch_seconds.append(time.perf_counter() - epoch_start)
        waits.append(waited / loop)
    return {"train_img_s": statistics.median(rates[1:]),
            "epoch_s": sum(epoch_seconds) / epochs, "data_wait": statistics.median(waits[1:])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer epochs and rounds")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--case", choices=("resnet18", "lenet5"),
                        help="run one case only")
    args = parser.parse_args()
    torch.set_num_threads(2)
    rounds = 1 if args.quick else args.rounds
    cases = [("resnet18 3x64x64, synthetic:1024, batch 64", resnet18_at_64(),
              "synthetic:1024", 2 if args.quick else 4, {"batch": 64}),
             ("lenet5, digits, batch 32", cnnspec.load(ROOT / "specs" / "lenet5.cnn"),
              "digits", 4 if args.quick else 10, {})]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {rounds} rounds")
    for title, spec, data, epochs, overrides in cases:
        if args.case and not title.startswith(args.case):
            continue
        ours, hand = [], []
        with tempfile.TemporaryDirectory() as scratch:
            for round_ in range(rounds):  # alternating which goes first
                runs = [lambda: ours.append(cnnspec_run(
                            spec, data, epochs, Path(scratch) / f"r{round_}", **overrides)),
                        lambda: hand.append(hand_run(spec, data, epochs, Path(scratch),
                                                     **overrides))]
                for run in runs[::-1] if round_ % 2 else runs:
                    run()
        ours_rate = statistics.median(r["train_img_s"] for r in ours)
        hand_rate = statistics.median(r["train_img_s"] for r in hand)
        ours_epoch = statistics.median(r["epoch_s"] for r in ours)
        hand_epoch = statistics.median(r["epoch_s"] for r in hand)
        wait = statistics.median(r["data_wait"] for r in hand)
        print(f"\n{title} ({epochs} epochs a run)")
        print(f"  train img/s   cnnspec {ours_rate:10,.1f}   hand {hand_rate:10,.1f}   "
              f"ratio {ours_rate / hand_rate:.3f}")
        print(f"  epoch s       cnnspec {ours_epoch:10.3f}   hand {hand_epoch:10.3f}   "
              f"ratio {hand_epoch / ours_epoch:.3f} (hand / cnnspec)")
        print(f"  data wait     {wait:.1%} of the hand loop's epoch")


if __name__ == "__main__":
    main()
