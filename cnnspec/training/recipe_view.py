"""`cnnspec recipe`: the recipe a run would follow, fully resolved, without training.

Takes: a spec path (or Spec), optionally the data source, the number of processes
and the same overrides `train` takes. Returns: a plain dict (`resolve_recipe`,
what `--json` prints) holding every recipe entry with its value and where it came
from, the effective, per-process and micro batch, the parameter groups with their
sizes, rates and decays, the learning rate at the first step of every epoch (and
every step when the run is short enough to list them), the weight average's decay
as used, and the train and validation transforms as torchvision prints them;
`render_text` lays it out for a terminal and `draw_lr` draws the rate to a PNG.

Everything is built through the objects the run builds (`components`,
`open_recipe_data`, `transforms.pipelines`), so the numbers are the run's own.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..frontend.recipe import Recipe
from .components import build_components, per_process_batch
from .config import resolve
from .schedule import describe, unreached

EVERY_STEP_LIMIT = 20_000  # list each step's rate up to this many steps (JSON size)
SPARK = "▁▂▃▄▅▆▇█"
SPARK_WIDTH = 60


def resolve_recipe(spec, data=None, *, network=None, params=None, nproc: int = 1,
                   steps_per_epoch: int | None = None, **overrides) -> dict:
    from ..backends.torch_backend import to_torch
    from .finetune import freeze
    from .run import _load_spec, check_classifier, open_recipe_data
    from .sampling import RepeatedAugmentSampler

    spec = _load_spec(spec, network, params or {})
    config = resolve(spec.recipe, **overrides)
    per_process = per_process_batch(config, nproc)
    classes, data_notes = check_classifier(spec), []
    if data is not None:
        datasets = open_recipe_data(data, spec, config)
        found = len(datasets.classes)
        if found and found != classes and "classes" not in spec.overrides \
                and "classes" in spec.graph.params:
            spec, classes = spec.with_params(classes=found), found
        data_notes = list(datasets.notes)
        images = len(datasets.train)
        if config.repeated_augment is not None:
            images = len(RepeatedAugmentSampler(datasets.train, nproc, 0, config.seed,
                                                config.repeated_augment.reps)) * nproc
        steps_per_epoch = images // nproc // per_process
    per = "iteration" if steps_per_epoch else "epoch"
    steps = steps_per_epoch or 1
    model = to_torch(spec)
    freeze(model, spec, config.freeze, config.unfreeze_from)
    parts = build_components(model, spec, config, nproc, steps, classes, "cpu")
    rates = _rates(parts.optimizer, parts.schedule, config.epochs, steps)
    return {
        "network": spec.name, "spec": spec.path, "classes": classes,
        "entries": _entries(spec, config),
        "batch": {"effective": config.batch, "processes": nproc,
                  "per_process": per_process, "accumulate": config.accumulate,
                  "micro_batch": per_process // config.accumulate},
        "steps_per_epoch": steps_per_epoch, "total_steps": config.epochs * steps,
        "schedule": describe(config),
        "schedule_note": unreached(config),
        "lr_per_epoch": [rates[e * steps] for e in range(config.epochs)],
        "lr_every_step": rates if per == "iteration" and len(rates) <= EVERY_STEP_LIMIT
        else None,
        "lr_min": min(rates), "lr_max": max(rates),
        "param_groups": _groups(parts.optimizer),
        "ema": None if parts.ema is None else {
            "decay": config.ema.decay, "decay_used": parts.ema.decay,
            "steps": config.ema.steps, "adjust": config.ema.adjust},
        "mixing": _mixing(config),
        "sampler": (f"repeated augmentation, {config.repeated_augment.reps} copies of "
                    "each image per epoch" if config.repeated_augment else "shuffled"),
        "transforms": _transforms(spec, config),
        "data": data_notes,
    }


def _rates(optimizer, schedule, epochs: int, steps: int) -> list[float]:
    """Group 0's rate at every step, from the run's own schedule object, stepped
    as the run steps it (a plateau schedule is shown without reductions)."""
    import warnings

    rates = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # stepping without training
        for _ in range(epochs):
            for _ in range(steps):
                rates.append(float(optimizer.param_groups[0]["lr"]))
                schedule.after_step()
            schedule.after_epoch(float("inf"))
    return rates


def _entries(spec, config) -> list[dict]:
    """Each recipe entry: its value as written in a spec, and where it came from."""
    sources = getattr(spec.graph, "recipe_sources", {}) or {}
    dumped = json.loads(config.model_dump_json())
    rows = []
    for name in Recipe.model_fields:
        value = getattr(config, name)
        if name in config.flags or (name == "optimizer" and "lr" in config.flags):
            origin = f"--{name.replace('_', '-')} flag" if name != "optimizer" \
                else f"{sources.get('optimizer', 'default')}; lr from --lr flag"
        elif name in sources:
            origin = sources[name]
        elif name in config.defaults_used:
            origin = "cnnspec's default (the spec does not say)"
        else:
            origin = "default"
        rows.append({"entry": name, "value": _written(value), "json": dumped[name],
                     "from": origin})
    return rows


def _written(value) -> str:
    """A value in the recipe's own notation: `sgd lr=0.5 momentum=0.9`."""
    if value is None:
        return "none"
    if isinstance(value, tuple):
        if value and isinstance(value[0], tuple):  # lr_mult pairs
            return ", ".join(f"{p}={f:g}" for p, f in value)
        return ", ".join(_written(v) for v in value) or "none"
    if hasattr(value, "model_dump"):  # every field, the defaults too
        fields = value.model_dump(exclude={"kind"})
        head = [value.kind] if hasattr(value, "kind") else []
        return " ".join(head + [f"{k}={_plain(v)}" for k, v in fields.items()])
    return _plain(value)


def _plain(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    if value is None:
        return "none"
    if isinstance(value, (tuple, list)):
        return "(" + ", ".join(_plain(v) for v in value) + ")"
    return str(value)


def _groups(optimizer) -> list[dict]:
    from .param_groups import describe_groups

    return describe_groups(optimizer.param_groups)


def _mixing(config) -> str | None:
    parts = [f"{name} alpha={getattr(config, name).alpha:g}"
             for name in ("mixup", "cutmix") if getattr(config, name) is not None]
    if not parts:
        return None
    how = "one of them per batch, chosen at random" if len(parts) == 2 else "every batch"
    return (f"{' and '.join(parts)} ({how}); the loss takes the soft targets, and "
            "training accuracy counts each mixed image's dominant label")


def _transforms(spec, config) -> dict:
    from torchvision.transforms import v2

    from .transforms import pipelines

    channels = spec.input_shape[0]
    train, val, _ = pipelines((channels, None, None), tuple(spec.input_shape),
                              config.augment, interpolation=config.interpolation,
                              val_resize=config.val_resize, val_crop=config.val_crop)
    return {"train": repr(v2.Compose(train)), "val": repr(v2.Compose(val))}


# --- output ------------------------------------------------------------------------

def sparkline(values: list[float], width: int = SPARK_WIDTH) -> str:
    """The rates as one line of block characters, `width` wide (each the mean of
    its share of the run)."""
    if not values:
        return ""
    chunks = [values[i * len(values) // width:(i + 1) * len(values) // width] or
              [values[min(i * len(values) // width, len(values) - 1)]]
              for i in range(min(width, len(values)))]
    means = [sum(c) / len(c) for c in chunks]
    low, high = min(means), max(means)
    span = (high - low) or 1.0
    return "".join(SPARK[round((m - low) / span * (len(SPARK) - 1))] for m in means)


def render_text(view: dict) -> str:
    b = view["batch"]
    lines = [f"{view['network']}: the recipe `cnnspec train` would follow "
             f"({view['classes']} classes)", ""]
    width = max(len(r["entry"]) for r in view["entries"])
    value_width = min(48, max(len(r["value"]) for r in view["entries"]))
    for row in view["entries"]:
        lines.append(f"  {row['entry']:<{width}}  {row['value']:<{value_width}}  "
                     f"{row['from']}")
    lines += ["", f"batch: {b['effective']} per step"
              + (f" = {b['processes']} processes x {b['per_process']}"
                 if b["processes"] > 1 else "")
              + (f", each in {b['accumulate']} micro-batches of {b['micro_batch']}"
                 if b["accumulate"] > 1 else "")]
    steps = view["steps_per_epoch"]
    lines.append(f"steps: {steps} per epoch, {view['total_steps']:,} in all" if steps
                 else "steps: per epoch (give --data or --steps-per-epoch for every "
                      "step's rate)")
    lines += [f"schedule: {view['schedule']}"]
    if view["schedule_note"]:
        lines.append(f"  note: {view['schedule_note']}")
    lines += [
              f"lr: {sparkline(view['lr_every_step'] or view['lr_per_epoch'])}  "
              f"{view['lr_min']:.3g} to {view['lr_max']:.3g}"]
    if view["ema"]:
        e = view["ema"]
        lines.append(f"ema: decay {e['decay_used']:.6g} every {e['steps']} steps"
                     + (f" (adjusted from {e['decay']:g} for batch, steps and epochs, "
                        "as torchvision's reference)" if e["adjust"] else ""))
    if view["mixing"]:
        lines.append(f"mixing: {view['mixing']}")
    lines.append(f"sampler: {view['sampler']}")
    lines += ["", "parameter groups:"]
    for g in view["param_groups"]:
        lines.append(f"  {g['name']:<16} {g['parameters']:>12,} parameters in "
                     f"{g['tensors']:>3} tensors  lr {g['lr']:.4g}  weight_decay "
                     f"{g['weight_decay']:g}")
    lines += ["", "train transform:", _indent(view["transforms"]["train"]),
              "validation transform:", _indent(view["transforms"]["val"])]
    lines += [f"data: {note}" for note in view["data"]]
    return "\n".join(lines)


def _indent(text: str) -> str:
    return "\n".join("  " + line for line in text.splitlines())


def draw_lr(view: dict, path: Path) -> None:
    """The learning rate over the run (every step when known) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    from .checkpoint import atomic_write

    rates = view["lr_every_step"] or view["lr_per_epoch"]
    per_epoch = view["lr_every_step"] is None
    steps = view["steps_per_epoch"] or 1
    xs = [i if per_epoch else i / steps for i in range(len(rates))]
    figure, axes = pyplot.subplots(figsize=(7, 3.2))
    axes.plot(xs, rates, drawstyle="steps-post" if per_epoch else "default")
    axes.set_xlabel("epoch")
    axes.set_ylabel("learning rate")
    axes.set_title(f"{view['network']}: {view['schedule']}", fontsize=9)
    figure.tight_layout()
    atomic_write(Path(path), lambda f: figure.savefig(f, format="png", dpi=110))
    pyplot.close(figure)
