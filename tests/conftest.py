import ast
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"

# FractalNet's expansion rule (Larsson et al. 2017, eq. 1-2): f_1 = conv;
# f_C = mean(f_{C-1} o f_{C-1}, conv), with local drop-path on the join.
FRACTAL_BLOCK = """
block fractal(c, columns) {
    if columns == 1 { conv c k=3 p=1 }
    else {
        mean drop_path=0.15 {
            { fractal(c, columns - 1); fractal(c, columns - 1) }
            conv c k=3 p=1
        }
    }
}
"""


@pytest.fixture
def cli(capsys):
    """`cnnspec ARGS` through `cli.main` in this process: returncode, stdout, stderr
    as `subprocess.run` gives them (without seconds spent starting an interpreter,
    and visible to coverage and mutation testing). An exception escaping `main`
    fails the test."""
    from cnnspec.cli import main

    def run(*args):
        capsys.readouterr()
        try:
            status = main([str(arg) for arg in args])
        except SystemExit as stop:  # argparse's usage errors, --help, --version
            status = stop.code
        out, err = capsys.readouterr()
        return SimpleNamespace(returncode=status, stdout=out, stderr=err)
    return run


def fails(result, status, *phrases):
    """A command's result (as `cli` gives it) failed with `status`, no traceback,
    and each phrase in its stderr."""
    assert result.returncode == status, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr + result.stdout
    for phrase in phrases:
        assert phrase in result.stderr, result.stderr


@pytest.fixture
def spec_path():
    return lambda name: SPECS / f"{name}.cnn"


def line_of(spec: str, text: str) -> int:
    """The 1-based line of `specs/<spec>.cnn` that holds `text`."""
    lines = (SPECS / f"{spec}.cnn").read_text().splitlines()
    return next(i for i, line in enumerate(lines, 1) if text in line)


def modules_imported_by(args: list[str], modules: tuple[str, ...]) -> list[str]:
    """Which of `modules` `cnnspec ARGS` imports, run in a fresh interpreter (the
    commands that only read a spec must start without the heavy backends)."""
    probe = ("import sys, runpy; sys.argv = ['cnnspec'] + %r\n"
             "try:\n    runpy.run_module('cnnspec', run_name='__main__')\n"
             "except SystemExit:\n    pass\n"
             "print(sorted(m for m in %r if m in sys.modules))") % (
                 [str(a) for a in args], tuple(modules))
    run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         timeout=60)
    lines = run.stdout.strip().splitlines()
    assert lines, run.stderr
    return ast.literal_eval(lines[-1])


def _write_image_folder(root: Path, classes: int = 2, per_class: int = 4,
                        size: tuple[int, int] = (32, 32), val: bool = False) -> Path:
    """A tiny ImageFolder of PNGs (class k tinted by a colour of its own, plus noise,
    so it can be learnt): root/train/<class>/*.png and, with val, root/val/..."""
    import numpy
    from PIL import Image

    rng = numpy.random.default_rng(0)
    width, height = size
    for split in ("train", "val") if val else ("train",):
        for k in range(classes):
            folder = root / split / "abcdefghij"[k]
            folder.mkdir(parents=True)
            tint = numpy.array([(k * 97) % 256, (k * 53 + 80) % 256, (k * 151) % 256])
            for i in range(per_class):
                pixels = rng.integers(0, 64, (height, width, 3)) + tint * 0.75
                Image.fromarray(pixels.clip(0, 255).astype("uint8")).save(
                    folder / f"{i}.png")
    return root


@pytest.fixture
def image_folder():
    return _write_image_folder


def pytest_configure(config):
    """Under pytest-xdist each worker (and every process a test starts) gets one
    thread: two workers with two threads each on two cores only wait on each other."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        os.environ["OMP_NUM_THREADS"] = "1"
        _one_torch_thread()


def pytest_collection_finish(session):
    """Again after collection: a test module that sets torch's threads when imported
    would otherwise set them for every test of its worker (every worker imports every
    module). Two threads per worker made the training tests 5-15x slower."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        _one_torch_thread()


def _one_torch_thread():
    try:
        import torch
    except ImportError:
        return
    torch.set_num_threads(1)
