"""SentencePiece subword models: trained on the training data, stored in the run directory.

Ids 0-3 are reserved for padding, unknown, begin- and end-of-sentence in every model, so
source and target share the constants below.
"""

from __future__ import annotations

import io
import random
from pathlib import Path

import sentencepiece as spm

from nmt.config import TokenizerConfig
from nmt.errors import CheckpointError, ConfigError
from nmt.files import atomic_write

PAD, UNK, BOS, EOS = 0, 1, 2, 3


class Tokenizer:
    """Text <-> subword ids with one SentencePiece model."""

    def __init__(self, model_proto: bytes):
        self.model_proto = model_proto
        self.sp = spm.SentencePieceProcessor(model_proto=model_proto)
        if (self.sp.pad_id(), self.sp.unk_id(), self.sp.bos_id(), self.sp.eos_id()) != (PAD, UNK, BOS, EOS):
            raise ConfigError(
                "tokenizer.model: the sentencepiece model must use pad/unk/bos/eos ids 0/1/2/3 "
                "(train it with --pad_id=0 --unk_id=1 --bos_id=2 --eos_id=3)"
            )

    @classmethod
    def from_file(cls, path: str | Path) -> Tokenizer:
        """Load a `.model` file."""
        try:
            return cls(Path(path).read_bytes())
        except OSError as e:
            raise CheckpointError(f"{path}: cannot read sentencepiece model ({e.strerror})") from None
        except RuntimeError:
            raise CheckpointError(f"{path}: not a sentencepiece model") from None

    def __reduce__(self):  # pickled as its model (sent to the other processes in distributed training)
        return Tokenizer, (self.model_proto,)

    def __len__(self) -> int:
        return self.sp.get_piece_size()

    def encode(self, lines: list[str]) -> list[list[int]]:
        """Subword ids of each line (no BOS/EOS)."""
        return self.sp.encode(lines)

    def decode(self, ids: list[int]) -> str:
        """Detokenized text of subword ids."""
        return self.sp.decode(ids)

    def pieces(self, ids: list[int]) -> list[str]:
        """The subword strings of ids (for attention pictures)."""
        return [self.sp.id_to_piece(i) for i in ids]


def train_tokenizer(lines: list[str], cfg: TokenizerConfig, seed: int) -> Tokenizer:
    """Train a SentencePiece model on `lines` (sampled to cfg.max_sentences)."""
    lines = [line for line in lines if line.strip()]
    if len(lines) > cfg.max_sentences:
        lines = random.Random(seed).sample(lines, cfg.max_sentences)
    proto = io.BytesIO()
    try:
        _train_spm(lines, proto, cfg)
    except RuntimeError as e:
        reason = str(e).strip().splitlines()[-1] if str(e).strip() else "training failed"
        raise ConfigError(
            f"tokenizer.vocab_size: sentencepiece cannot train with {cfg.vocab_size} pieces on this data ({reason})"
        ) from None
    return Tokenizer(proto.getvalue())


def _train_spm(lines: list[str], proto: io.BytesIO, cfg: TokenizerConfig) -> None:
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines),
        model_writer=proto,
        model_type=cfg.type,
        vocab_size=cfg.vocab_size,
        hard_vocab_limit=False,  # small corpora get fewer pieces instead of an error
        character_coverage=cfg.character_coverage,
        split_digits=cfg.split_digits,
        pad_id=PAD,
        unk_id=UNK,
        bos_id=BOS,
        eos_id=EOS,
        num_threads=1,  # deterministic
        minloglevel=2,
    )


def build_tokenizers(
    cfg: TokenizerConfig, src_lines: list[str], tgt_lines: list[str], seed: int
) -> tuple[Tokenizer, Tokenizer]:
    """Source and target tokenizers: loaded from the config's paths, else trained."""
    if cfg.joint:
        if cfg.model:
            tok = Tokenizer.from_file(cfg.model)
        else:
            tok = train_tokenizer(src_lines + tgt_lines, cfg, seed)
        return tok, tok
    if cfg.src_model:
        return Tokenizer.from_file(cfg.src_model), Tokenizer.from_file(cfg.tgt_model)
    return train_tokenizer(src_lines, cfg, seed), train_tokenizer(tgt_lines, cfg, seed)


def save_tokenizers(src: Tokenizer, tgt: Tokenizer, run_dir: Path) -> None:
    """Write `spm.model` (joint) or `spm.src.model` and `spm.tgt.model` into the run dir, each
    atomically (a temporary file, fsync, rename)."""
    models = {"spm.model": src} if src is tgt else {"spm.src.model": src, "spm.tgt.model": tgt}
    for name, tok in models.items():
        atomic_write(run_dir / name, lambda f, proto=tok.model_proto: f.write(proto))
