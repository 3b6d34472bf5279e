"""Greedy and beam search (nmt.search) checked against exact answers on tiny random models.

Every model here is a few hundred random weights, so each test runs in milliseconds; the
exact answers come from scoring sequences with teacher forcing (`Seq2Seq.forward`), which
shares no code with the search loop.
"""

from __future__ import annotations

import dataclasses
import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from nmt.config import DecodingConfig, ModelConfig
from nmt.data.batching import make_batch
from nmt.data.tokenizer import BOS, EOS, PAD, UNK
from nmt.model import Seq2Seq, build_model
from nmt.search import SearchOptions, beam_search, greedy, length_penalty, max_lengths

ATTENTIONS = ["bahdanau", "luong_general", "luong_dot"]
RNN_TYPES = ["lstm", "gru", "rnn"]
ALL_ARCHS = list(itertools.product(RNN_TYPES, ATTENTIONS))


def real_tokens(V: int) -> list[int]:
    """Ids a hypothesis may contain: UNK and everything above the specials."""
    return [UNK] + list(range(EOS + 1, V))


def tiny_model(
    seed: int,
    V: int = 7,
    rnn_type: str = "lstm",
    attention: str = "bahdanau",
    out_scale: float = 1.0,
    all_scale: float = 1.0,
    eos_shift: float = 0.0,
    **overrides,
) -> Seq2Seq:
    """A random model in eval mode. `out_scale` multiplies the output layer, `all_scale` every
    weight (more peaked, more source-dependent distributions); `eos_shift` is added to EOS's bias."""
    torch.manual_seed(seed)
    enc = 4 if attention == "luong_dot" else 8  # luong_dot: decoder size = 2 * encoder size
    cfg = ModelConfig(
        rnn_type=rnn_type,
        attention=attention,
        emb_size=8,
        enc_hidden_size=enc,
        dec_hidden_size=8,
        attention_size=8,
        dropout=0.0,
        **overrides,
    )
    model = build_model(cfg, src_vocab_size=V, tgt_vocab_size=V).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(all_scale)
        model.output.weight.mul_(out_scale)
        model.output.bias.mul_(out_scale)
        model.output.bias[EOS] += eos_shift
    return model


def random_sources(seed: int, V: int, lengths: list[int]) -> list[list[int]]:
    g = torch.Generator().manual_seed(seed)
    ids = torch.tensor(real_tokens(V))
    return [ids[torch.randint(len(ids), (n,), generator=g)].tolist() for n in lengths]


def exact_log_probs(model: Seq2Seq, src: list[int], outputs: list[list[int]]) -> torch.Tensor:
    """log P(y_1..y_T EOS | src) of every output, by teacher forcing: (N,) float64."""
    batch = make_batch([src] * len(outputs), outputs, list(range(len(outputs))))
    with torch.no_grad():
        logits = model(batch.src, batch.src_lengths, batch.tgt_in)
    lp = F.log_softmax(logits.double(), dim=-1).gather(2, batch.tgt_out.unsqueeze(2)).squeeze(2)
    return lp.masked_fill(batch.tgt_out == PAD, 0.0).sum(dim=1)


def corrupt_padding(src: torch.Tensor, lengths: torch.Tensor, V: int, seed: int) -> torch.Tensor:
    """`src` with every padded position (>= its length) set to a random non-PAD id."""
    g = torch.Generator().manual_seed(seed)
    noise = torch.randint(1, V, src.shape, generator=g)
    padded = torch.arange(src.size(1)).unsqueeze(0) >= lengths.unsqueeze(1)
    assert padded.any()
    return torch.where(padded, noise, src)


def assert_same_hyps(a, b, atol=1e-5):
    """Two search results (list over sentences of lists of Hypothesis) agree."""
    assert len(a) == len(b)
    for ha, hb in zip(a, b):
        assert [h.tokens for h in ha] == [h.tokens for h in hb]
        for x, y in zip(ha, hb):
            assert x.log_prob == pytest.approx(y.log_prob, abs=atol)
            assert x.search_score == pytest.approx(y.search_score, abs=atol)
            if x.attention is not None or y.attention is not None:
                torch.testing.assert_close(x.attention, y.attention, atol=atol, rtol=0)


def penalty(T: int, alpha: float, kind: str) -> float:
    """The answer key's length penalty, written out here (not nmt's): T^alpha, or ((5 + T)/6)^alpha."""
    return ((5 + T) / 6) ** alpha if kind == "gnmt" else T**alpha


def test_length_penalty_against_numbers_computed_by_hand():
    """lp(3) at alpha 0.7: 3^0.7 = e^(0.7 ln 3) = e^0.76903 = 2.15766; GNMT: (8/6)^0.7 = 1.22309;
    alpha 0 is no normalisation, alpha 1 the length itself (GNMT: (5 + T)/6)."""
    assert length_penalty(3, 0.7) == pytest.approx(2.15766, abs=1e-5)
    assert length_penalty(3, 0.7, "gnmt") == pytest.approx(1.22309, abs=1e-5)
    assert length_penalty(7, 0.0) == 1.0 and length_penalty(7, 1.0) == 7.0
    assert length_penalty(7, 1.0, "gnmt") == pytest.approx(2.0)
    assert SearchOptions(alpha=0.7).search_score(-3.0, 3) == pytest.approx(-3.0 / 2.15766, abs=1e-5)


# --- 1. padding --------------------------------------------------------------------------

V_PAD = 7
PAD_SRC_LENGTHS = [5, 1, 3, 0, 4]  # before EOS; 0 = EOS only


def _padding_case(rnn_type, attention):
    model = tiny_model(11, V_PAD, rnn_type, attention, out_scale=3.0)
    srcs = random_sources(12, V_PAD, PAD_SRC_LENGTHS)
    batch = make_batch(srcs, random_sources(13, V_PAD, [3, 2, 4, 1, 2]), list(range(len(srcs))))
    noisy = corrupt_padding(batch.src, batch.src_lengths, V_PAD, seed=14)
    limit = max_lengths(batch.src_lengths, 1.5, 2)
    return model, batch, noisy, limit


@pytest.mark.parametrize("rnn_type,attention", ALL_ARCHS)
def test_teacher_forced_logits_ignore_ids_at_padded_source_positions(rnn_type, attention):
    model, batch, noisy, _ = _padding_case(rnn_type, attention)
    with torch.no_grad():
        clean = model(batch.src, batch.src_lengths, batch.tgt_in)
        dirty = model(noisy, batch.src_lengths, batch.tgt_in)
    torch.testing.assert_close(dirty, clean, atol=1e-5, rtol=0)


@pytest.mark.parametrize("rnn_type,attention", ALL_ARCHS)
def test_greedy_ignores_ids_at_padded_source_positions(rnn_type, attention):
    model, batch, noisy, limit = _padding_case(rnn_type, attention)
    clean = greedy(model, batch.src, batch.src_lengths, limit, SearchOptions(attention=True))
    dirty = greedy(model, noisy, batch.src_lengths, limit, SearchOptions(attention=True))
    assert_same_hyps(dirty, clean)


@pytest.mark.parametrize("rnn_type,attention", ALL_ARCHS)
def test_beam_search_ignores_ids_at_padded_source_positions(rnn_type, attention):
    model, batch, noisy, limit = _padding_case(rnn_type, attention)
    kw = SearchOptions(beam_size=3, alpha=0.6, n_best=3, attention=True)
    clean = beam_search(model, batch.src, batch.src_lengths, limit, kw)
    dirty = beam_search(model, noisy, batch.src_lengths, limit, kw)
    assert_same_hyps(dirty, clean)


@pytest.mark.parametrize("rnn_type,attention", ALL_ARCHS)
def test_sentence_alone_equals_sentence_in_padded_batch(rnn_type, attention):
    """Logits, greedy and beam results of each sentence do not depend on its batch mates."""
    model = tiny_model(21, V_PAD, rnn_type, attention, out_scale=3.0)
    srcs = random_sources(22, V_PAD, PAD_SRC_LENGTHS)
    tgts = random_sources(23, V_PAD, [3, 2, 4, 1, 2])
    batch = make_batch(srcs, tgts, list(range(len(srcs))))
    limit = max_lengths(batch.src_lengths, 1.5, 2)  # differs per sentence: they leave the beam at different steps
    with torch.no_grad():
        logits = model(batch.src, batch.src_lengths, batch.tgt_in)
    beam_kw = SearchOptions(beam_size=3, alpha=0.6, n_best=3, attention=True)
    g_batch = greedy(model, batch.src, batch.src_lengths, limit, SearchOptions(attention=True))
    b_batch = beam_search(model, batch.src, batch.src_lengths, limit, beam_kw)
    for i, (s, t) in enumerate(zip(srcs, tgts)):
        one = make_batch([s], [t], [0])
        assert one.src.size(1) < batch.src.size(1) or i == 0  # the batch really pads it (but the longest)
        with torch.no_grad():
            alone = model(one.src, one.src_lengths, one.tgt_in)
        T = one.tgt_in.size(1)
        torch.testing.assert_close(logits[i, :T], alone[0], atol=1e-5, rtol=0)
        assert_same_hyps(
            greedy(model, one.src, one.src_lengths, limit[i : i + 1], SearchOptions(attention=True)), [g_batch[i]]
        )
        assert_same_hyps(beam_search(model, one.src, one.src_lengths, limit[i : i + 1], beam_kw), [b_batch[i]])


# --- 2. beam search = exhaustive search --------------------------------------------------

V_EX, L_EX = 6, 3  # real tokens UNK, 4, 5; outputs of up to 3 tokens
EX_SOURCES = [[4, 5, 1], [5], [1, 4, 4, 5, 5], [5, 5, 4, 1]]


def all_outputs(V: int, L: int) -> list[list[int]]:
    return [list(seq) for n in range(L + 1) for seq in itertools.product(real_tokens(V), repeat=n)]


# K >= every hypothesis: the beam then keeps every prefix and every finished output.
K_EX = len(all_outputs(V_EX, L_EX))  # 1 + 3 + 9 + 27 = 40


def exhaustive(model, src, alpha, kind):
    """Every output (at most L_EX tokens) with its exact log-prob and score, best first."""
    outs = all_outputs(V_EX, L_EX)
    lps = exact_log_probs(model, src, outs).tolist()
    ranked = [(o, lp, lp / penalty(len(o) + 1, alpha, kind)) for o, lp in zip(outs, lps)]
    return sorted(ranked, key=lambda r: -r[2])


EX_SEEDS = [1, 3]


def _exhaustive_case(seed):
    # weights x3 and a lower EOS: peaked distributions where empty, short and long outputs compete
    model = tiny_model(seed, V_EX, all_scale=3.0, eos_shift=-2.0)
    batch = make_batch(EX_SOURCES, None, list(range(len(EX_SOURCES))))
    return model, batch, torch.full((len(EX_SOURCES),), L_EX)


def _exhaustive_beam(seed: int, alpha: float, kind: str):
    """The exhaustive case of `seed` and a beam (K_EX) wide enough to keep every hypothesis."""
    model, batch, limit = _exhaustive_case(seed)
    options = SearchOptions(beam_size=K_EX, alpha=alpha, length_penalty=kind, n_best=K_EX)
    return model, batch, limit, beam_search(model, batch.src, batch.src_lengths, limit, options)


@pytest.mark.parametrize("kind", ["average", "gnmt"])
@pytest.mark.parametrize("alpha", [0.0, 0.6, 1.0])
@pytest.mark.parametrize("seed", EX_SEEDS)
def test_beam_search_equals_exhaustive_search(seed, alpha, kind):
    """With K >= all prefixes and max_len = L, beam search is exact: same best output, same
    score, same n-best order, and every output's log-prob is the model's. Outputs of exactly
    L tokens end with the EOS the search forces, which the model scores like any other EOS."""
    model, batch, limit, hyps = _exhaustive_beam(seed, alpha, kind)
    for src, nbest in zip(EX_SOURCES, hyps):
        exact = exhaustive(model, src, alpha, kind)
        assert nbest[0].tokens == exact[0][0]
        assert nbest[0].search_score == pytest.approx(exact[0][2], abs=1e-5)
        assert [h.tokens for h in nbest[:5]] == [e[0] for e in exact[:5]]
        for h, e in zip(nbest[:5], exact[:5]):
            assert h.search_score == pytest.approx(e[2], abs=1e-5)
        exact_lp = {tuple(e[0]): e[1] for e in exact}
        for h in nbest:
            assert h.log_prob == pytest.approx(exact_lp[tuple(h.tokens)], abs=1e-5)


@pytest.mark.parametrize("kind", ["average", "gnmt"])
@pytest.mark.parametrize("alpha", [0.0, 0.6, 1.0])
@pytest.mark.parametrize("seed", EX_SEEDS)
def test_beam_search_finds_every_output_and_ranks_them_exactly(seed, alpha, kind):
    """The same exhaustive comparison, on everything the forced EOS does not touch: with
    K >= all prefixes beam search returns every output once, sorted by score, and the outputs
    shorter than max_len come with their exact log-prob and score, in exact order."""
    model, batch, limit, hyps = _exhaustive_beam(seed, alpha, kind)
    for src, nbest in zip(EX_SOURCES, hyps):
        exact = [e for e in exhaustive(model, src, alpha, kind) if len(e[0]) < L_EX]
        assert sorted(h.tokens for h in nbest) == sorted(all_outputs(V_EX, L_EX))
        assert [h.search_score for h in nbest] == sorted((h.search_score for h in nbest), reverse=True)
        short = [h for h in nbest if len(h.tokens) < L_EX]
        assert [h.tokens for h in short] == [e[0] for e in exact]
        for h, e in zip(short, exact):
            assert h.log_prob == pytest.approx(e[1], abs=1e-5)
            assert h.search_score == pytest.approx(e[2], abs=1e-5)


def test_exhaustive_cases_are_not_trivial():
    """The exhaustive tests mean something: on these models the exact best output changes with
    the source and the length penalty, is sometimes empty, sometimes not, and is not always
    what greedy search finds."""
    bests, differs_from_greedy = set(), 0
    for seed in EX_SEEDS:
        model, batch, limit = _exhaustive_case(seed)
        g = greedy(model, batch.src, batch.src_lengths, limit)
        for src, gh in zip(EX_SOURCES, g):
            per_setting = [
                tuple(exhaustive(model, src, a, k)[0][0]) for a in [0.0, 0.6, 1.0] for k in ["average", "gnmt"]
            ]
            bests.update(per_setting)
            differs_from_greedy += per_setting[0] != tuple(gh[0].tokens)
    assert differs_from_greedy >= 2
    assert len(bests) >= 5
    assert () in bests and {len(b) for b in bests} >= {1, 2, 3}


# --- beam search = a plain reference beam search, for beams smaller than the search space -----


def next_log_probs(model: Seq2Seq, src: list[int], prefixes: list[list[int]]) -> torch.Tensor:
    """log P(. | prefix, src) for every prefix, by teacher forcing: (N, V) float64."""
    batch = make_batch([src] * len(prefixes), prefixes, list(range(len(prefixes))))
    with torch.no_grad():
        logits = model(batch.src, batch.src_lengths, batch.tgt_in)
    last = torch.tensor([len(p) for p in prefixes])
    return F.log_softmax(logits.double(), dim=-1)[torch.arange(len(prefixes)), last]


def reference_beam(model, src, max_len, K, alpha, kind, stop="fast", steps=None):
    """Beam search as the docstring of nmt.search.beam_search states it, one sentence, in
    plain Python, scoring with teacher forcing. Also returns the last step it ran.

    stop="fast": stop by the documented heuristic (raw log-probabilities). stop=None: never stop
    early; run to the forced EOS after max_len tokens, so that `finished` holds every hypothesis
    the beam ever finished (the answer key of the exact rule, without copying it). `steps`, a
    list, receives (t, the beam that goes on, the hypotheses finished at t) at every step."""
    beam, finished, t = [([], 0.0)], [], 0
    while beam:
        t += 1
        assert stop is None or t <= max_len, "the reference reached the forced EOS; use a larger max_len"
        dists = next_log_probs(model, src, [p for p, _ in beam])
        allowed = [EOS] if t > max_len else [tok for tok in range(dists.size(1)) if tok not in (PAD, BOS)]
        cands = [(s + float(d[tok]), p, tok) for (p, s), d in zip(beam, dists) for tok in allowed]
        cands.sort(key=lambda c: -c[0])
        ended = [(p, s, s / penalty(t, alpha, kind)) for s, p, tok in cands[:K] if tok == EOS]
        finished += ended
        beam = [(p + [tok], s) for s, p, tok in cands if tok != EOS][:K]
        if steps is not None:
            steps.append((t, beam, ended))
        finished.sort(key=lambda f: -f[2])
        if stop == "fast" and len(finished) >= K and beam[0][1] <= min(f[1] for f in finished[:K]):
            return finished, t
    return finished, t


@pytest.mark.parametrize("kind", ["average", "gnmt"])
@pytest.mark.parametrize("alpha", [0.0, 0.6, 1.0])
@pytest.mark.parametrize("K", [2, 3, 5])
@pytest.mark.parametrize("scale", [1.0, 1.5])
def test_beam_search_equals_reference_beam_search(scale, K, alpha, kind):
    """Small beams (not exhaustive), the fast rule: the batched search keeps the same beams,
    finishes the same hypotheses and stops at the same step as a one-sentence reference."""
    V = 7
    model = tiny_model(31, V, all_scale=scale, eos_shift=scale)  # EOS likely enough to stop early
    srcs = random_sources(32, V, [4, 1, 6, 0, 3])
    batch = make_batch(srcs, None, list(range(len(srcs))))
    limit = torch.full((len(srcs),), 30)  # never reached: the stopping rule ends every search
    options = SearchOptions(beam_size=K, alpha=alpha, length_penalty=kind, n_best=K, stop="fast")
    hyps = beam_search(model, batch.src, batch.src_lengths, limit, options)
    steps = []
    for src, nbest in zip(srcs, hyps):
        ref, t = reference_beam(model, src, 30, K, alpha, kind)
        steps.append(t)
        assert_same_nbest(nbest, ref[:K])
    assert min(steps) >= 2  # every search went past its first step


@pytest.mark.parametrize("K", [2, 3])
def test_beam_search_steps_are_those_of_the_reference_beam_search(K):
    """The trace (`on_step`, behind `nmt translate --trace`): at every step, each sentence's kept
    hypotheses and those that ended equal the plain reference's (run without stopping early: the
    search's steps are the first of the reference's), tokens and log-probabilities."""
    V, alpha, limit = 7, 0.6, 8
    model = tiny_model(31, V)
    srcs = random_sources(32, V, [4, 1, 6, 0, 3])
    batch = make_batch(srcs, None, list(range(len(srcs))))
    options = SearchOptions(beam_size=K, alpha=alpha, n_best=K)
    traced = []
    lengths = torch.full((len(srcs),), limit)
    beam_search(model, batch.src, batch.src_lengths, lengths, options, on_step=traced.append)
    for i, src in enumerate(srcs):
        expected = []
        reference_beam(model, src, limit, K, alpha, "average", stop=None, steps=expected)
        ours = [s for s in traced if s.sentence == i]
        assert [s.t for s in ours] == [t for t, _, _ in expected[: len(ours)]]
        for step, (_, beam, ended) in zip(ours, expected):
            assert [tokens for tokens, _ in step.alive] == [p for p, _ in beam]
            assert [lp for _, lp in step.alive] == pytest.approx([s for _, s in beam], abs=1e-5)
            assert_same_nbest(step.finished, ended)
    assert max(s.t for s in traced) >= 3 and sum(len(s.finished) for s in traced) >= len(srcs)


def assert_same_nbest(nbest, ref):
    assert [h.tokens for h in nbest] == [r[0] for r in ref]
    for h, r in zip(nbest, ref):
        assert h.log_prob == pytest.approx(r[1], abs=1e-5)
        assert h.search_score == pytest.approx(r[2], abs=1e-5)


@pytest.mark.parametrize("kind", ["average", "gnmt"])
@pytest.mark.parametrize("alpha", [0.0, 0.6, 1.0])
@pytest.mark.parametrize("K,n_best", [(2, 2), (3, 3), (3, 1), (3, 2)])
@pytest.mark.parametrize("scale", [1.0, 1.5])
def test_exact_stop_loses_nothing_the_beam_would_find_later(scale, K, n_best, alpha, kind):
    """The exact rule: the n-best equal the best n_best of everything the same beam finishes
    when it is never stopped early (the reference runs to the forced EOS), also when the search
    stops with fewer than K finished hypotheses because only n_best < K are asked for."""
    V, max_len = 7, 8
    model = tiny_model(31, V, all_scale=scale, eos_shift=scale)
    srcs = random_sources(32, V, [4, 1, 6, 0, 3])
    batch = make_batch(srcs, None, list(range(len(srcs))))
    limit = torch.full((len(srcs),), max_len)
    hyps = beam_search(model, batch.src, batch.src_lengths, limit, SearchOptions(K, alpha, kind, n_best=n_best))
    for src, nbest in zip(srcs, hyps):
        ref, _ = reference_beam(model, src, max_len, K, alpha, kind, stop=None)
        assert_same_nbest(nbest, ref[:n_best])


def test_the_exact_rule_stops_sooner_when_fewer_hypotheses_are_asked_for():
    """With n_best 1 the exact rule compares the bound with the best finished hypothesis, not
    the K-th: fewer model steps for the same best output."""

    class Counting:
        def __init__(self, model):
            self.model, self.steps = model, 0

        def __getattr__(self, name):
            return getattr(self.model, name)

        def step(self, *args):
            self.steps += 1
            return self.model.step(*args)

    V, K = 7, 3
    srcs = random_sources(32, V, [4, 1, 6, 0, 3])
    batch = make_batch(srcs, None, list(range(len(srcs))))
    limit = torch.full((len(srcs),), 8)
    steps, best = {}, {}
    for n_best in (K, 1):
        model = Counting(tiny_model(31, V, all_scale=1.5, eos_shift=1.5))
        options = SearchOptions(K, 1.0, n_best=n_best)
        out = [
            beam_search(model, batch.src[i : i + 1], batch.src_lengths[i : i + 1], limit[:1], options)
            for i in range(len(srcs))
        ]
        steps[n_best], best[n_best] = model.steps, [o[0][0].tokens for o in out]
    assert best[1] == best[K] and steps[1] < steps[K], steps


class TableModel:
    """A model whose next-token distribution is a fixed table keyed on the output so far (the
    `SearchModel` protocol, nothing else): prefix tuple -> {token: probability}. A prefix not in
    the table ends the output (EOS with probability 1). The state is the prefix, (N, t) tokens."""

    def __init__(self, table: dict[tuple, dict[int, float]], vocab: int):
        self.table, self.vocab = table, vocab

    def encode(self, src, src_lengths):
        return torch.zeros(src.size(0), 1), torch.zeros(src.size(0), 0, dtype=torch.long)

    def step(self, prev, memory, state):
        state = torch.cat([state, prev.unsqueeze(1)], dim=1)
        log_probs = torch.full((state.size(0), self.vocab), float("-inf"))
        for row, prefix in enumerate(state[:, 1:].tolist()):  # without BOS
            for token, p in self.table.get(tuple(prefix), {EOS: 1.0}).items():
                log_probs[row, token] = math.log(p)
        return log_probs, state, torch.zeros(state.size(0), 1)

    def select(self, rows, index):
        return rows[index]

    def exhaustive(self, max_len: int, alpha: float, kind: str) -> list[int]:
        """The output with the best normalised score among all of at most max_len tokens."""
        best, frontier = (None, float("-inf")), [((), 0.0)]
        for _ in range(max_len + 1):
            grown = []
            for prefix, lp in frontier:
                for token, p in self.table.get(prefix, {EOS: 1.0}).items():
                    if token == EOS:
                        score = (lp + math.log(p)) / penalty(len(prefix) + 1, alpha, kind)
                        best = max(best, (list(prefix), score), key=lambda b: b[1])
                    elif len(prefix) < max_len:
                        grown.append((prefix + (token,), lp + math.log(p)))
            frontier = grown
        return best[0]


A, B, C = 4, 5, 6
# the example: with K = 2 the fast rule stops at step 2 with [a] (log P -1.204, score
# -0.602 at alpha 1) while [a b] (log P -1.319, score -0.440) is one step from finishing
TABLE = {
    (): {A: 0.6, EOS: 0.28, C: 0.12},
    (A,): {EOS: 0.5, B: 0.45, C: 0.05},
    (A, B): {EOS: 0.99, B: 0.01},
    (C,): {EOS: 0.2, C: 0.8},
}


# both extensions that end at step 2 are among the best K = 2: the beam must still go on with
# the K best unfinished ones, among them [a c], the 4th best extension and the optimum at alpha 1
TABLE_TWO_ENDINGS = {
    (): {A: 0.5, B: 0.45, EOS: 0.05},
    (A,): {EOS: 0.6, C: 0.4},
    (B,): {EOS: 0.55, 7: 0.45},
    (A, C): {EOS: 0.999, C: 0.001},
    (B, 7): {EOS: 0.5, 7: 0.5},
}


@pytest.mark.parametrize("tied", [False, True])
@pytest.mark.parametrize("V", [8000, 400, 7993, 12, 2])
@pytest.mark.parametrize("n,K", [(1, 5), (13, 5), (4, 1), (3, 12)])
def test_best_extensions_are_topk_over_every_candidate(n, K, V, tied):
    """Ranking block by block (nmt.search.beam.best_extensions) gives the scores topk gives over
    all K*V extensions, and each returned id is an extension with that score: with forbidden
    tokens, rows that are not live yet (a first step), ties, and vocabularies whose size has no
    block size (7,993) or too few blocks (2)."""
    from nmt.search.beam import best_extensions

    g = torch.Generator().manual_seed(1000 * V + 10 * n + K)
    log_probs = torch.randn(n * K, V, generator=g).log_softmax(-1)
    if tied:
        log_probs = (log_probs * 2).round() / 2  # many equal values
    log_probs[:, :2] = float("-inf")  # forbidden tokens
    scores = torch.randn(n, K, generator=g).round()
    scores[0, 1:] = float("-inf")  # a sentence at its first step: one live row
    k = min(2 * K, K * V)
    candidates = (scores.unsqueeze(2) + log_probs.view(n, K, V)).view(n, K * V)
    expected = candidates.topk(k, dim=1)
    values, ids = best_extensions(scores, log_probs, k)
    assert torch.equal(values, expected.values)
    assert torch.equal(candidates.gather(1, ids), values)
    assert all(len(set(row)) == k for row in ids.tolist())  # k distinct extensions
    if not tied:
        finite = torch.isfinite(values)
        assert torch.equal(ids[finite], expected.indices[finite])


def test_the_beam_goes_on_with_k_unfinished_hypotheses_when_k_extensions_end():
    model, max_len = TableModel(TABLE_TWO_ENDINGS, vocab=8), 3
    src, lengths, limit = torch.full((1, 2), A), torch.tensor([2]), torch.tensor([max_len])
    assert model.exhaustive(max_len, 1.0, "average") == [A, C]
    hyps = beam_search(model, src, lengths, limit, SearchOptions(beam_size=2, alpha=1.0, n_best=2))
    assert hyps[0][0].tokens == [A, C]  # [a c] was the 4th best extension at step 2
    assert hyps[0][0].log_prob == pytest.approx(math.log(0.5 * 0.4 * 0.999))


@pytest.mark.parametrize("kind", ["average", "gnmt"])
@pytest.mark.parametrize("alpha", [0.0, 0.7, 1.0])
def test_exact_stop_finds_the_optimum_where_the_fast_rule_stops_too_early(alpha, kind):
    model, max_len = TableModel(TABLE, vocab=7), 3
    src, lengths, limit = torch.full((1, 2), A), torch.tensor([2]), torch.tensor([max_len])
    optimum = model.exhaustive(max_len, alpha, kind)

    def best(stop):
        options = SearchOptions(beam_size=2, alpha=alpha, length_penalty=kind, stop=stop)
        return beam_search(model, src, lengths, limit, options)[0][0].tokens

    assert best("exact") == optimum
    if alpha == 0.0:
        assert optimum == [A] and best("fast") == [A]  # the rules agree without normalisation
    elif kind == "average":
        assert optimum == [A, B] and best("fast") == [A]  # stopped one step too early
    assert TableModel(TABLE, 7).exhaustive(max_len, 1.0, "average") == [A, B]


# --- 3. beam size 1 = greedy ----------------------------------------------------------------


@pytest.mark.parametrize("alpha", [0.0, 1.0])
@pytest.mark.parametrize("rnn_type,attention", [("lstm", "bahdanau"), ("gru", "luong_general"), ("rnn", "luong_dot")])
@pytest.mark.parametrize("seed", [1, 3, 4, 5])
def test_beam_size_one_equals_greedy(seed, rnn_type, attention, alpha):
    """A beam of one is the greedy path, whatever the length normalisation, with the fast rule
    (the exact rule may go on past greedy's EOS when alpha > 0; with alpha = 0 the rules agree)."""
    V = 8
    model = tiny_model(seed, V, rnn_type, attention, out_scale=2.0)
    srcs = random_sources(100 + seed, V, [6, 1, 0, 3, 9, 2, 4])
    batch = make_batch(srcs, None, list(range(len(srcs))))
    limit = max_lengths(batch.src_lengths, 1.0, 3)
    g = greedy(model, batch.src, batch.src_lengths, limit, SearchOptions(attention=True))
    one = SearchOptions(beam_size=1, alpha=alpha, attention=True, stop="fast" if alpha else "exact")
    b = beam_search(model, batch.src, batch.src_lengths, limit, one)
    g = greedy(model, batch.src, batch.src_lengths, limit, SearchOptions(alpha=alpha, attention=True))
    assert_same_hyps(b, g)
    assert len({len(h[0].tokens) for h in g}) > 1  # varied outputs, some natural EOS, some cut


# --- 4. n-best lists, scores, beam vs greedy -------------------------------------------------

V4 = 8
SRC4 = [[4, 5, 6, 7, 1], [7], [6, 6, 4], [], [5, 4, 7, 7, 6, 1, 4]]


@pytest.mark.parametrize("kind", ["average", "gnmt"])
@pytest.mark.parametrize("alpha", [0.0, 0.6, 1.0])
def test_nbest_sorted_and_scored_with_the_length_penalty(alpha, kind):
    model = tiny_model(4, V4, out_scale=2.0)
    batch = make_batch(SRC4, None, list(range(len(SRC4))))
    limit = max_lengths(batch.src_lengths, 1.5, 3)
    K, n_best = 5, 4
    hyps = beam_search(
        model,
        batch.src,
        batch.src_lengths,
        limit,
        SearchOptions(beam_size=K, alpha=alpha, length_penalty=kind, n_best=n_best),
    )
    g = greedy(model, batch.src, batch.src_lengths, limit, SearchOptions(alpha=alpha, length_penalty=kind))
    assert len(hyps) == len(SRC4)
    for i, nbest in enumerate(hyps):
        assert len(nbest) == n_best
        scores = [h.search_score for h in nbest]
        assert scores == sorted(scores, reverse=True)
        assert len({tuple(h.tokens) for h in nbest}) == n_best  # distinct outputs
        for h in nbest + g[i]:
            assert len(h.tokens) <= int(limit[i])
            assert not set(h.tokens) & {PAD, BOS, EOS}
            assert h.search_score == pytest.approx(h.log_prob / penalty(len(h.tokens) + 1, alpha, kind), abs=1e-6)
            assert math.isfinite(h.log_prob) and h.log_prob < 0
        # outputs that ended with a real EOS carry their exact model log-prob
        done = [h for h in nbest + g[i] if len(h.tokens) < int(limit[i])]
        if done:
            exact = exact_log_probs(model, SRC4[i], [h.tokens for h in done])
            for h, e in zip(done, exact.tolist()):
                assert h.log_prob == pytest.approx(e, abs=1e-5)


@pytest.mark.parametrize("K", [2, 3, 5, 8])
@pytest.mark.parametrize("seed", [5, 6, 7])
def test_beam_is_never_worse_than_greedy_with_alpha_zero(seed, K):
    """On the model score (alpha = 0) a beam finds an output at least as probable as greedy's.
    (Exact for K >= all prefixes; for small K this is checked on these fixed seeds.)"""
    model = tiny_model(seed, V4, out_scale=3.0)
    batch = make_batch(SRC4, None, list(range(len(SRC4))))
    limit = max_lengths(batch.src_lengths, 1.0, 2)
    g = greedy(model, batch.src, batch.src_lengths, limit)
    b = beam_search(model, batch.src, batch.src_lengths, limit, SearchOptions(beam_size=K, alpha=0.0))
    for gh, bh in zip(g, b):
        assert bh[0].log_prob >= gh[0].log_prob - 1e-6


# --- 5. attention ------------------------------------------------------------------------------


@pytest.mark.parametrize("attention", ATTENTIONS)
def test_returned_attention_shapes_and_rows(attention):
    model = tiny_model(8, V4, "lstm", attention, out_scale=2.0)
    batch = make_batch(SRC4, None, list(range(len(SRC4))))
    limit = max_lengths(batch.src_lengths, 1.5, 2)
    g = greedy(model, batch.src, batch.src_lengths, limit, SearchOptions(attention=True))
    b1 = beam_search(model, batch.src, batch.src_lengths, limit, SearchOptions(beam_size=1, alpha=0.0, attention=True))
    bk = beam_search(
        model, batch.src, batch.src_lengths, limit, SearchOptions(beam_size=4, alpha=0.6, n_best=3, attention=True)
    )
    for i, src in enumerate(SRC4):
        S = len(src) + 1  # with EOS
        for h in g[i] + b1[i] + bk[i]:
            assert h.attention.shape == (len(h.tokens) + 1, S)
            assert (h.attention >= 0).all()
            # rows sum to 1 within the source: no mass was left on padded positions
            torch.testing.assert_close(h.attention.sum(dim=1), torch.ones(len(h.tokens) + 1), atol=1e-5, rtol=0)
        torch.testing.assert_close(g[i][0].attention, b1[i][0].attention, atol=1e-6, rtol=0)
        # each hypothesis carries its own attention: the weights of replaying its tokens
        for h in g[i] + bk[i]:
            torch.testing.assert_close(h.attention, forced_attention(model, src, h.tokens), atol=1e-5, rtol=0)


def forced_attention(model: Seq2Seq, src: list[int], tokens: list[int]) -> torch.Tensor:
    """Attention weights (T, S) of one sentence when `tokens` + EOS are fed step by step."""
    one = make_batch([src], None, [0])
    rows = []
    with torch.no_grad():
        memory, state = model.encode(one.src, one.src_lengths)
        for prev in [BOS] + tokens:
            _, state, weights = model.step(torch.tensor([prev]), memory, state)
            rows.append(weights[0])
    return torch.stack(rows)


@pytest.mark.parametrize("attention", ATTENTIONS)
def test_step_puts_no_attention_on_padding(attention):
    model = tiny_model(9, V4, "gru", attention)
    batch = make_batch(SRC4, None, list(range(len(SRC4))))
    with torch.no_grad():
        memory, state = model.encode(batch.src, batch.src_lengths)
        prev = torch.full((len(SRC4),), BOS)
        for tok in [4, 5, 6]:
            _, state, weights = model.step(prev, memory, state)
            pad = torch.arange(batch.src.size(1)).unsqueeze(0) >= batch.src_lengths.unsqueeze(1)
            assert (weights[pad] == 0).all()
            torch.testing.assert_close(weights.sum(dim=1), torch.ones(len(SRC4)), atol=1e-6, rtol=0)
            prev = torch.full((len(SRC4),), tok)


# --- 7. maximum length -------------------------------------------------------------------------


@pytest.mark.parametrize("rnn_type", RNN_TYPES)
def test_outputs_stop_at_max_len_with_the_forced_eos(rnn_type):
    """A model that never ends by itself: every output has exactly max_len tokens."""
    model = tiny_model(10, V4, rnn_type)
    with torch.no_grad():
        model.output.bias[EOS] = -1e9
    batch = make_batch(SRC4, None, list(range(len(SRC4))))
    limit = torch.tensor([3, 1, 0, 2, 5])
    g = greedy(model, batch.src, batch.src_lengths, limit, SearchOptions(attention=True))
    b = beam_search(
        model, batch.src, batch.src_lengths, limit, SearchOptions(beam_size=3, alpha=0.6, n_best=2, attention=True)
    )
    for i in range(len(SRC4)):
        n = int(limit[i])
        for h in g[i] + b[i]:
            assert len(h.tokens) == n
            assert not set(h.tokens) & {PAD, BOS, EOS}
            assert h.attention.shape == (n + 1, len(SRC4[i]) + 1)  # n tokens + the forced EOS
        assert len(b[i]) == min(2, len(real_tokens(V4)) ** n)
    # the default limit from max_lengths is respected the same way
    limit = max_lengths(batch.src_lengths, 1.2, 1)
    for hyps in (
        greedy(model, batch.src, batch.src_lengths, limit),
        beam_search(model, batch.src, batch.src_lengths, limit, SearchOptions(beam_size=2, alpha=1.0)),
    ):
        assert [len(h[0].tokens) for h in hyps] == limit.tolist()


def test_every_decoding_key_reaches_the_search_or_the_translator():
    """A decoding config key is a search option of the same name (SearchOptions.of copies it
    over) or one of the translator's own settings: a new option needs no copying code."""
    translator_keys = {"max_length_ratio", "max_length_offset", "batch_size", "precision"}
    options = {f.name for f in dataclasses.fields(SearchOptions)}
    for f in dataclasses.fields(DecodingConfig):
        assert f.name in options or f.name in translator_keys, f.name
    d = DecodingConfig(beam_size=4, alpha=0.5, length_penalty="gnmt", n_best=2, stop="fast", no_unk=True)
    o = SearchOptions.of(d, n_best=3, attention=True)
    assert (o.beam_size, o.alpha, o.length_penalty, o.n_best, o.stop, o.no_unk, o.attention) == (
        4, 0.5, "gnmt", 3, "fast", True, True
    )  # fmt: skip
