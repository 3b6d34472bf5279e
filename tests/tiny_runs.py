"""Tiny trained dates runs for the tests of what is done with a trained model (scoring,
averaging, ensembles, int8): a few seconds of training each, several step checkpoints kept."""

from __future__ import annotations

from pathlib import Path

from conftest import tiny_dates_config

import nmt
from nmt.config import config_from_dict, config_to_dict

#: test inputs: dates in several formats, and a blank line
LINES = ["3 May 1979", "march 12th 1991", "", "Tuesday, March 12 1991", "12/05/1943", "28 FEB 2058"]


def train_tiny(
    folder: Path, run: str = "run", seed: int = 1, steps: int = 30, overrides: tuple = (), **training
) -> Path:
    """A dates run in folder/run: 16-unit model, `steps` steps, a step checkpoint every 10 (3
    kept); `overrides`: more `KEY=VALUE` config settings."""
    cfg = tiny_dates_config(folder, run, max_steps=steps, valid_every=10, keep_last=3, batch_size=300, **training)
    cfg = config_from_dict(config_to_dict(cfg), [f"seed={seed}", *overrides])
    return Path(nmt.train(cfg))


#: the runs trained in this test session, by their arguments (tests read them, never change them)
_SHARED: dict[tuple, Path] = {}


def shared_run(tmp_path_factory, run: str = "a", seed: int = 1, steps: int = 40, overrides: tuple = ()) -> Path:
    """A `train_tiny` run trained once per test session and shared by the test files that read it."""
    key = (run, seed, steps, overrides)
    if key not in _SHARED:
        folder = tmp_path_factory.getbasetemp() / "tiny_runs"
        folder.mkdir(exist_ok=True)
        _SHARED[key] = train_tiny(folder, f"{run}-{len(_SHARED)}", seed, steps, overrides)
    return _SHARED[key]
