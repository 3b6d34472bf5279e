"""Run directories and checkpoints: atomic writes, safe loads.

A run directory holds `config.yaml` (resolved), `spm*.model`, `metrics.jsonl`, `train.log`
and `checkpoints/{best,last}.pt` (hard links to the `checkpoints/step-N.pt` files training
writes and prunes); `decoding.yaml` when `nmt tune --write` stored decoding
defaults. A checkpoint is self-contained: it carries the resolved
config and the sentencepiece models next to the weights, as tensors and plain Python values
only, so it loads with `torch.load(weights_only=True)` and cannot run code. (Starting, clearing,
locking and resuming a run directory: nmt.rundir.)
"""

from __future__ import annotations

import os
import pickle
import re
import shutil
import warnings
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import yaml

from nmt.errors import CheckpointError, ConfigError, NmtError
from nmt.files import atomic_write
from nmt.untrusted import load_yaml, short_repr

if TYPE_CHECKING:
    from nmt.data.tokenizer import Tokenizer

CHECKPOINT_DIR = "checkpoints"
DECODING_FILE = "decoding.yaml"
FORMAT_VERSION = 1
STEP_FILE = re.compile(r"step-(\d+)\.pt")  # checkpoints/step-N.pt; any other name is not training's

# A checkpoint is a zip file; one whose entries declare more bytes than this in all is refused
# before torch.load unpacks it (a hostile file can expand a few kilobytes to terabytes).
MAX_UNCOMPRESSED_BYTES = 16 * 2**30

REQUIRED_KEYS = ("config", "tokenizers", "model")


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
    step files (by the progress's "scores", step -> dev metric, higher is better; last.pt and
    best.pt stay: they are hard links). best.pt goes first: a kill between the two links leaves
    best.pt on a model at least as good as the best one that last.pt records."""
    path = checkpoint_path(run_dir, f"step-{state['progress']['step']:08d}")
    save_checkpoint(state, path)
    if best:
        link_checkpoint(path, checkpoint_path(run_dir, "best"))
    link_checkpoint(path, checkpoint_path(run_dir, "last"))
    files = step_files(path.parent)
    scores = state["progress"]["scores"]
    newest = sorted(files)[-keep_last:]
    kept_best = sorted((s for s in files if str(s) in scores), key=lambda s: -scores[str(s)])[:keep_best]
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
            f"the {MAX_UNCOMPRESSED_BYTES / 2**30:g} GiB limit (nmt.checkpoint.MAX_UNCOMPRESSED_BYTES)"
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
    if not isinstance(state, dict) or state.get("format") != FORMAT_VERSION:
        raise CheckpointError(f"{path}: not an nmt checkpoint (format {FORMAT_VERSION})")
    missing = [key for key in REQUIRED_KEYS if key not in state]
    if missing:
        raise CheckpointError(f"{path}: incomplete checkpoint (no {', '.join(missing)})")
    if isinstance(state["model"], dict):  # weights stored in int8 (`nmt average --int8`) come back as fp32
        state["model"] = {k: _dequantized(v) for k, v in state["model"].items()}
    return state


def _dequantized(value: Any) -> Any:
    return value.dequantize() if isinstance(value, torch.Tensor) and value.is_quantized else value


def checkpoint_path(run_dir: str | Path, name: str) -> Path:
    return Path(run_dir) / CHECKPOINT_DIR / f"{name}.pt"


def resolve_checkpoint(path: str | Path) -> Path:
    """A run directory means its best checkpoint (else its last); a file means itself."""
    path = Path(path)
    if path.is_dir():
        for name in ("best", "last"):
            if checkpoint_path(path, name).is_file():
                return checkpoint_path(path, name)
        raise CheckpointError(f"{path}: no checkpoints/best.pt or checkpoints/last.pt in this run directory")
    if not path.exists():
        raise CheckpointError(f"{path}: no such run directory or checkpoint")
    return path


def run_dir_of(checkpoint: Path) -> Path | None:
    """The run directory a checkpoint file lies in (RUN_DIR/checkpoints/NAME.pt), or None."""
    return checkpoint.parent.parent if checkpoint.parent.name == CHECKPOINT_DIR else None


def _state_file() -> Path:
    """Where the most recent run is remembered ($NMT_STATE_DIR, else the XDG state dir)."""
    base = (
        os.environ.get("NMT_STATE_DIR")
        or Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state") / "nmt"
    )
    return Path(base) / "latest_run"


def remember_run(run_dir: str | Path) -> None:
    """Record `run_dir` as the default model of `nmt translate` and `nmt evaluate` (atomically)."""
    data = (str(Path(run_dir).resolve()) + "\n").encode("utf-8")
    try:
        state = _state_file()
        state.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(state, lambda f: f.write(data))
    except (OSError, NmtError):
        pass  # only a convenience: -m still works


def latest_run() -> Path:
    """The run directory most recently trained on this machine. A pointer that is empty or not
    an absolute path (damaged) means none."""
    state = _state_file()
    try:
        text = state.read_bytes().decode("utf-8").strip()
    except (OSError, UnicodeDecodeError):
        text = ""
    if not text or "\n" in text or not os.path.isabs(text):
        raise CheckpointError("no trained run found: train one with `nmt train CONFIG` or pass -m RUN_DIR")
    run = Path(text)
    if not run.is_dir():
        raise CheckpointError(f"{run}: the most recent run directory is gone; pass -m RUN_DIR")
    return run


def write_decoding_defaults(run_dir: str | Path, beam: int, alpha: float) -> Path:
    """Store beam and alpha as the run's decoding defaults (RUN_DIR/decoding.yaml)."""
    path = Path(run_dir) / DECODING_FILE
    text = "# written by `nmt tune --write`; applied on top of the checkpoint's decoding section\n" + yaml.safe_dump(
        {"beam_size": int(beam), "alpha": float(alpha)}, sort_keys=False
    )
    data = text.encode("utf-8")
    atomic_write(path, lambda f: f.write(data))
    return path


def read_decoding_defaults(run_dir: str | Path) -> list[str]:
    """The stored decoding defaults of a run as `decoding.KEY=VALUE` overrides ([] if none)."""
    path = Path(run_dir) / DECODING_FILE
    if not path.is_file():
        return []
    try:
        raw = load_yaml(path.read_text(encoding="utf-8"), str(path)) or {}
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read the stored decoding defaults ({e})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of decoding keys, got {type(raw).__name__}")
    for key, value in raw.items():
        if not isinstance(key, str) or isinstance(value, (dict, list)):
            raise ConfigError(f"{path}: expected `key: value` lines, got {short_repr(key)}: {short_repr(value)}")
    return [f"decoding.{key}={value}" for key, value in raw.items()]


def checkpoint_tokenizers(state: dict) -> tuple[Tokenizer, Tokenizer]:
    """(source, target) sentencepiece tokenizers of a loaded checkpoint (one object if joint)."""
    from nmt.data.tokenizer import Tokenizer

    try:
        src = Tokenizer(state["tokenizers"]["src"])
        return src, src if state["tokenizers"]["tgt"] is None else Tokenizer(state["tokenizers"]["tgt"])
    except (RuntimeError, TypeError, KeyError):
        raise CheckpointError("its sentencepiece models are missing or corrupt") from None
