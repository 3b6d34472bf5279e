"""A training run from start to end: the whole job behind `nmt train`.

`train(config)` prepares the run directory (or checks that a resumed run goes on with the same
training), reads the training data, trains (or loads) the sentencepiece models, trains the
model (nmt.training.Trainer: validation every `valid_every` steps, the best and last
checkpoints in the run directory), and finally scores the test split with the best checkpoint
and the decoding defaults and draws the learning curves.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import torch

from nmt import distributed, runtime
from nmt.checkpoint import CHECKPOINT_DIR, checkpoint_path, checkpoint_tokenizers, load_checkpoint, remember_run
from nmt.config import Config, config_from_dict, config_to_dict, load_config, resolve_device, save_config
from nmt.data.prepare import Split, prepare_data
from nmt.data.tokenizer import Tokenizer, save_tokenizers
from nmt.errors import CheckpointError, ConfigError, MissingDependency
from nmt.evaluate import evaluate_split
from nmt.log import Log
from nmt.plots import learning_curves_png
from nmt.training import Progress, Trainer
from nmt.translate import Translator

RUN_FILES = ("config.yaml", "metrics.jsonl", "train.log", "spm.model", "spm.src.model", "spm.tgt.model", "test.hyp")


class AllBut:
    """In RESUME_KEYS: every key of a config section except those named."""

    def __init__(self, *excluded: str):
        self.excluded = excluded

    def keys(self, section: dict) -> list[str]:
        return [key for key in section if key not in self.excluded]

    def __repr__(self) -> str:
        return f"AllBut{self.excluded!r}"


ALL = AllBut()

# What a resumed run must share with the checkpoint, section by section ("": the top level).
# Training limits, schedules and decoding may change; so may model.textbook, a switch between
# two implementations of the same computation (same weights, same results).
RESUME_KEYS: dict[str, tuple[str, ...] | AllBut] = {
    "": ("seed",),
    "data": ("src_lang", "tgt_lang", "train", "generate", "max_src_length", "max_tgt_length"),
    "tokenizer": ALL,
    "model": AllBut("textbook"),
    "training": ("batch_size", "batch_type", "optimizer", "precision"),
}

# what a checkpoint's "progress" must hold to resume from it (older ones translate, but cannot resume)
RESUME_PROGRESS = Progress.saved_keys()


def train(
    config: Config | str | Path,
    overrides: list[str] | tuple[str, ...] = (),
    overwrite: bool = False,
    resume: bool = False,
) -> Path:
    """Train a model from a Config (or a YAML path, or a run directory, plus overrides); returns the
    run directory. `resume` continues the run in run_dir from its last checkpoint, exactly: model,
    optimizer, schedule, random state, data order and position, early-stopping state.

    Under torchrun every process calls it; they train together (see nmt.distributed)."""
    procs, joined = distributed.start()
    try:
        cfg, state = procs.on_main(_open_run, config, overrides, overwrite, resume)
        run_dir = Path(cfg.run_dir)
        device = procs.device(resolve_device(cfg.device))
        if device.type == "cuda" and procs.distributed:
            torch.cuda.set_device(device)  # this rank's GPU: where NCCL and DDP work
        log = Log(run_dir if procs.is_main else None)
        try:
            torch.manual_seed(cfg.seed)
            runtime.configure(cfg.training.num_threads)
            src_tok, tgt_tok, train_split, dev = procs.on_main(_prepare_run, cfg, log, state)
            trainer = Trainer(cfg, src_tok, tgt_tok, train_split, dev, log, device, procs)
            if state is not None:
                trainer.restore(state)
                log(
                    f"resumed from {checkpoint_path(run_dir, 'last')}: step {trainer.progress.step}, "
                    f"epoch {trainer.progress.epoch}"
                )
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


# --- the run directory ---------------------------------------------------------------------


def _open_run(
    config: Config | str | Path, overrides: list[str] | tuple[str, ...], overwrite: bool, resume: bool
) -> tuple[Config, dict | None]:
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


def _start_run_dir(cfg: Config, overwrite: bool) -> Path:
    """Create the run directory; refuse to mix two runs in one unless told to overwrite."""
    run_dir = Path(cfg.run_dir)
    if any((run_dir / CHECKPOINT_DIR).glob("*.pt")) and not overwrite:
        raise ConfigError(
            f"run_dir: {run_dir} holds a run already; pass --resume to continue it, --overwrite "
            "to replace it, or set another run_dir (--set run_dir=...)"
        )
    # a replaced run, or an attempt that failed before its first checkpoint
    shutil.rmtree(run_dir / CHECKPOINT_DIR, ignore_errors=True)
    for name in RUN_FILES:
        (run_dir / name).unlink(missing_ok=True)
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


def _resume_state(cfg: Config) -> dict:
    """The run's last checkpoint, after checking that `cfg` describes the same training."""
    path = checkpoint_path(cfg.run_dir, "last")
    if not path.is_file():
        raise ConfigError(f"run_dir: {cfg.run_dir} holds no checkpoints/last.pt to resume from")
    state = load_checkpoint(path)
    if "rng" not in state or not RESUME_PROGRESS <= set(state.get("progress", {})):
        raise CheckpointError(
            f"{path}: written by an nmt that could not resume runs; it translates, but cannot "
            "continue training (start a new run)"
        )
    for stale in path.parent.glob(".*.tmp"):  # a write that a kill interrupted (the old file is whole)
        stale.unlink(missing_ok=True)
    _check_same_training(cfg, state["config"], path)
    return state


def _check_same_training(cfg: Config, stored: dict, path: Path) -> None:
    """Refuse to resume when `cfg` differs from the run's stored config on a RESUME_KEYS key.

    The stored config is read as this nmt reads a config (a key added since the run was
    written takes its default), so that runs of an older nmt stay resumable."""
    try:
        old = config_to_dict(config_from_dict(stored))
    except ConfigError as e:
        raise CheckpointError(f"{path}: its config is not valid in this nmt ({e}); start a new run") from None
    new = config_to_dict(cfg)
    for section, rule in RESUME_KEYS.items():
        a, b = (new, old) if not section else (new[section], old[section])
        for key in rule.keys(a) if isinstance(rule, AllBut) else rule:
            if a.get(key) != b.get(key):
                name = f"{section}.{key}" if section else key
                raise ConfigError(
                    f"{name}: the run in {cfg.run_dir} was trained with {b.get(key)!r}, "
                    f"this config says {a.get(key)!r}; "
                    "a resumed run may change only limits and schedules"
                )


def _prepare_run(cfg: Config, log: Log, state: dict | None) -> tuple[Tokenizer, Tokenizer, Split, Split | None]:
    """Data and tokenizers (a resumed run's own), with the resolved config and the sentencepiece
    models written into the run directory."""
    tokenizers = None if state is None else checkpoint_tokenizers(state)
    src_tok, tgt_tok, train_split, dev = prepare_data(cfg, log, tokenizers)
    save_config(cfg, Path(cfg.run_dir) / "config.yaml")
    save_tokenizers(src_tok, tgt_tok, Path(cfg.run_dir))
    return src_tok, tgt_tok, train_split, dev


# --- after training ------------------------------------------------------------------------


def test_report(run_dir: Path, cfg: Config, log: Log) -> None:
    """Score the test split with the best checkpoint and the decoding defaults; show examples."""
    translator = Translator.load(run_dir)
    d = cfg.decoding
    t0 = time.time()
    scores, src, refs, hyps = evaluate_split(translator, cfg.data.test, run_dir / "test.hyp")
    seconds = time.time() - t0
    log(
        f"test ({cfg.data.test}, beam {d.beam_size}, alpha {d.alpha:g}, {len(src)} sentences, "
        f"{len(src) / seconds:.0f} sent/s): {scores.line()}"
    )
    log(f"    {scores.bleu_signature}")
    for s, h, r in list(zip(src, hyps, refs))[: max(5, cfg.training.show_examples)]:
        log(f"    {s}  ->  {h}{'' if h.strip() == r.strip() else f'   (reference: {r})'}")
    log.record(
        kind="test",
        bleu=scores.bleu,
        chrf=scores.chrf,
        accuracy=scores.accuracy,
        signature=scores.bleu_signature,
        beam=d.beam_size,
        alpha=d.alpha,
    )


def draw_learning_curves(run_dir: Path, log: Log) -> None:
    """RUN_DIR/learning_curves.png, or a note when matplotlib is not installed."""
    try:
        log(f"learning curves: {learning_curves_png(run_dir)}")
    except MissingDependency as e:
        log(f"learning curves not drawn: {e}")
