"""Validation during training decodes with the weights of its step: the real trainer (its own
optimizer, fused Adam where torch has it), the real dev set, compared with a model built
afresh from the same weights; and end to end, the dev BLEU training logs against `nmt
evaluate` of the same step's checkpoint, on Multi30k and under torchrun (tests/test_multi30k.py,
tests/test_distributed.py hold those two)."""

from __future__ import annotations

from pathlib import Path

import torch
from conftest import tiny_dates_config

from nmt.config import Config
from nmt.data.prepare import prepare_data
from nmt.model import build_model
from nmt.rundir.log import Log
from nmt.training.trainer import Trainer
from nmt.translate import Translator


def build_trainer(cfg: Config) -> Trainer:
    Path(cfg.run_dir).mkdir(parents=True, exist_ok=True)
    log = Log(None)
    src_tok, tgt_tok, train, dev = prepare_data(cfg, log)
    torch.manual_seed(cfg.seed)
    return Trainer(cfg, src_tok, tgt_tok, train, dev, log, torch.device("cpu"))


def fresh_translations(trainer: Trainer) -> list[str]:
    """Greedy translations of the dev sources by a model built afresh from the trainer's weights."""
    model = build_model(trainer.cfg.model, len(trainer.src_tok), len(trainer.tgt_tok))
    model.load_state_dict(trainer.model.state_dict())
    translator = Translator(model, trainer.src_tok, trainer.tgt_tok, trainer.cfg, trainer.device)
    return translator.translate(trainer.dev.src, beam=1)


def test_every_validation_translates_with_the_weights_of_its_step(tmp_path):
    """Steps, a validation, more steps, a second validation: each validation's greedy
    translations are those of a fresh model loaded with that step's weights. (The first
    validation's search products once stayed in use: fused Adam leaves the version counter
    they were keyed on as it is.)"""
    cfg = tiny_dates_config(tmp_path, "run", batch_size=300, lr=0.01)
    trainer = build_trainer(cfg)
    batches = list(trainer.sampler.epoch_batches(1))
    seen = []
    for first_step in (0, 6):
        for indices in batches[first_step : first_step + 6]:
            trainer.train_step([indices])
        validated = trainer.dev_translations()
        assert validated == fresh_translations(trainer), f"validation after step {trainer.progress.step}"
        seen.append(validated)
    assert seen[0] != seen[1]  # the model changed between the two: the comparison means something
