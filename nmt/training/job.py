"""A training run from start to end: the whole job behind `nmt train`.

`train(config)` prepares the run directory (or checks that a resumed run goes on with the same
training), trains (or loads) the sentencepiece models, encodes the training data into the run's
binary corpus (or maps the one already there: nmt.data.prepare), trains the
model (nmt.training.Trainer: validation every `valid_every` steps, the best and last
checkpoints in the run directory), and finally scores the test split with the best checkpoint
and the decoding defaults and draws the learning curves. `prepare(config)` (`nmt prepare`) does
what `train` does before the first step, and stops there.
"""

from __future__ import annotations

import contextlib
import copy
import os
import time
from pathlib import Path

import torch

from nmt import runtime
from nmt.config import Config, config_from_dict, config_to_dict, load_config, save_config
from nmt.data.binary import BinaryCorpus
from nmt.data.corpus import LineReader, parallel_blocks, split_path
from nmt.data.prepare import Split, generate_data, prepare_data
from nmt.data.tokenizer import Tokenizer, save_tokenizers
from nmt.errors import CheckpointError, ConfigError, DataError, MissingDependency, OutOfMemory
from nmt.evaluation.splits import evaluate_split
from nmt.plots import learning_curves_png
from nmt.rundir.contents import step_of
from nmt.rundir.defaults import remember_run
from nmt.rundir.layout import CONFIG, METRICS, checkpoint_path, hypotheses
from nmt.rundir.log import Log, tensorboard_missing
from nmt.rundir.records import trim_metrics
from nmt.rundir.rules import RunLock, check_new_run, clear_run, find_resumable, tidy_for_resume, writing
from nmt.training import distributed
from nmt.training.finetune import Parent, child_tokenizer_section, open_parent, parent_tokenizers, write_lineage
from nmt.training.state import Progress
from nmt.training.trainer import Trainer
from nmt.translate import Translator
from nmt.translate.loading import checkpoint_tokenizers

# relative paths in a config are relative to the working directory; a run stores them absolute
PATH_KEYS = (
    ("data", "train"),
    ("data", "dev"),
    ("data", "test"),
    ("tokenizer", "model"),
    ("tokenizer", "src_model"),
    ("tokenizer", "tgt_model"),
    ("training", "init_from"),
)


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
    "training": ("batch_size", "batch_type", "optimizer", "precision", "freeze"),
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
    optimizer, schedule, random state, data order and position, early-stopping state (a new run
    when there is no checkpoint yet). A run directory given by path is the run, whatever run_dir
    its config.yaml names.

    Under torchrun every process calls it; they train together (see nmt.training.distributed)."""
    procs, joined = distributed.start()
    lock = RunLock()  # rank 0 holds it from _open_run to the end
    try:
        with procs.stop_together():  # another rank lost: one line, not gloo's traceback
            return _train(procs, joined, lock, (config, overrides, overwrite, resume))
    finally:
        lock.release()
        distributed.finish(joined)


@contextlib.contextmanager
def _out_of_memory_named(trainer: Trainer):
    """A failed allocation in a step or a validation is one line (OutOfMemory) that says what to
    change; under torchrun the other processes stop with ProcessLost."""
    try:
        yield
    except (MemoryError, RuntimeError) as e:
        if not runtime.out_of_memory(e):
            raise
        t = trainer.t
        raise OutOfMemory(
            f"after step {trainer.progress.step} ({' '.join(str(e).split())[:200]}): lower training.batch_size "
            f"({t.batch_size} {t.batch_type}) and start the run again (--overwrite: a resumed run keeps its batch "
            "size), or give it more memory and continue from the last checkpoint with --resume"
        ) from None


def _train(procs: distributed.Processes, joined: bool, lock: RunLock, arguments: tuple) -> Path:
    """`train` in the process group `procs` (`joined`: this call created it): the run opened,
    its data prepared, trained, its test split scored and its curves drawn."""
    cfg, state, parent, notes = procs.on_main(_open_run, *arguments, lock)
    run_dir = Path(cfg.run_dir)
    device = procs.device(runtime.resolve_device(cfg.device))
    if device.type == "cuda" and procs.distributed:
        torch.cuda.set_device(device)  # this rank's GPU: where NCCL and DDP work
    log = Log(run_dir if procs.is_main else None)
    try:
        for note in notes:
            log(note)
        torch.manual_seed(cfg.seed)
        runtime.configure(cfg.training.num_threads)
        # the other ranks receive the tokenizers, the dev split and the corpus's path: they map
        # the file rank 0 wrote (see nmt.training.distributed)
        src_tok, tgt_tok, corpus, dev = procs.on_main(_prepare_run, cfg, log, state, parent)
        log.open()
        if cfg.training.tensorboard:
            log.events(resumed=state is not None)
        trainer = Trainer(cfg, src_tok, tgt_tok, corpus, dev, log, device, procs, parent)
        if state is not None:
            trainer.restore(state, str(checkpoint_path(run_dir, "last")))  # (tidy_for_resume linked it)
            log(
                f"resumed from {checkpoint_path(run_dir, 'last')}: step {trainer.progress.step}, "
                f"epoch {trainer.progress.epoch}"
            )
        with _out_of_memory_named(trainer):
            trainer.run()
        del trainer  # its model holds the process group: `finish` collects it first
        distributed.finish(joined, together=True)  # the rest is rank 0's alone
        if procs.is_main:
            remember_run(run_dir)
            if cfg.data.test:
                test_report(run_dir, cfg, log)
            draw_learning_curves(run_dir, log)
    finally:
        log.close()
    return run_dir


# --- the run directory ---------------------------------------------------------------------


def _open_run(
    config: Config | str | Path,
    overrides: list[str] | tuple[str, ...],
    overwrite: bool,
    resume: bool,
    lock: RunLock,
) -> tuple[Config, dict | None, Parent | None, list[str]]:
    """The config, the state to resume from (None: a new run), a new fine-tuning run's parent
    and notes for the log. Everything is checked before the run directory changes; a new run's
    directory is cleared later, by _prepare_run, once its data and tokenizers are ready."""
    if resume and overwrite:
        raise ConfigError("--resume and --overwrite: choose one")
    cfg = _read_config(config, overrides)
    runtime.check_precision(runtime.resolve_device(cfg.device), cfg.training.precision, "training.precision")
    if cfg.training.tensorboard and (missing := tensorboard_missing()):
        raise MissingDependency(missing)
    _check_data_files(cfg)
    run_dir = _make_run_dir(Path(cfg.run_dir))
    lock.acquire(run_dir)
    found = find_resumable(run_dir, RESUME_PROGRESS) if resume else None
    if found is None:
        _check_tokenizer_files(cfg)
        parent, notes = open_parent(cfg) if cfg.training.init_from else (None, [])
        if parent is not None:
            cfg.tokenizer = child_tokenizer_section(cfg, parent.config.tokenizer)
        check_new_run(run_dir, overwrite)
        return cfg, None, parent, [f"nothing to resume in {run_dir}: starting a new run"] * resume + notes
    path, state, note = found
    if cfg.training.init_from:  # a fine-tuned run resumes from its own checkpoint; its tokenizers are in it
        cfg.tokenizer = child_tokenizer_section(cfg, _stored_config(state["config"], path).tokenizer)
    _check_same_training(cfg, state["config"], path)
    tidy_for_resume(run_dir, path, state)
    trimmed = trim_metrics(run_dir / METRICS, step_of(state))
    return cfg, state, None, [n for n in (note, trimmed) if n]


def _read_config(config: Config | str | Path, overrides: list[str] | tuple[str, ...]) -> Config:
    """The run's config (a copy of a Config), with absolute data and tokenizer paths. A run
    directory means its own config.yaml, and the run is that directory (a copied run trains in
    the copy)."""
    if isinstance(config, Config):
        cfg = copy.deepcopy(config)
    elif Path(config).is_dir():
        if any(item.split("=", 1)[0].strip() == "run_dir" for item in overrides):
            raise ConfigError(
                f"run_dir: `nmt train {config}` trains in {config}; --set run_dir=... is for a config file"
            )
        cfg = load_config(Path(config) / CONFIG, overrides)
        cfg.run_dir = str(config)
    else:
        cfg = load_config(config, overrides)
    return _absolute_paths(cfg)


def _absolute_paths(cfg: Config) -> Config:
    """`cfg` with its relative data and tokenizer paths made absolute, against the working
    directory: stored so in the run's config.yaml and checkpoints, they resolve from anywhere."""
    for section, key in PATH_KEYS:
        part = getattr(cfg, section)
        if getattr(part, key):
            setattr(part, key, os.path.abspath(getattr(part, key)))
    return cfg


def _check_data_files(cfg: Config) -> None:
    """Every data file the run reads exists and is readable (the dates task's are generated
    first), and the test split, used only once training is over, is read through now: a broken
    or missing test file stops the command before anything is deleted or trained."""
    d = cfg.data
    if not d.train:
        raise ConfigError("data.train: expected the prefix of the training files, got nothing")
    generate_data(cfg)
    for prefix in (d.train, d.dev, d.test):
        for lang in (d.src_lang, d.tgt_lang) if prefix else ():
            path = split_path(prefix, lang)
            if not os.access(path, os.R_OK):
                raise DataError(f"{path}: cannot read (permission denied)")
    if d.test:  # invalid UTF-8, a broken .gz, sides of different lengths: a DataError
        sides = (LineReader(split_path(d.test, lang)) for lang in (d.src_lang, d.tgt_lang))
        for _ in parallel_blocks(*sides):
            pass


def _check_tokenizer_files(cfg: Config) -> None:
    """The sentencepiece models a new run is given (instead of training them) are readable files."""
    t = cfg.tokenizer
    for key in ("model",) if t.joint else ("src_model", "tgt_model"):
        path = getattr(t, key)
        if path and not (Path(path).is_file() and os.access(path, os.R_OK)):
            raise ConfigError(f"tokenizer.{key}: {path}: no such readable file")


def _make_run_dir(run_dir: Path) -> Path:
    if run_dir.exists() and not run_dir.is_dir():
        raise CheckpointError(f"run_dir: {run_dir} is a file, not a directory")
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CheckpointError(f"run_dir: cannot create {run_dir} ({e.strerror})") from None
    return run_dir


def _stored_config(stored: dict, path: Path) -> Config:
    """A checkpoint's config as this nmt reads it, its paths absolute (an older run's are relative)."""
    try:
        return _absolute_paths(config_from_dict(stored))
    except ConfigError as e:
        raise CheckpointError(f"{path}: its config is not valid in this nmt ({e}); start a new run") from None


def _check_same_training(cfg: Config, stored: dict, path: Path) -> None:
    """Refuse to resume when `cfg` differs from the run's stored config on a RESUME_KEYS key.
    The message names the checkpoint `path` the stored value comes from: nmt cannot tell a
    changed config from a damaged checkpoint, the user can.

    The stored config is read as this nmt reads a config (a key added since the run was
    written takes its default), so that runs of an older nmt stay resumable."""
    old = config_to_dict(_stored_config(stored, path))
    new = config_to_dict(cfg)
    for section, rule in RESUME_KEYS.items():
        a, b = (new, old) if not section else (new[section], old[section])
        for key in rule.keys(a) if isinstance(rule, AllBut) else rule:
            if a.get(key) != b.get(key):
                name = f"{section}.{key}" if section else key
                raise ConfigError(
                    f"{name}: the run in {cfg.run_dir} was trained with {b.get(key)!r} (its checkpoint "
                    f"{path} says so), this config says {a.get(key)!r}; "
                    "a resumed run may change only limits and schedules"
                )


def _resumed_tokenizers(state: dict, run_dir: Path) -> tuple[Tokenizer, Tokenizer]:
    """The sentencepiece models of the checkpoint resumed from (last.pt: tidy_for_resume linked
    it); damaged ones are a CheckpointError naming it."""
    try:
        return checkpoint_tokenizers(state)
    except CheckpointError as e:
        raise CheckpointError(f"{checkpoint_path(run_dir, 'last')}: cannot resume from it: {e}") from None


def _prepare_run(
    cfg: Config, log: Log, state: dict | None, parent: Parent | None = None
) -> tuple[Tokenizer, Tokenizer, BinaryCorpus, Split | None]:
    """Data and tokenizers (a resumed run's own; a fine-tuning run's parent's unless it remaps),
    with the resolved config, the sentencepiece models and a fine-tuning run's lineage written
    into the run directory (a new run's, cleared of an earlier run's files first; the training
    corpus, just checked or made, stays)."""
    tokenizers = None if state is None else _resumed_tokenizers(state, Path(cfg.run_dir))
    if parent is not None and not cfg.tokenizer.remap:
        tokenizers = parent_tokenizers(parent)
    src_tok, tgt_tok, corpus, dev = prepare_data(cfg, log, tokenizers)
    run_dir = Path(cfg.run_dir)
    if state is None:
        clear_run(run_dir)  # the new run starts: only now does the old one go
    with writing(run_dir):
        save_config(cfg, run_dir / CONFIG)
        save_tokenizers(src_tok, tgt_tok, run_dir)
        if parent is not None:
            write_lineage(run_dir, parent)
    return src_tok, tgt_tok, corpus, dev


def prepare(
    config: Config | str | Path,
    overrides: list[str] | tuple[str, ...] = (),
    overwrite: bool = False,
    resume: bool = False,
) -> Path:
    """`nmt prepare`: what `train` with the same arguments does before its first step, and no
    more: the run directory checked (a new run's cleared), the sentencepiece models trained and
    the training corpus encoded into RUN_DIR/train.bin, which `train` then maps instead of
    encoding again. Returns the run directory."""
    lock = RunLock()
    try:
        cfg, state, parent, notes = _open_run(config, overrides, overwrite, resume, lock)
        log = Log(Path(cfg.run_dir))
        for note in notes:
            log(note)
        _prepare_run(cfg, log, state, parent)
        log(f"prepared {cfg.run_dir}: `nmt train` starts from its corpus")
    finally:
        lock.release()
    return Path(cfg.run_dir)


# --- after training ------------------------------------------------------------------------


def test_report(run_dir: Path, cfg: Config, log: Log) -> None:
    """Score the test split with the best checkpoint and the decoding defaults; show examples."""
    translator = Translator.load(run_dir)
    d = cfg.decoding
    t0 = time.time()
    metrics, src, refs, hyps = evaluate_split(translator, cfg.data.test, run_dir / hypotheses("test"))
    seconds = time.time() - t0
    log(
        f"test ({cfg.data.test}, beam {d.beam_size}, alpha {d.alpha:g}, {len(src)} sentences, "
        f"{len(src) / seconds:.0f} sent/s): {metrics.line()}"
    )
    log(f"    {metrics.bleu_signature}")
    for s, h, r in list(zip(src, hyps, refs))[: max(5, cfg.training.show_examples)]:
        log(f"    {s}  ->  {h}{'' if h.strip() == r.strip() else f'   (reference: {r})'}")
    log.record(
        kind="test",
        bleu=metrics.bleu,
        chrf=metrics.chrf,
        accuracy=metrics.accuracy,
        signature=metrics.bleu_signature,
        beam=d.beam_size,
        alpha=d.alpha,
    )


def draw_learning_curves(run_dir: Path, log: Log) -> None:
    """RUN_DIR/learning_curves.png, or a note when it cannot be drawn (matplotlib not installed,
    or any failure while drawing): a finished training stays a success."""
    try:
        path = learning_curves_png(run_dir, note=log)
    except MissingDependency as e:
        log(f"learning curves not drawn: {e}")
        return
    except Exception as e:  # noqa: BLE001 - a picture is never worth failing a finished training
        log(f"learning curves not drawn: {' '.join(str(e).split()) or type(e).__name__}")
        return
    log(f"learning curves: {path}")  # (train.log failing to take this line is an error, as any)
