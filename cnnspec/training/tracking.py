"""Experiment tracking: a run's numbers in TensorBoard and MLflow (`--log`).

Takes: the logger names of `RunConfig.log` ("tensorboard", "mlflow"), and, once the
run folder is claimed, the run itself (its folder, spec, configuration, data, and
whether it resumes). Returns: `track(...)`, a reporter of `progress.Silent`'s shape
that passes every call on to the run's own reporter and logs what it is told:

- per step, at the run's global step ((epoch - 1) x steps per epoch + step):
  `step/train_loss` and `step/train_top1` (that step's batch) and `step/lr`;
- per epoch: `epoch/NAME` for every number of the epoch's row in metrics.jsonl
  (train_loss, train_top1, val_loss, val_top1, val_top5 when measured, lr, lr_last,
  images_per_s, seconds): in TensorBoard at the global step of the epoch's last step
  (one step axis for every tag), in MLflow at `step=` the epoch;
- once: the resolved configuration flattened (`optimizer.lr`, `epochs`, ...) as
  TensorBoard hyperparameters and MLflow params, and the spec's summary table as
  TensorBoard text and the MLflow artifact `summary.txt`.

TensorBoard (`torch.utils.tensorboard.SummaryWriter`) writes RUN/tensorboard/. MLflow
(`MlflowClient`) logs to `MLFLOW_TRACKING_URI` when it is set, otherwise to MLflow's
own default store (a SQLite database, mlflow.db in the working directory, in current
releases), in the experiment `MLFLOW_EXPERIMENT_NAME` (or `MLFLOW_EXPERIMENT_ID`),
by default one named after the network; at the end of a finished run the run
folder's files (all but the resume checkpoint) become the run's artifacts, and the
run is marked FINISHED (KILLED when a signal stopped it, FAILED otherwise).

A resumed run continues the same TensorBoard folder (events of steps the stopped
process logged but never saved are purged, `purge_step`) and the same MLflow run:
its store, experiment and run id are kept in RUN/tracking.json. Only rank 0 logs.

Raises `UsageError` (exit 2), before training starts, for an unknown logger name, a
logger whose package is missing (naming the pip extra), and an MLflow store that
cannot be reached. A logger that fails later is dropped with a note; training goes on.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import time
from dataclasses import dataclass
from io import StringIO
from pathlib import Path

from .errors import UsageError
from .signals import received

# Logger name -> (the module it needs, the pip extra that installs it).
LOGGERS = {"tensorboard": ("tensorboard", "cnnspec[tensorboard]"),
           "mlflow": ("mlflow", "cnnspec[mlflow]")}
TENSORBOARD = "tensorboard"    # RUN/tensorboard/: the event files
STATE = "tracking.json"        # RUN/tracking.json: the MLflow run to continue
FLUSH_METRICS = 500            # MLflow: step metrics sent in batches of this many,
FLUSH_SECONDS = 30.0           # or this often, and at every epoch's end


def logger_names(value) -> tuple[str, ...]:
    """`"tensorboard,mlflow"`, `["tensorboard", "mlflow"]` (a repeated flag) or a mix
    -> ("tensorboard", "mlflow"): each once, in the order given."""
    parts = [value] if isinstance(value, str) else list(value)
    names = []
    for part in parts:
        for name in str(part).split(","):
            name = name.strip().lower()
            if name and name not in LOGGERS:
                raise UsageError(f"--log takes {' or '.join(LOGGERS)} (repeated or "
                                 f"comma-separated), not {name!r}")
            if name and name not in names:
                names.append(name)
    return tuple(names)


def check_loggers(names) -> None:
    """Refuse a logger whose package is not installed, naming the extra to install."""
    for name in names:
        module, extra = LOGGERS[name]
        if not _installed(module):
            raise UsageError(f"--log {name} needs the {module} package, which is not "
                             f"installed: pip install '{extra}'")


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # ValueError: a module hidden as None
        return False


@dataclass(frozen=True)
class TrackedRun:
    """What the loggers record about the run besides its numbers."""
    folder: Path
    spec: object            # the api.Spec that trains (classes fitted to the data)
    config: object          # the resolved RunConfig
    resumed: bool
    data: str               # the data source, in words


def track(reporter, names, run: TrackedRun):
    """`reporter` itself when no logger is asked for, else a `Tracked` reporter that
    also logs to each one (opened now: an MLflow store that cannot be reached is a
    `UsageError` before training starts)."""
    if not names:
        return reporter
    loggers = []
    for name in names:
        opened = _TensorBoard(run) if name == "tensorboard" else _MLflow(run)
        loggers.append((name, opened))
    return Tracked(reporter, loggers)


class Tracked:
    """A reporter that passes every call on to `inner` and logs the numbers to each
    of `loggers` ((name, logger) pairs); anything else it is asked is `inner`'s."""

    def __init__(self, inner, loggers: list):
        self.inner, self.loggers = inner, loggers
        self.notes = [line for _, logger in loggers for line in logger.notes]
        self.epoch = self.steps = 0
        self.done = (0.0, 0.0, 0)     # the epoch's loss sum, correct, images so far
        self.finished = False

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def note(self, text: str) -> None:
        self.inner.note(text)

    def start_epoch(self, epoch: int, epochs: int, steps: int) -> None:
        for line in self.notes:  # said once, after the run's own opening lines
            self.inner.note(line)
        self.notes = []
        self.epoch, self.steps, self.done = epoch, steps, (0.0, 0.0, 0)
        self.inner.start_epoch(epoch, epochs, steps)

    def step(self, step, lr: float) -> None:
        self.inner.step(step, lr)
        values = {**self._batch(step), "lr": lr}
        self._each("step", (self.epoch - 1) * self.steps + step.index, values)

    def _batch(self, step) -> dict:
        """The step's own batch loss and top-1, from the epoch's running means."""
        loss_sum, correct, images = step.loss * step.images, step.top1 * step.images, \
            step.images
        before_loss, before_correct, before = self.done
        self.done = (loss_sum, correct, images)
        if images <= before:
            return {}
        return {"train_loss": (loss_sum - before_loss) / (images - before),
                "train_top1": (correct - before_correct) / (images - before)}

    def end_epoch(self, row: dict) -> None:
        self.inner.end_epoch(row)
        values = {key: value for key, value in row.items() if key != "epoch"
                  and isinstance(value, (int, float)) and not isinstance(value, bool)}
        self._each("epoch", row["epoch"], self.epoch * self.steps, values)

    def finish(self, history: list[dict], best: dict | None) -> None:
        self.inner.finish(history, best)
        self.finished = True

    def close(self) -> None:
        """Ends each logger's run: finished, killed (a stop signal) or failed (any
        other exception on its way out of `train`)."""
        self.inner.close()
        problem = sys.exc_info()[1]
        if self.finished and problem is None:
            outcome = "finished"
        elif received() is not None or isinstance(problem, KeyboardInterrupt):
            outcome = "killed"
        else:
            outcome = "failed"
        self._each("close", outcome)
        self.loggers = []

    def _each(self, method: str, *arguments) -> None:
        """Call `method` on every logger; one that fails is dropped with a note."""
        for pair in list(self.loggers):
            name, logger = pair
            try:
                getattr(logger, method)(*arguments)
            except Exception as problem:  # a logger never stops the training
                self.loggers.remove(pair)
                self.inner.note(f"{name}: logging stopped ({type(problem).__name__}: "
                                f"{_first_line(problem)}); the run goes on without it")


class _TensorBoard:
    """RUN/tensorboard/, opened at the first step it logs (`purge_step`: what a
    stopped process logged from that step on is discarded by TensorBoard)."""

    def __init__(self, run: TrackedRun):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise UsageError("--log tensorboard needs the tensorboard package: pip "
                             f"install '{LOGGERS['tensorboard'][1]}'") from None
        self.make, self.run, self.writer = SummaryWriter, run, None
        self.folder = run.folder / TENSORBOARD
        self.notes = [f"tensorboard: logging to {self.folder}; see it with "
                      f"`tensorboard --logdir {self.folder}`"]

    def _open(self, first: int) -> None:
        from torch.utils.tensorboard.summary import hparams

        self.writer = self.make(str(self.folder), purge_step=first)
        metrics = {f"epoch/{name}": 0.0 for name in ("val_top1", "val_loss",
                                                    "train_loss")}
        experiment, start, self.end = hparams(flat_config(self.run.config), metrics)
        for summary in (experiment, start):
            self.writer.file_writer.add_summary(summary, first)
        self.writer.add_text("config", _code(json.dumps(
            json.loads(self.run.config.model_dump_json()), indent=2)), first)
        self.writer.add_text("spec", _code(summary_text(self.run.spec)), first)

    def step(self, global_step: int, values: dict) -> None:
        if self.writer is None:
            self._open(global_step)
        for name, value in values.items():
            self.writer.add_scalar(f"step/{name}", value, global_step)

    def epoch(self, epoch: int, global_step: int, values: dict) -> None:
        if self.writer is None:
            self._open(global_step)
        for name, value in values.items():
            self.writer.add_scalar(f"epoch/{name}", value, global_step)
        self.writer.flush()

    def close(self, outcome: str) -> None:
        if self.writer is None:
            return
        if outcome == "finished":
            self.writer.file_writer.add_summary(self.end)
        self.writer.close()


class _MLflow:
    """One MLflow run per cnnspec run, continued when the run is resumed."""

    def __init__(self, run: TrackedRun):
        try:
            import mlflow
            from mlflow.entities import Metric, Param
            from mlflow.tracking import MlflowClient
        except ImportError:
            raise UsageError("--log mlflow needs the mlflow package: pip install "
                             f"'{LOGGERS['mlflow'][1]}'") from None
        self.Metric, self.run, self.pending = Metric, run, []
        self.flushed = time.monotonic()
        saved = _saved(run.folder) if run.resumed else {}
        self.uri = _tracking_uri(mlflow, saved)
        self.notes = []
        try:  # an unknown scheme, a server that does not answer, a locked database
            self.client = MlflowClient(tracking_uri=self.uri)
            self.id = self._reopen(saved) or self._create(Param)
        except Exception as problem:
            raise UsageError(f"--log mlflow: cannot log to the MLflow store "
                             f"{self.uri}: {_first_line(problem)}") from None
        from .checkpoint import write_text  # atomic; imports torch, which config need not

        write_text(run.folder / STATE, json.dumps({"mlflow": {
            "tracking_uri": self.uri, "experiment_id": self.experiment,
            "run_id": self.id}}, indent=2) + "\n")
        see = f"open {self.uri}" if self.uri.startswith(("http:", "https:")) else \
            f"`mlflow ui --backend-store-uri {self.uri}`"
        self.notes.insert(0, f"mlflow: run {self.id} in experiment "
                             f"{self.experiment_name!r} of {self.uri}; see it with {see}")

    def _create(self, Param) -> str:
        run = self.run
        self.experiment, self.experiment_name = self._experiment()
        created = self.client.create_run(self.experiment, run_name=run.folder.name,
                                         tags=_tags(run))
        self.client.log_batch(created.info.run_id, params=[
            Param(name, _text(value)) for name, value in flat_config(run.config).items()])
        self.client.log_text(created.info.run_id, summary_text(run.spec), "summary.txt")
        return created.info.run_id

    def _experiment(self) -> tuple[str, str]:
        """(id, name): MLFLOW_EXPERIMENT_ID, or the experiment MLFLOW_EXPERIMENT_NAME
        (or the network) names, made if need be."""
        from mlflow.environment_variables import MLFLOW_EXPERIMENT_ID, \
            MLFLOW_EXPERIMENT_NAME
        from mlflow.exceptions import MlflowException

        if MLFLOW_EXPERIMENT_ID.get():
            found = self.client.get_experiment(MLFLOW_EXPERIMENT_ID.get())
            return found.experiment_id, found.name
        name = MLFLOW_EXPERIMENT_NAME.get() or self.run.spec.name
        found = self.client.get_experiment_by_name(name)
        if found is not None:
            return found.experiment_id, name
        try:
            return self.client.create_experiment(name), name
        except MlflowException:  # another run made it meanwhile
            return self.client.get_experiment_by_name(name).experiment_id, name

    def _reopen(self, saved: dict) -> str | None:
        """The saved run, marked running again, with the params the resumed run
        changed as tags (`cnnspec.resumed.NAME`; MLflow params are written once)."""
        from mlflow.exceptions import MlflowException

        if not saved.get("run_id"):
            return None
        try:
            found = self.client.get_run(saved["run_id"])
        except MlflowException:
            self.notes.append(f"mlflow: the run {saved['run_id']} this run logged to is "
                              f"not in {self.uri}; starting a new MLflow run")
            return None
        run_id = found.info.run_id
        self.experiment = found.info.experiment_id
        self.experiment_name = self.client.get_experiment(self.experiment).name
        self.client.update_run(run_id, status="RUNNING")
        logged = found.data.params
        for name, value in flat_config(self.run.config).items():
            if name not in logged:
                self.client.log_param(run_id, name, _text(value))
            elif logged[name] != _text(value):
                self.client.set_tag(run_id, f"cnnspec.resumed.{name}", _text(value))
        self.notes.append(f"mlflow: continuing run {run_id}")
        return run_id

    def step(self, global_step: int, values: dict) -> None:
        self._add("step", values, global_step)
        if len(self.pending) >= FLUSH_METRICS \
                or time.monotonic() - self.flushed >= FLUSH_SECONDS:
            self._flush()

    def epoch(self, epoch: int, global_step: int, values: dict) -> None:
        self._add("epoch", values, epoch)
        self._flush()

    def _add(self, kind: str, values: dict, step: int) -> None:
        now = int(time.time() * 1000)
        self.pending += [self.Metric(f"{kind}/{name}", float(value), now, step)
                         for name, value in values.items()]

    def _flush(self) -> None:
        pending, self.pending = self.pending, []
        self.flushed = time.monotonic()
        if pending:
            self.client.log_batch(self.id, metrics=pending)

    def close(self, outcome: str) -> None:
        self._flush()
        if outcome == "finished":
            for path in artifacts(self.run.folder):
                self.client.log_artifact(self.id, str(path))
        self.client.set_terminated(self.id, status={
            "finished": "FINISHED", "killed": "KILLED"}.get(outcome, "FAILED"))


def artifacts(folder: Path) -> list[Path]:
    """The run folder's files that MLflow keeps: every file at its top level
    (metrics.jsonl, run.json, curves.png, weights.safetensors, ...) but the resume
    checkpoints (*.ckpt), the lock and unfinished writes (dot files)."""
    return sorted(path for path in Path(folder).iterdir() if path.is_file()
                  and not path.name.startswith(".") and path.suffix != ".ckpt")


def _tracking_uri(mlflow, saved: dict) -> str:
    """MLFLOW_TRACKING_URI when set; else the store the run logged to before (so a
    resumed run finds its MLflow run from any working directory); else MLflow's
    default."""
    from mlflow.environment_variables import MLFLOW_TRACKING_URI

    if not MLFLOW_TRACKING_URI.get() and saved.get("tracking_uri"):
        return saved["tracking_uri"]
    return mlflow.get_tracking_uri()


def _saved(folder: Path) -> dict:
    try:
        return json.loads((folder / STATE).read_text())["mlflow"]
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def _tags(run: TrackedRun) -> dict:
    return {"cnnspec.network": run.spec.name, "cnnspec.spec": str(run.spec.path or ""),
            "cnnspec.data": run.data, "cnnspec.run_dir": str(run.folder.resolve())}


def flat_config(config) -> dict:
    """The resolved configuration as one level of dotted names (`optimizer.lr`,
    `schedule.kind`, `epochs`); lists as JSON text; None kept (TensorBoard leaves it
    out, MLflow writes `none`). Where values came from (`flags`, `defaults_used`)
    is not a hyperparameter and is left out."""
    values = json.loads(config.model_dump_json(exclude={"flags", "defaults_used"}))
    return dict(_flatten(values, ""))


def _flatten(values: dict, prefix: str):
    for key, value in values.items():
        if isinstance(value, dict):
            yield from _flatten(value, f"{prefix}{key}.")
        elif isinstance(value, list):
            yield f"{prefix}{key}", json.dumps(value, separators=(",", ":"))
        else:
            yield f"{prefix}{key}", value


def _text(value) -> str:
    """A param's value as MLflow stores it: text, in the recipe's words."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def summary_text(spec) -> str:
    """The table `cnnspec summary` prints, and its totals, as plain text."""
    from rich.console import Console

    from ..analyses.summary import table, totals

    summary = spec.summary()
    stream = StringIO()
    Console(file=stream, width=160, color_system=None, highlight=False).print(
        table(summary))
    return stream.getvalue() + totals(summary) + "\n"


def _code(text: str) -> str:
    """Text shown as it is in TensorBoard's markdown: an indented code block."""
    return "\n".join("    " + line for line in text.splitlines())


def _first_line(problem: Exception) -> str:
    text = str(problem).strip()
    return text.splitlines()[0] if text else type(problem).__name__
