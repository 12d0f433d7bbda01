"""`--log tensorboard` and `--log mlflow`: what a run logs, read back with
TensorBoard's own reader and MLflow's own client, a resumed run continuing the same
logs, a signal that stops a run, and what a missing package or a bad name gets.
"""

import json
import os
import signal
import sys
import types

import pytest

pytest.importorskip("sklearn")
pytest.importorskip("safetensors")
pytest.importorskip("tensorboard")
pytest.importorskip("mlflow")

import cnnspec  # noqa: E402
from cnnspec.cli import main  # noqa: E402
from cnnspec.training import tracking  # noqa: E402
from cnnspec.training.config import resolve  # noqa: E402
from cnnspec.training.errors import UsageError  # noqa: E402
from cnnspec.training.progress import Silent  # noqa: E402
from conftest import fails  # noqa: E402

TINY = """
network tiny(classes = 10) {
    input 1x8x8
    conv1: conv 8 k=3 p=1
    relu
    pool: maxpool 2
    flatten
    fc: linear classes
}
"""
BATCH = 128
STEPS = 1437 // BATCH  # digits: 1,437 training images, the last short batch dropped
EPOCH_KEYS = ("train_loss", "train_top1", "val_loss", "val_top1", "val_top5", "lr",
              "lr_last", "images_per_s", "seconds")


def _rows(run) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def _scalars(folder) -> dict[str, list[tuple[int, float]]]:
    """Every scalar of a TensorBoard log folder, read by TensorBoard's own reader."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    reader = EventAccumulator(str(folder))
    reader.Reload()
    return {tag: [(event.step, event.value) for event in reader.Scalars(tag)]
            for tag in reader.Tags()["scalars"]}


@pytest.fixture(scope="module")
def logged(tmp_path_factory):
    """One run trained 2 epochs with both loggers (the flag repeated), then resumed
    to 3 epochs in Python without MLFLOW_TRACKING_URI: the run continues the store
    it logged to. The working directory is a temporary one (MLflow puts its
    artifacts in ./mlruns). What each phase left is kept for the tests."""
    home = tmp_path_factory.mktemp("tracking")
    spec = home / "tiny.cnn"
    spec.write_text(TINY)
    run, store = home / "run", f"sqlite:///{home / 'store.db'}"
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(home)
        patch.setenv("MLFLOW_TRACKING_URI", store)
        status = main(["train", str(spec), "--data", "digits", "--epochs", "2",
                       "--batch", str(BATCH), "--out", str(run), "--log", "tensorboard",
                       "--log", "mlflow"])
        assert status == 0
        first = types.SimpleNamespace(
            scalars=_scalars(run / "tensorboard"),
            events=sorted(p.name for p in (run / "tensorboard").iterdir()),
            state=json.loads((run / "tracking.json").read_text()), rows=_rows(run))
        patch.delenv("MLFLOW_TRACKING_URI")
        cnnspec.train(spec, resume=run, epochs=3, verbose=False)
    return types.SimpleNamespace(run=run, store=store, first=first, rows=_rows(run),
                                 scalars=_scalars(run / "tensorboard"))


def test_tensorboard_epoch_scalars_are_metrics_jsonl_at_the_epochs_last_step(logged):
    assert [row["epoch"] for row in logged.rows] == [1, 2, 3]
    for key in EPOCH_KEYS:
        steps, values = zip(*logged.scalars[f"epoch/{key}"])
        assert steps == (STEPS, 2 * STEPS, 3 * STEPS), key
        assert values == pytest.approx([row[key] for row in logged.rows], rel=1e-6), key


def test_tensorboard_step_scalars_are_each_batch_and_its_rate(logged):
    """Every step once, numbered across epochs; each step's batch loss and top-1
    (all batches are full) average to the epoch's; the first step's rate is the
    row's `lr` and the last's its `lr_last`."""
    for tag in ("step/train_loss", "step/train_top1", "step/lr"):
        assert [step for step, _ in logged.scalars[tag]] == list(range(1, 3 * STEPS + 1))
    for epoch, row in enumerate(logged.rows):
        part = slice(epoch * STEPS, (epoch + 1) * STEPS)
        losses = [value for _, value in logged.scalars["step/train_loss"][part]]
        top1 = [value for _, value in logged.scalars["step/train_top1"][part]]
        rates = [value for _, value in logged.scalars["step/lr"][part]]
        assert sum(losses) / STEPS == pytest.approx(row["train_loss"], rel=1e-5)
        assert sum(top1) / STEPS == pytest.approx(row["train_top1"], rel=1e-5)
        assert (rates[0], rates[-1]) == pytest.approx((row["lr"], row["lr_last"]))


def test_a_resumed_run_continues_the_same_tensorboard_folder(logged):
    first_steps = [step for step, _ in logged.first.scalars["epoch/val_top1"]]
    assert first_steps == [STEPS, 2 * STEPS]
    events = sorted(path.name for path in (logged.run / "tensorboard").iterdir())
    assert len(logged.first.events) == 1 and len(events) == 2
    assert logged.first.events[0] in events
    # The first two epochs read back as the first process logged them.
    assert logged.scalars["epoch/val_top1"][:2] == logged.first.scalars["epoch/val_top1"]


def test_tensorboard_holds_the_hyperparameters_and_the_spec_summary(logged):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

    reader = EventAccumulator(str(logged.run / "tensorboard"))
    reader.Reload()
    start = HParamsPluginData.FromString(
        reader.PluginTagToContent("hparams")["_hparams_/session_start_info"])
    hparams = start.session_start_info.hparams
    assert hparams["optimizer.kind"].string_value == "adamw"
    assert hparams["optimizer.lr"].number_value == pytest.approx(1e-3)
    assert hparams["batch"].number_value == BATCH
    summary = reader.Tensors("spec/text_summary")[0].tensor_proto.string_val[0].decode()
    assert "conv1" in summary and "Params:      1,370" in summary
    config = reader.Tensors("config/text_summary")[0].tensor_proto.string_val[0].decode()
    assert '"epochs": 2' in config


def test_mlflow_holds_the_params_the_epochs_and_the_run_folder(logged):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(logged.store)
    run_id = logged.first.state["mlflow"]["run_id"]
    assert json.loads((logged.run / "tracking.json").read_text()) == logged.first.state
    assert logged.first.state["mlflow"]["tracking_uri"] == logged.store
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert client.get_experiment(run.info.experiment_id).name == "tiny"
    assert len(client.search_runs([run.info.experiment_id])) == 1  # one run, continued
    config = resolve(None, epochs=2, batch=BATCH, log="tensorboard,mlflow")
    expected = {name: tracking._text(value)
                for name, value in tracking.flat_config(config).items()}
    assert run.data.params == expected  # as first logged: MLflow params are written once
    assert run.data.params["optimizer.lr"] == "0.001"
    assert run.data.tags["cnnspec.resumed.epochs"] == "3"
    for key in ("val_top1", "val_loss", "train_loss", "val_top5", "lr"):
        history = client.get_metric_history(run_id, f"epoch/{key}")
        assert [(m.step, m.value) for m in history] == \
            [(row["epoch"], row[key]) for row in logged.rows], key
    steps = client.get_metric_history(run_id, "step/train_loss")
    assert sorted(m.step for m in steps) == list(range(1, 3 * STEPS + 1))
    names = {artifact.path for artifact in client.list_artifacts(run_id)}
    assert {"metrics.jsonl", "run.json", "curves.png", "weights.safetensors",
            "summary.txt"} <= names
    assert "last.ckpt" not in names and ".lock" not in names
    local = client.download_artifacts(run_id, "metrics.jsonl", str(logged.run.parent))
    assert [json.loads(line) for line in open(local)] == logged.rows


def test_a_run_stopped_by_a_signal_is_killed_in_mlflow_and_resumes_in_the_same_run(
        tmp_path, monkeypatch):
    """Ctrl-C in epoch 2: the MLflow run is KILLED with epoch 1 logged; --resume
    reopens it (RUNNING), and it ends FINISHED with each epoch once. TensorBoard
    reads every step once: the two steps of epoch 2 logged before the signal are
    purged when the resumed process logs them again."""
    from mlflow.tracking import MlflowClient

    from cnnspec.training.run import Interrupted

    monkeypatch.chdir(tmp_path)
    store = f"sqlite:///{tmp_path / 'store.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    spec, run = tmp_path / "tiny.cnn", tmp_path / "run"
    spec.write_text(TINY)

    class CtrlC(Silent):
        def step(self, step, lr):
            if self.epoch == 2 and step.index == 3:
                os.kill(os.getpid(), signal.SIGINT)

        def start_epoch(self, epoch, epochs, steps):
            self.epoch = epoch

    with pytest.raises(Interrupted):
        cnnspec.train(spec, data="digits", out=run, epochs=2, batch=BATCH,
                      log=("mlflow", "tensorboard"), reporter=CtrlC())
    client = MlflowClient(store)
    run_id = json.loads((run / "tracking.json").read_text())["mlflow"]["run_id"]
    assert client.get_run(run_id).info.status == "KILLED"
    assert [m.step for m in client.get_metric_history(run_id, "epoch/val_top1")] == [1]
    names = {artifact.path for artifact in client.list_artifacts(run_id)}
    assert names == {"summary.txt"}  # the run folder's files only when it finishes

    class Watch(Silent):
        def start_epoch(self, epoch, epochs, steps):
            self.status = client.get_run(run_id).info.status

    watch = Watch()
    cnnspec.train(spec, resume=run, reporter=watch)
    assert watch.status == "RUNNING"
    assert client.get_run(run_id).info.status == "FINISHED"
    history = client.get_metric_history(run_id, "epoch/val_top1")
    assert [(m.step, m.value) for m in history] == \
        [(row["epoch"], row["val_top1"]) for row in _rows(run)]
    scalars = _scalars(run / "tensorboard")
    steps = [step for step, _ in scalars["step/train_loss"]]
    assert steps == list(range(1, 2 * STEPS + 1))
    assert [step for step, _ in scalars["epoch/val_top1"]] == [STEPS, 2 * STEPS]


@pytest.mark.parametrize("name", ["tensorboard", "mlflow"])
def test_a_logger_whose_package_is_missing_is_refused_before_training(
        name, tmp_path, monkeypatch, cli):
    monkeypatch.setitem(sys.modules, name, None)  # as if it were not installed
    spec = tmp_path / "tiny.cnn"
    spec.write_text(TINY)
    result = cli("train", spec, "--data", "digits", "--out", tmp_path / "run",
                 "--log", name)
    fails(result, 2, f"--log {name} needs the {name} package",
          f"pip install 'cnnspec[{name}]'")
    assert not (tmp_path / "run").exists()


def test_an_mlflow_store_that_cannot_be_used_is_refused_before_training(
        tmp_path, monkeypatch, cli):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "bogus://nowhere")
    spec = tmp_path / "tiny.cnn"
    spec.write_text(TINY)
    result = cli("train", spec, "--data", "digits", "--out", tmp_path / "run",
                 "--log", "mlflow")
    fails(result, 2, "--log mlflow: cannot log to the MLflow store bogus://nowhere: ")
    assert "epoch" not in result.stdout
    assert not (tmp_path / "run" / "last.ckpt").exists()


def test_logger_names_are_checked_and_taken_repeated_or_comma_separated(tmp_path, cli):
    assert tracking.logger_names(["tensorboard, mlflow", "TensorBoard"]) == \
        ("tensorboard", "mlflow")
    assert resolve(None, log="mlflow").log == ("mlflow",)
    assert resolve(None).log == ()
    with pytest.raises(UsageError, match="--log takes tensorboard or mlflow"):
        resolve(None, log=("tensorboard", "wandb"))
    spec = tmp_path / "tiny.cnn"
    spec.write_text(TINY)
    fails(cli("train", spec, "--data", "digits", "--log", "wandb"), 2,
          "--log takes tensorboard or mlflow (repeated or comma-separated), not 'wandb'")


def test_mlflow_store_is_the_environments_else_the_runs_own_else_mlflows_default(
        tmp_path, monkeypatch):
    import mlflow

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    default = tracking._tracking_uri(mlflow, {})
    assert default == mlflow.get_tracking_uri()
    assert default.startswith("sqlite:///") and default.endswith(
        f"{tmp_path}/mlflow.db")  # MLflow's own default: a SQLite file here
    saved = {"tracking_uri": "sqlite:////elsewhere/store.db"}
    assert tracking._tracking_uri(mlflow, saved) == saved["tracking_uri"]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://tracking.example:5000")
    assert tracking._tracking_uri(mlflow, saved) == "http://tracking.example:5000"


def test_a_logger_that_fails_during_the_run_is_dropped_with_a_note():
    class Notes(Silent):
        lines: list = []

        def note(self, text):
            self.lines.append(text)

    class Broken:
        notes = []

        def step(self, global_step, values):
            raise OSError("No space left on device")

    class Kept:
        notes, steps = [], []

        def step(self, global_step, values):
            self.steps.append(global_step)

    inner, kept = Notes(), Kept()
    tracked = tracking.Tracked(inner, [("tensorboard", Broken()), ("mlflow", kept)])
    tracked.start_epoch(2, 3, 10)
    step = types.SimpleNamespace(index=1, steps=10, loss=2.0, top1=0.5, images=8,
                                 seconds=0.1, lr=0.1)
    tracked.step(step, 0.1)
    tracked.step(types.SimpleNamespace(**{**vars(step), "index": 2, "images": 16}), 0.1)
    assert kept.steps == [11, 12]
    assert inner.lines == ["tensorboard: logging stopped (OSError: No space left on "
                           "device); the run goes on without it"]
