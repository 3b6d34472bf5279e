"""What a command uses when not told: the run most recently trained on this machine (the
default model of `nmt translate` and `nmt evaluate`), and a run's stored decoding defaults
(RUN_DIR/decoding.yaml, written by `nmt tune --write`)."""

from __future__ import annotations

import os
from pathlib import Path

import yaml

from nmt.errors import CheckpointError, ConfigError, NmtError
from nmt.files import atomic_write
from nmt.rundir.layout import DECODING
from nmt.untrusted import load_yaml, short_repr


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


def write_decoding_defaults(run_dir: str | Path, beam_size: int, alpha: float) -> Path:
    """Store beam_size and alpha as the run's decoding defaults (RUN_DIR/decoding.yaml)."""
    path = Path(run_dir) / DECODING
    text = "# written by `nmt tune --write`; applied on top of the checkpoint's decoding section\n" + yaml.safe_dump(
        {"beam_size": int(beam_size), "alpha": float(alpha)}, sort_keys=False
    )
    data = text.encode("utf-8")
    atomic_write(path, lambda f: f.write(data))
    return path


def read_decoding_defaults(run_dir: str | Path) -> list[str]:
    """The stored decoding defaults of a run as `decoding.KEY=VALUE` overrides ([] if none)."""
    path = Path(run_dir) / DECODING
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
