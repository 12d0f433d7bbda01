"""The artifacts of `cnnspec compile`: standalone PyTorch source, a torch.export
program or ONNX, optionally carrying trained weights.

Takes: a checked `Spec`, an output path and a format (`py`, `pt2` or `onnx`), and
optionally a weights file (a `cnnspec train` run's weights.safetensors, or any state
dict of the same network). Returns: one line per file written, saying what it holds.

With weights, the spec first takes the parameters of the run that trained them
(`classes` from run.json, as `cnnspec evaluate` does), and every tensor must fit: an
export with a freshly initialized classifier would be a silent wrong model. The `.py`
then gets a companion `.safetensors` beside it and a `load_trained()` function that
reads it; the `.pt2` and `.onnx` carry the trained values themselves.

Raises `ExportError` when torch's exporter fails, `WeightsError` when the weights do
not fit, and `OSError` when a file cannot be written.
"""

from __future__ import annotations

import warnings
from pathlib import Path

FORMATS = {"py": ".py", "pt2": ".pt2", "onnx": ".onnx"}


class ExportError(Exception):
    """torch.export or the ONNX exporter could not trace the model."""


def write(spec, out: Path, chosen: str, *, source: str | None = None,
          model=None, weights: str | None = None) -> list[str]:
    """Write `spec` as `chosen` to `out`; `model` (from
    `training.evaluation.trained_model`) holds the weights that `weights` names. Returns "PATH (what it holds)" lines."""
    out = Path(out)
    if chosen == "py":
        return _write_python(spec, out, source, model, weights)
    if model is None:
        from .torch_backend import to_torch

        model = to_torch(spec)
    what = _export(spec, model.eval(), out, chosen)
    if weights:
        what += f"; trained weights from {weights}"
    return [f"{out} ({what})"]


def _write_python(spec, out: Path, source, model, weights) -> list[str]:
    from .codegen import class_name_of, to_python

    companion = out.with_suffix(".safetensors") if model is not None else None
    text = to_python(spec, source=source,
                     weights_file=companion.name if companion else None)
    out.write_text(text, encoding="utf-8")
    lines = [f"{out} (PyTorch source, class {class_name_of(text)}, imports only torch"
             + ("; load_trained() reads the weights beside it)" if companion else ")")]
    if companion is not None:
        from safetensors.torch import save_file

        tensors = {name: tensor.detach().to("cpu").contiguous()
                   for name, tensor in model.state_dict().items()}
        save_file(tensors, str(companion), metadata={"spec": spec.name,
                                                     "from": str(weights)})
        lines.append(f"{companion} (the trained weights of {weights}, safetensors)")
    return lines


def _export(spec, model, out: Path, chosen: str) -> str:
    """torch.export (pt2) or ONNX of the eval-mode `model`, batch size dynamic."""
    import torch

    example = (torch.randn((2,) + tuple(spec.input_shape)),)
    dynamic = {"x": {0: torch.export.Dim("batch")}}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if chosen == "pt2":
                program = torch.export.export(model, example, dynamic_shapes=dynamic)
                torch.export.save(program, str(out))
                return "torch.export program of the eval-mode model; " \
                    "load with torch.export.load(...).module()"
            large = spec.params * 4 > 1_500_000_000  # protobuf stops at 2 GB
            torch.onnx.export(model, example, str(out), dynamo=True, verbose=False,
                              input_names=["input"], output_names=["output"],
                              dynamic_shapes=dynamic, external_data=large)
    except OSError:
        raise
    except Exception as problem:  # an exporter's failure, not the user's spec
        raise ExportError(f"{'torch.export' if chosen == 'pt2' else 'ONNX export'} "
                          f"failed: {type(problem).__name__}: {problem}") from None
    return "ONNX, eval mode, dynamic batch" + (f"; weights in {out}.data" if large else "")
