"""SentencePiece subword models: trained on the training data, stored in the run directory.

Ids 0-3 are reserved for padding, unknown, begin- and end-of-sentence in every model, so
source and target share the constants below.
"""

from __future__ import annotations

import io
import random
from collections.abc import Callable, Iterator
from pathlib import Path

import sentencepiece as spm

from nmt.config import TokenizerConfig
from nmt.data.corpus import LineReader
from nmt.errors import CheckpointError, ConfigError, DataError
from nmt.files import atomic_write
from nmt.rundir.layout import TOKENIZERS

Lines = list[str] | Path  # lines, or a text file to stream them from


def _quiet(lines: int, size: int) -> None:
    pass


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

    def encode(self, lines: list[str], threads: int = 1) -> list[list[int]]:
        """Subword ids of each line (no BOS/EOS); `threads` encode in parallel, with the same result.
        A few lines with one thread go line by line: sentencepiece's batch call starts a thread
        even then, which on a busy CPU costs a server's single-sentence request milliseconds."""
        if threads <= 1 and len(lines) <= 16:
            return [self.sp.encode(line) for line in lines]
        return self.sp.encode(lines, num_threads=threads)

    @property
    def kind(self) -> str:
        """The model's type: "unigram", "bpe", "word" or "char"."""
        from sentencepiece import sentencepiece_model_pb2 as model_pb2

        proto = model_pb2.ModelProto.FromString(self.model_proto)
        return model_pb2.TrainerSpec.ModelType.Name(proto.trainer_spec.model_type).lower()

    def nbest(self, text: str, n: int) -> list[list[int]]:
        """The n best segmentations of `text` (unigram models), best first."""
        return self.sp.nbest_encode_as_ids(text, n)

    def piece_scores(self) -> list[float]:
        """Each piece's score: its log probability in a unigram model."""
        return [self.sp.get_score(i) for i in range(len(self))]

    def decode(self, ids: list[int]) -> str:
        """Detokenized text of subword ids."""
        return self.sp.decode(ids)

    def pieces(self, ids: list[int]) -> list[str]:
        """The subword strings of ids (for attention pictures)."""
        return [self.sp.id_to_piece(i) for i in ids]


Progress = Callable[[int, int], None]  # (lines, bytes) read since the last call; (0, 0): all read


def _blocks(source: Lines, progress: Progress) -> Iterator[list[str]]:
    """The lines of a source in blocks, reporting the lines and (for a file) the bytes read."""
    if not isinstance(source, Path):
        yield source
        return
    reader = LineReader(source)
    position = 0
    for block in reader:
        progress(len(block), reader.position - position)
        position = reader.position
        yield block


def training_sample(sources: list[Lines], max_sentences: int, seed: int, progress: Progress = _quiet) -> list[str]:
    """The non-empty lines of `sources` (in order, as if concatenated), or when there are more
    than `max_sentences`, the sample `random.Random(seed).sample(lines, max_sentences)` draws
    from them. Files are streamed, at most `max_sentences` lines are kept: when there are more,
    a first pass counts them and a second one picks the sampled lines."""
    kept: list[str] | None = []
    count = 0
    for source in sources:
        for block in _blocks(source, progress):
            nonempty = [line for line in block if line.strip()]
            count += len(nonempty)
            if kept is not None:
                kept += nonempty
                if len(kept) > max_sentences:
                    kept = None  # too many: sample them in a second pass
    if kept is not None:
        progress(0, 0)
        return kept
    chosen = random.Random(seed).sample(range(count), max_sentences)  # the indices sample() picks
    slot = {index: n for n, index in enumerate(chosen)}
    sample: list[str] = [""] * max_sentences
    index = 0
    for source in sources:
        for block in _blocks(source, progress):
            for line in block:
                if line.strip():
                    if index in slot:
                        sample[slot[index]] = line
                    index += 1
    progress(0, 0)
    return sample


def train_tokenizer(lines: Lines, cfg: TokenizerConfig, seed: int) -> Tokenizer:
    """Train a SentencePiece model on `lines` (a list, or a file streamed), sampled to
    cfg.max_sentences (see training_sample)."""
    return train_on_sample(training_sample([lines], cfg.max_sentences, seed), cfg)


def train_on_sample(lines: list[str], cfg: TokenizerConfig) -> Tokenizer:
    """Train a SentencePiece model on exactly these lines."""
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
    cfg: TokenizerConfig, src: Lines, tgt: Lines, seed: int, progress: Progress = _quiet
) -> tuple[Tokenizer, Tokenizer]:
    """Source and target tokenizers: loaded from the config's paths, else trained on the source
    and target lines (lists, or files streamed; `progress`: see training_sample)."""
    if cfg.joint:
        if cfg.model:
            tok = Tokenizer.from_file(cfg.model)
        else:
            tok = train_on_sample(_sample([src, tgt], cfg, seed, progress), cfg)
        return tok, tok
    if cfg.src_model:
        return Tokenizer.from_file(cfg.src_model), Tokenizer.from_file(cfg.tgt_model)
    sides = (_sample([side], cfg, seed, progress) for side in (src, tgt))
    return train_on_sample(next(sides), cfg), train_on_sample(next(sides), cfg)


def _sample(sources: list[Lines], cfg: TokenizerConfig, seed: int, progress: Progress) -> list[str]:
    """training_sample, refusing sources without a non-empty line (sentencepiece's own error
    would blame the vocabulary size)."""
    sample = training_sample(sources, cfg.max_sentences, seed, progress)
    if not sample:
        names = " and ".join(str(s) for s in sources if isinstance(s, (str, Path))) or "the training lines"
        raise DataError(f"{names}: no non-empty line to train sentencepiece on")
    return sample


def save_tokenizers(src: Tokenizer, tgt: Tokenizer, run_dir: Path) -> None:
    """Write `spm.model` (joint) or `spm.src.model` and `spm.tgt.model` into the run dir, each
    atomically (a temporary file, fsync, rename)."""
    src_name, tgt_name = TOKENIZERS[src is tgt]
    for name, tok in {src_name: src, tgt_name: tgt}.items():
        atomic_write(run_dir / name, lambda f, proto=tok.model_proto: f.write(proto))
