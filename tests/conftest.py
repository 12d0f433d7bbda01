from pathlib import Path

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
def spec_path():
    return lambda name: SPECS / f"{name}.cnn"
