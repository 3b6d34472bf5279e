"""Checkpoint averaging: `nmt average RUN_DIR --last N | --best N -o FILE.pt` (or checkpoint files).

The element-wise mean of the parameters of N step checkpoints of one run (`checkpoints/step-N.pt`):
the N newest, or the N best by the dev metric training recorded (training.valid_metric, in the
newest checkpoint's progress). The mean of nearby points of one training run is usually a
slightly better model than any of them (Vaswani et al. 2017; Junczys-Dowmunt et al. 2016). The
result is an ordinary checkpoint: the newest file's config and sentencepiece models with the
averaged weights, written atomically, loadable with `torch.load(weights_only=True)`, accepted
wherever a checkpoint is (`translate -m FILE.pt`, evaluate, analyze, tune). It holds no
optimizer or progress: it is a model to decode with, not a state to resume training from.

Training keeps only `training.keep_last` newest and `training.keep_best` best step files (1 and
1 by default), written at each validation (training.valid_every) and, with
`training.save_every`, between them: to average the last N, train with `--set
training.keep_last=N` and a save_every that puts N files in the stretch to average (each step
file holds the weights and Adam's two moments: about 3x the model's fp32 size on disk, 100 MB
for the reference model).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch
from torch.ao.quantization import PerChannelMinMaxObserver

from nmt.errors import CheckpointError, DataError
from nmt.rundir.checkpoint import load_checkpoint, save_checkpoint, step_files
from nmt.rundir.contents import averaged_contents, dev_metrics, model_contents, step_of, tokenizer_models
from nmt.rundir.layout import CHECKPOINTS, STEP_FILE

#: the parts of a checkpoint's config that must agree for its weights to be averaged: the same
#: model, tokenizer and data, and the same seed (the points of one training run; the weights of
#: differently seeded runs do not line up, and their mean is no model)
SHARED_CONFIG = ("model", "tokenizer", "data", "seed")


def choose_steps(run_dir: str | Path, last: int | None = None, best: int | None = None) -> list[Path]:
    """The step files to average, oldest first: the `last` newest, or the `best` best by the dev
    metric recorded in the newest one. A CheckpointError says what is missing."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise CheckpointError(f"{run_dir}: no such run directory")
    files = step_files(run_dir / CHECKPOINTS)
    n = last or best or 0
    if len(files) < n:
        raise CheckpointError(
            f"{run_dir / CHECKPOINTS}: {len(files)} step checkpoint(s), fewer than the {n} to average "
            f"(training keeps training.keep_last newest and keep_best best step files: train with "
            f"--set training.keep_last={n}, and training.save_every for files between validations)"
        )
    if last:
        return [files[s] for s in sorted(files)[-last:]]
    metrics = dev_metrics(load_checkpoint(files[max(files)]))
    scored = [s for s in files if str(s) in metrics]
    if len(scored) < n:
        raise CheckpointError(
            f"{run_dir / CHECKPOINTS}: {len(scored)} step checkpoint(s) with a dev score, fewer than --best {n}"
        )
    return [files[s] for s in sorted(sorted(scored, key=lambda s: -metrics[str(s)])[:n])]


def _first_difference(a: Any, b: Any, path: str) -> str | None:
    """The dotted key where two config values differ (None if equal)."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            found = _first_difference(a.get(key), b.get(key), f"{path}.{key}")
            if found:
                return found
        return None
    return None if a == b else path


def check_compatible(first: dict, other: dict, first_name: str, other_name: str) -> None:
    """A CheckpointError naming the first config key, tokenizer or weight in which `other`
    differs from `first` (their weights could not be averaged into one model)."""
    for section in SHARED_CONFIG:
        key = _first_difference(first["config"].get(section), other["config"].get(section), section)
        if key:
            raise CheckpointError(f"{other_name}: cannot average with {first_name}: {key} differs")
    for side, a, b in zip(("src", "tgt"), tokenizer_models(first), tokenizer_models(other)):
        if a != b:
            raise CheckpointError(
                f"{other_name}: cannot average with {first_name}: its {side} sentencepiece model differs"
            )
    a, b = first["model"], other["model"]
    for key in sorted(set(a) | set(b)):
        if key not in a or key not in b or a[key].shape != b[key].shape or a[key].dtype != b[key].dtype:
            raise CheckpointError(f"{other_name}: cannot average with {first_name}: weight {key} differs")


def average_states(states: list[dict], names: list[str]) -> dict[str, torch.Tensor]:
    """The element-wise mean of the states' weights (accumulated in float64, stored in each weight's
    own dtype). Integer tensors (counters, if any) must be equal and are kept."""
    for state, name in zip(states[1:], names[1:]):
        check_compatible(states[0], state, names[0], name)
    out = {}
    for key, first in states[0]["model"].items():
        if first.is_floating_point():
            total = sum(s["model"][key].double() for s in states)
            out[key] = (total / len(states)).to(first.dtype)
        elif all(torch.equal(first, s["model"][key]) for s in states):
            out[key] = first.clone()
        else:
            raise CheckpointError(f"{names[0]}: cannot average integer weight {key}: it differs between checkpoints")
    return out


def check_destination(output: str | Path) -> None:
    """Refuse to overwrite training's own files (step-N.pt, best.pt, last.pt in a checkpoints
    folder), however the path reaches them (relative, through a symbolic link)."""
    path = Path(output).resolve()
    if path.parent.name == CHECKPOINTS and (path.name in ("best.pt", "last.pt") or STEP_FILE.fullmatch(path.name)):
        raise DataError(f"{output}: is one of training's own checkpoints; write the average under another name")


def int8_storage(weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The weight matrices (floating tensors of 2 or more dimensions) stored as int8, one scale
    per row (PyTorch's per-channel symmetric quantization: scale = max |w_row| / 127), the rest
    (biases) as they are: a quarter of the fp32 size. `load_checkpoint` gives them back as fp32."""
    out = {}
    for key, w in weights.items():
        if not (w.is_floating_point() and w.dim() >= 2):
            out[key] = w
            continue
        observer = PerChannelMinMaxObserver(ch_axis=0, dtype=torch.qint8, qscheme=torch.per_channel_symmetric)
        observer(w.float())
        scale, zero = observer.calculate_qparams()
        out[key] = torch.quantize_per_channel(w.float(), scale, zero, 0, torch.qint8)
    return out


def average(paths: list[Path], output: str | Path, int8: bool = False) -> dict:
    """Average the checkpoints `paths` (in this order; the last one's config and tokenizers are
    kept) into `output`, atomically; `int8`: the weight matrices stored in int8 (`int8_storage`).
    Returns a summary: {"output", "files", "steps"}. Nothing is written when a checkpoint is
    missing, damaged or incompatible."""
    check_destination(output)
    if not paths:
        raise DataError("no checkpoint to average")
    states = [load_checkpoint(p) for p in paths]
    weights = average_states(states, [str(p) for p in paths])
    if int8:
        with warnings.catch_warnings():  # torch announces quantized tensors' move to torchao
            warnings.simplefilter("ignore")
            weights = int8_storage(weights)
    newest = states[-1]
    steps = [step_of(s) for s in states]
    summary = {"output": str(output), "files": [str(p) for p in paths], "steps": steps, "int8": int8}
    model = model_contents(newest["config"], *tokenizer_models(newest), weights)
    save_checkpoint(averaged_contents(model, summary), output)
    return summary
