"""Compiled specs train: real handwritten digits (scikit-learn's `load_digits`, 1,797
8x8 images, 25% held out), a few epochs of Adam on CPU.

- LeNet-5 (specs/lenet5.cnn, the paper's digit recognizer) learns the digits, resized
  to its 32x32 input with torchvision's transforms.
- FractalNet's global drop-path does what Larsson et al. (2017, section 4.3, table 3)
  report: trained with it, every column alone is a strong classifier; trained
  without it (local drop-path only), the shallow column alone is poor.
"""

import pytest
import torch
from torch.nn import functional as F

import cnnspec
from conftest import SPECS

datasets = pytest.importorskip("sklearn.datasets")
model_selection = pytest.importorskip("sklearn.model_selection")
v2 = pytest.importorskip("torchvision.transforms.v2")

FRACTAL = """
network digits_fractal(global_drop_path = 0.5) {
    input 1x8x8
    block1: fractal 3 drop_path=0.15 global_drop_path=global_drop_path {
        conv 16 k=3 p=1; batchnorm; relu
    }
    pool: maxpool 2
    block2: fractal 3 drop_path=0.15 global_drop_path=global_drop_path {
        conv 32 k=3 p=1; batchnorm; relu
    }
    avgpool global
    flatten
    fc: linear 10
}
"""


@pytest.fixture(scope="module")
def digits():
    data = datasets.load_digits()
    images = torch.tensor(data.images, dtype=torch.float32).unsqueeze(1) / 16.0
    labels = torch.tensor(data.target)
    return model_selection.train_test_split(images, labels, test_size=0.25,
                                            random_state=0, stratify=labels)


def _fit(model, images, labels, epochs: int) -> None:
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    order = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(epochs):
        for batch in torch.randperm(len(images), generator=order).split(64):
            optimizer.zero_grad()
            F.cross_entropy(model(images[batch]), labels[batch]).backward()
            optimizer.step()


def _accuracy(model, images, labels) -> float:
    model.eval()
    with torch.no_grad():
        return (model(images).argmax(1) == labels).float().mean().item()


def test_lenet5_learns_handwritten_digits(digits):
    train_x, test_x, train_y, test_y = digits
    resize = v2.Resize((32, 32), antialias=True)
    torch.manual_seed(0)
    model = cnnspec.build(SPECS / "lenet5.cnn")
    _fit(model, resize(train_x), train_y, epochs=15)
    assert _accuracy(model, resize(test_x), test_y) > 0.95  # measured: 0.971


def _column_accuracies(digits, global_drop_path: float) -> tuple[float, list[float]]:
    train_x, test_x, train_y, test_y = digits
    torch.manual_seed(0)
    model = cnnspec.build(FRACTAL, global_drop_path=global_drop_path)
    _fit(model, train_x, train_y, epochs=20)
    whole = _accuracy(model, test_x, test_y)
    columns = []
    for column in (1, 2, 3):
        model.global_drop_path.column = column
        columns.append(_accuracy(model, test_x, test_y))
    return whole, columns


def test_global_drop_path_makes_every_column_a_classifier(digits):
    whole, columns = _column_accuracies(digits, 0.5)       # measured: 0.991
    assert whole > 0.95
    assert min(columns) > 0.85                              # measured: 0.922, 0.916, 0.909
    local_whole, local_columns = _column_accuracies(digits, 0.0)
    assert local_whole > 0.95                               # measured: 0.989
    assert min(local_columns) < min(columns) - 0.2          # measured: 0.473 (column 1)
