"""Outputs that must contain given phrases (terminology: a customer's terms), by beam search
with dynamic beam allocation (Post & Vilar, 2018; grid beam search, Hokamp & Liu, 2017).

A `Constraint` is one phrase with its spellings as target ids: the pieces the tokenizer gives it
at a word's start, and those it would have inside a word (a compound's tail). It is met once
the output holds one spelling as consecutive tokens. A hypothesis's `State` is which of its
sentence's constraints are met and which spellings it is part-way through; its `progress` is
the constraint tokens it has produced (a met constraint counts its longest spelling).

`ConstraintRule.allocate` re-ranks each constrained sentence's candidates before beam search
picks from them: besides the best extensions by score, every hypothesis is offered its own best
token and each token that advances an unmet constraint; candidates are grouped by progress into
banks, ranked by score within a bank, and taken in turns, the bank with more progress first
(fairseq's "striping"). So a hypothesis that has placed a term is not pushed out by likelier
ones that have not. EOS is allowed only to hypotheses that meet all their constraints, until
the length limit, where one that does not is ended all the same and marked (`unmet`).

What stays exact: the stopping rule. An unfinished hypothesis's descendants score at most its
summed log-probability over lp(T_max), whichever bank they fall in, so the search stops only
when no descendant of the beam can enter the n-best, and returns what it would return if it ran
to its length limit (tested against a search that does). With a beam as wide as the number of
hypotheses it returns the best output that meets every constraint (tested against exhaustive
search on a small vocabulary). A sentence without constraints is searched as without the rule.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import NamedTuple

import torch

from nmt.data.tokenizer import EOS, PAD


@dataclass(frozen=True)
class Constraint:
    """A phrase the output must contain: its text and its spellings, each a tuple of target ids."""

    phrase: str
    spellings: tuple[tuple[int, ...], ...]
    inside: tuple[bool, ...] = ()  # per spelling: True for one that continues a word (never first)

    def may_start(self, spelling: int, begun: bool) -> bool:
        """Whether spelling `spelling` may start here: one inside a word only after a first token."""
        return begun or not (self.inside and self.inside[spelling])

    @property
    def length(self) -> int:
        """The most tokens it can take (its longest spelling): what the length limit adds."""
        return max(len(s) for s in self.spellings)


class State(NamedTuple):
    """A hypothesis's constraints: `met`, a bit per constraint (bit c: constraint c is met);
    `partial`, the spellings it is part-way through, as (constraint, spelling, tokens matched);
    `begun`, whether it has any token yet.
    (A tuple: hashed in C, as the caches of ConstraintRule do at every step for every row.)"""

    met: int = 0
    partial: frozenset[tuple[int, int, int]] = frozenset()
    begun: bool = False  # a token has been output (a spelling inside a word may start)


START = State()


class ConstraintRule:
    """The constraints of a batch's rows (a tuple of Constraints per sentence)."""

    def __init__(self, constraints: tuple[tuple[Constraint, ...], ...]):
        self.constraints = constraints
        self.all_met = [(1 << len(c)) - 1 for c in constraints]
        # sentences with the same constraints share a group, and the caches below: each is asked
        # again and again, at every step for every row, and computed once per group and state
        groups: dict[tuple[Constraint, ...], int] = {}
        self.group = [groups.setdefault(c, len(groups)) for c in constraints]
        self._of_group = list(groups)
        self._advance_cached = functools.cache(self._advance)
        self._progress_cached = functools.cache(self._progress)
        self._wanted_cached = functools.cache(self._wanted)
        self._bank_after_cached = functools.cache(self._bank_after)

    def advance(self, sentence: int, state: State, token: int) -> State:
        """The state after `token` (see `_advance`)."""
        return self._advance_cached(self.group[sentence], state, token)

    def progress(self, sentence: int, state: State) -> int:
        """Constraint tokens produced (see `_progress`)."""
        return self._progress_cached(self.group[sentence], state)

    def wanted(self, sentence: int, state: State) -> frozenset[int]:
        """The tokens that advance an unmet constraint (see `_wanted`)."""
        return self._wanted_cached(self.group[sentence], state)

    def _advance(self, group: int, state: State, token: int) -> State:
        """The state after `token`: each part-way spelling goes on if `token` is its next one, any
        spelling of an unmet constraint may start with it, and a spelling completed meets its
        constraint (which then drops its other part-way spellings)."""
        constraints, met = self._of_group[group], state.met
        moved = {(c, s, n + 1) for c, s, n in state.partial if constraints[c].spellings[s][n] == token}
        for c, constraint in enumerate(constraints):
            if not met >> c & 1:
                starts = enumerate(constraint.spellings)
                moved.update((c, s, 1) for s, sp in starts if sp[0] == token and constraint.may_start(s, state.begun))
        for c, s, n in list(moved):
            if n == len(constraints[c].spellings[s]):
                met |= 1 << c
        return State(met, frozenset(p for p in moved if not met >> p[0] & 1), True)

    def _progress(self, group: int, state: State) -> int:
        """Constraint tokens produced: each met constraint's longest spelling, plus the most
        tokens matched of a part-way one."""
        constraints = self._of_group[group]
        done = sum(c.length for i, c in enumerate(constraints) if state.met >> i & 1)
        return done + max((n for _, _, n in state.partial), default=0)

    def _wanted(self, group: int, state: State) -> frozenset[int]:
        """The tokens that advance an unmet constraint: the next of each part-way spelling, the
        first of every spelling of each unmet constraint."""
        constraints = self._of_group[group]
        out = {constraints[c].spellings[s][n] for c, s, n in state.partial}
        for c, constraint in enumerate(constraints):
            if not state.met >> c & 1:
                out.update(sp[0] for s, sp in enumerate(constraint.spellings) if constraint.may_start(s, state.begun))
        return frozenset(out)

    def unmet(self, sentence: int, state: State) -> tuple[int, ...]:
        """The indices of the sentence's constraints that `state` has not met."""
        return tuple(c for c in range(len(self.constraints[sentence])) if not state.met >> c & 1)

    def ban_eos(self, log_probs: torch.Tensor, sentences: list[int], states: list[State], ending: list[bool]):
        """log_probs (N, V) with EOS made -inf, in place, in each row r whose sentence
        `sentences[r]` has an unmet constraint, unless `ending[r]` (past its length limit: it must
        end all the same)."""
        banned = [
            r
            for r, b in enumerate(sentences)
            if self.constraints[b] and not ending[r] and states[r].met != self.all_met[b]
        ]
        if banned:
            log_probs[torch.tensor(banned, device=log_probs.device), EOS] = float("-inf")
        return log_probs

    def allocate(
        self,
        active: list[int],
        states: list[State],
        scores: torch.Tensor,
        log_probs: torch.Tensor,
        top: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Each constrained sentence's candidates in the order beam search takes them.

        active: the batch's sentence of each of the n beams; states: (n*K) rows'; scores (n, K);
        log_probs (n*K, V); top: the best extensions by score, (scores, rows, tokens), each
        (n, W). Returns (scores, rows, tokens, priority), each (n, W): the first W candidates of a
        constrained sentence by dynamic beam allocation, with priority falling along them (-inf
        for padding); an unconstrained sentence's as given, priority = score."""
        top_scores, top_rows, top_tokens = top
        K = scores.size(1)
        todo = [i for i, b in enumerate(active) if self.constraints[b]]
        if not todo:
            return top_scores, top_rows, top_tokens, top_scores
        asked = self._asked(todo, active, states, scores, log_probs)
        pairs = torch.tensor([pair for i in todo for pair in asked[i]], dtype=torch.long).to(log_probs.device)
        values = iter(log_probs[pairs[:, 0], pairs[:, 1]].tolist())  # one gather, one copy to the host
        row_scores = scores.view(-1).tolist()
        host = [t[todo].tolist() for t in top]  # the todo sentences' best extensions: lists, by position
        W, out = top_scores.size(1), ([], [], [], [])
        for at, i in enumerate(todo):
            found = {(r, y): v for v, r, y in zip(*(h[at] for h in host)) if v > float("-inf")}
            for row, token in asked[i]:
                value = row_scores[row] + next(values)
                if value > float("-inf"):
                    found.setdefault((row, token), value)
            chosen = self._striped(active[i], states, found)[:W]
            chosen += [((i * K, PAD), float("-inf"))] * (W - len(chosen))
            out[0].append([value for _, value in chosen])
            out[1].append([row for (row, _), _ in chosen])
            out[2].append([token for (_, token), _ in chosen])
            out[3].append(
                [float(W - j) if value > float("-inf") else float("-inf") for j, (_, value) in enumerate(chosen)]
            )
        index = torch.tensor(todo, device=top_scores.device)
        given = (top_scores, top_rows, top_tokens, top_scores)
        return tuple(t.index_put((index,), torch.tensor(o, dtype=t.dtype, device=t.device)) for t, o in zip(given, out))

    def _asked(self, todo, active, states, scores, log_probs) -> dict[int, list[tuple[int, int]]]:
        """For each constrained beam i: (row, token) of every live row's best token and of the
        tokens that advance its constraints."""
        K = scores.size(1)
        best = log_probs.argmax(dim=1).tolist()
        live = torch.isfinite(scores).tolist()
        asked = {}
        for i in todo:
            rows = [i * K + k for k in range(K) if live[i][k]]
            asked[i] = [(r, t) for r in rows for t in sorted({best[r], *self.wanted(active[i], states[r])})]
        return asked

    def _striped(self, sentence: int, states: list[State], found: dict) -> list:
        """The candidates ((row, token), summed log-prob) in dynamic beam allocation's order: by
        score within each bank of equal progress, then in turns: the first of every bank (more
        progress first), then the second of every bank, and so on."""
        bank_after, group = self._bank_after_cached, self.group[sentence]
        seen: dict[int, int] = {}
        keyed = []
        for candidate in sorted(found.items(), key=lambda item: -item[1]):
            (row, token), _ = candidate
            bank = bank_after(group, states[row], token)
            rank = seen[bank] = seen.get(bank, -1) + 1
            keyed.append((rank, -bank, len(keyed), candidate))  # len(keyed): equal keys keep the order by score
        keyed.sort()
        return [k[3] for k in keyed]

    def _bank_after(self, group: int, state: State, token: int) -> int:
        """The progress of a hypothesis in `state` extended by `token` (EOS changes nothing)."""
        return self._progress_cached(group, state if token == EOS else self._advance_cached(group, state, token))
