"""The modern recipe, run end to end through the command line and `cnnspec.train`.

- Gradient accumulation gives the update of the whole batch for a network without
  batchnorm (to float tolerance), in one process and with DDP over two.
- A ResNet-20-style spec trains on an image folder with every modern component at once
  (nesterov SGD, linear warmup then per-step cosine, label smoothing, norm layers
  without decay, per-layer rates, TrivialAugment, random erasing, MixUp/CutMix,
  EMA every k steps with the reference's adjusted decay, repeated augmentation,
  accumulation), and a SIGKILL mid-epoch then `--resume` ends bitwise equal to the
  uninterrupted run.
- `cnnspec recipe` shows the rates the run then logs.
"""

import json
import math
import signal
import subprocess
import sys
import time

import pytest
import torch

import cnnspec
from conftest import ROOT

pytest.importorskip("sklearn")
pytest.importorskip("safetensors")

# No batchnorm: accumulated micro-batches must give the same update as one batch.
PLAIN = """
network plain(classes = 10) {
    input 1x8x8
    conv1: conv 8 k=3 p=1
    relu
    pool: maxpool 2
    flatten
    fc: linear classes
    train {
        optimizer: sgd lr=0.05 momentum=0.9
        schedule: cosine
        warmup: linear epochs=0.5 start_factor=0.1
        epochs: 2
        batch: 32
    }
}
"""

# A ResNet-20-style network (He et al. 2015, section 4.2: 3 stages of basic blocks,
# widths 16/32/64, here one block per stage to keep the test short) with the whole
# modern recipe.
MODERN = """
block basic(c, stride = 1) {
    residual {
        conv1: conv c k=3 s=stride p=1 bias=false
        bn1:   batchnorm
        relu1: relu
        conv2: conv c k=3 p=1 bias=false
        bn2:   batchnorm
    } shortcut downsample: auto {
        conv c k=1 s=stride bias=false
        batchnorm
    }
    relu
}

network resnet_small(classes = 10) {
    input 3x12x12
    conv1:  conv 16 k=3 p=1 bias=false
    bn1:    batchnorm
    relu
    layer1: basic(16)
    layer2: basic(32, stride=2)
    layer3: basic(64, stride=2)
    avgpool: avgpool global
    flatten
    fc: linear classes
    train {
        optimizer: sgd lr=0.2 momentum=0.9 nesterov=true
        schedule: cosine
        warmup: linear epochs=0.5 start_factor=0.01
        epochs: 6
        batch: 16
        accumulate: 2
        weight_decay: 0.0001
        norm_weight_decay: 0
        lr_mult: fc=2
        label_smoothing: 0.1
        augment: random_crop 12 padding=1, horizontal_flip, trivial_augment, normalize, random_erasing p=0.1
        mixup: alpha=0.2
        cutmix: alpha=1.0
        ema: decay=0.99 steps=2 adjust=true
        repeated_augment: reps=2
    }
}
"""


def _cnnspec(*args):
    return subprocess.run([sys.executable, "-m", "cnnspec", *map(str, args)],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)


def _model(run):
    return torch.load(run / "last.ckpt", weights_only=True)["model"]


def _rows(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def specs(tmp_path_factory):
    root = tmp_path_factory.mktemp("specs")
    (root / "plain.cnn").write_text(PLAIN)
    (root / "modern.cnn").write_text(MODERN)
    return root


def _largest_difference(a: dict, b: dict) -> float:
    return max(float((a[name].double() - b[name].double()).abs().max()) for name in a)


def test_accumulated_micro_batches_give_the_whole_batch_update(specs, tmp_path):
    """Float32 sums in another order: measured 6e-9 after 2 epochs (44 steps); the
    test allows 1e-6. Batchnorm would differ for real (each micro-batch has its own
    statistics), which is why the network here has none."""
    whole = cnnspec.train(str(specs / "plain.cnn"), data="digits", out=tmp_path / "one",
                          verbose=False)
    parts = cnnspec.train(str(specs / "plain.cnn"), data="digits", out=tmp_path / "four",
                          verbose=False, accumulate=4)
    assert parts.config.accumulate == 4
    assert _largest_difference(whole.model.state_dict(), parts.model.state_dict()) < 1e-6
    assert [r["lr"] for r in whole.history] == [r["lr"] for r in parts.history]


def test_accumulation_with_two_processes_follows_one_process(specs, tmp_path, cli):
    one = cli("train", specs / "plain.cnn", "--data", "digits", "--out",
              tmp_path / "one", "--epochs", "1")
    assert one.returncode == 0, one.stderr
    two = _cnnspec("train", specs / "plain.cnn", "--data", "digits", "--out",
                   tmp_path / "two", "--epochs", "1", "--nproc", "2", "--accumulate", "2")
    assert two.returncode == 0, two.stderr
    assert _largest_difference(_model(tmp_path / "one"), _model(tmp_path / "two")) < 1e-5


def test_accumulate_that_does_not_divide_the_batch_is_refused(specs, tmp_path, cli):
    done = cli("train", specs / "plain.cnn", "--data", "digits", "--out",
               tmp_path / "run", "--accumulate", "5")
    assert done.returncode == 2
    assert "accumulate 5 does not divide the batch of 32" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """4 classes of 12x12 colour images (each class its own tint, plus noise)."""
    from conftest import _write_image_folder

    root = tmp_path_factory.mktemp("folder")
    return _write_image_folder(root / "tints", classes=4, per_class=48, size=(12, 12),
                               val=True)


@pytest.fixture(scope="module")
def modern_run(tmp_path_factory, specs, folder):
    run = tmp_path_factory.mktemp("modern") / "run"
    done = _cnnspec("train", specs / "modern.cnn", "--data", folder, "--out", run)
    assert done.returncode == 0, done.stderr
    return run, done.stdout


def test_the_modern_recipe_trains(modern_run):
    run, out = modern_run
    rows = _rows(run)
    assert len(rows) == 6
    # 4 classes: chance is 25%.
    assert rows[-1]["val_top1"] > 0.6
    assert rows[-1]["train_loss"] < rows[0]["train_loss"]
    assert "dominant label" in out


def test_sigkill_mid_epoch_then_resume_is_bitwise_equal_with_every_component(
        tmp_path, specs, folder, modern_run):
    whole, _ = modern_run
    killed = tmp_path / "killed"
    process = subprocess.Popen(
        [sys.executable, "-m", "cnnspec", "train", str(specs / "modern.cnn"), "--data",
         str(folder), "--out", str(killed)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, cwd=ROOT)
    deadline = time.monotonic() + 240
    metrics = killed / "metrics.jsonl"
    while not (metrics.exists() and len(metrics.read_text().splitlines()) >= 1):
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.02)
    time.sleep(0.1)  # into epoch 2
    process.send_signal(signal.SIGKILL)
    process.communicate()
    assert len(_rows(killed)) < 6
    resumed = _cnnspec("train", specs / "modern.cnn", "--resume", killed)
    assert resumed.returncode == 0, resumed.stderr
    expected, got = _model(whole), _model(killed)
    for name in expected:
        assert torch.equal(expected[name], got[name]), name
    expected_state = torch.load(whole / "last.ckpt", weights_only=True)
    got_state = torch.load(killed / "last.ckpt", weights_only=True)
    for name, tensor in expected_state["ema"].items():
        assert torch.equal(tensor, got_state["ema"][name]), f"ema {name}"
    assert [r["val_loss"] for r in _rows(killed)] == [r["val_loss"] for r in _rows(whole)]


def test_cnnspec_recipe_shows_the_rates_the_run_logs(specs, folder, modern_run, cli):
    run, _ = modern_run
    shown = cli("recipe", specs / "modern.cnn", "--data", folder, "--json")
    assert shown.returncode == 0, shown.stderr
    view = json.loads(shown.stdout)
    rows = _rows(run)
    assert view["lr_per_epoch"] == [r["lr"] for r in rows]
    steps = view["steps_per_epoch"]
    assert [view["lr_every_step"][(e + 1) * steps - 1] for e in range(6)] == \
        [r["lr_last"] for r in rows]
    assert view["batch"] == {"effective": 16, "processes": 1, "per_process": 16,
                             "accumulate": 2, "micro_batch": 8}
    groups = {g["name"]: g for g in view["param_groups"]}
    assert any(g["lr"] == pytest.approx(0.4) for g in groups.values())  # fc x2
    # The adjusted decay: 1 - min(1, (1 - 0.99) * batch 16 * 2 steps / 6 epochs).
    assert view["ema"]["decay_used"] == pytest.approx(1 - (1 - 0.99) * 16 * 2 / 6)
    text = cli("recipe", specs / "modern.cnn", "--data", folder)
    assert text.returncode == 0, text.stderr
    assert "TrivialAugmentWide" in text.stdout and "RandomErasing" in text.stdout


def test_cnnspec_recipe_draws_the_rate_and_refuses_what_the_run_would(tmp_path, cli):
    """The library's ResNet-50 V2 recipe at a made-up 10 steps an epoch for 8
    epochs: its 5-epoch warmup then cosine, per epoch as torchvision's reference."""
    chart = tmp_path / "lr.png"
    done = cli("recipe", ROOT / "specs" / "resnet50.cnn", "--epochs", "8",
                    "--steps-per-epoch", "10", "--json", "-o", chart)
    assert done.returncode == 0, done.stderr
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    view = json.loads(done.stdout)
    # LinearLR from 0.01 over 5 epochs, then CosineAnnealingLR over the other 3.
    warm = [0.5 * (0.01 + 0.99 * e / 5) for e in range(5)]
    cosine = [0.5 * (1 + math.cos(math.pi * k / 3)) / 2 for k in range(3)]
    assert view["lr_per_epoch"] == pytest.approx(warm + cosine, rel=1e-12)
    assert view["lr_every_step"][:10] == [view["lr_per_epoch"][0]] * 10
    entries = {row["entry"]: row for row in view["entries"]}
    assert entries["epochs"]["from"] == "--epochs flag"
    assert entries["mixup"]["from"].startswith("recipe torchvision_v2 (")
    assert entries["accumulate"]["from"] == "default"
    refused = cli("recipe", ROOT / "specs" / "resnet50.cnn", "--epochs", "5")
    assert refused.returncode == 2
    assert "warmup of 5 epochs leaves nothing of a 5-epoch run" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_a_per_step_schedule_resumed_with_another_batch_follows_the_new_steps(
        specs, tmp_path):
    """PLAIN's warmup then cosine is stepped every iteration, so its length is in
    steps. Stopped after epoch 1 at batch 32 and resumed with --batch 16 for 3
    epochs, each later epoch gets the rates a batch-16 run has there: digits' 1,437
    training images make 89 steps of 16 (the last partial batch dropped)."""
    from cnnspec.training.progress import Silent
    from cnnspec.training.run import Interrupted

    class StopAfterFirst(Silent):
        def end_epoch(self, row):
            raise KeyboardInterrupt  # as a Ctrl-C once epoch 1 is validated

    run = tmp_path / "run"
    with pytest.raises(Interrupted):
        cnnspec.train(str(specs / "plain.cnn"), data="digits", out=run, epochs=3,
                      reporter=StopAfterFirst())
    cnnspec.train(str(specs / "plain.cnn"), resume=run, batch=16, verbose=False)
    steps, total = 89, 3 * 89
    warmup = round(0.5 * steps)

    def rate(k):  # SequentialLR: LinearLR(0.1 -> 1) over `warmup`, then cosine
        if k < warmup:
            return 0.05 * (0.1 + 0.9 * k / warmup)
        return 0.05 * (1 + math.cos(math.pi * (k - warmup) / (total - warmup))) / 2

    rows = _rows(run)
    assert [r["lr"] for r in rows[1:]] == pytest.approx([rate(steps), rate(2 * steps)])
    assert [r["lr_last"] for r in rows[1:]] == pytest.approx(
        [rate(2 * steps - 1), rate(3 * steps - 1)])
