"""What a training run promises that whole-run tests cannot see (issue 21): the loss
it minimises is the recipe's (auxiliary weights, label smoothing), its validation
figures are those of the model in evaluation mode, and each epoch draws new batches
and augmentations while a resumed epoch draws the same ones. Then what the mutation
testing of the loop, the run and the data showed untested: an epoch's figures as
means over its images, the progress display's steps, where a non-finite loss stops,
mixed precision, EMA, gradient clipping under fp16, flips, held-out images, the
validation pipeline of synthetic data, `network=`.

Each test trains a few images for one or two epochs of a tiny network, in this
process, so that mutation testing can afford them (tests/mutation/loop.cfg). The
expected values are computed here with torch.nn.functional (from the model's own
outputs or weights), come from `cnnspec evaluate`, which scores weights on its own
code path, or hold by construction (which images are labelled with the model's
first choice). Batches are observed by wrapping `Trainer.train_epoch`'s and
`Trainer.evaluate`'s loaders.
"""

import json

import pytest
import torch
from torch.nn import functional as F

import cnnspec
from cnnspec.training.errors import TrainingError, UsageError
from cnnspec.training.loop import Trainer
from cnnspec.training.progress import Silent

pytest.importorskip("sklearn")
pytest.importorskip("safetensors")

# Two auxiliary heads of different weights (GoogLeNet's is 0.3), batchnorm (train
# mode uses the batch's statistics) and label smoothing.
AUXILIARY = """
network auxiliary(classes = 10) {
    input 1x8x8
    conv1: conv 6 k=3 p=1
    bn1: batchnorm
    relu
    aux1: aux weight=0.3 {
        avgpool global
        flatten
        fc: linear classes
    }
    conv2: conv 6 k=3 p=1
    relu
    aux2: aux weight=0.5 {
        avgpool global
        flatten
        fc: linear classes
    }
    avgpool global
    flatten
    fc: linear classes
    train {
        optimizer: sgd lr=0.1
        epochs: 1
        batch: 8
        label_smoothing: 0.1
    }
}
"""
HEADS = ("fc", "aux1.fc", "aux2.fc")


def _images(count, shape, seed, classes=10):
    generator = torch.Generator().manual_seed(seed)
    images = torch.rand(count, *shape, generator=generator)
    labels = torch.arange(count) % classes
    return [(image, int(label)) for image, label in zip(images, labels)]


def _outputs_of(model, names, images):
    """The outputs of the named submodules for `images` (forward hooks: whatever the
    model returns, these are what its layers computed)."""
    seen = {}
    modules = dict(model.named_modules())
    handles = [modules[name].register_forward_hook(
        lambda module, args, output, name=name: seen.__setitem__(name, output))
        for name in names]
    try:
        model(images)
    finally:
        for handle in handles:
            handle.remove()
    return [seen[name] for name in names]


def _first_step(spec, heads, tmp_path, seed):
    """One training step of 8 images from starting weights made here; returns the
    loss the run reports for it, the labels, and what each head output for the
    batch, computed here in training mode (batchnorm normalising by the batch's
    statistics, the auxiliary heads on).

    The main classifier starts at 30 times torch's initial weights and each image
    is labelled with its first choice: confident, correct scores, where label
    smoothing changes the loss most (it moves s of the target onto classes the
    model rules out); near uniform scores, as the auxiliary heads' are, every
    cross-entropy, smoothed or not, is about log(classes)."""
    torch.manual_seed(seed)
    model = cnnspec.build(cnnspec.load(spec))
    with torch.no_grad():
        model.fc.weight.mul_(30)
    torch.save(model.state_dict(), tmp_path / "start.pt")
    model.train()
    images = torch.stack([image for image, _ in _images(8, (1, 8, 8), seed)])
    with torch.no_grad():
        outputs = _outputs_of(model, heads, images)
    labels = outputs[0].argmax(1)
    train_set = list(zip(images, labels.tolist()))
    result = cnnspec.train(spec, data=(train_set, _images(4, (1, 8, 8), seed + 1)),
                           out=tmp_path / "run", weights=str(tmp_path / "start.pt"),
                           verbose=False)
    assert [row["epoch"] for row in result.history] == [1]  # one step: one batch
    return result.history[0]["train_loss"], labels, outputs


def test_a_training_step_minimises_the_recipes_weighted_smoothed_loss(tmp_path):
    """The first step's reported train_loss is the main head's cross-entropy plus
    0.3 and 0.5 times the auxiliary heads', each with the recipe's label smoothing of
    0.1, computed here with torch.nn.functional from what the three heads output."""
    reported, labels, outputs = _first_step(AUXILIARY, HEADS, tmp_path, seed=0)

    def loss(weights, smoothing):
        return sum(w * F.cross_entropy(out, labels, label_smoothing=smoothing).item()
                   for w, out in zip(weights, outputs))

    expected = loss((1, 0.3, 0.5), 0.1)
    assert reported == pytest.approx(expected, rel=1e-5)
    # What the bugs would report instead lies far outside that tolerance: weights
    # ignored (1.0) or dropped, smoothing dropped, one head's weight for both.
    for wrong in (loss((1, 1, 1), 0.1), loss((1, 0, 0), 0.1), loss((1, 0.3, 0.5), 0),
                  loss((1, 0.3, 0.3), 0.1), loss((1, 0.5, 0.5), 0.1)):
        assert abs(wrong - expected) > 1e-3 * expected


def test_a_network_without_auxiliary_heads_trains_on_its_smoothed_loss(tmp_path):
    """No auxiliary heads, `label_smoothing: 0.2`: the first step's loss is the
    smoothed cross-entropy of the model's output."""
    spec = AUXILIARY.replace("label_smoothing: 0.1", "label_smoothing: 0.2")
    for head in ("aux1", "aux2"):
        start = spec.index(f"    {head}: aux")
        spec = spec[:start] + spec[spec.index("    }\n", start) + 6:]
    assert ": aux" not in spec
    reported, labels, (logits,) = _first_step(spec, ("fc",), tmp_path, seed=2)
    expected = F.cross_entropy(logits, labels, label_smoothing=0.2).item()
    assert reported == pytest.approx(expected, rel=1e-5)
    for wrong in (0, 0.1):
        plain = F.cross_entropy(logits, labels, label_smoothing=wrong).item()
        assert abs(plain - expected) > 1e-3 * expected


# Dropout and batchnorm: a model validated in training mode scores differently (and
# randomly), and its batchnorm statistics would move towards the validation images.
REGULARISED = """
network regularised(classes = 10) {
    input 1x8x8
    conv1: conv 8 k=3 p=1
    bn1: batchnorm
    relu
    pool: maxpool 2
    flatten
    drop: dropout 0.5
    fc: linear classes
    train {
        optimizer: adam lr=0.01
        epochs: 1
        batch: 64
    }
}
"""


def test_reported_validation_equals_cnnspec_evaluate_of_the_saved_weights(cli, tmp_path):
    """The val_loss and val_top1 a run reports for its best epoch are what
    `cnnspec evaluate SPEC --weights RUN/weights.safetensors` gives on the same
    data: validation runs the model as it will be used (dropout off, batchnorm's
    running statistics, not updated by validation images)."""
    spec = tmp_path / "regularised.cnn"
    spec.write_text(REGULARISED)
    run = tmp_path / "run"
    trained = cli("train", spec, "--data", "digits", "--out", run, "--json")
    assert trained.returncode == 0, trained.stderr
    reported = json.loads(trained.stdout.strip().splitlines()[-1])
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["val_loss"] == reported["val_loss"]

    scores = []
    for _ in range(2):  # the reference itself is deterministic
        evaluated = cli("evaluate", spec, "--weights", run / "weights.safetensors",
                        "--data", "digits", "--json")
        assert evaluated.returncode == 0, evaluated.stderr
        scores.append(json.loads(evaluated.stdout.strip().splitlines()[-1]))
    assert scores[0] == scores[1]
    assert scores[0]["images"] == 360  # digits' validation split: 20% of 1,797
    assert reported["val_top1"] == pytest.approx(scores[0]["top1"], abs=1e-9)
    assert reported["val_loss"] == pytest.approx(scores[0]["loss"], rel=1e-5)
    assert reported["val_top5"] == pytest.approx(scores[0]["top5"], abs=1e-9)
    assert reported["epochs"] == reported["best_epoch"] == 1
    # The weights file says which spec and epoch it holds, and what that epoch scored.
    from safetensors import safe_open

    with safe_open(str(run / "weights.safetensors"), "pt") as saved:
        about = saved.metadata()
    assert about["spec"] == "regularised" and about["epoch"] == "1"
    assert float(about["val_top1"]) == pytest.approx(scores[0]["top1"], abs=1e-6)


# -- the randomness of each epoch


class _Recording:
    """A DataLoader seen through: yields its batches and keeps a copy of each;
    `after_step` (if any) is called once the loop has used each batch."""

    def __init__(self, loader, into: list, after_step=None):
        self.loader, self.into, self.after_step = loader, into, after_step

    def __len__(self):
        return len(self.loader)

    def __iter__(self):
        for images, labels in self.loader:
            self.into.append((images.clone(), labels.clone()))
            yield images, labels
            if self.after_step is not None:
                self.after_step()


class _Batches:
    """What each epoch of the runs in a test trained and validated on, a hook after
    each training step, and a Ctrl-C on demand."""

    def __init__(self):
        self.epochs: dict[int, list] = {}  # epoch -> [(images, labels), ...]
        self.val: list[list] = []  # one list of batches per validation pass
        self.after_step = None  # called with the Trainer after each step
        self.interrupt_at: int | None = None  # Ctrl-C as this epoch starts


@pytest.fixture
def batches(monkeypatch):
    seen = _Batches()
    train_epoch, evaluate = Trainer.train_epoch, Trainer.evaluate

    def recorded(self, loader, epoch, *args, **kwargs):
        if epoch == seen.interrupt_at:
            raise KeyboardInterrupt
        after = (lambda: seen.after_step(self)) if seen.after_step else None
        return train_epoch(self, _Recording(loader, seen.epochs.setdefault(epoch, []),
                                            after), epoch, *args, **kwargs)

    def validated(self, model, loader):
        seen.val.append([])
        return evaluate(self, model, _Recording(loader, seen.val[-1]))

    monkeypatch.setattr(Trainer, "train_epoch", recorded)
    monkeypatch.setattr(Trainer, "evaluate", validated)
    return seen


class _Drawing(torch.utils.data.Dataset):
    """A user's dataset with a random transform of its own: item i is an image whose
    first pixel is i and whose second is a number drawn from torch's generator, as
    torchvision's random transforms draw. Each batch says which images it held, in
    which order, and what the transform drew for each."""

    def __init__(self, count):
        self.count = count

    def __len__(self):
        return self.count

    def __getitem__(self, index):
        image = torch.zeros(1, 4, 4)
        image[0, 0, 0] = index
        image[0, 0, 1] = torch.rand(())
        return image, index % 3


def _indices_and_draws(epoch_batches):
    images = torch.cat([images for images, _ in epoch_batches])
    return images[:, 0, 0, 0].long().tolist(), images[:, 0, 0, 1].tolist()


DRAWING = """
network drawing(classes = 3) {
    input 1x4x4
    flatten
    drop: dropout 0.2
    fc: linear classes
    train { optimizer: sgd lr=0.01
            epochs: 2
            batch: 8 }
}
"""


@pytest.mark.parametrize("workers", [0, 2])
def test_each_epoch_draws_a_new_order_and_new_random_transforms(tmp_path, batches,
                                                                workers):
    """Epoch 2 visits the images in another order and its random transforms draw
    other numbers than epoch 1's, position by position (not the first epoch's
    draws handed to other images); with loader workers too, whose generators are
    seeded per epoch."""
    data = (_Drawing(48), _Drawing(8))
    cnnspec.train(DRAWING, data=data, out=tmp_path / "run", workers=workers,
                  verbose=False)
    first, second = (_indices_and_draws(batches.epochs[e]) for e in (1, 2))
    assert sorted(first[0]) == sorted(second[0]) == list(range(48))
    assert first[0] != second[0]
    assert len(set(first[1])) == 48  # fresh numbers within an epoch, too
    shared = set(first[1]) & set(second[1])
    assert not shared


AUGMENTED = """
network augmented(classes = 10) {
    input 1x8x8
    conv1: conv 4 k=3 p=1
    relu
    avgpool global
    flatten
    fc: linear classes
    train { optimizer: sgd lr=0.01
            epochs: 2
            batch: 64
            augment: random_crop 8 padding=2, horizontal_flip }
}
"""


def _image_keys(epoch_batches):
    return [image.numpy().tobytes() for images, _ in epoch_batches for image in images]


def test_the_recipes_augmentations_are_drawn_anew_each_epoch(tmp_path, batches):
    """Digits with `random_crop 8 padding=2, horizontal_flip` (25 offsets x 2): an
    image seen in epoch 1 is rarely seen again, pixel for pixel, in epoch 2. An
    augmentation drawn once and reused would make nearly every one reappear."""
    cnnspec.train(AUGMENTED, data="digits", out=tmp_path / "run", verbose=False)
    first, second = (_image_keys(batches.epochs[e]) for e in (1, 2))
    assert len(first) == len(second) == 1437 // 64 * 64
    again = len(set(first) & set(second)) / len(second)
    assert again < 0.2, f"{again:.0%} of epoch 2's images are epoch 1's"
    labels = [torch.cat([labels for _, labels in batches.epochs[e]]) for e in (1, 2)]
    assert not torch.equal(labels[0], labels[1])


@pytest.mark.parametrize("stopped_after, workers", [(1, 0), (1, 2), (0, 0)],
                         ids=["after-epoch-1", "after-epoch-1-workers", "in-epoch-1"])
def test_a_resumed_run_trains_on_the_batches_of_the_uninterrupted_run(
        tmp_path, batches, stopped_after, workers):
    """Stopped by Ctrl-C after epoch 1 (or in it) and resumed, the epochs left see
    the same images, labels and augmentations, in the same order, as a run that
    never stopped, and end with the same figures. run.json keeps when the run
    started and adds the command that resumed it."""
    from cnnspec.training.run import Interrupted

    whole = cnnspec.train(AUGMENTED, data="digits", out=tmp_path / "whole",
                          workers=workers, verbose=False)
    expected = {epoch: batches.epochs.pop(epoch) for epoch in (1, 2)}
    batches.interrupt_at = stopped_after + 1
    part = tmp_path / "part"
    with pytest.raises(Interrupted) as stop:
        cnnspec.train(AUGMENTED, data="digits", out=part, workers=workers,
                      verbose=False)
    assert stop.value.saved == stopped_after
    started = json.loads((part / "run.json").read_text())
    batches.epochs.clear()
    batches.interrupt_at = None
    resumed = cnnspec.train(AUGMENTED, resume=part, verbose=False)
    assert sorted(batches.epochs) == list(range(stopped_after + 1, 3))
    for epoch, got in batches.epochs.items():
        assert len(got) == len(expected[epoch]) == 1437 // 64
        for (images, labels), (want_images, want_labels) in zip(got, expected[epoch]):
            assert torch.equal(labels, want_labels)
            assert torch.equal(images, want_images)
    assert resumed.history == [dict(row, seconds=mine["seconds"],
                                    images_per_s=mine["images_per_s"])
                               for row, mine in zip(whole.history, resumed.history)]
    record = json.loads((part / "run.json").read_text())
    assert record["started"] == started["started"]
    assert len(record["commands"]) == 2
    assert record["commands"][0] == started["commands"][0]
    assert record["network"] == "augmented" and record["device"] == "cpu"
    assert record["versions"]["torch"] == torch.__version__
    assert record["versions"]["cnnspec"] == cnnspec.__version__


def test_resuming_a_run_on_datasets_given_in_python_asks_for_them_again(tmp_path):
    """run.json cannot name datasets passed in Python: resuming without them says
    which file lacks the source and what to give; with them, the run goes on."""
    data = (_Drawing(16), _Drawing(8))
    run = tmp_path / "run"
    cnnspec.train(DRAWING, data=data, out=run, epochs=1, verbose=False)
    with pytest.raises(UsageError) as refused:
        cnnspec.train(DRAWING, resume=run, epochs=2, verbose=False)
    assert str(refused.value).startswith(f"{run / 'run.json'} does not say which data")
    assert "--data" in str(refused.value)
    resumed = cnnspec.train(DRAWING, data=data, resume=run, epochs=2, verbose=False)
    assert [row["epoch"] for row in resumed.history] == [1, 2]


# -- what an epoch reports, the progress display, amp, EMA

# No batchnorm or dropout: each image's loss does not depend on its batch. A rate of
# 1e-9 leaves the starting weights in place to within 1e-9 of a gradient, so every
# step's loss, and the validation, are those of the starting weights.
STILL = """
network still(classes = 10) {
    input 1x4x4
    conv1: conv 4 k=3 p=1
    relu
    flatten
    fc: linear classes
    train {
        optimizer: sgd lr=0.000000001
        epochs: 1
        batch: 8
    }
}
"""


class _Steps(Silent):
    """A progress display that keeps what it is told after each step."""

    def __init__(self):
        self.epochs, self.steps = [], []

    def start_epoch(self, epoch, epochs, steps):
        self.epochs.append((epoch, epochs, steps))

    def step(self, step, lr):
        self.steps.append(step)


def test_an_epoch_reports_its_mean_loss_and_accuracy_over_every_image(tmp_path):
    """48 training images in 6 steps, 24 validation images; 20 and 9 of them are
    labelled with the starting model's first choice and the rest with another
    class. The epoch's row gives the mean cross-entropy and the accuracy over every
    image (20/48 and 9/24 by construction), top-5 counted here, and the progress
    display is told each step with the running figures."""
    torch.manual_seed(3)
    model = cnnspec.build(cnnspec.load(STILL))
    torch.save(model.state_dict(), tmp_path / "start.pt")
    images = torch.rand(72, 1, 4, 4, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        logits = model(images)
    first_choice = logits.argmax(1)
    right = torch.zeros(72, dtype=torch.bool)
    right[:20] = right[48:57] = True
    labels = torch.where(right, first_choice, (first_choice + 1) % 10)
    pairs = list(zip(images, labels.tolist()))
    shown = _Steps()
    result = cnnspec.train(STILL, data=(pairs[:48], pairs[48:]), out=tmp_path / "run",
                           weights=str(tmp_path / "start.pt"), reporter=shown)
    row = result.history[0]
    losses = F.cross_entropy(logits, labels, reduction="none")
    assert row["train_loss"] == pytest.approx(losses[:48].mean().item(), rel=1e-5)
    assert row["train_top1"] == pytest.approx(20 / 48, abs=1e-12)
    assert row["val_loss"] == pytest.approx(losses[48:].mean().item(), rel=1e-5)
    assert row["val_top1"] == pytest.approx(9 / 24, abs=1e-12)
    in_top5 = (logits[48:].topk(5, dim=1).indices == labels[48:, None]).any(1)
    assert row["val_top5"] == pytest.approx(in_top5.double().mean().item(), abs=1e-12)
    assert shown.epochs == [(1, 1, 6)]
    assert [(s.index, s.steps, s.images) for s in shown.steps] == [
        (i, 6, 8 * i) for i in range(1, 7)]
    assert shown.steps[-1].loss == pytest.approx(row["train_loss"], rel=1e-9)
    assert shown.steps[-1].top1 == pytest.approx(row["train_top1"], abs=1e-12)


def test_a_non_finite_loss_stops_at_its_step_and_keeps_the_starting_weights(tmp_path):
    nan = [(torch.full((1, 4, 4), float("nan")), i % 10) for i in range(16)]
    run = tmp_path / "run"
    with pytest.raises(TrainingError) as stop:
        cnnspec.train(STILL, data=(nan, nan[:8]), out=run, verbose=False)
    assert str(stop.value).startswith("the loss became nan at epoch 1, step 1;")
    state = torch.load(run / "last.ckpt", weights_only=True)
    assert state["epoch"] == 0 and state["history"] == []


@pytest.mark.parametrize("amp, dtype", [("bf16", torch.bfloat16),
                                        ("fp16", torch.float16)])
def test_mixed_precision_runs_the_layers_in_its_type_and_keeps_float32_weights(
        tmp_path, amp, dtype):
    """`--amp bf16` or `fp16`: every convolution and linear layer computes in that
    type, in training and validation; the weights the optimizer updates stay
    float32."""
    computed = set()

    def note_dtype(module, args, output):
        if isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)):
            computed.add(output.dtype)

    data = (_images(16, (1, 4, 4), 5), _images(8, (1, 4, 4), 6))
    handle = torch.nn.modules.module.register_module_forward_hook(note_dtype)
    try:
        result = cnnspec.train(STILL, data=data, out=tmp_path / "run", amp=amp,
                               verbose=False)
    finally:
        handle.remove()
    assert computed == {dtype}
    assert {p.dtype for p in result.model.parameters()} == {torch.float32}


def test_ema_saves_the_exponential_average_of_the_weights_after_each_step(
        tmp_path, batches):
    """`--ema 0.8`: the saved weights are w_1 after the first step, then
    0.8 * average + 0.2 * w_k after step k, computed here from the weights the
    model held after each of its 6 steps."""
    after = []
    batches.after_step = lambda trainer: after.append(
        {name: t.detach().clone() for name, t in trainer.model.state_dict().items()})
    data = (_images(48, (1, 4, 4), 7), _images(8, (1, 4, 4), 8))
    cnnspec.train(STILL, data=data, out=tmp_path / "run", lr=0.5, ema=0.8,
                  verbose=False)
    assert len(after) == 6
    average = dict(after[0])
    for weights in after[1:]:
        average = {name: 0.8 * average[name] + 0.2 * weights[name] for name in average}
    from safetensors.torch import load_file

    saved = load_file(str(tmp_path / "run" / "weights.safetensors"))
    assert saved.keys() == average.keys()
    for name in average:
        assert torch.allclose(saved[name], average[name], rtol=0, atol=1e-6), name
        assert not torch.allclose(saved[name], after[-1][name], rtol=0, atol=1e-4), name


FLIPPED = """
network flipped(classes = 10) {
    input 1x8x8
    flatten
    fc: linear classes
    train { optimizer: sgd lr=0.01
            epochs: 1
            batch: 64
            augment: horizontal_flip }
}
"""


def test_horizontal_flip_mirrors_about_half_the_training_images_and_no_validation_image(
        tmp_path, batches):
    """Every image an epoch trains on is a digit (scikit-learn's, scaled to [0, 1])
    or its mirror image, about half of them mirrored (p = 0.5; the digits that are
    their own mirror image are not counted); validation sees the digits as they are."""
    from sklearn.datasets import load_digits

    digits = torch.tensor(load_digits().images, dtype=torch.float32).unsqueeze(1) / 16
    plain = {image.numpy().tobytes() for image in digits}
    mirrored = {image.flip(-1).numpy().tobytes() for image in digits}
    cnnspec.train(FLIPPED, data="digits", out=tmp_path / "run", verbose=False)
    trained = _image_keys(batches.epochs[1])
    assert all(key in plain or key in mirrored for key in trained)
    flipped = sum(key in mirrored and key not in plain for key in trained)
    kept = sum(key in plain and key not in mirrored for key in trained)
    assert 0.4 < flipped / (flipped + kept) < 0.6
    validated = [image.numpy().tobytes() for images, _ in batches.val[0]
                 for image in images]
    assert len(validated) == 360 and all(key in plain for key in validated)


@pytest.mark.parametrize("amp", ["off", "fp16"])
def test_clip_grad_bounds_the_norm_of_the_true_gradient(tmp_path, batches, amp):
    """`--clip-grad 0.001` with plain SGD at rate 1: the first step moves the weights
    by a vector of norm 0.001 (the gradient, far longer, rescaled to the bound). With
    fp16 the bound applies to the gradient itself, not to the loss-scaled one the
    GradScaler backpropagates (65536 times longer), which would leave a step 65536
    times too short."""
    torch.manual_seed(9)
    model = cnnspec.build(cnnspec.load(STILL))
    start = {name: t.detach().clone() for name, t in model.state_dict().items()}
    torch.save(start, tmp_path / "start.pt")
    after = []
    batches.after_step = lambda trainer: after.append(
        {name: t.detach().clone() for name, t in trainer.model.state_dict().items()})
    data = (_images(8, (1, 4, 4), 10), _images(8, (1, 4, 4), 11))
    cnnspec.train(STILL, data=data, out=tmp_path / "run", lr=1.0, clip_grad=0.001,
                  amp=amp, weights=str(tmp_path / "start.pt"), verbose=False)
    step = torch.cat([(after[0][name] - start[name]).flatten() for name in start])
    assert step.norm().item() == pytest.approx(0.001, rel=0.01)


# -- which data, which network

RGB = """
network rgb(classes = 2) {
    input 3x8x8
    flatten
    fc: linear classes
    train { optimizer: sgd lr=0.01
            epochs: 1
            batch: 2 }
}
"""


def test_an_image_folder_holds_out_val_fraction_of_each_class(tmp_path, batches,
                                                              image_folder):
    """`val_fraction=0.25` on a folder without val/: 2 of class a's 8 images are held
    out, and 1 of class b's 2 (a class of two always gives one); the 7 left train
    (6 in batches of 2). With a val/ folder, validation is exactly its images, as
    3 x 8 x 8 tensors in [0, 1] like the training ones."""
    root = image_folder(tmp_path / "split", classes=2, per_class=8, size=(8, 8))
    for extra in sorted((root / "train" / "b").iterdir())[2:]:
        extra.unlink()
    cnnspec.train(RGB, data=str(root), out=tmp_path / "a", val_fraction=0.25,
                  verbose=False)
    assert sorted(torch.cat([labels for _, labels in batches.val[0]]).tolist()) == [
        0, 0, 1]
    assert sum(len(labels) for _, labels in batches.epochs[1]) == 6

    batches.val.clear()
    root = image_folder(tmp_path / "given", classes=2, per_class=3, size=(8, 8),
                        val=True)
    cnnspec.train(RGB, data=str(root), out=tmp_path / "b", verbose=False)
    images = torch.cat([images for images, _ in batches.val[0]])
    labels = torch.cat([labels for _, labels in batches.val[0]])
    assert sorted(labels.tolist()) == [0, 0, 0, 1, 1, 1]
    assert images.shape == (6, 3, 8, 8) and images.dtype == torch.float32
    assert 0 <= images.min() and images.max() <= 1


NORMALIZED = """
network normalized(classes = 10) {
    input 1x4x4
    flatten
    fc: linear classes
    train { optimizer: sgd lr=0.01
            epochs: 1
            batch: 16
            augment: normalize }
}
"""


def test_synthetic_images_are_normalized_for_validation_as_for_training(tmp_path,
                                                                         batches):
    """`augment: normalize` on synthetic images (in [0, 1]): one channel is
    normalized with mean and std 0.5, to [-1, 1], in training and in validation."""
    cnnspec.train(NORMALIZED, data="synthetic:64", out=tmp_path / "run", verbose=False)
    for seen in (batches.epochs[1], batches.val[0]):
        images = torch.cat([images for images, _ in seen])
        assert -1 <= images.min() < -0.5 and 0.5 < images.max() <= 1


TWO_NETWORKS = DRAWING + """
network wider(classes = 3) {
    input 1x4x4
    flatten
    hidden: linear 32
    relu
    fc: linear classes
}
"""


def test_the_network_chosen_from_a_file_of_several_is_the_one_trained(tmp_path):
    result = cnnspec.train(TWO_NETWORKS, network="wider",
                           data=(_Drawing(16), _Drawing(8)), out=tmp_path / "run",
                           epochs=1, batch=8, verbose=False)
    assert result.model.hidden.out_features == 32
    assert json.loads((tmp_path / "run" / "run.json").read_text())["network"] == "wider"
