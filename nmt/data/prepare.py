"""Training data as the model sees it: the splits read, the sentencepiece models trained (or
given), every sentence encoded to subword ids, and training pairs outside the length limits
left out."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from nmt.config import Config
from nmt.data.corpus import read_parallel
from nmt.data.dates import ensure_dates_data
from nmt.data.tokenizer import Tokenizer, build_tokenizers
from nmt.errors import ConfigError, DataError
from nmt.log import Log


@dataclass
class Split:
    """A split as text and as subword ids (one list of ids per sentence, no BOS/EOS)."""

    src: list[str]
    tgt: list[str]
    src_ids: list[list[int]]
    tgt_ids: list[list[int]]


def _encode(prefix: str, cfg: Config, src_tok: Tokenizer, tgt_tok: Tokenizer) -> Split:
    src, tgt = read_parallel(prefix, cfg.data.src_lang, cfg.data.tgt_lang)
    return Split(src, tgt, src_tok.encode(src), tgt_tok.encode(tgt))


def prepare_data(
    cfg: Config, log: Log, tokenizers: tuple[Tokenizer, Tokenizer] | None = None
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
    keep = [
        i
        for i in range(len(src))
        if 0 < len(src_ids[i]) <= d.max_src_length and 0 < len(tgt_ids[i]) <= d.max_tgt_length
    ]
    if not keep:
        raise DataError(f"{d.train}: no training pair is non-empty and within data.max_src_length/max_tgt_length")
    train = Split(
        [src[i] for i in keep], [tgt[i] for i in keep], [src_ids[i] for i in keep], [tgt_ids[i] for i in keep]
    )
    log(f"train: {len(keep):,} pairs ({len(src) - len(keep):,} empty or too long dropped)")
    dev = _encode(d.dev, cfg, src_tok, tgt_tok) if d.dev else None
    if dev is not None:
        log(f"dev: {len(dev.src):,} pairs")
    return src_tok, tgt_tok, train, dev
