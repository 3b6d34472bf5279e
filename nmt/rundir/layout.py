"""The run directory's layout: every file nmt writes in a run, named here and nowhere else.

    RUN_DIR/
      config.yaml           the resolved config (nmt train; --resume and nmt evaluate read it)
      spm.model             the joint sentencepiece model, or spm.src.model and spm.tgt.model
      train.bin             the encoded training corpus (nmt.data.binary)
      metrics.jsonl         one JSON record per logged step, validation and test (nmt.rundir.records)
      train.log             training's messages
      train.lock            held while a process trains in the run (nmt.rundir.rules.RunLock)
      test.hyp, dev.hyp     the translations of a split (training's test score, nmt evaluate)
      decoding.yaml         decoding defaults stored by `nmt tune --write` (nmt.rundir.defaults)
      lineage.json          a fine-tuned run's parent: its path, checkpoint, hash and step
      learning_curves.png   drawn at the end of training and by `nmt plot`
      tune.png              drawn by `nmt tune`
      checkpoints/
        step-N.pt           training's checkpoints (N in 8 digits)
        best.pt, last.pt    hard links to two of them
      events/
        events.out.tfevents.*   metrics.jsonl's scalars for TensorBoard (training.tensorboard)
      segmentations/
        epoch-N.bin         an epoch's sampled segmentation of the training pairs, made one epoch
                            ahead (tokenizer.sampling; nmt.data.sampling): the current and next kept

What nmt owns in a run (what a new run may delete, nmt.rundir.rules) is OWNED_FILES, made of
the names above, and in the folders of OWNED_FOLDERS the files their patterns match; a test
checks that no other module spells one of them.
"""

from __future__ import annotations

import re
from pathlib import Path

CONFIG = "config.yaml"
JOINT_TOKENIZER = "spm.model"
SRC_TOKENIZER = "spm.src.model"
TGT_TOKENIZER = "spm.tgt.model"
CORPUS = "train.bin"
METRICS = "metrics.jsonl"
LOG = "train.log"
LOCK = "train.lock"
DECODING = "decoding.yaml"
LINEAGE = "lineage.json"
LEARNING_CURVES = "learning_curves.png"
TUNE_PLOT = "tune.png"
CHECKPOINTS = "checkpoints"
EVENTS = "events"
SEGMENTATIONS = "segmentations"
#: the splits whose translations a run keeps (SPLIT.hyp)
SPLITS = ("test", "dev")
#: (source, target) sentencepiece model files, by tokenizer.joint
TOKENIZERS = {True: (JOINT_TOKENIZER, JOINT_TOKENIZER), False: (SRC_TOKENIZER, TGT_TOKENIZER)}

STEP_FILE = re.compile(r"step-(\d+)\.pt")  # checkpoints/step-N.pt; any other name is not training's
LINKS = ("best", "last")  # checkpoints/NAME.pt: hard links to step files


def hypotheses(split: str) -> str:
    """The file of a split's translations: test.hyp, dev.hyp."""
    return f"{split}.hyp"


OWNED_FILES = frozenset(
    (
        CONFIG,
        JOINT_TOKENIZER,
        SRC_TOKENIZER,
        TGT_TOKENIZER,
        CORPUS,
        METRICS,
        LOG,
        LOCK,
        DECODING,
        LINEAGE,
        LEARNING_CURVES,
        TUNE_PLOT,
        *map(hypotheses, SPLITS),
    )
)
#: the names nmt writes in checkpoints/
CHECKPOINT_FILE = re.compile("|".join([STEP_FILE.pattern, *(re.escape(f"{name}.pt") for name in LINKS)]))
#: the folders of a run, each with the pattern of the names nmt writes in it
SAMPLED_EPOCH = re.compile(r"epoch-(\d+)\.bin")  # segmentations/epoch-N.bin
OWNED_FOLDERS = {
    CHECKPOINTS: CHECKPOINT_FILE,
    EVENTS: re.compile(r"events\.out\.tfevents\..+"),
    SEGMENTATIONS: SAMPLED_EPOCH,
}


def checkpoint_path(run_dir: str | Path, name: str) -> Path:
    """RUN_DIR/checkpoints/NAME.pt (NAME: best, last, step-N)."""
    return Path(run_dir) / CHECKPOINTS / f"{name}.pt"


def step_path(run_dir: str | Path, step: int) -> Path:
    """RUN_DIR/checkpoints/step-N.pt of training step N."""
    return checkpoint_path(run_dir, f"step-{step:08d}")


def sampled_epoch_path(run_dir: str | Path, epoch: int) -> Path:
    """RUN_DIR/segmentations/epoch-N.bin: epoch N's sampled segmentation of the training pairs."""
    return Path(run_dir) / SEGMENTATIONS / f"epoch-{epoch:05d}.bin"


def run_dir_of(checkpoint: Path) -> Path | None:
    """The run directory a checkpoint file lies in (RUN_DIR/checkpoints/NAME.pt), or None."""
    return checkpoint.parent.parent if checkpoint.parent.name == CHECKPOINTS else None
