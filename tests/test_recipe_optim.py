"""Optimizers, schedules, parameter groups, EMA and the repeated-augmentation
sampler against what torchvision's reference train.py builds, re-built here from
torch/torchvision primitives (and from the reference's documented definitions),
not from cnnspec code."""

import math

import pytest
import torch
import torchvision
from torch.optim import lr_scheduler
from torch.optim.swa_utils import AveragedModel
from torchvision.ops._utils import split_normalization_params

import cnnspec
from cnnspec.backends.torch_backend import to_torch
from cnnspec.training.config import RunConfig, resolve
from cnnspec.training.ema import make_ema
from cnnspec.training.errors import UsageError
from cnnspec.training.optim import make_optimizer
from cnnspec.training.param_groups import describe_groups, parameter_groups
from cnnspec.training.sampling import RepeatedAugmentSampler
from cnnspec.training.schedule import describe, lr_curve, make_schedule
from conftest import SPECS


def config(**entries) -> RunConfig:
    values = {"optimizer": {"kind": "sgd", "lr": 0.5, "momentum": 0.9},
              "schedule": {"kind": "constant"}, "epochs": 8, "batch": 32}
    return RunConfig.model_validate({**values, **entries})


def one_parameter_sgd(lr=0.5, momentum=0.9):
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr, momentum=momentum)


def stepped_rates(optimizer, scheduler, epochs, steps, per_iteration):
    """The rate at every iteration, stepping `scheduler` as a training loop does."""
    rates = []
    for _ in range(epochs):
        for _ in range(steps):
            rates.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            if per_iteration:
                scheduler.step()
        if not per_iteration:
            scheduler.step()
    return rates


# -- (a) schedules --------------------------------------------------------------

def test_resnet50_v2_schedule_is_the_references_at_every_iteration():
    """--lr 0.5 --lr-scheduler cosineannealinglr --lr-warmup-epochs 5
    --lr-warmup-method linear --lr-warmup-decay 0.01 (epochs scaled to 8), stepped
    per epoch as the reference does: the same rates, exactly."""
    epochs, warm, steps = 8, 5, 3
    optimizer = one_parameter_sgd(0.5)
    main = lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs - warm, eta_min=0.0)
    ramp = lr_scheduler.LinearLR(optimizer, start_factor=0.01, total_iters=warm)
    reference = lr_scheduler.SequentialLR(optimizer, [ramp, main], milestones=[warm])
    expected = stepped_rates(optimizer, reference, epochs, steps, per_iteration=False)

    run = config(schedule={"kind": "cosine", "per": "epoch"}, epochs=epochs,
                 warmup={"kind": "linear", "epochs": warm, "start_factor": 0.01})
    assert lr_curve(run, steps) == expected
    # and the LRSchedule stepped as the loop steps it gives the same
    optimizer = one_parameter_sgd(0.5)
    schedule = make_schedule(optimizer, run, steps)
    assert not schedule.per_iteration
    rates = []
    for _ in range(epochs):
        for _ in range(steps):
            rates.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            schedule.after_step()
        schedule.after_epoch(1.0)
    assert rates == expected
    assert expected[0] == pytest.approx(0.005) and max(expected) == pytest.approx(0.5)
    # the older `cosine warmup_epochs=5` is the same warmup
    legacy = config(schedule={"kind": "cosine", "per": "epoch", "warmup_epochs": warm})
    assert lr_curve(legacy, steps) == expected
    assert describe(run) == ("linear warmup 5 epochs from 0.01x, then cosine to 0, "
                             "stepped every epoch")


def test_per_iteration_warmup_and_cosine_follow_the_closed_form():
    epochs, steps, warm, base, floor, start = 6, 5, 2, 0.4, 0.01, 0.1
    run = config(optimizer={"kind": "sgd", "lr": base}, epochs=epochs,
                 schedule={"kind": "cosine", "lr_min": floor},
                 warmup={"kind": "linear", "epochs": warm, "start_factor": start})
    total, ramp = epochs * steps, warm * steps
    expected = [base * (start + (1 - start) * i / ramp) if i < ramp else
                floor + (base - floor) * (1 + math.cos(math.pi * (i - ramp)
                                                       / (total - ramp))) / 2
                for i in range(total)]
    assert lr_curve(run, steps) == pytest.approx(expected, rel=1e-9, abs=1e-12)
    assert describe(run).endswith("stepped every iteration")


def test_fractional_warmup_is_rounded_to_iterations():
    """warmup 1.5 epochs at 4 steps an epoch: 6 iterations of ramp; a constant
    warmup holds start_factor x lr for them."""
    run = config(schedule={"kind": "cosine"}, epochs=4,
                 warmup={"kind": "linear", "epochs": 1.5, "start_factor": 0.25})
    rates = lr_curve(run, 4)
    assert rates[:7] == pytest.approx([0.5 * (0.25 + 0.75 * i / 6) for i in range(7)])
    held = config(schedule={"kind": "constant"}, epochs=4,
                  warmup={"kind": "constant", "epochs": 1.5, "start_factor": 0.25})
    assert lr_curve(held, 4) == pytest.approx([0.125] * 6 + [0.5] * 10)
    assert describe(held) == ("constant warmup 1.5 epochs at 0.25x, then constant, "
                              "stepped every iteration")
    # per epoch, a warmup must be whole epochs
    per_epoch = config(schedule={"kind": "cosine", "per": "epoch"}, epochs=4,
                       warmup={"kind": "linear", "epochs": 1.5})
    with pytest.raises(UsageError, match="whole epochs"):
        lr_curve(per_epoch, 4)


def test_a_warmup_not_shorter_than_the_run_is_refused():
    for epochs in (3, 2):
        run = config(schedule={"kind": "cosine"}, epochs=epochs,
                     warmup={"kind": "linear", "epochs": 3})
        with pytest.raises(UsageError, match="warmup of 3 epochs leaves nothing of a "
                           f"{epochs}-epoch run"):
            make_schedule(one_parameter_sgd(), run, 10)
    # rounded to iterations, 2.9 of 3 epochs at 3 steps fills the run too
    run = config(schedule={"kind": "cosine"}, epochs=3,
                 warmup={"kind": "linear", "epochs": 2.9})
    with pytest.raises(UsageError, match="leaves nothing of a 3-epoch run"):
        make_schedule(one_parameter_sgd(), run, 3)
    with pytest.raises(UsageError, match="takes no warmup"):
        make_schedule(one_parameter_sgd(), config(
            schedule={"kind": "plateau"}, warmup={"kind": "linear", "epochs": 1}), 3)


def test_exponential_per_iteration_lands_on_the_per_epoch_rates():
    """gamma per epoch is gamma ** (1/steps) per iteration: at each epoch's first
    step the rate is torch's ExponentialLR stepped per epoch."""
    steps, epochs = 4, 5
    run = config(schedule={"kind": "exponential", "gamma": 0.8}, epochs=epochs)
    rates = lr_curve(run, steps)
    optimizer = one_parameter_sgd()
    per_epoch = stepped_rates(optimizer, lr_scheduler.ExponentialLR(optimizer, 0.8),
                              epochs, steps, per_iteration=False)
    assert rates[::steps] == pytest.approx(per_epoch[::steps], rel=1e-12)
    assert rates == pytest.approx([0.5 * 0.8 ** (i / steps) for i in range(20)],
                                  rel=1e-12)
    exact = config(schedule={"kind": "exponential", "gamma": 0.8, "per": "epoch"},
                   epochs=epochs)
    assert lr_curve(exact, steps) == per_epoch


def test_poly_and_step_schedules_per_iteration():
    steps, epochs = 3, 4
    poly = config(schedule={"kind": "poly", "power": 2.0}, epochs=epochs)
    total = steps * epochs
    assert lr_curve(poly, steps) == pytest.approx(
        [0.5 * (1 - i / total) ** 2 for i in range(total)], rel=1e-9, abs=1e-15)
    # with a warmup, poly runs over the rest of the run
    warmed = config(schedule={"kind": "poly"}, epochs=epochs,
                    warmup={"kind": "linear", "epochs": 1, "start_factor": 0.5})
    rates = lr_curve(warmed, steps)
    assert rates[3:] == pytest.approx([0.5 * (1 - k / 9) for k in range(9)])
    # step_size and milestones are epochs, also when stepped every iteration
    step = config(schedule={"kind": "step", "step_size": 2, "gamma": 0.5,
                            "per": "iteration"}, epochs=epochs)
    assert lr_curve(step, steps) == pytest.approx([0.5] * 6 + [0.25] * 6)
    multi = config(schedule={"kind": "multistep", "milestones": (1, 3), "gamma": 0.1,
                             "per": "iteration"}, epochs=epochs)
    assert lr_curve(multi, steps) == pytest.approx([0.5] * 3 + [0.05] * 6 + [0.005] * 3)


@pytest.mark.parametrize("optimizer,cycles", [
    ({"kind": "sgd", "lr": 0.3, "momentum": 0.9}, True),
    ({"kind": "sgd", "lr": 0.3}, False),
    ({"kind": "adamw", "lr": 0.3}, True)])
def test_onecycle_is_torchs_over_the_whole_run(optimizer, cycles):
    steps, epochs = 5, 3
    run = config(optimizer=optimizer, epochs=epochs,
                 schedule={"kind": "onecycle", "pct_start": 0.25, "div_factor": 10,
                           "final_div_factor": 100})
    model = torch.nn.Linear(2, 2)
    built = make_optimizer(model, run, ["0"])
    schedule = make_schedule(built, run, steps)
    assert schedule.per_iteration
    # what the reference would build: OneCycleLR over all the steps
    twin = (torch.optim.SGD(torch.nn.Linear(2, 2).parameters(), lr=0.3,
                            momentum=run.optimizer.momentum)
            if run.optimizer.kind == "sgd" else
            torch.optim.AdamW(torch.nn.Linear(2, 2).parameters(), lr=0.3))
    reference = lr_scheduler.OneCycleLR(twin, max_lr=0.3, total_steps=steps * epochs,
                                        pct_start=0.25, div_factor=10,
                                        final_div_factor=100, cycle_momentum=cycles)
    momentum = "betas" if run.optimizer.kind == "adamw" else "momentum"
    for _ in range(steps * epochs):
        assert built.param_groups[0]["lr"] == twin.param_groups[0]["lr"]
        assert built.param_groups[0][momentum] == twin.param_groups[0][momentum]
        built.step(), twin.step()
        schedule.after_step(), reference.step()
    if not cycles:  # SGD without momentum keeps none
        assert built.param_groups[0]["momentum"] == 0


def test_plateau_steps_per_epoch_with_the_validation_loss():
    run = config(schedule={"kind": "plateau", "factor": 0.5, "patience": 0})
    optimizer = one_parameter_sgd(0.5)
    schedule = make_schedule(optimizer, run, 10)
    assert not schedule.per_iteration
    schedule.after_step()
    assert optimizer.param_groups[0]["lr"] == 0.5
    for loss in (1.0, 2.0):
        schedule.after_epoch(loss)
    assert optimizer.param_groups[0]["lr"] == 0.25
    assert lr_curve(run, 2) == [0.5] * 16  # its curve: constant, as documented


def test_state_round_trip_and_fast_forward():
    """A schedule saved mid-run and loaded into a fresh one goes on with the same
    rates; fast_forward(e) lands where e epochs of steps land."""
    run = config(schedule={"kind": "cosine"}, epochs=5,
                 warmup={"kind": "linear", "epochs": 1})
    steps = 4
    curve = lr_curve(run, steps)
    optimizer = one_parameter_sgd()
    schedule = make_schedule(optimizer, run, steps)
    for _ in range(6):
        optimizer.step()
        schedule.after_step()
    saved = schedule.state_dict()
    fresh_optimizer = one_parameter_sgd()
    fresh = make_schedule(fresh_optimizer, run, steps)
    fresh.load_state_dict(saved)
    fresh_optimizer.param_groups[0]["lr"] = optimizer.param_groups[0]["lr"]
    rates = []
    for _ in range(14):
        rates.append(fresh_optimizer.param_groups[0]["lr"])
        fresh_optimizer.step()
        fresh.after_step()
    assert rates == pytest.approx(curve[6:])
    forwarded_optimizer = one_parameter_sgd()
    make_schedule(forwarded_optimizer, run, steps).fast_forward(2)
    assert forwarded_optimizer.param_groups[0]["lr"] == pytest.approx(curve[8])


# -- (b) parameter groups --------------------------------------------------------

def reference_set_weight_decay(model, weight_decay, norm_weight_decay,
                               bias_weight_decay):
    """The reference's set_weight_decay with custom key ("bias", decay), re-derived
    from its documented behaviour: walk the modules; a parameter whose own name is
    the key goes to that group, else a normalisation module's to "norm" (when its
    decay is set), else "other"; groups other, norm, bias, empty ones left out."""
    norms = (torch.nn.modules.batchnorm._BatchNorm, torch.nn.LayerNorm,
             torch.nn.GroupNorm, torch.nn.modules.instancenorm._InstanceNorm,
             torch.nn.LocalResponseNorm)
    groups = {"other": [], "norm": [], "bias": []}
    decays = {"other": weight_decay, "norm": norm_weight_decay, "bias": bias_weight_decay}
    for prefix, module in model.named_modules():
        for name, _ in module.named_parameters(recurse=False):
            full = f"{prefix}.{name}" if prefix else name
            if bias_weight_decay is not None and name == "bias":
                groups["bias"].append(full)
            elif norm_weight_decay is not None and isinstance(module, norms):
                groups["norm"].append(full)
            else:
                groups["other"].append(full)
    return [(names, decays[key]) for key, names in groups.items() if names]


def grouped_names(model, groups):
    names = {id(p): n for n, p in model.named_parameters()}
    return [([names[id(p)] for p in group["params"]], group["weight_decay"])
            for group in groups]


@pytest.fixture(scope="module")
def resnet50s():
    spec = cnnspec.load(SPECS / "resnet50.cnn")
    ours = to_torch(spec)
    theirs = torchvision.models.resnet50()
    assert [n for n, _ in ours.named_parameters()] == \
        [n for n, _ in theirs.named_parameters()]
    return {"spec": (ours, spec.layer_names),
            "torchvision": (theirs, [n for n, _ in theirs.named_modules() if n])}


@pytest.mark.parametrize("which", ["torchvision", "spec"])
def test_norm_weight_decay_is_torchvisions_split(resnet50s, which):
    """ResNet-50 V2's `--norm-weight-decay 0.0`: the norm group is exactly
    torchvision's split_normalization_params, the rest decays."""
    model, layers = resnet50s[which]
    run = config(weight_decay=2e-5, norm_weight_decay=0.0)
    groups = parameter_groups(model, run, layers)
    norm, other = split_normalization_params(resnet50s["torchvision"][0])
    theirs = resnet50s["torchvision"][0]
    names = {id(p): n for n, p in theirs.named_parameters()}
    assert grouped_names(model, groups) == [([names[id(p)] for p in other], 2e-5),
                                            ([names[id(p)] for p in norm], 0.0)]
    assert [g["name"] for g in groups] == ["other", "norm"]
    assert all(g["lr"] == 0.5 for g in groups)


@pytest.mark.parametrize("which", ["torchvision", "spec"])
def test_bias_key_first_then_norm_as_the_reference(resnet50s, which):
    model, layers = resnet50s[which]
    run = config(weight_decay=1e-4, norm_weight_decay=0.0, bias_weight_decay=1e-5)
    groups = parameter_groups(model, run, layers)
    expected = reference_set_weight_decay(resnet50s["torchvision"][0], 1e-4, 0.0, 1e-5)
    assert grouped_names(model, groups) == expected
    assert [g["name"] for g in groups] == ["other", "norm", "bias"]
    # batchnorm biases are in the bias group, not the norm group
    assert "bn1.bias" in expected[2][0] and "bn1.weight" in expected[1][0]
    # bias decay alone: norm layers' weights decay as the rest
    alone = parameter_groups(model, config(weight_decay=1e-4, bias_weight_decay=0.0),
                             layers)
    assert grouped_names(model, alone) == reference_set_weight_decay(
        resnet50s["torchvision"][0], 1e-4, None, 0.0)
    rows = describe_groups(groups)
    assert sum(r["parameters"] for r in rows) == sum(p.numel() for p in model.parameters())
    assert rows[2]["tensors"] == len(expected[2][0])


def test_older_switch_takes_decay_off_one_dimensional_parameters():
    model = torchvision.models.resnet18()
    run = config(weight_decay=1e-4, decay_norm_bias=False)
    decayed, plain = grouped_names(model, parameter_groups(model, run, []))
    assert decayed[1] == 1e-4 and plain[1] == 0.0
    shapes = dict(model.named_parameters())
    assert all(shapes[n].ndim > 1 for n in decayed[0])
    assert all(shapes[n].ndim == 1 for n in plain[0])
    # without decay there is one group
    assert len(parameter_groups(model, config(decay_norm_bias=False), [])) == 1


def test_lr_and_decay_multipliers_by_layer_last_entry_wins():
    model = torchvision.models.resnet18()
    layers = [n for n, _ in model.named_modules() if n]
    run = config(weight_decay=1e-4, norm_weight_decay=0.0,
                 lr_mult=(("layer4", 0.1), ("layer4.1", 0.5), ("fc", 10.0)),
                 decay_mult=(("layer3.*", 2.0),))
    groups = parameter_groups(model, run, layers)

    def expected(name):
        layer = name.rpartition(".")[0]
        lr = 0.5 * (0.5 if layer.startswith("layer4.1.") else
                    0.1 if layer.startswith("layer4.") else
                    10.0 if layer == "fc" else 1.0)
        norm = isinstance(dict(model.named_modules())[layer], torch.nn.BatchNorm2d)
        decay = 0.0 if norm else 1e-4 * (2.0 if layer.startswith("layer3.") else 1.0)
        return lr, decay

    names = {id(p): n for n, p in model.named_parameters()}
    seen = []
    for group in groups:
        for p in group["params"]:
            assert (group["lr"], group["weight_decay"]) == \
                pytest.approx(expected(names[id(p)])), names[id(p)]
            seen.append(names[id(p)])
    assert sorted(seen) == sorted(names.values())
    # one group per (kind, lr entry, decay entry) that has parameters; fc has no norm
    assert [g["name"] for g in groups] == [
        "other", "layer3.* decay x2", "layer4 x0.1", "layer4.1 x0.5", "fc x10",
        "norm", "norm, layer3.* decay x2", "norm, layer4 x0.1", "norm, layer4.1 x0.5"]


def test_a_layer_pattern_matching_nothing_is_refused():
    model = torchvision.models.resnet18()
    layers = [n for n, _ in model.named_modules() if n]
    with pytest.raises(UsageError, match="lr_mult layer5 matches no layer.*layer4"):
        parameter_groups(model, config(lr_mult=(("layer5", 0.1),)), layers)
    with pytest.raises(UsageError, match="decay_mult relu"):
        parameter_groups(model, config(decay_mult=(("relu", 0.0),)), layers)


def test_only_trainable_parameters_and_the_heads_rate():
    model = torchvision.models.resnet18()
    model.layer1.requires_grad_(False)
    run = config(lr_head=0.01, lr_mult=(("layer1", 3.0),))  # frozen: harmless
    groups = parameter_groups(model, run, [], head=frozenset({"fc"}))
    names = {id(p): n for n, p in model.named_parameters()}
    assert [g["name"] for g in groups] == ["other", "head"]
    assert groups[1]["lr"] == 0.01 and groups[0]["lr"] == 0.5
    assert [names[id(p)] for p in groups[1]["params"]] == ["fc.weight", "fc.bias"]
    assert not any(names[id(p)].startswith("layer1.") for p in groups[0]["params"])


# -- (e) optimizers ---------------------------------------------------------------

@pytest.mark.parametrize("entry,cls,settings", [
    ({"kind": "sgd", "lr": 0.1, "momentum": 0.9, "nesterov": True}, torch.optim.SGD,
     {"momentum": 0.9, "nesterov": True}),
    ({"kind": "adam", "lr": 1e-3, "betas": (0.8, 0.99), "eps": 1e-6},
     torch.optim.Adam, {"betas": (0.8, 0.99), "eps": 1e-6}),
    ({"kind": "adamw", "lr": 1e-3, "betas": (0.9, 0.95)}, torch.optim.AdamW,
     {"betas": (0.9, 0.95), "eps": 1e-8}),
    ({"kind": "nadam", "lr": 2e-3, "betas": (0.85, 0.98), "eps": 1e-7},
     torch.optim.NAdam, {"betas": (0.85, 0.98), "eps": 1e-7}),
    ({"kind": "radam", "lr": 2e-3, "betas": (0.7, 0.9), "eps": 1e-5},
     torch.optim.RAdam, {"betas": (0.7, 0.9), "eps": 1e-5}),
    ({"kind": "rmsprop", "lr": 0.064, "alpha": 0.9, "momentum": 0.9, "eps": 0.0316},
     torch.optim.RMSprop, {"alpha": 0.9, "momentum": 0.9, "eps": 0.0316})])
def test_each_optimizer_is_the_torch_class_with_its_settings(entry, cls, settings):
    model = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.BatchNorm1d(3))
    run = config(optimizer=entry, weight_decay=1e-4, norm_weight_decay=0.0)
    optimizer = make_optimizer(model, run, ["0", "1"])
    assert type(optimizer) is cls
    for group in optimizer.param_groups:
        assert group["lr"] == entry["lr"]
        assert {k: group[k] for k in settings} == settings
    assert [g["weight_decay"] for g in optimizer.param_groups] == [1e-4, 0.0]
    with pytest.raises(UsageError, match="nesterov"):
        make_optimizer(model, config(optimizer={"kind": "sgd", "lr": 0.1,
                                                "nesterov": True}), [])


# -- (c) EMA ----------------------------------------------------------------------

def hand_average(snapshots, decay, every, warmup_epochs):
    """The documented EMA, by hand: update at steps 0, k, 2k... of each epoch; the
    first update (and every update while the count is 0) copies; during the warmup
    epochs (0-based epoch < warmup) the count goes back to 0 after each update."""
    average, count = None, 0
    for epoch, steps in enumerate(snapshots):
        for step, weights in enumerate(steps):
            if step % every:
                continue
            average = {k: w.clone() if count == 0 else decay * average[k] + (1 - decay) * w
                       for k, w in weights.items()}
            count = 0 if epoch < warmup_epochs else count + 1
    return average


@pytest.mark.parametrize("adjust,every,warmup", [(True, 2, 1), (False, 1, 0),
                                                 (True, 3, None)])
def test_ema_weights_are_the_documented_average(adjust, every, warmup):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3))
    run = config(ema={"decay": 0.99, "steps": every, "adjust": adjust,
                      "warmup_epochs": warmup},
                 warmup={"kind": "linear", "epochs": 2}, schedule={"kind": "cosine"},
                 batch=64, epochs=40)
    ema = make_ema(model, run, world_size=2)
    decay = 1 - min(1.0, 0.01 * 64 * every / 40) if adjust else 0.99
    assert ema.decay == pytest.approx(decay)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    snapshots = []
    for epoch in range(1, 4):
        snapshots.append([])
        for step in range(5):
            loss = (model(torch.randn(8, 4)) - torch.randn(8, 3)).pow(2).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            ema.after_step(step, epoch)
            snapshots[-1].append({k: v.detach().clone().float()
                                  for k, v in model.state_dict().items()
                                  if v.is_floating_point()})
    # warmup default: the lr warmup's 2 epochs
    expected = hand_average(snapshots, decay, every, 2 if warmup is None else warmup)
    averaged = ema.module.state_dict()
    for key, value in expected.items():
        assert torch.allclose(averaged[key], value, atol=1e-6), key
    # and it is not simply the current weights
    assert not torch.allclose(averaged["0.weight"], snapshots[-1][-1]["0.weight"])
    # a saved average loads into a fresh one
    twin = make_ema(model, run, world_size=2)
    twin.load_state_dict(ema.state_dict())
    assert torch.equal(twin.module[0].weight, ema.module[0].weight)
    assert isinstance(ema.average, AveragedModel)


def test_ema_flag_and_adjustment_bounds():
    """`--ema 0.999`: that decay every step; an adjustment over 1 clamps to a copy."""
    run = resolve(None, ema=0.999)
    ema = make_ema(torch.nn.Linear(2, 2), run, 1)
    assert (ema.decay, ema.steps, ema.warmup_epochs) == (0.999, 1, 0)
    assert make_ema(torch.nn.Linear(2, 2), config(), 1) is None
    big = config(ema={"decay": 0.9, "adjust": True}, batch=1024, epochs=2)
    assert make_ema(torch.nn.Linear(2, 2), big, 8).decay == 0.0


# -- (d) repeated augmentation ------------------------------------------------------

def reference_ra_indices(length, num_replicas, rank, seed, epoch, reps, shuffle=True):
    """torchvision's RASampler as its docs and source define it, re-derived."""
    if shuffle:
        generator = torch.Generator()
        generator.manual_seed(seed + epoch)
        order = torch.randperm(length, generator=generator).tolist()
    else:
        order = list(range(length))
    per_replica = math.ceil(length * reps / num_replicas)
    total = per_replica * num_replicas
    repeated = [i for i in order for _ in range(reps)]
    repeated += repeated[:total - len(repeated)]
    mine = repeated[rank:total:num_replicas]
    return mine[:math.floor(length // 256 * 256 / num_replicas)]


@pytest.mark.parametrize("replicas", [1, 2])
def test_sampler_is_the_references_for_a_multiple_of_256(replicas):
    data = range(512)
    for rank in range(replicas):
        sampler = RepeatedAugmentSampler(data, replicas, rank, seed=7, reps=3)
        for epoch in (1, 2):
            sampler.set_epoch(epoch)
            indices = list(sampler)
            assert indices == reference_ra_indices(512, replicas, rank, 7, epoch, 3)
            assert len(sampler) == len(indices) == 512 // replicas
        assert list(sampler) != reference_ra_indices(512, replicas, rank, 7, 1, 3)
    unshuffled = RepeatedAugmentSampler(data, replicas, 0, seed=7, reps=3, shuffle=False)
    assert list(unshuffled) == reference_ra_indices(512, replicas, 0, 7, 0, 3, False)


def test_sampler_sends_the_copies_to_different_processes_and_keeps_small_sets():
    # 3 processes, 3 repetitions: each image once on each process
    shares = [list(RepeatedAugmentSampler(range(768), 3, rank, 0, 3)) for rank in range(3)]
    assert shares[0] == shares[1] == shares[2] and len(set(shares[0])) == 256
    # a set under 256 images: the reference keeps nothing, this keeps len / replicas
    assert reference_ra_indices(100, 2, 0, 0, 0, 3) == []
    sampler = RepeatedAugmentSampler(range(100), 2, 0, 0, 3)
    assert len(sampler) == 50
    generator = torch.Generator().manual_seed(0)
    order = torch.randperm(100, generator=generator).tolist()
    repeated = [i for i in order for _ in range(3)]
    assert list(sampler) == repeated[0::2][:50]


def test_the_sampler_refuses_a_rank_outside_the_processes():
    with pytest.raises(ValueError, match="rank 2 is not one of 2 processes"):
        RepeatedAugmentSampler(range(8), 2, 2, seed=0, reps=2)
