"""An image folder is checked before a run starts (cnnspec/training/verify.py): every
file, train and val, must decode; a bad one stops the run before its folder exists,
or with bad_images="skip" is left out and listed; the note gives the range of sizes.

Images are real files written with PIL under tmp_path.
"""

import io

import pytest

pytest.importorskip("torchvision")
from PIL import Image  # noqa: E402

from cnnspec.training import verify  # noqa: E402
from cnnspec.training.data import open_data  # noqa: E402
from cnnspec.training.errors import DataError  # noqa: E402

TINY = """
network tiny(classes = 2) {
    input 3x8x8
    conv 4 k=3 p=1
    relu
    avgpool global
    flatten
    linear classes
}
"""


def _images(folder, count, size=(12, 10), fmt="PNG", start=0):
    """`count` RGB images of width x height `size` in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    suffix = {"PNG": "png", "JPEG": "jpg"}[fmt]
    for i in range(start, start + count):
        Image.new("RGB", size, (i * 37 % 256, 90, 200)).save(folder / f"{i}.{suffix}", fmt)


def _truncated(path, fmt):
    """An image of `fmt` cut to 60% of its bytes: its header still reads."""
    buffer = io.BytesIO()
    Image.effect_noise((64, 48), 40).convert("RGB").save(buffer, fmt)
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) * 6 // 10])
    return path


def _error(source, **options) -> str:
    with pytest.raises(DataError) as problem:
        open_data(str(source), (3, 8, 8), **options)
    message = str(problem.value)
    assert "\n" not in message
    return message


def test_a_broken_png_stops_the_cli_before_the_run_folder(cli, tmp_path):
    # 12 good images and one broken PNG: with --batch 4 the shuffle could drop the
    # broken one in the last partial batch, and the run used to succeed silently.
    for name in ("a", "b"):
        _images(tmp_path / "data" / "train" / name, 6)
    broken = tmp_path / "data" / "train" / "b" / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really a png" * 4)
    spec = tmp_path / "tiny.cnn"
    spec.write_text(TINY)
    out = tmp_path / "run"
    result = cli("train", spec, "--data", tmp_path / "data", "--batch", "4",
                 "--epochs", "1", "--out", out)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stdout + result.stderr
    assert "1 of 13 images" in result.stderr
    assert "train/b/broken.png (truncated: the file ends before the image does)" in \
        result.stderr
    assert "--skip-bad-images" in result.stderr
    assert not out.exists()


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_a_truncated_image_is_caught(tmp_path, fmt):
    _images(tmp_path / "data" / "a", 3, fmt=fmt)
    _images(tmp_path / "data" / "b", 3, fmt=fmt)
    cut = _truncated(tmp_path / "data" / "b" / f"cut.{fmt.lower()}", fmt)
    with Image.open(cut) as image:
        assert image.size == (64, 48)  # the header alone looks fine
    message = _error(tmp_path / "data")
    assert message.startswith(f"1 of 7 images in {tmp_path / 'data'} cannot be read: "
                              f"b/cut.{fmt.lower()} (truncated: the file ends before "
                              "the image does); replace or delete it")


def test_skip_leaves_bad_files_out_and_lists_them(tmp_path):
    root = tmp_path / "pets"
    for name in ("cat", "dog"):
        _images(root / "train" / name, 4)
        _images(root / "val" / name, 2, start=100)
    (root / "train" / "cat" / "x.png").write_bytes(b"garbage")
    _truncated(root / "val" / "dog" / "y.jpg", "JPEG")
    message = _error(root)
    assert message.startswith(f"2 of 14 images in {root} cannot be read: "
                              "train/cat/x.png (not an image PIL can decode), "
                              "val/dog/y.jpg (truncated: the file ends before the "
                              "image does); ")
    assert message.endswith("; replace or delete them, or pass --skip-bad-images "
                            "to train without them")
    data = open_data(str(root), (3, 8, 8), bad_images="skip")
    assert (len(data.train), len(data.val)) == (8, 4)
    assert data.notes[0].startswith("pets: 8 train / 4 val images")
    skipped = next(note for note in data.notes if note.startswith("skipped"))
    assert skipped.startswith("skipped 2 of 14 images that cannot be read: "
                              "train/cat/x.png (not an image PIL can decode), val/dog/y.jpg")
    assert [data.train[i][1] for i in range(8)] == [0] * 4 + [1] * 4
    assert data.train[0][0].shape == (3, 8, 8)


def test_skip_in_a_split_folder_keeps_the_split_stratified(tmp_path):
    for name in ("a", "b"):
        _images(tmp_path / "flat" / name, 10)
    for i in range(3):
        (tmp_path / "flat" / "a" / f"bad{i}.png").write_bytes(b"")
    data = open_data(str(tmp_path / "flat"), (3, 8, 8), val_fraction=0.2,
                     bad_images="skip")
    assert (len(data.train), len(data.val)) == (16, 4)
    assert sorted(data.val[i][1] for i in range(4)) == [0, 0, 1, 1]


def test_a_long_list_is_cut_and_counted(tmp_path):
    _images(tmp_path / "data" / "a", 2)
    _images(tmp_path / "data" / "b", 2)
    for i in range(8):
        (tmp_path / "data" / "b" / f"z{i}.png").write_text("text")
    message = _error(tmp_path / "data")
    assert message.startswith("8 of 12 images")
    assert message.count("(not an image PIL can decode)") == verify.LISTED
    assert "z4.png (not an image PIL can decode) and 3 more;" in message


def test_skipping_every_image_of_a_class_or_of_val_is_an_error(tmp_path):
    _images(tmp_path / "data" / "a", 2)
    (tmp_path / "data" / "b").mkdir()
    (tmp_path / "data" / "b" / "0.png").write_bytes(b"")
    message = _error(tmp_path / "data", bad_images="skip")
    assert "has no images of b left" in message and "add readable images" in message
    pets = tmp_path / "pets"
    _images(pets / "train" / "a", 2)
    _images(pets / "train" / "b", 2)
    (pets / "val" / "a").mkdir(parents=True)
    (pets / "val" / "a" / "0.png").write_bytes(b"")
    assert "val has no images left" in _error(pets, bad_images="skip")


def test_bad_images_must_be_stop_or_skip(tmp_path):
    assert "stop, skip" in _error(tmp_path, bad_images="ignore")


def test_errors_of_the_options_come_before_the_scan(tmp_path, monkeypatch):
    _images(tmp_path / "data" / "a", 2)
    _images(tmp_path / "data" / "b", 2)

    def fail(*args, **kwargs):
        raise AssertionError("scanned")
    monkeypatch.setattr("cnnspec.training.data.scan_images", fail)
    assert "between 0 and 1" in _error(tmp_path / "data", val_fraction=1.5)
    with pytest.raises(DataError, match="spec's input has 4"):
        open_data(str(tmp_path / "data"), (4, 8, 8))
    with pytest.raises(DataError, match="unknown test-time augmentation"):
        open_data(str(tmp_path / "data"), (3, 8, 8), tta="many")


def test_the_note_gives_the_range_of_sizes(tmp_path):
    root = tmp_path / "mixed"
    _images(root / "a", 1, size=(36, 8))          # width x height
    _images(root / "a", 1, size=(80, 64), start=1)
    _images(root / "b", 2, size=(50, 20))
    data = open_data(str(root), (3, 8, 8), val_fraction=0.5)
    assert "images are 3 x 8..64 x 36..80 (sizes vary)" in data.notes
    assert "images resized to 3x8x8 for the spec's input" in data.notes
    assert not any("3x8x36" in note for note in data.notes)
    assert data.train[0][0].shape == data.val[0][0].shape == (3, 8, 8)


def test_one_size_keeps_its_note(tmp_path):
    _images(tmp_path / "same" / "a", 2)
    _images(tmp_path / "same" / "b", 2)
    data = open_data(str(tmp_path / "same"), (3, 8, 8), val_fraction=0.5)
    assert "images are 3x10x12; resized to 3x8x8 for the spec's input" in data.notes


def test_only_image_folders_are_scanned(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("scanned")
    monkeypatch.setattr("cnnspec.training.data.scan_images", fail)
    assert len(open_data("synthetic:8", (3, 8, 8)).train) == 8


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_a_progress_bar_only_for_a_large_folder_on_a_terminal(tmp_path, monkeypatch):
    _images(tmp_path / "data" / "a", 3)
    _images(tmp_path / "data" / "b", 3)
    quiet, terminal, pipe = _Terminal(), _Terminal(), io.StringIO()
    open_data(str(tmp_path / "data"), (3, 8, 8), progress=quiet)
    monkeypatch.setattr(verify, "LARGE", 5)
    open_data(str(tmp_path / "data"), (3, 8, 8), progress=terminal)
    open_data(str(tmp_path / "data"), (3, 8, 8), progress=pipe)
    assert quiet.getvalue() == "" and pipe.getvalue() == ""
    assert "checking images" in terminal.getvalue()


def test_scan_reports_sizes_and_reasons(tmp_path):
    _images(tmp_path, 1, size=(7, 5))
    _truncated(tmp_path / "cut.jpg", "JPEG")
    (tmp_path / "empty.png").write_bytes(b"")
    paths = [str(tmp_path / name) for name in ("0.png", "cut.jpg", "empty.png")]
    scan = verify.scan_images(paths)
    assert scan.sizes == {(5, 7)}
    assert scan.bad[paths[1]] == "truncated: the file ends before the image does"
    assert scan.bad[paths[2]] == "not an image PIL can decode"


def test_skip_bad_images_is_part_of_the_run(cli, tmp_path):
    """A run that left bad images out keeps doing so: its evaluation splits the folder
    as it did (so no training image is scored as validation), and a resume may not
    change the choice."""
    for name in ("a", "b"):
        _images(tmp_path / "data" / "train" / name, 6)
    (tmp_path / "data" / "train" / "b" / "broken.png").write_bytes(b"not a png")
    spec = tmp_path / "tiny.cnn"
    spec.write_text(TINY)
    run = tmp_path / "run"
    trained = cli("train", spec, "--data", tmp_path / "data", "--batch", "4",
                  "--epochs", "1", "--val-fraction", "0.25", "--skip-bad-images",
                  "--out", run)
    assert trained.returncode == 0, trained.stderr
    assert "skipped 1 of 13 images" in trained.stdout
    scored = cli("evaluate", spec, "--weights", run / "weights.safetensors", "--json")
    assert scored.returncode == 0, scored.stderr
    import json
    import re

    held_out = int(re.search(r"(\d+) val images", trained.stdout)[1])
    assert json.loads(scored.stdout)["images"] == held_out  # the run's own split
    refused = cli("train", spec, "--resume", run, "--epochs", "2", "--val-fraction",
                  "0.5")
    assert refused.returncode == 2 and "--val-fraction cannot change" in refused.stderr


def test_every_file_of_a_folder_larger_than_one_chunk_is_checked(tmp_path):
    """The scan works in chunks of files: a bad file after the first chunk is found."""
    for name in ("a", "b"):
        _images(tmp_path / "data" / name, verify.CHUNK)
    (tmp_path / "data" / "b" / "zz_last.png").write_bytes(b"not a png")
    message = _error(tmp_path / "data")
    assert "b/zz_last.png" in message and f"of {2 * verify.CHUNK + 1:,} images" in message
