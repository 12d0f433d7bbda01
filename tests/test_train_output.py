"""What training, evaluation and `cnnspec compare` print (issue 21, item 7): no top-5
where it means nothing (5 or fewer classes), progress lines within an epoch when the
output is a log file, library errors quoted as whole sentences without colour codes,
and the comparison table's top-1 without `-o`.
"""

import io
import json
import pickle
from types import SimpleNamespace

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

import cnnspec
from cnnspec.training.loop import Step, Trainer, reports_top5, top5_note
from cnnspec.training.progress import Reporter, draw_curves, duration, epoch_line, \
    step_line
from conftest import SPECS

pytest.importorskip("torchvision")
pytest.importorskip("sklearn")
pytest.importorskip("safetensors")
from safetensors.torch import save_file  # noqa: E402

# 3 classes of 16x16 colour images: learnable in an epoch, and fewer than 5 classes.
SMALL = """
network small(classes = 10) {
    input 3x16x16
    pool: adaptive_avgpool 2
    flatten
    fc: linear classes
    train {
        optimizer: sgd lr=0.1
        epochs: 2
        batch: 4
    }
}
"""


def _row(epoch: int, top5) -> dict:
    return {"epoch": epoch, "train_loss": 1.0, "train_top1": 0.5, "val_loss": 0.9,
            "val_top1": 0.6, "val_top5": top5, "lr": 0.1, "images_per_s": 100.0,
            "seconds": 0.5}


def _trainer(classes: int) -> Trainer:
    config = SimpleNamespace(amp="off", channels_last=False, label_smoothing=0.0,
                             clip_grad=None)
    model = torch.nn.Linear(4, classes)
    return Trainer(model, torch.optim.SGD(model.parameters(), lr=0.1),
                   torch.device("cpu"), config, {})


@pytest.fixture(scope="module")
def three_classes(tmp_path_factory):
    """A 2-epoch run of SMALL on a 3-class image folder, with what it printed."""
    from conftest import _write_image_folder

    root = tmp_path_factory.mktemp("three")
    folder = _write_image_folder(root / "shapes", classes=3, per_class=8, size=(16, 16),
                                 val=True)
    spec_file = root / "small.cnn"
    spec_file.write_text(SMALL)
    stream = io.StringIO()
    result = cnnspec.train(str(spec_file), data=str(folder), out=root / "run",
                           reporter=Reporter(stream))
    return SimpleNamespace(spec=str(spec_file), data=str(folder), result=result,
                           out=stream.getvalue())


# --- (a) top-5 only with more than 5 classes ---------------------------------------

def test_top5_is_measured_only_with_more_than_5_classes():
    assert [reports_top5(k) for k in (2, 5, 6, 1000)] == [False, False, True, True]
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(20, 4, generator=generator)
    for classes, measured in ((3, False), (5, False), (6, True)):
        labels = torch.randint(0, classes, (20,), generator=generator)
        loader = DataLoader(TensorDataset(images, labels), batch_size=8)
        trainer = _trainer(classes)
        stats = trainer.evaluate(trainer.model, loader)
        assert (stats.top5 is not None) == measured, classes
        assert 0 <= stats.top1 <= 1 and stats.images == 20


def test_the_epoch_line_and_the_table_leave_out_an_unmeasured_top5():
    assert "val_top5" not in epoch_line(_row(1, None))
    assert "val_top5 99.44%  lr 0.1" in epoch_line(_row(1, 0.9944))
    stream = io.StringIO()
    reporter = Reporter(stream)
    for epoch in (1, 2):
        reporter.end_epoch(_row(epoch, None))
    reporter.finish([_row(1, None), _row(2, None)], _row(2, None))
    text = stream.getvalue()
    assert text.count(top5_note()) == 1  # said once, before the first epoch line
    assert text.index(top5_note()) < text.index("epoch   1")
    assert "val_top5" not in text.replace(top5_note(), "") and "val_top1" in text
    measured = io.StringIO()
    Reporter(measured).finish([_row(1, 0.99)], _row(1, 0.99))
    assert "val_top5" in measured.getvalue() and "99.00%" in measured.getvalue()


def test_the_curves_draw_top5_only_where_it_was_measured(tmp_path, monkeypatch):
    from matplotlib import pyplot

    labels = []
    monkeypatch.setattr(pyplot, "close", lambda figure: labels.append(
        [line.get_label() for axes in figure.axes for line in axes.get_lines()]))
    draw_curves([_row(1, None), _row(2, None)], tmp_path / "a.png", "small")
    draw_curves([_row(1, 0.9), _row(2, 0.95)], tmp_path / "b.png", "lenet5")
    assert labels == [["train", "validation", "top-1"],
                      ["train", "validation", "top-1", "top-5"]]
    assert (tmp_path / "a.png").read_bytes()[:4] == b"\x89PNG"


def test_a_3_class_run_reports_no_top5(three_classes):
    result, out = three_classes.result, three_classes.out
    assert result.metrics["val_top5"] is None
    assert json.loads(json.dumps(result.metrics))["val_top5"] is None
    rows = [json.loads(line) for line in
            (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [row["val_top5"] for row in rows] == [None, None]
    assert out.count(top5_note()) == 1
    assert "val_top5" not in out.replace(top5_note(), "")
    assert "epoch   2  train_loss" in out and (result.run_dir / "curves.png").is_file()


def test_evaluating_3_classes_reports_no_top5(three_classes, tmp_path):
    weights = three_classes.result.run_dir / "weights.safetensors"
    report = cnnspec.evaluate(three_classes.spec, [weights, weights])
    assert report.top5 is None and [m.top5 for m in report.members] == [None, None]
    assert report.to_json()["top5"] is None
    assert report.top1 == pytest.approx(three_classes.result.metrics["val_top1"])
    assert top5_note(3) in report.notes
    assert top5_note(3).startswith("top-5 is not reported: the data has 3 classes")
    lenet_weights = tmp_path / "lenet5.safetensors"  # untrained is enough here
    save_file(cnnspec.build(SPECS / "lenet5.cnn").state_dict(), str(lenet_weights))
    lenet = cnnspec.evaluate(SPECS / "lenet5.cnn", lenet_weights, "digits")
    assert lenet.top5 is not None and not any("top-5" in n for n in lenet.notes)


def test_the_evaluate_command_prints_no_top5_column(three_classes, cli):
    weights = three_classes.result.run_dir / "weights.safetensors"
    run = cli("evaluate", three_classes.spec, "--weights", weights)
    assert run.returncode == 0, run.stderr
    assert "top-1" in run.stdout and "top-5" not in run.stdout.replace(
        "top-5 is not reported", "")
    assert "top-5 is not reported: the data has 3 classes" in run.stdout
    run = cli("evaluate", three_classes.spec, "--weights", weights, "--json")
    assert json.loads(run.stdout)["top5"] is None


# --- (b) progress lines within an epoch when the output is not a terminal ---------

def test_progress_lines_every_interval_when_not_a_terminal():
    now = [100.0]
    stream = io.StringIO()
    reporter = Reporter(stream, every=30, clock=lambda: now[0])
    reporter.start_epoch(3, 90, 5004)
    for index, at in ((1, 105), (600, 129.9), (1200, 131), (1500, 150), (2400, 161.5)):
        now[0] = at
        reporter.step(Step(index, 5004, 2.1345, 0.451, 64 * index, 0.0735 * index), 0.1)
    lines = stream.getvalue().splitlines()
    assert lines == [
        "epoch 3/90  step 1200/5004  loss 2.1345  acc 45.1%  lr 0.1  871 img/s  "
        "eta 4m40s",
        "epoch 3/90  step 2400/5004  loss 2.1345  acc 45.1%  lr 0.1  871 img/s  "
        "eta 3m11s"]
    # The last step of an epoch prints nothing: its epoch line follows at once.
    now[0] = 500
    reporter.step(Step(5004, 5004, 2.0, 0.5, 64 * 5004, 368.0), 0.1)
    assert len(stream.getvalue().splitlines()) == 2


def test_a_run_into_a_log_file_shows_its_steps(tmp_path):
    stream = io.StringIO()
    cnnspec.train(SPECS / "lenet5.cnn", data="digits", out=tmp_path / "run", epochs=1,
                  batch=256, reporter=Reporter(stream, every=0))
    text = stream.getvalue()
    # 1,437 images make 5 batches of 256: steps 1-4 print, then the epoch line.
    assert [line.split("  ")[1] for line in text.splitlines()
            if line.startswith("epoch 1/1  step")] == [f"step {i}/5" for i in range(1, 5)]
    assert "epoch   1  train_loss" in text and "val_top5" in text


def test_durations():
    assert [duration(s) for s in (0, 38.4, 60, 280, 3599.6, 7500)] == [
        "0s", "38s", "1m00s", "4m40s", "1h00m", "2h05m"]
    step = Step(1, 10, 1.0, 0.0, 32, 0.0)  # no time measured yet: no rate, no eta
    assert step_line(step, 0.01, 1, 5).endswith("lr 0.01  0 img/s  eta 0s")


# --- (c) library errors quoted whole, without colour codes ------------------------

class Thing:
    pass


def _bad_torch_files(folder):
    folder.mkdir(parents=True, exist_ok=True)
    pickled = folder / "pickled.pth"
    torch.save({"thing": Thing()}, pickled)
    whole = io.BytesIO()
    torch.save({"w": torch.zeros(3)}, whole)
    truncated = folder / "truncated.pth"
    truncated.write_bytes(whole.getvalue()[:200])
    return pickled, truncated


def _assert_quoted_whole(message: str, sentence: str):
    assert "\x1b" not in message and "[1m" not in message
    assert sentence in message, message


def test_weights_errors_quote_whole_sentences(tmp_path):
    from cnnspec.training.weights import WeightsError, read_state_dict

    pickled, truncated = _bad_torch_files(tmp_path)
    with pytest.raises(WeightsError) as caught:
        read_state_dict(pickled)
    _assert_quoted_whole(str(caught.value), f"Unsupported global: GLOBAL {__name__}"
                         ".Thing was not an allowed global by default); it was not "
                         "executed")
    with pytest.raises(WeightsError) as caught:
        read_state_dict(truncated)
    _assert_quoted_whole(str(caught.value), "(RuntimeError: PytorchStreamReader failed "
                         "reading zip archive: failed finding central directory)")


def test_checkpoint_errors_quote_whole_sentences(tmp_path):
    from cnnspec.training.errors import UsageError

    for bad in _bad_torch_files(tmp_path / "files"):
        run = tmp_path / bad.stem
        run.mkdir()
        (run / "last.ckpt").write_bytes(bad.read_bytes())
        with pytest.raises(UsageError) as caught:
            cnnspec.train(SPECS / "lenet5.cnn", data="digits", resume=run,
                          verbose=False)
        message = str(caught.value)
        assert message.startswith(f"cannot resume: {run / 'last.ckpt'} is not a "
                                  "readable checkpoint (")
        _assert_quoted_whole(message, "failed finding central directory)"
                             if bad.stem == "truncated" else
                             f"(UnpicklingError: Unsupported global: GLOBAL {__name__}"
                             ".Thing was not an allowed global by default)")


def test_first_sentence():
    from cnnspec.training.checkpoint import first_sentence

    assert first_sentence("Expecting value: line 1 column 1 (char 0)") == \
        "Expecting value: line 1 column 1 (char 0)"
    assert first_sentence("torch.nn.Linear failed. See https://x.y/z.html.") == \
        "torch.nn.Linear failed"
    assert first_sentence("\x1b[1mbold\x1b[0m words.\n\tmore") == "bold words"
    assert first_sentence(pickle.UnpicklingError(
        "Weights only load failed. In PyTorch 2.6, ... Please file an issue with the "
        "following so that we can make `weights_only=True` compatible with your use "
        "case: WeightsUnpickler error: \n\nUnsupported operand 149\n\nCheck the "
        "documentation")) == "Unsupported operand 149"


# --- (d) compare's table and JSON show the top-1 the chart shows ------------------

def test_compare_shows_torchvision_top1_without_a_chart(cli):
    run = cli("compare", SPECS / "resnet18.cnn", SPECS / "lenet5.cnn")
    assert run.returncode == 0, run.stderr
    assert "Top-1" in run.stdout and "69.76%" in run.stdout
    assert "Top-1 from torchvision IMAGENET1K_V1." in " ".join(run.stdout.split())
    run = cli("compare", SPECS / "resnet18.cnn", "--json")
    row = json.loads(run.stdout)["networks"][0]
    assert (row["top1"], row["top1_source"]) == (69.758, "torchvision IMAGENET1K_V1")
