"""`cnnspec train` and `cnnspec.train`: real learning, the run folder, the recipe's
parts, and what bad input gets. Resume, Ctrl-C and multi-process runs are in
tests/test_train_processes.py.
"""

import json
import math

import pytest
import torch

import cnnspec
from cnnspec.cli import main
from cnnspec.training.config import RunConfig, resolve
from cnnspec.training.loop import Trainer
from cnnspec.training.param_groups import parameter_groups


def _config(**entries) -> RunConfig:
    """A run configuration with these recipe entries (SGD at 0.1 otherwise)."""
    return RunConfig.model_validate({"optimizer": {"kind": "sgd", "lr": 0.1},
                                     "schedule": {"kind": "constant"}, "epochs": 6,
                                     "batch": 8, **entries})
from conftest import SPECS

pytest.importorskip("sklearn")
pytest.importorskip("safetensors")
from safetensors.torch import load_file  # noqa: E402

# A small net for the fast tests: 8x8 digits in, 10 scores out.
TINY = """
network tiny(classes = 10) {
    input 1x8x8
    conv1: conv 32 k=3 p=1
    relu
    pool: maxpool 2
    flatten
    drop: dropout 0.2
    fc: linear classes
}
"""


def test_lenet5_reaches_97_percent_on_digits_with_its_recipe(tmp_path, capsys):
    """The issue's bar: `cnnspec train specs/lenet5.cnn --data digits` >= 97%."""
    status = main(["train", str(SPECS / "lenet5.cnn"), "--data", "digits",
                   "--out", str(tmp_path / "run"), "--json"])
    assert status == 0
    out = capsys.readouterr().out.strip().splitlines()
    metrics = json.loads(out[-1])
    assert metrics["val_top1"] >= 0.97
    assert metrics["epochs"] == 20 and 1 <= metrics["best_epoch"] <= 20
    assert set(metrics) == {"val_top1", "val_top5", "val_loss", "best_epoch", "epochs",
                            "seconds", "run_dir"}
    run = tmp_path / "run"
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == list(range(1, 21))
    assert (run / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    recorded = json.loads((run / "run.json").read_text())
    assert recorded["config"]["optimizer"] == {"kind": "adam", "lr": 0.002,
                                               "betas": [0.9, 0.999], "eps": 1e-8}
    assert recorded["data"] == "digits" and len(recorded["classes"]) == 10
    # The saved weights are the best epoch's, under the spec's layer names, and
    # score what metrics.jsonl says they score.
    weights = load_file(str(run / "weights.safetensors"))
    assert set(weights) == set(cnnspec.build(SPECS / "lenet5.cnn").state_dict())
    best = max(rows, key=lambda r: (r["val_top1"], -r["val_loss"]))
    assert best["epoch"] == metrics["best_epoch"]
    assert best["val_top1"] == metrics["val_top1"]


def test_python_api_with_datasets_and_a_loaded_spec(tmp_path):
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16
    labels = torch.tensor(digits.target)
    keep = labels < 5  # a five-class problem, brought as Datasets
    pairs = list(zip(images[keep], labels[keep].tolist()))
    pairs = [pairs[i] for i in torch.randperm(len(pairs), generator=torch.Generator()
                                              .manual_seed(0))]
    train_set, val_set = pairs[:700], pairs[700:]
    spec = cnnspec.load(TINY, classes=5)
    result = cnnspec.train(spec, data=(train_set, val_set), out=tmp_path / "run",
                           epochs=5, batch=32, lr=0.005, verbose=False)
    assert result.val_top1 == result.metrics["val_top1"] > 0.93
    assert len(result.history) == 5
    assert result.model.fc.out_features == 5
    with torch.no_grad():  # .model holds the best weights, the ones saved
        saved = load_file(str(tmp_path / "run" / "weights.safetensors"))
        for name, tensor in result.model.state_dict().items():
            assert torch.equal(tensor, saved[name])


def test_defaults_are_printed_for_a_spec_without_a_recipe(tmp_path, capsys):
    spec = tmp_path / "tiny.cnn"
    spec.write_text(TINY)
    assert main(["train", str(spec), "--data", "digits", "--epochs", "1",
                 "--out", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    assert "no optimizer, schedule, batch in `train { }`; using defaults" in out
    assert "recipe: adamw lr=0.001 (default), 1 epochs, batch 64" in out
    assert "schedule: cosine to 0, stepped every iteration" in out
    assert "epoch   1  train_loss" in out  # a plain line per epoch without a terminal


def test_classes_are_taken_from_the_data_unless_set(tmp_path, capsys, image_folder):
    root = image_folder(tmp_path / "shapes", classes=3, per_class=6, size=(20, 20))
    status = main(["train", str(SPECS / "lenet5.cnn"), "--data", str(root),
                   "--epochs", "1", "--batch", "4", "--out", str(tmp_path / "a")])
    out, err = capsys.readouterr()
    assert status == 0, err
    assert "classes: 3, taken from the data (the spec's default is 10)" in out
    status = main(["train", str(SPECS / "lenet5.cnn"), "--data", str(root), "--set",
                   "classes=5", "--out", str(tmp_path / "b")])
    err = capsys.readouterr().err
    assert status == 1
    assert "classes=5 was set, but the data has 3 classes (a, b, c)" in err


def test_alexnet_full_recipe_runs_on_an_image_folder(tmp_path, image_folder):
    """Every part of AlexNet's section-5 recipe, end to end, for two steps: SGD with
    momentum and weight decay, plateau schedule, N(0, 0.01) init with bias 1, 227
    crops of resized images, flips and PCA lighting."""
    root = image_folder(tmp_path / "photos", classes=2, per_class=4, size=(64, 48),
                        val=True)
    result = cnnspec.train(SPECS / "alexnet.cnn", data=str(root), out=tmp_path / "run",
                           epochs=1, batch=4, verbose=False)
    config = result.config
    assert config.optimizer.kind == "sgd" and config.optimizer.momentum == 0.9
    assert config.schedule.kind == "plateau" and config.weight_decay == 0.0005
    assert [a.kind for a in config.augment] == ["random_crop", "horizontal_flip",
                                                "pca_lighting"]
    assert result.model.fc8.out_features == 2
    assert len(result.history) == 1 and math.isfinite(result.history[0]["train_loss"])
    assert result.history[0]["images_per_s"] > 0


EVERY_AUGMENTATION = """
network augmented(classes = 3) {
    input 3x24x24
    conv 8 k=3 p=1
    batchnorm
    relu
    avgpool global
    flatten
    fc: linear classes
    train {
        optimizer: sgd lr=0.05 momentum=0.9 nesterov=true
        schedule:  cosine warmup_epochs=1
        epochs: 2
        batch: 4
        weight_decay: 0.0001
        label_smoothing: 0.1
        init: he
        augment: resize 28, random_resized_crop 24, center_crop 24, horizontal_flip,
                 color_jitter strength=0.2, pca_lighting, normalize
    }
}
"""


def test_every_augmentation_and_schedule_warmup(tmp_path, image_folder):
    root = image_folder(tmp_path / "photos", classes=3, per_class=4, size=(32, 32))
    spec = tmp_path / "augmented.cnn"
    spec.write_text(EVERY_AUGMENTATION)
    result = cnnspec.train(spec, data=str(root), out=tmp_path / "run", verbose=False,
                           ema=0.9, clip_grad=1.0, decay_norm_bias=False)
    lrs = [row["lr"] for row in result.history]
    # Linear warmup from 1% of the rate over one epoch, then cosine from the full rate.
    assert lrs == pytest.approx([0.05 * 0.01, 0.05])
    weights = load_file(str(tmp_path / "run" / "weights.safetensors"))
    last = torch.load(tmp_path / "run" / "last.ckpt", weights_only=True)["model"]
    # With --ema the saved weights are the average, not the last step's.
    assert not torch.equal(weights["fc.weight"], last["fc.weight"])


def test_step_schedule_divides_the_rate(tmp_path):
    spec = tmp_path / "stepped.cnn"
    spec.write_text(TINY.replace("fc: linear classes", """fc: linear classes
    train { optimizer: sgd lr=0.1
            schedule: step step_size=2 gamma=0.1
            epochs: 5
            batch: 64 }"""))
    result = cnnspec.train(spec, data="digits", out=tmp_path / "run", verbose=False)
    assert [r["lr"] for r in result.history] == pytest.approx(
        [0.1, 0.1, 0.01, 0.01, 0.001])


def test_rmsprop_with_milestones(tmp_path):
    """`optimizer: rmsprop` runs torch's RMSprop (its state is a running mean of
    squared gradients) and `multistep` divides the rate at each milestone."""
    spec = tmp_path / "milestones.cnn"
    spec.write_text(TINY.replace("fc: linear classes", """fc: linear classes
    train { optimizer: rmsprop lr=0.001 alpha=0.9
            schedule: multistep milestones=(2, 3) gamma=0.5
            epochs: 4
            batch: 64 }"""))
    result = cnnspec.train(spec, data="digits", out=tmp_path / "run", verbose=False)
    assert [r["lr"] for r in result.history] == pytest.approx(
        [0.001, 0.001, 0.0005, 0.00025])
    saved = torch.load(tmp_path / "run" / "last.ckpt", weights_only=True)["optimizer"]
    assert saved["param_groups"][0]["alpha"] == 0.9
    assert {"square_avg", "step"} <= set(saved["state"][0])
    assert result.val_top1 > 0.8  # it learns


def test_plateau_divides_the_rate_when_the_validation_loss_stalls(tmp_path):
    """AlexNet's "divide by 10 when the validation error stops improving": with
    labels at random, validation loss stops falling, and each epoch that does not
    beat the best so far (by torch's default relative threshold, 1e-4) divides the
    next epoch's rate by the factor, 0.5 here (patience 1: after two such epochs in
    a row)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16
    noise = torch.randint(0, 10, (len(images),), generator=torch.Generator().manual_seed(0))
    pairs = list(zip(images, noise.tolist()))
    spec = cnnspec.load(TINY.replace("fc: linear classes", """fc: linear classes
    train { optimizer: sgd lr=0.5 momentum=0.9
            schedule: plateau factor=0.5 patience=1
            epochs: 8
            batch: 64 }"""))
    result = cnnspec.train(spec, data=(pairs[:1200], pairs[1200:]),
                           out=tmp_path / "run", verbose=False)
    rates = [r["lr"] for r in result.history]
    best, bad, expected = float("inf"), 0, [0.5]
    for row in result.history[:-1]:
        improved = row["val_loss"] < best * (1 - 1e-4)
        best, bad = (row["val_loss"], 0) if improved else (best, bad + 1)
        if bad > 1:
            expected.append(expected[-1] * 0.5)
            bad = 0
        else:
            expected.append(expected[-1])
    assert rates == pytest.approx(expected)
    assert rates[-1] < 0.5  # the rate was divided at least once


def test_cosine_after_warmup_follows_the_formula():
    """Linear warmup from 1% of the rate over `warmup_epochs`, then cosine annealing
    over the remaining epochs: lr_e = lr/2 (1 + cos(pi (e - w) / (E - w)))."""
    from cnnspec.training.errors import UsageError
    from cnnspec.training.schedule import make_schedule

    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    config = _config(schedule={"kind": "cosine", "warmup_epochs": 2, "per": "epoch"})
    schedule = make_schedule(optimizer, config, steps_per_epoch=5)
    rates = []
    for _ in range(6):
        for _ in range(5):
            rates.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            schedule.after_step()
        schedule.after_epoch(0.0)
    warm = [0.1 * 0.01, 0.1 * (0.01 + 0.99 / 2)]
    cosine = [0.05 * (1 + math.cos(math.pi * k / 4)) for k in range(4)]
    assert rates == pytest.approx([rate for rate in warm + cosine for _ in range(5)])
    # a warmup as long as the run is refused, naming both lengths
    too_long = _config(schedule={"kind": "cosine", "warmup_epochs": 9})
    with pytest.raises(UsageError, match="9 epochs"):
        make_schedule(optimizer, too_long, steps_per_epoch=5)


def test_ema_is_an_exponential_average_of_weights_and_statistics():
    """`ema: d`: after the first update (a copy), each update moves the average by
    (1 - d) of the way to the model, batchnorm statistics included."""
    from cnnspec.training.ema import make_ema

    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2))
    ema = make_ema(model, _config(ema=0.9))
    with torch.no_grad():
        model[0].weight.fill_(1.0)
        model[1].running_mean.fill_(1.0)
        ema.after_step(0, 1)  # the first one copies
        model[0].weight.fill_(3.0)
        model[1].running_mean.fill_(3.0)
        ema.after_step(1, 1)
    assert torch.allclose(ema.module[0].weight, torch.full((2, 2), 0.9 * 1 + 0.1 * 3))
    assert torch.allclose(ema.module[1].running_mean, torch.full((2,), 1.2))


def test_the_head_is_found_and_gets_its_rate_when_nested():
    """`--lr-head`: the classifier is the layer whose size follows `classes`, also
    inside a labelled group (`classifier.1`); only its parameters get the rate."""
    from cnnspec.training.weights import head_layers

    spec = cnnspec.load("""
network n(classes = 3) {
    input 1x4x4
    conv1: conv 2 k=3
    flatten
    classifier: { dropout 0.1; linear classes }
}
""")
    head = head_layers(spec)
    assert head == {"classifier.1"}
    model = cnnspec.build(spec)
    body, classifier = parameter_groups(model, _config(lr_head=0.5), spec.layer_names,
                                        frozenset(head))
    names = {id(p): n for n, p in model.named_parameters()}
    assert {names[id(p)] for p in classifier["params"]} == {"classifier.1.weight",
                                                            "classifier.1.bias"}
    assert classifier["lr"] == 0.5 and body["lr"] == 0.1
    assert {names[id(p)] for p in body["params"]} == {"conv1.weight", "conv1.bias"}
    # without `classes`, the head is the last layer with parameters
    plain = cnnspec.load("network m {\n input 1x4x4\n a: conv 2 k=3\n flatten\n"
                         " b: linear 5\n c: linear 4\n relu\n}\n")
    assert head_layers(plain) == {"c"}


def test_frozen_batchnorm_1d_keeps_its_statistics_in_train_mode():
    from cnnspec.backends.torch_backend import FrozenBatchNorm1d
    from cnnspec.training.finetune import freeze

    spec = cnnspec.load("network n {\n input 6\n fc: linear 4\n bn: batchnorm\n"
                        " out: linear 2\n}\n")
    model = cnnspec.build(spec)
    assert freeze(model, spec, ["bn"]) == ["bn"]
    assert type(model.bn) is FrozenBatchNorm1d and not model.bn.weight.requires_grad
    before = model.bn.running_mean.clone()
    model.train()
    model(torch.randn(8, 6))
    assert torch.equal(model.bn.running_mean, before) and not model.bn.training


def test_weight_decay_can_skip_norm_and_bias():
    spec = cnnspec.load(SPECS / "resnet18.cnn")
    model = cnnspec.build(spec)
    decayed, plain = parameter_groups(
        model, _config(weight_decay=1e-4, decay_norm_bias=False), spec.layer_names)
    assert decayed["weight_decay"] == 1e-4 and plain["weight_decay"] == 0.0
    names = {id(p): n for n, p in model.named_parameters()}
    modules = dict(model.named_modules())

    def owner(parameter):
        return modules[names[id(parameter)].rpartition(".")[0]]

    assert all(isinstance(owner(p), torch.nn.BatchNorm2d)
               or names[id(p)].endswith(".bias") for p in plain["params"])
    assert all(isinstance(owner(p), (torch.nn.Conv2d, torch.nn.Linear))
               and names[id(p)].endswith(".weight") for p in decayed["params"])
    assert len(decayed["params"]) == 21  # 20 convolutions and the classifier
    assert len(decayed["params"]) + len(plain["params"]) == len(names)


def test_googlenet_aux_losses_reach_the_aux_heads():
    """In training, the loss is main + 0.3 * (aux1 + aux2): the aux classifiers get
    gradients. In eval they are off the graph: no gradient at all."""
    torch.manual_seed(0)
    spec = cnnspec.load(SPECS / "googlenet.cnn", classes=4)
    model = cnnspec.build(spec)
    config = resolve(spec.recipe, batch=2, epochs=1)
    trainer = Trainer(model, None, torch.device("cpu"), config, model.aux_weights)
    assert model.aux_weights == {"aux1": 0.3, "aux2": 0.3}
    images, labels = torch.randn(2, 3, 224, 224), torch.tensor([0, 3])
    model.train()
    loss, logits = trainer.loss(model(images), labels)
    loss.backward()
    for head in ("aux1", "aux2"):
        grad = getattr(model, head).fc2.weight.grad
        assert grad is not None and grad.abs().sum() > 0
    model.zero_grad(set_to_none=True)
    model.eval()
    loss, _ = trainer.loss(model(images), labels)
    loss.backward()
    assert model.aux1.fc2.weight.grad is None and model.aux2.fc2.weight.grad is None
    assert model.fc.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("options", [
    {"amp": "bf16", "channels_last": True},
    {"amp": "fp16"},  # through a GradScaler
    {"compile": True},
], ids=["bf16-channels-last", "fp16-scaler", "compile"])
def test_mixed_precision_channels_last_and_compile_train(tmp_path, options):
    """The GPU options run on the CPU too (autocast, GradScaler, torch.compile)."""
    result = cnnspec.train(TINY, data="synthetic:256", out=tmp_path / "run", epochs=2,
                           batch=32, lr=0.01, verbose=False, **options)
    losses = [row["train_loss"] for row in result.history]
    assert all(math.isfinite(x) for x in losses) and losses[1] < losses[0]
    assert result.model.conv1.weight.dtype == torch.float32  # master weights stay fp32


class _Terminal:
    """A text stream that says it is a terminal, as rich checks."""

    def __init__(self):
        self.parts = []

    def write(self, text):
        self.parts.append(text)

    def flush(self):
        pass

    def isatty(self):
        return True


def test_a_terminal_gets_a_live_bar(tmp_path):
    from cnnspec.training.progress import Reporter

    terminal = _Terminal()
    cnnspec.train(TINY, data="digits", out=tmp_path / "a", epochs=1,
                  reporter=Reporter(terminal))
    shown = "".join(terminal.parts)
    assert "epoch 1/1" in shown and "img/s" in shown and "\x1b[" in shown
    assert "best epoch: 1 of 1" in shown


@pytest.mark.parametrize("channels, mean, std", [(3, 0.485, 0.229), (1, 0.5, 0.5)])
def test_normalize_uses_imagenet_statistics_for_colour_only(channels, mean, std):
    """`augment: normalize`: ImageNet's mean and std (torchvision's) for 3 channels,
    0.5 and 0.5 otherwise; the first channel of a grey 128 image shows which."""
    from torchvision.transforms import v2

    from cnnspec.training.transforms import pipelines

    spec = cnnspec.load(f"network n {{\n input {channels}x8x8\n flatten\n linear 2\n"
                        " train { augment: normalize }\n}\n")
    config = resolve(spec.graph.recipe)
    _, val, _ = pipelines((channels, 8, 8), (channels, 8, 8), config.augment)
    image = torch.full((channels, 8, 8), 128, dtype=torch.uint8)
    out = v2.Compose(val)(image)
    assert out[0, 0, 0].item() == pytest.approx((128 / 255 - mean) / std, abs=1e-6)
