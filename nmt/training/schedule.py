"""The learning-rate schedule: warmup, then inverse square root, linear or plateau decay."""

from __future__ import annotations

import math

import torch

from nmt.config import TrainingConfig
from nmt.errors import ConfigError


class LRSchedule:
    """lr = base * warmup(step) * decay(step) * plateau_scale, never below min_lr.

    warmup: linear from 0 over warmup_steps, min(1, step / warmup_steps). decay: `inverse_sqrt`
    sqrt(warmup/step) after warmup; `linear` 1 - step / max_steps, to 0 at max_steps; 1
    otherwise. `plateau` multiplies the scale by plateau_factor after plateau_patience
    validations without improvement.
    """

    def __init__(self, t: TrainingConfig, optimizer: torch.optim.Optimizer):
        if t.lr_schedule == "linear" and not t.max_steps:
            raise ConfigError("training.lr_schedule: linear decays to 0 at training.max_steps; set max_steps")
        self.t, self.optimizer, self.scale, self.bad = t, optimizer, 1.0, 0

    def factor(self, step: int) -> float:
        """warmup(step) * decay(step): the multiplier of training.lr before the plateau scale."""
        t = self.t
        warm = min(1.0, step / t.warmup_steps) if t.warmup_steps else 1.0
        if t.lr_schedule == "inverse_sqrt":
            return warm * math.sqrt(max(1, t.warmup_steps) / max(step, t.warmup_steps, 1))
        if t.lr_schedule == "linear":
            return warm * max(0.0, 1 - step / t.max_steps)
        return warm

    def step(self, step: int) -> float:
        """Set the learning rate for optimizer step number `step` (1-based); return it."""
        lr = max(self.t.min_lr, self.t.lr * self.factor(step) * self.scale)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        return lr

    def validated(self, improved: bool) -> None:
        """Tell the plateau schedule whether the dev metric improved."""
        if self.t.lr_schedule != "plateau":
            return
        self.bad = 0 if improved else self.bad + 1
        if self.bad > self.t.plateau_patience:
            self.scale *= self.t.plateau_factor
            self.bad = 0

    def state_dict(self) -> dict:
        return {"scale": self.scale, "bad": self.bad}

    def load_state_dict(self, state: dict) -> None:
        self.scale, self.bad = state["scale"], state["bad"]
