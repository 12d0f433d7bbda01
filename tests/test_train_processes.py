"""Training runs as separate processes: a SIGKILL then `--resume` ends bitwise equal
to an uninterrupted run, Ctrl-C keeps every finished epoch, two gloo processes
follow the one-process optimization, and bad input gets one message, no traceback.

The bad-input cases call the CLI's `main` in this process (each child process would
spend seconds importing torch to print one line); what they check is the same: the
exit status, the message on stderr, and that no exception escapes.
"""

import json
import signal
import subprocess
import sys
import time

import pytest
import torch

from conftest import ROOT, SPECS, fails as _fails

pytest.importorskip("sklearn")
pytest.importorskip("safetensors")

# Dropout and random augmentation, so an exact resume must restore every generator.
NOISY = """
network noisy(classes = 10) {
    input 1x12x12
    conv1: conv 16 k=3 p=1
    relu
    pool: maxpool 2
    flatten
    drop: dropout 0.3
    fc: linear classes
    train {
        optimizer: sgd lr=0.05 momentum=0.9
        schedule: step step_size=2
        epochs: 6
        batch: 16
        augment: random_crop 12 padding=2, horizontal_flip
    }
}
"""


def _cnnspec(*args, **options):
    return subprocess.run([sys.executable, "-m", "cnnspec", *map(str, args)],
                          capture_output=True, text=True, cwd=ROOT, timeout=300, **options)


def _as_in_a_terminal():
    # A shell's background job (`make test &`, some CI runners) starts with SIGINT
    # ignored, and children inherit that; Ctrl-C in a terminal always reaches them.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _start(*args):
    return subprocess.Popen([sys.executable, "-m", "cnnspec", *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=ROOT, preexec_fn=_as_in_a_terminal)


def _epochs_done(run):
    metrics = run / "metrics.jsonl"
    return len(metrics.read_text().splitlines()) if metrics.exists() else 0


def _wait_for_epochs(process, run, count, timeout=120.0):
    deadline = time.monotonic() + timeout
    while _epochs_done(run) < count:
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.02)


def _model(run):
    return torch.load(run / "last.ckpt", weights_only=True)["model"]


@pytest.fixture(scope="module")
def noisy_spec(tmp_path_factory):
    path = tmp_path_factory.mktemp("spec") / "noisy.cnn"
    path.write_text(NOISY)
    return path


@pytest.fixture(scope="module")
def whole_run(tmp_path_factory, noisy_spec):
    """The uninterrupted run that interrupted and resumed runs must equal."""
    run = tmp_path_factory.mktemp("whole") / "run"
    done = _cnnspec("train", noisy_spec, "--data", "digits", "--out", run)
    assert done.returncode == 0, done.stderr
    return run


def _assert_same_run(expected_run, run):
    expected, got = _model(expected_run), _model(run)
    assert expected.keys() == got.keys()
    for name in expected:
        assert torch.equal(expected[name], got[name]), name
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4, 5, 6]
    assert [r["val_loss"] for r in rows] == [json.loads(line)["val_loss"] for line in
                                             (expected_run / "metrics.jsonl").read_text()
                                             .splitlines()]


def test_sigkill_mid_epoch_then_resume_is_bitwise_equal(tmp_path, noisy_spec, whole_run):
    killed = tmp_path / "killed"
    process = _start("train", noisy_spec, "--data", "digits", "--out", killed)
    _wait_for_epochs(process, killed, 2)
    time.sleep(0.05)  # into epoch 3
    process.send_signal(signal.SIGKILL)
    process.communicate()
    assert 2 <= _epochs_done(killed) < 6
    resumed = _cnnspec("train", noisy_spec, "--resume", killed)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming after epoch" in resumed.stdout
    _assert_same_run(whole_run, killed)


def test_ctrl_c_in_the_first_epoch_keeps_the_start_and_resumes_exactly(tmp_path, noisy_spec,
                                                                      whole_run):
    run = tmp_path / "run"
    process = _start("train", noisy_spec, "--data", "digits", "--out", run)
    deadline = time.monotonic() + 120
    while not (run / "last.ckpt").exists():  # the starting state, written atomically
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.01)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130
    assert "Traceback" not in err
    assert "the starting state is saved" in err
    assert f"cnnspec train {noisy_spec} --resume {run}" in err
    state = torch.load(run / "last.ckpt", weights_only=True)
    assert state["epoch"] == 0 and state["history"] == []
    resumed = _cnnspec("train", noisy_spec, "--resume", run)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming after epoch 0" in resumed.stdout
    _assert_same_run(whole_run, run)


def test_ctrl_c_keeps_the_finished_epochs_and_says_how_to_resume(tmp_path, noisy_spec):
    run = tmp_path / "run"
    process = _start("train", noisy_spec, "--data", "digits", "--out", run,
                     "--epochs", "200")
    _wait_for_epochs(process, run, 1)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130
    assert "Traceback" not in err
    assert f"cnnspec train {noisy_spec} --resume {run}" in err
    state = torch.load(run / "last.ckpt", weights_only=True)
    assert state["epoch"] >= 1
    assert len(state["history"]) == state["epoch"]


def test_two_processes_follow_the_one_process_optimization(tmp_path):
    """gloo, 2 ranks of batch 16 against 1 process of batch 32, same seed. Each
    global batch holds the same images (DistributedSampler, drop_last), and DDP
    averages the two half-batch gradients: the same update up to the order of
    float additions. Not bitwise: LeNet's Adam divides each step by the gradient's
    running RMS, which magnifies that rounding where a gradient is near zero. After
    88 steps the weights (mean magnitude 0.04) differ by 6e-8 on average and 1.5e-5
    at most (measured); the test allows 1e-6 and 1e-4."""
    one, two = tmp_path / "one", tmp_path / "two"
    args = ["train", SPECS / "lenet5.cnn", "--data", "digits", "--epochs", "2",
            "--batch", "32"]
    single = _cnnspec(*args, "--out", one)
    assert single.returncode == 0, single.stderr
    double = _cnnspec(*args, "--out", two, "--nproc", "2")
    assert double.returncode == 0, double.stderr
    assert "2 processes" in double.stdout
    a, b = _model(one), _model(two)
    differences = torch.cat([(a[name] - b[name]).abs().flatten() for name in a])
    assert differences.mean() < 1e-6 and differences.max() < 1e-4
    metrics_one = [json.loads(x) for x in (one / "metrics.jsonl").read_text().splitlines()]
    metrics_two = [json.loads(x) for x in (two / "metrics.jsonl").read_text().splitlines()]
    # Validation covers every image once over both ranks: same count, same result.
    assert [m["val_top1"] for m in metrics_two] == pytest.approx(
        [m["val_top1"] for m in metrics_one], abs=1 / 360)


def test_ranks_end_with_identical_weights(tmp_path):
    script = tmp_path / "ranks.py"
    script.write_text(f"""
import os, torch, cnnspec
result = cnnspec.train({str(SPECS / 'lenet5.cnn')!r}, data="digits", out={str(tmp_path / 'run')!r},
                       epochs=1, batch=32, verbose=False)
torch.save(result.model.state_dict(), {str(tmp_path)!r} + f"/rank{{os.environ['RANK']}}.pt")
""")
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                           "--nproc-per-node=2", str(script)], capture_output=True,
                          text=True, cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stderr
    rank0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    rank1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    for name in rank0:
        assert torch.equal(rank0[name], rank1[name]), name


# -- bad input: one clear message, the right exit status, nothing lost


def test_missing_and_unusable_data(cli, tmp_path, image_folder):
    lenet = SPECS / "lenet5.cnn"
    _fails(cli("train", lenet, "--data", tmp_path / "nowhere"), 2, "nowhere")
    (tmp_path / "empty").mkdir()
    _fails(cli("train", lenet, "--data", tmp_path / "empty"), 2, "empty")
    one = image_folder(tmp_path / "one", classes=1)
    _fails(cli("train", lenet, "--data", one), 2, "class")
    broken = image_folder(tmp_path / "broken", classes=2, per_class=2)
    (broken / "train" / "b" / "1.png").write_bytes(b"not a png at all")
    _fails(cli("train", lenet, "--data", broken, "--batch", "1", "--val-fraction",
               "0.25", "--out", tmp_path / "r"), 2, "1.png")
    _fails(cli("train", lenet), 2, "--data")


def test_a_spec_that_does_not_classify(cli, tmp_path):
    spec = tmp_path / "features.cnn"
    spec.write_text("network features {\n input 1x8x8\n conv 4 k=3 p=1\n}\n")
    _fails(cli("train", spec, "--data", "digits"), 1, "outputs 4x8x8",
               "`linear classes`")
    fixed = tmp_path / "fixed.cnn"
    fixed.write_text("network fixed {\n input 1x8x8\n flatten\n linear 3\n}\n")
    _fails(cli("train", fixed, "--data", "digits"), 1, "outputs 3 class scores",
               "10 classes", "no `classes` parameter")


def test_resume_without_a_checkpoint_or_from_another_spec(cli, tmp_path, noisy_spec):
    _fails(cli("train", noisy_spec, "--resume", tmp_path / "none"), 2, "no folder")
    (tmp_path / "empty").mkdir()
    _fails(cli("train", noisy_spec, "--resume", tmp_path / "empty"), 2,
               "has no last.ckpt")
    run = tmp_path / "run"
    assert cli("train", noisy_spec, "--data", "digits", "--epochs", "1",
               "--out", run).returncode == 0
    _fails(cli("train", SPECS / "lenet5.cnn", "--resume", run), 1,
               "different network", "noisy")
    # the same layers, one of them narrower: still another network
    narrow = tmp_path / "narrow.cnn"
    narrow.write_text(NOISY.replace("conv1: conv 16", "conv1: conv 8"))
    _fails(cli("train", narrow, "--resume", run), 1, "different network")
    _fails(cli("train", noisy_spec, "--data", "digits", "--out", run), 2,
               "already holds a run", "--resume")
    (tmp_path / "corrupt").mkdir()
    (tmp_path / "corrupt" / "last.ckpt").write_bytes(b"\x00" * 100)
    _fails(cli("train", noisy_spec, "--resume", tmp_path / "corrupt"), 2,
               "not a readable checkpoint")


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(cli, tmp_path,
                                                                 noisy_spec):
    run = tmp_path / "run"
    assert cli("train", noisy_spec, "--data", "digits", "--epochs", "1",
               "--out", run).returncode == 0
    before = (run / "last.ckpt").read_bytes()
    blown = cli("train", noisy_spec, "--resume", run, "--epochs", "3", "--lr", "1e30")
    _fails(blown, 1, "at epoch 2, step", "the checkpoint of epoch 1", "--lr")
    assert (run / "last.ckpt").read_bytes() == before
    assert _epochs_done(run) == 1


def test_bad_flags_are_usage_errors(cli, noisy_spec):
    _fails(cli("train", noisy_spec, "--data", "digits", "--epochs", "0"), 2,
               "epochs")
    _fails(cli("train", noisy_spec, "--data", "digits", "--batch", "15",
               "--nproc", "2"), 2, "does not split evenly")
    bad = cli("train", noisy_spec, "--data", "digits", "--amp", "fp8")
    assert bad.returncode == 2 and "invalid choice" in bad.stderr
    _fails(cli("train", noisy_spec, "--data", "cifar10"), 2, "cifar10:PATH")
    _fails(cli("train", noisy_spec, "--data", "digits", "--nproc", "2",
               "--sync-batchnorm", "--device", "cpu"), 2, "needs CUDA")


def test_json_is_the_last_line_of_stdout(tmp_path, noisy_spec):
    done = _cnnspec("train", noisy_spec, "--data", "digits", "--epochs", "1", "--out",
                    tmp_path / "run", "--json")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1  # progress went to stderr
    assert json.loads(lines[0])["epochs"] == 1
    assert "epoch   1" in done.stderr


def test_resume_is_exact_with_loader_workers_too(tmp_path, noisy_spec):
    """With worker processes, augmentation draws from the workers' generators: they
    are seeded from the seed and the epoch, so a resumed epoch sees the same crops."""
    import cnnspec

    whole = cnnspec.train(noisy_spec, data="digits", out=tmp_path / "whole", epochs=3,
                          workers=2, verbose=False)
    cnnspec.train(noisy_spec, data="digits", out=tmp_path / "part", epochs=2, workers=2,
                  verbose=False)
    resumed = cnnspec.train(noisy_spec, resume=tmp_path / "part", epochs=3, verbose=False)
    assert resumed.config.workers == 2  # the run's own setting, from its checkpoint
    expected, got = _model(tmp_path / "whole"), _model(tmp_path / "part")
    for name in expected:
        assert torch.equal(expected[name], got[name]), name
    assert [r["val_loss"] for r in whole.history] == [r["val_loss"] for r in resumed.history]


def test_ctrl_c_while_the_starting_state_is_saved_finishes_the_save(tmp_path, noisy_spec,
                                                                   monkeypatch):
    """A Ctrl-C that arrives while checkpoint 0 is written waits for the write, then
    stops the run as any Ctrl-C does (no KeyboardInterrupt escapes), and the starting
    state is on disk to resume from."""
    import os

    import cnnspec
    from cnnspec.training import checkpoint
    from cnnspec.training.run import Interrupted

    write = checkpoint.save_checkpoint

    def interrupted_write(run_dir, state):
        if state["epoch"] == 0:
            os.kill(os.getpid(), signal.SIGINT)  # mid-write, as a user's Ctrl-C
        write(run_dir, state)

    monkeypatch.setattr(checkpoint, "save_checkpoint", interrupted_write)
    with pytest.raises(Interrupted) as stop:
        cnnspec.train(noisy_spec, data="digits", out=tmp_path / "run", verbose=False)
    assert stop.value.saved == 0
    state = torch.load(tmp_path / "run" / "last.ckpt", weights_only=True)
    assert state["epoch"] == 0 and state["history"] == []
