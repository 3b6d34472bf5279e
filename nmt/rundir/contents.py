"""What a checkpoint holds, defined once: training and averaging write it through these
functions, and loading, resuming, pruning and averaging read it through them.

A checkpoint is a dict of tensors and plain values (nmt.rundir.checkpoint writes and loads it):

    config       the resolved config, as a dict (nmt.config.config_to_dict)
    tokenizers   {"src": sentencepiece model bytes, "tgt": bytes, or None when joint}
    model        the model's state_dict
  every step file of a training run adds what resuming needs:
    optimizer, schedule, scaler   their state_dicts
    progress     where training stands (nmt.training.state.Progress; "scores": step -> dev metric)
    rng          rank 0's CPU random state; rng_ranks: every rank's {"cpu", "cuda"} states
  an averaged checkpoint (`nmt average`) adds:
    averaged     {"output", "files", "steps", "int8"}: what was averaged
"""

from __future__ import annotations

from typing import Any

#: what every checkpoint holds: enough to translate
MODEL_KEYS = ("config", "tokenizers", "model")
#: what a step file of a training run adds: enough to resume exactly ("scaler" and "rng_ranks"
#: are newer than the others: a checkpoint without them resumes too)
TRAINING_KEYS = ("optimizer", "schedule", "progress", "rng")


def model_contents(config: dict, src_model: bytes, tgt_model: bytes | None, weights: dict) -> dict[str, Any]:
    """A translating checkpoint: config dict, the sentencepiece models' bytes (tgt_model None:
    one joint model) and the model's state_dict."""
    return {"config": config, "tokenizers": {"src": src_model, "tgt": tgt_model}, "model": weights}


def training_contents(
    model: dict[str, Any], optimizer: dict, schedule: dict, scaler: dict, progress: dict, rng_ranks: list[dict]
) -> dict[str, Any]:
    """A step file: `model_contents` plus the training state; rng_ranks: each rank's
    {"cpu": tensor, "cuda": tensor or None}, rank 0 first."""
    training = {"optimizer": optimizer, "schedule": schedule, "scaler": scaler, "progress": progress}
    return {**model, **training, "rng": rng_ranks[0]["cpu"], "rng_ranks": rng_ranks}


def averaged_contents(model: dict[str, Any], summary: dict) -> dict[str, Any]:
    """An averaged checkpoint: `model_contents` plus what was averaged."""
    return {**model, "averaged": summary}


def model_part(state: dict[str, Any]) -> dict[str, Any]:
    """Only what translating needs (what a decoding worker is sent)."""
    return {key: state[key] for key in MODEL_KEYS}


def tokenizer_models(state: dict[str, Any]) -> tuple[bytes, bytes | None]:
    """(source, target) sentencepiece model bytes; target None: the source model is joint."""
    return state["tokenizers"]["src"], state["tokenizers"]["tgt"]


def can_resume(state: dict[str, Any], progress_keys: frozenset[str]) -> bool:
    """Whether a checkpoint holds the training state to resume from (older ones translate only)."""
    return all(key in state for key in TRAINING_KEYS) and progress_keys <= set(state["progress"])


def step_of(state: dict[str, Any]) -> int:
    """The optimizer step a training checkpoint was written at (-1: not a training checkpoint)."""
    return int(state.get("progress", {}).get("step", -1))


def dev_metrics(state: dict[str, Any]) -> dict[str, float]:
    """The dev metric (valid_metric, higher is better) of each step file's step, by str(step), as
    recorded in a training checkpoint ({} for others)."""
    return state.get("progress", {}).get("scores", {})


def rank_random_states(state: dict[str, Any]) -> list[dict]:
    """Every rank's random states; a checkpoint written before rng_ranks has rank 0's CPU state."""
    return state.get("rng_ranks") or [{"cpu": state["rng"], "cuda": None}]
