"""Trained weights in every export (cnnspec/export.py): `cnnspec compile --weights`.

A LeNet-5 trained for one epoch on digits is written as standalone source with its
weights beside it, as a torch.export program and as ONNX; each must compute what the
eager model with those weights computes, and not what a fresh model computes. The
generated source still imports only torch at the top; weights that do not fit are
one clear error and write nothing.
"""

import ast
import subprocess
import sys

import pytest
import torch
from conftest import SPECS

import cnnspec
from cnnspec import cli

pytest.importorskip("sklearn")
pytest.importorskip("safetensors")

LENET = str(SPECS / "lenet5.cnn")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The weights of a one-epoch LeNet-5 run, its eager model, and a test batch."""
    root = tmp_path_factory.mktemp("export")
    result = cnnspec.train(LENET, data="digits", out=root / "run", epochs=1,
                           verbose=False)
    weights = result.run_dir / "weights.safetensors"
    model = cnnspec.build(LENET, weights=weights).eval()
    x = torch.randn(5, 1, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = model(x)
        fresh = cnnspec.build(LENET).eval()(x)
    assert (expected - fresh).abs().max() > 0.1  # the weights matter
    return weights, x, expected


def _compile(capsys, *args):
    status = cli.main(["compile", *map(str, args)])
    out, err = capsys.readouterr()
    return status, out, err


def test_py_gets_the_weights_beside_it_and_a_loader(trained, tmp_path, capsys):
    weights, x, expected = trained
    target = tmp_path / "lenet.py"
    status, out, err = _compile(capsys, LENET, "--weights", weights, "-o", target)
    assert status == 0, err
    companion = tmp_path / "lenet.safetensors"
    assert f"wrote {target} (PyTorch source, class Lenet5" in out
    assert f"wrote {companion} (the trained weights of {weights}" in out
    source = target.read_text()
    top_imports = [node for node in ast.parse(source).body
                   if isinstance(node, (ast.Import, ast.ImportFrom))]
    assert {alias.name for node in top_imports for alias in node.names} == {"torch", "nn"}
    # A fresh interpreter that cannot import cnnspec runs the file's load_trained().
    probe = (f"import sys, torch; sys.modules['cnnspec'] = None; "
             f"sys.path.insert(0, {str(tmp_path)!r}); import lenet; "
             f"model = lenet.load_trained(); "
             f"torch.save(model(torch.load({str(tmp_path / 'x.pt')!r})), "
             f"{str(tmp_path / 'y.pt')!r})")
    torch.save(x, tmp_path / "x.pt")
    run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         cwd=tmp_path, timeout=120)
    assert run.returncode == 0, run.stderr
    # Same weights, same input; another process may sum in another order (threads).
    torch.testing.assert_close(torch.load(tmp_path / "y.pt"), expected, rtol=0, atol=1e-5)


def test_pt2_carries_the_trained_values(trained, tmp_path, capsys):
    weights, x, expected = trained
    target = tmp_path / "lenet.pt2"
    status, out, err = _compile(capsys, LENET, "--weights", weights, "-o", target)
    assert status == 0, err
    assert f"trained weights from {weights}" in out.splitlines()[-1]
    program = torch.export.load(target)
    with torch.no_grad():
        torch.testing.assert_close(program.module()(x), expected, rtol=0, atol=1e-5)


def test_onnx_carries_the_trained_values(trained, tmp_path, capsys):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    weights, x, expected = trained
    target = tmp_path / "lenet.onnx"
    status, out, err = _compile(capsys, LENET, "--weights", weights, "-o", target)
    assert status == 0, err
    session = ort.InferenceSession(str(target), providers=["CPUExecutionProvider"])
    (found,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    assert abs(found - expected.numpy()).max() < 1e-5


def test_weights_that_do_not_fit_write_nothing(trained, tmp_path, capsys):
    weights, _, _ = trained
    target = tmp_path / "alexnet.py"
    status, out, err = _compile(capsys, SPECS / "alexnet.cnn", "--weights", weights,
                                "-o", target)
    assert status == 2 and "Traceback" not in err
    assert err.startswith(f"cnnspec: error: {weights} does not fit alexnet")
    assert "conv1.weight: missing from the file" in err
    assert "trained from" in err and "lenet5.cnn" in err  # run.json names the spec
    assert not target.exists() and not target.with_suffix(".safetensors").exists()

    status, _, err = _compile(capsys, LENET, "--weights", tmp_path / "none.pth",
                              "-o", target)
    assert status == 2 and err == f"cnnspec: error: no weights file {tmp_path / 'none.pth'}\n"
    assert not target.exists()
