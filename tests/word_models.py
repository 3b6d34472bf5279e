"""Tiny random models with a word-level sentencepiece vocabulary ("a".."e"), shared by the
analysis, sampling, tuning and plot tests: every id sequence is a text and back, and exhaustive
search over all short outputs is cheap, so the best output under the model is known exactly,
and with it which search errors greedy search makes."""

from __future__ import annotations

import io
import itertools
import struct
from pathlib import Path

import pytest
import sentencepiece as spm
import torch

from nmt.config import Config, ModelConfig, config_to_dict
from nmt.data.tokenizer import BOS, EOS, PAD, UNK, Tokenizer
from nmt.model import build_model
from nmt.rundir.checkpoint import save_checkpoint
from nmt.rundir.contents import model_contents
from nmt.rundir.layout import checkpoint_path
from nmt.translate import Translator

WORDS = ["a", "b", "c", "d", "e"]
L_MAX = 3  # outputs have at most this many words (then EOS)


def word_tokenizer(lines: list[str] | None = None, **options) -> Tokenizer:
    """One piece per word: ids 4..8 are '▁a'..'▁e' in some order (by default). `lines` and
    `options` (sentencepiece trainer options) make other word-level models."""
    proto = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines or [" ".join(p) for p in itertools.permutations(WORDS)]),
        model_writer=proto,
        model_type="word",
        **({"vocab_size": 4 + len(WORDS)} | options),
        pad_id=PAD,
        unk_id=UNK,
        bos_id=BOS,
        eos_id=EOS,
        num_threads=1,
        minloglevel=2,
    )
    tok = Tokenizer(proto.getvalue())
    assert lines or len(tok) == 4 + len(WORDS)
    return tok


def tiny_translator(seed: int, alpha: float = 0.0, unk_bias: float = 0.0) -> Translator:
    """A random model, sharpened so that short and long outputs compete; outputs <= L_MAX words;
    `unk_bias` added to the unknown token's output bias."""
    tok = word_tokenizer()
    cfg = Config()
    cfg.model = ModelConfig(emb_size=8, enc_hidden_size=8, dec_hidden_size=8, attention_size=8, dropout=0.0)
    cfg.decoding.alpha, cfg.decoding.max_length_ratio, cfg.decoding.max_length_offset = alpha, 0.01, L_MAX
    torch.manual_seed(seed)
    model = build_model(cfg.model, len(tok), len(tok))
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(3.0)
        model.output.bias[EOS] -= 2.0
        model.output.bias[UNK] += unk_bias
    return Translator(model, tok, tok, cfg, torch.device("cpu"))


def exhaustive_best(tr: Translator, source: str, alpha: float) -> tuple[str, str]:
    """(best output, worst output) of all outputs of at most L_MAX words, by exact score."""
    outputs = [" ".join(w) for n in range(L_MAX + 1) for w in itertools.product(WORDS, repeat=n)]
    scores = [s for _, s in tr.score([source] * len(outputs), outputs, alpha)]
    ranked = sorted(zip(scores, outputs), reverse=True)
    return ranked[0][1], ranked[-1][1]


def find_search_error(alpha: float):
    """A translator and a source whose greedy output is not the model's best output."""
    for seed in range(40):
        tr = tiny_translator(seed, alpha)
        for source in ["a b", "c", "d e a", "b b c", "e"]:
            best, worst = exhaustive_best(tr, source, alpha)
            if tr.translate([source], beam=1, alpha=alpha)[0] != best:
                return tr, source, best, worst
    pytest.fail("no random model where greedy search misses the best output")


def save_run(tr: Translator, run_dir: Path) -> Path:
    """A run directory holding the translator as checkpoints/best.pt."""
    # the frozen Seq2Seq's weights
    state = model_contents(config_to_dict(tr.cfg), tr.src_tok.model_proto, None, tr.model.model.state_dict())
    (run_dir / "checkpoints").mkdir(parents=True)
    save_checkpoint(state, checkpoint_path(run_dir, "best"))
    return run_dir


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) from a PNG's header; fails unless the file is a PNG."""
    data = Path(path).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


# --- a trained run whose decoding choices really differ --------------------------------------

REVERSAL_WORDS = "red blue green small big dog cat man woman runs sits the a on in".split()


def write_reversal(prefix: Path, n: int, seed: int) -> tuple[list[str], list[str]]:
    """n pairs of 5-9 words and the same words reversed, in prefix.src / prefix.tgt."""
    import random

    rng = random.Random(seed)
    sources = [" ".join(rng.choice(REVERSAL_WORDS) for _ in range(rng.randint(5, 9))) for _ in range(n)]
    targets = [" ".join(reversed(s.split())) for s in sources]
    prefix.parent.mkdir(parents=True, exist_ok=True)
    Path(f"{prefix}.src").write_text("\n".join(sources) + "\n")
    Path(f"{prefix}.tgt").write_text("\n".join(targets) + "\n")
    return sources, targets


def train_reversal(folder: Path, steps: int = 100) -> tuple[Path, list[str], list[str]]:
    """A 16-unit model trained `steps` steps on 2,000 word-reversal pairs: far from perfect, so
    beam size and alpha change its BLEU (about 50 to 68 on its dev set). Returns (run dir, dev
    sources, dev references)."""
    import nmt
    from nmt.config import config_from_dict

    train, _ = write_reversal(folder / "train", 2000, seed=1)
    sources, references = write_reversal(folder / "dev", 60, seed=2)
    words = folder / "words.model"  # one piece per word: the same ids with every sentencepiece version
    words.write_bytes(word_tokenizer(train, vocab_size=4 + len(REVERSAL_WORDS)).model_proto)
    raw = {
        "run_dir": str(folder / "run"),
        "data": {"train": str(folder / "train"), "dev": str(folder / "dev")},
        "tokenizer": {"model": str(words)},
        "model": {"emb_size": 16, "enc_hidden_size": 16, "dec_hidden_size": 16, "attention_size": 16, "dropout": 0.0},
        "training": {
            **{"batch_size": 64, "batch_type": "sentences", "max_steps": steps, "valid_every": steps},
            **{"num_threads": 1, "lr": 0.01, "label_smoothing": 0.0, "show_examples": 0},
        },
    }
    return Path(nmt.train(config_from_dict(raw))), sources, references
