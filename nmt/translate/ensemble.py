"""Ensembles: several trained models searched as one (`nmt translate -m RUN_A -m RUN_B`,
`Translator.load([a, b])`).

At every output step the ensemble's log-probability of each next token is the mean of its
members' log-probabilities, log p(y_t) = (1/M) Σ_m log p_m(y_t | y_<t, x) (the log-linear
combination of Marian and OpenNMT, not renormalised): hypotheses are scored, ranked and
reported with it, and forced scoring (`nmt score`) sums it over the tokens. Each member keeps
its own encoder states and decoder state; search (greedy, beam, n-best, sampling) is unchanged:
an `Ensemble` bound to a batch's lines is one more `SearchModel` (encode, step, select).

The members must share the target vocabulary (the same pieces under the same ids: a mean of
distributions over different vocabularies means nothing). The source side may differ: each
member encodes the input lines with its own tokenizer. The first member leads: its source
pieces, attention weights (returned by `step`), decoding options and output length limits are
the ensemble's.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from nmt.data.batching import make_batch
from nmt.data.tokenizer import Tokenizer
from nmt.errors import CheckpointError
from nmt.search.common import sequence_log_probs


class Ensemble(nn.Module):
    """M models (`Seq2Seq`, or anything that keeps the search protocol and teacher-forced
    scoring) with each one's source tokenizer. `for_lines(texts)` gives the SearchModel of a batch."""

    def __init__(self, members: list[nn.Module], src_toks: list[Tokenizer]):
        super().__init__()
        self.members = nn.ModuleList(members)
        self.src_toks = src_toks
        # members that read the leader's source ids: the same source pieces under the same ids
        self.same_source = [tok.model_proto == src_toks[0].model_proto for tok in src_toks]

    def for_lines(self, texts: list[str]) -> BoundEnsemble:
        """The ensemble for one batch whose rows are these input lines (in the batch's order)."""
        return BoundEnsemble(self, texts)


class BoundEnsemble:
    """An Ensemble for one batch of lines: the SearchModel search runs (and forced scoring)."""

    def __init__(self, ensemble: Ensemble, texts: list[str]):
        self.ensemble, self.texts = ensemble, texts

    def _sources(self, src: torch.Tensor, src_lengths: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Each member's (src (B, S_m), src_lengths (B,)): the leader's `src` where the source
        tokenizer is the same, else the lines encoded with the member's own tokenizer."""
        out = []
        for same, tok in zip(self.ensemble.same_source, self.ensemble.src_toks):
            if same:
                out.append((src, src_lengths))
                continue
            batch = make_batch(tok.encode(self.texts), None, list(range(len(self.texts))))
            out.append((batch.src.to(src.device), batch.src_lengths))
        return out

    def encode(self, src: torch.Tensor, src_lengths: torch.Tensor) -> tuple[tuple, tuple]:
        """src (B, S), src_lengths (B,): the leader's. -> (memories, states), one per member."""
        encoded = [m.encode(s, n) for m, (s, n) in zip(self.ensemble.members, self._sources(src, src_lengths))]
        return tuple(e[0] for e in encoded), tuple(e[1] for e in encoded)

    def step(self, prev: torch.Tensor, memory: tuple, state: tuple) -> tuple[torch.Tensor, tuple, torch.Tensor]:
        """prev (N,) -> the mean of the members' log-probabilities (N, V), their new states, and
        the leader's attention weights (N, S)."""
        steps = [m.step(prev, mem, st) for m, mem, st in zip(self.ensemble.members, memory, state)]
        log_probs = torch.stack([s[0] for s in steps]).mean(dim=0)
        return log_probs, tuple(s[1] for s in steps), steps[0][2]

    def select(self, rows: tuple, index: torch.Tensor) -> tuple:
        """Rows `index` of every member's memory or state."""
        return tuple(m.select(r, index) for m, r in zip(self.ensemble.members, rows))

    def sequence_log_probs(
        self, src: torch.Tensor, src_lengths: torch.Tensor, tgt_in: torch.Tensor, tgt_out: torch.Tensor
    ) -> torch.Tensor:
        """log P(y | x) (B,) of given outputs: the sum over steps of the mean of the members'
        log-probabilities, i.e. the mean of the members' sequence log-probabilities."""
        members = zip(self.ensemble.members, self._sources(src, src_lengths))
        return torch.stack([sequence_log_probs(m, s, n, tgt_in, tgt_out) for m, (s, n) in members]).mean(dim=0)


def _pieces(tok: Tokenizer) -> list[str]:
    return [tok.sp.id_to_piece(i) for i in range(len(tok))]


def combine(translators: list, names: list[str]) -> tuple[Ensemble, Any]:
    """The Ensemble of loaded Translators' models (the first leads). A CheckpointError names the
    member whose target vocabulary differs from the first's, or whose device differs."""
    lead = translators[0]
    vocabulary = _pieces(lead.tgt_tok)
    for tr, name in zip(translators[1:], names[1:]):
        if tr.tgt_tok.model_proto != lead.tgt_tok.model_proto and _pieces(tr.tgt_tok) != vocabulary:
            raise CheckpointError(
                f"{name}: cannot ensemble with {names[0]}: the target vocabularies differ "
                f"({len(tr.tgt_tok)} and {len(lead.tgt_tok)} pieces; members must share the target sentencepiece model)"
            )
    return Ensemble([tr.model for tr in translators], [tr.src_tok for tr in translators]), lead
