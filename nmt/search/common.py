"""What every search strategy shares: the model protocol, the options, the hypotheses, the
length penalty and the rules about special tokens; and forced decoding (`sequence_log_probs`)."""

from __future__ import annotations

import functools
from dataclasses import dataclass, fields
from typing import Any, Protocol

import torch

from nmt.data.tokenizer import BOS, EOS, PAD, UNK
from nmt.search.constraints import Constraint, ConstraintRule
from nmt.search.prefix import Prefix, PrefixRule


class SearchModel(Protocol):
    """What search needs from a model. `memory` and `state` are the model's own (search only
    passes them back and selects rows of them); log-probabilities are fp32."""

    def encode(self, src: torch.Tensor, src_lengths: torch.Tensor) -> tuple[Any, Any]:
        """src (B, S), src_lengths (B,) -> (memory, initial state), one row per sentence."""
        ...

    def step(self, prev: torch.Tensor, memory: Any, state: Any) -> tuple[torch.Tensor, Any, torch.Tensor]:
        """prev (N,) tokens -> log P(y_t | y_<t, x) (N, V), the new state, attention weights (N, S).
        The memory may hold one row per K consecutive rows of the state (N = K x its rows: beam
        search's K hypotheses of a sentence share its memory)."""
        ...

    def select(self, rows: Any, index: torch.Tensor) -> Any:
        """Rows `index` (N',) of a memory or a state."""
        ...


@dataclass
class Hypothesis:
    """One output: tokens without EOS, its summed log-probability, its normalised score,
    (on request) the attention weights, one row per output token incl. EOS: (T, S), and the
    indices of the constraints it does not meet (ended at the length limit without them)."""

    tokens: list[int]
    log_prob: float
    search_score: float
    attention: torch.Tensor | None = None
    unmet: tuple[int, ...] = ()


def ranked(h: Hypothesis) -> tuple[int, float]:
    """The sort key of finished hypotheses, best first: by the constraints they lack (none
    first), then by search score."""
    return (len(h.unmet), -h.search_score)


@dataclass(frozen=True)
class SearchOptions:
    """How to search. beam_size: hypotheses per sentence (beam); alpha and length_penalty: the
    score's lp(T) (all strategies report scores); n_best: outputs per sentence (beam);
    attention: return each output's weights; temperature, top_k and seeds (one per row of src:
    each row's own random stream, so that its samples do not depend on the other rows):
    sampling; stop: beam search's stopping rule, `exact` or `fast` (see `_settled`); no_unk:
    never output the unknown token (sampling never draws it in any case); prefixes and pieces:
    what each row's output must begin with (greedy and beam search, `prefix_rule`);
    constraints: the phrases each row's output must contain (beam search, `constraint_rule`)."""

    beam_size: int = 1
    alpha: float = 0.0
    length_penalty: str = "average"
    n_best: int = 1
    attention: bool = False
    temperature: float = 1.0
    top_k: int = 0
    seeds: tuple[int, ...] = ()
    stop: str = "exact"
    no_unk: bool = False
    prefixes: tuple[Prefix, ...] = ()
    pieces: tuple[str, ...] = ()
    constraints: tuple[tuple[Constraint, ...], ...] = ()

    @functools.cached_property
    def constraint_rule(self) -> ConstraintRule | None:
        """The rule of `constraints` (one tuple per row of src: phrases each output must contain,
        see nmt.search.constraints); None when no row has any."""
        return ConstraintRule(self.constraints) if any(self.constraints) else None

    @functools.cached_property
    def prefix_rule(self) -> PrefixRule | None:
        """The rule of `prefixes` (one per row of src: what each output must begin with, see
        nmt.search.prefix) over the target vocabulary `pieces`; None when no row has one."""
        return PrefixRule(self.prefixes, self.pieces) if any(self.prefixes) else None

    @classmethod
    def of(cls, decoding: Any, **given: Any) -> SearchOptions:
        """The options of a decoding config section (nmt.config.DecodingConfig): every field the
        two share, by name, with the `given` values on top. A new search option is a field
        here and one there, nothing between."""
        shared = {f.name for f in fields(cls)} & {f.name for f in fields(decoding)}
        return cls(**{**{name: getattr(decoding, name) for name in shared}, **given})

    def search_score(self, log_prob: float, length: int) -> float:
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


def only_eos(log_probs: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """log_probs (N, V) with every token but EOS forbidden in rows where `rows` (N,) is True.
    `rows` lives on the CPU (no device synchronisation to test it).

    The forced EOS keeps the model's log-probability, so scores stay the model's scores."""
    if not rows.any():
        return log_probs
    rows = rows.to(log_probs.device)
    forced = torch.full_like(log_probs, float("-inf"))
    forced[:, EOS] = log_probs[:, EOS]
    return torch.where(rows.unsqueeze(1), forced, log_probs)


def forbid_specials(log_probs: torch.Tensor, unk: bool = False) -> torch.Tensor:
    """log_probs (N, V) with PAD and BOS (and, if `unk`, UNK) made impossible, in place."""
    log_probs[:, PAD] = float("-inf")
    log_probs[:, BOS] = float("-inf")
    if unk:
        log_probs[:, UNK] = float("-inf")
    return log_probs


@torch.inference_mode()
def sequence_log_probs(
    model: torch.nn.Module, src: torch.Tensor, src_lengths: torch.Tensor, tgt_in: torch.Tensor, tgt_out: torch.Tensor
) -> torch.Tensor:
    """log P(y | x) of given outputs (EOS included), as search scores them: (B,).

    Forced decoding with the model's teacher-forced logits: tgt_in (B, T) starts with BOS,
    tgt_out (B, T) ends with EOS, PAD after it. A model with its own `sequence_log_probs` (an
    ensemble, nmt.translate.ensemble) computes them itself.
    """
    if hasattr(model, "sequence_log_probs"):
        return model.sequence_log_probs(src, src_lengths, tgt_in, tgt_out)
    log_probs = torch.log_softmax(model(src, src_lengths, tgt_in).float(), dim=-1)
    picked = log_probs.gather(2, tgt_out.unsqueeze(2)).squeeze(2)  # (B, T)
    return picked.masked_fill(tgt_out == PAD, 0.0).sum(dim=1)
