"""`cnnspec compile` and its artifacts.

The generated `.py` is imported in a fresh interpreter where cnnspec cannot be
imported, loads the state dict saved from `cnnspec.build` with strict=True and
gives the same outputs (eval, and train with the same seed). The CLI writes py, pt2
and onnx files; pt2 reloads with torch.export.load, onnx passes onnx.checker and
onnxruntime agrees with torch."""

import ast
import json
import os
import subprocess
import sys

import pytest
import torch

import cnnspec
from cnnspec import cli
from cnnspec.backends.codegen import to_python
from conftest import FRACTAL_BLOCK, ROOT, SPECS

# FractalNet-style mean joins with local drop-path, and stochastic depth.
DROP_PATH = FRACTAL_BLOCK + """
network fractal_net(classes = 10) {
    input 3x16x16
    stem: conv 16 k=3 p=1 bias=false
    bn:   batchnorm
    relu
    body: fractal(16, 3)
    sd:   drop_path 0.2
    pool: avgpool global
    flatten
    fc:   linear classes
}
"""

# The `fractal` construct (global drop-path: a sampler and column-aware joins) and a
# parameter-free shortcut (He et al. 2015, option A: subsample, zero channels).
FRACTAL_COLUMNS = """
network fractal_columns(classes = 10) {
    input 3x16x16
    stem: conv 8 k=3 p=1
    body: fractal 3 drop_path=0.15 global_drop_path=0.5 { conv 8 k=3 p=1; batchnorm; relu }
    down: residual {
        conv 16 k=3 s=2 p=1 bias=false; batchnorm
    } shortcut { avgpool 1 s=2; pad_channels 16 }
    pool: avgpool global
    flatten
    fc: linear classes
}
"""

# A frozen backbone: its batchnorm normalises with running statistics in training too.
FROZEN = """
network frozen_backbone(classes = 3) {
    input 3x16x16
    frozen {
        conv1: conv 8 k=3 p=1 bias=false
        bn1: batchnorm
        relu
    }
    pool: avgpool global
    flatten
    fc: linear classes
}
"""

TINY = """
network tiny(classes = 5) {
    input 3x16x16
    stem: conv 8 k=3 p=1 bias=false
    bn:   batchnorm
    relu
    res: add { { conv 8 k=3 p=1; relu }; identity }
    mix: concat { conv 4 k=1; maxpool 3 s=1 p=1 }        -> 12x16x16
    pool: avgpool 2 s=2
    flatten
    fc: linear classes
}
"""

CASES = {
    "resnet18": lambda: cnnspec.load(SPECS / "resnet18.cnn"),
    "googlenet": lambda: cnnspec.load(SPECS / "googlenet.cnn", classes=10),
    # torchvision's pretrained GoogLeNet: an `affine` first (ChannelAffine, copied in)
    "googlenet_transform_input": lambda: cnnspec.load(SPECS / "googlenet.cnn", classes=10,
                                                      transform_input=True),
    "densenet121": lambda: cnnspec.load(SPECS / "densenet121.cnn"),
    "fractal_net": lambda: cnnspec.load(DROP_PATH),
    "fractal_columns": lambda: cnnspec.load(FRACTAL_COLUMNS),
    "frozen_backbone": lambda: cnnspec.load(FROZEN),
}

# Runs in a fresh interpreter (-I: no PYTHONPATH, no cwd on the path). The editable
# install's path entry is removed and a finder refuses cnnspec, so it is as if
# cnnspec were not installed at all; torch stays importable.
FRESH = """
import importlib.util, json, sys
sys.path[:] = [p for p in sys.path if p != {root!r}]

class NoCnnspec:
    def find_spec(self, name, path=None, target=None):
        if name == "cnnspec" or name.startswith("cnnspec."):
            raise ModuleNotFoundError("No module named 'cnnspec'")
        return None

sys.meta_path.insert(0, NoCnnspec())
try:
    import cnnspec
    cnnspec_importable = True
except ImportError:
    cnnspec_importable = False
import torch

report = {{"cnnspec_importable": cnnspec_importable}}
for name, class_name in {cases!r}:
    spec = importlib.util.spec_from_file_location(name, {tmp!r} + f"/{{name}}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    model = getattr(module, class_name)()
    model.load_state_dict(torch.load({tmp!r} + f"/{{name}}.pt"), strict=True)
    x = torch.load({tmp!r} + f"/{{name}}.input.pt")
    with torch.no_grad():
        outputs = {{"eval": model.eval()(x)}}
        torch.manual_seed(7)
        trained = model.train()(x)
    outputs["train"] = list(trained) if isinstance(trained, tuple) else trained
    torch.save(outputs, {tmp!r} + f"/{{name}}.out.pt")
    report[name] = {{"fields": list(getattr(trained, "_fields", ())),
                     "modules": sorted(type(m).__module__ for m in model.modules())}}
print(json.dumps(report))
"""


@pytest.fixture(scope="module")
def fresh(tmp_path_factory):
    """Every case generated, then run once in a fresh interpreter without cnnspec."""
    tmp = tmp_path_factory.mktemp("fresh")
    expected, names = {}, []
    for name, load in CASES.items():
        spec = load()
        source = to_python(spec)
        (tmp / f"{name}.py").write_text(source)
        torch.manual_seed(0)
        model = cnnspec.build(spec)
        # Non-trivial batchnorm statistics, so eval mode really uses them.
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 1.5)
        torch.save(model.state_dict(), tmp / f"{name}.pt")
        x = torch.randn((1,) + spec.input_shape)
        torch.save(x, tmp / f"{name}.input.pt")
        with torch.no_grad():
            result = {"eval": model.eval()(x)}
            torch.manual_seed(7)
            trained = model.train()(x)
        result["train"] = list(trained) if isinstance(trained, tuple) else trained
        result["fields"] = list(getattr(trained, "_fields", ()))
        expected[name] = result
        names.append((name, ast.parse(source).body[-1].name))
    script = FRESH.format(root=str(ROOT), cases=names, tmp=str(tmp))
    run = subprocess.run([sys.executable, "-I", "-c", script], capture_output=True,
                         text=True, timeout=120, cwd=tmp,
                         env={"PATH": os.environ.get("PATH", ""), "HOME": str(tmp)})
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout.strip().splitlines()[-1])
    found = {name: torch.load(tmp / f"{name}.out.pt") for name in CASES}
    return report, expected, found


def test_fresh_interpreter_cannot_import_cnnspec(fresh):
    report, _, _ = fresh
    assert report["cnnspec_importable"] is False
    for name in CASES:
        assert not any(m.startswith("cnnspec") for m in report[name]["modules"])


@pytest.mark.parametrize("name", sorted(CASES))
def test_generated_module_matches_build(fresh, name):
    report, expected, found = fresh
    torch.testing.assert_close(found[name]["eval"], expected[name]["eval"],
                               rtol=0, atol=1e-5)
    # Training too: same layers called in the same order draw the same random numbers
    # (dropout, drop-path, FractalNet's branch dropping).
    torch.testing.assert_close(found[name]["train"], expected[name]["train"],
                               rtol=0, atol=1e-5)
    assert report[name]["fields"] == expected[name]["fields"]


def test_auxiliary_heads_as_a_named_tuple_in_training(fresh):
    report, expected, _ = fresh
    assert report["googlenet"]["fields"] == ["logits", "aux1", "aux2"]
    assert all(tuple(t.shape) == (1, 10) for t in expected["googlenet"]["train"])


def test_state_dict_keys_and_layer_paths_are_builds():
    spec = CASES["densenet121"]()
    namespace: dict = {}
    exec(compile(to_python(spec), "densenet121.py", "exec"), namespace)
    generated = namespace["Densenet121"]()
    built = cnnspec.build(spec)
    assert list(generated.state_dict()) == list(built.state_dict())
    assert "features.denseblock1.denselayer1.norm1.running_mean" in built.state_dict()
    assert ([n for n, _ in generated.named_modules()]
            == [n for n, _ in built.named_modules()])


def test_generated_source_is_readable_and_imports_only_torch():
    source = to_python(cnnspec.load(SPECS / "googlenet.cnn"))
    tree = ast.parse(source)
    imported = {alias.name.split(".")[0] for node in ast.walk(tree)
                if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom)}
    assert imported == {"torch", "collections"}
    assert ast.get_docstring(tree).startswith("googlenet: generated by cnnspec")
    assert "13,004,888" in source and "1,498,376,192" in source
    # One class per spec block, built from the block's arguments.
    assert "class ConvBn(Scope):" in source and "class Inception(nn.Module):" in source
    assert "def __init__(self, in_channels, c, k=1, s=1, p=0):" in source
    assert "self.conv = nn.Conv2d(in_channels, c, kernel_size=k, stride=s, padding=p," \
        in source
    assert "self.bn = nn.BatchNorm2d(c, eps=0.001)" in source
    assert "self.branch2[1] = ConvBn(ch3x3red, ch3x3, k=3, p=1)" in source
    assert "self.inception3a = Inception(192, 64, 96, 128, 16, 32, 32)" in source
    assert source.count("= Inception(") == 9
    assert "self.conv1 = ConvBn(3, 64, k=7, s=2, p=3)" in source
    assert "self.aux1 = InceptionAux(512, 1000)" in source
    assert "def __init__(self, in_channels, classes, dropout=0.7):" in source
    assert "torch.cat([branch1, branch2, branch3, branch4], 1)" in source
    assert "if self.training:" in source
    network = source[source.index("class Googlenet("):]
    forward = network[network.index("    def forward(self, x):"):]
    body = [line for line in forward.splitlines()[1:] if " = " in line]
    assert body and all("  # " in line for line in body
                        if not line.rstrip().endswith(","))
    assert "x = self.inception3a(x)" in forward and "  # 256x28x28" in forward
    assert "  # 1024\n" in forward
    inception = source[source.index("class Inception("):source.index("class InceptionAux(")]
    assert "# ch1x1 x H x W" in inception  # shape comments in terms of the arguments

    resnet = to_python(CASES["resnet18"]())
    assert "class Basic(Scope):" in resnet and "class BasicDownsample(Scope):" in resnet
    assert "self.conv1 = nn.Conv2d(in_channels, c, kernel_size=3, padding=1, " \
        "bias=False)" in resnet
    assert "self.layer1[0] = Basic(64, 64)" in resnet
    assert "self.layer2[0] = BasicDownsample(64, 128)" in resnet
    assert "out += x" in resnet
    assert "for " not in resnet[resnet.index("def forward"):]

    fractal = to_python(CASES["fractal_net"]())
    assert "class DropPath(nn.Module):" in fractal and "class MeanJoin(nn.Module):" in fractal
    assert "self.sd = DropPath(p=0.2)" in fractal
    assert "self.body.mean = MeanJoin(p=0.15)" in fractal

    columns = to_python(CASES["fractal_columns"]())
    assert "self.body.mean_1 = MeanJoin(p=0.15, columns=(1, 2, 3))" in columns
    assert "self.global_drop_path = GlobalDropPath(0.5, 3)" in columns
    assert "column = self.global_drop_path()" in columns
    assert "column=column)" in columns
    assert "nn.functional.pad(x, (0, 0, 0, 0, 0, 8))" in columns


# Lines of `cnnspec compile` output before one class per block (inline layers) and
# now; docs/compile.md reports them.
LINES = {"googlenet": (576, 170), "resnet50": (394, 160), "densenet121": (898, 235),
         "efficientnet_b0": (636, 245)}


@pytest.mark.parametrize("name", sorted(LINES))
def test_one_class_per_block_makes_the_file_short(name):
    source = to_python(cnnspec.load(SPECS / f"{name}.cnn"))
    before, bound = LINES[name]
    assert len(source.splitlines()) <= bound < before / 2


def test_block_classes_use_the_block_arguments():
    dense = to_python(cnnspec.load(SPECS / "densenet121.cnn"))
    assert "def __init__(self, in_channels, growth_rate, bn_size):" in dense
    assert dense.count("= DenseLayer(") == 58 and "= Transition(256)" in dense
    assert "nn.Conv2d(in_channels, in_channels // 2, kernel_size=1, bias=False)" in dense
    assert "(in_channels + growth_rate) x H x W" in dense
    depth = to_python(cnnspec.load(SPECS / "resnet_stochastic_depth.cnn"))
    assert "self.pad_downsample_1 = c - in_channels" in depth  # pad_channels
    assert "self[5] = DropPath(p=drop)" in depth
    frozen = to_python(cnnspec.load(SPECS / "resnet18_transfer.cnn"))
    assert "= Basic(" not in frozen  # frozen layers stay listed in the network
    assert "self.layer4[1].conv2.requires_grad_(False)" in frozen


SPEC_FILES = sorted(path.stem for path in SPECS.glob("*.cnn"))
# Small enough to run twice per test on a CPU in well under a second.
RUN = {"alexnet_two_gpu", "efficientnet_b0", "googlenet_paper", "inception_bottleneck",
       "nin", "preact_resnet", "resnet_stochastic_depth", "resnext_paths_block",
       "squeezenet1_1", "wrn_28_10", "fractalnet", "resnet18_transfer"}


@pytest.mark.parametrize("name", SPEC_FILES)
def test_every_spec_compiles_loads_strictly_and_agrees(name):
    """Each spec's file loads `cnnspec.build`'s state dict with strict=True (built on
    the meta device: keys and shapes only); the smaller ones also give the same
    eval outputs with real weights."""
    spec = cnnspec.load(SPECS / f"{name}.cnn")
    source = to_python(spec)
    namespace: dict = {}
    exec(compile(source, f"{name}.py", "exec"), namespace)
    generated = namespace[ast.parse(source).body[-1].name]
    with torch.device("meta"):
        model, built = generated(), cnnspec.build(spec)
    assert list(model.state_dict()) == list(built.state_dict())
    model.load_state_dict(built.state_dict(), strict=True)
    assert [p.requires_grad for p in model.parameters()] == \
        [p.requires_grad for p in built.parameters()]
    if name in RUN:
        torch.manual_seed(0)
        built, model = cnnspec.build(spec).eval(), generated().eval()
        model.load_state_dict(built.state_dict(), strict=True)
        x = torch.randn((1,) + spec.input_shape)
        with torch.no_grad():
            torch.testing.assert_close(model(x), built(x), rtol=0, atol=1e-5)


def _cnnspec(*args, cwd=None, env=None):
    return subprocess.run([sys.executable, "-m", "cnnspec", *map(str, args)],
                          capture_output=True, text=True, timeout=60, cwd=cwd, env=env)


def test_cli_compile_writes_py_next_to_the_user(tmp_path):
    run = _cnnspec("compile", SPECS / "resnet18.cnn", cwd=tmp_path,
                   env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert run.returncode == 0, run.stderr
    assert "layer2.0.downsample.0" in run.stdout and "11,689,512" in run.stdout
    assert run.stdout.strip().splitlines()[-1].startswith("wrote resnet18.py")
    source = (tmp_path / "resnet18.py").read_text()
    assert source == to_python(cnnspec.load(SPECS / "resnet18.cnn"),
                               source=str(SPECS / "resnet18.cnn"))


def test_cli_py_needs_no_torch_and_exports_say_clearly_they_do(tmp_path):
    blocker = tmp_path / "blocker" / "torch"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('torch is blocked')\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(blocker.parent), str(ROOT)])}
    run = _cnnspec("compile", SPECS / "lenet5.cnn", "--depth", "1", "-o",
                   tmp_path / "net.py", env=env)
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "net.py").exists()
    run = _cnnspec("compile", SPECS / "lenet5.cnn", "--format", "pt2", env=env,
                   cwd=tmp_path)
    assert run.returncode == 2
    assert "needs torch" in run.stderr and "Traceback" not in run.stderr
    assert not (tmp_path / "lenet5.pt2").exists()


def test_cli_bad_spec_exits_1_with_the_diagnostic(tmp_path):
    bad = tmp_path / "alexnet224.cnn"
    bad.write_text("network a {\n    input 3x224x224\n    conv1: conv 96 k=11 s=4\n}\n")
    run = _cnnspec("compile", bad, cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert run.returncode == 1
    assert "error[E0301]" in run.stderr and "54.25" in run.stderr
    assert "Traceback" not in run.stderr
    assert not (tmp_path / "alexnet224.py").exists()
    assert _cnnspec("compile", bad, "--format", "tflite").returncode == 2


def _compile_in_process(capsys, *args) -> str:
    torch.manual_seed(0)
    assert cli.main(["compile", *map(str, args)]) == 0
    return capsys.readouterr().out


# Exported networks: the plain one, and one with a fractal (its column sampler and
# column-aware joins, in eval mode) and a zero-channel shortcut.
EXPORTED = {"tiny": TINY, "fractal_columns": FRACTAL_COLUMNS}


@pytest.mark.parametrize("name", sorted(EXPORTED))
def test_cli_pt2_reloads_and_matches(tmp_path, capsys, name):
    path = tmp_path / "tiny.cnn"
    path.write_text(EXPORTED[name])
    out = _compile_in_process(capsys, path, "--format", "pt2", "-o", tmp_path / "t.pt2")
    assert f"wrote {tmp_path / 't.pt2'}" in out and "Params:" in out
    torch.manual_seed(0)
    model = cnnspec.build(path).eval()  # the same seed gives the same weights
    program = torch.export.load(tmp_path / "t.pt2")
    x = torch.randn(3, 3, 16, 16)  # batch size is dynamic
    with torch.no_grad():
        torch.testing.assert_close(program.module()(x), model(x), rtol=0, atol=1e-5)


@pytest.mark.parametrize("name", sorted(EXPORTED))
def test_cli_onnx_passes_the_checker_and_onnxruntime_matches(tmp_path, capsys, name):
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    path = tmp_path / "tiny.cnn"
    path.write_text(EXPORTED[name])
    target = tmp_path / "tiny.onnx"  # the format comes from the extension
    out = _compile_in_process(capsys, path, "-o", target)
    assert out.strip().splitlines()[-1].startswith(f"wrote {target} (ONNX")
    onnx.checker.check_model(onnx.load(str(target)))
    torch.manual_seed(0)
    model = cnnspec.build(path).eval()
    session = ort.InferenceSession(str(target), providers=["CPUExecutionProvider"])
    x = torch.randn(4, 3, 16, 16)
    (found,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    with torch.no_grad():
        expected = model(x).numpy()
    assert abs(found - expected).max() < 1e-4


def test_docs_excerpt_is_real_generated_code():
    doc = (ROOT / "docs" / "compile.md").read_text()
    source = to_python(cnnspec.load(SPECS / "resnet18.cnn"), source="specs/resnet18.cnn")
    excerpt = doc.split("```python\n")[1].split("```")[0]  # the first: the excerpt
    lines = [line for line in excerpt.splitlines() if line.strip() not in ("", "...")]
    assert len(lines) > 30
    for line in lines:
        assert line in source.splitlines(), line
