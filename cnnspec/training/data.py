"""Data sources for training: a source name, a spec's input shape and its recipe's
`augment` list -> train and validation datasets of images the spec accepts.

Takes: a source (`digits`, `synthetic[:N]`, `cifar10:PATH`, `cifar100:PATH`, an
image folder, or a `(train, val)` pair of datasets), the spec's input shape C x H x W,
the recipe's augmentations, and its `interpolation`, `val_resize` and `val_crop` (see
transforms.py). Returns: `Datasets` whose items are
`(float32 tensor of C x H x W, int label)` (a training crop keeps its own size when
`val_resize`/`val_crop` give validation its own), the class names, and one-line
notes on what was converted. Every problem with the data raises `DataError` with a
message that names the file or folder and says what to do. With `tta="flip"` or
`"ten_crop"` (evaluation's test-time augmentation), each validation item is a
V x C x H x W stack of views instead (transforms.TTA).

An image folder is checked before anything else happens: every file, train and val,
must decode as an image (verify.py, with a progress bar on the `progress` stream for
large folders). With `bad_images="stop"` a bad file raises `DataError` naming it;
with `"skip"` the bad files are left out and a note lists them.

Images are cropped, flipped and augmented as uint8 (PIL images and CIFAR's bytes;
`digits` and `synthetic` are float from the start), then float tensors in [0, 1]
until `normalize`, which uses ImageNet's mean and std (0.485, 0.456, 0.406) /
(0.229, 0.224, 0.225) for 3 channels and 0.5 / 0.5 for 1 channel (any other count:
0.5 per channel); transforms.py gives the order, torchvision's reference one. The
validation pipeline is the training one's deterministic counterpart (random crops
become center crops; flips, colour changes, policies and erasing are dropped).
"""

from __future__ import annotations

import copy
import os
import pickle
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.utils.data import Dataset, Subset

from .errors import DataError
from .transforms import is_random, pipelines, v2_module
from .verify import listing, reason, scan_images

SOURCES = ("digits, synthetic[:N], cifar10:PATH, cifar100:PATH, an image folder PATH "
           "(PATH/train/<class>/*, optionally PATH/val/<class>/*), "
           "or a (train, val) pair of datasets")

# Above this many bytes, the deterministic part of a tensor source's pipeline runs
# per item instead of once for the whole set (CIFAR at 227x227 would need 30 GB).
PRECOMPUTE_BYTES = 256 * 2**20
BAD_IMAGES = ("stop", "skip")  # what open_data does with files that do not decode


@dataclass
class Datasets:
    train: Dataset
    val: Dataset
    classes: list[str]
    notes: list[str] = field(default_factory=list)


def open_data(source, input_shape: tuple[int, int, int], augment: tuple = (), *,
              seed: int = 0, val_fraction: float = 0.1, tta: str = "none",
              bad_images: str = "stop", progress=None, interpolation: str = "bilinear",
              val_resize: int | None = None, val_crop: int | None = None) -> Datasets:
    """The train and validation datasets of `source`, shaped for `input_shape`;
    `tta` makes each validation image a stack of views, `bad_images` says what an
    image folder's undecodable files do, `progress` is the text stream for the
    bar of a large folder's check (None: no bar), and `interpolation`, `val_resize`
    and `val_crop` are the recipe's (see the module docstring)."""
    input_shape = _checked_shape(input_shape)
    if bad_images not in BAD_IMAGES:
        raise DataError(f"bad_images must be one of {', '.join(BAD_IMAGES)}, "
                        f"not {bad_images!r}")
    # The keywords of every `pipelines` call below.
    options = {"tta": tta, "interpolation": interpolation, "val_resize": val_resize,
               "val_crop": val_crop}
    if not isinstance(source, str):
        return _pair(source, input_shape, augment, tta)
    if source == "digits":
        return _digits(input_shape, augment, options)
    if source == "synthetic" or source.startswith("synthetic:"):
        return _synthetic(source, input_shape, augment, seed, options)
    if source in ("cifar10", "cifar100"):
        raise DataError(f"`{source}` needs the folder holding its batches: "
                        f"`{source}:PATH`; valid sources: {SOURCES}")
    scheme = re.match(r"([A-Za-z]\w+):", source)
    if scheme and not os.path.exists(source):
        if scheme[1] in ("cifar10", "cifar100"):
            return _cifar(scheme[1], source[len(scheme[0]):], input_shape, augment,
                          options)
        raise DataError(f"unknown data source `{scheme[0]}`; valid sources: {SOURCES}")
    return _image_folder(Path(source), input_shape, augment, seed, val_fraction,
                         options, bad_images, progress)


# --- Pipelines --------------------------------------------------------------------

class TensorImages(Dataset):
    """Images held as one N x C x H x W tensor; `transform` (if any) runs per item."""

    def __init__(self, images: torch.Tensor, labels: list[int], transform=None) -> None:
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int):
        image = self.images[index]
        if self.transform is not None:
            image = self.transform(image)
        return image, self.labels[index]


class SyntheticImages(Dataset):
    """Random images in 10 classes: uniform noise plus a colour per class, so a model
    can learn the labels. Item i is a pure function of (seed, split, i)."""

    def __init__(self, length: int, shape, seed: int, split: int, transform=None) -> None:
        self.shape, self.seed, self.split, self.transform = shape, seed, split, transform
        self.colours = torch.rand(10, shape[0], 1, 1,
                                  generator=torch.Generator().manual_seed(seed))
        labels = torch.Generator().manual_seed(hash((seed, split)) & (2**63 - 1))
        self.labels = torch.randint(10, (length,), generator=labels).tolist()

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int):
        noise = torch.Generator().manual_seed(
            hash((self.seed, self.split, index)) & (2**63 - 1))
        label = self.labels[index]
        image = 0.6 * torch.rand(self.shape, generator=noise) + 0.4 * self.colours[label]
        if self.transform is not None:
            image = self.transform(image)
        return image, label


class Converted(Dataset):
    """A user's dataset with `transform` applied to each image."""

    def __init__(self, dataset: Dataset, transform) -> None:
        self.dataset, self.transform = dataset, transform

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        image, label = self.dataset[index]
        return self.transform(image), label


def _tensor_images(images: torch.Tensor, labels: list[int], steps: list) -> TensorImages:
    """The steps before the first random one run once over all images (when the
    result fits in PRECOMPUTE_BYTES), so an item is an index plus the random rest."""
    v2 = v2_module()
    split = next((i for i, step in enumerate(steps) if is_random(step)), len(steps))
    head = v2.Compose(steps[:split])
    one = head(images[:1])
    if one.numel() * one.element_size() * len(images) > PRECOMPUTE_BYTES:
        return TensorImages(images, labels, v2.Compose(steps))
    images = torch.cat([head(chunk) for chunk in images.split(4096)])
    rest = steps[split:]
    transform = v2.Compose(rest) if rest and is_random(rest[0]) else None
    return TensorImages(images.as_subclass(torch.Tensor).contiguous(), labels, transform)


# --- Sources ----------------------------------------------------------------------

def _digits(input_shape, augment, options: dict) -> Datasets:
    try:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split
    except ImportError:
        raise DataError("the `digits` source needs scikit-learn: "
                        "pip install scikit-learn") from None
    digits = load_digits()
    images = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    labels = digits.target.tolist()
    train_index, val_index = train_test_split(
        list(range(len(labels))), test_size=0.2, random_state=0, stratify=labels)
    train_steps, val_steps, notes = pipelines((1, 8, 8), input_shape, augment, **options)
    train = _tensor_images(images[train_index], [labels[i] for i in train_index],
                           train_steps)
    val = _tensor_images(images[val_index], [labels[i] for i in val_index], val_steps)
    head = (f"digits: {len(train):,} train / {len(val):,} val images "
            "(fixed stratified split, random_state=0)")
    return Datasets(train, val, [str(d) for d in range(10)], [head, *notes])


def _synthetic(source: str, input_shape, augment, seed: int, options: dict
               ) -> Datasets:
    count = source.partition(":")[2]
    if count and not (count.isdigit() and int(count) > 0):
        raise DataError(f"`{source}`: the image count after `synthetic:` must be a "
                        "positive whole number, like `synthetic:512`")
    length = int(count) if count else 512
    val_length = max(length // 4, 64)
    train_steps, val_steps, notes = pipelines(input_shape, input_shape, augment,
                                              **options)
    compose = v2_module().Compose
    own_sizes = options["val_resize"] is not None or options["val_crop"] is not None
    train_transform, val_transform = ((compose(train_steps), compose(val_steps))
                                      if augment or own_sizes else (None, None))
    if options["tta"] != "none":
        val_transform = compose(val_steps)
    train = SyntheticImages(length, input_shape, seed, 0, train_transform)
    val = SyntheticImages(val_length, input_shape, seed, 1, val_transform)
    head = (f"synthetic: {length:,} train / {val_length:,} val random images, "
            f"10 classes (seed {seed})")
    return Datasets(train, val, [str(d) for d in range(10)], [head, *notes])


class _FilesPresent:
    """torchvision checks each CIFAR file's md5, which rejects subsets and test
    fixtures; we check only that the files exist (a damaged one fails to unpickle)."""

    def _check_integrity(self) -> bool:
        batches = Path(self.root) / self.base_folder
        names = [name for name, _ in self.train_list + self.test_list]
        return all((batches / name).is_file() for name in names)

    def _load_meta(self) -> None:
        with open(Path(self.root) / self.base_folder / self.meta["filename"], "rb") as f:
            self.classes = pickle.load(f, encoding="latin1")[self.meta["key"]]
        self.class_to_idx = {name: i for i, name in enumerate(self.classes)}


def _cifar_class(kind: str):
    try:
        from torchvision.datasets import CIFAR10, CIFAR100
    except ImportError:
        raise DataError(f"the `{kind}` source needs torchvision: "
                        "pip install torchvision") from None
    return type(f"_{kind.upper()}", (_FilesPresent, CIFAR10 if kind == "cifar10"
                                     else CIFAR100), {})


def _cifar(kind: str, path: str, input_shape, augment, options: dict) -> Datasets:
    cifar = _cifar_class(kind)
    expected = ([name for name, _ in cifar.train_list + cifar.test_list]
                + [cifar.meta["filename"]])
    wanted = f"the python-pickle batches {', '.join(expected)} (from {cifar.filename})"
    folder = Path(path).expanduser()
    if not path or not folder.is_dir():
        raise DataError(f"{kind} folder `{path}` does not exist; pass the folder that "
                        f"holds {cifar.base_folder}/ with {wanted}")
    root = folder.parent if folder.name == cifar.base_folder else folder
    batches = root / cifar.base_folder
    missing = [name for name in expected if not (batches / name).is_file()]
    if missing:
        raise DataError(f"{batches} lacks {', '.join(missing)}; `{kind}:PATH` needs "
                        f"{wanted}")
    try:
        train, val = cifar(str(root), train=True), cifar(str(root), train=False)
    except (pickle.UnpicklingError, EOFError, KeyError, ValueError, TypeError) as problem:
        raise DataError(f"cannot read the {kind} batches in {batches} ({problem!r}); "
                        f"replace them with {wanted}") from None
    train_steps, val_steps, notes = pipelines((3, 32, 32), input_shape, augment,
                                              **options)
    train_set = _tensor_images(_chw(train.data), list(train.targets), train_steps)
    val_set = _tensor_images(_chw(val.data), list(val.targets), val_steps)
    head = (f"{kind}: {len(train_set):,} train / {len(val_set):,} val images "
            "(the test batch as validation)")
    return Datasets(train_set, val_set, list(train.classes), [head, *notes])


def _chw(images) -> torch.Tensor:
    """CIFAR's N x H x W x C uint8 array as an N x C x H x W tensor."""
    return torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()


def _load_image(path: str):
    """ImageFolder's loader: the image as RGB, or a DataError naming the file."""
    from PIL import Image

    try:
        with open(path, "rb") as f:
            return Image.open(f).convert("RGB")
    except Exception as problem:  # PIL raises many kinds; any means "unusable file"
        raise DataError(f"cannot read image {path}: {reason(problem)}; "
                        "replace or delete the file") from None


def _entries(root: Path) -> list[Path]:
    return [e for e in sorted(root.iterdir()) if not e.name.startswith(".")]


def _class_folders(root: Path) -> list[str]:
    entries = _entries(root)
    classes = [e.name for e in entries if e.is_dir()]
    layout = f"put each class's images in its own folder, {root}/<class>/"
    if not classes and entries:
        raise DataError(f"{root} holds files but no class folders; {layout}")
    if not classes:
        raise DataError(f"{root} is empty; {layout} (at least two classes)")
    if len(classes) == 1:
        raise DataError(f"{root} has only one class folder ({classes[0]}); a classifier "
                        f"needs at least two class folders: {layout}")
    return classes


def _class_folder_dataset(root: Path, classes: list[str], allow_empty=False):
    """torchvision's ImageFolder over `root` with the labels of `classes` (so val/
    numbers its classes as train/ does, even when it lacks some); its transform is
    set once every image has been checked."""
    try:
        from torchvision.datasets import ImageFolder
    except ImportError:
        raise DataError("image folders need torchvision: pip install torchvision") from None

    class ClassFolders(ImageFolder):
        def find_classes(self, directory):
            return list(classes), {name: i for i, name in enumerate(classes)}

    try:
        return ClassFolders(str(root), loader=_load_image,
                            allow_empty=allow_empty)
    except FileNotFoundError as problem:
        raise DataError(f"{root}: {problem}; add images or remove the empty "
                        "class folders") from None


def _image_folder(path: Path, input_shape, augment, seed: int, val_fraction: float,
                  options: dict, bad_images: str = "stop", progress=None) -> Datasets:
    train_root, val_root = _folder_roots(path)
    classes = _class_folders(train_root)
    train_set = _class_folder_dataset(train_root, classes)
    val_set = _val_folder(val_root, classes) if val_root is not None else None
    if val_set is None and not 0 < val_fraction < 1:
        raise DataError(f"val_fraction must lie between 0 and 1, not {val_fraction}")
    # The recipe's errors (channels, tta) first: the scan of a large folder takes time.
    pipelines((3, None, None), input_shape, augment, **options)
    sizes, checked = _checked_images(path, train_set, val_set, bad_images, progress)
    image_shape, size_notes = _image_shape(sizes)
    train_steps, val_steps, notes = pipelines(image_shape, input_shape, augment,
                                              **options)
    compose = v2_module().Compose
    train_set.transform = compose(train_steps)
    if val_set is not None:
        val_set.transform = compose(val_steps)
        train, val, how = train_set, val_set, f"{val_root.name}/ as validation"
    else:
        train, val = _split(train_set, compose(val_steps), path, val_fraction, seed)
        how = f"seeded stratified split, val_fraction={val_fraction}, seed={seed}"
    head = (f"{path.name}: {len(train):,} train / {len(val):,} val images, "
            f"{len(classes)} classes ({how})")
    return Datasets(train, val, classes, [head, *checked, *size_notes, *notes])


def _folder_roots(path: Path) -> tuple[Path, Path | None]:
    """The folder of training images (PATH/train or PATH) and of validation images
    (PATH/val, or None to split the training images)."""
    if not path.exists():
        raise DataError(f"data folder {path} does not exist; valid sources: {SOURCES}")
    if not path.is_dir():
        raise DataError(f"{path} is a file, not a folder; valid sources: {SOURCES}")
    train_root = path / "train" if (path / "train").is_dir() else path
    val_root = path / "val" if train_root != path and (path / "val").is_dir() else None
    return train_root, val_root


def _split(train_set, val_transform, path: Path, val_fraction: float, seed: int):
    """Train and validation Subsets of one folder, by a seeded stratified split."""
    val_set = copy.copy(train_set)
    val_set.transform = val_transform
    train_index, val_index = _stratified_split(train_set.targets, val_fraction, seed)
    if not val_index:
        raise DataError(f"{train_set.root} has too few images to hold out a validation "
                        f"set; add images or a {path}/val/<class>/ folder")
    return Subset(train_set, train_index), Subset(val_set, val_index)


def _val_folder(root: Path, classes: list[str]):
    extra = [e.name for e in _entries(root) if e.is_dir() and e.name not in classes]
    if extra:
        raise DataError(f"{root} has class folders that train/ lacks: {', '.join(extra)}; "
                        "train/ and val/ need the same class folders")
    val = _class_folder_dataset(root, classes, allow_empty=True)
    if not len(val):
        raise DataError(f"{root} has no images; add some to its class folders "
                        "or remove it to split train/ instead")
    return val


# --- Checking every image ---------------------------------------------------------

def _checked_images(path: Path, train_set, val_set, bad_images: str, progress):
    """The sizes (H, W) of the folder's images, and notes: all of them decode,
    or (`bad_images="skip"`) the ones that do not are dropped from the datasets."""
    datasets = [d for d in (train_set, val_set) if d is not None]
    paths = [file for dataset in datasets for file, _ in dataset.samples]
    scan = scan_images(paths, progress)
    if not scan.bad:
        return scan.sizes, []
    count = len(scan.bad)
    them = "it" if count == 1 else "them"
    if bad_images == "stop":
        raise DataError(f"{count:,} of {len(paths):,} images in {path} cannot be read: "
                        f"{listing(scan.bad, path)}; replace or delete {them}, or pass "
                        f"--skip-bad-images to train without {them}")
    for dataset in datasets:
        _drop(dataset, scan.bad)
    _check_left(train_set, val_set, count)
    return scan.sizes, [f"skipped {count:,} of {len(paths):,} images that cannot be "
                        f"read: {listing(scan.bad, path)}"]


def _drop(dataset, bad: dict[str, str]) -> None:
    """Removes the `bad` files from an ImageFolder."""
    dataset.samples = [(file, label) for file, label in dataset.samples
                       if file not in bad]
    dataset.imgs = dataset.samples
    dataset.targets = [label for _, label in dataset.samples]


def _check_left(train_set, val_set, skipped: int) -> None:
    """Every class keeps a training image, and val/ an image, once bad ones are out."""
    kept = set(train_set.targets)
    empty = [name for i, name in enumerate(train_set.classes) if i not in kept]
    if empty:
        raise DataError(f"with its {skipped:,} unreadable images skipped, "
                        f"{train_set.root} has no images of {', '.join(empty)} left; "
                        "add readable images to those class folders")
    if val_set is not None and not val_set.samples:
        raise DataError(f"with its {skipped:,} unreadable images skipped, "
                        f"{val_set.root} has no images left; add readable ones or "
                        "remove it to split train/ instead")


def _image_shape(sizes) -> tuple[tuple, list[str]]:
    """The images' C x H x W for `pipelines` (H and W None when they vary), and a
    note giving the range of sizes when they vary."""
    if len(sizes) == 1:
        return (3, *next(iter(sizes))), []
    heights, widths = {h for h, _ in sizes}, {w for _, w in sizes}
    ranges = [f"{min(n)}..{max(n)}" if len(n) > 1 else str(n.pop())
              for n in (heights, widths)]
    return (3, None, None), [f"images are 3 x {ranges[0]} x {ranges[1]} (sizes vary)"]


def _stratified_split(targets: list[int], val_fraction: float,
                      seed: int) -> tuple[list[int], list[int]]:
    """Train and validation indices: from each class, a seeded random
    round(val_fraction * count) images (at least one when the class has two)."""
    generator = torch.Generator().manual_seed(seed)
    by_class: dict[int, list[int]] = {}
    for index, target in enumerate(targets):
        by_class.setdefault(target, []).append(index)
    train, val = [], []
    for indices in by_class.values():
        order = [indices[i] for i in torch.randperm(len(indices), generator=generator)]
        held = max(1, round(val_fraction * len(indices))) if len(indices) > 1 else 0
        val += order[:held]
        train += order[held:]
    return sorted(train), sorted(val)


def _pair(source, input_shape, augment, tta: str = "none") -> Datasets:
    if not (isinstance(source, (tuple, list)) and len(source) == 2
            and all(hasattr(d, "__getitem__") and hasattr(d, "__len__") for d in source)):
        raise DataError(f"a data source is a string or a (train, val) pair of datasets, "
                        f"not {type(source).__name__}; valid sources: {SOURCES}")
    train, val = source
    shape = _item_shape(train, "train")
    _item_shape(val, "validation")
    notes = [f"datasets passed in: {len(train):,} train / {len(val):,} val images"]
    image = train[0][0]
    if shape != tuple(input_shape) or not (torch.is_tensor(image)
                                           and image.dtype == torch.float32):
        steps, _, conversions = pipelines(shape, input_shape, ())
        transform = v2_module().Compose(steps)
        train, val = Converted(train, transform), Converted(val, transform)
        notes += conversions
    if tta != "none":
        _, views, _ = pipelines(shape, input_shape, (), tta=tta)
        val = Converted(source[1], v2_module().Compose(views))
    if augment:
        notes.append("the recipe's augment is not applied to datasets passed in; "
                     "give them their own transforms")
    return Datasets(train, val, _classes_of(source[0]), notes)


def _item_shape(dataset, name: str) -> tuple[int, int, int]:
    """C x H x W of the dataset's first image (a tensor or a PIL image)."""
    if not len(dataset):
        raise DataError(f"the {name} dataset passed in is empty")
    item = dataset[0]
    if not (isinstance(item, (tuple, list)) and len(item) == 2):
        raise DataError(f"the {name} dataset passed in must yield (image, label) pairs; "
                        f"its first item is a {type(item).__name__}")
    image = item[0]
    if torch.is_tensor(image) and image.dim() in (2, 3):
        return (1, *image.shape) if image.dim() == 2 else tuple(image.shape)
    if hasattr(image, "getbands") and hasattr(image, "size"):
        return (len(image.getbands()), image.size[1], image.size[0])
    raise DataError(f"the {name} dataset passed in must yield images as C x H x W "
                    f"tensors or PIL images; its first image is a {type(image).__name__}"
                    + (f" of shape {tuple(image.shape)}" if torch.is_tensor(image) else ""))


def _classes_of(dataset) -> list[str]:
    """The dataset's `classes` (looking through Subset), or [] when it has none."""
    while dataset is not None:
        classes = getattr(dataset, "classes", None)
        if classes is not None:
            return [str(name) for name in classes]
        dataset = getattr(dataset, "dataset", None)
    return []


def _checked_shape(shape) -> tuple[int, int, int]:
    shape = tuple(shape)
    if len(shape) != 3 or not all(isinstance(n, int) and n > 0 for n in shape):
        raise DataError(f"image data needs a C x H x W input; the spec's input is "
                        f"{'x'.join(map(str, shape))}")
    return shape
