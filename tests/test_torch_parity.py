"""The compiled modules against torchvision and against the checker.

Parity: for every spec with a torchvision counterpart, the state dict keys and
shapes are torchvision's, `load_state_dict(strict=True)` works, and eval outputs on
the same input agree to 1e-5 with every batchnorm's statistics and affine parameters
randomised (parity_helpers.py); the smaller models also agree in train mode and after
one SGD step. Static equals dynamic: for every spec, the built
module's parameter count is the summary's, and every layer's real output shape (one
forward pass) is the checked shape."""

import pytest
import torch
import torchvision.models as tvm
from conftest import SPECS
from parity_helpers import (
    assert_outputs_close,
    check_training_step,
    check_transform_input,
    randomise_batchnorm,
)
from torch import fx

import cnnspec

TORCHVISION = {
    "resnet18": lambda: tvm.resnet18(weights=None),
    "resnet50": lambda: tvm.resnet50(weights=None),
    "vgg16": lambda: tvm.vgg16(weights=None),
    "densenet121": lambda: tvm.densenet121(weights=None),
    "googlenet": lambda: tvm.googlenet(weights=None, aux_logits=True, init_weights=True),
}
ALL_SPECS = sorted(p.stem for p in SPECS.glob("*.cnn"))


# Batchnorms per model: randomised before comparing, so a batchnorm moved past its
# ReLU (which a fresh, positive-scaling batchnorm commutes with) would show.
BATCHNORMS = {"resnet18": 20, "resnet50": 53, "vgg16": 0, "densenet121": 121,
              "googlenet": 59}


@pytest.mark.parametrize("name", sorted(TORCHVISION))
def test_torchvision_state_dict_loads_strictly_and_outputs_match(name):
    torch.manual_seed(0)
    reference = TORCHVISION[name]().eval()
    assert randomise_batchnorm(reference) == BATCHNORMS[name]
    model = cnnspec.build(SPECS / f"{name}.cnn").eval()
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    theirs = {k: tuple(v.shape) for k, v in reference.state_dict().items()}
    assert ours == theirs
    model.load_state_dict(reference.state_dict(), strict=True)
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        expected, found = reference(x), model(x)
    assert_outputs_close(found, expected)


# name -> (torchvision's output fields, ours), compared pairwise in training.
TRAINING_OUTPUTS = {
    "resnet18": (("logits",), ("logits",)),
    "googlenet": (("logits", "aux_logits1", "aux_logits2"), ("logits", "aux1", "aux2")),
}


@pytest.mark.parametrize("name", sorted(TRAINING_OUTPUTS))
def test_torchvision_training_step_matches(name):
    """Train mode: batchnorm on batch statistics, GoogLeNet's dropouts and auxiliary
    heads under one seed, then one SGD step: parameters and running statistics equal.
    The compiled graphs do not depend on the input size, so a 64x64 batch of 2 keeps
    the backward pass cheap."""
    torch.manual_seed(0)
    reference = TORCHVISION[name]()
    randomise_batchnorm(reference)
    model = cnnspec.build(SPECS / f"{name}.cnn")
    model.load_state_dict(reference.state_dict(), strict=True)
    theirs, ours = TRAINING_OUTPUTS[name]
    check_training_step(reference, model, torch.randn(2, 3, 64, 64),
                        reference_fields=theirs, model_fields=ours)


@pytest.mark.parametrize("aux_logits", [False, True])
def test_googlenet_transform_input_is_torchvision_pretrained_model(aux_logits):
    """`transform_input=true` is torchvision's googlenet as its ImageNet weights build
    it (transform_input=True): strict load, eval outputs equal bit for bit."""
    torch.manual_seed(0)
    reference = tvm.googlenet(weights=None, transform_input=True, aux_logits=aux_logits,
                              init_weights=False)
    check_transform_input(reference, SPECS / "googlenet.cnn", torch.randn(2, 3, 64, 64),
                          stem="conv1", aux_logits=aux_logits)


def _shapes_by_layer(model, spec, x):
    """Run the generated graph node by node and record each output's shape."""
    graph_module = getattr(model, "_train_graph", model)
    seen = {}

    class Recorder(fx.Interpreter):
        def run_node(self, node):
            result = super().run_node(node)
            if "cnnspec_shape" in node.meta:
                seen[node.meta["cnnspec_name"]] = tuple(result.shape[1:])
            return result

    Recorder(graph_module).run(x)
    return seen


# Above this many MACs the real forward pass costs seconds on a CPU; PyTorch's meta
# tensors run the same shape functions without computing anything.
HEAVY_MACS = 1e9


@pytest.mark.parametrize("name", ALL_SPECS)
def test_static_shapes_and_parameters_equal_dynamic(name):
    spec = cnnspec.load(SPECS / f"{name}.cnn")
    device = "meta" if spec.macs > HEAVY_MACS else "cpu"
    with torch.device(device):
        model = cnnspec.build(spec).eval()
        x = torch.randn((1,) + spec.input_shape)
    assert sum(p.numel() for p in model.parameters()) == spec.params
    with torch.no_grad():
        real = _shapes_by_layer(model, spec, x)
    checked = {n.name: spec.table[n.id].shape for n in spec.graph.nodes}
    assert set(real) == set(checked)
    assert real == checked


def test_auxiliary_heads_in_training_only():
    torch.manual_seed(0)
    model = cnnspec.build(SPECS / "googlenet.cnn", classes=10)
    x = torch.randn(2, 3, 224, 224)
    outputs = model.train()(x)
    assert outputs._fields == ("logits", "aux1", "aux2")
    assert all(tuple(o.shape) == (2, 10) for o in outputs)
    assert model.aux_weights == {"aux1": 0.3, "aux2": 0.3}
    with torch.no_grad():
        logits = model.eval()(x)
    assert isinstance(logits, torch.Tensor) and tuple(logits.shape) == (2, 10)


def test_no_python_loop_interprets_layers():
    """The forward is generated straight-line code: one line per call."""
    model = cnnspec.build(SPECS / "resnet18.cnn")
    assert isinstance(model, fx.GraphModule)
    code = model.code
    assert "for " not in code and "self.layer4" in code


def test_initialisation_declared_in_the_spec():
    """AlexNet's recipe: weights N(0, 0.01), biases 1 (Krizhevsky et al. 2012, s. 5)."""
    torch.manual_seed(0)
    model = cnnspec.build(SPECS / "alexnet.cnn")
    fc6 = model.get_submodule("fc6")
    assert abs(fc6.weight.std().item() - 0.01) < 5e-4
    assert abs(fc6.weight.mean().item()) < 5e-4
    assert torch.all(fc6.bias == 1.0)
    he = cnnspec.build("network h { input 64x8x8\n c: conv 256 k=3\n"
                       " train { init: he } }").get_submodule("c")
    fan_in = 64 * 3 * 3
    assert abs(he.weight.std().item() - (2 / fan_in) ** 0.5) < 0.002
    assert torch.all(he.bias == 0.0)


def test_transfer_learning_spec_freezes_the_backbone():
    """resnet18 with a new 2-class head: torchvision's backbone weights load, only the
    head trains (2 * 512 + 2 = 1,026 parameters)."""
    spec = cnnspec.load(SPECS / "resnet18_transfer.cnn")
    assert spec.params == 11_689_512 - (512 * 1000 + 1000) + 1_026
    assert spec.trainable_params == 1_026
    torch.manual_seed(0)
    model = cnnspec.build(spec)
    backbone = {k: v for k, v in tvm.resnet18(weights=None).state_dict().items()
                if not k.startswith("fc.")}
    missing, unexpected = model.load_state_dict(backbone, strict=False)
    assert sorted(missing) == ["fc.bias", "fc.weight"] and unexpected == []
    trainable = [name for name, p in model.named_parameters() if p.requires_grad]
    assert trainable == ["fc.weight", "fc.bias"]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], 0.1)
    x = torch.randn(4, 3, 224, 224)
    with torch.no_grad():
        expected = model.eval()(x)
    model.train()  # frozen batchnorm keeps using, and keeping, its running statistics
    assert not model.get_submodule("layer1.0.bn1").training
    logits = model(x)
    torch.testing.assert_close(logits, expected)
    logits.logsumexp(1).mean().backward()
    optimizer.step()
    after = model.state_dict()
    for key in before:
        if not key.startswith("fc."):
            assert torch.equal(after[key], before[key]), key
    assert not torch.equal(after["fc.weight"], before["fc.weight"])


def test_generated_source_keeps_the_freeze():
    from cnnspec.backends.codegen import to_python

    source = to_python(cnnspec.load(SPECS / "resnet18_transfer.cnn"))
    assert "self.layer4[1].conv2.requires_grad_(False)" in source
    assert "class FrozenBatchNorm2d(nn.BatchNorm2d):" in source
    assert "self.layer4[1].bn2 = FrozenBatchNorm2d(512)" in source
    assert "self.fc.requires_grad_(False)" not in source
