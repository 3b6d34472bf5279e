"""Fine-tuning: a new run that starts from a trained run's weights (`training.init_from`).

The parent is read once, when the child starts as a new run (checked before anything of an
earlier run in the child's directory is deleted), and never written to. The child takes the
parent's weights and, unless `tokenizer.remap`, its sentencepiece models (the child's config
then carries the parent's tokenizer section); everything else starts afresh: the optimizer, the
learning-rate schedule, step 0, no best score, fresh patience. The child's run directory
records its parent (lineage.json); resuming the child reads its own checkpoints, never the
parent (which may be gone by then).

With `tokenizer.remap: true`, new sentencepiece models are trained on the child's data, and the
rows of the embeddings and of the output layer are copied by piece: a piece both vocabularies
know keeps the parent's row, a new piece keeps a fresh model's initialisation.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import torch

from nmt.config import Config, ModelConfig, TokenizerConfig, config_from_dict
from nmt.data.tokenizer import Tokenizer
from nmt.errors import CheckpointError, ConfigError
from nmt.files import atomic_write
from nmt.model import Seq2Seq
from nmt.rundir.checkpoint import load_checkpoint, resolve_checkpoint
from nmt.rundir.contents import step_of, tokenizer_models
from nmt.rundir.layout import LINEAGE
from nmt.translate.loading import checkpoint_tokenizers

#: model keys that do not shape the weights: a fine-tuned model may change them
FREE_MODEL_KEYS = ("dropout", "word_dropout", "textbook")
#: the weights whose rows are the pieces of a vocabulary, by side (tokenizer.remap copies them by piece)
VOCABULARY_ROWS = {"src": ("src_embed.weight",), "tgt": ("tgt_embed.weight", "output.weight", "output.bias")}


@dataclass
class Parent:
    """The checkpoint a fine-tuning run starts from."""

    given: str  # training.init_from as the config gives it
    checkpoint: Path  # the checkpoint file read (a run directory's best.pt, else last.pt)
    sha256: str  # of that file, as read
    step: int  # the parent's training step (-1: not a training checkpoint, e.g. an average)
    state: dict  # the loaded checkpoint (nmt.rundir.contents)
    config: Config  # its config

    def lineage(self) -> dict:
        """What the child's lineage.json records."""
        return {"init_from": self.given, "checkpoint": str(self.checkpoint), "sha256": self.sha256, "step": self.step}


def open_parent(cfg: Config) -> tuple[Parent, list[str]]:
    """The parent of the fine-tuning run `cfg`, checked against it before anything is written:
    the parent lies outside the child's run directory; their model sections match (but for
    FREE_MODEL_KEYS); tokenizer files the child gives equal the parent's unless remapping.
    Returns notes for the log."""
    path = resolve_checkpoint(cfg.training.init_from).resolve()
    run_dir = Path(cfg.run_dir).resolve()
    if run_dir == path or run_dir in path.parents:
        raise ConfigError(
            f"training.init_from: {path} lies in this run's own directory {run_dir}, which a new run "
            "clears; fine-tune into another run_dir"
        )
    state = load_checkpoint(path)
    try:
        parent_cfg = config_from_dict(state["config"])
    except ConfigError as e:
        raise CheckpointError(f"{path}: its config is not valid in this nmt ({e})") from None
    _check_same_model(cfg.model, parent_cfg.model, path)
    parent = Parent(cfg.training.init_from, path, _sha256(path), step_of(state), state, parent_cfg)
    return parent, _tokenizer_notes(cfg, parent)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _check_same_model(child: ModelConfig, parent: ModelConfig, path: Path) -> None:
    """A ConfigError naming the first model key (other than FREE_MODEL_KEYS) that differs."""
    for f in dataclasses.fields(ModelConfig):
        mine, theirs = getattr(child, f.name), getattr(parent, f.name)
        if f.name not in FREE_MODEL_KEYS and mine != theirs:
            raise ConfigError(
                f"model.{f.name}: this config says {mine!r}, the parent {path} has {theirs!r}; a fine-tuned "
                f"model keeps its parent's model section (only {' and '.join(FREE_MODEL_KEYS)} may change)"
            )


def _tokenizer_notes(cfg: Config, parent: Parent) -> list[str]:
    """Without remap: an error for tokenizer files that differ from the parent's models, a note
    when the child's tokenizer settings (not used) differ from the parent's."""
    if cfg.tokenizer.remap:
        return [f"tokenizer.remap: new sentencepiece models for this data; {parent.checkpoint}'s rows copied by piece"]
    src, tgt = tokenizer_models(parent.state)
    expected = {"model": src, "src_model": src, "tgt_model": tgt or src}  # the parent's, side by side
    for key, proto in expected.items():
        file = getattr(cfg.tokenizer, key)
        if file and Path(file).read_bytes() != proto:
            raise ConfigError(
                f"tokenizer.{key}: {file} is not a sentencepiece model of the parent {parent.checkpoint}; "
                "fine-tuning uses the parent's (tokenizer.remap: true trains new ones and copies rows by piece)"
            )
    if _settings(cfg.tokenizer) != _settings(parent.config.tokenizer):
        return [
            f"tokenizer: the parent's sentencepiece models are used ({_describe(parent.config.tokenizer)}); "
            "this config's tokenizer settings are not (tokenizer.remap: true trains new ones on this data)"
        ]
    return []


def _settings(t: TokenizerConfig) -> dict:
    """The settings that make a tokenizer (not the files, not remap)."""
    return {k: v for k, v in dataclasses.asdict(t).items() if k not in ("model", "src_model", "tgt_model", "remap")}


def _describe(t: TokenizerConfig) -> str:
    return f"{t.type}, vocab_size {t.vocab_size}, {'joint' if t.joint else 'one per language'}"


def child_tokenizer_section(cfg: Config, parent_tokenizer: TokenizerConfig) -> TokenizerConfig:
    """The tokenizer section a fine-tuning run carries: without remap the parent's (its models
    are the child's), with remap the child's own."""
    if cfg.tokenizer.remap:
        return cfg.tokenizer
    return dataclasses.replace(parent_tokenizer, model=None, src_model=None, tgt_model=None, remap=False)


def parent_tokenizers(parent: Parent) -> tuple[Tokenizer, Tokenizer]:
    """The parent's (source, target) sentencepiece tokenizers (one object if joint)."""
    return checkpoint_tokenizers(parent.state)


def start_from(model: Seq2Seq, parent: Parent, src_tok: Tokenizer, tgt_tok: Tokenizer, remap: bool) -> list[str]:
    """Load the parent's weights into `model` (a fresh model of the child's config, on the CPU or
    its device); with `remap`, the vocabulary rows by piece (VOCABULARY_ROWS). Returns log notes."""
    weights = dict(parent.state["model"])
    notes = []
    if remap:
        fresh = model.state_dict()
        old_src, old_tgt = parent_tokenizers(parent)
        for side, old, new in (("src", old_src, src_tok), ("tgt", old_tgt, tgt_tok)):
            rows = shared_rows(old, new)
            for key in VOCABULARY_ROWS[side]:
                weights[key] = copy_rows(fresh[key], weights[key], rows)
            notes.append(f"{'source' if side == 'src' else 'target'} vocabulary: copied {len(rows)} of {len(new)} rows")
    try:
        model.load_state_dict(weights)
    except RuntimeError as e:
        raise CheckpointError(f"{parent.checkpoint}: its weights do not fit ({str(e).splitlines()[0]})") from None
    return notes


def shared_rows(old: Tokenizer, new: Tokenizer) -> dict[int, int]:
    """new id -> old id, for every piece both vocabularies have (the special tokens too)."""
    old_ids = {piece: i for i, piece in enumerate(old.pieces(list(range(len(old)))))}
    new_pieces = new.pieces(list(range(len(new))))
    return {i: old_ids[piece] for i, piece in enumerate(new_pieces) if piece in old_ids}


def copy_rows(fresh: torch.Tensor, parent: torch.Tensor, rows: dict[int, int]) -> torch.Tensor:
    """`fresh` (V_new, ...) with row i replaced by parent's row rows[i] for every shared piece."""
    out = fresh.clone()
    if rows:
        new_ids, old_ids = (torch.tensor(ids) for ids in zip(*rows.items()))
        out[new_ids] = parent[old_ids].to(out.dtype)
    return out


def freeze(model: Seq2Seq, parts: tuple[str, ...]) -> None:
    """Keep the named parts (training.freeze) fixed: their parameters take no gradient."""
    for name in parts:
        for module in model.parts()[name]:
            module.requires_grad_(False)


def write_lineage(run_dir: Path, parent: Parent) -> None:
    """RUN_DIR/lineage.json: where a fine-tuned run came from."""
    text = json.dumps(parent.lineage(), indent=1) + "\n"
    atomic_write(run_dir / LINEAGE, lambda f: f.write(text.encode("utf-8")))
