"""Search: greedy search, beam search with length normalisation, and sampling, batched over sentences.

A hypothesis y_1..y_T ends with EOS (counted in T). Beam search ranks finished hypotheses by

    score(y) = (1 / lp(T)) * sum_t log P(y_t | y_<t, x),   lp(T) = T^alpha            ("average")
                                                           lp(T) = ((5 + T) / 6)^alpha  ("gnmt")

so alpha = 0 is the raw log-probability and alpha = 1 the per-token average. A sentence may
produce at most `max_len` tokens before EOS; the step after that allows only EOS.

Every strategy has one signature and is found by name in `STRATEGIES`:

    strategy(model, src (B, S), src_lengths (B,), max_len (B,), options) -> B lists of Hypothesis

where the model is anything that keeps the small `SearchModel` protocol (`encode`, `step`,
`select`): a Seq2Seq, or anything else that scores the next token. A new strategy is one
function and one table entry.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from nmt.data.tokenizer import BOS, EOS, PAD


class SearchModel(Protocol):
    """What search needs from a model. `memory` and `state` are the model's own (search only
    passes them back and selects rows of them); log-probabilities are fp32."""

    def encode(self, src: torch.Tensor, src_lengths: torch.Tensor) -> tuple[Any, Any]:
        """src (B, S), src_lengths (B,) -> (memory, initial state), one row per sentence."""
        ...

    def step(self, prev: torch.Tensor, memory: Any, state: Any) -> tuple[torch.Tensor, Any, torch.Tensor]:
        """prev (N,) tokens -> log P(y_t | y_<t, x) (N, V), the new state, attention weights (N, S)."""
        ...

    def select(self, rows: Any, index: torch.Tensor) -> Any:
        """Rows `index` (N',) of a memory or a state."""
        ...


@dataclass
class Hypothesis:
    """One output: tokens without EOS, its summed log-probability, its normalised score,
    and (on request) the attention weights, one row per output token incl. EOS: (T, S)."""

    tokens: list[int]
    log_prob: float
    score: float
    attention: torch.Tensor | None = None


@dataclass(frozen=True)
class SearchOptions:
    """How to search. beam_size: hypotheses per sentence (beam); alpha and length_penalty: the
    score's lp(T) (all strategies report scores); n_best: outputs per sentence (beam);
    attention: return each output's weights; temperature, top_k, generator: sampling."""

    beam_size: int = 1
    alpha: float = 0.0
    length_penalty: str = "average"
    n_best: int = 1
    attention: bool = False
    temperature: float = 1.0
    top_k: int = 0
    generator: torch.Generator | None = None

    def score(self, log_prob: float, length: int) -> float:
        """The normalised score of a hypothesis of `length` tokens (EOS included)."""
        return log_prob / length_penalty(length, self.alpha, self.length_penalty)


def length_penalty(length: int | torch.Tensor, alpha: float, kind: str = "average"):
    """lp(T): T^alpha or ((5 + T) / 6)^alpha."""
    if kind == "gnmt":
        return ((5 + length) / 6) ** alpha
    return length**alpha


def max_lengths(src_lengths: torch.Tensor, ratio: float, offset: int) -> torch.Tensor:
    """Most tokens (before EOS) each output may have: ratio * source length + offset, (B,) long."""
    return (src_lengths.float() * ratio).long() + offset


def _only_eos(log_probs: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """log_probs (N, V) with every token but EOS forbidden in rows where `rows` (N,) is True.
    `rows` lives on the CPU (no device synchronisation to test it).

    The forced EOS keeps the model's log-probability, so scores stay the model's scores."""
    if not rows.any():
        return log_probs
    rows = rows.to(log_probs.device)
    forced = torch.full_like(log_probs, float("-inf"))
    forced[:, EOS] = log_probs[:, EOS]
    return torch.where(rows.unsqueeze(1), forced, log_probs)


def _forbid_specials(log_probs: torch.Tensor) -> torch.Tensor:
    log_probs[:, PAD] = float("-inf")
    log_probs[:, BOS] = float("-inf")
    return log_probs


# --- one token at a time: greedy search and sampling ------------------------------------------


def _token_by_token(
    model: SearchModel,
    src: torch.Tensor,
    src_lengths: torch.Tensor,
    max_len: torch.Tensor,
    options: SearchOptions,
    choose: Callable[[torch.Tensor], torch.Tensor],
) -> list[list[Hypothesis]]:
    """One output per sentence, one token per step: `choose` maps the step's log-probabilities
    (N, V) to the next tokens (N,). A sentence leaves the batch as soon as it produced EOS."""
    device, B, steps = src.device, src.size(0), int(max_len.max()) + 1
    memory, state = model.encode(src, src_lengths)
    limit = max_len.cpu()  # of the sentences still in the batch
    alive = torch.arange(B, device=device)  # sentence of each row
    prev = torch.full((B,), BOS, dtype=torch.long, device=device)
    tokens = torch.full((B, steps), PAD, dtype=torch.long, device=device)
    attn = torch.zeros(B, steps, src.size(1), device=device) if options.attention else None
    log_prob = torch.zeros(B, device=device)
    for t in range(steps):
        log_probs, state, weights = model.step(prev, memory, state)
        log_probs = _only_eos(_forbid_specials(log_probs), limit <= t)
        prev = choose(log_probs)
        tokens[alive, t] = prev
        log_prob[alive] += log_probs.gather(1, prev.unsqueeze(1)).squeeze(1)
        if attn is not None:
            attn[alive, t] = weights.float()
        going = (prev != EOS).cpu()
        if not going.all():
            if not going.any():
                break
            keep = going.nonzero().squeeze(1)
            limit, keep = limit[keep], keep.to(device)
            alive, prev = alive[keep], prev[keep]
            memory, state = model.select(memory, keep), model.select(state, keep)
    return [
        [_hypothesis(row, float(log_prob[b]), attn, b, src_lengths, options)] for b, row in enumerate(tokens.tolist())
    ]


def _hypothesis(
    row: list[int],
    log_prob: float,
    attn: torch.Tensor | None,
    b: int,
    src_lengths: torch.Tensor,
    options: SearchOptions,
) -> Hypothesis:
    """Sentence b's output from its row of tokens (ending with EOS, then PAD) and, if kept, its
    attention (B, steps, S): cut to its T output steps and its own source length."""
    T = row.index(EOS) + 1
    a = attn[b, :T, : int(src_lengths[b])] if attn is not None else None
    return Hypothesis(row[: T - 1], log_prob, options.score(log_prob, T), a)


@torch.inference_mode()
def greedy(
    model: SearchModel,
    src: torch.Tensor,
    src_lengths: torch.Tensor,
    max_len: torch.Tensor,
    options: SearchOptions = SearchOptions(),
) -> list[list[Hypothesis]]:
    """Pick the most probable token at every step. src: (B, S); max_len: (B,). One hypothesis each."""
    return _token_by_token(model, src, src_lengths, max_len, options, lambda log_probs: log_probs.max(dim=-1).indices)


@torch.inference_mode()
def sample(
    model: SearchModel,
    src: torch.Tensor,
    src_lengths: torch.Tensor,
    max_len: torch.Tensor,
    options: SearchOptions = SearchOptions(),
) -> list[list[Hypothesis]]:
    """Draw y_t ~ softmax(z_t / temperature) at every step, among the top_k tokens (0: all).

    One sample per row of src (repeat rows for several samples). The hypotheses carry the
    model's own log-probabilities (temperature 1, no top-k), so samples and beam outputs are
    scored alike. As the temperature goes to 0 sampling becomes greedy search.
    """

    def draw(log_probs: torch.Tensor) -> torch.Tensor:
        z = log_probs / options.temperature
        if options.top_k:
            kth = z.topk(min(options.top_k, z.size(-1)), dim=-1).values[:, -1:]
            z = z.masked_fill(z < kth, float("-inf"))
        return torch.multinomial(torch.softmax(z, dim=-1), 1, generator=options.generator).squeeze(1)

    return _token_by_token(model, src, src_lengths, max_len, options, draw)


@torch.inference_mode()
def sequence_log_probs(
    model: torch.nn.Module, src: torch.Tensor, src_lengths: torch.Tensor, tgt_in: torch.Tensor, tgt_out: torch.Tensor
) -> torch.Tensor:
    """log P(y | x) of given outputs (EOS included), as search scores them: (B,).

    Forced decoding with the model's teacher-forced logits: tgt_in (B, T) starts with BOS,
    tgt_out (B, T) ends with EOS, PAD after it.
    """
    log_probs = torch.log_softmax(model(src, src_lengths, tgt_in).float(), dim=-1)
    picked = log_probs.gather(2, tgt_out.unsqueeze(2)).squeeze(2)  # (B, T)
    return picked.masked_fill(tgt_out == PAD, 0.0).sum(dim=1)


# --- beam search ---------------------------------------------------------------------------------


@dataclass
class _Beams:
    """The live part of a batched beam search: n active sentences, K rows (hypotheses) each.

    active: the original index of each active sentence; scores: (n, K) summed log-probs of the
    rows' hypotheses; history: (n*K, t) their tokens so far, on the host; prev: (n*K,) their
    last tokens; limit: (n,) max lengths, on the host; memory and state: the model's, one row
    per hypothesis (the K rows of a sentence share its memory and stay in its block);
    attention: one (n*K, S) tensor of weights per step so far, aligned with the rows (or None).
    """

    active: list[int]
    scores: torch.Tensor
    history: torch.Tensor
    prev: torch.Tensor
    limit: torch.Tensor
    memory: Any
    state: Any
    attention: list[torch.Tensor] | None

    def reorder(
        self,
        model: SearchModel,
        state: Any,
        rows: torch.Tensor,
        rows_host: torch.Tensor,
        tokens: torch.Tensor,
        scores: torch.Tensor,
    ) -> None:
        """The next beam: row i continues old row rows[i] (same sentence) with token tokens[i]
        (host, (n*K,)); scores (n, K). Reordering within blocks changes states, never memory."""
        self.scores = scores
        self.history = torch.cat([self.history[rows_host], tokens.unsqueeze(1)], dim=1)
        self.state = model.select(state, rows)
        if self.attention is not None:
            self.attention = [a[rows] for a in self.attention]

    def keep(self, model: SearchModel, keep: list[int], K: int) -> None:
        """Only the active sentences at positions `keep` (the others are done)."""
        keep_host = torch.tensor(keep, dtype=torch.long)
        keep_rows_host = (keep_host.unsqueeze(1) * K + torch.arange(K)).view(-1)
        device = self.scores.device
        keep_t, keep_rows = keep_host.to(device), keep_rows_host.to(device)
        self.active = [self.active[i] for i in keep]
        self.scores, self.limit = self.scores[keep_t], self.limit[keep_host]
        self.prev, self.history = self.prev[keep_rows], self.history[keep_rows_host]
        self.memory, self.state = model.select(self.memory, keep_rows), model.select(self.state, keep_rows)
        if self.attention is not None:
            self.attention = [a[keep_rows] for a in self.attention]


def _to_host(*tensors: torch.Tensor) -> list[torch.Tensor]:
    """The (n, k_i) tensors on the host as float64, through ONE device-to-host copy.

    On a GPU every .cpu() or .tolist() waits for the device to finish its queue; beam search's
    bookkeeping needs six small tensors per step, so they travel together: concatenated as
    float64 (exact for fp32 scores and for indices below 2^53), copied once, split again."""
    host = torch.cat([t.double() for t in tensors], dim=1).cpu()
    return list(host.split([t.size(1) for t in tensors], dim=1))


@torch.inference_mode()
def beam_search(
    model: SearchModel,
    src: torch.Tensor,
    src_lengths: torch.Tensor,
    max_len: torch.Tensor,
    options: SearchOptions = SearchOptions(beam_size=5, alpha=1.0),
) -> list[list[Hypothesis]]:
    """Beam search over a batch of B sentences with K = options.beam_size hypotheses each.

    Each step ranks the K*V extensions of every sentence's beam by summed log-probability and
    looks at the best 2K. Among the best K of those, an extension ending in EOS is a finished
    hypothesis (scored with the length penalty); the K best extensions that do not end in EOS
    form the next beam. A sentence is done, and leaves the batch, when it reached its maximum
    length or when it has K finished hypotheses and its best unfinished one is no more probable
    than any of them (see `_settled`). Returns the n_best finished hypotheses of each sentence,
    best first.
    """
    K, device, B = options.beam_size, src.device, src.size(0)
    memory, state = model.encode(src, src_lengths)
    rows = torch.arange(B, device=device).repeat_interleave(K)  # sentence of each row
    scores = torch.full((B, K), float("-inf"), device=device)
    scores[:, 0] = 0.0  # start from one hypothesis per sentence
    beams = _Beams(
        list(range(B)),
        scores,
        torch.full((B * K, 0), BOS, dtype=torch.long),
        torch.full((B * K,), BOS, dtype=torch.long, device=device),
        max_len.cpu(),
        model.select(memory, rows),
        model.select(state, rows),
        [] if options.attention else None,
    )
    finished: list[list[Hypothesis]] = [[] for _ in range(B)]
    t = 0
    while beams.active:
        t += 1
        best_alive = _beam_step(model, beams, finished, t, src_lengths, options)
        keep = [
            i
            for i, b in enumerate(beams.active)
            if t <= int(beams.limit[i]) and not _settled(finished[b], best_alive[i], K)
        ]
        if len(keep) < len(beams.active):
            beams.keep(model, keep, K)
    return [sorted(f, key=lambda h: -h.score)[: options.n_best] for f in finished]


def _beam_step(
    model: SearchModel,
    beams: _Beams,
    finished: list[list[Hypothesis]],
    t: int,
    src_lengths: torch.Tensor,
    options: SearchOptions,
) -> list[float]:
    """Output step t of every active sentence: extend, collect the finished hypotheses, form the
    next beam. Returns each sentence's best unfinished summed log-probability."""
    K, n = options.beam_size, len(beams.active)
    log_probs, state, weights = model.step(beams.prev, beams.memory, beams.state)
    log_probs = _only_eos(_forbid_specials(log_probs), (beams.limit < t).repeat_interleave(K))
    V = log_probs.size(-1)
    candidates = (beams.scores.unsqueeze(2) + log_probs.view(n, K, V)).view(n, K * V)
    top_scores, top_ids = candidates.topk(min(2 * K, K * V), dim=1)  # (n, 2K)
    top_beam, top_token = top_ids // V, top_ids % V
    flat_beam = top_beam + torch.arange(n, device=top_ids.device).unsqueeze(1) * K  # row in the batch
    # the next beam: the K best extensions that do not end in EOS
    alive_scores, pick = top_scores.masked_fill(top_token == EOS, float("-inf")).topk(K, dim=1)  # (n, K)
    chosen_rows = flat_beam.gather(1, pick).view(-1)
    beams.prev = top_token.gather(1, pick).view(-1)
    h_scores, h_rows, h_tokens, h_best_alive, h_chosen, h_prev = _to_host(
        top_scores, flat_beam, top_token, alive_scores[:, :1], chosen_rows.view(n, K), beams.prev.view(n, K)
    )
    if beams.attention is not None:
        beams.attention.append(weights)  # aligned with the current rows
    _collect_finished(beams, finished, h_scores[:, :K], h_rows[:, :K], h_tokens[:, :K], t, src_lengths, options)
    beams.reorder(model, state, chosen_rows, h_chosen.long().view(-1), h_prev.long().view(-1), alive_scores)
    return h_best_alive.view(-1).tolist()


def _collect_finished(
    beams: _Beams,
    finished: list[list[Hypothesis]],
    scores: torch.Tensor,
    rows: torch.Tensor,
    tokens: torch.Tensor,
    t: int,
    src_lengths: torch.Tensor,
    options: SearchOptions,
) -> None:
    """The extensions among each sentence's best K (host tensors (n, K): summed log-prob, row,
    token) that end in EOS with a finite score are finished hypotheses of length t."""
    for i, r in ((tokens == EOS) & torch.isfinite(scores)).nonzero().tolist():
        row, lp = int(rows[i, r]), float(scores[i, r])
        att = None
        if beams.attention is not None:
            att = torch.stack([a[row] for a in beams.attention])[:, : int(src_lengths[beams.active[i]])]
        finished[beams.active[i]].append(Hypothesis(beams.history[row].tolist(), lp, options.score(lp, t), att))


def _settled(finished: list[Hypothesis], best_alive: float, K: int) -> bool:
    """Whether a sentence's search can stop: it has K finished hypotheses and its best
    unfinished one (summed log-prob `best_alive`) is already no more probable than each of
    the K best finished ones. Keeps only the K best finished hypotheses.

    Exact for alpha = 0, where log-probabilities only fall as hypotheses grow. With alpha > 0 a
    longer hypothesis could still win on the normalised score; stopping here is the usual
    heuristic, and it makes a beam of one exactly greedy search.
    """
    if len(finished) < K:
        return False
    finished.sort(key=lambda h: -h.score)
    del finished[K:]
    return best_alive <= min(h.log_prob for h in finished)


# strategy name -> function; see the module docstring
STRATEGIES: dict[str, Callable[..., list[list[Hypothesis]]]] = {"greedy": greedy, "beam": beam_search, "sample": sample}
