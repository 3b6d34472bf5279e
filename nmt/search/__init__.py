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
function and one table entry. Read common.py (what all share), greedy.py (greedy search and
sampling), beam.py.
"""

from __future__ import annotations

from collections.abc import Callable

from nmt import submodules_on_use
from nmt.search.beam import BeamStep, beam_search
from nmt.search.common import (
    Hypothesis,
    SearchModel,
    SearchOptions,
    length_penalty,
    max_lengths,
    sequence_log_probs,
)
from nmt.search.greedy import greedy, sample, sample_seed

# strategy name -> function; see the module docstring
STRATEGIES: dict[str, Callable[..., list[list[Hypothesis]]]] = {"greedy": greedy, "beam": beam_search, "sample": sample}

__all__ = [
    "BeamStep",
    "STRATEGIES",
    "Hypothesis",
    "SearchModel",
    "SearchOptions",
    "beam_search",
    "greedy",
    "length_penalty",
    "max_lengths",
    "sample",
    "sample_seed",
    "sequence_log_probs",
]


__getattr__ = submodules_on_use(__name__)  # `nmt.ROOM.MODULE` after `import nmt`
