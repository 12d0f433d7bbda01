"""The training-memory planner (cnnspec/analyses/memory.py) against what PyTorch really keeps.

The measurement (`benchmarks/memory_planner.py: measure_saved`) runs the built module
in train mode under `torch.autograd.graph.saved_tensors_hooks` and counts every
storage autograd keeps for backward once, by its data pointer, at its full size,
parameters and buffers left out, autocast's half copies of parameters set apart, each
charged to the first layer that keeps it, as the planner charges it. The planner must
match it exactly, layer by layer (the bar set for the torchvision twins was 5%; every
one of them is exact, so anything less is a regression). The rules are in
docs/costs.md, "Training memory"; benchmarks/memory_planner.py runs every spec.
"""

from __future__ import annotations

import io
import json
import re
import sys
from contextlib import redirect_stdout

import pytest
import torch

import cnnspec
from cnnspec.cli import main
from cnnspec.analyses.memory import parse_size, plan
from conftest import ROOT, SPECS

sys.path.insert(0, str(ROOT / "benchmarks"))
from memory_planner import measure_saved, without_drop_path  # noqa: E402

BATCH = 2

# Every op kind the planner has a rule for, in the places where the rule has a
# branch: nothing trainable before the first conv (an affine and the max pool keep
# nothing), a frozen conv and batchnorm with a gradient flowing through them,
# out-of-place activations keeping input or output, LRN, both upsample modes, crop,
# adaptive pools, pad, shuffle, split (views), a mean join, dropout and drop_path at
# p = 0 and above, an out-of-place and an in-place add, a squeeze-excitation gate,
# layernorm on NCHW memory and on a flat vector, pointwise linears on NCHW memory
# (copied) and channels-last memory (viewed), layer_scale, conv_transpose, an affine
# after it (its multiply keeps only the constant scale, a buffer; under autocast the
# half input times the fp32 scale is fp32), a flatten that copies, a frozen linear.
EVERY_OP = """
network every_op(classes = 5) {
    input 3x16x16
    affine scale=(0.5, 2, 1) shift=(0.1, 0, -0.1)
    maxpool 3 s=1 p=1
    conv 8 k=3 p=1
    batchnorm
    relu
    relu6
    frozen {
        fconv: conv 8 k=3 p=1
        fbn: batchnorm
    }
    elu
    leaky_relu
    mish
    softplus
    hardsigmoid
    conv 8 k=1
    softmax
    sigmoid
    tanh
    silu
    gelu
    hardswish
    lrn 3
    dwconv 3 p=1
    avgpool 3 s=1 p=1
    concat {
        a: upsample 2, conv 4 k=1, maxpool 4
        b: upsample 2 bilinear, crop 20, conv 4 k=3 s=2 p=1, adaptive_maxpool 8
        c: adaptive_avgpool 8
    }
    pad_channels 20
    shuffle 4
    split {
        identity
        right: { conv 10 k=1; relu }
    }
    mean {
        { conv 20 k=1 }
        { dropout 0.3 }
        { dropout 0 }
        { drop_path 0 }
    }
    residual {
        body: { conv 20 k=3 p=1; drop_path 0.2 }
    }
    residual {
        body2: { conv 20 k=3 p=1; batchnorm }
    }
    gate { avgpool global; conv 20 k=1; sigmoid }
    linear 12 pointwise=true
    layernorm
    linear 12 pointwise=true
    gelu
    linear 20 pointwise=true
    layer_scale 0.1
    up: conv_transpose 6 k=2 s=2
    affine 0.5 shift=(1, 2, 3, 4, 5, 6)
    layernorm
    flatten
    layernorm
    dropout 0.5
    frozen { flin: linear 16 }
    relu
    fc: linear classes
}
"""

COSTS = ROOT / "docs" / "costs.md"


def _demo_spec():
    """The worked example of docs/costs.md, "Training memory"."""
    text = COSTS.read_text(encoding="utf-8")
    match = re.search(r"```cnn\n(network train_memory_demo.*?)```", text, re.DOTALL)
    assert match, "the worked example is gone from docs/costs.md"
    return cnnspec.load(match.group(1))


def _spec(source, **params):
    if source == "every_op":
        return cnnspec.load(EVERY_OP)
    if source == "demo":
        return _demo_spec()
    return cnnspec.load(SPECS / f"{source}.cnn", **params)


def _check_exact(spec, amp=None, batch=BATCH):
    torch.manual_seed(0)
    model = cnnspec.build(spec)
    without_drop_path(model)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(amp)
    measured, copies = measure_saved(model, torch.randn((batch,) + spec.input_shape), dtype)
    planned = spec.train_memory(batch, amp=amp)
    predicted = {layer.name: layer.saved_bytes for layer in planned.layers}
    differing = {name: (predicted.get(name, 0), measured.get(name, 0))
                 for name in set(predicted) | set(measured)
                 if predicted.get(name, 0) != measured.get(name, 0)}
    assert not differing, f"{spec.name}: (planned, measured) per layer: {differing}"
    assert planned.saved_activation_bytes == sum(measured.values())
    assert planned.amp_weight_bytes == copies
    return planned


@pytest.mark.parametrize("name", ["lenet5", "alexnet", "vgg11"])
def test_plain_chains_are_exact(name):
    _check_exact(_spec(name))


@pytest.mark.parametrize("name", [
    "resnet18", "squeezenet1_1", "mobilenet_v3_small", "shufflenet_v2_x0_5",
    "densenet121", "efficientnet_b0", "googlenet"])
def test_torchvision_twins_match_the_measurement(name):
    spec = _spec(name)
    planned = _check_exact(spec)  # exact, layer by layer: within 5% a fortiori
    if name == "googlenet":  # the auxiliary heads run in training and keep their inputs
        aux = [layer for layer in planned.layers if layer.training_only]
        assert aux and sum(layer.saved_bytes for layer in aux) > 0


@pytest.mark.parametrize("name,amp", [
    ("every_op", None), ("every_op", "bf16"), ("every_op", "fp16"), ("demo", "bf16"),
    ("alexnet", "bf16"), ("shufflenet_v2_x0_5", "bf16"), ("efficientnet_b0", "fp16")])
def test_every_rule_and_autocast_match_the_measurement(name, amp):
    _check_exact(_spec(name), amp)


def test_kept_bytes_grow_in_a_straight_line_with_the_batch():
    spec = _demo_spec()
    planned = _check_exact(spec, batch=3)
    assert planned.saved_activation_bytes == 3 * 258_176 + 128
    one, five = spec.train_memory(1), spec.train_memory(5)
    assert five.total_bytes - one.total_bytes == 4 * one.bytes_per_image
    assert one.total_bytes == one.fixed_bytes + one.bytes_per_image


def test_the_worked_example_in_the_docs():
    spec = _demo_spec()
    assert spec.params == 5_434  # its `# expect` line, checked by test_docs.py too
    text = COSTS.read_text(encoding="utf-8")
    memory = spec.train_memory(64, optimizer="adam", fit=64 * 2**30 // 1024)
    per_image = {layer.name: layer.saved_bytes // 64 for layer in memory.layers}
    assert per_image == {"conv1": 12_288, "bn1": 65_538, "relu1": 65_536, "pool": 32_768,
                         "conv2": 16_384, "act": 32_768, "drop": 32_768, "gap": 0,
                         "flat": 0, "fc": 128}  # bn1: 65,536 + its 128 fixed / 64
    assert memory.bytes_per_image == 258_176 and memory.fixed_bytes == 87_236
    assert memory.optimizer_bytes == 43_500 and memory.buffers_bytes == 136
    assert memory.total_bytes == 16_610_500 and memory.max_batch == 259
    assert spec.train_memory(1, amp="bf16").bytes_per_image == 145_472
    assert spec.train_memory(1, amp="bf16").amp_weight_bytes == 10_720
    assert spec.train_memory(1, device="cuda").layers[6].saved_bytes == 8_192
    for number in ("258,176", "87,236", "16,610,500", "= 259", "145,472", "10,720",
                   "43,500", "8,192"):
        assert number in text, number


@pytest.mark.parametrize("name,optimizer", [("lenet5", "adam"),
                                            ("every_op", "sgd_momentum"),
                                            ("resnet18_transfer", "adam")])
def test_gradients_and_optimizer_state_match_a_real_step(name, optimizer):
    spec = _spec(name)
    torch.manual_seed(0)
    model = cnnspec.build(spec).train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    step = torch.optim.Adam(trainable) if optimizer == "adam" else \
        torch.optim.SGD(trainable, lr=0.01, momentum=0.9)
    x = torch.randn((BATCH,) + spec.input_shape[:1] + (32, 32)) \
        if name == "resnet18_transfer" else torch.randn((BATCH,) + spec.input_shape)
    model(x).sum().backward()
    step.step()
    memory = spec.train_memory(BATCH, optimizer=optimizer)
    state = sum(v.untyped_storage().nbytes() for s in step.state.values()
                for v in s.values() if torch.is_tensor(v))
    assert memory.optimizer_bytes == state
    assert memory.grads_bytes == sum(p.grad.nbytes for p in model.parameters()
                                     if p.grad is not None)
    assert memory.params_bytes == sum(p.nbytes for p in model.parameters())
    assert memory.buffers_bytes == sum(b.nbytes for b in model.buffers())
    assert spec.train_memory(BATCH, optimizer="sgd").optimizer_bytes == 0
    if name == "resnet18_transfer":  # frozen backbone: only the head has gradients
        assert memory.grads_bytes == 4 * spec.trainable_params < 4 * spec.params


def test_fit_gives_the_largest_batch_that_fits():
    spec = _spec("resnet18")
    for budget in ("24GiB", "8GB", "1.5GiB", 3 * 10**9 + 7):
        memory = spec.train_memory(8, optimizer="adam", fit=budget)
        size = parse_size(budget) if isinstance(budget, str) else budget
        n = memory.max_batch
        assert n >= 1 and memory.fit_bytes == size
        assert spec.train_memory(n, optimizer="adam").total_bytes <= size
        assert spec.train_memory(n + 1, optimizer="adam").total_bytes > size
    assert spec.train_memory(1, optimizer="adam", fit="100MiB").max_batch == 0
    assert spec.train_memory(1, fit=0).max_batch == 0
    # AMP halves most kept tensors (not the int64 max-pool indices): under twice the batch.
    full = spec.train_memory(1, fit="24GiB").max_batch
    half = spec.train_memory(1, amp="bf16", fit="24GiB").max_batch
    assert 1.7 * full < half < 2 * full


def test_sizes_and_arguments():
    assert parse_size("24GiB") == 24 * 2**30 and parse_size("80GB") == 80 * 10**9
    assert parse_size("512mib") == 512 * 2**20 and parse_size("1.5GiB") == 3 * 2**29
    assert parse_size("1000") == 1000 and parse_size(" 2 KiB ") == 2048
    for bad in ("24XB", "", "GiB", "-1GiB", "1e3", "24 GiB extra", "nan"):
        with pytest.raises(ValueError):
            parse_size(bad)
    spec = _spec("lenet5")
    for bad in (dict(batch=0), dict(batch=2, optimizer="lbfgs"), dict(batch=2, amp="fp8"),
                dict(batch=2, device="tpu"), dict(batch=2.5), dict(batch=2, fit=-1)):
        with pytest.raises(ValueError):
            plan(spec, **bad)


def _cli(*args) -> tuple[int, str]:
    out = io.StringIO()
    with redirect_stdout(out):
        try:
            status = main([str(a) for a in args])
        except SystemExit as exit:
            status = exit.code
    return status, out.getvalue()


def test_cli_json_fields():
    status, out = _cli("summary", SPECS / "resnet18.cnn", "--json", "--train", "--batch",
                       32, "--optimizer", "adam", "--amp", "bf16", "--fit", "24GiB")
    assert status == 0
    data = json.loads(out)
    memory = data["train_memory"]
    assert data["params"] == 11_689_512  # the summary is still there
    assert {"params_bytes", "grads_bytes", "optimizer_bytes", "saved_activation_bytes",
            "total_bytes", "max_batch", "layers"} <= set(memory)
    expected = _spec("resnet18").train_memory(32, optimizer="adam", amp="bf16",
                                               fit="24GiB")
    assert memory["total_bytes"] == expected.total_bytes
    assert memory["max_batch"] == expected.max_batch and memory["batch"] == 32
    assert memory["layers"][0] == {"name": "conv1", "op": "conv 7x7/2, 64",
                                   "saved_bytes": 32 * 3 * 224 * 224 * 2,
                                   "training_only": False}
    assert memory["total_bytes"] == sum(memory[k] for k in (
        "params_bytes", "grads_bytes", "optimizer_bytes", "buffers_bytes",
        "amp_weight_bytes", "saved_activation_bytes"))
    # --depth: one row per block, the same total
    status, out = _cli("summary", SPECS / "resnet18.cnn", "--json", "--train", "--batch",
                       2, "--depth", 1)
    rows = json.loads(out)["train_memory"]["layers"]
    assert "layer1.0" in [row["name"] for row in rows]
    assert sum(row["saved_bytes"] for row in rows) == \
        _spec("resnet18").train_memory(2).saved_activation_bytes
    # without --train the JSON is unchanged; the spec's own batch is the default
    assert "train_memory" not in json.loads(_cli("summary", SPECS / "lenet5.cnn",
                                                 "--json")[1])
    lenet = json.loads(_cli("summary", SPECS / "lenet5.cnn", "--json", "--train")[1])
    assert lenet["train_memory"]["batch"] == 32  # lenet5.cnn: train { batch: 32 }


def test_cli_table_and_usage_errors(capsys):
    status, out = _cli("summary", SPECS / "alexnet.cnn", "--train", "--batch", 128,
                       "--fit", "8GiB")
    assert status == 0
    assert "Saved for backward, batch 128" in out and "fits 8.0 GiB: batch up to" in out
    for bad in (["--train", "--batch", 4, "--fit", "24XB"],  # not a size
                ["--fit", "24GiB"],  # needs --train
                ["--train", "--batch", 0],
                ["--train"]):  # densenet121.cnn has no train { batch }
        status, _ = _cli("summary", SPECS / "densenet121.cnn", *bad)
        assert status == 2, bad
    assert "not a memory size: '24XB'" in capsys.readouterr().err
