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

import torch

from nmt.untrusted import short_repr

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


def model_contents_problem(state: dict[str, Any]) -> str | None:
    """What makes a checkpoint's MODEL_KEYS (all present) other than `model_contents` writes them
    (None: nothing): the config a mapping, the tokenizers {"src": bytes, "tgt": bytes or None},
    the weights a mapping of names to tensors."""
    tokenizers, weights = state["tokenizers"], state["model"]
    if not isinstance(state["config"], dict):
        return f"config: expected a mapping, got {short_repr(state['config'])}"
    if (where := _not_plain(state["config"], "config")) is not None:
        return f"{where}: expected a plain value (what YAML writes), got {short_repr(_at(state, where))}"
    if not (isinstance(tokenizers, dict) and isinstance(tokenizers.get("src"), bytes)):
        return f"tokenizers: expected {{src: bytes, tgt: bytes or null}}, got {short_repr(tokenizers)}"
    if "tgt" not in tokenizers or not isinstance(tokenizers["tgt"], (bytes, type(None))):  # (absent: not joint)
        return f"tokenizers: expected {{src: bytes, tgt: bytes or null}}, got {short_repr(tokenizers)}"
    if not isinstance(weights, dict):
        return f"model: expected a mapping of weights, got {short_repr(weights)}"
    for name, value in weights.items():
        if not (isinstance(name, str) and isinstance(value, torch.Tensor)):
            return f"model: expected tensors by name, got {short_repr(name)}: {short_repr(value)}"
    return None


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
    """The optimizer step a training checkpoint was written at (-1: not a training checkpoint,
    or one whose step is not an integer)."""
    progress = state.get("progress")
    step = progress.get("step", -1) if isinstance(progress, dict) else -1
    return step if _is_int(step) else -1


def dev_metrics(state: dict[str, Any]) -> dict[str, float]:
    """The dev metric (valid_metric, higher is better) of each step file's step, by str(step), as
    recorded in a training checkpoint ({} for others, and for scores that are not such a map)."""
    progress = state.get("progress")
    scores = progress.get("scores", {}) if isinstance(progress, dict) else {}
    return scores if _scores_problem(scores) is None else {}


PLAIN = (str, int, float, bool, type(None))


def _not_plain(value: Any, path: str) -> str | None:
    """The dotted path of a value inside `value` that YAML would not write (a tensor, bytes, a
    mapping with keys other than strings), None if there is none: such a value breaks every
    comparison of configs. Each list or mapping is looked at once, however often it is shared (a
    crafted config can share one list thousands of times over: see the alias bombs)."""
    seen, todo = set(), [(value, path)]
    while todo:
        value, path = todo.pop()
        if isinstance(value, PLAIN):
            continue
        if not isinstance(value, (dict, list, tuple)) or (
            isinstance(value, dict) and not all(isinstance(key, str) for key in value)
        ):
            return path
        if id(value) not in seen:
            seen.add(id(value))
            items = value.items() if isinstance(value, dict) else enumerate(value)
            todo.extend((item, f"{path}.{key}") for key, item in items)
    return None


def _at(state: dict, path: str) -> Any:
    """The value at a dotted path `_not_plain` returned."""
    value: Any = state
    for key in path.split("."):
        value = value[int(key)] if isinstance(value, (list, tuple)) else value[key]
    return value


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_random_state(value: Any) -> bool:
    return isinstance(value, torch.Tensor) and value.dtype == torch.uint8 and value.dim() == 1


def _is_rank_state(value: Any) -> bool:
    """{"cpu": a random state, "cuda": a random state or None}: one rank's random states."""
    if not isinstance(value, dict) or not _is_random_state(value.get("cpu")):
        return False
    return value.get("cuda") is None or _is_random_state(value["cuda"])


#: the progress values resuming reads, and what each must be (nmt.training.state.Progress)
_PROGRESS_VALUES = {
    "step": (_is_int, "an integer"),
    "epoch": (_is_int, "an integer"),
    "bad_validations": (_is_int, "an integer"),
    "batches_done": (_is_int, "an integer"),
    "last_valid": (_is_int, "an integer"),
    "best": (lambda v: v is None or _is_number(v), "a number or null"),
    "best_saved": (lambda v: v is None or _is_number(v), "a number or null"),
    "seconds": (_is_number, "a number"),
}


def _scores_problem(scores: Any) -> str | None:
    if not isinstance(scores, dict):
        return "expected a mapping"
    for step, metric in scores.items():
        if not (isinstance(step, str) and step.isdecimal() and _is_number(metric)):
            return f"expected step: number, got {short_repr(step)}: {short_repr(metric)}"
    return None


def training_state_problem(state: dict[str, Any]) -> str | None:
    """What makes a step file's training state (TRAINING_KEYS, all present) unusable for resuming:
    a progress value, the schedule or a random state of the wrong type (None: nothing). Checked
    before anything is restored: a damaged or crafted file stops with one line, not deep inside
    training."""
    progress, schedule = state["progress"], state["schedule"]
    if not isinstance(progress, dict):
        return f"progress: expected a mapping, got {short_repr(progress)}"
    for key, (valid, what) in _PROGRESS_VALUES.items():
        if key in progress and not valid(progress[key]):
            return f"progress.{key}: expected {what}, got {short_repr(progress[key])}"
    if "scores" in progress and (problem := _scores_problem(progress["scores"])):
        return f"progress.scores: {problem}"
    if not (isinstance(schedule, dict) and _is_number(schedule.get("scale")) and _is_int(schedule.get("bad"))):
        return f"schedule: expected {{scale: number, bad: integer}}, got {short_repr(schedule)}"
    ranks = rank_random_states(state)
    if not isinstance(ranks, list) or not all(_is_rank_state(r) for r in ranks):
        return "rng_ranks: expected a list of random states (byte tensors), one per process"
    return None


def rank_random_states(state: dict[str, Any]) -> list[dict]:
    """Every rank's random states; a checkpoint written before rng_ranks has rank 0's CPU state.
    (What a damaged file holds there is returned as it is, for training_state_problem to refuse.)"""
    ranks = state.get("rng_ranks")
    if ranks is None or (isinstance(ranks, list) and not ranks):
        return [{"cpu": state["rng"], "cuda": None}]
    return ranks
