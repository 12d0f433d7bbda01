"""Files of a run: atomic checkpoints, exact-resume state, and weights in safetensors.

Takes: a run directory and the training state (model, optimizer, scheduler, scaler,
EMA, epoch, history, random number generators). Writes `last.ckpt` (torch.save of
tensors and plain containers) and `weights.safetensors` (the model's state dict
under the spec's layer names). Every file is written to a temporary name and then
renamed over the old one, so an interruption at any instant leaves the previous
file whole, and a write that fails (a full disk) raises `StorageError`. Reading never executes pickled code: `torch.load(weights_only=True)`
and safetensors.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import random
import re
import shutil
from pathlib import Path

import torch

from .errors import StorageError, TrainingError, UsageError

CHECKPOINT = "last.ckpt"
WEIGHTS = "weights.safetensors"
TEMPORARY_PREFIX = "."
# Less free space than this after a failed write: the disk is what failed.
FULL_DISK_BYTES = 1 << 20


def atomic_write(path: Path, write) -> None:
    """`write(temporary_path)`, flushed to disk, then renamed to `path`. Any failure
    (a full disk, a read-only folder) raises `StorageError` naming `path`, and
    leaves `path` as it was and no temporary file behind."""
    path = Path(path)
    temporary = path.with_name(f"{TEMPORARY_PREFIX}{path.name}.{os.getpid()}.tmp")
    try:
        write(temporary)
        os.chmod(temporary, 0o666 & ~_umask())
        with open(temporary, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except Exception as problem:
        raise StorageError(path, _reason(problem, path.parent)) from None
    finally:
        try:
            temporary.unlink(missing_ok=True)
        except OSError:
            pass


def _reason(problem: Exception, folder: Path) -> str:
    """The system's words for a failed write. torch.save and safetensors report a
    full disk in their own words ("unexpected pos ..."), so a disk found full is
    named as such."""
    if isinstance(problem, OSError) and problem.strerror:
        return problem.strerror
    try:
        if shutil.disk_usage(folder).free < FULL_DISK_BYTES:
            return os.strerror(errno.ENOSPC)
    except OSError:
        pass
    return first_sentence(str(problem)) or type(problem).__name__


# A terminal's colour and style codes (torch.load's refusal prints one in bold).
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")
# Where a sentence ends: a full stop, ! or ? before a space and a capital (not the
# dots of torch.nn.Linear, a URL or a decimal), or a line break.
SENTENCE_END = re.compile(r"(?<=[.!?])[ \t]+(?=[A-Z`'\"(\[])|[ \t]*\n\s*")


def first_sentence(problem) -> str:
    """The first sentence of a library's message (an exception or its text), whole
    (never cut mid-sentence), without terminal escape codes, and without its full
    stop so that it reads inside our own sentence. For torch.load's weights-only
    refusal, whose first sentences are advice about `weights_only=False`, it is the
    reason torch gives after "WeightsUnpickler error:" ("Unsupported global: GLOBAL
    x.Y was not an allowed global by default"). Empty when the message is."""
    text = ANSI_ESCAPE.sub("", str(problem))
    reason = text.partition("WeightsUnpickler error:")[2].strip()
    text = (reason or text.removeprefix("Weights only load failed.")).strip()
    return SENTENCE_END.split(text, maxsplit=1)[0].strip().removesuffix(".")


def remove_temporaries(run_dir: Path) -> list[str]:
    """Delete what writes killed midway left in `run_dir` (`.last.ckpt.PID.tmp`);
    call it only while holding the folder's lock. Returns the names removed."""
    removed = []
    for leftover in Path(run_dir).glob(f"{TEMPORARY_PREFIX}*.*.tmp"):
        try:
            leftover.unlink()
            removed.append(leftover.name)
        except OSError:
            pass
    return sorted(removed)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda p: Path(p).write_text(text, encoding="utf-8"))


def spec_hash(spec) -> str:
    """A fingerprint of the architecture: every layer's name, op and output shape.
    Comments, formatting and the recipe may change; the network may not."""
    digest = hashlib.sha256()
    for node in spec.graph.nodes:
        digest.update(json.dumps([node.name, node.op.model_dump(mode="json"),
                                  list(spec.table[node.id].shape)],
                                 sort_keys=True).encode())
    return digest.hexdigest()[:16]


def rng_state() -> dict:
    """Every random number generator a run draws from (data order and augmentation
    on the main process, dropout, drop-path)."""
    import numpy

    kind, keys, position, has_gauss, gauss = numpy.random.get_state()
    state = {"python": list(random.getstate()[1]), "python_version": random.getstate()[0],
             "python_gauss": random.getstate()[2],
             "numpy": [kind, torch.from_numpy(keys.astype("int64")), position, has_gauss,
                       gauss],
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    import numpy

    random.setstate((state["python_version"], tuple(state["python"]),
                     state["python_gauss"]))
    kind, keys, position, has_gauss, gauss = state["numpy"]
    numpy.random.set_state((kind, keys.numpy().astype("uint32"), position, has_gauss,
                            gauss))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(run_dir: Path, state: dict) -> None:
    atomic_write(Path(run_dir) / CHECKPOINT, lambda p: torch.save(state, p))


def read_checkpoint(run_dir: Path) -> dict:
    """The state in RUN_DIR/last.ckpt, read without executing pickled code."""
    path = Path(run_dir) / CHECKPOINT
    if not Path(run_dir).is_dir():
        raise UsageError(f"cannot resume: there is no folder {run_dir}")
    if not path.is_file():
        raise UsageError(f"cannot resume: {run_dir} has no {CHECKPOINT} (a run writes "
                         "it before its first epoch)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as problem:  # truncated, not a checkpoint, or unsafe pickle
        raise UsageError(f"cannot resume: {path} is not a readable checkpoint "
                         f"({type(problem).__name__}: {first_sentence(problem)})"
                         ) from None
    if not isinstance(state, dict) or "spec_hash" not in state:
        raise UsageError(f"cannot resume: {path} was not written by cnnspec train")
    return state


def check_fingerprint(state: dict, path: Path, expected_hash: str) -> None:
    """Refuse a checkpoint trained from another network than the spec's."""
    if state["spec_hash"] != expected_hash:
        raise TrainingError(
            f"cannot resume: {path} was trained from a different network "
            f"({state.get('spec_name', '?')}, fingerprint {state['spec_hash']}; this spec "
            f"is {expected_hash}); resume with the spec and --set values of that run, "
            "or start a new run with --out")


def save_weights(path: Path, state_dict: dict, metadata: dict[str, str]) -> None:
    """A model's state dict, under its own (the spec's) names, as safetensors."""
    from safetensors.torch import save_file

    tensors = {name: tensor.detach().to("cpu").contiguous()
               for name, tensor in state_dict.items()}
    atomic_write(Path(path), lambda p: save_file(tensors, str(p), metadata=metadata))


def load_weights(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path))
