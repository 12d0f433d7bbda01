"""Preemption (issue 24), through the paths a cluster takes: the early-warning signal
(SIGUSR1, SLURM's `sbatch --signal=B:USR1@90`) sent for real to a one-process run and
to the `--nproc 2` launcher stops every process with status 75, says what is saved
and how to go on, and `--requeue` calls SLURM's `scontrol requeue` (a fake one on
PATH here). `--resume auto` serves the first start and every requeue: it starts a
missing or empty folder, continues a stopped run to end bitwise equal to one never
stopped, and finds a finished run with nothing to do (exit 0).
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import ROOT, fails as _fails

pytest.importorskip("sklearn")
pytest.importorskip("safetensors")

# Quick (digits at their own 8x8, no per-image transform), with dropout so that an
# exact resume must restore the generators, and a cosine schedule shaped by its length.
TINY = """
network tiny(classes = 10) {
    input 1x8x8
    conv1: conv 8 k=3 p=1
    relu
    pool: maxpool 2
    flatten
    drop: dropout 0.3
    fc: linear classes
    train {
        optimizer: sgd lr=0.1 momentum=0.9
        schedule: cosine
        epochs: 6
        batch: 32
    }
}
"""

# One thread everywhere: on shared, busy cores torch's thread pool mostly waits, and
# the runs compared bitwise must all use the same kernels.
ONE_THREAD = {"OMP_NUM_THREADS": "1"}
PREEMPTED = 75
JOB = "4242"


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny_spec(tmp_path_factory):
    path = tmp_path_factory.mktemp("spec") / "tiny.cnn"
    path.write_text(TINY)
    return path


@pytest.fixture(scope="module")
def whole_run(tmp_path_factory, tiny_spec):
    """The run never stopped, which a stopped and resumed one must equal."""
    import cnnspec

    run = tmp_path_factory.mktemp("whole") / "run"
    cnnspec.train(tiny_spec, data="digits", out=run, verbose=False)
    return run


@pytest.fixture
def slurm(tmp_path):
    """A SLURM job's environment with a fake `scontrol` that records its arguments."""
    bin_dir, record = tmp_path / "bin", tmp_path / "scontrol.calls"
    bin_dir.mkdir()
    scontrol = bin_dir / "scontrol"
    scontrol.write_text(f'#!/bin/sh\necho "$@" >> "{record}"\n')
    scontrol.chmod(0o755)
    path = f"{bin_dir}{os.pathsep}{os.environ['PATH']}"
    return {"SLURM_JOB_ID": JOB, "PATH": path}, record


def _start(*args, environment=None):
    return subprocess.Popen([sys.executable, "-m", "cnnspec", *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=ROOT, env={**os.environ, **ONE_THREAD,
                                           **(environment or {})})


def _rows(run):
    metrics = run / "metrics.jsonl"
    if not metrics.exists():
        return []
    return [json.loads(line) for line in metrics.read_text().splitlines()]


def _wait_for_an_epoch(process, run, also=None, timeout=180.0):
    deadline = time.monotonic() + timeout
    while not (_rows(run) and (also is None or also.exists())):
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.02)


def _checkpoint(run):
    return torch.load(run / "last.ckpt", weights_only=True)


def _assert_same_run(expected_run, run):
    expected, got = _checkpoint(expected_run)["model"], _checkpoint(run)["model"]
    assert expected.keys() == got.keys()
    for name in expected:
        assert torch.equal(expected[name], got[name]), name
    assert [r["val_loss"] for r in _rows(expected_run)] == [r["val_loss"]
                                                            for r in _rows(run)]


def _saved_words(saved: int) -> str:
    return {0: "the starting state is", 1: "epoch 1 is"}.get(saved,
                                                               f"epochs 1-{saved} are")


# -- /proc: every process a launcher started, and whether one is still running

def _stat(pid) -> list[str] | None:
    """The fields of /proc/PID/stat after the command's name (state first)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None


def _descendants(pid: int) -> dict[int, str]:
    """Each descendant's id and start time (which tells a reused id apart)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        fields = _stat(entry.name) if entry.name.isdigit() else None
        if fields:
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = {}, [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            fields = _stat(child)
            if fields:
                found[child] = fields[19]
                todo.append(child)
    return found


def _running(pid: int, started: str) -> bool:
    fields = _stat(pid)
    return fields is not None and fields[19] == started and fields[0] != "Z"


# -- the early warning: one process

def test_the_warning_saves_stops_with_75_requeues_and_resume_auto_is_exact(
        cli, tmp_path, tiny_spec, whole_run, slurm):
    environment, calls = slurm
    run = tmp_path / "run"
    job = ("train", tiny_spec, "--data", "digits", "--out", run, "--resume", "auto")
    process = _start(*job, "--requeue", environment=environment)
    _wait_for_an_epoch(process, run, also=run / "curves.png")  # epoch 1's save done
    time.sleep(min(_rows(run)[0]["seconds"] / 3, 0.5))  # into epoch 2, most likely
    process.send_signal(signal.SIGUSR1)
    out, err = process.communicate(timeout=120)
    assert process.returncode == PREEMPTED, err
    assert "Traceback" not in err + out
    assert f"resume auto: {run} does not exist yet; starting a new run in it" in out
    saved = _checkpoint(run)["epoch"]
    assert 1 <= saved < 6
    assert (f"preempted (SIGUSR1); {_saved_words(saved)} saved in {run}, and epoch "
            f"{saved + 1}, cut short, runs again from its start") in err
    assert f"cnnspec train {tiny_spec} --resume {run}" in err
    assert "exit status 75" in err
    assert f"requeued SLURM job {JOB} (scontrol requeue {JOB})" in err
    assert calls.read_text() == f"requeue {JOB}\n"

    requeued = cli(*job)  # the job script again, as SLURM starts it after the requeue
    assert requeued.returncode == 0, requeued.stderr
    held = "epoch 1" if saved == 1 else f"epochs 1-{saved}"
    assert f"resume auto: {run} holds {held} of 6; continuing it" in requeued.stdout
    assert f"resuming after epoch {saved}" in requeued.stdout
    _assert_same_run(whole_run, run)


# -- the early warning: the --nproc launcher and its ranks

def test_the_warning_to_the_launcher_stops_every_rank(cli, tmp_path, tiny_spec, slurm):
    environment, calls = slurm
    run = tmp_path / "run"
    process = _start("train", tiny_spec, "--data", "digits", "--nproc", "2", "--epochs",
                     "40", "--out", run, "--resume", "auto", "--requeue",
                     environment=environment)
    _wait_for_an_epoch(process, run)
    ranks = _descendants(process.pid)
    assert len(ranks) >= 2, ranks
    # a second job on the same folder, while this one runs: refused, naming it
    _fails(cli("train", tiny_spec, "--out", run, "--resume", "auto"), 2,
           f"{run} is in use by another run (process ")
    process.send_signal(signal.SIGUSR1)
    out, err = process.communicate(timeout=120)
    assert process.returncode == PREEMPTED, err
    assert "Traceback" not in err + out and "death signal" not in err
    assert err.count("preempted (SIGUSR1)") == 1  # rank 0 speaks for the run
    saved = _checkpoint(run)["epoch"]
    assert f"{_saved_words(saved)} saved in {run}" in err
    assert calls.read_text() == f"requeue {JOB}\n"  # once, by the launcher
    left = [pid for pid, started in ranks.items() if _running(pid, started)]
    assert left == [], left
    # what rank 0 saved is whole: the requeued job continues it (the run's own data)
    resumed = cli("train", tiny_spec, "--out", run, "--resume", "auto", "--epochs",
                  saved + 1)
    assert resumed.returncode == 0, resumed.stderr
    assert [r["epoch"] for r in _rows(run)] == list(range(1, saved + 2))


def test_the_warning_during_the_first_save_finishes_it(tmp_path, tiny_spec, monkeypatch):
    import cnnspec
    from cnnspec.training import checkpoint
    from cnnspec.training.run import Interrupted
    from cnnspec.training.signals import exit_status

    write = checkpoint.save_checkpoint

    def warned_write(run_dir, state):
        if state["epoch"] == 0:
            os.kill(os.getpid(), signal.SIGUSR1)  # mid-write, as SLURM's warning
        write(run_dir, state)

    monkeypatch.setattr(checkpoint, "save_checkpoint", warned_write)
    with pytest.raises(Interrupted) as stop:
        cnnspec.train(tiny_spec, data="digits", out=tmp_path / "run", verbose=False)
    assert (stop.value.saved, stop.value.signal_number) == (0, signal.SIGUSR1)
    assert exit_status(stop.value.signal_number) == PREEMPTED
    assert _checkpoint(tmp_path / "run")["epoch"] == 0
    assert not list((tmp_path / "run").glob(".*.tmp"))
    assert signal.getsignal(signal.SIGUSR1) is signal.SIG_DFL  # handler given back


def test_stop_signal_names_the_warning(cli, tmp_path, tiny_spec):
    """`--stop-signal TERM` (Kubernetes warns with SIGTERM): SIGTERM then exits 75."""
    import cnnspec
    from cnnspec.training import signals
    from cnnspec.training.progress import Silent
    from cnnspec.training.run import Interrupted

    class TerminatedInAStep(Silent):
        def step(self, step, lr):
            os.kill(os.getpid(), signal.SIGTERM)

    try:
        with pytest.raises(Interrupted) as stop:
            cnnspec.train(tiny_spec, data="digits", out=tmp_path / "run",
                          stop_signal=signal.SIGTERM, reporter=TerminatedInAStep())
        assert signals.preempted(stop.value.signal_number)
        assert signals.exit_status(stop.value.signal_number) == PREEMPTED
    finally:
        signals.use_warning(signals.WARNING)
    assert signals.exit_status(signal.SIGTERM) == 143  # without it, SIGTERM is 143
    _fails(cli("train", tiny_spec, "--data", "digits", "--stop-signal", "KILL"), 2,
           "'KILL' is not a signal a scheduler warns with", "USR1, USR2, TERM")


# -- --resume auto

def test_resume_auto_starts_a_missing_or_an_empty_folder(cli, tmp_path, tiny_spec):
    missing, empty = tmp_path / "missing", tmp_path / "empty"
    empty.mkdir()
    for folder, said in ((missing, "does not exist yet"), (empty, "holds no checkpoint")):
        done = cli("train", tiny_spec, "--data", "digits", "--epochs", "1", "--out",
                   folder, "--resume", "auto")
        assert done.returncode == 0, done.stderr
        assert f"resume auto: {folder} {said}; starting a new run in it" in done.stdout
        assert [r["epoch"] for r in _rows(folder)] == [1]


def test_resume_auto_on_a_finished_run_has_nothing_to_do(cli, tiny_spec, whole_run):
    before = (whole_run / "last.ckpt").read_bytes()
    done = cli("train", tiny_spec, "--data", "digits", "--out", whole_run, "--resume",
               "auto", "--json")
    assert done.returncode == 0, done.stderr
    assert (f"{whole_run} has finished its run (6 epochs); nothing to do (weights: "
            f"{whole_run / 'weights.safetensors'}") in done.stderr
    best = max(_rows(whole_run), key=lambda r: (r["val_top1"], -r["val_loss"]))
    metrics = json.loads(done.stdout.splitlines()[-1])
    assert (metrics["best_epoch"], metrics["epochs"]) == (best["epoch"], 6)
    fewer = cli("train", tiny_spec, "--out", whole_run, "--resume", "auto", "--epochs",
                "3")
    assert fewer.returncode == 0, fewer.stderr
    assert "has already trained 6 epochs (--epochs 3); nothing to do" in fewer.stdout
    assert (whole_run / "last.ckpt").read_bytes() == before


def test_resume_auto_refuses_an_unreadable_checkpoint(cli, tmp_path, tiny_spec):
    run = tmp_path / "run"
    run.mkdir()
    (run / "last.ckpt").write_bytes(b"\x00" * 64)
    _fails(cli("train", tiny_spec, "--data", "digits", "--out", run, "--resume", "auto"),
           2, "is not a readable checkpoint", "does not start a new run over it")
    assert (run / "last.ckpt").read_bytes() == b"\x00" * 64


def test_resume_auto_needs_out_and_data_for_a_new_run(cli, tmp_path, tiny_spec):
    _fails(cli("train", tiny_spec, "--data", "digits", "--resume", "auto"), 2,
           "--resume auto continues the run in --out", "give --out RUN_DIR")
    new = tmp_path / "new"
    _fails(cli("train", tiny_spec, "--out", new, "--resume", "auto"), 2,
           f"--resume auto: {new} holds no run to continue", "--data")
    assert not new.exists()


def test_requeue_needs_a_slurm_job(cli, tmp_path, tiny_spec, monkeypatch):
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    _fails(cli("train", tiny_spec, "--data", "digits", "--requeue"), 2,
           "SLURM_JOB_ID is not set", "exit status instead (75")
    monkeypatch.setenv("SLURM_JOB_ID", JOB)
    monkeypatch.setenv("PATH", str(tmp_path))  # no scontrol there
    _fails(cli("train", tiny_spec, "--data", "digits", "--requeue"), 2,
           "scontrol, which is not on PATH")


def test_the_launcher_gives_every_rank_its_decision():
    from cnnspec.cli.clusters import worker_argv

    job = ["train", "s.cnn", "--out", "r", "--resume", "auto", "--requeue"]
    assert worker_argv(job, "r") == ["train", "s.cnn", "--out", "r", "--resume", "r"]
    assert worker_argv(job, None) == ["train", "s.cnn", "--out", "r"]
    assert worker_argv(["train", "s.cnn", "--resume", "r"], "r") == [
        "train", "s.cnn", "--resume", "r"]
