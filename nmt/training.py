"""Training: data and sentencepiece preparation, the optimisation loop, validation, checkpoints.

`train(config)` is the whole job behind `nmt train`: it reads the training data, trains (or
loads) the sentencepiece models, trains the model with validation every `valid_every` steps,
keeps the best and last checkpoints in the run directory, and finally scores the test split
with the best checkpoint and the decoding defaults.
"""

from __future__ import annotations

import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from nmt.checkpoint import CHECKPOINT_DIR, checkpoint_path, remember_run, save_checkpoint
from nmt.config import Config, TrainingConfig, config_to_dict, load_config, resolve_device, save_config
from nmt.data.batching import Batch, BatchSampler, sorted_batches
from nmt.data.corpus import read_parallel
from nmt.data.dates import ensure_dates_data
from nmt.data.tokenizer import Tokenizer, build_tokenizers, save_tokenizers
from nmt.errors import ConfigError, DataError, MissingDependency
from nmt.evaluate import evaluate_split, score
from nmt.log import Log
from nmt.loss import output_loss
from nmt import runtime
from nmt.model import Seq2Seq
from nmt.plots import learning_curves_png
from nmt.translate import Translator

RUN_FILES = ("config.yaml", "metrics.jsonl", "train.log", "spm.model", "spm.src.model", "spm.tgt.model", "test.hyp")


@dataclass
class Split:
    """A split as text and as subword ids."""

    src: list[str]
    tgt: list[str]
    src_ids: list[list[int]]
    tgt_ids: list[list[int]]


def _encode(prefix: str, cfg: Config, src_tok: Tokenizer, tgt_tok: Tokenizer) -> Split:
    src, tgt = read_parallel(prefix, cfg.data.src_lang, cfg.data.tgt_lang)
    return Split(src, tgt, src_tok.encode(src), tgt_tok.encode(tgt))


def prepare_data(cfg: Config, log: Log) -> tuple[Tokenizer, Tokenizer, Split, Split | None]:
    """Tokenizers, the length-filtered training split and the dev split (if any)."""
    d = cfg.data
    if not d.train:
        raise ConfigError("data.train: expected the prefix of the training files, got nothing")
    if d.generate == "dates":
        for prefix in {d.train, d.dev, d.test} - {""}:
            ensure_dates_data(Path(prefix).parent)
    src, tgt = read_parallel(d.train, d.src_lang, d.tgt_lang)
    t0 = time.time()
    src_tok, tgt_tok = build_tokenizers(cfg.tokenizer, src, tgt, cfg.seed)
    log(f"sentencepiece: {len(src_tok)} source / {len(tgt_tok)} target pieces ({time.time() - t0:.1f}s)")
    src_ids, tgt_ids = src_tok.encode(src), tgt_tok.encode(tgt)
    keep = [i for i in range(len(src)) if 0 < len(src_ids[i]) <= d.max_src_length
            and 0 < len(tgt_ids[i]) <= d.max_tgt_length]
    if not keep:
        raise DataError(f"{d.train}: no training pair is non-empty and within data.max_src_length/max_tgt_length")
    train = Split([src[i] for i in keep], [tgt[i] for i in keep], [src_ids[i] for i in keep], [tgt_ids[i] for i in keep])
    log(f"train: {len(keep):,} pairs ({len(src) - len(keep):,} empty or too long dropped)")
    dev = _encode(d.dev, cfg, src_tok, tgt_tok) if d.dev else None
    if dev is not None:
        log(f"dev: {len(dev.src):,} pairs")
    return src_tok, tgt_tok, train, dev


class LRSchedule:
    """lr = base * warmup(step) * decay(step) * plateau_scale, never below min_lr.

    warmup: linear from 0 over warmup_steps. decay: `inverse_sqrt` sqrt(warmup/step) after
    warmup; `linear` to 0 at max_steps. `plateau` multiplies the scale by plateau_factor after
    plateau_patience validations without improvement.
    """

    def __init__(self, t: TrainingConfig, optimizer: torch.optim.Optimizer):
        if t.lr_schedule == "linear" and not t.max_steps:
            raise ConfigError("training.lr_schedule: linear decays to 0 at training.max_steps; set max_steps")
        self.t, self.optimizer, self.scale, self.bad = t, optimizer, 1.0, 0

    def factor(self, step: int) -> float:
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


def training_loss(model: Seq2Seq, batch: Batch, label_smoothing: float, precision: str = "fp32") -> torch.Tensor:
    """The loss that training minimises: label-smoothed cross-entropy per real target token."""
    with torch.autocast(batch.src.device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
        att = model.attentional_vectors(batch.src, batch.src_lengths, batch.tgt_in)
        return output_loss(att, model.output, batch.tgt_out, label_smoothing) / batch.n_tgt_tokens


class Trainer:
    """The optimisation loop with its validation, checkpoints and stopping rules."""

    def __init__(self, cfg: Config, src_tok: Tokenizer, tgt_tok: Tokenizer, train: Split, dev: Split | None,
                 log: Log, device: torch.device):
        self.cfg, self.t, self.log, self.device, self.dev = cfg, cfg.training, log, device, dev
        self.src_tok, self.tgt_tok = src_tok, tgt_tok
        self.run_dir = Path(cfg.run_dir)
        self.sampler = BatchSampler(train.src_ids, train.tgt_ids, self.t.batch_size,
                                    self.t.batch_type == "tokens", cfg.seed)
        self.model = Seq2Seq(cfg.model, len(src_tok), len(tgt_tok)).to(device)
        self.optimizer = self._optimizer()
        self.schedule = LRSchedule(self.t, self.optimizer)
        self.step, self.epoch, self.best, self.bad_validations = 0, 0, None, 0
        self.started = time.time()

    def _optimizer(self) -> torch.optim.Optimizer:
        """Adam or AdamW; the fused kernel (one pass over all parameters, 3x faster on the CPU)
        where this torch and device have it."""
        opt = torch.optim.AdamW if self.t.optimizer == "adamw" else torch.optim.Adam
        params = list(self.model.parameters())
        try:
            return opt(params, lr=self.t.lr, weight_decay=self.t.weight_decay, fused=True)
        except (RuntimeError, TypeError, ValueError):
            return opt(params, lr=self.t.lr, weight_decay=self.t.weight_decay)

    # --- one step ------------------------------------------------------------------------

    def train_step(self, indices: list[int]) -> tuple[float, int]:
        """Forward, backward and update on one batch; returns (loss per token, target tokens)."""
        self.model.train()
        batch = self.sampler.batch(indices).to(self.device)
        n_tokens = batch.n_tgt_tokens
        loss = training_loss(self.model, batch, self.t.label_smoothing, self.t.precision)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.t.clip_norm > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.t.clip_norm)
        self.lr = self.schedule.step(self.step + 1)
        self.optimizer.step()
        self.step += 1
        return loss.item(), n_tokens

    # --- validation ----------------------------------------------------------------------

    @torch.inference_mode()
    def dev_loss(self) -> float:
        """Cross-entropy per target token on the dev split (no label smoothing)."""
        self.model.eval()
        total, tokens = 0.0, 0
        for batch in sorted_batches(self.dev.src_ids, self.dev.tgt_ids, self.cfg.decoding.batch_size):
            batch = batch.to(self.device)
            att = self.model.attentional_vectors(batch.src, batch.src_lengths, batch.tgt_in)
            total += output_loss(att, self.model.output, batch.tgt_out).item()
            tokens += batch.n_tgt_tokens
        return total / max(1, tokens)

    def validate(self) -> None:
        """Dev loss, perplexity and greedy BLEU; keep the best checkpoint; count patience."""
        t0 = time.time()
        loss = self.dev_loss()
        hyps = Translator(self.model, self.src_tok, self.tgt_tok, self.cfg, self.device).translate(self.dev.src, beam=1)
        scores = score(hyps, self.dev.tgt)
        value = {"bleu": scores.bleu, "accuracy": scores.accuracy, "loss": loss}[self.t.valid_metric]
        sign = -1 if self.t.valid_metric == "loss" else 1
        improved = self.best is None or sign * value > sign * self.best
        if improved:
            self.best, self.bad_validations = value, 0
            self.save("best")
        else:
            self.bad_validations += 1
        self.schedule.validated(improved)
        self.save("last")
        self.log.record(kind="valid", step=self.step, epoch=self.epoch, dev_loss=loss, dev_ppl=math.exp(min(loss, 50)),
                        dev_bleu=scores.bleu, dev_chrf=scores.chrf, dev_accuracy=scores.accuracy,
                        best=improved, seconds=time.time() - self.started)
        self.log(f"valid step {self.step}: dev loss {loss:.3f}  ppl {math.exp(min(loss, 50)):.2f}  greedy "
                 f"{scores.line()}  ({time.time() - t0:.1f}s){'  *best*' if improved else ''}")
        for src, hyp, ref in list(zip(self.dev.src, hyps, self.dev.tgt))[: self.t.show_examples]:
            self.log(f"    {src!r} -> {hyp!r} (ref {ref!r})")

    # --- checkpoints -----------------------------------------------------------------------

    def save(self, name: str) -> None:
        tokenizers = {"src": self.src_tok.model_proto,
                      "tgt": None if self.tgt_tok is self.src_tok else self.tgt_tok.model_proto}
        save_checkpoint({
            "config": config_to_dict(self.cfg), "tokenizers": tokenizers, "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(), "schedule": self.schedule.state_dict(),
            "progress": {"step": self.step, "epoch": self.epoch, "best": self.best,
                         "bad_validations": self.bad_validations},
        }, checkpoint_path(self.run_dir, name))

    # --- the loop --------------------------------------------------------------------------

    def stop_reason(self) -> str | None:
        t = self.t
        if t.max_steps and self.step >= t.max_steps:
            return f"reached training.max_steps ({t.max_steps})"
        if t.max_minutes and time.time() - self.started >= 60 * t.max_minutes:
            return f"reached training.max_minutes ({t.max_minutes:g})"
        if t.patience and self.bad_validations >= t.patience:
            return f"no improvement in {t.patience} validations (training.patience)"
        return None

    def run(self) -> None:
        """Train until a stopping rule fires; validate and save at the end."""
        n_params = sum(p.numel() for p in self.model.parameters())
        self.log(f"run {self.cfg.name} in {self.run_dir}: {n_params:,} parameters, device {self.device}, "
                 f"{torch.get_num_threads()} threads, {self.t.precision}")
        if self.t.precision == "bf16" and not runtime.fast_bf16(self.device):
            self.log("warning: training.precision is bf16 but this CPU has no fast bf16 matrix products "
                     "(oneDNN reports none): expect training far slower than fp32")
        reason, last_valid, window_loss, window_tokens, window_start = None, -1, 0.0, 0, time.time()
        while reason is None:
            if self.t.max_epochs and self.epoch >= self.t.max_epochs:
                reason = f"reached training.max_epochs ({self.t.max_epochs})"
                break
            self.epoch += 1
            for indices in self.sampler.epoch_batches(self.epoch):
                loss, n_tokens = self.train_step(indices)
                window_loss, window_tokens = window_loss + loss * n_tokens, window_tokens + n_tokens
                if self.step % 10 == 0 or self.step % self.t.log_every == 0:
                    rate = window_tokens / max(1e-9, time.time() - window_start)
                    text = (f"epoch {self.epoch} step {self.step} | loss {window_loss / window_tokens:.3f} | "
                            f"{rate:,.0f} tgt tok/s | lr {self.lr:.2e}")
                    self.log.progress(text, every=self.step % self.t.log_every == 0)
                    if self.step % self.t.log_every == 0:
                        self.log.record(kind="train", step=self.step, epoch=self.epoch, lr=self.lr,
                                        loss=window_loss / window_tokens, tgt_tokens_per_s=rate)
                        window_loss, window_tokens, window_start = 0.0, 0, time.time()
                if self.dev is not None and self.step % self.t.valid_every == 0:
                    self.validate()
                    last_valid = self.step
                reason = self.stop_reason()
                if reason:
                    break
        if self.dev is not None and last_valid != self.step:
            self.validate()
        if self.dev is None:
            self.save("best")
        self.save("last")
        self.log(f"stopped after {self.step} steps, {self.epoch} epochs, "
                 f"{(time.time() - self.started) / 60:.1f} min: {reason}")


def _start_run_dir(cfg: Config, overwrite: bool) -> Path:
    """Create the run directory; refuse to mix two runs in one unless told to overwrite."""
    run_dir = Path(cfg.run_dir)
    if any((run_dir / CHECKPOINT_DIR).glob("*.pt")) and not overwrite:
        raise ConfigError(f"run_dir: {run_dir} holds a run already; pass --overwrite to replace it "
                          "or set another run_dir (--set run_dir=...)")
    # a replaced run, or an attempt that failed before its first checkpoint
    shutil.rmtree(run_dir / CHECKPOINT_DIR, ignore_errors=True)
    for name in RUN_FILES:
        (run_dir / name).unlink(missing_ok=True)
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


def train(config: Config | str | Path, overrides: list[str] | tuple[str, ...] = (), overwrite: bool = False) -> Path:
    """Train a model from a Config (or a YAML path plus overrides); returns the run directory."""
    cfg = config if isinstance(config, Config) else load_config(config, overrides)
    device = resolve_device(cfg.device)
    run_dir = _start_run_dir(cfg, overwrite)
    log = Log(run_dir)
    try:
        torch.manual_seed(cfg.seed)
        runtime.configure(cfg.training.num_threads)
        src_tok, tgt_tok, train_split, dev = prepare_data(cfg, log)
        save_config(cfg, run_dir / "config.yaml")
        save_tokenizers(src_tok, tgt_tok, run_dir)
        Trainer(cfg, src_tok, tgt_tok, train_split, dev, log, device).run()
        remember_run(run_dir)
        if cfg.data.test:
            test_report(run_dir, cfg, log)
        draw_learning_curves(run_dir, log)
    finally:
        log.close()
    return run_dir


def test_report(run_dir: Path, cfg: Config, log: Log) -> None:
    """Score the test split with the best checkpoint and the decoding defaults; show examples."""
    translator = Translator.load(run_dir)
    d = cfg.decoding
    t0 = time.time()
    scores, src, refs, hyps = evaluate_split(translator, cfg.data.test, run_dir / "test.hyp")
    seconds = time.time() - t0
    log(f"test ({cfg.data.test}, beam {d.beam_size}, alpha {d.alpha:g}, {len(src)} sentences, "
        f"{len(src) / seconds:.0f} sent/s): {scores.line()}")
    log(f"    {scores.bleu_signature}")
    for s, h, r in list(zip(src, hyps, refs))[: max(5, cfg.training.show_examples)]:
        log(f"    {s}  ->  {h}{'' if h.strip() == r.strip() else f'   (reference: {r})'}")
    log.record(kind="test", bleu=scores.bleu, chrf=scores.chrf, accuracy=scores.accuracy,
               signature=scores.bleu_signature, beam=d.beam_size, alpha=d.alpha)


def draw_learning_curves(run_dir: Path, log: Log) -> None:
    """RUN_DIR/learning_curves.png, or a note when matplotlib is not installed."""
    try:
        log(f"learning curves: {learning_curves_png(run_dir)}")
    except MissingDependency as e:
        log(f"learning curves not drawn: {e}")
