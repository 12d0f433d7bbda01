"""Evaluation and prediction with trained weights: `evaluate` and `predict`.

Takes: a spec (a `Spec` or a path), one or more weights files (the
`weights.safetensors` of a `cnnspec train` run, or any state dict of the same
network) and a data source (`evaluate`, its validation split) or image files
(`predict`). Returns: an `EvaluationReport` (top-1, top-5, loss, per-class accuracy,
the confusion matrix; each member's figures for an ensemble) or one `Prediction`
per image. Top-5 is None, with a note saying why, when the network scores 5 or
fewer classes: then every true class is among the top 5. `draw_confusion` writes
the confusion matrix as an image (matplotlib).

Several weights files make an ensemble that averages the members' softmax, as
Krizhevsky et al. (2012) averaged five networks. Test-time augmentation averages the
softmax over each image's views: `flip` (the image and its mirror) or AlexNet's
`ten_crop` (four corners and the centre, and their mirrors). The loss is the mean
negative log of the averaged probability of the true class: the cross-entropy, for
one model and one view.

Weights from a run folder bring its run.json: the class names, the `--set` values
(so that `classes` fits the weights), the data source, the split's seed and whether
undecodable images were left out (`--skip-bad-images`). Images
go through the recipe's deterministic validation pipeline (data.py, transforms.py).
Raises `UsageError`, `DataError` and `WeightsError` (exit status 2) and
`TrainingError` (exit status 1) with one-line messages; never prints.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from pydantic import BaseModel
from torch.nn import functional as F
from torch.utils.data import DataLoader

from .data import _load_image, open_data
from .distributed import pick_device
from .errors import DataError, UsageError
from .loop import TOP_K, reports_top5, top5_note
from .run import IN_MEMORY, RUN_FILE, check_classifier
from .transforms import TTA, pipelines, v2_module
from .weights import OPTIONAL, WeightsError, WeightsReport, compare, read_state_dict

CHART_FORMATS = (".png", ".svg", ".pdf")


class MemberScore(BaseModel):
    """One member of an ensemble, scored on its own."""
    weights: str
    top1: float
    top5: float | None  # None with 5 or fewer classes
    loss: float


class EvaluationReport(BaseModel):
    spec: str
    data: str
    tta: str
    images: int
    classes: list[str]
    top1: float
    top5: float | None                   # None with 5 or fewer classes
    loss: float
    per_class: dict[str, float | None]   # None: no image of that class in the data
    confusion: list[list[int]]           # rows: the true class; columns: predicted
    members: list[MemberScore] = []      # an ensemble's members; empty for one model
    notes: list[str] = []

    def to_json(self) -> dict:
        """The `--json` object: members only for an ensemble, notes left out."""
        return self.model_dump(exclude={"notes"} | (set() if self.members
                                                     else {"members"}))


class Prediction(BaseModel):
    image: str
    classes: list[str]           # the most probable first
    probabilities: list[float]


# --- Entry points -----------------------------------------------------------------

def evaluate(spec, weights, data=None, *, tta: str = "none", batch: int = 64,
             device: str = "auto", workers: int = 0, network: str | None = None,
             params: dict | None = None, seed: int | None = None,
             val_fraction: float | None = None,
             skip_bad_images: bool | None = None) -> EvaluationReport:
    """Score `weights` (one file, or several for an ensemble) on the validation split
    of `data` (default: the data of the weights' run, split as that run split it,
    undecodable images left out when the run left them out)."""
    paths = _weights_paths(weights)
    _check_options(tta, batch)
    record = _run_record(paths)
    spec = _spec(spec, network, params, record)
    data = _data_source(data, record, paths[0])
    config = record.get("config") or {}
    datasets = open_data(data, tuple(spec.input_shape), _augment(spec),
                         **_sizes(spec), seed=_first(seed, config.get("seed"), 0),
                         val_fraction=_first(val_fraction, config.get("val_fraction"), 0.1),
                         tta=tta, bad_images="skip" if _first(
                             skip_bad_images, config.get("skip_bad_images"), False)
                         else "stop")
    notes = list(datasets.notes)
    spec = _fit_data_classes(spec, datasets.classes, record, data, notes)
    classes = _class_names(datasets.classes, record, spec.output_shape[0], notes)
    target = pick_device(device)
    models = [_model(spec, path, record, target) for path in paths]
    loader = DataLoader(datasets.val, batch_size=max(1, batch // TTA[tta]),
                        num_workers=workers)
    members, ensemble = _score(models, loader, len(classes), target)
    return _report(spec, data, tta, classes, paths, members, ensemble, notes)


def predict(spec, weights, images, *, top: int = 5, tta: str = "none", batch: int = 64,
            device: str = "auto", network: str | None = None,
            params: dict | None = None) -> list[Prediction]:
    """The `top` most probable classes of each image file, with their probabilities
    (an ensemble's averaged softmax when `weights` names several files)."""
    paths = _weights_paths(weights)
    _check_options(tta, batch)
    if top < 1:
        raise UsageError(f"top must be 1 or more, not {top}")
    images = [str(image) for image in ([images] if isinstance(images, (str, Path))
                                       else images)]
    if not images:
        raise UsageError("no images to predict: give one or more image files")
    record = _run_record(paths)
    spec = _spec(spec, network, params, record)
    check_classifier(spec)
    classes = _class_names([], record, spec.output_shape[0], [])
    inputs = torch.stack([_read_image(image, spec, tta) for image in images])
    target = pick_device(device)
    models = [_model(spec, path, record, target) for path in paths]
    with torch.inference_mode():
        log_probs = torch.cat([_ensemble_log_probs(models, chunk, target)
                               for chunk in inputs.split(max(1, batch // TTA[tta]))])
    k = min(top, len(classes))
    values, indices = log_probs.exp().topk(k, dim=1)
    return [Prediction(image=image, classes=[classes[i] for i in row.tolist()],
                       probabilities=p.tolist())
            for image, row, p in zip(images, indices, values)]


def trained_model(spec, weights, *, network: str | None = None,
                  params: dict | None = None):
    """The spec with the parameters of the run that trained `weights` (where the
    caller set none), and its module on the CPU holding every tensor of `weights`,
    in evaluation mode: what an export of trained weights is made from."""
    path = Path(weights)
    record = _run_record([path])
    spec = _spec(spec, network, params, record)
    return spec, _model(spec, path, record, torch.device("cpu"))


def draw_confusion(report: EvaluationReport, path) -> None:
    """The confusion matrix as an image: class names on the axes (true down the side,
    predicted along the bottom), counts in the cells when there are few classes."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    matrix = torch.tensor(report.confusion)
    count = len(report.classes)
    side = min(3.5 + 0.45 * count, 24)
    figure, axes = plt.subplots(figsize=(side + 1, side))
    shown = axes.imshow(matrix.numpy(), cmap="Blues")
    if count <= 60:
        rotate = 90 if max(len(name) for name in report.classes) > 3 else 0
        axes.set_xticks(range(count), report.classes, rotation=rotate)
        axes.set_yticks(range(count), report.classes)
    if count <= 25:
        _write_counts(axes, matrix)
    axes.set_xlabel("predicted class")
    axes.set_ylabel("true class")
    axes.set_title(f"{report.spec} on {report.data}: top-1 {report.top1:.2%}"
                   + (f" (ensemble of {len(report.members)})" if report.members else ""))
    figure.colorbar(shown, ax=axes, fraction=0.046, pad=0.04)
    figure.tight_layout()
    try:
        figure.savefig(path, dpi=120)
    except OSError as problem:
        raise UsageError(f"cannot write {path}: {problem.strerror or problem}") from None
    finally:
        plt.close(figure)


def _write_counts(axes, matrix: torch.Tensor) -> None:
    high = int(matrix.max()) if matrix.numel() else 0
    for (row, column), value in zip(torch.cartesian_prod(
            torch.arange(matrix.shape[0]), torch.arange(matrix.shape[1])).tolist(),
            matrix.flatten().tolist()):
        if value:
            axes.text(column, row, str(value), ha="center", va="center", fontsize=8,
                      color="white" if value > high / 2 else "black")


# --- The spec, the weights and their run ------------------------------------------

def _weights_paths(weights) -> list[Path]:
    paths = [weights] if isinstance(weights, (str, Path)) else list(weights or [])
    if not paths:
        raise UsageError("no weights given: pass a weights file (a run's "
                         "weights.safetensors, or a .pth state dict)")
    return [Path(path) for path in paths]


def _check_options(tta: str, batch: int) -> None:
    if tta not in TTA:
        raise UsageError(f"unknown test-time augmentation `{tta}`; choose "
                         + ", ".join(TTA))
    if batch < 1:
        raise UsageError(f"batch must be 1 or more, not {batch}")


def _run_record(paths: list[Path]) -> dict:
    """The run.json beside the weights (the first member's that has one); members
    trained on other classes cannot be averaged."""
    records = [(path, _read_record(path)) for path in paths]
    found = [(path, record) for path, record in records if record]
    for path, record in found[1:]:
        if record.get("classes") != found[0][1].get("classes"):
            raise UsageError(f"{path} and {found[0][0]} were trained on different "
                             "classes (see their run.json); an ensemble's members must "
                             "score the same classes")
    return found[0][1] if found else {}


def _read_record(weights: Path) -> dict:
    path = weights.parent / RUN_FILE
    if not path.is_file():
        return {}
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError) as problem:
        raise UsageError(f"cannot read {path} ({problem}); repair it, or move "
                         f"{weights.name} out of the run folder") from None
    return record if isinstance(record, dict) else {}


def _spec(spec, network, params, record: dict):
    """The checked spec with the caller's parameters, and the run's where the caller
    set none (so `classes` fits weights trained with `--set classes=N`)."""
    from ..api import Spec, load

    params = dict(params or {})
    if isinstance(spec, Spec):
        spec = spec.with_params(**params) if params else spec
    else:
        spec = load(spec, network=network, **params)
    inherited = {name: value for name, value in (record.get("params") or {}).items()
                 if name not in spec.overrides and name in spec.graph.params}
    if (record.get("classes") and "classes" in spec.graph.params
            and "classes" not in spec.overrides):
        inherited.setdefault("classes", len(record["classes"]))
    return spec.with_params(**inherited) if inherited else spec


def _augment(spec) -> tuple:
    return spec.recipe.augment if spec.recipe is not None else ()


def _sizes(spec) -> dict:
    """The recipe's validation resize and crop and its interpolation, which the
    validation images get as in training."""
    recipe = spec.recipe
    if recipe is None:
        return {}
    return {"interpolation": recipe.interpolation, "val_resize": recipe.val_resize,
            "val_crop": recipe.val_crop}


def _first(*values):
    return next(value for value in values if value is not None)


def _data_source(data, record: dict, weights: Path):
    if data is not None:
        return data
    recorded = record.get("data")
    if recorded is None or recorded == IN_MEMORY:
        raise UsageError(f"give the data to evaluate on (--data); {weights} has no "
                         "run.json beside it that names its data")
    return recorded


def _fit_data_classes(spec, found: list[str], record: dict, data, notes: list[str]):
    """The spec with the data's class count when neither the caller nor the run set
    `classes` (as `cnnspec train` does); a count the weights cannot score is an error."""
    check_classifier(spec)
    scored, count = spec.output_shape[0], len(found)
    if count == 0 or count == scored:
        return spec
    free = ("classes" in spec.graph.params and "classes" not in spec.overrides
            and not record.get("classes"))
    if free:
        notes.append(f"classes: {count}, taken from the data (the spec's default is "
                     f"{spec.graph.params['classes']})")
        return spec.with_params(classes=count)
    names = ", ".join(found[:6]) + (", ..." if count > 6 else "")
    raise DataError(f"{spec.name} scores {scored} classes but {data} has {count} "
                    f"({names}); evaluate on data with the classes the weights were "
                    "trained on")


def _class_names(found: list[str], record: dict, count: int, notes: list[str]
                 ) -> list[str]:
    """The data's class names, else the run's, else the indices 0..count-1."""
    trained = [str(name) for name in record.get("classes") or []]
    if found and trained and found != trained:
        notes.append("the data's classes (" + ", ".join(found[:6]) + ") are not those "
                     "the weights were trained on (" + ", ".join(trained[:6]) + "); "
                     "they are matched by index")
    names = found or trained
    return names if len(names) == count else [str(i) for i in range(count)]


def _model(spec, path: Path, record: dict, device: torch.device) -> torch.nn.Module:
    """`spec`'s module with every tensor from `path`, in evaluation mode."""
    from ..backends.torch_backend import to_torch

    model = to_torch(spec)
    report, usable = compare(model, read_state_dict(path), path)
    _check_fit(report, path, spec, record)
    model.load_state_dict(usable, strict=False)
    return model.to(device).eval()


def _check_fit(report: WeightsReport, path: Path, spec, record: dict) -> None:
    """Evaluation needs every tensor, the classifier's too."""
    differ = report.mismatched + [f"{name}: missing from the file" for name in
                                  report.missing if not name.endswith(OPTIONAL)]
    if not differ:
        return
    settings = ", ".join(f"{k}={v}" for k, v in spec.overrides.items())
    trained = (f"; its run.json says it was trained from {record.get('spec')}"
               + (f" with {record['params']}" if record.get("params") else "")
               if record.get("spec") else "")
    raise WeightsError(
        f"{path} does not fit {spec.name}{f' ({settings})' if settings else ''}: "
        f"{len(differ)} tensors differ, " + "; ".join(differ[:3])
        + ("; ..." if len(differ) > 3 else "") + trained
        + ". Give the spec and --set values the weights were trained with")


# --- Scoring ----------------------------------------------------------------------

def _read_image(path: str, spec, tta: str) -> torch.Tensor:
    """One image file through the validation pipeline: C x H x W (V x C x H x W with
    test-time augmentation)."""
    file = Path(path)
    if not file.exists():
        raise DataError(f"no image file {path}")
    if file.is_dir():
        raise DataError(f"{path} is a folder, not an image file")
    image = _load_image(path)
    _, steps, _ = pipelines((3, image.height, image.width), tuple(spec.input_shape),
                            _augment(spec), tta=tta, **_sizes(spec))
    return v2_module().Compose(steps)(image)


def _log_probs(model, images: torch.Tensor, device: torch.device) -> torch.Tensor:
    """log softmax per image, averaged in probability over its views: B x K."""
    views = images.shape[1] if images.dim() == 5 else 1
    flat = images.flatten(0, 1) if images.dim() == 5 else images
    logits = model(flat.to(device)).float()
    log_probs = F.log_softmax(logits, dim=1).view(images.shape[0], views, -1)
    return (torch.logsumexp(log_probs, dim=1) - math.log(views)).cpu()


def _ensemble_log_probs(models, images, device) -> torch.Tensor:
    return _average(torch.stack([_log_probs(m, images, device) for m in models]))


def _average(log_probs: torch.Tensor) -> torch.Tensor:
    """The log of the mean probability over the first dimension."""
    return torch.logsumexp(log_probs, dim=0) - math.log(log_probs.shape[0])


class _Scores:
    """Running sums for top-1, top-5, loss and the confusion matrix."""

    def __init__(self, classes: int) -> None:
        self.classes = classes
        self.top1 = self.top5 = self.count = 0
        self.loss = 0.0
        self.confusion = torch.zeros(classes, classes, dtype=torch.int64)

    def add(self, log_probs: torch.Tensor, labels: torch.Tensor) -> None:
        top = log_probs.topk(min(TOP_K, self.classes), dim=1).indices
        hits = top == labels[:, None]
        self.top1 += int(hits[:, 0].sum())
        self.top5 += int(hits.any(1).sum())
        self.loss -= float(log_probs.gather(1, labels[:, None]).double().sum())
        self.count += labels.numel()
        self.confusion += torch.bincount(labels * self.classes + top[:, 0],
                                         minlength=self.classes ** 2
                                         ).view(self.classes, self.classes)

    def rates(self) -> tuple[float, float | None, float]:
        """Top-1, top-5 (None with 5 or fewer classes) and the mean loss."""
        count = max(self.count, 1)
        top5 = self.top5 / count if reports_top5(self.classes) else None
        return self.top1 / count, top5, self.loss / count


def _score(models, loader, classes: int, device) -> tuple[list[_Scores], _Scores]:
    members = [_Scores(classes) for _ in models]
    ensemble = _Scores(classes)
    with torch.inference_mode():
        for images, labels in loader:
            labels = torch.as_tensor(labels)
            each = torch.stack([_log_probs(model, images, device) for model in models])
            for scores, log_probs in zip(members, each):
                scores.add(log_probs, labels)
            ensemble.add(_average(each), labels)
    if not ensemble.count:
        raise DataError("the validation set is empty; nothing to evaluate")
    return members, ensemble


def _report(spec, data, tta, classes, paths, members, ensemble, notes
            ) -> EvaluationReport:
    top1, top5, loss = ensemble.rates()
    rows = ensemble.confusion.sum(1).tolist()
    diagonal = ensemble.confusion.diagonal().tolist()
    per_class = {name: (hit / row if row else None)
                 for name, hit, row in zip(classes, diagonal, rows)}
    scored = [MemberScore(weights=str(path), **dict(zip(("top1", "top5", "loss"),
                                                        scores.rates())))
              for path, scores in zip(paths, members)] if len(paths) > 1 else []
    if top5 is None:
        notes = notes + [top5_note(len(classes))]
    return EvaluationReport(
        spec=spec.name, data=data if isinstance(data, str) else IN_MEMORY, tta=tta,
        images=ensemble.count, classes=classes, top1=top1, top5=top5, loss=loss,
        per_class=per_class, confusion=ensemble.confusion.tolist(), members=scored,
        notes=notes)
