"""What a user relies on when training a compiled module.

train()/eval() switch dropout, batchnorm, drop-path and FractalNet's mean join;
`build` honours dtype and memory_format; autocast, torch.compile, torch.fx and
torch.export accept the module; SGD on LeNet-5 learns. Small inputs throughout:
the whole file runs in well under a minute on two cores."""

import pytest
import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

import cnnspec
from conftest import SPECS

SMALL = """
network small(classes = 3) {
    input 4x8x8
    conv1: conv 8 k=3 p=1 bias=false
    bn1:   batchnorm
    relu
    pool:  maxpool 2                      -> 8x4x4
    flatten
    drop:  dropout 0.5
    fc:    linear classes                 -> classes
}
"""

DROP_PATH = """
network dp {
    input 4x5x5
    path: drop_path 0.5
}
"""

FRACTAL = """
network fractal {
    input 4x6x6
    join: mean drop_path=0.5 {
        a: conv 4 k=3 p=1
        b: { conv 4 k=3 p=1; conv 4 k=3 p=1 }
    }
}
"""


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


# ------------------------------------------------------------------ train / eval


def test_dropout_follows_train_and_eval():
    model = cnnspec.build(SMALL)
    drop = model.get_submodule("drop")
    assert isinstance(drop, nn.Dropout) and drop.p == 0.5
    x = torch.randn(16, 4, 8, 8)
    model.train()
    assert drop.training
    with torch.no_grad():
        assert not torch.equal(model(x), model(x))  # fresh masks each call
    model.eval()
    assert not drop.training
    with torch.no_grad():
        assert torch.equal(model(x), model(x))


def test_batchnorm_follows_train_and_eval():
    model = cnnspec.build(SMALL)
    bn = model.get_submodule("bn1")
    assert isinstance(bn, nn.BatchNorm2d)
    x = torch.randn(16, 4, 8, 8) * 3 + 1
    model.train()
    before = bn.running_mean.clone()
    model(x)
    assert not torch.equal(bn.running_mean, before)  # statistics updated
    assert bn.num_batches_tracked.item() == 1
    model.eval()
    after = bn.running_mean.clone()
    with torch.no_grad():
        batch = model(x)
        alone = model(x[:1])
    assert torch.equal(bn.running_mean, after)  # eval leaves them alone
    assert bn.num_batches_tracked.item() == 1
    # eval normalizes with the running statistics: a sample's output does not
    # depend on the rest of its batch (in training it does).
    torch.testing.assert_close(alone, batch[:1], rtol=0, atol=1e-5)
    model.train()
    with torch.no_grad():
        torch.manual_seed(1)
        train_batch = model(x)
        torch.manual_seed(1)
        train_alone = model(x[:2])
    assert not torch.allclose(train_alone, train_batch[:2], atol=1e-3)


def test_auxiliary_network_modes_reach_every_submodule():
    model = cnnspec.build(SPECS / "googlenet.cnn", classes=10)
    model.eval()
    assert not any(m.training for m in model.modules())
    model.train()
    assert all(m.training for m in model.modules())


def test_drop_path_is_random_in_training_and_identity_in_eval():
    model = cnnspec.build(DROP_PATH)
    x = torch.rand(64, 4, 5, 5) + 0.5  # no zeros of its own
    model.train()
    with torch.no_grad():
        y = model(x)
    zeroed = (y == 0).flatten(1).all(1)
    kept = ~zeroed
    # whole samples are dropped, the rest scaled by 1 / (1 - p)
    assert 0 < zeroed.sum() < 64
    torch.testing.assert_close(y[kept], x[kept] * 2.0)
    assert ((y != 0).flatten(1).all(1) | zeroed).all()
    with torch.no_grad():
        assert not torch.equal(model(x), y)  # a new draw per call
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x), x)


def test_mean_join_with_drop_path_is_deterministic_in_eval():
    model = cnnspec.build(FRACTAL)
    x = torch.randn(8, 4, 6, 6)
    a = model.get_submodule("join.a")
    b = [model.get_submodule(f"join.b.{i}") for i in range(2)]
    with torch.no_grad():
        branch_a, branch_b = a(x), b[1](b[0](x))
        model.eval()
        first, second = model(x), model(x)
        assert torch.equal(first, second)
        torch.testing.assert_close(first, (branch_a + branch_b) / 2)
        # in training each call keeps a random non-empty subset of the branches
        model.train()
        allowed = [branch_a, branch_b, (branch_a + branch_b) / 2]
        seen = set()
        for _ in range(40):
            y = model(x)
            matches = [i for i, z in enumerate(allowed)
                       if torch.allclose(y, z, atol=1e-6)]
            assert matches, "training output is not a mean of a subset of the branches"
            seen.add(matches[0])
        assert len(seen) > 1  # not always the same subset


GLOBAL_DROP_PATH = """
network columns {
    input 4x6x6
    a: fractal 3 global_drop_path=1.0 { conv 4 k=3 p=1; relu }
    pool: maxpool 2
    b: fractal 3 global_drop_path=1.0 { conv 4 k=3 p=1; relu }
}
"""


def _column_alone(model, column, x):
    """Column `column` of both fractals, run by hand: its layers in order, then pool."""
    for block in ("a", "b"):
        for layer in model.get_submodule(f"{block}.column{column}").children():
            x = layer(x)
        if block == "a":
            x = model.pool(x)
    return x


def test_global_drop_path_keeps_one_column_in_every_block():
    """FractalNet's global drop-path (Larsson et al. 2017, section 3.1): a batch keeps a
    single column, the same one in every block; the other columns get no gradient."""
    model = cnnspec.build(GLOBAL_DROP_PATH)
    x = torch.randn(2, 4, 6, 6)
    with torch.no_grad():
        alone = {c: _column_alone(model, c, x) for c in (1, 2, 3)}
    seen = set()
    for _ in range(30):
        model.zero_grad()
        y = model(x)
        chosen = [c for c, z in alone.items() if torch.allclose(y, z, atol=1e-6)]
        assert len(chosen) == 1, "a global batch is one column, end to end"
        seen.add(chosen[0])
        y.sum().backward()
        for name, p in model.named_parameters():
            on_path = f".column{chosen[0]}." in name
            assert (p.grad is not None) == on_path, name
    assert seen == {1, 2, 3}


def test_a_column_can_be_run_alone_in_eval():
    """The paper's table 3 evaluates single columns of a trained FractalNet."""
    model = cnnspec.build(GLOBAL_DROP_PATH).eval()
    x = torch.randn(2, 4, 6, 6)
    with torch.no_grad():
        mixed = model(x)
        for column in (1, 2, 3):
            model.global_drop_path.column = column
            torch.testing.assert_close(model(x), _column_alone(model, column, x))
        model.global_drop_path.column = None
        assert torch.equal(model(x), mixed)
    assert list(model.state_dict()) == [k for k, _ in model.named_parameters()]


def test_without_global_drop_path_a_fractal_uses_local_drop_path():
    model = cnnspec.build(GLOBAL_DROP_PATH.replace("global_drop_path=1.0",
                                                   "drop_path=0.5"))
    assert model.global_drop_path.p == 0.0
    assert model.global_drop_path() is None  # training, but never a global batch


# ------------------------------------------------------------------ dtype, layout


def test_float64_build():
    reference = cnnspec.build(SPECS / "resnet18.cnn", classes=10).eval()
    model = cnnspec.build(SPECS / "resnet18.cnn", classes=10, dtype=torch.float64)
    assert all(p.dtype == torch.float64 for p in model.parameters())
    assert all(b.dtype == torch.float64 for b in model.buffers() if b.is_floating_point())
    model.load_state_dict(reference.state_dict())
    model.eval()
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        found = model(x.double())
        expected = reference(x)
    assert found.dtype == torch.float64
    torch.testing.assert_close(found.float(), expected, rtol=1e-4, atol=1e-4)


def test_channels_last_build():
    reference = cnnspec.build(SPECS / "resnet18.cnn", classes=10).eval()
    model = cnnspec.build(SPECS / "resnet18.cnn", classes=10,
                          memory_format=torch.channels_last)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert convs and all(
        c.weight.is_contiguous(memory_format=torch.channels_last) for c in convs)
    model.load_state_dict(reference.state_dict())
    model.eval()
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        found = model(x.contiguous(memory_format=torch.channels_last))
        expected = reference(x)
    torch.testing.assert_close(found, expected, rtol=1e-4, atol=1e-4)


def test_autocast_bfloat16_resnet18():
    model = cnnspec.build(SPECS / "resnet18.cnn").eval()
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        expected = model(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            found = model(x)
    assert found.dtype == torch.bfloat16
    assert found.shape == expected.shape
    found = found.float()
    # bf16 keeps 8 bits of mantissa: loose, scale-relative agreement
    error = (found - expected).norm() / expected.norm()
    assert error < 0.02, f"relative error {error:.3f}"


# ------------------------------------------------------------------ compilers


def test_torch_compile_matches_eager():
    model = cnnspec.build(SPECS / "lenet5.cnn").eval()
    x = torch.randn(4, 1, 32, 32)
    compiled = torch.compile(model)
    with torch.no_grad():
        expected = model(x)
        found = compiled(x)
    torch.testing.assert_close(found, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["resnet18", "googlenet"])
def test_fx_symbolic_trace_matches(name):
    model = cnnspec.build(SPECS / f"{name}.cnn", classes=10).eval()
    traced = fx.symbolic_trace(model)
    assert isinstance(traced, fx.GraphModule)
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(traced(x), model(x), rtol=0, atol=0)


@pytest.mark.parametrize("name", ["resnet18", "googlenet"])
def test_torch_export_matches(name):
    model = cnnspec.build(SPECS / f"{name}.cnn", classes=10).eval()
    x = torch.randn(1, 3, 224, 224)
    program = torch.export.export(model, (x,))
    assert isinstance(program, torch.export.ExportedProgram)
    exported = program.module()
    y = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        for inp in (x, y):
            torch.testing.assert_close(exported(inp), model(inp), rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------ training


def test_sgd_on_lenet5_reduces_the_loss():
    """Twenty SGD steps on one fixed synthetic batch (ten noisy class prototypes,
    no download): the loss falls to well under half its start."""
    generator = torch.Generator().manual_seed(0)
    prototypes = torch.randn(10, 1, 32, 32, generator=generator)
    labels = torch.arange(64) % 10
    images = prototypes[labels] + 0.5 * torch.randn(64, 1, 32, 32, generator=generator)
    model = cnnspec.build(SPECS / "lenet5.cnn").train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    losses = []
    for _ in range(20):
        optimizer.zero_grad()
        loss = F.cross_entropy(model(images), labels)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert all(torch.isfinite(torch.tensor(losses)))
    assert losses[-1] < 0.5 * losses[0], losses
    assert all(p.grad is not None for p in model.parameters())
