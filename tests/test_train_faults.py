"""Ordinary events that broke training runs (issue 21), each through the path the user
takes: resuming a run whose `classes` came from the data, lengthening a finished run,
two runs in one folder, SIGTERM, a full disk and a read-only folder, a run that
failed before its first epoch. After each, nothing saved is lost and the run goes on
to end bitwise equal to one never interrupted.
"""

import json
import math
import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager

import pytest
import torch

from conftest import ROOT, SPECS, fails as _fails

pytest.importorskip("sklearn")
pytest.importorskip("safetensors")

# Small and quick, with dropout and random augmentation so that an exact resume must
# restore every generator; a cosine schedule, whose every rate depends on its length.
COSINE = """
network small(classes = 10) {
    input 1x12x12
    conv1: conv 8 k=3 p=1
    relu
    pool: maxpool 2
    flatten
    drop: dropout 0.3
    fc: linear classes
    train {
        optimizer: sgd lr=0.1 momentum=0.9
        schedule: cosine
        epochs: 4
        batch: 32
        augment: random_crop 12 padding=2
    }
}
"""


@pytest.fixture
def small_spec(tmp_path):
    path = tmp_path / "small.cnn"
    path.write_text(COSINE)
    return path


def _checkpoint(run):
    return torch.load(run / "last.ckpt", weights_only=True)


def _rows(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def _assert_same_weights(expected_run, run):
    expected, got = _checkpoint(expected_run)["model"], _checkpoint(run)["model"]
    assert expected.keys() == got.keys()
    for name in expected:
        assert torch.equal(expected[name], got[name]), name
    assert [r["val_loss"] for r in _rows(expected_run)] == [r["val_loss"]
                                                            for r in _rows(run)]


# -- 1. a run whose classes came from the data resumes as it was built

def test_a_run_that_took_classes_from_the_data_resumes(cli, tmp_path, image_folder):
    folder = image_folder(tmp_path / "three", classes=3, per_class=6)
    lenet = SPECS / "lenet5.cnn"
    run = tmp_path / "run"
    first = cli("train", lenet, "--data", folder, "--epochs", "1", "--batch", "4",
                "--out", run)
    assert first.returncode == 0, first.stderr
    assert "classes: 3, taken from the data" in first.stdout
    resumed = cli("train", lenet, "--resume", run, "--epochs", "2")
    assert resumed.returncode == 0, resumed.stderr
    assert [r["epoch"] for r in _rows(run)] == [1, 2]
    assert _checkpoint(run)["model"]["output.weight"].shape[0] == 3


# -- 2. lengthening a finished run, and flags changed on resuming

def _cosine(base, epoch, epochs):
    """torch's CosineAnnealingLR with eta_min 0, the rate of epoch `epoch` (1-based)."""
    return base * (1 + math.cos(math.pi * (epoch - 1) / epochs)) / 2


def test_a_lengthened_cosine_run_follows_the_longer_schedule(cli, tmp_path, small_spec):
    run = tmp_path / "run"
    assert cli("train", small_spec, "--data", "digits", "--out", run).returncode == 0
    longer = cli("train", small_spec, "--resume", run, "--epochs", "8")
    assert longer.returncode == 0, longer.stderr
    assert "rebuilt for 8 epochs" in longer.stdout
    rates = [r["lr"] for r in _rows(run)]
    assert rates[:4] == pytest.approx([_cosine(0.1, e, 4) for e in range(1, 5)])
    assert rates[4:] == pytest.approx([_cosine(0.1, e, 8) for e in range(5, 9)])


def test_a_lengthened_run_stopped_and_resumed_is_exact(tmp_path, small_spec):
    """The lengthened schedule is saved like any other: stopping the longer run and
    resuming it ends bitwise equal to the longer run never stopped."""
    import cnnspec
    from cnnspec.training.progress import Silent
    from cnnspec.training.run import Interrupted

    class StopAfter(Silent):
        def end_epoch(self, row):
            if row["epoch"] == 4:
                raise KeyboardInterrupt  # as a Ctrl-C at the end of epoch 4's validation

    for name in ("whole", "stopped"):
        cnnspec.train(small_spec, data="digits", out=tmp_path / name, epochs=2,
                      verbose=False)
    cnnspec.train(small_spec, resume=tmp_path / "whole", epochs=5, verbose=False)
    with pytest.raises(Interrupted) as stop:
        cnnspec.train(small_spec, resume=tmp_path / "stopped", epochs=5,
                      reporter=StopAfter())
    assert stop.value.saved == 3
    cnnspec.train(small_spec, resume=tmp_path / "stopped", verbose=False)
    _assert_same_weights(tmp_path / "whole", tmp_path / "stopped")


def test_resuming_with_nothing_left_to_do_says_so(cli, tmp_path, small_spec):
    run = tmp_path / "run"
    assert cli("train", small_spec, "--data", "digits", "--epochs", "2",
               "--out", run).returncode == 0
    _fails(cli("train", small_spec, "--resume", run, "--epochs", "2"), 2,
           "already trained 2 epochs", "more than 2")
    _fails(cli("train", small_spec, "--resume", run), 2, "finished all 2 epochs",
           "--epochs")


def test_flags_changed_on_resuming_are_named_or_refused(cli, tmp_path, small_spec):
    run = tmp_path / "run"
    assert cli("train", small_spec, "--data", "digits", "--epochs", "1",
               "--out", run).returncode == 0
    _fails(cli("train", small_spec, "--resume", run, "--epochs", "2", "--freeze",
               "conv1"), 2, "--freeze cannot change", "--out")
    _fails(cli("train", small_spec, "--resume", run, "--epochs", "2", "--ema",
               "0.99"), 2, "--ema cannot be switched on")
    changed = cli("train", small_spec, "--resume", run, "--epochs", "2", "--batch",
                  "16", "--weight-decay", "0.01")
    assert changed.returncode == 0, changed.stderr
    assert "resume: batch: 16 (the run used 32)" in changed.stdout
    assert "resume: weight_decay: 0.01 (the run used 0)" in changed.stdout
    # the new decay reached the optimizer (the saved one would otherwise win)
    groups = _checkpoint(run)["optimizer"]["param_groups"]
    assert {group["weight_decay"] for group in groups} == {0.01}


def test_the_recipe_line_says_where_the_rate_came_from(cli, tmp_path, small_spec):
    done = cli("train", small_spec, "--data", "digits", "--epochs", "1", "--lr", "0.05",
               "--out", tmp_path / "run")
    assert "recipe: sgd lr=0.05 momentum=0.9 (spec, lr from --lr)" in done.stdout


# -- 3. two runs in one folder

def _start(*args):
    return subprocess.Popen([sys.executable, "-m", "cnnspec", *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=ROOT)


def _wait_for(condition, process, timeout=120.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.02)


def test_a_second_run_in_a_busy_folder_is_refused_naming_the_first(cli, tmp_path,
                                                                  small_spec):
    run = tmp_path / "run"
    first = _start("train", small_spec, "--data", "digits", "--epochs", "30",
                   "--out", run)
    try:
        _wait_for(lambda: (run / "run.json").exists(), first)
        second = cli("train", small_spec, "--data", "digits", "--out", run)
        _fails(second, 2, f"{run} is in use by another run (process {first.pid}",
               "choose another --out")
        _fails(cli("train", small_spec, "--resume", run, "--epochs", "40"), 2,
               f"process {first.pid}")
    finally:
        first.kill()
        first.communicate()
    # killed: the system released its lock, so the folder can be resumed at once
    resumed = cli("train", small_spec, "--resume", run, "--epochs", "1")
    assert "in use" not in resumed.stderr


def test_default_run_folders_are_never_shared(tmp_path, small_spec):
    """Without --out, runs started together each create their own runs/NAME-k."""
    processes = [subprocess.Popen(
        [sys.executable, "-m", "cnnspec", "train", str(small_spec), "--data", "digits",
         "--epochs", "1", "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, cwd=tmp_path) for _ in range(2)]
    outputs = [p.communicate(timeout=300) for p in processes]
    assert [p.returncode for p in processes] == [0, 0], outputs
    folders = {json.loads(out.splitlines()[-1])["run_dir"] for out, _ in outputs}
    assert folders == {"runs/small", "runs/small-2"}


# -- 4. SIGTERM: saved and resumable, like Ctrl-C

def test_sigterm_keeps_the_finished_epochs_and_resumes_exactly(cli, tmp_path,
                                                               small_spec):
    whole = tmp_path / "whole"
    assert cli("train", small_spec, "--data", "digits", "--out", whole).returncode == 0
    run = tmp_path / "run"
    process = _start("train", small_spec, "--data", "digits", "--out", run)
    _wait_for(lambda: (run / "metrics.jsonl").exists() and len(_rows(run)) >= 2, process)
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 143, err
    assert "Traceback" not in err
    saved = _checkpoint(run)["epoch"]
    assert f"terminated (SIGTERM); epochs 1-{saved} are saved in {run}" in err
    assert f"--resume {run}" in err
    assert cli("train", small_spec, "--resume", run).returncode == 0
    _assert_same_weights(whole, run)


def test_sigterm_stops_every_rank_of_a_multi_process_run(cli, tmp_path, small_spec):
    run = tmp_path / "run"
    process = _start("train", small_spec, "--data", "digits", "--nproc", "2",
                     "--epochs", "30", "--out", run)
    _wait_for(lambda: (run / "metrics.jsonl").exists() and len(_rows(run)) >= 1, process)
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 143, err
    assert "Traceback" not in err and "death signal" not in err
    assert err.count("terminated (SIGTERM)") == 1  # rank 0 speaks for the run
    saved = _checkpoint(run)["epoch"]
    assert f"epochs 1-{saved} are saved" in err
    # no rank is left behind holding the folder
    ranks = subprocess.run(["pgrep", "-f", f"--out {run}"], capture_output=True)
    assert ranks.stdout == b""
    # what rank 0 saved is whole: a run continues from it
    resumed = cli("train", small_spec, "--resume", run, "--epochs", str(saved + 1))
    assert resumed.returncode == 0, resumed.stderr
    assert [r["epoch"] for r in _rows(run)] == list(range(1, saved + 2))


def test_sigterm_during_the_first_save_finishes_it(tmp_path, small_spec, monkeypatch):
    import cnnspec
    from cnnspec.training import checkpoint
    from cnnspec.training.run import Interrupted

    write = checkpoint.save_checkpoint

    def terminated_write(run_dir, state):
        if state["epoch"] == 0:
            os.kill(os.getpid(), signal.SIGTERM)  # mid-write, as a scheduler's kill
        write(run_dir, state)

    monkeypatch.setattr(checkpoint, "save_checkpoint", terminated_write)
    with pytest.raises(Interrupted) as stop:
        cnnspec.train(small_spec, data="digits", out=tmp_path / "run", verbose=False)
    assert (stop.value.saved, stop.value.signal_number) == (0, signal.SIGTERM)
    assert _checkpoint(tmp_path / "run")["epoch"] == 0
    assert not list((tmp_path / "run").glob(".*.tmp"))
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handler given back


# -- 5. a full disk and a read-only folder

@contextmanager
def _mounted(*arguments):
    """`mount ARGUMENTS`, unmounted afterwards; skips where mounting is not allowed."""
    target = arguments[-1]
    if os.geteuid() != 0 or subprocess.run(["mount", *arguments],
                                           capture_output=True).returncode != 0:
        pytest.skip("needs root to mount a small or read-only file system")
    try:
        yield target
    finally:
        subprocess.run(["umount", "-l", str(target)], check=True)


def test_a_full_disk_keeps_the_last_checkpoint_and_resumes_exactly(cli, tmp_path,
                                                                   small_spec):
    whole = tmp_path / "whole"
    assert cli("train", small_spec, "--data", "digits", "--epochs", "2",
               "--out", whole).returncode == 0
    size = (whole / "last.ckpt").stat().st_size
    disk = tmp_path / "disk"
    disk.mkdir()
    # room for one checkpoint and a little: the next write finds the disk full
    with _mounted("-t", "tmpfs", "-o", f"size={size * 3 // 2}", "tmpfs", disk):
        run = disk / "run"
        full = cli("train", small_spec, "--data", "digits", "--epochs", "2",
                   "--out", run)
        _fails(full, 3, "No space left on device", "the checkpoint of the starting "
               "weights", "is kept", f"--resume {run}")
        assert _checkpoint(run)["epoch"] == 0
        assert not list(run.glob(".*.tmp"))
        subprocess.run(["mount", "-o", f"remount,size={size * 10}", str(disk)],
                       check=True)
        assert cli("train", small_spec, "--resume", run).returncode == 0
        _assert_same_weights(whole, run)


def test_resuming_in_a_read_only_folder_changes_nothing(cli, tmp_path, small_spec):
    run = tmp_path / "run"
    assert cli("train", small_spec, "--data", "digits", "--epochs", "1",
               "--out", run).returncode == 0
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    with _mounted("--bind", "-o", "ro", str(run), run):
        _fails(cli("train", small_spec, "--resume", run, "--epochs", "2"), 3,
               "Read-only file system", "nothing in it was changed")
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before


def test_leftovers_of_a_killed_write_are_removed(cli, tmp_path, small_spec):
    run = tmp_path / "run"
    assert cli("train", small_spec, "--data", "digits", "--epochs", "1",
               "--out", run).returncode == 0
    (run / ".last.ckpt.4242.tmp").write_bytes(b"half a checkpoint")
    resumed = cli("train", small_spec, "--resume", run, "--epochs", "2")
    assert resumed.returncode == 0, resumed.stderr
    assert "removed .last.ckpt.4242.tmp" in resumed.stdout
    assert not list(run.glob(".*.tmp"))


# -- 6. a run that failed before finishing an epoch leaves a reusable folder

def test_the_same_command_reuses_a_folder_without_a_finished_epoch(cli, tmp_path,
                                                                   small_spec):
    import cnnspec
    from cnnspec.training.progress import Silent
    from cnnspec.training.run import Interrupted

    class StopInFirstEpoch(Silent):
        def step(self, step, lr):
            raise KeyboardInterrupt

    run = tmp_path / "run"
    with pytest.raises(Interrupted):
        cnnspec.train(small_spec, data="digits", out=run, reporter=StopInFirstEpoch())
    again = cli("train", small_spec, "--data", "digits", "--epochs", "1", "--out", run)
    assert again.returncode == 0, again.stderr
    assert "ended before finishing an epoch; starting it again" in again.stdout
    _fails(cli("train", small_spec, "--data", "digits", "--out", run), 2,
           "already holds a run (1 finished epochs)")


def test_a_spec_frozen_in_part_says_how_many_parameters_train(cli, tmp_path):
    spec = tmp_path / "frozen.cnn"
    spec.write_text(COSINE.replace("conv1: conv 8 k=3 p=1",
                                   "frozen { conv1: conv 8 k=3 p=1 }"))
    done = cli("train", spec, "--data", "digits", "--epochs", "1",
               "--out", tmp_path / "run")
    assert done.returncode == 0, done.stderr
    # conv1: 8 * (1 * 3 * 3) + 8 = 80 frozen; fc: 8 * 6 * 6 * 10 + 10 = 2,890 train
    assert "80 parameters; 2,890 of 2,970 parameters train" in done.stdout


def test_a_stop_signal_in_a_step_is_named_and_its_status_is_the_shells(tmp_path,
                                                                      small_spec):
    """SIGTERM raised inside a training step stops the run with that signal's name and
    number; the status is 128 + the number, as shells and schedulers read it."""
    import cnnspec
    from cnnspec.training.progress import Silent
    from cnnspec.training.run import Interrupted
    from cnnspec.training.signals import exit_status

    class TerminatedInAStep(Silent):
        def step(self, step, lr):
            os.kill(os.getpid(), signal.SIGTERM)

    with pytest.raises(Interrupted) as stop:
        cnnspec.train(small_spec, data="digits", out=tmp_path / "run",
                      reporter=TerminatedInAStep())
    assert (stop.value.saved, stop.value.signal_number) == (0, signal.SIGTERM)
    assert exit_status(stop.value.signal_number) == 143
    assert exit_status(signal.SIGINT) == 130
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_without_out_a_run_takes_the_next_free_folder(tmp_path, small_spec, monkeypatch):
    import cnnspec

    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs" / "small").mkdir(parents=True)
    (tmp_path / "runs" / "small-2").mkdir()
    result = cnnspec.train(small_spec, data="digits", epochs=1, verbose=False)
    assert result.run_dir == tmp_path.joinpath("runs", "small-3").relative_to(tmp_path)


def test_a_new_lr_on_resuming_rescales_the_rest_of_the_schedule(tmp_path, small_spec):
    """Stopped after epoch 1 of 4 and resumed with --lr 0.2 (the spec says 0.1): the
    epochs to come get the cosine rates of base 0.2."""
    import cnnspec
    from cnnspec.training.progress import Silent
    from cnnspec.training.run import Interrupted

    class StopInEpoch2(Silent):
        def start_epoch(self, epoch, epochs, steps):
            if epoch == 2:
                raise KeyboardInterrupt

    run = tmp_path / "run"
    with pytest.raises(Interrupted):
        cnnspec.train(small_spec, data="digits", out=run, reporter=StopInEpoch2())
    cnnspec.train(small_spec, resume=run, lr=0.2, verbose=False)
    rates = [r["lr"] for r in _rows(run)]
    assert rates == pytest.approx([_cosine(0.1, 1, 4)] +
                                  [_cosine(0.2, e, 4) for e in range(2, 5)])


def test_a_folder_with_an_unreadable_checkpoint_is_not_overwritten(cli, tmp_path,
                                                                   small_spec):
    run = tmp_path / "run"
    run.mkdir()
    (run / "last.ckpt").write_bytes(b"\x00" * 64)
    _fails(cli("train", small_spec, "--data", "digits", "--out", run), 2,
           "already holds a run (a checkpoint)", f"--resume {run}")
    assert (run / "last.ckpt").read_bytes() == b"\x00" * 64
