"""Training throughput: `cnnspec.train` against a minimal hand-written PyTorch loop.

Run:  .venv/bin/python benchmarks/train_throughput.py [--quick] [--rounds N] [--case NAME]

Three cases, each measured side by side in one process, interleaved (cnnspec then
hand, hand then cnnspec, ...), medians compared:
  - resnet18 (specs/resnet18.cnn at a 3x64x64 input, its `train: torchvision_v1()`
    left out) on `synthetic:1024`, batch 64, the default recipe (AdamW, cosine);
  - lenet5 (specs/lenet5.cnn, its own recipe: Adam, batch 32) on `digits`;
  - modern: ResNet-20 (specs/resnet20_cifar.cnn at its 3x32x32 input) on
    `synthetic:1024`, batch 64, with the modern recipe (`MODERN_RECIPE`): SGD
    nesterov, weight decay off the norm layers, a linear warmup of one epoch then
    cosine, both stepped every iteration, label smoothing, MixUp or CutMix on every
    batch, random crop, flip, TrivialAugment, normalize and random erasing, and an
    EMA of the weights every 32 steps (decay adjusted as torchvision's reference),
    validated each epoch.
Both sides train the same compiled model (`cnnspec.build` of the same spec) from
the same seed on the same Datasets (`open_data` with the recipe's `augment`, so the
augmentation pipeline on both sides is the one cnnspec builds from transforms.v2),
the same batch, with DataLoaders of the same settings (no workers, drop_last).

The hand loops are what a user would write with torch and torchvision directly:
  - resnet18, lenet5: shuffle, forward, cross-entropy (with the recipe's label
    smoothing), zero_grad, backward, step; the optimizer from cnnspec's
    `make_optimizer` (the same optimizer, built the same way); nothing else.
  - modern: v2.RandomChoice([v2.MixUp, v2.CutMix]) on each batch,
    F.cross_entropy(logits, soft targets, label_smoothing=...), torch.optim.SGD over
    two groups split by torchvision.ops._utils.split_normalization_params (norm
    parameters without decay), SequentialLR([LinearLR, CosineAnnealingLR]) stepped
    every iteration, AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay),
    use_buffers=True) updated every 32 steps of an epoch (reset during the warmup
    epoch, as the reference), and the EMA model validated and saved each epoch.
    None of cnnspec's training code is used on that side; the hyperparameters come
    from `MODERN`, which also writes the spec's `train { }`.

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

A full run (all cases, not --quick) writes benchmarks/results/train_throughput.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torchvision
from torch.nn import functional as F
from torch.optim.lr_scheduler import CosineAnnealingLR, LinearLR, SequentialLR
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import DataLoader
from torchvision.ops._utils import split_normalization_params
from torchvision.transforms import v2

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import cnnspec  # noqa: E402
from cnnspec.training.config import resolve
from cnnspec.training.schedule import lr_curve  # noqa: E402
from cnnspec.training.data import open_data  # noqa: E402
from cnnspec.training.optim import make_optimizer  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "train_throughput.json"

# The modern recipe, as the spec's `train { }` writes it and the hand loop follows it.
MODERN = {"lr": 0.1, "momentum": 0.9, "batch": 64, "weight_decay": 5e-5,
          "label_smoothing": 0.1, "mixup": 0.2, "cutmix": 1.0,
          "warmup_epochs": 1, "warmup_start": 0.01,
          "ema_decay": 0.99998, "ema_steps": 32}
MODERN_RECIPE = """train {{
        optimizer:         sgd lr={lr} momentum={momentum} nesterov=true
        schedule:          cosine
        warmup:            linear epochs={warmup_epochs} start_factor={warmup_start}
        batch:             {batch}
        weight_decay:      {weight_decay}
        norm_weight_decay: 0
        label_smoothing:   {label_smoothing}
        mixup:             alpha={mixup}
        cutmix:            alpha={cutmix}
        ema:               decay={ema_decay} steps={ema_steps} adjust=true
        augment:           random_crop 32 padding=4, horizontal_flip, trivial_augment,
                           normalize, random_erasing p=0.1
    }}""".format(**MODERN)


def resnet18_at_64() -> "cnnspec.Spec":
    """specs/resnet18.cnn with a 3x64x64 input (its shape assertions dropped) and
    without its ImageNet recipe (224 crops, validation at 256/224), so it trains with
    the default recipe (AdamW, cosine) on the images as they are."""
    text = (ROOT / "specs" / "resnet18.cnn").read_text()
    text = text.replace('import "blocks/resnet.cnn"',
                        f'import "{ROOT / "specs" / "blocks" / "resnet.cnn"}"')
    text = text.replace('import "recipes/torchvision.cnn"', "")
    text = re.sub(r"^\s*train: torchvision_v1\(\)$", "", text, flags=re.M)
    text = text.replace("input 3x224x224", "input 3x64x64")
    text = re.sub(r"->\s*[\w x]+$", "", text, flags=re.M)
    return cnnspec.load(text, classes=10)


def resnet20_modern() -> "cnnspec.Spec":
    """specs/resnet20_cifar.cnn with the modern recipe in place of the paper's."""
    text = (ROOT / "specs" / "resnet20_cifar.cnn").read_text()
    text = text.replace('import "recipes/papers.cnn"', "")
    text = text.replace("train: he_cifar()", MODERN_RECIPE)
    return cnnspec.load(text)


def recipe_data(spec, data: str, config):
    """The Datasets cnnspec.train opens for this spec and recipe."""
    return open_data(data, tuple(spec.input_shape), config.augment, seed=config.seed,
                     val_fraction=config.val_fraction, interpolation=config.interpolation,
                     val_resize=config.val_resize, val_crop=config.val_crop)


def cnnspec_run(spec, data: str, epochs: int, out: Path, **overrides) -> dict:
    start = time.perf_counter()
    result = cnnspec.train(spec, data=data, out=out, epochs=epochs, verbose=False,
                           **overrides)
    total = time.perf_counter() - start
    rows = result.history[1:]
    return {"train_img_s": statistics.median(r["images_per_s"] for r in rows),
            "epoch_s": total / epochs, "data_wait": float("nan")}


def hand_run(spec, data: str, epochs: int, out: Path, **overrides) -> dict:
    """The plain loop: cross-entropy on hard labels, the recipe's optimizer."""
    config = resolve(spec.recipe, epochs=epochs, **overrides)
    datasets = recipe_data(spec, data, config)
    torch.manual_seed(config.seed)
    model = cnnspec.build(spec)
    optimizer = make_optimizer(model, config, spec.layer_names)  # built the same way
    train = DataLoader(datasets.train, batch_size=config.batch, shuffle=True,
                       drop_last=True)
    val = DataLoader(datasets.val, batch_size=config.batch)

    def step(images, labels, epoch, index):
        loss = F.cross_entropy(model(images), labels,
                               label_smoothing=config.label_smoothing)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    def validate():
        model.eval()
        with torch.no_grad():
            for images, labels in val:
                F.cross_entropy(model(images), labels)
        torch.save(model.state_dict(), out / "hand.pt")

    return timed_epochs(model, train, epochs, step, validate)


def timed_epochs(model, train, epochs: int, step, validate) -> dict:
    """`epochs` epochs of `step(images, labels, epoch, index)` over `train`, each
    followed by `validate()`: the medians of train img/s and of the share of the loop
    spent waiting on the loader (the first epoch left out), and the mean epoch time."""
    rates, epoch_seconds, waits = [], [], []
    for epoch in range(epochs):
        epoch_start = time.perf_counter()
        model.train()
        images_seen, waited, index = 0, 0.0, 0
        loop_start = time.perf_counter()
        batches = iter(train)
        while True:
            fetch = time.perf_counter()
            try:
                images, labels = next(batches)
            except StopIteration:
                break
            waited += time.perf_counter() - fetch
            step(images, labels, epoch, index)
            index += 1
            images_seen += len(labels)
        loop = time.perf_counter() - loop_start
        validate()
        rates.append(images_seen / loop)
        epoch_seconds.append(time.perf_counter() - epoch_start)
        waits.append(waited / loop)
    return {"train_img_s": statistics.median(rates[1:]),
            "epoch_s": sum(epoch_seconds) / epochs, "data_wait": statistics.median(waits[1:])}


def hand_modern_run(spec, data: str, epochs: int, out: Path, **overrides) -> dict:
    """The modern recipe written with torch and torchvision directly (see the module
    docstring); only the Datasets and the model come from cnnspec."""
    m = MODERN
    config = resolve(spec.recipe, epochs=epochs, **overrides)
    datasets = recipe_data(spec, data, config)
    classes = spec.output_shape[0]
    torch.manual_seed(config.seed)
    model = cnnspec.build(spec)
    norm, other = split_normalization_params(model)
    optimizer = torch.optim.SGD([{"params": other, "weight_decay": m["weight_decay"]},
                                 {"params": norm, "weight_decay": 0.0}],
                                lr=m["lr"], momentum=m["momentum"], nesterov=True)
    train = DataLoader(datasets.train, batch_size=m["batch"], shuffle=True,
                       drop_last=True)
    val = DataLoader(datasets.val, batch_size=m["batch"])
    steps = len(train)
    warmup = round(m["warmup_epochs"] * steps)
    scheduler = SequentialLR(optimizer, [
        LinearLR(optimizer, start_factor=m["warmup_start"], total_iters=warmup),
        CosineAnnealingLR(optimizer, T_max=epochs * steps - warmup)],
        milestones=[warmup])
    # torchvision's reference train.py: the decay adjusted for batch, interval, epochs
    alpha = min(1.0, (1.0 - m["ema_decay"]) * m["batch"] * m["ema_steps"] / epochs)
    ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(1.0 - alpha),
                        use_buffers=True)
    mix = v2.RandomChoice([v2.MixUp(alpha=m["mixup"], num_classes=classes),
                           v2.CutMix(alpha=m["cutmix"], num_classes=classes)])
    used = []  # the rate of every step, checked against cnnspec's schedule below

    def step(images, labels, epoch, index):
        used.append(optimizer.param_groups[0]["lr"])
        images, targets = mix(images, labels)
        loss = F.cross_entropy(model(images), targets,
                               label_smoothing=m["label_smoothing"])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()
        if index % m["ema_steps"] == 0:
            ema.update_parameters(model)
            if epoch < m["warmup_epochs"]:
                ema.n_averaged.fill_(0)  # the reference's reset during warmup

    def validate():
        ema.eval()
        with torch.no_grad():
            for images, labels in val:
                F.cross_entropy(ema(images), labels)
        torch.save({"model": model.state_dict(), "ema": ema.state_dict()},
                   out / "hand.pt")

    measured = timed_epochs(model, train, epochs, step, validate)
    # Both sides must do the same work: the same rate at every step as cnnspec's.
    assert used == lr_curve(config, steps), "the hand loop's schedule is not cnnspec's"
    return measured


def cases(quick: bool) -> list[dict]:
    return [
        {"name": "resnet18", "title": "resnet18 3x64x64, synthetic:1024, batch 64",
         "spec": resnet18_at_64(), "data": "synthetic:1024",
         "epochs": 2 if quick else 4, "overrides": {"batch": 64}, "hand": hand_run},
        {"name": "lenet5", "title": "lenet5, digits, batch 32",
         "spec": cnnspec.load(ROOT / "specs" / "lenet5.cnn"), "data": "digits",
         "epochs": 4 if quick else 10, "overrides": {}, "hand": hand_run},
        {"name": "modern", "title": "modern recipe: resnet20_cifar 3x32x32, "
         "synthetic:1024, batch 64 (mixup/cutmix, trivial_augment, ema, warmup+cosine "
         "per step)", "spec": resnet20_modern(), "data": "synthetic:1024",
         "epochs": 2 if quick else 4, "overrides": {}, "hand": hand_modern_run},
    ]


def measure(case: dict, rounds: int) -> dict:
    spec, data, epochs = case["spec"], case["data"], case["epochs"]
    overrides, hand_loop = case["overrides"], case["hand"]
    ours, hand = [], []
    with tempfile.TemporaryDirectory() as scratch:
        for round_ in range(rounds):  # alternating which goes first
            runs = [lambda: ours.append(cnnspec_run(
                        spec, data, epochs, Path(scratch) / f"r{round_}", **overrides)),
                    lambda: hand.append(hand_loop(spec, data, epochs, Path(scratch),
                                                  **overrides))]
            for run in runs[::-1] if round_ % 2 else runs:
                run()
    ours_rate = statistics.median(r["train_img_s"] for r in ours)
    hand_rate = statistics.median(r["train_img_s"] for r in hand)
    ours_epoch = statistics.median(r["epoch_s"] for r in ours)
    hand_epoch = statistics.median(r["epoch_s"] for r in hand)
    return {"case": case["name"], "title": case["title"], "data": data,
            "epochs": epochs,
            "cnnspec": {"train_img_s": round(ours_rate, 1), "epoch_s": round(ours_epoch, 3),
                        "train_img_s_rounds": [round(r["train_img_s"], 1) for r in ours]},
            "hand": {"train_img_s": round(hand_rate, 1), "epoch_s": round(hand_epoch, 3),
                     "train_img_s_rounds": [round(r["train_img_s"], 1) for r in hand],
                     "data_wait": round(statistics.median(r["data_wait"] for r in hand),
                                        4)},
            "train_ratio": round(ours_rate / hand_rate, 3),
            "epoch_ratio": round(hand_epoch / ours_epoch, 3)}


def table(result: dict) -> list[str]:
    ours, hand = result["cnnspec"], result["hand"]
    return [f"{result['title']} ({result['epochs']} epochs a run)",
            f"  train img/s   cnnspec {ours['train_img_s']:10,.1f}   hand "
            f"{hand['train_img_s']:10,.1f}   ratio {result['train_ratio']:.3f}",
            f"  epoch s       cnnspec {ours['epoch_s']:10.3f}   hand "
            f"{hand['epoch_s']:10.3f}   ratio {result['epoch_ratio']:.3f} (hand / cnnspec)",
            f"  data wait     {hand['data_wait']:.1%} of the hand loop's epoch"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer epochs and rounds")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--case", choices=("resnet18", "lenet5", "modern"),
                        help="run one case only")
    args = parser.parse_args()
    torch.set_num_threads(2)
    rounds = 1 if args.quick else args.rounds
    head = f"torch {torch.__version__}, {torch.get_num_threads()} threads, {rounds} rounds"
    print(head)
    lines, results = [head], []
    for case in cases(args.quick):
        if args.case and case["name"] != args.case:
            continue
        result = measure(case, rounds)
        results.append(result)
        block = table(result)
        print("\n" + "\n".join(block), flush=True)
        lines += [""] + block
    if args.quick or args.case:
        return
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        "torch": torch.__version__, "torchvision": torchvision.__version__,
        "python": platform.python_version(), "cpus": os.cpu_count(),
        "threads": torch.get_num_threads(), "rounds": rounds,
        "target": "cnnspec / hand train img/s >= 0.97",
        "cases": results, "table": lines}, indent=2) + "\n")
    print(f"\nwrote {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
