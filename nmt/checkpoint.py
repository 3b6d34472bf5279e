"""Run directories and checkpoints: atomic writes, safe loads.

A run directory holds `config.yaml` (resolved), `spm*.model`, `metrics.jsonl`, `train.log`
and `checkpoints/{best,last}.pt` (hard links to the `checkpoints/step-N.pt` files training
writes and prunes); `decoding.yaml` when `nmt tune --write` stored decoding
defaults. A checkpoint is self-contained: it carries the resolved
config and the sentencepiece models next to the weights, as tensors and plain Python values
only, so it loads with `torch.load(weights_only=True)` and cannot run code.
"""

from __future__ import annotations

import os
import pickle
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import yaml

from nmt.errors import CheckpointError, ConfigError
from nmt.files import atomic_write

if TYPE_CHECKING:
    from nmt.data.tokenizer import Tokenizer

CHECKPOINT_DIR = "checkpoints"
DECODING_FILE = "decoding.yaml"
FORMAT_VERSION = 1


REQUIRED_KEYS = ("config", "tokenizers", "model")


def save_checkpoint(state: dict[str, Any], path: str | Path) -> None:
    """Write `state` to `path` atomically: a kill at any moment leaves the old file intact."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda f: torch.save({"format": FORMAT_VERSION, **state}, f))


def link_checkpoint(source: Path, name: Path) -> None:
    """Make `name` the same file as `source`, atomically: a hard link (no extra disk), or a copy
    where the file system has no links."""
    tmp = name.with_name(f".{name.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(source, tmp)
    except OSError:
        shutil.copyfile(source, tmp)
    os.replace(tmp, name)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint on the CPU without unpickling arbitrary objects."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint")
    try:
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
    return state


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
    """Record `run_dir` as the default model of `nmt translate` and `nmt evaluate`."""
    try:
        state = _state_file()
        state.parent.mkdir(parents=True, exist_ok=True)
        state.write_text(str(Path(run_dir).resolve()) + "\n", encoding="utf-8")
    except OSError:
        pass  # only a convenience: -m still works


def latest_run() -> Path:
    """The run directory most recently trained on this machine."""
    state = _state_file()
    try:
        run = Path(state.read_text(encoding="utf-8").strip())
    except OSError:
        raise CheckpointError("no trained run found: train one with `nmt train CONFIG` or pass -m RUN_DIR") from None
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
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise ConfigError(f"{path}: cannot read the stored decoding defaults ({e})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of decoding keys, got {type(raw).__name__}")
    return [f"decoding.{key}={value}" for key, value in raw.items()]


def checkpoint_tokenizers(state: dict) -> tuple[Tokenizer, Tokenizer]:
    """(source, target) sentencepiece tokenizers of a loaded checkpoint (one object if joint)."""
    from nmt.data.tokenizer import Tokenizer

    try:
        src = Tokenizer(state["tokenizers"]["src"])
        return src, src if state["tokenizers"]["tgt"] is None else Tokenizer(state["tokenizers"]["tgt"])
    except (RuntimeError, TypeError, KeyError):
        raise CheckpointError("its sentencepiece models are missing or corrupt") from None
