"""One token at a time: greedy search and sampling, one loop that differs only in how the next
token is chosen."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import torch

from nmt.data.tokenizer import BOS, EOS, PAD
from nmt.search.common import Hypothesis, SearchModel, SearchOptions, forbid_specials, only_eos


def _token_by_token(
    model: SearchModel,
    src: torch.Tensor,
    src_lengths: torch.Tensor,
    max_len: torch.Tensor,
    options: SearchOptions,
    choose: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
) -> list[list[Hypothesis]]:
    """One output per sentence, one token per step: `choose` maps the step's log-probabilities
    (N, V) and the sentence of each row (N,) to the next tokens (N,). A sentence leaves the
    batch as soon as it produced EOS."""
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
        log_probs = only_eos(forbid_specials(log_probs, options.no_unk), limit <= t)
        if options.prefix_rule is not None:
            log_probs = options.prefix_rule.allowed(log_probs, alive.tolist(), tokens[alive, :t].cpu())
        prev = choose(log_probs, alive)
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
    return Hypothesis(row[: T - 1], log_prob, options.search_score(log_prob, T), a)


@torch.inference_mode()
def greedy(
    model: SearchModel,
    src: torch.Tensor,
    src_lengths: torch.Tensor,
    max_len: torch.Tensor,
    options: SearchOptions = SearchOptions(),
) -> list[list[Hypothesis]]:
    """Pick the most probable token at every step. src: (B, S); max_len: (B,). One hypothesis each."""
    return _token_by_token(
        model, src, src_lengths, max_len, options, lambda log_probs, _: log_probs.max(dim=-1).indices
    )


@torch.inference_mode()
def sample(
    model: SearchModel,
    src: torch.Tensor,
    src_lengths: torch.Tensor,
    max_len: torch.Tensor,
    options: SearchOptions = SearchOptions(),
) -> list[list[Hypothesis]]:
    """Draw y_t ~ softmax(z_t / temperature) at every step, among the top_k tokens (0: all),
    never the unknown token (as if it were drawn again whenever it came up).

    One sample per row of src (repeat rows for several samples); row b draws from its own
    generator, seeded with options.seeds[b], so a row's sample depends on its seed alone, not on
    the other rows or the batch. The draw is the exponential race that torch.multinomial runs:
    argmax_v p_v / E_v with E_v ~ Exp(1). The hypotheses carry the model's own log-probabilities
    (temperature 1, no top-k), so samples and beam outputs are scored alike. As the temperature
    goes to 0 sampling becomes greedy search.
    """
    if len(options.seeds) != src.size(0):
        raise ValueError(f"sample: {src.size(0)} rows but {len(options.seeds)} seeds")
    generators = [torch.Generator(device=src.device).manual_seed(seed) for seed in options.seeds]

    def draw(log_probs: torch.Tensor, alive: torch.Tensor) -> torch.Tensor:
        z = forbid_specials(log_probs.clone(), unk=True) / options.temperature
        if options.top_k:
            kth = z.topk(min(options.top_k, z.size(-1)), dim=-1).values[:, -1:]
            z = z.masked_fill(z < kth, float("-inf"))
        race = torch.stack([torch.empty_like(z[0]).exponential_(generator=generators[b]) for b in alive.tolist()])
        return (torch.softmax(z, dim=-1) / race).argmax(dim=-1)

    return _token_by_token(model, src, src_lengths, max_len, options, draw)


def sample_seed(seed: int, line: int, copy: int) -> int:
    """The seed of the `copy`-th sample of input line `line` (from 0), from the user's seed:
    a hash, so that neighbouring lines and seeds get unrelated streams. 63 bits."""
    digest = hashlib.sha256(f"{seed}:{line}:{copy}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1
