"""Drop-path probabilities measured away from 0.5, where p and 1 - p differ.

At p = 0.5 a layer that drops with the keep probability is indistinguishable from a
correct one. Here, at p = 0.2 (EfficientNet's stochastic depth) and p = 0.8, in
train mode over many samples and passes, the fraction of dropped paths is measured,
and what is kept is checked: for `drop_path p` (stochastic depth) whole samples are
dropped and the survivors scaled by 1 / (1 - p), as torchvision's
StochasticDepth(mode="row"); for the mean join's drop-path (FractalNet's local
drop-path, docs/language.md: "each join drops each input with probability p,
keeping at least one") each pass averages the branches it kept, unscaled; for
`fractal ... global_drop_path=g`, a pass keeps a single column, chosen at random,
with probability g. Eval mode drops nothing. Both the built module and the generated
source are measured. Seeds are fixed, and every tolerance is at least five standard
deviations of the measured frequency, so the tests are deterministic and far from
their bounds.
"""

from __future__ import annotations

import ast
import itertools
import math

import pytest
import torch

import cnnspec
from cnnspec.backends.codegen import to_python

BACKENDS = ["build", "generated"]
PROBABILITIES = [0.2, 0.8]


def _model(text: str, backend: str) -> torch.nn.Module:
    spec = cnnspec.load(text)
    if backend == "build":
        return cnnspec.build(spec)
    source = to_python(spec)
    namespace: dict = {}
    exec(compile(source, "drop_path.py", "exec"), namespace)
    return namespace[ast.parse(source).body[-1].name]()


def _assert_frequency(found: float, expected: float, trials: int, what: str) -> None:
    """`found` is a frequency over `trials` independent trials of probability
    `expected`: within five standard deviations (and 0.005)."""
    sigma = math.sqrt(expected * (1 - expected) / trials)
    assert abs(found - expected) <= 5 * sigma + 0.005, \
        f"{what}: measured {found:.4f}, expected {expected:.4f} (sigma {sigma:.4f})"


# ---------------------------------------------------------------- drop_path


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("p", PROBABILITIES)
def test_drop_path_drops_a_fraction_p_of_samples_and_scales_the_rest(p, backend):
    model = _model(f"network sd {{\n input 3x2x2\n d: drop_path {p}\n}}", backend)
    model.train()
    samples, seeds = 5000, 4
    dropped = 0
    for seed in range(seeds):
        x = torch.rand(samples, 3, 2, 2) + 0.5  # no zeros of its own
        torch.manual_seed(seed)
        with torch.no_grad():
            ratio = (model(x) / x).flatten(1)
        zero = ratio == 0
        # A whole sample's path is dropped, or none of it.
        assert torch.equal(zero.any(1), zero.all(1))
        dropped += int(zero.all(1).sum())
        kept = ratio[~zero.all(1)]
        torch.testing.assert_close(kept, torch.full_like(kept, 1 / (1 - p)))
    _assert_frequency(dropped / (samples * seeds), p, samples * seeds,
                      f"fraction of samples dropped by drop_path {p}")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("p", PROBABILITIES)
def test_drop_path_in_eval_mode_is_the_identity(p, backend):
    model = _model(f"network sd {{\n input 3x2x2\n d: drop_path {p}\n}}", backend).eval()
    x = torch.randn(64, 3, 2, 2)
    with torch.no_grad():
        assert torch.equal(model(x), x)


@pytest.mark.parametrize("backend", BACKENDS)
def test_drop_path_at_the_ends_of_its_range(backend):
    x = torch.rand(256, 3, 2, 2) + 0.5
    never = _model("network sd {\n input 3x2x2\n d: drop_path 0\n}", backend).train()
    always = _model("network sd {\n input 3x2x2\n d: drop_path 1\n}", backend).train()
    with torch.no_grad():
        assert torch.equal(never(x), x)
        assert torch.equal(always(x), torch.zeros_like(x))


# ---------------------------------------------------------------- the mean join

# Three 1x1 convs with weights 1, 10 and 100 on an input of ones: every set of kept
# branches gives its own mean (1, 10, 100, 5.5, 50.5, 55 or 37).
WEIGHTS = (1.0, 10.0, 100.0)
MEAN_JOIN = """
network join {{
    input 1x1x1
    m: mean drop_path={p} {{ conv(1, k=1, bias=false) * 3 }}
}}
"""


def _subsets(values):
    """mean -> the indices of the kept branches that give it."""
    table = {}
    for size in range(1, len(values) + 1):
        for kept in itertools.combinations(range(len(values)), size):
            table[round(sum(values[i] for i in kept) / size, 4)] = kept
    assert len(table) == 2 ** len(values) - 1  # distinct: the output tells the set
    return table


def _set_weights(model, names_and_weights):
    with torch.no_grad():
        for name, weight in names_and_weights:
            model.get_submodule(name).weight.fill_(weight)


def _kept_sets(model, table, passes: int, seed: int = 0):
    """The set of branches each of `passes` train-mode forward passes kept."""
    model.train()
    torch.manual_seed(seed)
    x = torch.ones(1, 1, 1, 1)
    found = []
    with torch.no_grad():
        for _ in range(passes):
            value = round(model(x).item(), 4)
            assert value in table, f"{value} is no mean of a set of branches"
            found.append(table[value])
    return found


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("p", PROBABILITIES)
def test_mean_join_drops_each_branch_with_probability_p(p, backend):
    model = _model(MEAN_JOIN.format(p=p), backend)
    _set_weights(model, [(f"m.{i}", w) for i, w in enumerate(WEIGHTS)])
    passes = 3000
    kept = _kept_sets(model, _subsets(WEIGHTS), passes)
    # Every output is the plain mean of the branches kept (it is in the table: no
    # 1/(1-p) scaling), and at least one branch is always kept (no 0 output).
    counts = [sum(len(k) == n for k in kept) / passes for n in (1, 2, 3)]
    # All three kept, and exactly two kept, do not involve the "keep at least one"
    # rule: binomial with keep probability 1 - p.
    _assert_frequency(counts[2], (1 - p) ** 3, passes, "passes keeping all branches")
    _assert_frequency(counts[1], 3 * p * (1 - p) ** 2, passes, "passes keeping two")
    # Each branch: dropped with probability p, less the passes where all three were
    # dropped and it was the one kept (at most p^3).
    for branch in range(3):
        dropped = sum(branch not in k for k in kept) / passes
        sigma = math.sqrt(p * (1 - p) / passes)
        assert p - p ** 3 - 5 * sigma <= dropped <= p + 5 * sigma, (branch, dropped)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("p", PROBABILITIES)
def test_mean_join_in_eval_mode_averages_every_branch(p, backend):
    model = _model(MEAN_JOIN.format(p=p), backend)
    _set_weights(model, [(f"m.{i}", w) for i, w in enumerate(WEIGHTS)])
    model.eval()
    with torch.no_grad():
        for _ in range(20):
            assert model(torch.ones(1, 1, 1, 1)).item() == pytest.approx(37.0)


# ---------------------------------------------------------------- fractal

# fractal 2 = mean(unit(unit(z)), unit(z)): column 1 is one conv (weight 1), column
# 2 two convs (weights 10 and 1): 1 alone, 10 alone, or 5.5 for both.
FRACTAL = """
network frac {{
    input 1x1x1
    body: fractal 2 {settings} {{ conv 1 k=1 bias=false }}
}}
"""
COLUMNS = [("body.column1.0", 1.0), ("body.column2.0", 10.0), ("body.column2.1", 1.0)]
COLUMN_VALUES = {1.0: (1,), 10.0: (2,), 5.5: (1, 2)}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("p", PROBABILITIES)
def test_fractal_local_drop_path_drops_each_column_with_probability_p(p, backend):
    model = _model(FRACTAL.format(settings=f"drop_path={p}"), backend)
    _set_weights(model, COLUMNS)
    passes = 3000
    kept = _kept_sets(model, COLUMN_VALUES, passes)
    _assert_frequency(sum(len(k) == 2 for k in kept) / passes, (1 - p) ** 2, passes,
                      "passes keeping both columns")
    for column in (1, 2):
        dropped = sum(column not in k for k in kept) / passes
        sigma = math.sqrt(p * (1 - p) / passes)
        assert p - p ** 2 - 5 * sigma <= dropped <= p + 5 * sigma, (column, dropped)
    model.eval()
    with torch.no_grad():
        assert model(torch.ones(1, 1, 1, 1)).item() == pytest.approx(5.5)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("g", PROBABILITIES)
def test_fractal_global_drop_path_keeps_one_column_with_probability_g(g, backend):
    """Without local drop-path, a pass either averages both columns or, with
    probability g, keeps one column chosen uniformly."""
    model = _model(FRACTAL.format(settings=f"global_drop_path={g}"), backend)
    _set_weights(model, COLUMNS)
    passes = 3000
    kept = _kept_sets(model, COLUMN_VALUES, passes)
    _assert_frequency(sum(len(k) == 1 for k in kept) / passes, g, passes,
                      "passes keeping a single column")
    for column in (1, 2):
        _assert_frequency(sum(k == (column,) for k in kept) / passes, g / 2, passes,
                          f"passes keeping column {column} alone")
    model.eval()
    with torch.no_grad():
        assert model(torch.ones(1, 1, 1, 1)).item() == pytest.approx(5.5)
