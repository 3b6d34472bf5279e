"""Training end to end: determinism on the CPU and the Python API (nmt.train, then translate)."""

from pathlib import Path

import torch
from conftest import tiny_dates_config

import nmt
from nmt.config import Config
from nmt.rundir.checkpoint import load_checkpoint

ROOT = Path(__file__).resolve().parents[1]


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
    assert len(detailed) == 2 and detailed[0].search_score >= detailed[1].search_score
    best = detailed[0]
    assert best.attention.shape == (len(best.tgt_pieces), len(best.src_pieces))
    assert torch.allclose(best.attention.sum(1), torch.ones(len(best.tgt_pieces)), atol=1e-5)


def test_a_failure_to_draw_the_learning_curves_is_a_note_not_a_failed_training(tmp_path, monkeypatch):
    import nmt.training.job

    def broken(*args, **kwargs):
        raise ValueError("the backend\nfell over")

    monkeypatch.setattr(nmt.training.job, "learning_curves_png", broken)
    run_dir = nmt.train(_tiny_config(tmp_path, "run"))
    assert "learning curves not drawn: the backend fell over" in (run_dir / "train.log").read_text()
