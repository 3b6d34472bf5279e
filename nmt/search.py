"""Search: greedy and beam search with length normalisation, batched over sentences.

A hypothesis y_1..y_T ends with EOS (counted in T). Beam search ranks finished hypotheses by

    score(y) = (1 / lp(T)) * sum_t log P(y_t | y_<t, x),   lp(T) = T^alpha            ("average")
                                                           lp(T) = ((5 + T) / 6)^alpha  ("gnmt")

so alpha = 0 is the raw log-probability and alpha = 1 the per-token average. A sentence may
produce at most `max_len` tokens before EOS; the step after that allows only EOS.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from nmt.data.tokenizer import BOS, EOS, PAD
from nmt.model import Seq2Seq


@dataclass
class Hypothesis:
    """One output: tokens without EOS, its summed log-probability, its normalised score,
    and (on request) the attention weights, one row per output token incl. EOS: (T, S)."""

    tokens: list[int]
    log_prob: float
    score: float
    attention: torch.Tensor | None = None


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


@torch.inference_mode()
def greedy(model: Seq2Seq, src: torch.Tensor, src_lengths: torch.Tensor, max_len: torch.Tensor,
           alpha: float = 0.0, kind: str = "average", return_attention: bool = False) -> list[list[Hypothesis]]:
    """Pick the most probable token at every step. src: (B, S); max_len: (B,). One hypothesis each.

    A sentence leaves the batch as soon as it produced EOS.
    """
    device, B, steps = src.device, src.size(0), int(max_len.max()) + 1
    memory, state = model.encode(src, src_lengths)
    limit = max_len.cpu()  # of the sentences still in the batch
    alive = torch.arange(B, device=device)  # sentence of each row
    prev = torch.full((B,), BOS, dtype=torch.long, device=device)
    tokens = torch.full((B, steps), PAD, dtype=torch.long, device=device)
    attn = torch.zeros(B, steps, src.size(1), device=device) if return_attention else None
    log_prob = torch.zeros(B, device=device)
    for t in range(steps):
        log_probs, state, weights = model.step(prev, memory, state)
        best, prev = _only_eos(_forbid_specials(log_probs), limit <= t).max(dim=-1)
        tokens[alive, t] = prev
        log_prob[alive] += best
        if return_attention:
            attn[alive, t] = weights.float()
        going = (prev != EOS).cpu()
        if not going.all():
            if not going.any():
                break
            keep = going.nonzero().squeeze(1)
            limit, keep = limit[keep], keep.to(device)
            alive, prev = alive[keep], prev[keep]
            memory, state = memory.select(keep), state.select(keep)
    results = []
    for b, row in enumerate(tokens.tolist()):
        T = row.index(EOS) + 1
        a = attn[b, :T, : int(src_lengths[b])] if return_attention else None
        lp = float(log_prob[b])
        results.append([Hypothesis(row[: T - 1], lp, lp / length_penalty(T, alpha, kind), a)])
    return results


@torch.inference_mode()
def sample(model: Seq2Seq, src: torch.Tensor, src_lengths: torch.Tensor, max_len: torch.Tensor,
           temperature: float = 1.0, top_k: int = 0, generator: torch.Generator | None = None,
           alpha: float = 0.0, kind: str = "average") -> list[list[Hypothesis]]:
    """Draw y_t ~ softmax(z_t / temperature) at every step, among the top_k tokens (0: all).

    One sample per row of src (repeat rows for several samples). The hypotheses carry the
    model's own log-probabilities (temperature 1, no top-k), so samples and beam outputs are
    scored alike. As the temperature goes to 0 sampling becomes greedy search.
    """
    device, B, steps = src.device, src.size(0), int(max_len.max()) + 1
    memory, state = model.encode(src, src_lengths)
    limit = max_len.cpu()
    prev = torch.full((B,), BOS, dtype=torch.long, device=device)
    tokens = torch.full((B, steps), PAD, dtype=torch.long, device=device)
    log_prob = torch.zeros(B, device=device)
    done = torch.zeros(B, dtype=torch.bool, device=device)
    for t in range(steps):
        log_probs, state, _ = model.step(prev, memory, state)
        log_probs = _only_eos(_forbid_specials(log_probs), limit <= t)
        z = log_probs / temperature
        if top_k:
            kth = z.topk(min(top_k, z.size(-1)), dim=-1).values[:, -1:]
            z = z.masked_fill(z < kth, float("-inf"))
        prev = torch.multinomial(torch.softmax(z, dim=-1), 1, generator=generator).squeeze(1)
        prev = prev.masked_fill(done, PAD)
        log_prob += log_probs.gather(1, prev.unsqueeze(1)).squeeze(1).masked_fill(done, 0.0)
        tokens[:, t] = prev
        done |= prev == EOS
        if bool(done.all()):
            break
    results = []
    for b, row in enumerate(tokens.tolist()):
        T = row.index(EOS) + 1
        lp = float(log_prob[b])
        results.append([Hypothesis(row[: T - 1], lp, lp / length_penalty(T, alpha, kind))])
    return results


@torch.inference_mode()
def sequence_log_probs(model: Seq2Seq, src: torch.Tensor, src_lengths: torch.Tensor,
                       tgt_in: torch.Tensor, tgt_out: torch.Tensor) -> torch.Tensor:
    """log P(y | x) of given outputs (EOS included), as search scores them: (B,).

    Forced decoding: tgt_in (B, T) starts with BOS, tgt_out (B, T) ends with EOS, PAD after it.
    """
    log_probs = torch.log_softmax(model(src, src_lengths, tgt_in).float(), dim=-1)
    picked = log_probs.gather(2, tgt_out.unsqueeze(2)).squeeze(2)  # (B, T)
    return picked.masked_fill(tgt_out == PAD, 0.0).sum(dim=1)


@torch.inference_mode()
def beam_search(model: Seq2Seq, src: torch.Tensor, src_lengths: torch.Tensor, max_len: torch.Tensor,
                beam_size: int, alpha: float = 1.0, kind: str = "average", n_best: int = 1,
                return_attention: bool = False) -> list[list[Hypothesis]]:
    """Beam search over a batch of B sentences with K = beam_size hypotheses each.

    Each step ranks the K*V extensions of every sentence's beam by summed log-probability and
    looks at the best 2K. Among the best K of those, an extension ending in EOS is a finished
    hypothesis (scored with the length penalty); the K best extensions that do not end in EOS
    form the next beam. A sentence is done, and leaves the batch, when it reached its maximum
    length or when it has K finished hypotheses and its best unfinished one is no more probable
    than any of them (see `_settled`). Returns the n_best finished hypotheses of each sentence,
    best first.
    """
    K, device = beam_size, src.device
    memory, state = model.encode(src, src_lengths)
    B = src.size(0)
    rows = torch.arange(B, device=device).repeat_interleave(K)  # sentence of each row
    memory, state = memory.select(rows), state.select(rows)
    active = list(range(B))  # original sentence index of each active sentence
    scores = torch.full((B, K), float("-inf"), device=device)
    scores[:, 0] = 0.0  # start from one hypothesis per sentence
    history = torch.full((B * K, 0), BOS, dtype=torch.long)  # tokens of each row, on the host
    attn_history = [] if return_attention else None
    prev = torch.full((B * K,), BOS, dtype=torch.long, device=device)
    limit = max_len.cpu()  # of the sentences still in the batch
    finished: list[list[Hypothesis]] = [[] for _ in range(B)]
    t = 0
    while active:
        t += 1
        n = len(active)
        log_probs, state, weights = model.step(prev, memory, state)
        log_probs = _forbid_specials(log_probs)
        log_probs = _only_eos(log_probs, (limit < t).repeat_interleave(K))
        V = log_probs.size(-1)
        candidates = (scores.unsqueeze(2) + log_probs.view(n, K, V)).view(n, K * V)
        top_scores, top_ids = candidates.topk(min(2 * K, K * V), dim=1)  # (n, 2K)
        top_beam, top_token = top_ids // V, top_ids % V
        flat_beam = top_beam + torch.arange(n, device=device).unsqueeze(1) * K  # row in the batch
        # the next beam: the K best extensions that do not end in EOS
        alive_scores, pick = top_scores.masked_fill(top_token == EOS, float("-inf")).topk(K, dim=1)  # (n, K)
        chosen_rows = flat_beam.gather(1, pick).view(-1)
        prev = top_token.gather(1, pick).view(-1)
        # the bookkeeping below runs on the host, from one copy per step (the only wait for the GPU)
        host = torch.cat([top_scores.double(), flat_beam.double(), top_token.double(), alive_scores[:, :1].double(),
                          chosen_rows.view(n, K).double(), prev.view(n, K).double()], dim=1).cpu()
        h_scores, h_rows, h_tokens, h_best_alive, h_chosen, h_prev = host.split([top_ids.size(1)] * 3 + [1, K, K], dim=1)

        if return_attention:
            attn_history.append(weights)  # every entry is aligned with the current rows
        # finished hypotheses: EOS among the best K, with a finite score
        is_eos = (h_tokens[:, :K] == EOS) & torch.isfinite(h_scores[:, :K])
        for i, r in is_eos.nonzero().tolist():
            row, lp = int(h_rows[i, r]), float(h_scores[i, r])
            att = None
            if return_attention:
                S = int(src_lengths[active[i]])
                att = torch.stack([a[row] for a in attn_history])[:, :S]
            finished[active[i]].append(
                Hypothesis(history[row].tolist(), lp, lp / length_penalty(t, alpha, kind), att)
            )

        scores = alive_scores
        history = torch.cat([history[h_chosen.long().view(-1)], h_prev.long().view(-1, 1)], dim=1)
        # the K rows of a sentence share its memory, and a sentence's rows stay in its block:
        # reordering within blocks changes the states, never the memory
        state = state.select(chosen_rows)
        if return_attention:
            attn_history = [a[chosen_rows] for a in attn_history]

        # drop sentences that are done
        best_alive = h_best_alive.view(-1).tolist()
        keep = [i for i, b in enumerate(active)
                if t <= int(limit[i]) and not _settled(finished[b], best_alive[i], K)]
        if len(keep) < n:
            keep_host = torch.tensor(keep, dtype=torch.long)
            keep_rows_host = (keep_host.unsqueeze(1) * K + torch.arange(K)).view(-1)
            keep_t, keep_rows = keep_host.to(device), keep_rows_host.to(device)
            active = [active[i] for i in keep]
            scores, limit = scores[keep_t], limit[keep_host]
            prev, history = prev[keep_rows], history[keep_rows_host]
            memory, state = memory.select(keep_rows), state.select(keep_rows)
            if return_attention:
                attn_history = [a[keep_rows] for a in attn_history]
    return [sorted(f, key=lambda h: -h.score)[:n_best] for f in finished]



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
