"""Training: data and sentencepiece preparation, the optimisation loop, validation, checkpoints.

`train(config)` is the whole job behind `nmt train`: it reads the training data, trains (or
loads) the sentencepiece models, trains the model with validation every `valid_every` steps,
keeps the best and last checkpoints in the run directory, and finally scores the test split
with the best checkpoint and the decoding defaults.
"""

from __future__ import annotations

import contextlib
import math
import shutil
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel

from nmt.checkpoint import (CHECKPOINT_DIR, checkpoint_path, checkpoint_tokenizers, link_checkpoint, load_checkpoint,
                            remember_run, save_checkpoint)
from nmt.config import Config, TrainingConfig, config_to_dict, load_config, resolve_device, save_config
from nmt.data.batching import Batch, BatchSampler, sorted_batches
from nmt.data.corpus import read_parallel
from nmt.data.dates import ensure_dates_data
from nmt.data.tokenizer import Tokenizer, build_tokenizers, save_tokenizers
from nmt import distributed
from nmt.distributed import Processes
from nmt.errors import CheckpointError, ConfigError, DataError, Interrupted, MissingDependency
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


def prepare_data(cfg: Config, log: Log, tokenizers: tuple[Tokenizer, Tokenizer] | None = None
                 ) -> tuple[Tokenizer, Tokenizer, Split, Split | None]:
    """Tokenizers (trained here unless given), the length-filtered training split and the dev split (if any)."""
    d = cfg.data
    if not d.train:
        raise ConfigError("data.train: expected the prefix of the training files, got nothing")
    if d.generate == "dates":
        for prefix in {d.train, d.dev, d.test} - {""}:
            ensure_dates_data(Path(prefix).parent)
    src, tgt = read_parallel(d.train, d.src_lang, d.tgt_lang)
    t0 = time.time()
    src_tok, tgt_tok = tokenizers or build_tokenizers(cfg.tokenizer, src, tgt, cfg.seed)
    if tokenizers is None:
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


class TrainingLoss(torch.nn.Module):
    """The model with its training objective, one module for DistributedDataParallel to wrap.

    forward(src (B, S), src_lengths (B,), tgt_in (B, T), tgt_out (B, T)) -> the label-smoothed
    cross-entropy summed over the real target tokens (scalar, fp32), under autocast for bf16/fp16."""

    def __init__(self, model: Seq2Seq, label_smoothing: float, precision: str = "fp32"):
        super().__init__()
        self.model, self.label_smoothing, self.precision = model, label_smoothing, precision

    def forward(self, src: torch.Tensor, src_lengths: torch.Tensor, tgt_in: torch.Tensor,
                tgt_out: torch.Tensor) -> torch.Tensor:
        with runtime.autocast(src.device, self.precision):
            att = self.model.attentional_vectors(src, src_lengths, tgt_in)
            return output_loss(att, self.model.output, tgt_out, self.label_smoothing)


def training_loss(model: Seq2Seq, batch: Batch, label_smoothing: float, precision: str = "fp32") -> torch.Tensor:
    """The loss that training minimises: label-smoothed cross-entropy per real target token."""
    loss = TrainingLoss(model, label_smoothing, precision)
    return loss(batch.src, batch.src_lengths, batch.tgt_in, batch.tgt_out) / batch.n_tgt_tokens


class Trainer:
    """The optimisation loop with its validation, checkpoints and stopping rules.

    In distributed training (see nmt.distributed) every rank runs a Trainer; `procs` says which."""

    def __init__(self, cfg: Config, src_tok: Tokenizer, tgt_tok: Tokenizer, train: Split, dev: Split | None,
                 log: Log, device: torch.device, procs: Processes = Processes()):
        self.cfg, self.t, self.log, self.device, self.dev, self.procs = cfg, cfg.training, log, device, dev, procs
        self.src_tok, self.tgt_tok = src_tok, tgt_tok
        self.run_dir = Path(cfg.run_dir)
        self.sampler = BatchSampler(train.src_ids, train.tgt_ids, self.t.batch_size,
                                    self.t.batch_type == "tokens", cfg.seed)
        self.model = Seq2Seq(cfg.model, len(src_tok), len(tgt_tok)).to(device)
        self.loss = TrainingLoss(self.model, self.t.label_smoothing, self.t.precision)
        if procs.distributed:  # averages the gradients over the ranks during the backward pass
            self.loss = DistributedDataParallel(self.loss)  # (and gives every rank rank 0's weights)
            torch.manual_seed(cfg.seed + procs.rank)  # each rank its own dropout
        self.optimizer = self._optimizer()
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.t.precision == "fp16")  # fp16's loss scaling
        self.schedule = LRSchedule(self.t, self.optimizer)
        self.step, self.epoch, self.best, self.bad_validations = 0, 0, None, 0
        self.batches_done, self.last_valid = 0, -1  # of the current epoch; step of the last validation
        self.best_saved = None  # dev metric of checkpoints/best.pt
        self.scores: dict[str, float] = {}  # step -> dev metric (higher is better) of its checkpoint
        self.started, self.interrupted = time.time(), None

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

    def train_step(self, group: list[list[int]]) -> tuple[float, int]:
        """One optimizer step on W batches (lists of example indices), one per rank: this rank
        trains on group[rank]. Returns this rank's summed loss and the target tokens of all W.

        Each rank's summed loss is scaled by W / (tokens of all W batches): DDP averages the
        ranks' gradients, so the step follows the loss per target token of the W batches
        together, exactly as one process would on their union."""
        self.model.train()
        n_tokens = sum(self.sampler.target_tokens(indices) for indices in group)
        batch = self.sampler.batch(group[self.procs.rank]).to(self.device)
        loss = self.loss(batch.src, batch.src_lengths, batch.tgt_in, batch.tgt_out)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss * (self.procs.world_size / n_tokens)).backward()
        self.scaler.unscale_(self.optimizer)  # fp16: true gradients before clipping
        if self.t.clip_norm > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.t.clip_norm)
        self.lr = self.schedule.step(self.step + 1)
        self.scaler.step(self.optimizer)  # fp16: skipped when a gradient overflowed
        self.scaler.update()
        self.step += 1
        return loss.item(), n_tokens

    # --- validation ----------------------------------------------------------------------

    @torch.inference_mode()
    def dev_loss(self) -> float:
        """Cross-entropy per target token on the dev split (no label smoothing); each rank
        scores its share of the batches."""
        self.model.eval()
        total, tokens = 0.0, 0
        for batch in self.procs.shard(sorted_batches(self.dev.src_ids, self.dev.tgt_ids, self.cfg.decoding.batch_size)):
            batch = batch.to(self.device)
            att = self.model.attentional_vectors(batch.src, batch.src_lengths, batch.tgt_in)
            total += output_loss(att, self.model.output, batch.tgt_out).item()
            tokens += batch.n_tgt_tokens
        total, tokens = self.procs.all_sum(total, tokens)
        return total / max(1, tokens)

    def dev_translations(self) -> list[str]:
        """Greedy translations of the dev sources; each rank translates its share."""
        translator = Translator(self.model, self.src_tok, self.tgt_tok, self.cfg, self.device)
        return self.procs.unshard(self.procs.gather(translator.translate(self.procs.shard(self.dev.src), beam=1)))

    def validate(self, scheduled: bool = True) -> None:
        """Dev loss, perplexity and greedy BLEU; keep the best checkpoint; count patience.

        An unscheduled validation (the one at the end of a run that stops between two
        scheduled ones) keeps a better model as `best` but changes no training state (patience,
        the plateau schedule), so that stopping and resuming trains exactly as going on would."""
        t0 = time.time()
        loss = self.dev_loss()
        hyps = self.dev_translations()
        scores = score(hyps, self.dev.tgt)
        value = {"bleu": scores.bleu, "accuracy": scores.accuracy, "loss": loss}[self.t.valid_metric]
        sign = -1 if self.t.valid_metric == "loss" else 1
        improved = self.best is None or sign * value > sign * self.best
        new_best = self.best_saved is None or sign * value > sign * self.best_saved
        if new_best:
            self.best_saved = value
        if scheduled:
            self.best, self.bad_validations = (value, 0) if improved else (self.best, self.bad_validations + 1)
            self.schedule.validated(improved)
        self.scores[str(self.step)] = sign * value  # higher is better
        self.save(best=new_best)
        self.log.record(kind="valid", step=self.step, epoch=self.epoch, dev_loss=loss, dev_ppl=math.exp(min(loss, 50)),
                        dev_bleu=scores.bleu, dev_chrf=scores.chrf, dev_accuracy=scores.accuracy,
                        best=new_best, seconds=time.time() - self.started)
        self.log(f"valid step {self.step}: dev loss {loss:.3f}  ppl {math.exp(min(loss, 50)):.2f}  greedy "
                 f"{scores.line()}  ({time.time() - t0:.1f}s){'  *best*' if new_best else ''}")
        for src, hyp, ref in list(zip(self.dev.src, hyps, self.dev.tgt))[: self.t.show_examples]:
            self.log(f"    {src!r} -> {hyp!r} (ref {ref!r})")

    # --- checkpoints -----------------------------------------------------------------------

    def save(self, best: bool = False) -> None:
        """Write the whole training state as checkpoints/step-N.pt and point last.pt (and, if
        `best`, best.pt) at it; then keep only the training.keep_last newest and the
        training.keep_best best step files (last.pt and best.pt stay: they are hard links).

        Every rank calls it (the random states of all ranks are saved); rank 0 writes."""
        rng = self.procs.gather(self._random_state())
        if not self.procs.is_main:
            return
        path = checkpoint_path(self.run_dir, f"step-{self.step:08d}")
        tokenizers = {"src": self.src_tok.model_proto,
                      "tgt": None if self.tgt_tok is self.src_tok else self.tgt_tok.model_proto}
        save_checkpoint({
            "config": config_to_dict(self.cfg), "tokenizers": tokenizers, "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(), "schedule": self.schedule.state_dict(),
            "progress": {"step": self.step, "epoch": self.epoch, "best": self.best,
                         "bad_validations": self.bad_validations, "batches_done": self.batches_done,
                         "last_valid": self.last_valid, "best_saved": self.best_saved, "scores": self.scores,
                         "seconds": time.time() - self.started},
            "scaler": self.scaler.state_dict(),
            "rng": rng[0]["cpu"], "rng_ranks": rng,  # dropout's random numbers, of every rank
        }, path)
        link_checkpoint(path, checkpoint_path(self.run_dir, "last"))
        if best:
            link_checkpoint(path, checkpoint_path(self.run_dir, "best"))
        self._prune_step_files(path.parent)

    def _prune_step_files(self, folder: Path) -> None:
        """Delete the step-N.pt files that are neither among the keep_last newest nor the keep_best best."""
        files = {int(p.stem.removeprefix("step-")): p for p in folder.glob("step-*.pt")}
        newest = sorted(files)[-self.t.keep_last:]
        best = sorted((s for s in files if str(s) in self.scores), key=lambda s: -self.scores[str(s)])[: self.t.keep_best]
        for step in set(files) - set(newest) - set(best):
            files[step].unlink(missing_ok=True)

    def _random_state(self) -> dict:
        """This rank's random number generators (dropout): CPU, and CUDA when training on it."""
        cuda = torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None
        return {"cpu": torch.get_rng_state(), "cuda": cuda}

    def restore(self, state: dict) -> None:
        """Continue exactly where the checkpoint `state` left off (see `save`). A run resumed
        with another number of processes goes on from the same batch, with new dropout noise."""
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["schedule"])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        p = state["progress"]
        self.step, self.epoch, self.best, self.bad_validations = p["step"], p["epoch"], p["best"], p["bad_validations"]
        self.batches_done, self.last_valid, self.best_saved = p["batches_done"], p["last_valid"], p["best_saved"]
        self.scores = dict(p["scores"])
        self.started = time.time() - p["seconds"]
        ranks = state.get("rng_ranks") or [{"cpu": state["rng"], "cuda": None}]
        if len(ranks) == self.procs.world_size:
            torch.set_rng_state(ranks[self.procs.rank]["cpu"])
            if ranks[self.procs.rank]["cuda"] is not None and self.device.type == "cuda":
                torch.cuda.set_rng_state(ranks[self.procs.rank]["cuda"], self.device)
        else:
            torch.manual_seed(self.cfg.seed + self.procs.rank + 1000 * self.step)

    # --- the loop --------------------------------------------------------------------------

    def time_up(self) -> bool:
        """Whether training.max_minutes have passed (on this rank's clock)."""
        return bool(self.t.max_minutes) and time.time() - self.started >= 60 * self.t.max_minutes

    def stop_reason(self, time_up: bool) -> str | None:
        """Why training stops now, or None. `time_up`: max_minutes have passed on some rank."""
        t = self.t
        if t.max_steps and self.step >= t.max_steps:
            return f"reached training.max_steps ({t.max_steps})"
        if time_up:
            return f"reached training.max_minutes ({t.max_minutes:g})"
        if t.patience and self.bad_validations >= t.patience:
            return f"no improvement in {t.patience} validations (training.patience)"
        return None

    def run(self) -> None:
        """Train until a stopping rule fires; validate and save at the end."""
        n_params = sum(p.numel() for p in self.model.parameters())
        processes = f", {self.procs.world_size} processes" if self.procs.distributed else ""
        self.log(f"run {self.cfg.name} in {self.run_dir}: {n_params:,} parameters, device {self.device}{processes}, "
                 f"{torch.get_num_threads()} threads, {self.t.precision}")
        if not runtime.fast_precision(self.device, self.t.precision):
            self.log(f"warning: training.precision is {self.t.precision} but this CPU has no fast "
                     f"{self.t.precision} matrix products (oneDNN reports none): expect training far slower than fp32")
        reason = self.stop_reason(self.procs.all_sum(self.time_up())[0] > 0)
        self.window = [0.0, 0, time.time()]  # loss x tokens, tokens, start: for the progress line
        with self._stop_signals():
            while reason is None:
                if self.batches_done == 0:  # a new epoch
                    if self.t.max_epochs and self.epoch >= self.t.max_epochs:
                        reason = f"reached training.max_epochs ({self.t.max_epochs})"
                        break
                    self.epoch += 1
                reason = self._train_epoch()
        if self.dev is None:
            self.save(best=True)
        elif self.last_valid != self.step:
            self.validate(scheduled=False)  # it saves; a scheduled one at this step did already
        self.log(f"stopped after {self.step} steps, {self.epoch} epochs, "
                 f"{(time.time() - self.started) / 60:.1f} min: {reason}")

    def _train_epoch(self) -> str | None:
        """The rest of the current epoch (from batch `batches_done`), or until a stopping rule
        fires (its reason is returned). A stop signal saves `last` and raises Interrupted.

        A step takes the next W batches, one per rank; the last batches of an epoch that are
        fewer than W are left out (they are other batches in the next epoch's order)."""
        batches, W = self.sampler.epoch_batches(self.epoch), self.procs.world_size
        if len(batches) < W:
            raise DataError(f"{self.cfg.data.train}: {len(batches)} batches per epoch, fewer than the {W} "
                            "processes; lower training.batch_size or start fewer processes")
        while self.batches_done + W <= len(batches):
            loss, n_tokens = self.train_step(batches[self.batches_done : self.batches_done + W])
            self.batches_done += W
            if self.dev is not None and self.step % self.t.valid_every == 0:
                self.validate()
                self.last_valid = self.step
            # one message per step: the loss of all ranks, and whether any rank must stop
            loss, interrupted, time_up = self.procs.all_sum(loss, self.interrupted is not None, self.time_up())
            self._report(loss, n_tokens)
            if interrupted:
                self.save()
                error = Interrupted(f"{self.interrupted or 'a stop signal'} at step {self.step}: saved "
                                    f"{checkpoint_path(self.run_dir, 'last')}; continue with: nmt train {self.run_dir} --resume")
                error.shown_by_rank0 = not self.procs.is_main
                raise error
            reason = self.stop_reason(time_up > 0)
            if reason:
                return reason
        self.batches_done = 0
        return None

    def _report(self, loss_sum: float, n_tokens: int) -> None:
        """Progress line every 10 steps; a log line and a metrics record every log_every steps.
        loss_sum: the step's summed loss over its n_tokens target tokens."""
        w = self.window
        w[0], w[1] = w[0] + loss_sum, w[1] + n_tokens
        if self.step % 10 and self.step % self.t.log_every:
            return
        rate = w[1] / max(1e-9, time.time() - w[2])
        text = f"epoch {self.epoch} step {self.step} | loss {w[0] / w[1]:.3f} | {rate:,.0f} tgt tok/s | lr {self.lr:.2e}"
        self.log.progress(text, every=self.step % self.t.log_every == 0)
        if self.step % self.t.log_every == 0:
            self.log.record(kind="train", step=self.step, epoch=self.epoch, lr=self.lr, loss=w[0] / w[1],
                            tgt_tokens_per_s=rate)
            self.window = [0.0, 0, time.time()]

    @contextlib.contextmanager
    def _stop_signals(self):
        """SIGINT and SIGTERM ask the loop to save and stop after the current step; a second
        signal acts as it would without nmt (KeyboardInterrupt, or the default: exit)."""
        if threading.current_thread() is not threading.main_thread():  # signals go to the main thread only
            yield
            return
        previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

        def ask_to_stop(signum, frame):
            self.interrupted = signal.Signals(signum).name
            signal.signal(signum, previous[signum])

        for sig in previous:
            signal.signal(sig, ask_to_stop)
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def _start_run_dir(cfg: Config, overwrite: bool) -> Path:
    """Create the run directory; refuse to mix two runs in one unless told to overwrite."""
    run_dir = Path(cfg.run_dir)
    if any((run_dir / CHECKPOINT_DIR).glob("*.pt")) and not overwrite:
        raise ConfigError(f"run_dir: {run_dir} holds a run already; pass --resume to continue it, --overwrite "
                          "to replace it, or set another run_dir (--set run_dir=...)")
    # a replaced run, or an attempt that failed before its first checkpoint
    shutil.rmtree(run_dir / CHECKPOINT_DIR, ignore_errors=True)
    for name in RUN_FILES:
        (run_dir / name).unlink(missing_ok=True)
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


# what a resumed run must share with the checkpoint; training limits, schedule and decoding may change
RESUME_KEYS = {"": ("seed",), "data": ("src_lang", "tgt_lang", "train", "generate", "max_src_length", "max_tgt_length"),
               "tokenizer": None, "model": None, "training": ("batch_size", "batch_type", "optimizer", "precision")}


RESUME_PROGRESS = {"step", "epoch", "batches_done", "last_valid", "best_saved", "scores", "seconds"}


def _resume_state(cfg: Config) -> dict:
    """The run's last checkpoint, after checking that `cfg` describes the same training."""
    path = checkpoint_path(cfg.run_dir, "last")
    if not path.is_file():
        raise ConfigError(f"run_dir: {cfg.run_dir} holds no checkpoints/last.pt to resume from")
    state = load_checkpoint(path)
    if "rng" not in state or not RESUME_PROGRESS <= set(state.get("progress", {})):
        raise CheckpointError(f"{path}: written by an nmt that could not resume runs; it translates, but cannot "
                              "continue training (start a new run)")
    for stale in path.parent.glob(".*.tmp"):  # a write that a kill interrupted (the old file is whole)
        stale.unlink(missing_ok=True)
    new, old = config_to_dict(cfg), state["config"]
    for section, keys in RESUME_KEYS.items():
        a, b = (new, old) if not section else (new[section], old[section])
        for key in keys or a:
            if a.get(key) != b.get(key):
                name = f"{section}.{key}" if section else key
                raise ConfigError(f"{name}: the run in {cfg.run_dir} was trained with {b.get(key)!r}, "
                                  f"this config says {a.get(key)!r}; a resumed run may change only limits and schedules")
    return state


def train(config: Config | str | Path, overrides: list[str] | tuple[str, ...] = (), overwrite: bool = False,
          resume: bool = False) -> Path:
    """Train a model from a Config (or a YAML path, or a run directory, plus overrides); returns the
    run directory. `resume` continues the run in run_dir from its last checkpoint, exactly: model,
    optimizer, schedule, random state, data order and position, early-stopping state.

    Under torchrun every process calls it; they train together (see nmt.distributed)."""
    procs, joined = distributed.start()
    try:
        cfg, state = procs.on_main(_open_run, config, overrides, overwrite, resume)
        run_dir = Path(cfg.run_dir)
        device = procs.device(resolve_device(cfg.device))
        log = Log(run_dir if procs.is_main else None)
        try:
            torch.manual_seed(cfg.seed)
            runtime.configure(cfg.training.num_threads)
            src_tok, tgt_tok, train_split, dev = procs.on_main(_prepare_run, cfg, log, state)
            trainer = Trainer(cfg, src_tok, tgt_tok, train_split, dev, log, device, procs)
            if state is not None:
                trainer.restore(state)
                log(f"resumed from {checkpoint_path(run_dir, 'last')}: step {trainer.step}, epoch {trainer.epoch}")
            trainer.run()
            joined = distributed.finish(joined, together=True)  # the rest is rank 0's alone
            if procs.is_main:
                remember_run(run_dir)
                if cfg.data.test:
                    test_report(run_dir, cfg, log)
                draw_learning_curves(run_dir, log)
        finally:
            log.close()
    finally:
        distributed.finish(joined)
    return run_dir


def _open_run(config: Config | str | Path, overrides: list[str] | tuple[str, ...], overwrite: bool,
              resume: bool) -> tuple[Config, dict | None]:
    """The config, and the state to resume from (or None after preparing a fresh run directory)."""
    if resume and overwrite:
        raise ConfigError("--resume and --overwrite: choose one")
    if not isinstance(config, Config) and Path(config).is_dir():
        config = Path(config) / "config.yaml"  # a run directory: its resolved config
    cfg = config if isinstance(config, Config) else load_config(config, overrides)
    runtime.check_precision(resolve_device(cfg.device), cfg.training.precision, "training.precision")  # errors
    # before any change to the run directory
    if resume:
        return cfg, _resume_state(cfg)
    _start_run_dir(cfg, overwrite)
    return cfg, None


def _prepare_run(cfg: Config, log: Log, state: dict | None) -> tuple[Tokenizer, Tokenizer, Split, Split | None]:
    """Data and tokenizers (a resumed run's own), with the resolved config and the sentencepiece
    models written into the run directory."""
    tokenizers = None if state is None else checkpoint_tokenizers(state)
    src_tok, tgt_tok, train_split, dev = prepare_data(cfg, log, tokenizers)
    save_config(cfg, Path(cfg.run_dir) / "config.yaml")
    save_tokenizers(src_tok, tgt_tok, Path(cfg.run_dir))
    return src_tok, tgt_tok, train_split, dev


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
