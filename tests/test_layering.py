"""The package's layering (pyproject.toml, [tool.importlinter]) holds, and an import
that breaks it fails `lint-imports` naming the contract and the edge.

`make test` runs `lint-imports` itself; these tests prove the contracts can fail.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT

LINT_IMPORTS = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) \
    or shutil.which("lint-imports")
pytestmark = pytest.mark.skipif(LINT_IMPORTS is None,
                                reason="import-linter is not installed")


def _lint(root: Path):
    environment = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run([LINT_IMPORTS, "--no-cache"], cwd=root, env=environment,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture
def tree(tmp_path):
    """A copy of the package and its contracts, to plant imports in."""
    shutil.copytree(ROOT / "cnnspec", tmp_path / "cnnspec",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    return tmp_path


def test_every_contract_is_kept():
    result = _lint(ROOT)
    assert result.returncode == 0, result.stdout
    assert "4 kept, 0 broken" in result.stdout


def _plant(tree: Path, module: str, line: str) -> None:
    path = tree / module
    text = path.read_text()
    head, marker, rest = text.partition("from __future__ import annotations\n")
    path.write_text(head + marker + line + "\n" + rest)


@pytest.mark.parametrize("module, line, contract, edge", [
    ("cnnspec/frontend/check.py", "from ..training import errors",
     "The pipeline's stages import only downward",
     "cnnspec.frontend.check -> cnnspec.training.errors"),
    ("cnnspec/frontend/parse.py", "import torch",
     "Parsing and checking never import torch, networkx or graphviz",
     "cnnspec.frontend.parse -> torch"),
    ("cnnspec/analyses/summary.py", "from ..training import loop",
     "The analyses and backends never import training",
     "cnnspec.analyses.summary -> cnnspec.training.loop"),
    ("cnnspec/training/run.py", "from ..cli import common",
     "Nothing imports the command line", "cnnspec.training.run -> cnnspec.cli.common"),
])
def test_a_planted_import_breaks_its_contract(tree, module, line, contract, edge):
    _plant(tree, module, line)
    result = _lint(tree)
    assert result.returncode == 1, result.stdout
    broken = result.stdout.partition("Broken contracts")[2]
    assert contract in broken and edge in broken, result.stdout
