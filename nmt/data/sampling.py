"""Subword regularisation: the training pairs segmented afresh every epoch (tokenizer.sampling).

A sentence has many segmentations into the vocabulary's pieces; training on a different one
drawn every epoch (Kudo 2018) shows the model how words are built and makes it robust to the
segmenter's choices. Dev, test and translation keep the one best segmentation.

How a segmentation is drawn (`WordSampler`): a unigram model scores a segmentation by the sum
of its pieces' log probabilities, and no piece crosses a word boundary, so a sentence's
segmentations are the products of its words' and drawing one from P(x)^alpha is drawing each
word's independently. Each distinct word (keyed by its best pieces) gets its n best
segmentations from sentencepiece once (tokenizer.sampling.nbest_size: Kudo's l-best sampling,
per word instead of per sentence) with their probabilities; an epoch then draws one per word
occurrence with numpy, vectorised, from a generator seeded by (seed, epoch, side, block).
sentencepiece's own sampler is not used: since 0.2.1 it draws from absl's BitGen, whose seeds
are salted per process, so `set_random_generator_seed` repeats draws within a process but not
across processes, and no resumed run could see the segmentation it stopped in.

Each epoch's segmentation is a corpus file like train.bin (nmt.data.binary), mapped from disk:
RUN_DIR/segmentations/epoch-N.bin. It is made one epoch ahead by a background thread while
the current epoch trains (the training files streamed block by block, pairs beyond the length
limits after sampling left out for that epoch), and only the current and the next files are
kept: on a corpus of millions of pairs the memory stays that of the mapped pages and of the
words' tables, and under torchrun every rank maps the file rank 0 made. An epoch's file is a
function of the training files, the sentencepiece models, the settings, the seed and the epoch
alone, so a resumed run that does not find its epoch's file makes it again, identical.
"""

from __future__ import annotations

import array
import dataclasses
import hashlib
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np

from nmt.config import Config
from nmt.data.binary import BinaryCorpus, read_header
from nmt.data.corpus import split_path
from nmt.data.prepare import encode_corpus, file_stats, json_value
from nmt.data.tokenizer import UNK, Tokenizer
from nmt.errors import ConfigError, DataError
from nmt.rundir.layout import SAMPLED_EPOCH, SEGMENTATIONS, sampled_epoch_path
from nmt.rundir.log import Log
from nmt.rundir.rules import TEMPORARY

SIDES = ("source", "target")


class Stopped(Exception):
    """Raised in the background thread when training ends while it makes the next epoch."""


def block_seed(seed: int, epoch: int, side: str, block: int) -> int:
    """The seed of one block's draws: a hash of (run seed, epoch, side, block)."""
    digest = hashlib.blake2b(f"{seed} {epoch} {side} {block}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


class WordSampler:
    """Draws segmentations of lines from P(x)^alpha restricted to each word's n best (see the
    module). Word tables grow as new words are met; drawing is numpy over all words of a block."""

    def __init__(self, tok: Tokenizer, alpha: float, nbest_size: int):
        if tok.kind != "unigram":
            raise ConfigError(
                f"tokenizer.sampling: the sentencepiece model is a {tok.kind} model; subword "
                "regularisation draws from a unigram model's segmentations"
            )
        self.tok, self.alpha, self.nbest_size = tok, alpha, nbest_size
        self.scores = np.array(tok.piece_scores(), dtype=np.float64)
        self.word_starts = frozenset(i for i in range(len(tok)) if tok.sp.id_to_piece(i).startswith("▁"))
        self.types: dict[tuple[int, ...], int] = {}  # a word's best pieces -> its index
        # every word's candidates, one after another, in compact arrays: their pieces (flat) and
        # where each begins; `keys`: word index + cumulative probability (increasing: one
        # searchsorted finds every draw's candidate)
        self.pieces = array.array("i")
        self.candidate_starts = array.array("q", [0])
        self.keys = array.array("d")

    def _add_word(self, best: tuple[int, ...]) -> int:
        """Index of a new word: its n best segmentations and their cumulative probabilities.
        A word sentencepiece does not give back as the same best pieces (an unknown character,
        a model without the word-start mark) keeps its one segmentation."""
        text = "".join(self.tok.sp.id_to_piece(i) for i in best).replace("▁", " ")
        candidates = self.tok.nbest(text, self.nbest_size) if UNK not in best else []
        if not candidates or tuple(candidates[0]) != best:
            candidates = [list(best)]
        logits = self.alpha * np.array([self.scores[c].sum() for c in candidates])
        probs = np.exp(logits - logits.max())
        index = len(self.types)
        cumulative = index + np.cumsum(probs) / probs.sum()
        cumulative[-1] = index + 1.0  # exactly: every draw below 1 lands in this word
        self.keys.extend(cumulative.tolist())
        for candidate in candidates:
            self.pieces.extend(candidate)
            self.candidate_starts.append(len(self.pieces))
        self.types[best] = index
        return index

    def sample(self, best: list[list[int]], rng: np.random.Generator) -> list[list[int]]:
        """A drawn segmentation of each sentence, given its best one (ids)."""
        words, word_counts = [], []
        for ids in best:
            cuts = [k for k, i in enumerate(ids) if k == 0 or i in self.word_starts] + [len(ids)]
            for a, b in zip(cuts, cuts[1:]):
                key = tuple(ids[a:b])
                words.append(self.types[key] if key in self.types else self._add_word(key))
            word_counts.append(len(cuts) - 1)
        # views of the tables (released when this returns: the arrays may grow again then)
        keys, candidate_starts, pieces = (
            np.frombuffer(a, a.typecode) for a in (self.keys, self.candidate_starts, self.pieces)
        )
        word = np.array(words, dtype=np.int64)
        chosen = np.searchsorted(keys, word + rng.random(len(word)), side="right")  # a candidate of each word
        starts, lengths = candidate_starts[chosen], candidate_starts[chosen + 1] - candidate_starts[chosen]
        ends = np.cumsum(lengths)
        flat = pieces[np.repeat(starts - (ends - lengths), lengths) + np.arange(int(ends[-1]) if len(ends) else 0)]
        sentence = np.repeat(np.arange(len(best)), word_counts)
        tokens = np.bincount(sentence, weights=lengths, minlength=len(best)).astype(np.int64)
        return [part.tolist() for part in np.split(flat, np.cumsum(tokens)[:-1])]


class SampledEpochs:
    """The sampled segmentation of each epoch (see the module), made ahead in one background
    thread. `corpus(epoch)` gives epoch N's; `close()` stops the thread."""

    def __init__(self, cfg: Config, tokenizers: tuple[Tokenizer, Tokenizer], base: BinaryCorpus, log: Log):
        self.cfg, self.tokenizers, self.log = cfg, tokenizers, log
        self.settings = s = cfg.tokenizer.sampling
        sides = [side for side in SIDES if s.sides in ("both", side)]
        self.samplers = {side: WordSampler(self.tokenizers[SIDES.index(side)], s.alpha, s.nbest_size) for side in sides}
        d = cfg.data
        self.paths = (split_path(d.train, d.src_lang), split_path(d.train, d.tgt_lang))
        self.base = base.header["fingerprint"]  # the files and models train.bin was made from
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="nmt-sample")
        self.ahead: dict[int, Future] = {}
        self.stopping = threading.Event()

    def describe(self) -> str:
        s = self.settings
        sides = "both sides" if s.sides == "both" else f"the {s.sides} side"
        return (
            f"subword regularisation: {sides} segmented afresh every epoch (alpha {s.alpha:g}, nbest_size "
            f"{s.nbest_size}), one epoch ahead, into {Path(self.cfg.run_dir) / SEGMENTATIONS}"
        )

    def corpus(self, epoch: int) -> BinaryCorpus:
        """Epoch `epoch`'s corpus: the one made ahead, or the run's file, or made now; then the
        files of other epochs deleted and the next epoch's started in the background."""
        t0 = time.time()
        future = self.ahead.pop(epoch, None)
        corpus = future.result() if future is not None else self.make(epoch)
        if time.time() - t0 > 1:
            self.log(f"epoch {epoch}: waited {time.time() - t0:.1f}s for its sampled segmentation")
        self._delete_all_but(epoch, epoch + 1)
        self.ahead[epoch + 1] = self.pool.submit(self.make, epoch + 1)
        return corpus

    def make(self, epoch: int) -> BinaryCorpus:
        """Epoch `epoch`'s corpus file: mapped if the run holds it made from the same recipe,
        else made (atomically) from the training files."""
        path = sampled_epoch_path(self.cfg.run_dir, epoch)
        fingerprint = json_value(
            {**self.base, "sampling": dataclasses.asdict(self.settings), "seed": self.cfg.seed, "epoch": epoch}
        )
        header = read_header(path)
        if header is not None and header["fingerprint"] == fingerprint:
            return BinaryCorpus(path)
        self._check_inputs()
        path.parent.mkdir(exist_ok=True)
        encoder = lambda block, src, tgt: self._segment(epoch, block, src, tgt)  # noqa: E731
        return encode_corpus(
            self.cfg, self.paths, self.tokenizers, path, {"fingerprint": fingerprint}, Log(None), encoder
        )

    def _segment(self, epoch: int, block: int, src: list[str], tgt: list[str]) -> tuple[list, list]:
        """The id lists of one block of pairs, each side drawn or its best (tokenizer.sampling.sides)."""
        if self.stopping.is_set():
            raise Stopped
        out = []
        for side, lines, tok in zip(SIDES, (src, tgt), self.tokenizers):
            best = tok.encode(lines)  # one thread: training has the others
            if side in self.samplers:
                rng = np.random.default_rng(block_seed(self.cfg.seed, epoch, side, block))
                best = self.samplers[side].sample(best, rng)
            out.append(best)
        return out[0], out[1]

    def _check_inputs(self) -> None:
        """The training files are those train.bin was made from: every epoch reads them again."""
        for recorded, path in zip(self.base["inputs"], self.paths):
            try:
                now = file_stats(path)
            except OSError:
                now = None
            if now != recorded:
                raise DataError(
                    f"{path}: changed since this run's {self.cfg.run_dir}/train.bin was made (size or "
                    "modification time); tokenizer.sampling reads the training files every epoch: "
                    "put them back, or start a new run"
                )

    def _delete_all_but(self, *epochs: int) -> None:
        """Delete the other epochs' files, and what a kill left of any (nothing is being made now)."""
        folder = Path(self.cfg.run_dir) / SEGMENTATIONS
        keep = {sampled_epoch_path(self.cfg.run_dir, epoch).name for epoch in epochs}
        for entry in folder.iterdir() if folder.is_dir() else ():
            cut_short = TEMPORARY.fullmatch(entry.name)
            name = cut_short[1] if cut_short else entry.name
            if SAMPLED_EPOCH.fullmatch(name) and (cut_short or name not in keep):
                entry.unlink(missing_ok=True)

    def close(self) -> None:
        """Stop making the next epoch (its unfinished file is removed) and wait for the thread."""
        self.stopping.set()
        self.pool.shutdown(wait=True, cancel_futures=True)
