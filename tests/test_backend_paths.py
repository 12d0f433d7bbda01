"""What `cnnspec.build` promises beyond layer settings, on specs small enough to run
per mutant: auxiliary heads (named outputs and loss weights in training, the logits
alone in eval), the recipe's `init`, `dtype` and `device`, frozen layers, and
drop-path on other dtypes. Expected values come from the spec text and torch.

Written against the survivors of `make mutate` on cnnspec/backends/torch_backend.py
(docs/testing.md).
"""

import math

import pytest
import torch
from torch import nn

import cnnspec

AUX = """
network tiny_aux(classes = 3) {
    input 2x8x8
    stem: conv 4 k=3 p=1
    relu
    side: aux weight=0.3 {
        avgpool global
        flatten
        fc: linear classes
    }
    other: aux weight=0.2 {
        maxpool global
        flatten
        fc: linear classes
    }
    pool: avgpool global
    flatten
    fc: linear classes
}
"""


def test_auxiliary_heads_in_training_and_the_logits_alone_in_eval():
    model = cnnspec.build(AUX)
    x = torch.randn(5, 2, 8, 8)
    out = model.train()(x)
    assert out._fields == ("logits", "side", "other")
    assert model.aux_weights == {"side": 0.3, "other": 0.2}
    stem = torch.relu(model.stem(x))
    torch.testing.assert_close(out.logits, model.fc(stem.mean((2, 3))))
    torch.testing.assert_close(out.side, model.side.fc(stem.mean((2, 3))))
    torch.testing.assert_close(out.other, model.other.fc(stem.amax((2, 3))))
    model.eval()
    with torch.no_grad():
        logits = model(x)
    assert isinstance(logits, torch.Tensor)
    torch.testing.assert_close(logits, out.logits.detach())
    # Each parameter is listed once, under the spec's names.
    names = [name for name, _ in model.named_parameters()]
    assert names == ["stem.weight", "stem.bias", "side.fc.weight", "side.fc.bias",
                     "other.fc.weight", "other.fc.bias", "fc.weight", "fc.bias"]


INIT = """
network init_demo(classes = 10) {{
    input 64x16x16
    conv1: conv 256 k=3 p=1 bias=true
    bn: batchnorm
    flatten
    fc: linear 512
    {recipe}
}}
"""


def test_the_recipes_init_sets_every_layer():
    torch.manual_seed(0)
    he = cnnspec.build(INIT.format(recipe="train { init: he }"))
    # He et al. 2015: N(0, sqrt(2 / fan_in)), fan_in = 64 * 3 * 3 = 576 (fan_out would
    # be 256 * 9 = 2,304); biases 0.
    assert he.conv1.weight.std().item() == pytest.approx(math.sqrt(2 / 576), rel=0.02)
    assert abs(he.conv1.weight.mean().item()) < 0.002
    assert not he.conv1.bias.any()
    assert torch.equal(he.bn.weight, torch.ones(256)) and not he.bn.bias.any()
    normal = cnnspec.build(INIT.format(recipe="train { init: normal std=0.01 bias=1 }"))
    assert normal.fc.weight.std().item() == pytest.approx(0.01, rel=0.02)
    assert abs(normal.fc.weight.mean().item()) < 0.0005
    assert normal.conv1.weight.std().item() == pytest.approx(0.01, rel=0.02)
    assert torch.equal(normal.fc.bias, torch.ones(512))
    # Glorot & Bengio 2010: uniform within sqrt(6 / (fan_in + fan_out)).
    xavier = cnnspec.build(INIT.format(recipe="train { init: xavier }"))
    bound = math.sqrt(6 / (576 + 2304))
    assert 0.99 * bound < xavier.conv1.weight.abs().max().item() <= bound
    # torchvision's convention: convs He-normal over fan_out, linear N(0, 0.01).
    tv = cnnspec.build(INIT.format(recipe="train { init: torchvision }"))
    assert tv.conv1.weight.std().item() == pytest.approx(math.sqrt(2 / 2304), rel=0.02)
    assert abs(tv.conv1.weight.mean().item()) < 0.001
    assert tv.fc.weight.std().item() == pytest.approx(0.01, rel=0.02)
    assert abs(tv.fc.weight.mean().item()) < 0.0005
    # Without `init`, PyTorch's default: biases uniform within 1 / sqrt(fan_in).
    plain = cnnspec.build(INIT.format(recipe=""))
    assert plain.conv1.bias.abs().max().item() <= 1 / math.sqrt(576)
    assert plain.conv1.bias.any()


def test_dtype_and_device_reach_every_parameter():
    model = cnnspec.build(AUX, dtype=torch.float64, device="cpu")
    assert {p.dtype for p in model.parameters()} == {torch.float64}
    assert {p.device.type for p in model.parameters()} == {"cpu"}
    model = cnnspec.build(AUX, dtype=torch.float64)
    assert {p.dtype for p in model.parameters()} == {torch.float64}
    assert model.eval()(torch.randn(1, 2, 8, 8, dtype=torch.float64)).dtype == torch.float64


def test_frozen_layers_stop_requiring_gradients_and_keep_statistics():
    spec = """
    network f(classes = 2) {
        input 1x6x6
        frozen {
            c: conv 3 k=3
            b: batchnorm
        }
        d: conv 3 k=3
        flatten
        fc: linear classes
    }
    """
    model = cnnspec.build(spec).train()
    assert [n for n, p in model.named_parameters() if p.requires_grad] == \
        ["d.weight", "d.bias", "fc.weight", "fc.bias"]
    before = model.b.running_mean.clone()
    model(torch.randn(4, 1, 6, 6) + 3)
    assert torch.equal(model.b.running_mean, before)
    assert model.b.training is False  # a frozen batchnorm stays in eval mode


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_drop_path_keeps_the_inputs_dtype(dtype):
    spec = """
    network d(classes = 2) {
        input 4x2x2
        sd: drop_path 0.5
    }
    """
    model = cnnspec.build(spec, dtype=dtype).train()
    x = torch.ones(64, 4, 2, 2, dtype=dtype)
    y = model(x)
    assert y.dtype == dtype
    assert set(y.flatten().tolist()) <= {0.0, 2.0}


def test_the_traced_input_is_named_x():
    """torch.export's dynamic batch refers to the input by this name (cnnspec compile)."""
    model = cnnspec.build(AUX).eval()
    placeholders = [n.target for n in model._eval_graph.graph.nodes
                    if n.op == "placeholder"]
    assert placeholders == ["x"]
    assert isinstance(model.stem, nn.Conv2d)


def test_fx_nodes_carry_the_checked_shapes_and_names():
    """Each node of the generated fx graph is annotated with the checker's shape and
    the spec's layer name; torch's own shape propagation must agree."""
    from torch.fx.passes.shape_prop import ShapeProp

    model = cnnspec.build(AUX).eval()
    graph_module = model._eval_graph
    ShapeProp(graph_module).propagate(torch.randn(1, 2, 8, 8))
    computed = [node for node in graph_module.graph.nodes
                if node.op in ("placeholder", "call_module", "call_function")]
    assert len(computed) >= 5
    for node in computed:
        assert tuple(node.meta["tensor_meta"].shape[1:]) == node.meta["cnnspec_shape"]
        if node.op == "call_module":
            assert node.meta["cnnspec_name"] == node.target


def test_a_frozen_batchnorm_on_features_keeps_its_statistics():
    spec = """
    network f(classes = 2) {
        input 8
        fc1: linear 4
        frozen { bn: batchnorm }
        fc2: linear classes
    }
    """
    model = cnnspec.build(spec).train()
    before = model.bn.running_mean.clone()
    model(torch.randn(16, 8) + 5)
    assert torch.equal(model.bn.running_mean, before) and model.bn.training is False


def test_a_mean_join_says_its_drop_path_when_printed():
    spec = """
    network m(classes = 2) {
        input 2x4x4
        j: mean drop_path=0.15 {
            conv 2 k=1
            conv 2 k=1
        }
    }
    """
    assert "MeanJoin(drop_path=0.15)" in repr(cnnspec.build(spec))


def test_one_auxiliary_head_inside_a_block():
    """A single auxiliary head (two outputs) still trains with it; a head labelled
    inside a block gets a dotted name, which becomes a valid field name."""
    spec = """
    block trunk(classes) {
        conv 4 k=3 p=1
        relu
        side: aux weight=0.4 {
            avgpool global
            flatten
            fc: linear classes
        }
    }
    network one_aux(classes = 3) {
        input 2x8x8
        t: trunk(classes)
        avgpool global
        flatten
        fc: linear classes
    }
    """
    model = cnnspec.build(spec).train()
    out = model(torch.randn(2, 2, 8, 8))
    assert out._fields == ("logits", "t_side")
    assert model.aux_weights == {"t_side": 0.4}
    assert type(model).__name__ == "TrainingHeads" and type(out).__name__ == \
        "one_aux_outputs"
    assert model.eval()(torch.randn(2, 2, 8, 8)).shape == (2, 3)


def test_a_mean_join_keeps_its_shape_while_dropping():
    spec = """
    network m(classes = 2) {
        input 2x4x4
        j: mean drop_path=0.5 {
            conv 3 k=1
            conv 3 k=1
            conv 3 k=1
        }
    }
    """
    model = cnnspec.build(spec).train()
    for _ in range(10):
        assert model(torch.randn(5, 2, 4, 4)).shape == (5, 3, 4, 4)
    assert type(cnnspec.build(spec)).__name__ == "m"  # the network's name, in print()
