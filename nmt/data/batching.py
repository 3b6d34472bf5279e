"""Batches of padded id tensors, built by token count with length bucketing.

Training batches: shuffle the examples with a generator seeded by (seed, epoch), sort each
pool of about 100 batches by target length so that a batch holds sentences of similar length (little
padding), cut the pool into batches that fit the budget, shuffle the batches. The sampler sees
only the corpus's length arrays; a batch's sentences are read from the corpus when it is made
(a `PairCorpus`: the memory-mapped training corpus, nmt.data.binary, or id lists, `ListCorpus`).
"""

from __future__ import annotations

import array
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch

from nmt.data.tokenizer import BOS, EOS, PAD

POOL_BATCHES = 100  # batches per sorting pool: more means less padding, less randomness


@dataclass
class Batch:
    """One batch. The source ends with EOS; target input starts with BOS, output ends with EOS.

    src: (B, S) long, PAD-padded;  src_lengths: (B,) long
    tgt_in: (B, T) long;  tgt_out: (B, T) long, or None when there is no target
    indices: position of each row in the dataset
    """

    src: torch.Tensor
    src_lengths: torch.Tensor
    tgt_in: torch.Tensor | None
    tgt_out: torch.Tensor | None
    indices: list[int]

    @property
    def n_tgt_tokens(self) -> int:
        """Target tokens that count in the loss (EOS included, padding not)."""
        return int((self.tgt_out != PAD).sum()) if self.tgt_out is not None else 0

    def to(self, device: torch.device) -> Batch:
        """The batch on `device` (src_lengths stays on the CPU). To a GPU through pinned memory:
        the copy runs while the host goes on."""
        pin = device.type == "cuda"
        move = lambda t: None if t is None else (t.pin_memory() if pin else t).to(device, non_blocking=True)  # noqa: E731
        return Batch(move(self.src), self.src_lengths, move(self.tgt_in), move(self.tgt_out), self.indices)


def _pad(rows: list[list[int]]) -> torch.Tensor:
    out = torch.full((len(rows), max(len(r) for r in rows)), PAD, dtype=torch.long)
    for i, row in enumerate(rows):
        out[i, : len(row)] = torch.tensor(row, dtype=torch.long)
    return out


def make_batch(src: list[list[int]], tgt: list[list[int]] | None, indices: list[int]) -> Batch:
    """Pad id lists into a Batch, adding EOS to sources and BOS/EOS to targets."""
    src_rows = [s + [EOS] for s in src]
    lengths = torch.tensor([len(r) for r in src_rows], dtype=torch.long)
    if tgt is None:
        return Batch(_pad(src_rows), lengths, None, None, indices)
    return Batch(_pad(src_rows), lengths, _pad([[BOS] + t for t in tgt]), _pad([t + [EOS] for t in tgt]), indices)


def cut_ends(costs: list[int], size: int, by_tokens: bool) -> list[int]:
    """Where consecutive sentences are cut into batches that fit `size` (sentences x the
    longest's cost, or sentences): the end (exclusive) of each batch, the last one len(costs).
    A sentence's cost is the padded positions it takes, max(source, target length) + 1."""
    ends, count, longest = [], 0, 0
    for k, cost in enumerate(costs):
        new_longest = max(longest, cost)
        fits = (count + 1) * new_longest <= size if by_tokens else count < size
        if count and not fits:
            ends.append(k)
            count, new_longest = 0, cost
        count += 1
        longest = new_longest
    if count:
        ends.append(len(costs))
    return ends


class EpochBatches(Sequence[list[int]]):
    """One epoch's batches in training order, each a list of example indices, stored compactly:
    the examples in batch order as one int32 array (int64 past 2**31), cut at (start, end)
    positions. A batch's list is made when it is read (3M pairs: 12 MB, not ~130 MB of lists)."""

    def __init__(self, examples: np.ndarray, bounds: list[tuple[int, int]]):
        self.examples, self.bounds = examples, bounds

    def __len__(self) -> int:
        return len(self.bounds)

    def __getitem__(self, k):
        if isinstance(k, slice):
            return [self[j] for j in range(*k.indices(len(self)))]
        start, end = self.bounds[k]
        return self.examples[start:end].tolist()


class PairCorpus(Protocol):
    """Training pairs as the sampler needs them: N, the (N,) length arrays of both sides, and
    the id lists of given sentences of a side ("src" or "tgt")."""

    src_lengths: np.ndarray
    tgt_lengths: np.ndarray

    def __len__(self) -> int: ...

    def rows(self, side: str, indices: list[int]) -> list[list[int]]: ...


class ListCorpus:
    """A PairCorpus of id lists in memory (tests, small data)."""

    def __init__(self, src: list[list[int]], tgt: list[list[int]]):
        self.src, self.tgt = src, tgt
        self.src_lengths = np.array([len(s) for s in src], dtype=np.int64)
        self.tgt_lengths = np.array([len(t) for t in tgt], dtype=np.int64)

    def __len__(self) -> int:
        return len(self.src)

    def rows(self, side: str, indices: list[int]) -> list[list[int]]:
        ids = self.src if side == "src" else self.tgt
        return [ids[i] for i in indices]


class BatchSampler:
    """Epochs of bucketed, shuffled training batches of a corpus; the order is a function of
    (seed, epoch) and of the length arrays alone."""

    def __init__(self, corpus: PairCorpus, size: int, by_tokens: bool, seed: int):
        self.corpus, self.size, self.by_tokens, self.seed = corpus, size, by_tokens, seed
        self.src_lens, self.tgt_lens = np.asarray(corpus.src_lengths), np.asarray(corpus.tgt_lengths)  # no copies
        self.costs = np.maximum(self.src_lens, self.tgt_lens).astype(np.int32) + 1  # see cut_ends

    def epoch_batches(self, epoch: int) -> EpochBatches:
        """The batches (lists of example indices) of one epoch, in training order."""
        rng = random.Random(self.seed * 100_003 + epoch)
        order = array.array("i" if len(self.costs) < 2**31 else "q", range(len(self.costs)))
        rng.shuffle(order)  # random.shuffle's swaps on 4-byte ints: the order a list would get
        examples = np.asarray(order)  # a view: sorted in place, pool by pool
        mean_cost = int(self.costs.sum(dtype=np.int64)) / max(1, len(order))
        per_batch = max(1, int(self.size / mean_cost)) if self.by_tokens else self.size
        pool = per_batch * POOL_BATCHES
        bounds = []
        for start in range(0, len(order), pool):
            # by target length first: the decoder's loop is the dearer half of the model, per
            # position, so its padding costs most (docs/results.md gives the shares).
            # lexsort is stable, as sorted() is: equal lengths keep their shuffled order
            at = examples[start : start + pool]
            at[:] = at[np.lexsort((self.src_lens[at], self.tgt_lens[at]))]
            ends = cut_ends(self.costs[at].tolist(), self.size, self.by_tokens)
            bounds += [(start + a, start + b) for a, b in zip([0, *ends], ends)]
        rng.shuffle(bounds)
        return EpochBatches(examples, bounds)

    def target_tokens(self, indices: list[int]) -> int:
        """Target tokens of a batch that count in the loss (EOS included): its Batch.n_tgt_tokens."""
        return int(self.tgt_lens[indices].sum()) + len(indices)

    def batch(self, indices: list[int]) -> Batch:
        return make_batch(self.corpus.rows("src", indices), self.corpus.rows("tgt", indices), indices)


def sorted_batches(src: list[list[int]], tgt: list[list[int]] | None, size: int) -> list[Batch]:
    """Batches of up to `size` sentences in order of source length, for evaluation and decoding."""
    order = sorted(range(len(src)), key=lambda i: len(src[i]))
    out = []
    for start in range(0, len(order), size):
        idx = order[start : start + size]
        out.append(make_batch([src[i] for i in idx], None if tgt is None else [tgt[i] for i in idx], idx))
    return out
