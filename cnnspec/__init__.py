"""cnnspec: a compiler for convolutional network architectures.

`load(path_or_text) -> Spec` parses, elaborates and checks a `.cnn` spec; a bad spec
raises `SpecError` carrying located diagnostics. The pipeline, one package per stage:
`frontend` (parse -> elaborate -> check) -> `analyses` (summary, memory, explain,
lint, compare), `backends` (torch, codegen, export) and `diagrams` (graphviz, the
explorer, networkx); `training`, `lsp` and `cli` sit on top.
"""

from .diagnostics import Diagnostic, SpecError
from .version import __version__

__all__ = ["Diagnostic", "Spec", "SpecError", "build", "evaluate", "load", "predict",
           "train", "__version__"]


def load(source, *, network=None, **params):
    """Parse, elaborate and check a spec given as a path or as text -> `Spec`."""
    from .api import load as _load

    return _load(source, network=network, **params)


def build(source, *, network=None, device=None, dtype=None, memory_format=None,
          weights=None, **params):
    """Compile a spec (a path, spec text or a loaded `Spec`) into a torch.nn.Module.

    The module's submodule names are the spec's layer names; `device`, `dtype` and
    `memory_format` (e.g. torch.channels_last) are applied to its parameters.
    `weights`: a .safetensors or PyTorch state-dict file to start from; every tensor
    that fits loads, the classifier may differ (see `model.weights_report`), and a
    file that does not fit the backbone raises `WeightsError`.
    """
    from .api import Spec, load as _load
    from .backends.torch_backend import to_torch

    spec = source if isinstance(source, Spec) else _load(source, network=network,
                                                           **params)
    model = to_torch(spec)
    if weights is not None:
        from .training.weights import load_weights

        model.weights_report = load_weights(model, weights, spec)
    if device is not None or dtype is not None:
        model = model.to(device=device, dtype=dtype)
    if memory_format is not None:
        model = model.to(memory_format=memory_format)
    return model


def train(spec, data=None, out=None, **options):
    """Train a spec (a path or a loaded `Spec`) on `data` with its `train { }` recipe.

    `data`: "digits", "synthetic", "cifar10:PATH", "cifar100:PATH", an image folder
    path, or a (train, val) pair of Datasets yielding (image_tensor, label). `out`:
    the run folder (default runs/NAME). Options override the recipe (epochs, batch,
    lr, weight_decay, label_smoothing, clip_grad, ema, seed, device, amp, ...), or
    say how to run (resume=RUN_DIR, network=, params={...}, verbose=False,
    log=("tensorboard", "mlflow") to log to those trackers as well). Returns
    a TrainResult: .model (best weights), .history, .metrics, .val_top1, .run_dir.
    """
    from .training.run import train as _train

    return _train(spec, data, out, **options)


def evaluate(spec, weights, data=None, **options):
    """Score trained weights on the validation split of `data` (default: the data of
    the weights' run): top-1, top-5, loss, per-class accuracy and the confusion matrix.

    `weights`: a file (a run's weights.safetensors, or a PyTorch state dict), or a list
    of files for an ensemble that averages the members' softmax. Options: tta ("none",
    "flip" or "ten_crop"), batch, device, workers, network, params={...}, seed,
    val_fraction. Returns an EvaluationReport (.top1, .top5, .loss, .per_class,
    .confusion, .classes, .members, .to_json()).
    """
    from .training.evaluation import evaluate as _evaluate

    return _evaluate(spec, weights, data, **options)


def predict(spec, weights, images, **options):
    """The most probable classes of each image file, with their probabilities.

    `weights` as for `evaluate`; class names come from the run.json beside the
    weights, else they are the indices. Options: top (5), tta, batch, device, network,
    params={...}. Returns a list of Prediction (.image, .classes, .probabilities).
    """
    from .training.evaluation import predict as _predict

    return _predict(spec, weights, images, **options)


def __getattr__(name):
    if name == "Spec":
        from .api import Spec

        return Spec
    raise AttributeError(name)
