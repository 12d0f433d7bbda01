"""Training data sources (cnnspec/training/data.py): every source yields images of
exactly the spec's input shape, splits are fixed by their seed, and every problem
with the data is a one-line DataError that names the file or folder.

Image folders and CIFAR batches are small fakes written under tmp_path.
"""

import pickle

import numpy as np
import pytest
import torch

import cnnspec
from conftest import SPECS

pytest.importorskip("torchvision")
from PIL import Image  # noqa: E402

from cnnspec.frontend.recipe import Crop, Flip, Normalize  # noqa: E402
from cnnspec.training.data import open_data  # noqa: E402
from cnnspec.training.transforms import PCALighting  # noqa: E402
from cnnspec.training.errors import DataError  # noqa: E402

ALEXNET_AUGMENT = cnnspec.load(SPECS / "alexnet.cnn").recipe.augment


def _write_images(folder, count, size=(40, 30), start=0):
    """`count` small RGB PNGs (width x height = size) of distinct colours."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(start, start + count):
        colour = (i * 37 % 256, i * 91 % 256, i * 53 % 256)
        Image.new("RGB", size, colour).save(folder / f"{i}.png")


def _image_tree(root, classes=("cat", "dog", "fox"), train=4, val=2):
    for name in classes:
        _write_images(root / "train" / name, train)
        if val:
            _write_images(root / "val" / name, val, start=100)
    return root


def _labels(dataset):
    return [dataset[i][1] for i in range(len(dataset))]


# --- digits -----------------------------------------------------------------------

def test_digits_fixed_split_at_spec_shape():
    pytest.importorskip("sklearn")
    data = open_data("digits", (1, 32, 32))
    assert (len(data.train), len(data.val)) == (1437, 360)
    assert data.classes == [str(d) for d in range(10)]
    image, label = data.train[0]
    assert image.shape == (1, 32, 32) and image.dtype == torch.float32
    assert type(image) is torch.Tensor and isinstance(label, int)
    assert set(_labels(data.val)) == set(range(10))
    assert 0 <= data.train.images.min() and data.train.images.max() <= 1
    again = open_data("digits", (1, 32, 32))
    assert torch.equal(data.val.images, again.val.images)
    assert data.train.labels == again.train.labels
    assert data.notes[0].startswith("digits: 1,437 train / 360 val images")
    assert "images are 1x8x8; resized to 1x32x32 for the spec's input" in data.notes


def test_digits_to_three_channels():
    pytest.importorskip("sklearn")
    data = open_data("digits", (3, 28, 28))
    image, _ = data.val[5]
    assert image.shape == (3, 28, 28)
    assert torch.equal(image[0], image[2])
    assert "converted 1 channel to 3 by repeating it" in data.notes


# --- image folders ----------------------------------------------------------------

def test_folder_with_train_and_val(tmp_path):
    root = _image_tree(tmp_path / "pets")
    data = open_data(str(root), (1, 32, 32))
    assert data.classes == ["cat", "dog", "fox"]
    assert (len(data.train), len(data.val)) == (12, 6)
    assert sorted(set(_labels(data.val))) == [0, 1, 2]
    assert data.train[0][0].shape == (1, 32, 32)
    assert data.val[0][0].shape == (1, 32, 32)
    assert "converted RGB to 1 channel" in data.notes


def test_folder_with_alexnet_augmentation(tmp_path):
    root = _image_tree(tmp_path / "pets", train=2, val=1)
    data = open_data(str(root), (3, 227, 227), ALEXNET_AUGMENT)
    assert data.train[0][0].shape == (3, 227, 227)
    assert data.val[0][0].shape == (3, 227, 227)
    assert any("shorter side resized to 259 before the random_crop 227" in note
               for note in data.notes)


def test_val_folder_numbers_classes_as_train_does(tmp_path):
    root = _image_tree(tmp_path / "pets", val=0)
    _write_images(root / "val" / "dog", 2)
    data = open_data(str(root), (3, 32, 32))
    assert _labels(data.val) == [1, 1]


def test_folder_without_val_is_split_by_seed(tmp_path):
    for name in ("a", "b"):
        _write_images(tmp_path / "flat" / name, 10)
    source = str(tmp_path / "flat")
    data = open_data(source, (3, 16, 16), val_fraction=0.2, seed=0)
    assert (len(data.train), len(data.val)) == (16, 4)
    assert sorted(_labels(data.val)) == [0, 0, 1, 1]
    same = open_data(source, (3, 16, 16), val_fraction=0.2, seed=0)
    other = open_data(source, (3, 16, 16), val_fraction=0.2, seed=1)
    assert same.val.indices == data.val.indices
    assert other.val.indices != data.val.indices
    assert not set(data.train.indices) & set(data.val.indices)
    assert "seeded stratified split" in data.notes[0]


def test_train_folder_alone_is_split(tmp_path):
    root = _image_tree(tmp_path / "pets", val=0)
    data = open_data(str(root), (3, 16, 16), val_fraction=0.25)
    assert (len(data.train), len(data.val)) == (9, 3)
    assert data.classes == ["cat", "dog", "fox"]


# --- CIFAR ------------------------------------------------------------------------

def _pickle(path, entry):
    with open(path, "wb") as f:
        pickle.dump(entry, f)


def _fake_cifar10(root, per_batch=4):
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        _pickle(folder / name, {
            "data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8),
            "labels": [int(x) for x in rng.integers(0, 10, per_batch)],
        })
    _pickle(folder / "batches.meta", {"label_names": [f"class{i}" for i in range(10)]})
    return folder


def test_cifar10_from_local_batches(tmp_path):
    folder = _fake_cifar10(tmp_path)
    for path in (tmp_path, folder):
        data = open_data(f"cifar10:{path}", (3, 32, 32))
        assert (len(data.train), len(data.val)) == (20, 4)
        assert data.classes == [f"class{i}" for i in range(10)]
        image, label = data.train[3]
        assert image.shape == (3, 32, 32) and 0 <= image.min() and image.max() <= 1
        assert 0 <= label < 10


def test_cifar100_from_local_batches(tmp_path):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    for name, count in (("train", 6), ("test", 2)):
        _pickle(folder / name, {"data": np.zeros((count, 3072), dtype=np.uint8),
                                "fine_labels": list(range(count))})
    _pickle(folder / "meta", {"fine_label_names": [f"c{i}" for i in range(100)]})
    data = open_data(f"cifar100:{tmp_path}", (1, 32, 32))
    assert (len(data.train), len(data.val), len(data.classes)) == (6, 2, 100)
    assert data.train[5][0].shape == (1, 32, 32) and data.train[5][1] == 5


# --- errors -----------------------------------------------------------------------

def _error(source, shape=(3, 32, 32), **options) -> str:
    with pytest.raises(DataError) as problem:
        open_data(source, shape, **options)
    message = str(problem.value)
    assert "\n" not in message
    return message


def test_missing_folder(tmp_path):
    message = _error(str(tmp_path / "nowhere"))
    assert f"{tmp_path / 'nowhere'} does not exist" in message
    assert "cifar10:PATH" in message  # lists what else it could be


def test_empty_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    message = _error(str(tmp_path / "empty"))
    assert "is empty" in message and "<class>" in message


def test_files_without_class_folders(tmp_path):
    _write_images(tmp_path / "loose", 2)
    assert "no class folders" in _error(str(tmp_path / "loose"))


def test_one_class(tmp_path):
    _write_images(tmp_path / "one" / "cat", 3)
    message = _error(str(tmp_path / "one"))
    assert "only one class folder (cat)" in message
    assert "at least two class folders" in message


def test_class_folder_without_images(tmp_path):
    _write_images(tmp_path / "pets" / "cat", 2)
    (tmp_path / "pets" / "dog").mkdir()
    message = _error(str(tmp_path / "pets"))
    assert "dog" in message and "add images" in message


def test_corrupt_image_names_the_file(tmp_path):
    # Damaged after open_data checked it (tests/test_data_verify.py: before).
    root = _image_tree(tmp_path / "pets", val=0)
    bad = root / "train" / "dog" / "x.png"
    Image.new("RGB", (40, 30)).save(bad)
    data = open_data(str(root), (3, 32, 32), val_fraction=0.5)
    bad.write_bytes(b"this is not a png")
    dataset = data.train.dataset
    index = next(i for i, (path, _) in enumerate(dataset.samples) if path == str(bad))
    with pytest.raises(DataError) as problem:
        dataset[index]
    assert f"cannot read image {bad}" in str(problem.value)


def test_corrupt_image_error_through_a_worker(tmp_path):
    root = _image_tree(tmp_path / "pets", classes=("a", "b"), train=1)
    bad = root / "train" / "a" / "0.png"
    data = open_data(str(root), (3, 32, 32))
    bad.write_bytes(b"garbage")  # damaged after open_data checked it
    loader = torch.utils.data.DataLoader(data.train, batch_size=2, num_workers=1)
    batches = iter(loader)
    with pytest.raises(DataError) as problem:
        next(batches)
    # Stopped by the garbage collector instead, the worker takes 5 s to join.
    batches._shutdown_workers()
    message = str(problem.value)
    assert message.startswith(f"cannot read image {bad}")


def test_source_strings():
    assert "`cifar10:PATH`" in _error("cifar10")
    message = _error("imagenet:/data")
    assert "unknown data source `imagenet:`" in message and "digits" in message
    assert "positive whole number" in _error("synthetic:lots")


def test_cifar_missing_files(tmp_path):
    folder = _fake_cifar10(tmp_path)
    (folder / "data_batch_3").unlink()
    message = _error(f"cifar10:{tmp_path}")
    assert str(folder) in message and "data_batch_3" in message
    assert "batches.meta" in message  # the full list of what it needs
    assert "does not exist" in _error(f"cifar10:{tmp_path / 'nowhere'}")


def test_channel_count_that_cannot_be_converted(tmp_path):
    root = _image_tree(tmp_path / "pets", val=0)
    assert "spec's input has 4" in _error(str(root), (4, 32, 32))


# --- user datasets and synthetic data ---------------------------------------------

def test_pair_of_datasets_converted_only_when_needed():
    images = torch.rand(8, 1, 28, 28)
    train = torch.utils.data.TensorDataset(images, torch.arange(8))
    data = open_data((train, train), (1, 32, 32))
    assert data.classes == []
    assert data.train[0][0].shape == (1, 32, 32)
    assert "images are 1x28x28; resized to 1x32x32 for the spec's input" in data.notes
    train.classes = ["a", "b"]
    same = open_data((train, train), (1, 28, 28), ALEXNET_AUGMENT)
    assert same.train is train and same.classes == ["a", "b"]
    assert any("augment is not applied" in note for note in same.notes)


def test_pair_must_yield_images():
    with pytest.raises(DataError, match="yield"):
        open_data(([1, 2], [3]), (1, 8, 8))


def test_synthetic_is_seeded_and_shaped():
    data = open_data("synthetic:40", (3, 12, 10))
    assert (len(data.train), len(data.val), len(data.classes)) == (40, 64, 10)
    assert data.train[7][0].shape == (3, 12, 10)
    again = open_data("synthetic:40", (3, 12, 10))
    assert torch.equal(data.train[7][0], again.train[7][0])
    other = open_data("synthetic:40", (3, 12, 10), seed=1)
    assert _labels(other.train) != _labels(data.train)
    assert len(open_data("synthetic", (1, 8, 8)).train) == 512


# --- augmentation -----------------------------------------------------------------

def test_pca_lighting_shifts_each_channel_by_a_constant():
    image = torch.rand(3, 5, 6)
    torch.manual_seed(0)
    shifted = PCALighting(0.1)(image)
    shift = shifted - image
    assert not torch.allclose(shift, torch.zeros_like(shift))
    assert torch.allclose(shift, shift[:, :1, :1].expand_as(shift), atol=1e-6)
    torch.manual_seed(0)
    assert torch.equal(PCALighting(0.1)(image), shifted)
    assert torch.equal(PCALighting(0.0)(image), image)
    gray = torch.rand(1, 5, 6)
    assert torch.equal(PCALighting(0.1)(gray), gray)


def test_validation_is_deterministic_and_training_random(tmp_path):
    pytest.importorskip("sklearn")
    augment = (Crop(kind="random_crop", size=32, padding=4),
               Flip(kind="horizontal_flip"), Normalize(kind="normalize"))
    data = open_data("digits", (1, 32, 32), augment)
    assert torch.equal(data.val[3][0], data.val[3][0])
    torch.manual_seed(0)
    draws = [data.train[3][0] for _ in range(8)]
    assert any(not torch.equal(draws[0], draw) for draw in draws[1:])
    assert all(draw.shape == (1, 32, 32) for draw in draws)
    # normalize with (0.5,)/(0.5,) for 1 channel: [0, 1] -> [-1, 1]
    assert data.val.images.min() >= -1 and data.val.images.max() <= 1
    assert data.val.images.min() < -0.9


def test_random_resized_crop_validates_as_torchvisions_eval_preset():
    """Validation after `random_resized_crop S` is torchvision's eval preset: the
    shorter side resized to S * 256/224, then the centre S x S (references/
    classification/presets.py, resize_size=256 for crop_size=224)."""
    from torchvision.transforms import v2

    from cnnspec.training.transforms import pipelines

    _, val_steps, _ = pipelines((3, 100, 60), (3, 24, 24),
                                (Crop(kind="random_resized_crop", size=24),))
    image = torch.rand(3, 100, 60, generator=torch.Generator().manual_seed(0))
    reference = v2.Compose([v2.Resize(round(24 * 256 / 224), antialias=True),
                            v2.CenterCrop(24)])
    ours = v2.Compose(val_steps)(image)
    assert ours.shape == (3, 24, 24)
    assert torch.equal(ours, reference(image))
