"""Mixed precision: bf16 autocast training on the CPU (end to end, exact resume), the fp16
path's loss scaling (run on the CPU with fp32 products: oneDNN has no fp16 LSTM for it), and
the CUDA parts, which run only where there is a GPU."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import tiny_dates_config

import nmt
from nmt.config import Config
from nmt.data.batching import make_batch
from nmt.data.prepare import prepare_data
from nmt.errors import ConfigError
from nmt.rundir.checkpoint import load_checkpoint
from nmt.rundir.log import Log
from nmt.training.trainer import Trainer

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def build_trainer(cfg: Config, device: str = "cpu") -> Trainer:
    Path(cfg.run_dir).mkdir(parents=True, exist_ok=True)
    log = Log(None)
    src_tok, tgt_tok, train, dev = prepare_data(cfg, log)
    torch.manual_seed(cfg.seed)
    return Trainer(cfg, src_tok, tgt_tok, train, dev, log, torch.device(device))


def weights(trainer: Trainer) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in trainer.model.state_dict().items()}


def test_bf16_training_learns_and_resumes_bitwise(tmp_path):
    """training.precision: bf16 end to end on the CPU: the loss falls, and 4 + 4 resumed
    steps give exactly the weights of 8 straight."""

    def config(run: str, steps: int) -> Config:
        return tiny_dates_config(
            tmp_path,
            run,
            dropout=0.3,
            batch_size=300,
            valid_every=4,
            log_every=1,
            precision="bf16",
            max_steps=steps,
            lr=0.01,
        )

    whole = nmt.train(config("whole", 8))
    nmt.train(config("parts", 4))
    parts = nmt.train(config("parts", 8), resume=True)
    a, b = (load_checkpoint(run / "checkpoints" / "last.pt") for run in (whole, parts))
    for name, tensor in a["model"].items():
        assert tensor.dtype == torch.float32  # master weights stay fp32
        assert torch.equal(tensor, b["model"][name]), name
    log = (whole / "train.log").read_text()
    assert "bf16" in log
    losses = [r for r in (whole / "metrics.jsonl").read_text().splitlines() if '"train"' in r]
    first, last = (float(r.split('"loss": ')[1].split(",")[0]) for r in (losses[0], losses[-1]))
    assert last < first


def test_fp16_is_refused_on_the_cpu_before_the_run_directory_is_touched(tmp_path):
    cfg = tiny_dates_config(tmp_path, "run", precision="fp16")
    cfg.device = "cpu"
    with pytest.raises(ConfigError, match=r"^training.precision: fp16 is for GPUs"):
        nmt.train(cfg)
    assert not Path(cfg.run_dir).exists()


def test_loss_scaling_unscales_before_clipping_and_skips_an_overflowing_step(tmp_path):
    """The fp16 path's GradScaler, on fp32 products: a scaled step equals the unscaled step
    (gradients are unscaled before clipping at the global norm); a scale so large that the
    gradients overflow skips the update and halves the scale; the scale is saved and resumed."""
    cfg = tiny_dates_config(tmp_path, "run", dropout=0.0, batch_size=300, clip_norm=0.5)
    plain = build_trainer(cfg)
    scaled = build_trainer(cfg)
    scaled.scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    batches = plain.sampler.epoch_batches(1)[:2]
    for indices in batches:
        plain.train_step([indices])
        scaled.train_step([indices])
    for name, value in weights(plain).items():
        assert torch.allclose(value, scaled.model.state_dict()[name], rtol=1e-5, atol=1e-7), name

    before = weights(scaled)
    overflow = scaled.model.output.bias.register_hook(lambda g: g * float("inf"))  # as an fp16 gradient would
    scaled.train_step([batches[0]])
    overflow.remove()
    assert all(torch.equal(v, scaled.model.state_dict()[k]) for k, v in before.items())  # the update was skipped
    assert scaled.scaler.get_scale() == 512.0
    scaled.save()
    resumed = build_trainer(cfg)
    resumed.scaler = torch.amp.GradScaler("cpu")
    resumed.restore(load_checkpoint(Path(cfg.run_dir) / "checkpoints" / "last.pt"))
    assert resumed.scaler.get_scale() == 512.0


@needs_cuda
@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_training_on_cuda_learns_in_every_precision(tmp_path, precision):
    cfg = tiny_dates_config(tmp_path, "run", dropout=0.0, batch_size=300, precision=precision, lr=0.01)
    cfg.device = "cuda"
    trainer = build_trainer(cfg, "cuda")
    batches = trainer.sampler.epoch_batches(1)
    losses = [trainer.train_step([b])[0] / trainer.sampler.target_tokens(b) for b in batches[:12]]
    assert all(torch.isfinite(torch.tensor(losses))) and losses[-1] < losses[0]
    if precision == "fp16":
        assert trainer.scaler.is_enabled() and trainer.scaler.get_scale() > 0


@needs_cuda
def test_batches_reach_the_gpu_through_pinned_memory():
    batch = make_batch([[5, 6, 7], [8]], [[9, 10], [11, 12, 13]], [0, 1]).to(torch.device("cuda"))
    assert batch.src.is_cuda and batch.tgt_in.is_cuda and batch.tgt_out.is_cuda
    assert not batch.src_lengths.is_cuda  # lengths stay on the host (no synchronisation to read them)
    assert batch.src.tolist() == [[5, 6, 7, 3], [8, 3, 0, 0]]


@needs_cuda
def test_cuda_decoding_in_half_precision_agrees_with_fp32(tmp_path):
    run = nmt.train(tiny_dates_config(tmp_path, "run", batch_size=300, max_steps=150, lr=0.01))
    lines = ["3 May 1979", "12/03/1991", "February 3, 2001", "18-Jul-2046"] * 8
    out = {
        p: nmt.Translator.load(run, device="cuda", precision=p).translate(lines, beam=3)
        for p in ("fp32", "bf16", "fp16")
    }
    for p in ("bf16", "fp16"):
        assert len(out[p]) == len(lines)
        assert sum(a == b for a, b in zip(out["fp32"], out[p])) >= 0.75 * len(lines), p


def test_a_run_stored_with_fp16_decoding_translates_in_fp32_on_the_cpu(tmp_path):
    """decoding.precision: fp16 is a GPU's setting; on the CPU the run validates, scores its test
    split and translates in fp32 (an explicit --precision fp16 there is an error, see test_cli)."""
    cfg = tiny_dates_config(tmp_path, "run", max_steps=2, valid_every=1)
    cfg.decoding.precision, cfg.device = "fp16", "cpu"
    run = nmt.train(cfg)
    translator = nmt.Translator.load(run, device="cpu")
    assert translator.cfg.decoding.precision == "fp16" and translator.precision == "fp32"
    assert len(translator.translate(["3 May 1979", ""])) == 2
