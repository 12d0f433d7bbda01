"""The training entry point: `train(spec, data, out, **overrides) -> TrainResult`.

Takes: a `Spec` or a spec path, a data source (see `data.open_data`), a run
directory, and overrides of the spec's recipe (`config.OVERRIDES`). Returns: a
`TrainResult` (the model with its best weights, the per-epoch history, the final
metrics). Writes the run directory (rank 0 only, holding its lock, see `rundir`):
run.json, metrics.jsonl, weights.safetensors, last.ckpt and curves.png. Raises
`UsageError`/`DataError` (exit 2), `TrainingError` (exit 1), `StorageError` (a
file could not be written, exit 3) or `Interrupted` (Ctrl-C or SIGTERM, exit 130
or 143; the early-warning `stop_signal`, exit 75: see `signals`); never prints
except through its reporter.
"""

from __future__ import annotations

import json
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from ..version import __version__
from . import checkpoint as files
from . import rundir, signals
from .config import RunConfig, describe_optimizer, resolve
from .data import open_data
from .distributed import ShardSampler, World, check_sync_batchnorm, join, leave, \
    pick_device, sync_batchnorm, train_sampler
from .errors import StorageError, TrainingError, UsageError
from .finetune import freeze
from .weights import load_weights
from .loop import NonFiniteLoss, Trainer, current_lr, unwrap
from .components import build_components, per_process_batch
from .mixing import describe_mixing
from .param_groups import describe_groups
from .schedule import describe as describe_schedule, unreached
from .sampling import RepeatedAugmentSampler
from .progress import Reporter, Silent, draw_curves
from .resume import restore, resumed_config, saved_params
from . import retention
from .tracking import TrackedRun, check_loggers, track

RUN_FILE, METRICS, CURVES = "run.json", "metrics.jsonl", "curves.png"
IN_MEMORY = "datasets given in Python"


class Interrupted(Exception):
    """Ctrl-C or SIGTERM (`signal_number`): the checkpoint of epoch `saved` (0: the
    starting state) is on disk."""

    def __init__(self, run_dir: Path, saved: int, signal_number: int | None = None):
        super().__init__(f"interrupted after saving epoch {saved}")
        self.run_dir, self.saved, self.signal_number = run_dir, saved, signal_number


@dataclass
class TrainResult:
    model: torch.nn.Module          # the best epoch's weights (those in weights.safetensors)
    history: list[dict]             # the rows of metrics.jsonl
    metrics: dict                   # the `--json` object
    run_dir: Path
    config: RunConfig = field(repr=False)

    @property
    def val_top1(self) -> float:
        return self.metrics["val_top1"]


def train(spec, data=None, out=None, *, network=None, params=None, resume=None,
          reporter=None, verbose: bool = True, command: str | None = None,
          stop_signal: int = signals.WARNING, **overrides) -> TrainResult:
    """Train `spec` (a Spec or a path) on `data`; see the module docstring.
    `stop_signal`: the early warning of a time limit or preemption (SIGUSR1)."""
    with signals.handled(stop_signal):
        prepared = _prepare(spec, data, network, params, resume, overrides)
        world = join(prepared.config.device)
        reporter = reporter if world.main else Silent()
        reporter = reporter or (Reporter() if verbose else Silent())
        folder = None
        try:
            check_sync_batchnorm(prepared.config.sync_batchnorm, world.device)
            run = _Run(prepared, world, reporter, command)
            folder = _claim(out if resume is None else resume, run.spec.name,
                            resume is not None, world, run.command)
            run.reporter = reporter = track(  # --log: TensorBoard, MLflow (rank 0)
                reporter, prepared.config.log if world.main else (), TrackedRun(
                    folder.path, run.spec, prepared.config, prepared.saved is not None,
                    run.data_name))
            return run.go(folder, prepared.saved)
        finally:
            if folder is not None:
                folder.release()
            reporter.close()
            leave()


def preflight(spec, data=None, *, nproc: int, network=None, params=None, resume=None,
              **overrides) -> None:
    """Raise what `train` would raise about the spec, the options and the data,
    before `--nproc` starts processes that would each fail with it."""
    prepared = _prepare(spec, data, network, params, resume, overrides)
    spec, config, data = prepared.spec, prepared.config, prepared.data
    per_process_batch(config, nproc)
    check_sync_batchnorm(config.sync_batchnorm, pick_device(config.device))
    if config.weights and resume is None or config.freeze or config.unfreeze_from:
        from ..backends.torch_backend import to_torch

        model = to_torch(spec)
        if config.weights and resume is None:
            load_weights(model, config.weights, spec, config.reinit)
        freeze(model, spec, config.freeze, config.unfreeze_from)
    open_recipe_data(data, spec, config, progress=sys.stderr)


@dataclass
class _Prepared:
    spec: object
    config: RunConfig
    data: object
    saved: dict | None      # the checkpoint, when resuming
    changes: list[str]      # what the flags given on resuming change


def _prepare(spec, data, network, params, resume, overrides) -> _Prepared:
    """The checked spec, the run's configuration, the data source, and the saved
    state when resuming: a resumed run is rebuilt with its own parameters
    (`classes` taken from the data included), then the `--set` values given now."""
    if resume is None:
        spec = _load_spec(spec, network, params or {})
        saved, changes = None, []
        config = resolve(spec.recipe, **overrides)
    else:
        saved = files.read_checkpoint(Path(resume))
        spec = _load_spec(spec, network, {**saved_params(saved, Path(resume)),
                                          **(params or {})})
        files.check_fingerprint(saved, Path(resume) / files.CHECKPOINT,
                                files.spec_hash(spec))
        config, changes = resumed_config(saved, Path(resume), overrides)
        data = data if data is not None else _recorded_data(Path(resume))
    if data is None:
        raise UsageError("no data to train on: give data='digits', 'synthetic', "
                         "'cifar10:PATH', an image folder, or a (train, val) pair")
    check_loggers(config.log)  # a missing tensorboard or mlflow, before anything runs
    return _Prepared(spec, config, data, saved, changes)


def open_recipe_data(data, spec, config: RunConfig, progress=None):
    """The data source opened with the recipe's transforms and sizes."""
    return open_data(data, tuple(spec.input_shape), config.augment, seed=config.seed,
                     val_fraction=config.val_fraction,
                     bad_images="skip" if config.skip_bad_images else "stop",
                     progress=progress, interpolation=config.interpolation,
                     val_resize=config.val_resize, val_crop=config.val_crop)


def check_classifier(spec) -> int:
    """How many class scores the spec outputs; a spec whose output is not a vector of
    class scores cannot be trained or evaluated as a classifier."""
    out = spec.output_shape
    if len(out) != 1:
        raise TrainingError(
            f"{spec.name} outputs {'x'.join(map(str, out))}, not a vector of class "
            "scores; end the network with `flatten` and `linear classes`")
    return out[0]


def _recorded_data(run_dir: Path):
    try:
        data = json.loads((run_dir / RUN_FILE).read_text())["data"]
    except (OSError, ValueError, KeyError):
        data = None
    if data is None or data == IN_MEMORY:
        raise UsageError(f"{run_dir / RUN_FILE} does not say which data the run used; "
                         "give it again with --data")
    return data


def _load_spec(spec, network, params):
    from ..api import Spec, load

    if isinstance(spec, Spec):
        return spec.with_params(**params) if params else spec
    return load(spec, network=network, **params)


def _claim(out, name: str, resume: bool, world: World, command: str
           ) -> rundir.RunFolder:
    """The run folder, claimed by rank 0 (see `rundir`); every rank learns which
    folder it is, or the error that refused it."""
    folder, problem = None, None
    if world.main:
        try:
            folder = rundir.claim(out, name, resume, command)
        except (UsageError, StorageError) as error:
            problem = error
    if world.size > 1:
        import torch.distributed as dist

        shared = [str(folder.path) if folder else None, problem]
        dist.broadcast_object_list(shared, src=0)
        if not world.main:
            folder = rundir.RunFolder(Path(shared[0]), []) if shared[0] else None
            problem = shared[1]
    if problem is not None:
        raise problem
    return folder


def _seed_everything(seed: int) -> None:
    import numpy

    random.seed(seed)
    numpy.random.seed(seed)
    torch.manual_seed(seed)


class _Run:
    """One training run from its first (or resumed) epoch to its last."""

    def __init__(self, prepared: _Prepared, world: World, reporter, command):
        config, data = prepared.config, prepared.data
        self.config, self.world, self.reporter = config, world, reporter
        self.changes = prepared.changes
        self.command = command or " ".join(sys.argv)
        self.datasets = open_recipe_data(
            data, prepared.spec, config,
            progress=sys.stderr if isinstance(reporter, Reporter) else None)
        self.spec = self._fit_classes(prepared.spec)
        self.data_name = data if isinstance(data, str) else IN_MEMORY

    def _fit_classes(self, spec):
        out = (check_classifier(spec),)
        found = len(self.datasets.classes)
        if found == 0 or found == out[0]:
            return spec
        if "classes" in spec.overrides:
            raise TrainingError(
                f"classes={spec.overrides['classes']} was set, but the data has {found} "
                f"classes ({', '.join(self.datasets.classes[:6])}"
                f"{', ...' if found > 6 else ''}); leave it out to take it from the data")
        if "classes" not in spec.graph.params:
            raise TrainingError(
                f"{spec.name} outputs {out[0]} class scores but the data has {found} "
                "classes, and the network has no `classes` parameter to set; give it "
                "one (`network name(classes = 10)` ... `linear classes`)")
        self.reporter.note(f"classes: {found}, taken from the data (the spec's default "
                           f"is {spec.graph.params['classes']})")
        return spec.with_params(classes=found)

    # -- setting up
    def _build(self, fresh: bool):
        from ..backends.torch_backend import to_torch

        _seed_everything(self.config.seed)
        model = to_torch(self.spec)
        if self.config.weights and fresh:  # a resumed run has its own weights
            for line in load_weights(model, self.config.weights, self.spec,
                                     self.config.reinit).lines():
                self.reporter.note(line)
        self._freeze(model)
        model = model.to(self.world.device)
        if self.config.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.plain = model
        if self.world.size > 1:
            if self.config.sync_batchnorm:
                model = self.plain = sync_batchnorm(model)
            model = DistributedDataParallel(
                model, device_ids=[self.world.device] if self.world.device.type == "cuda"
                else None, find_unused_parameters=hasattr(model, "global_drop_path"))
        if self.config.compile:
            model = torch.compile(model)
        return model

    def _freeze(self, model) -> None:
        """Freeze what the flags name; say how many parameters train whenever some
        do not (the spec's `frozen { }` included)."""
        config = self.config
        names = []
        if config.freeze or config.unfreeze_from:
            names = freeze(model, self.spec, config.freeze, config.unfreeze_from)
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        total = sum(p.numel() for p in model.parameters())
        if names:
            self.reporter.note(f"frozen: {len(names)} layers ({names[0]} ... "
                               f"{names[-1]}); {trainable:,} of {total:,} parameters "
                               "train")
        elif trainable < total:
            self.reporter.note(f"frozen by the spec's `frozen {{ }}`: "
                               f"{total - trainable:,} parameters; {trainable:,} of "
                               f"{total:,} parameters train")

    def _loaders(self):
        per_rank = per_process_batch(self.config, self.world.size)
        pin = self.world.device.type == "cuda"
        train_set, val_set = self.datasets.train, self.datasets.val
        repeated = self.config.repeated_augment
        if repeated is not None:
            self.sampler = RepeatedAugmentSampler(train_set, self.world.size,
                                                  self.world.rank, self.config.seed,
                                                  repeated.reps)
        else:
            self.sampler = train_sampler(train_set, self.world, self.config.seed)
        train = DataLoader(train_set, batch_size=per_rank, sampler=self.sampler,
                           num_workers=self.config.workers, pin_memory=pin,
                           drop_last=True, generator=torch.Generator())
        if len(train) == 0:
            raise UsageError(f"the training set has {len(train_set)} images, fewer than "
                             f"one batch of {self.config.batch}; lower --batch")
        val = DataLoader(val_set, batch_size=per_rank, sampler=ShardSampler(val_set,
                         self.world), num_workers=self.config.workers, pin_memory=pin)
        return train, val

    def _announce(self, run_dir: Path, resumed_from: int | None, folder_notes) -> None:
        c, note = self.config, self.reporter.note
        from_spec = "default" if "optimizer" in c.defaults_used else "spec"
        if "lr" in c.flags:
            from_spec += ", lr from --lr"
        note(f"{self.spec.name}: {self.spec.params:,} parameters, input "
             f"{'x'.join(map(str, self.spec.input_shape))}, "
             f"{self.spec.output_shape[0]} classes")
        for line in self.datasets.notes:
            note(f"data: {line}")
        if c.defaults_used:
            note("the spec has no " + ", ".join(c.defaults_used) + " in `train { }`; "
                 "using defaults")
        note(f"recipe: {describe_optimizer(c.optimizer)} ({from_spec}), {c.epochs} "
             f"epochs, batch {c.batch}"
             + (f" in {c.accumulate} micro-batches" if c.accumulate > 1 else "")
             + f", weight_decay {c.weight_decay:g}"
             + (f", label_smoothing {c.label_smoothing:g}" if c.label_smoothing else "")
             + (f", the classifier's lr {c.lr_head:g}" if c.lr_head else ""))
        note(f"schedule: {describe_schedule(c)}")
        if unreached(c):
            note(f"schedule: {unreached(c)}")
        if c.augment:
            note(f"augment: {', '.join(a.kind for a in c.augment)}")
        mixing = describe_mixing(c.mixup, c.cutmix)
        if mixing:
            note(f"mixing: {mixing}")
        if c.repeated_augment is not None:
            note(f"sampler: repeated augmentation, {c.repeated_augment.reps} copies of "
                 "each image per epoch, each augmented on its own")
        if c.early_stop is not None or c.keep_top:
            note(retention.describe(c.early_stop, c.keep_top))
        if self.ema_decay is not None:
            e = c.ema
            note(f"ema: decay {self.ema_decay:.6g} every {e.steps} "
                 f"{'step' if e.steps == 1 else 'steps'}"
                 + (f" (adjusted from {e.decay:g}, as torchvision's reference)"
                    if e.adjust else "") + "; validation and the saved weights use it")
        for group in self.groups:
            note(f"parameter group {group['name']}: {group['parameters']:,} parameters, "
                 f"lr {group['lr']:.4g}, weight_decay {group['weight_decay']:g}")
        world = f", {self.world.size} processes" if self.world.size > 1 else ""
        note(f"device: {self.world.device}{world}, amp {c.amp}, seed {c.seed}; run "
             f"folder {run_dir}" + (f" (resuming after epoch {resumed_from})"
                                    if resumed_from is not None else ""))
        for line in [*folder_notes, *self.changes]:
            note(f"resume: {line}" if line in self.changes else line)

    # -- the run
    def go(self, folder: rundir.RunFolder, saved: dict | None) -> TrainResult:
        run_dir = self.run_dir = folder.path
        self.saved = saved["epoch"] if saved is not None else None
        self.folder_notes = folder.notes
        try:
            return self._train(saved)
        except NonFiniteLoss as problem:
            raise TrainingError(f"{problem}; training stopped, {self._kept()} is kept. "
                                "Lower the learning rate (--lr) or clip gradients "
                                "(--clip-grad 1.0)") from None
        except StorageError as problem:
            raise StorageError(problem.path, problem.reason, (
                f"cannot write {problem.path}: {problem.reason}; {self._kept()} is "
                "kept. Free space (or make the folder writable), then continue with: "
                f"cnnspec train {self.spec.path or 'SPEC'} --resume {run_dir}")) from None
        except KeyboardInterrupt:
            raise Interrupted(run_dir, self.saved, signals.received()) from None
        except Exception:
            # A peer process stopped by the same signal breaks a collective here
            # before our own handler runs: that is the signal, not a failure.
            if signals.received() is not None:
                raise Interrupted(run_dir, self.saved, signals.received()) from None
            raise

    def _kept(self) -> str:
        """What is on disk to resume from, in words."""
        where = self.run_dir / files.CHECKPOINT
        if self.saved is None:
            return f"nothing was saved yet in {self.run_dir}"
        if self.saved == 0:
            return f"the checkpoint of the starting weights in {where}"
        return f"the checkpoint of epoch {self.saved} in {where}"

    def _train(self, saved: dict | None) -> TrainResult:
        model = self._build(fresh=saved is None)
        config = self.config
        train_loader, val_loader = self._loaders()
        parts = build_components(self.plain, self.spec, config, self.world.size,
                                 len(train_loader), self.spec.output_shape[0],
                                 self.world.device.type)
        optimizer, scheduler, scaler, ema = (parts.optimizer, parts.schedule,
                                             parts.scaler, parts.ema)
        groups = describe_groups(optimizer.param_groups)
        self.groups = groups if len(groups) > 1 else []
        self.ema_decay = ema.decay if ema is not None else None
        self._announce(self.run_dir, self.saved, self.folder_notes)
        aux = getattr(self.plain, "aux_weights", {})
        trainer = Trainer(model, optimizer, self.world.device, config, aux, ema, scaler,
                          schedule=scheduler, mixer=parts.mixer)
        self.history, start = [], 1
        if saved is not None:
            self.history, start = restore(saved, self.plain, optimizer, scheduler, scaler,
                                          ema, config)
            files.set_rng_state(saved["rng"])
        self.best_state = saved["best"] if saved is not None else None
        self.stopping = retention.early_stopping(
            config.early_stop, saved.get("early_stop") if saved else None, self.history)
        if self.world.main and saved is not None and config.keep_top:
            self._tidy_kept()
        if self.world.main:
            self._write_run_file(saved is not None)
            with signals.deferred():  # a save is never cut short
                if saved is None:
                    # The starting state is checkpoint 0, so a run stopped in its
                    # first epoch can be resumed too (and ends as if never stopped).
                    self._save(0, optimizer, scheduler, scaler, ema)
                    self.saved = 0
                else:
                    files.write_text(self.run_dir / METRICS, self._metrics_text())
        for epoch in range(start, config.epochs + 1):
            self._epoch(epoch, trainer, train_loader, val_loader, scheduler, ema)
            self._keep_best(epoch, ema)
            stop = self.stopping is not None and self.stopping.update(self.history[-1])
            if self.world.main:
                with signals.deferred():
                    self._save(epoch, optimizer, scheduler, scaler, ema)
                    self.saved = epoch
            if stop:
                self.reporter.note(f"early stop after epoch {epoch} of {config.epochs}: "
                                   f"{self.stopping.reason()}; the best epoch is "
                                   f"{self._best()['epoch']}")
                break
        return self._result()

    def _epoch(self, epoch, trainer, train_loader, val_loader, scheduler, ema) -> None:
        config, reporter = self.config, self.reporter
        self.sampler.set_epoch(epoch)
        # Worker seeds come from this generator: reseeding it per epoch makes the
        # augmentation of epoch e the same whether or not the run was resumed.
        train_loader.generator.manual_seed(config.seed * 100_003 + epoch)
        reporter.start_epoch(epoch, config.epochs, len(train_loader))
        rates = []  # the rate each step used: the first and last go in the row

        def on_step(step):
            rates.append(step.lr)
            reporter.step(step, step.lr)

        lr = current_lr(trainer.optimizer)
        stats = trainer.train_epoch(train_loader, epoch, on_step=on_step)
        evaluated = ema.module if ema is not None else unwrap(trainer.model)
        val = trainer.evaluate(evaluated, val_loader)
        scheduler.after_epoch(val.loss)
        row = {"epoch": epoch, "train_loss": stats.loss, "train_top1": stats.top1,
               "val_loss": val.loss, "val_top1": val.top1, "val_top5": val.top5,
               "lr": rates[0] if rates else lr, "lr_last": rates[-1] if rates else lr,
               "images_per_s": stats.images / max(stats.seconds, 1e-9),
               "seconds": stats.seconds + val.seconds}
        self.history.append(row)
        reporter.end_epoch(row)

    def _best(self) -> dict | None:
        """The epoch with the highest validation top-1 (the lower loss, then the
        earlier epoch, breaks ties), as `retention.ranked` orders them."""
        return retention.ranked(self.history)[0] if self.history else None

    def _keep_best(self, epoch: int, ema) -> None:
        """Every rank keeps the best epoch's weights (on the CPU) for the result."""
        if self._best()["epoch"] == epoch:
            evaluated = ema.module if ema is not None else self.plain
            self.best_state = {name: tensor.detach().to("cpu", copy=True)
                               for name, tensor in evaluated.state_dict().items()}

    def _save(self, epoch, optimizer, scheduler, scaler, ema) -> None:
        run_dir, best = self.run_dir, self._best()
        if best is not None and best["epoch"] == epoch:
            files.save_weights(run_dir / files.WEIGHTS, self.best_state, {
                "spec": self.spec.name, "spec_hash": files.spec_hash(self.spec),
                "epoch": str(epoch), "val_top1": f"{best['val_top1']:.6f}"})
        if self.config.keep_top and self.history:
            evaluated = ema.module if ema is not None else self.plain
            retention.keep(run_dir, self.history, self.config.keep_top,
                           evaluated.state_dict(), {"spec": self.spec.name,
                                                    "spec_hash": files.spec_hash(self.spec)})
        files.save_checkpoint(run_dir, {
            "spec_name": self.spec.name, "spec_hash": files.spec_hash(self.spec),
            "params": dict(self.spec.overrides),
            "config": self.config.model_dump_json(), "epoch": epoch,
            "history": self.history, "model": self.plain.state_dict(),
            "best": self.best_state,
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict() if scaler is not None else {},
            "ema": ema.state_dict() if ema is not None else {},
            "rng": files.rng_state(),
            "early_stop": self.stopping.state_dict() if self.stopping else None})
        if self.config.keep_top and self.history:  # the new file is written first
            retention.prune(run_dir, self.history, self.config.keep_top)
        files.write_text(run_dir / METRICS, self._metrics_text())
        if self.history:
            draw_curves(self.history, run_dir / CURVES,
                        f"{self.spec.name} on {self.data_name}")

    def _tidy_kept(self) -> None:
        """On resuming with `keep_top`: the kept files as the history ranks them (a
        run stopped between writing an epoch's weights and its checkpoint leaves one
        too many), and a note for the best epochs whose weights were never kept."""
        k = self.config.keep_top
        retention.prune(self.run_dir, self.history, k)
        absent = retention.missing(self.run_dir, self.history, k)
        if absent:
            self.reporter.note(f"keep_top {k}: the weights of epoch"
                               f"{'s' if len(absent) > 1 else ''} "
                               f"{', '.join(map(str, absent))} were not kept before "
                               "resuming; the best epochs from here on are kept")

    def _metrics_text(self) -> str:
        return "".join(json.dumps(row) + "\n" for row in self.history)

    def _write_run_file(self, resumed: bool) -> None:
        path = self.run_dir / RUN_FILE
        previous = json.loads(path.read_text()) if resumed and path.is_file() else {}
        versions = {"cnnspec": __version__, "torch": torch.__version__,
                    "python": sys.version.split()[0]}
        try:
            import torchvision

            versions["torchvision"] = torchvision.__version__
        except ImportError:
            pass
        record = {
            "spec": self.spec.path, "network": self.spec.name,
            "params": self.spec.overrides, "spec_hash": files.spec_hash(self.spec),
            "data": self.data_name, "classes": self.datasets.classes,
            "config": json.loads(self.config.model_dump_json()),
            "world_size": self.world.size, "device": str(self.world.device),
            "versions": versions,
            "commands": previous.get("commands", []) + [self.command],
            "started": previous.get("started", time.strftime("%Y-%m-%dT%H:%M:%S")),
        }
        files.write_text(path, json.dumps(record, indent=2) + "\n")

    def _result(self) -> TrainResult:
        best = self._best()
        self.plain.load_state_dict(self.best_state)
        metrics = {"val_top1": best["val_top1"], "val_top5": best["val_top5"],
                   "val_loss": best["val_loss"], "best_epoch": best["epoch"],
                   "epochs": len(self.history),
                   "seconds": round(sum(r["seconds"] for r in self.history), 3),
                   "run_dir": str(self.run_dir)}
        self.reporter.finish(self.history, best)
        return TrainResult(self.plain, self.history, metrics, self.run_dir, self.config)
