"""nmt.training.schedule: warmup, inverse square root, linear decay and the plateau schedule."""

import pytest
import torch

import nmt
from nmt.config import TrainingConfig
from nmt.training.schedule import LRSchedule


def _schedule(**kw) -> tuple[LRSchedule, torch.optim.Optimizer]:
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    return LRSchedule(TrainingConfig(**kw), opt), opt


def test_warmup_then_inverse_sqrt():
    s, opt = _schedule(lr=1.0, lr_schedule="inverse_sqrt", warmup_steps=100, min_lr=0.0)
    assert s.step(50) == pytest.approx(0.5)
    assert s.step(100) == pytest.approx(1.0)
    assert s.step(400) == pytest.approx(0.5)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.5)


def test_linear_decay_needs_max_steps_and_reaches_zero():
    with pytest.raises(nmt.ConfigError, match="training.lr_schedule"):
        _schedule(lr_schedule="linear")
    s, _ = _schedule(lr=2.0, lr_schedule="linear", max_steps=100, min_lr=0.0)
    assert s.step(50) == pytest.approx(1.0)
    assert s.step(100) == pytest.approx(0.0)


def test_plateau_halves_after_patience_and_respects_min_lr():
    s, _ = _schedule(lr=1.0, lr_schedule="plateau", plateau_patience=1, plateau_factor=0.5, min_lr=0.3)
    s.validated(True)
    s.validated(False)
    assert s.step(10) == pytest.approx(1.0)  # one bad validation is within patience
    s.validated(False)
    assert s.step(11) == pytest.approx(0.5)
    s.validated(False)
    s.validated(False)
    assert s.step(12) == pytest.approx(0.3)  # 0.25 floored at min_lr
