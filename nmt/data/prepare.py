"""Training data as the model sees it: the sentencepiece models trained (or given), the
training pairs encoded to subword ids once, into a binary corpus in the run directory
(RUN_DIR/train.bin, nmt.data.binary) that training maps from disk, and the dev split.

The training files are streamed: sentencepiece trains on a sample read by streaming (at most
tokenizer.max_sentences lines held), and the pairs are encoded block by block with
sentencepiece's multi-threaded batch encoding and written to the corpus file as they come,
pairs outside the length limits left out. The corpus file records what made it (its
fingerprint: the input files' paths, sizes and modification times, the sentencepiece models'
hashes and the length limits); a run that finds a corpus with its own fingerprint (a resumed
run, a new run on the same data and tokenizer, a run after `nmt prepare`) maps it instead of
encoding again, and one made from anything else is encoded again, with a note.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from nmt.config import Config
from nmt.data.binary import BinaryCorpus, CorpusWriter, read_header
from nmt.data.corpus import LineReader, parallel_blocks, read_parallel, split_path
from nmt.data.dates import SPLITS, ensure_dates_data
from nmt.data.progress import stage
from nmt.data.tokenizer import Tokenizer, build_tokenizers
from nmt.errors import CheckpointError, ConfigError, DataError
from nmt.files import atomic_write
from nmt.rundir.layout import CORPUS, TOKENIZERS
from nmt.rundir.log import Log


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


def generate_data(cfg: Config) -> None:
    """data.generate "dates": write the dates task's files that a split's prefix names (DIR/train,
    DIR/dev or DIR/test) and that do not exist yet. Another prefix is the user's own file."""
    d = cfg.data
    if d.generate == "dates":
        for prefix in {d.train, d.dev, d.test} - {""}:
            if Path(prefix).name in SPLITS:
                ensure_dates_data(Path(prefix).parent)


def prepare_data(
    cfg: Config, log: Log, tokenizers: tuple[Tokenizer, Tokenizer] | None = None
) -> tuple[Tokenizer, Tokenizer, BinaryCorpus, Split | None]:
    """Tokenizers (trained here unless given), the length-filtered training corpus (mapped from
    RUN_DIR/train.bin, encoded first unless a corpus with the same fingerprint is there) and the
    dev split (if any)."""
    d = cfg.data
    if not d.train:
        raise ConfigError("data.train: expected the prefix of the training files, got nothing")
    generate_data(cfg)
    paths = (split_path(d.train, d.src_lang), split_path(d.train, d.tgt_lang))
    inputs = [file_stats(path) for path in paths]
    cache = Path(cfg.run_dir) / CORPUS
    header = read_header(cache)
    # what made the sentencepiece models (tokenizer.sampling does not change them)
    settings = {k: v for k, v in dataclasses.asdict(cfg.tokenizer).items() if k != "sampling"}
    recipe = json_value({"tokenizer": settings, "seed": cfg.seed, "inputs": inputs})
    if tokenizers is None:
        tokenizers, recipe = _tokenizers(cfg, log, paths, header, recipe)
    else:
        recipe = None  # made elsewhere (a checkpoint's): nothing says from what
    src_tok, tgt_tok = tokenizers
    models, limits = [_sha256(src_tok), _sha256(tgt_tok)], [d.max_src_length, d.max_tgt_length]
    fingerprint = json_value({"inputs": inputs, "models": models, "max_lengths": limits})
    if header is not None and header["fingerprint"] == fingerprint:
        train = BinaryCorpus(cache)
        reused = f", encoded before: {cache}"
    else:
        if header is not None:
            log(f"{cache} was encoded from {_difference(header['fingerprint'], fingerprint)}: encoding again")
        train = encode_corpus(cfg, paths, tokenizers, cache, {"fingerprint": fingerprint, "recipe": recipe}, log)
        reused = ""
    log(f"train: {len(train):,} pairs ({train.header['dropped']:,} empty or too long dropped{reused})")
    dev = _encode(d.dev, cfg, src_tok, tgt_tok) if d.dev else None
    if dev is not None:
        log(f"dev: {len(dev.src):,} pairs")
    return src_tok, tgt_tok, train, dev


def json_value(value):
    """`value` as it reads back from JSON (tuples become lists): comparable with a header's."""
    return json.loads(json.dumps(value))


def file_stats(path: Path) -> dict:
    stat = path.stat()
    return {"path": str(path.absolute()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def _sha256(tok: Tokenizer) -> str:
    return hashlib.sha256(tok.model_proto).hexdigest()


def _difference(old: dict, new: dict) -> str:
    """What differs between the fingerprint a corpus was made from and the one wanted, in words."""
    for before, now in zip(old.get("inputs", []), new["inputs"]):
        if before != now:
            return f"another {now['path']} (size or modification time changed)"
    if old.get("models") != new["models"]:
        return "another sentencepiece model"
    if old.get("max_lengths") != new["max_lengths"]:
        limits = "data.max_src_length/max_tgt_length"
        return f"other length limits ({old.get('max_lengths')}, now {limits} {new['max_lengths']})"
    return "other files"


def _tokenizers(
    cfg: Config, log: Log, paths: tuple[Path, Path], header: dict | None, recipe: dict
) -> tuple[tuple[Tokenizer, Tokenizer], dict | None]:
    """The tokenizers of a new run and the recipe they were trained by (None: loaded from the
    config's files): the run directory's own when the corpus there records that they were
    trained from the same files, settings and seed (by `nmt prepare`, or an earlier run),
    else trained here on a streamed sample."""
    t, t0 = cfg.tokenizer, time.time()
    given = bool(t.model if t.joint else t.src_model)
    reused = None if given or header is None or header.get("recipe") != recipe else _run_dir_tokenizers(cfg, header)
    if reused is not None:
        log(f"sentencepiece: {len(reused[0])} source / {len(reused[1])} target pieces, trained before on the same data")
        return reused, recipe
    with stage(log, "sentencepiece sample", sum(p.stat().st_size for p in paths), "lines") as progress:
        tokenizers = build_tokenizers(t, paths[0], paths[1], cfg.seed, progress)
    src_tok, tgt_tok = tokenizers
    log(f"sentencepiece: {len(src_tok)} source / {len(tgt_tok)} target pieces ({time.time() - t0:.1f}s)")
    return tokenizers, None if given else recipe


def _run_dir_tokenizers(cfg: Config, header: dict) -> tuple[Tokenizer, Tokenizer] | None:
    """The run directory's sentencepiece models, if they are those the corpus was encoded with."""
    names = TOKENIZERS[cfg.tokenizer.joint]
    try:
        toks = [Tokenizer.from_file(Path(cfg.run_dir) / name) for name in names]
    except (CheckpointError, ConfigError):
        return None
    if [_sha256(tok) for tok in toks] != header["fingerprint"]["models"]:
        return None
    return (toks[0], toks[0]) if cfg.tokenizer.joint else (toks[0], toks[1])


def encode_threads(num_threads: int) -> int:
    """Threads for sentencepiece's batch encoding: training.num_threads, else every CPU core this
    process may use."""
    if num_threads:
        return num_threads
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


#: encodes block k of the training pairs: (k, source lines, target lines) -> their id lists
BlockEncoder = Callable[[int, list[str], list[str]], tuple[list[list[int]], list[list[int]]]]


def encode_corpus(
    cfg: Config,
    paths: tuple[Path, Path],
    tokenizers: tuple[Tokenizer, Tokenizer],
    cache: Path,
    header: dict,
    log: Log,
    encoder: BlockEncoder | None = None,
) -> BinaryCorpus:
    """Stream the training files, encode them block by block (with the tokenizers' best
    segmentation, or `encoder`: one call per block, in one thread, in order) and write the
    corpus file (pairs with an empty side or beyond the length limits left out), atomically: a
    kill or an error leaves the old file or none, never one cut short."""
    d, (src_tok, tgt_tok) = cfg.data, tokenizers
    threads, limits = encode_threads(cfg.training.num_threads), (d.max_src_length, d.max_tgt_length)
    src, tgt = LineReader(paths[0]), LineReader(paths[1])
    t0 = time.time()

    def encode(block: int, a: list[str], b: list[str]) -> tuple[list, list]:
        if encoder is not None:
            return encoder(block, a, b)
        return src_tok.encode(a, threads), tgt_tok.encode(b, threads)

    def store(writer: CorpusWriter, encoding, lines: int, size: int, progress) -> None:
        writer.add(*encoding.result(), limits)
        progress(lines, size)

    def write(f) -> None:
        writer = CorpusWriter(f, cache.parent, (len(src_tok), len(tgt_tok)), limits)
        with stage(log, "encoding", src.size or paths[0].stat().st_size, "pairs") as progress:
            # a pipeline: sentencepiece encodes a block in its threads (without the GIL) while
            # this thread reads the next block and stores the one before
            with ThreadPoolExecutor(1, thread_name_prefix="nmt-encode") as pool:
                pending: list = []  # (the block's encoding, its lines, its bytes)
                position = 0
                for block, (a, b) in enumerate(parallel_blocks(src, tgt)):
                    pending.append((pool.submit(encode, block, a, b), len(a), src.position - position))
                    position = src.position
                    if len(pending) == 2:
                        store(writer, *pending.pop(0), progress)
                if pending:
                    store(writer, *pending.pop(0), progress)
        if not writer.pairs:
            raise DataError(f"{d.train}: no training pair is non-empty and within data.max_src_length/max_tgt_length")
        writer.finish({**header, "lines": src.lines, "dropped": src.lines - writer.pairs})

    try:
        atomic_write(cache, write)
    except OSError as e:
        raise CheckpointError(f"{cache}: cannot write ({e.strerror or e})") from None
    seconds = time.time() - t0
    log(
        f"encoded {src.lines:,} pairs in {seconds:.1f}s ({src.lines / max(seconds, 1e-9):,.0f} pairs/s, "
        f"{threads} threads): {cache} ({cache.stat().st_size / 2**20:,.1f} MiB)"
    )
    return BinaryCorpus(cache)
