"""Early stopping and top-k retention (issue 24): the recipe's `early_stop` and
`keep_top` entries and their flags, refused at `cnnspec check` when wrong; a run
that stops improving stops (saying so, exit 0) at the same epoch whether or not it
was interrupted and resumed; and the K best epochs' weights kept beside
`weights.safetensors`, each new one written before the one it displaces is deleted,
and the kept set as the history ranks it after a resume.

Selection is tested on synthetic histories; one real run of each checks the files
against its own metrics.jsonl.
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch

import cnnspec
from cnnspec import SpecError
from cnnspec.frontend.recipe import EarlyStop
from cnnspec.training import retention
from cnnspec.training.config import resolve
from conftest import fails

# Small and quick, with dropout and random augmentation so that an exact resume must
# restore every generator. `min_delta=1` (100 points of top-1) is never reached: the
# run stops after epoch 1 + patience, whatever the data.
SPEC = """
network small(classes = 10) {{
    input 1x12x12
    conv1: conv 8 k=3 p=1
    relu
    pool: maxpool 2
    flatten
    drop: dropout 0.3
    fc: linear classes
    train {{
        optimizer: sgd lr=0.1 momentum=0.9
        schedule: cosine
        epochs: 6
        batch: 64
        augment: random_crop 12 padding=2
{entries}
    }}
}}
"""
DATA = "synthetic:256"


def spec(tmp_path, *entries: str, name: str = "small.cnn"):
    path = tmp_path / name
    path.write_text(SPEC.format(entries="\n".join(f"        {e}" for e in entries)))
    return path


def rows(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def checkpoint(run):
    return torch.load(run / "last.ckpt", weights_only=True)


def kept(run) -> list[int]:
    return sorted(retention.kept_files(run))


def tensors(path):
    from safetensors.torch import load_file

    return load_file(str(path))


def same_tensors(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def history(*values, losses=None) -> list[dict]:
    """Rows with these val_top1 values (and losses, default 1.0), epochs from 1."""
    losses = losses or [1.0] * len(values)
    return [{"epoch": e, "val_top1": t, "val_loss": l}
            for e, (t, l) in enumerate(zip(values, losses), 1)]


# ---------------------------------------------------------------- the recipe


def refused(tmp_path, entry: str):
    with pytest.raises(SpecError) as raised:
        cnnspec.load(SPEC.format(entries=f"        {entry}"))
    return raised.value.diagnostics[0]


def test_the_entries_read_into_the_recipe():
    recipe = cnnspec.load(SPEC.format(entries="        early_stop: patience=5 "
                                      "min_delta=0.002\n        keep_top: 3")).recipe
    assert recipe.early_stop == EarlyStop(patience=5, min_delta=0.002)
    assert recipe.early_stop.metric == "val_top1"
    assert recipe.keep_top == 3
    by_loss = cnnspec.load(SPEC.format(entries="        early_stop: patience=2 "
                                       "metric=val_loss")).recipe.early_stop
    assert by_loss == EarlyStop(patience=2, metric="val_loss")
    plain = cnnspec.load(SPEC.format(entries="")).recipe
    assert (plain.early_stop, plain.keep_top) == (None, None)


# Line 16 holds the entry (the spec starts with an empty line).
@pytest.mark.parametrize("entry, code, column, message, label", [
    ("early_stop: patience=0", "E0206", 21, "bad value for `early_stop` in `train`",
     "`patience` must be a whole number >= 1, found 0"),
    ("early_stop: patience=3 min_delta=-0.1", "E0206", 32,
     "bad value for `early_stop` in `train`", "`min_delta` must be a number >= 0, "
     "found -0.1"),
    ("early_stop: patience=3 metric=top1", "E0206", 39,
     "`metric` of `early_stop` cannot be `top1`", "`metric` is `val_top1` or `val_loss`"),
    ("early_stop: patience=3 paitence=4", "E0206", 32,
     "`early_stop` has no keyword `paitence`", "it takes patience, min_delta, metric"),
    ("early_stop: 5", "E0206", 21, "`early_stop` takes keywords only",
     "like `early_stop: patience=...`"),
    ("early_stop: min_delta=0.01", "E0204", 21, "`early_stop` needs `patience`",
     "`patience` has no default"),
    ("keep_top: 0", "E0206", 19, "bad value for `keep_top` in `train`",
     "`keep_top` must be a whole number >= 1, found 0"),
    ("keep_top: 2.5", "E0206", 19, "bad value for `keep_top` in `train`",
     "`keep_top` must be a whole number >= 1, found 2.5"),
    ("keep_top: k=3", "E0206", 19, "`keep_top` takes one number", "like `keep_top: 90`"),
])
def test_bad_values_are_refused_at_check(tmp_path, entry, code, column, message, label):
    d = refused(tmp_path, entry)
    assert (d.code, d.span.line, d.span.column, d.message, d.label) == (
        code, 16, column, message, label), d


def test_the_flags_override_the_entries_and_keep_the_rest():
    recipe = cnnspec.load(SPEC.format(entries="        early_stop: patience=5 "
                                      "min_delta=0.01 metric=val_loss")).recipe
    config = resolve(recipe, early_stop=2, keep_top=4)
    assert config.early_stop == EarlyStop(patience=2, min_delta=0.01, metric="val_loss")
    assert config.keep_top == 4
    assert resolve(None, early_stop=3).early_stop == EarlyStop(patience=3)
    assert resolve(None).early_stop is None


def test_the_recipe_command_shows_them_and_bad_flags_are_usage_errors(cli, tmp_path):
    path = spec(tmp_path, "early_stop: patience=5 min_delta=0.01")
    shown = cli("recipe", path, "--early-stop", "3", "--keep-top", "2", "--json")
    assert shown.returncode == 0, shown.stderr
    entries = {e["entry"]: e for e in json.loads(shown.stdout)["entries"]}
    assert entries["early_stop"]["value"] == "patience=3 min_delta=0.01 metric=val_top1"
    assert entries["early_stop"]["from"] == "--early-stop flag"
    assert (entries["keep_top"]["value"], entries["keep_top"]["from"]) == (
        "2", "--keep-top flag")
    fails(cli("train", path, "--data", DATA, "--keep-top", "0", "--out",
              tmp_path / "run"), 2, "invalid training option `keep_top`")
    fails(cli("train", path, "--data", DATA, "--early-stop", "0", "--out",
              tmp_path / "run"), 2, "invalid training option `early_stop.patience`")


# ---------------------------------------------------------------- early stopping


def stops_at(rule: EarlyStop, rows_: list[dict]) -> int | None:
    stopping = retention.EarlyStopping(rule)
    for row in rows_:
        if stopping.update(row):
            return row["epoch"]
    return None


def test_stopping_counts_epochs_without_an_improvement_above_min_delta():
    top1 = history(0.5, 0.6, 0.6, 0.605, 0.609, 0.7)
    assert stops_at(EarlyStop(patience=2, min_delta=0.01), top1) == 4
    assert stops_at(EarlyStop(patience=3, min_delta=0.01), top1) == 5
    assert stops_at(EarlyStop(patience=4, min_delta=0.01), top1) is None  # 0.7
    assert stops_at(EarlyStop(patience=2), top1) is None  # 0.605 > 0.6 improves
    assert stops_at(EarlyStop(patience=1), top1) == 3  # equal is no improvement


def test_stopping_on_the_validation_loss_counts_downwards():
    losses = history(*[0.5] * 5, losses=[1.0, 0.9, 0.95, 0.89, 0.7])
    assert stops_at(EarlyStop(patience=2, min_delta=0.05, metric="val_loss"),
                    losses) == 4
    assert stops_at(EarlyStop(patience=2, metric="val_loss"), losses) is None


def test_a_resumed_counter_is_the_saved_one_or_counted_again():
    rule = EarlyStop(patience=3, min_delta=0.01)
    rows_ = history(0.5, 0.6, 0.6, 0.6)
    whole = retention.early_stopping(rule, None, rows_)  # a checkpoint without it
    assert (whole.best, whole.best_epoch, whole.waited) == (0.6, 2, 2)
    saved = whole.state_dict()
    assert saved == {"metric": "val_top1", "min_delta": 0.01, "best": 0.6,
                     "best_epoch": 2, "waited": 2}
    # the saved state is what continues (here told it waited one epoch more)
    resumed = retention.early_stopping(rule, {**saved, "waited": 3}, rows_)
    assert resumed.stopped
    # another metric or min_delta: counted again over the history
    other = retention.early_stopping(EarlyStop(patience=3, min_delta=0.2), saved, rows_)
    assert (other.best_epoch, other.waited) == (1, 3)
    assert retention.early_stopping(None, saved, rows_) is None
    assert whole.reason() == ("val_top1 has not improved by more than 0.01 for 2 "
                              "epochs (since epoch 2)")


# ---------------------------------------------------------------- the K best


def test_ranking_breaks_ties_as_the_best_epoch_is_chosen():
    from cnnspec.training.run import _Run

    rows_ = history(0.5, 0.7, 0.7, 0.6, 0.7, losses=[1.0, 0.8, 0.6, 0.5, 0.6])
    assert retention.top_epochs(rows_, 5) == [3, 5, 2, 4, 1]
    assert retention.top_epochs(rows_, 2) == [3, 5]
    assert retention.top_epochs(rows_, 9) == [3, 5, 2, 4, 1]
    assert _Run._best(SimpleNamespace(history=rows_))["epoch"] == 3
    tied = history(0.5, 0.5, 0.5)
    assert retention.top_epochs(tied, 2) == [1, 2]
    assert _Run._best(SimpleNamespace(history=tied))["epoch"] == 1


def test_file_names_have_three_digits_or_more(tmp_path):
    assert retention.weights_name(12) == "weights-e012.safetensors"
    assert retention.weights_name(1234) == "weights-e1234.safetensors"
    for name in ("weights-e007.safetensors", "weights-e1234.safetensors",
                 "weights-e12.safetensors", "weights.safetensors",
                 "weights-e007.safetensors.tmp"):
        (tmp_path / name).write_bytes(b"")
    assert sorted(retention.kept_files(tmp_path)) == [7, 1234]


def test_the_kept_files_follow_the_history_epoch_by_epoch(tmp_path):
    top1 = [0.3, 0.5, 0.4, 0.5, 0.9, 0.1, 0.6, 0.6]
    losses = [1.0, 0.9, 0.8, 0.8, 0.5, 2.0, 0.7, 0.6]
    rows_ = history(*top1, losses=losses)
    for epoch in range(1, len(rows_) + 1):
        so_far = rows_[:epoch]
        written = retention.keep(tmp_path, so_far, 3, {"w": torch.tensor([epoch])},
                                 {"spec": "small"})
        top = retention.top_epochs(so_far, 3)
        assert (written is not None) == (epoch in top)
        # the new file is there before anything is deleted
        assert set(top) <= set(kept(tmp_path))
        retention.prune(tmp_path, so_far, 3)
        assert kept(tmp_path) == sorted(top), epoch
    assert kept(tmp_path) == [5, 7, 8]
    assert tensors(tmp_path / "weights-e008.safetensors")["w"].tolist() == [8]
    from safetensors import safe_open

    with safe_open(str(tmp_path / "weights-e005.safetensors"), "pt") as opened:
        assert opened.metadata() == {"spec": "small", "epoch": "5",
                                     "val_top1": "0.900000"}
    # a file of an epoch the history does not hold (a write before a kill) goes
    (tmp_path / "weights-e009.safetensors").write_bytes(b"")
    assert retention.prune(tmp_path, rows_, 3) == ["weights-e009.safetensors"]
    # the fourth best: epoch 4 (0.5 at a lower loss than epoch 2's), never kept
    assert retention.missing(tmp_path, rows_, 4) == [4]


# ---------------------------------------------------------------- real runs


def test_a_run_keeps_its_best_epochs_and_writes_each_before_deleting(tmp_path,
                                                                      monkeypatch):
    events = []
    save, prune = retention.save_weights, retention.prune

    def saving(path, state, metadata):
        save(path, state, metadata)
        events.append(("write", int(metadata["epoch"])))

    def pruning(run_dir, history_, k):
        events.append(("prune", len(history_), kept(run_dir)))
        return prune(run_dir, history_, k)

    monkeypatch.setattr(retention, "save_weights", saving)
    monkeypatch.setattr(retention, "prune", pruning)
    run = tmp_path / "run"
    result = cnnspec.train(spec(tmp_path, "keep_top: 2"), data=DATA, out=run,
                           verbose=False)
    history_ = rows(run)
    assert len(history_) == 6
    top = retention.top_epochs(history_, 2)
    assert kept(run) == sorted(top)
    best = run / retention.weights_name(top[0])
    assert top[0] == result.metrics["best_epoch"]
    assert same_tensors(tensors(best), tensors(run / "weights.safetensors"))
    for event in (e for e in events if e[0] == "prune"):
        # before each epoch's deletions, the K best so far are all on disk
        assert set(retention.top_epochs(history_[:event[1]], 2)) <= set(event[2])
    writes = [e[1] for e in events if e[0] == "write"]
    assert writes == [e for e in range(1, 7) if e in
                      retention.top_epochs(history_[:e], 2)]


def test_a_run_that_stops_improving_stops_and_a_resume_says_it_is_done(cli, tmp_path):
    path = spec(tmp_path, "early_stop: patience=2 min_delta=1")
    run = tmp_path / "run"
    done = cli("train", path, "--data", DATA, "--out", run)
    assert done.returncode == 0, done.stderr
    assert "early stop: after 2 epochs without val_top1 improving by more than 1" \
        in done.stdout
    assert "early stop after epoch 3 of 6: val_top1 has not improved by more than 1 " \
        "for 2 epochs (since epoch 1); the best epoch is" in done.stdout
    assert [r["epoch"] for r in rows(run)] == [1, 2, 3]
    assert (run / "weights.safetensors").is_file() and (run / "curves.png").is_file()
    saved = checkpoint(run)
    assert (saved["epoch"], saved["early_stop"]["waited"]) == (3, 2)
    fails(cli("train", path, "--resume", run), 2, "stopped early after epoch 3",
          "--early-stop with a patience above 2")
    longer = cli("train", path, "--resume", run, "--early-stop", "4")
    assert longer.returncode == 0, longer.stderr
    assert "resume: early_stop: patience=4 min_delta=1 metric=val_top1" in longer.stdout
    assert "early stop after epoch 5 of 6" in longer.stdout
    assert [r["epoch"] for r in rows(run)] == [1, 2, 3, 4, 5]


@pytest.mark.parametrize("old_checkpoint", [False, True])
def test_a_stopped_and_resumed_run_stops_where_the_whole_one_does(tmp_path,
                                                                  old_checkpoint):
    """Ctrl-C at the end of epoch 3's validation, then --resume: the run stops after
    the same epoch, with the same weights bit for bit and the same kept files; a
    checkpoint of an older cnnspec (no `early_stop` key) is counted again."""
    from cnnspec.training.progress import Silent
    from cnnspec.training.run import Interrupted

    class StopAfter(Silent):
        def end_epoch(self, row):
            if row["epoch"] == 3:
                raise KeyboardInterrupt

    path = spec(tmp_path, "early_stop: patience=3 min_delta=1", "keep_top: 2")
    whole, stopped = tmp_path / "whole", tmp_path / "stopped"
    cnnspec.train(path, data=DATA, out=whole, verbose=False)
    with pytest.raises(Interrupted) as stop:
        cnnspec.train(path, data=DATA, out=stopped, reporter=StopAfter())
    assert stop.value.saved == 2
    saved = checkpoint(stopped)
    assert saved["early_stop"] == {"metric": "val_top1", "min_delta": 1.0,
                                   "best": rows(stopped)[0]["val_top1"],
                                   "best_epoch": 1, "waited": 1}
    if old_checkpoint:
        del saved["early_stop"]
        torch.save(saved, stopped / "last.ckpt")
    # a weights file written just before a kill, past the checkpoint's history
    (stopped / "weights-e003.safetensors").write_bytes(b"not weights")
    cnnspec.train(path, resume=stopped, verbose=False)
    assert [r["epoch"] for r in rows(whole)] == [1, 2, 3, 4]
    assert [r["val_loss"] for r in rows(stopped)] == [r["val_loss"] for r in rows(whole)]
    assert same_tensors(checkpoint(whole)["model"], checkpoint(stopped)["model"])
    assert checkpoint(stopped)["early_stop"] == checkpoint(whole)["early_stop"]
    assert kept(stopped) == kept(whole) == sorted(retention.top_epochs(rows(whole), 2))
    for epoch in kept(whole):
        name = retention.weights_name(epoch)
        assert same_tensors(tensors(whole / name), tensors(stopped / name))


def test_keep_top_given_on_resuming_names_the_epochs_it_cannot_have(cli, tmp_path):
    path = spec(tmp_path)
    run = tmp_path / "run"
    assert cli("train", path, "--data", DATA, "--epochs", "2", "--out",
               run).returncode == 0
    assert kept(run) == []
    resumed = cli("train", path, "--resume", run, "--epochs", "3", "--keep-top", "3")
    assert resumed.returncode == 0, resumed.stderr
    assert "resume: keep_top: 3 (the run used none)" in resumed.stdout
    assert "keep_top 3: the weights of epochs 1, 2 were not kept before resuming" \
        in resumed.stdout
    assert kept(run) == [3]  # the three best of three epochs: the one it could keep
