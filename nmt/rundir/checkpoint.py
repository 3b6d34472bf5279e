"""Checkpoints: atomic writes, safe loads, the step files training writes and prunes.

A checkpoint is self-contained: it carries the resolved config and the sentencepiece models
next to the weights, as tensors and plain Python values only, so it loads with
`torch.load(weights_only=True)` and cannot run code. Training writes `checkpoints/step-N.pt`
and points `best.pt` and `last.pt` at two of them (hard links; nmt.rundir.layout).
"""

from __future__ import annotations

import os
import pickle
import shutil
import warnings
import zipfile
from pathlib import Path
from typing import Any

import torch

from nmt.errors import CheckpointError
from nmt.files import atomic_write
from nmt.rundir.contents import MODEL_KEYS, dev_metrics, model_contents_problem, step_of
from nmt.rundir.layout import LINKS, STEP_FILE, checkpoint_path, step_path

FORMAT_VERSION = 1
# A checkpoint is a zip file; one whose entries declare more bytes than this in all is refused
# before torch.load unpacks it (a hostile file can expand a few kilobytes to terabytes).
MAX_UNCOMPRESSED_BYTES = 16 * 2**30


class _Recorded:
    """A file that remembers the OSError of a failed write: torch.save reports a failed write
    (a full disk) only as "unexpected pos"."""

    def __init__(self, file):
        self.file, self.error = file, None

    def write(self, data) -> int:
        try:
            return self.file.write(data)
        except OSError as e:
            self.error = e
            raise

    def flush(self) -> None:
        self.file.flush()


def save_checkpoint(state: dict[str, Any], path: str | Path) -> None:
    """Write `state` to `path` atomically: a kill at any moment leaves the old file intact. A
    failed write (a full disk) leaves the old file and no temporary one: a CheckpointError."""
    path = Path(path)
    recorded = []

    def write(f) -> None:
        recorded.append(_Recorded(f))
        torch.save({"format": FORMAT_VERSION, **state}, recorded[0])

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, write)
    except (OSError, RuntimeError) as e:
        error = recorded[0].error if recorded and recorded[0].error else e
        reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error).splitlines()[-1]
        raise CheckpointError(
            f"{path}: cannot write the checkpoint ({reason}); the ones before it are unchanged"
        ) from None


def link_checkpoint(source: Path, name: Path) -> None:
    """Make `name` the same file as `source`, atomically: a hard link (no extra disk), or a copy
    where the file system has no links."""
    tmp = name.with_name(f".{name.name}.{os.getpid()}.tmp")
    try:
        tmp.unlink(missing_ok=True)
        try:
            os.link(source, tmp)
        except OSError:
            shutil.copyfile(source, tmp)
        os.replace(tmp, name)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise CheckpointError(f"{name}: cannot point it at {source.name} ({e.strerror}); it is unchanged") from None


def step_files(folder: Path) -> dict[int, Path]:
    """The checkpoints/step-N.pt files of a run, by N (other names in the folder are ignored)."""
    try:
        names = os.listdir(folder)
    except OSError:
        return {}
    matches = (STEP_FILE.fullmatch(name) for name in names)
    return {int(m[1]): folder / m[0] for m in matches if m}


def save_step(state: dict[str, Any], run_dir: Path, best: bool, keep_last: int, keep_best: int) -> Path:
    """Write a training state as checkpoints/step-N.pt (N: its progress step), point best.pt (if
    `best`) and then last.pt at it, and keep only the keep_last newest and the keep_best best
    step files (by their dev metrics, nmt.rundir.contents.dev_metrics; last.pt and
    best.pt stay: they are hard links). best.pt goes first: a kill between the two links leaves
    best.pt on a model at least as good as the best one that last.pt records."""
    path = step_path(run_dir, step_of(state))
    save_checkpoint(state, path)
    if best:
        link_checkpoint(path, checkpoint_path(run_dir, "best"))
    link_checkpoint(path, checkpoint_path(run_dir, "last"))
    files = step_files(path.parent)
    metrics = dev_metrics(state)
    newest = sorted(files)[-keep_last:]
    kept_best = sorted((s for s in files if str(s) in metrics), key=lambda s: -metrics[str(s)])[:keep_best]
    for step in set(files) - set(newest) - set(kept_best):
        files[step].unlink(missing_ok=True)
    return path


def _check_expanded_size(path: Path) -> None:
    """Refuse a file that is not a zip (what torch.save writes; a YAML file, a sentencepiece model,
    a checkpoint cut short), and a zip whose entries declare more than MAX_UNCOMPRESSED_BYTES."""
    try:
        with zipfile.ZipFile(path) as archive:
            total = sum(info.file_size for info in archive.infolist())
    except OSError as e:
        raise CheckpointError(f"{path}: cannot read it ({e.strerror or e})") from None
    except Exception:  # noqa: BLE001 - zipfile's BadZipFile, or a damaged directory of entries
        raise CheckpointError(f"{path}: not a checkpoint, or one cut short (not a zip file of torch.save)") from None
    if total > MAX_UNCOMPRESSED_BYTES:
        raise CheckpointError(
            f"{path}: refused to load: its entries would expand to {total / 2**30:.1f} GiB, more than "
            f"the {MAX_UNCOMPRESSED_BYTES / 2**30:g} GiB limit (nmt.rundir.checkpoint.MAX_UNCOMPRESSED_BYTES)"
        )


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint on the CPU without unpickling arbitrary objects (nor unpacking more than
    MAX_UNCOMPRESSED_BYTES)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint")
    _check_expanded_size(path)
    try:
        with warnings.catch_warnings():  # int8 weights (`nmt average --int8`): torch's notes on quantized tensors
            warnings.filterwarnings("ignore", message=".*(TypedStorage is deprecated|quantize_per_channel).*")
            state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise CheckpointError(
            f"{path}: refused to load: it holds Python objects other than tensors "
            "and plain values, which could run code (not an nmt checkpoint)"
        ) from None
    except Exception as e:  # noqa: BLE001 - any failure of the safe unpickler means a bad file
        raise CheckpointError(f"{path}: truncated or corrupt checkpoint ({type(e).__name__})") from None
    if not isinstance(state, dict) or type(state.get("format")) is not int or state["format"] != FORMAT_VERSION:
        raise CheckpointError(f"{path}: not an nmt checkpoint (format {FORMAT_VERSION})")
    missing = [key for key in MODEL_KEYS if key not in state]
    if missing:
        raise CheckpointError(f"{path}: incomplete checkpoint (no {', '.join(missing)})")
    problem = model_contents_problem(state)
    if problem:
        raise CheckpointError(f"{path}: damaged checkpoint ({problem})")
    state["model"] = {k: _dequantized(v) for k, v in state["model"].items()}  # int8 weights come back as fp32
    return state


def _dequantized(value: Any) -> Any:
    return value.dequantize() if isinstance(value, torch.Tensor) and value.is_quantized else value


def resolve_checkpoint(path: str | Path) -> Path:
    """A run directory means its best checkpoint (else its last); a file means itself."""
    path = Path(path)
    if path.is_dir():
        for name in LINKS:
            if checkpoint_path(path, name).is_file():
                return checkpoint_path(path, name)
        raise CheckpointError(f"{path}: no checkpoints/best.pt or checkpoints/last.pt in this run directory")
    if not path.exists():
        raise CheckpointError(f"{path}: no such run directory or checkpoint")
    return path
