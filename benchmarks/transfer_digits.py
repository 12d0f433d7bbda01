"""Transfer on data that ships: LeNet-5 pretrained on digits 0-4, fine-tuned on a few
examples of digits 5-9, against the same network trained from scratch on them.

Run:  .venv/bin/python benchmarks/transfer_digits.py [--shots 2 5 10] [--epochs 5 30]
                                                     [--seeds 5]

Protocol (tests/test_transfer.py runs it at 5 shots, 5 epochs, seeds 0-2):
  1. `cnnspec train specs/lenet5.cnn` with the spec's own recipe on scikit-learn's
     digits 0-4 (the `digits` source's train split, labels 0-4; its validation split
     0-4 for validation).
  2. For each seed, `shots` images per class of digits 5-9 drawn from the train split
     (labels 5-9 become 0-4), and two runs on them with the same recipe, budget
     (`epochs`, batch 10) and seed:
       scratch   LeNet-5 from its default initialization;
       transfer  --weights from step 1, --freeze c1,c3 and --reinit c5,f6,output:
                 the two convolutions carried over and frozen, the task-specific top
                 (c5 is a fully connected layer over 16x5x5) started fresh, as
                 Yosinski et al. (2014) find the later layers the least transferable.
  3. Both scored on every held-out 5-9 digit of the validation split (180 images).
Keeping the whole pretrained network (c5 and f6 too) did worse than scratch in every
setting measured here: their features separate 0-4, and scikit-learn's 8x8 digits are
nearly linearly separable from the pixels themselves.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import torch
from torch.utils.data import Dataset

import cnnspec
from cnnspec.training.data import open_data

ROOT = Path(__file__).resolve().parents[1]
LENET = str(ROOT / "specs" / "lenet5.cnn")
TRANSFER = {"freeze": "c1,c3", "reinit": "c5,f6,output"}


class Digits(Dataset):
    """The images of `dataset` at `indices`, labels shifted down by `first`."""

    def __init__(self, dataset, indices: list[int], first: int) -> None:
        self.dataset, self.indices, self.first = dataset, indices, first
        self.classes = [str(first + i) for i in range(5)]

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int):
        image, label = self.dataset[self.indices[index]]
        return image, int(label) - self.first


def split_digits():
    """(digits 0-4 train, 0-4 val, 5-9 val, the 5-9 train indices per class, train)."""
    data = open_data("digits", (1, 32, 32))
    train_labels = [int(data.train[i][1]) for i in range(len(data.train))]
    val_labels = [int(data.val[i][1]) for i in range(len(data.val))]
    low_train = Digits(data.train, [i for i, y in enumerate(train_labels) if y < 5], 0)
    low_val = Digits(data.val, [i for i, y in enumerate(val_labels) if y < 5], 0)
    high_val = Digits(data.val, [i for i, y in enumerate(val_labels) if y >= 5], 5)
    by_class = {c: [i for i, y in enumerate(train_labels) if y == c] for c in range(5, 10)}
    return low_train, low_val, high_val, by_class, data.train


def few_shot(train, by_class: dict, shots: int, seed: int) -> Digits:
    generator = torch.Generator().manual_seed(seed)
    chosen = []
    for indices in by_class.values():
        chosen += [indices[j] for j in torch.randperm(len(indices), generator=generator)[:shots]]
    return Digits(train, chosen, 5)


def pretrain(out: Path, low_train, low_val) -> Path:
    result = cnnspec.train(LENET, data=(low_train, low_val), out=out, verbose=False)
    return result.run_dir / "weights.safetensors"


def compare(weights: Path, out: Path, split, shots: int, epochs: int, seeds) -> list[dict]:
    """One row per seed: the held-out 5-9 top-1 of scratch and of transfer."""
    _, _, high_val, by_class, train = split
    rows = []
    for seed in seeds:
        few = few_shot(train, by_class, shots, seed)
        common = dict(data=(few, high_val), epochs=epochs, batch=10, seed=seed,
                      verbose=False)
        scratch = cnnspec.train(LENET, out=out / f"scratch-{shots}-{epochs}-{seed}",
                                **common).val_top1
        transfer = cnnspec.train(LENET, out=out / f"transfer-{shots}-{epochs}-{seed}",
                                 weights=weights, **TRANSFER, **common).val_top1
        rows.append({"seed": seed, "scratch": scratch, "transfer": transfer})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shots", type=int, nargs="+", default=[2, 5, 10])
    parser.add_argument("--epochs", type=int, nargs="+", default=[5, 30])
    parser.add_argument("--seeds", type=int, default=5)
    args = parser.parse_args()
    split = split_digits()
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder)
        weights = pretrain(out / "digits04", split[0], split[1])
        print("shots  epochs  scratch  transfer  gain (points)  seeds won")
        for shots in args.shots:
            for epochs in args.epochs:
                rows = compare(weights, out, split, shots, epochs, range(args.seeds))
                scratch = statistics.mean(r["scratch"] for r in rows)
                transfer = statistics.mean(r["transfer"] for r in rows)
                won = sum(r["transfer"] > r["scratch"] for r in rows)
                print(f"{shots:5}  {epochs:6}  {scratch:7.1%}  {transfer:8.1%}  "
                      f"{100 * (transfer - scratch):+13.1f}  {won}/{len(rows)}", flush=True)


if __name__ == "__main__":
    main()
