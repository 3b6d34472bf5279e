"""Training: determinism, learning-rate schedules, the reference config, the Python API."""

from pathlib import Path

import pytest
import torch
import yaml

import nmt
from nmt.checkpoint import load_checkpoint
from nmt.config import Config, TrainingConfig, config_from_dict, reference_yaml
from nmt.schedule import LRSchedule

from conftest import tiny_dates_config

ROOT = Path(__file__).resolve().parents[1]


def test_reference_config_is_generated_from_the_defaults():
    text = (ROOT / "configs" / "reference.yaml").read_text(encoding="utf-8")
    assert text == reference_yaml(), "regenerate configs/reference.yaml from nmt.config.reference_yaml()"
    assert config_from_dict(yaml.safe_load(text)) == Config()


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


def _tiny_config(tmp_path: Path, run: str) -> Config:
    return tiny_dates_config(tmp_path, run, max_steps=12, valid_every=6, batch_size=400)


def test_training_is_deterministic_on_cpu(tmp_path, monkeypatch):
    monkeypatch.setenv("NMT_STATE_DIR", str(tmp_path / "state"))
    states = []
    for run in ("a", "b"):
        run_dir = nmt.train(_tiny_config(tmp_path, run))
        states.append(load_checkpoint(run_dir / "checkpoints" / "last.pt"))
    assert states[0]["progress"]["step"] == 12
    for name, tensor in states[0]["model"].items():
        assert torch.equal(tensor, states[1]["model"][name]), name
    assert states[0]["tokenizers"] == states[1]["tokenizers"]


def test_api_train_then_translate(tmp_path, monkeypatch):
    monkeypatch.setenv("NMT_STATE_DIR", str(tmp_path / "state"))
    run_dir = nmt.train(_tiny_config(tmp_path, "api"))
    for model in (run_dir, run_dir / "checkpoints" / "best.pt", None):  # None: the latest run
        tr = nmt.Translator.load(model)
        out = tr.translate(["3 May 1979", "", "12.03.1991"], beam=2)
        assert len(out) == 3 and out[1] == ""
    detailed = tr.search(["3 May 1979"], beam=3, n_best=2, attention=True)[0]
    assert len(detailed) == 2 and detailed[0].score >= detailed[1].score
    best = detailed[0]
    assert best.attention.shape == (len(best.tgt_pieces), len(best.src_pieces))
    assert torch.allclose(best.attention.sum(1), torch.ones(len(best.tgt_pieces)), atol=1e-5)
