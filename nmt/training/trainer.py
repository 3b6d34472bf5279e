"""Training: the optimisation loop, validation, checkpoints and stopping rules (`Trainer`).

The whole job behind `nmt train` (run directory, resume, test report) is nmt.training.job; the
data it trains on comes from nmt.data.prepare, the learning-rate schedule from
nmt.training.schedule, where it stands from nmt.training.state.
"""

from __future__ import annotations

import contextlib
import math
import shlex
import signal
import threading
import time
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel

from nmt import runtime
from nmt.config import Config, config_to_dict
from nmt.data.batching import BatchSampler, PairCorpus, sorted_batches
from nmt.data.prepare import Split
from nmt.data.sampling import SampledEpochs
from nmt.data.tokenizer import Tokenizer
from nmt.errors import CheckpointError, DataError, Interrupted
from nmt.evaluation.metrics import corpus_metrics
from nmt.model import build_model
from nmt.rundir.checkpoint import save_step
from nmt.rundir.contents import model_contents, rank_random_states, training_contents
from nmt.rundir.layout import checkpoint_path
from nmt.rundir.log import Log
from nmt.training.distributed import Processes
from nmt.training.finetune import Parent, freeze, start_from
from nmt.training.objective import TrainingLoss
from nmt.training.schedule import LRSchedule
from nmt.training.state import Progress
from nmt.translate import Translator


class Trainer:
    """The optimisation loop with its validation, checkpoints and stopping rules; where it
    stands is `progress` (see Progress).

    In distributed training (see nmt.training.distributed) every rank runs a Trainer; `procs` says which."""

    def __init__(
        self,
        cfg: Config,
        src_tok: Tokenizer,
        tgt_tok: Tokenizer,
        train: PairCorpus,
        dev: Split | None,
        log: Log,
        device: torch.device,
        procs: Processes = Processes(),
        parent: Parent | None = None,
    ):
        self.cfg, self.t, self.log, self.device, self.dev, self.procs = cfg, cfg.training, log, device, dev, procs
        self.src_tok, self.tgt_tok = src_tok, tgt_tok
        self.run_dir = Path(cfg.run_dir)
        self.sampler = self._batches_of(train)
        # subword regularisation: each epoch its own segmentation of the pairs (rank 0 makes them)
        sampling = cfg.tokenizer.sampling.alpha > 0
        self.segmentations = SampledEpochs(cfg, (src_tok, tgt_tok), train, log) if sampling else None
        self.model = build_model(cfg.model, len(src_tok), len(tgt_tok))
        if parent is not None:  # fine-tuning: the parent's weights, and nothing else of its training
            for note in start_from(self.model, parent, src_tok, tgt_tok, cfg.tokenizer.remap):
                log(note)
            log(f"fine-tuning from {parent.checkpoint} (step {parent.step}): a fresh optimizer, schedule and patience")
        freeze(self.model, self.t.freeze)
        self.model.to(device)
        self.loss = TrainingLoss(self.model, self.t.label_smoothing, self.t.precision)
        if procs.distributed:  # averages the gradients over the ranks during the backward pass
            self.loss = DistributedDataParallel(self.loss)  # (and gives every rank rank 0's weights)
            torch.manual_seed(cfg.seed + procs.rank)  # each rank its own dropout
        self.optimizer = self._optimizer()
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.t.precision == "fp16")  # fp16's loss scaling
        self.schedule = LRSchedule(self.t, self.optimizer)
        self.progress, self.interrupted = Progress(), None

    def _batches_of(self, corpus: PairCorpus) -> BatchSampler:
        return BatchSampler(corpus, self.t.batch_size, self.t.batch_type == "tokens", self.cfg.seed)

    def _optimizer(self) -> torch.optim.Optimizer:
        """Adam or AdamW; the fused kernel (one pass over all parameters instead of a few operations per
        tensor) where this torch and device have it."""
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
        self.lr = self.schedule.step(self.progress.step + 1)
        self.scaler.step(self.optimizer)  # fp16: skipped when a gradient overflowed
        self.scaler.update()
        self.progress.step += 1
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
            features = self.model.features(batch.src, batch.src_lengths, batch.tgt_in)
            total += self.model.output_loss(features, batch.tgt_out).item()
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
        scheduled ones) keeps a better model as checkpoints/best.pt (progress.best_saved) but
        changes no training state (progress.best, patience, the plateau schedule), so that
        stopping and resuming trains exactly as going on would."""
        t0, p = time.time(), self.progress
        loss = self.dev_loss()
        hyps = self.dev_translations()
        metrics = corpus_metrics(hyps, self.dev.tgt)
        value = {"bleu": metrics.bleu, "accuracy": metrics.accuracy, "loss": loss}[self.t.valid_metric]
        sign = -1 if self.t.valid_metric == "loss" else 1
        improved = p.best is None or sign * value > sign * p.best
        new_best = p.best_saved is None or sign * value > sign * p.best_saved
        if new_best:
            p.best_saved = value
        if scheduled:
            p.best, p.bad_validations = (value, 0) if improved else (p.best, p.bad_validations + 1)
            self.schedule.validated(improved)
        p.dev_metrics[str(p.step)] = sign * value  # higher is better
        self.save(best=new_best)
        self.log.record(
            kind="valid",
            step=p.step,
            epoch=p.epoch,
            dev_loss=loss,
            dev_ppl=math.exp(min(loss, 50)),
            dev_bleu=metrics.bleu,
            dev_chrf=metrics.chrf,
            dev_accuracy=metrics.accuracy,
            best=new_best,
            seconds=time.time() - p.started,
        )
        self.log(
            f"valid step {p.step}: dev loss {loss:.3f}  ppl {math.exp(min(loss, 50)):.2f}  greedy "
            f"{metrics.line()}  ({time.time() - t0:.1f}s){'  *best*' if new_best else ''}"
        )
        for src, hyp, ref in list(zip(self.dev.src, hyps, self.dev.tgt))[: self.t.show_examples]:
            self.log(f"    {src!r} -> {hyp!r} (ref {ref!r})")

    # --- checkpoints -----------------------------------------------------------------------

    def save(self, best: bool = False) -> None:
        """Write the whole training state as checkpoints/step-N.pt and point best.pt (if `best`)
        and last.pt at it; keep only the training.keep_last newest and the training.keep_best
        best step files (nmt.rundir.checkpoint.save_step).

        Every rank calls it (the random states of all ranks are saved); rank 0 writes, and a
        failed write (a full disk) stops every rank with rank 0's CheckpointError."""
        rng = self.procs.gather(self._random_state())
        self.procs.on_main(self._write_checkpoint, rng, best)

    def _write_checkpoint(self, rng: list[dict], best: bool) -> None:
        tgt_model = None if self.tgt_tok is self.src_tok else self.tgt_tok.model_proto
        model = model_contents(config_to_dict(self.cfg), self.src_tok.model_proto, tgt_model, self.model.state_dict())
        state = training_contents(
            model,
            optimizer=self.optimizer.state_dict(),
            schedule=self.schedule.state_dict(),
            scaler=self.scaler.state_dict(),
            progress=self.progress.state_dict(),
            rng_ranks=rng,  # dropout's random numbers, of every rank
        )
        save_step(state, self.run_dir, best, self.t.keep_last, self.t.keep_best)

    def _random_state(self) -> dict:
        """This rank's random number generators (dropout): CPU, and CUDA when training on it."""
        cuda = torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None
        return {"cpu": torch.get_rng_state(), "cuda": cuda}

    def restore(self, state: dict, name: str = "the checkpoint") -> None:
        """Continue exactly where the checkpoint `state` (the file `name`) left off (see `save`). A
        run resumed with another number of processes goes on from the same batch, with new
        dropout noise. Weights or optimizer states that do not fit this run: a CheckpointError."""
        try:
            self._restore(state)
        except (RuntimeError, ValueError, TypeError, KeyError, AttributeError, IndexError) as e:
            reason = " ".join(str(e).split())[:200] or type(e).__name__  # torch's messages take several lines
            raise CheckpointError(
                f"{name}: cannot resume from it: its training state does not fit ({reason})"
            ) from None

    def _restore(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["schedule"])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.progress = Progress.from_state_dict(state["progress"])
        ranks = rank_random_states(state)
        if len(ranks) == self.procs.world_size:
            torch.set_rng_state(ranks[self.procs.rank]["cpu"])
            if ranks[self.procs.rank]["cuda"] is not None and self.device.type == "cuda":
                torch.cuda.set_rng_state(ranks[self.procs.rank]["cuda"], self.device)
        else:
            torch.manual_seed(self.cfg.seed + self.procs.rank + 1000 * self.progress.step)

    # --- the loop --------------------------------------------------------------------------

    def time_up(self) -> bool:
        """Whether training.max_minutes have passed (on this rank's clock)."""
        return bool(self.t.max_minutes) and time.time() - self.progress.started >= 60 * self.t.max_minutes

    def stop_reason(self, time_up: bool) -> str | None:
        """Why training stops now, or None. `time_up`: max_minutes have passed on some rank."""
        t, p = self.t, self.progress
        if t.max_steps and p.step >= t.max_steps:
            return f"reached training.max_steps ({t.max_steps})"
        if time_up:
            return f"reached training.max_minutes ({t.max_minutes:g})"
        if t.patience and p.bad_validations >= t.patience:
            return f"no improvement in {t.patience} validations (training.patience)"
        return None

    def run(self) -> None:
        """Train until a stopping rule fires; validate and save at the end."""
        n_params = sum(param.numel() for param in self.model.parameters())
        processes = f", {self.procs.world_size} processes" if self.procs.distributed else ""
        self.log(
            f"run {self.cfg.name} in {self.run_dir}: {n_params:,} parameters, device {self.device}{processes}, "
            f"{torch.get_num_threads()} threads, {self.t.precision}"
        )
        if not runtime.fast_precision(self.device, self.t.precision):
            self.log(
                f"warning: training.precision is {self.t.precision} but this CPU has no fast "
                f"{self.t.precision} matrix products (oneDNN reports none): expect training far slower than fp32"
            )
        if self.segmentations is not None:
            self.log(self.segmentations.describe())
        p = self.progress
        self.window = [0.0, 0, time.time()]  # loss x tokens, tokens, start: for the progress line
        with self._stop_signals(), self._segmenting():
            if self._validation_due():  # resumed: the one a stop signal skipped
                self.validate()
                p.last_valid = p.step
            reason = self.stop_reason(self.procs.all_sum(self.time_up())[0] > 0)
            while reason is None:
                if p.batches_done == 0:  # a new epoch
                    if self.t.max_epochs and p.epoch >= self.t.max_epochs:
                        reason = f"reached training.max_epochs ({self.t.max_epochs})"
                        break
                    p.epoch += 1
                reason = self._train_epoch()
        if self.dev is None:
            self.save(best=True)
        elif str(p.step) not in p.dev_metrics:  # not validated at this step (a scheduled one saved already)
            self.validate(scheduled=False)
        self.log(f"stopped after {p.step} steps, {p.epoch} epochs, {(time.time() - p.started) / 60:.1f} min: {reason}")

    def _train_epoch(self) -> str | None:
        """The rest of the current epoch (from batch `batches_done`), or until a stopping rule
        fires (its reason is returned). A stop signal saves `last` and raises Interrupted.

        A step takes the next W batches, one per rank; the last batches of an epoch that are
        fewer than W are left out (they are other batches in the next epoch's order)."""
        p, W, t0 = self.progress, self.procs.world_size, time.time()
        if self.segmentations is not None:  # rank 0 makes (or finds) the file; every rank maps it
            self.sampler = self._batches_of(self.procs.on_main(self.segmentations.corpus, p.epoch))
        batches = self.sampler.epoch_batches(p.epoch)
        if time.time() - t0 > 1:  # a large corpus: say what the pause was (~1.7 CPU-s at 3M pairs)
            self.log(f"epoch {p.epoch}: {len(batches):,} batches ({time.time() - t0:.1f}s)")
        if len(batches) < W:
            raise DataError(
                f"{self.cfg.data.train}: {len(batches)} batches per epoch, fewer than the {W} "
                "processes; lower training.batch_size or start fewer processes"
            )
        while p.batches_done + W <= len(batches):
            loss, n_tokens = self.train_step(batches[p.batches_done : p.batches_done + W])
            p.batches_done += W
            if self._validation_due() and not self._stop_pending():  # a signal: save at once
                self.validate()
                p.last_valid = p.step
            elif self.t.save_every and p.step % self.t.save_every == 0 and not self._stop_pending():
                self.save()  # a step file between validations, for nmt average
            # one message per step: the loss of all ranks, and whether any rank must stop
            loss, interrupted, time_up = self.procs.all_sum(loss, self.interrupted is not None, self.time_up())
            self._report(loss, n_tokens)
            if interrupted:
                self.save()
                run_dir = self.run_dir.absolute()  # the command works from any directory
                error = Interrupted(
                    f"{self.interrupted or 'a stop signal'} at step {p.step}: saved "
                    f"{checkpoint_path(run_dir, 'last')}; continue with: "
                    f"nmt train {shlex.quote(str(run_dir))} --resume"
                )
                error.shown_by_rank0 = not self.procs.is_main
                raise error
            reason = self.stop_reason(time_up > 0)
            if reason:
                return reason
        p.batches_done = 0
        return None

    def _validation_due(self) -> bool:
        """Whether this step's scheduled validation (every training.valid_every steps) is not done
        yet (a validation puts the step's dev metric in progress.dev_metrics)."""
        p = self.progress
        return (
            self.dev is not None
            and p.step > 0
            and p.step % self.t.valid_every == 0
            and str(p.step) not in p.dev_metrics
        )

    def _stop_pending(self) -> bool:
        """Whether a stop signal reached any rank (then the scheduled validation waits for the
        resumed run: schedulers allow seconds between SIGTERM and SIGKILL)."""
        if not self.procs.distributed:
            return self.interrupted is not None
        return self.procs.all_sum(self.interrupted is not None)[0] > 0

    def _report(self, loss_sum: float, n_tokens: int) -> None:
        """Progress line every 10 steps; a log line and a metrics record every log_every steps.
        loss_sum: the step's summed loss over its n_tokens target tokens."""
        w, p = self.window, self.progress
        w[0], w[1] = w[0] + loss_sum, w[1] + n_tokens
        if p.step % 10 and p.step % self.t.log_every:
            return
        rate = w[1] / max(1e-9, time.time() - w[2])
        text = f"epoch {p.epoch} step {p.step} | loss {w[0] / w[1]:.3f} | {rate:,.0f} tgt tok/s | lr {self.lr:.2e}"
        self.log.progress(text, every=p.step % self.t.log_every == 0)
        if p.step % self.t.log_every == 0:
            self.log.record(
                kind="train", step=p.step, epoch=p.epoch, lr=self.lr, loss=w[0] / w[1], tgt_tokens_per_s=rate
            )
            self.window = [0.0, 0, time.time()]

    @contextlib.contextmanager
    def _segmenting(self):
        """The background thread of subword regularisation stopped when the loop ends, however."""
        try:
            yield
        finally:
            if self.segmentations is not None:
                self.segmentations.close()

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
