"""Sampling (nmt.search.sample through Translator.sample): seeds, temperature, top-k, and samples
that follow the model's distribution, on tiny word-level models."""

from __future__ import annotations

import dataclasses

import torch
from word_models import tiny_translator

from nmt.data.batching import make_batch
from nmt.data.tokenizer import BOS, EOS, PAD, UNK
from nmt.search import SearchOptions, beam_search, greedy, max_lengths, sample

# --- sampling ----------------------------------------------------------------------------------


def test_sampling_is_reproducible_with_a_seed():
    tr = tiny_translator(2)
    lines = ["a b c", "", "d"]
    one = [[t.text for t in n] for n in tr.sample(lines, n=4, seed=7)]
    two = [[t.text for t in n] for n in tr.sample(lines, n=4, seed=7)]
    other = [[t.text for t in n] for n in tr.sample(lines, n=4, seed=8)]
    assert one == two
    assert one != other
    assert one[1] == [""] * 4 and all(len(n) == 4 for n in one)


def test_low_temperature_and_top_1_are_greedy():
    tr = tiny_translator(3)
    batch = make_batch([[4, 5, 6], [7], [8, 4]], None, [0, 1, 2])
    limit = max_lengths(batch.src_lengths, 1.5, 4)
    want = [h[0].tokens for h in greedy(tr.model, batch.src, batch.src_lengths, limit)]
    for kw in [dict(temperature=1e-4), dict(top_k=1)]:
        for seed in range(3):
            options = SearchOptions(seeds=(seed, seed + 10, seed + 20), **kw)
            got = [h[0].tokens for h in sample(tr.model, batch.src, batch.src_lengths, limit, options)]
            assert got == want, kw


def test_samples_follow_the_model_distribution():
    """The first token's sampled frequencies match the model's probabilities, the unknown token
    taken out (it is never sampled)."""
    tr = tiny_translator(4)
    batch = make_batch([[4, 5]] * 3000, None, list(range(3000)))
    limit = torch.full((3000,), 1)
    samples = sample(tr.model, batch.src, batch.src_lengths, limit, SearchOptions(seeds=tuple(range(3000))))
    first = [h[0].tokens[0] if h[0].tokens else EOS for h in samples]
    assert UNK not in first
    with torch.no_grad():
        memory, state = tr.model.encode(batch.src[:1], batch.src_lengths[:1])
        log_probs, _, _ = tr.model.step(torch.tensor([BOS]), memory, state)
    p = log_probs[0].exp()
    p[PAD] = p[BOS] = p[UNK] = 0
    assert float(log_probs[0, UNK].exp()) > 0.02  # the model itself would draw it
    p = p / p.sum()
    for token in range(4, len(tr.src_tok)):
        assert abs(first.count(token) / 3000 - float(p[token])) < 0.04


def test_a_lines_samples_depend_on_its_seed_and_index_alone():
    """--seed: each line gets the same samples whatever else is in the input and whatever the
    batch size; and sampling leaves torch's global random state alone."""
    tr = tiny_translator(2)
    lines = ["a b c", "d", "e a", "b"]
    alone = [tr.sample(lines[:2], n=3, seed=5)[1]]
    state = torch.get_rng_state()
    together = tr.sample(lines, n=3, seed=5)
    assert torch.equal(state, torch.get_rng_state())
    tr.cfg.decoding.batch_size = 1
    one_by_one = tr.sample(lines, n=3, seed=5)
    texts = lambda nbest: [t.text for t in nbest]  # noqa: E731
    assert [texts(n) for n in together] == [texts(n) for n in one_by_one]
    assert texts(alone[0]) == texts(together[1])
    assert len({tuple(texts(n)) for n in together}) > 1  # not one stream for every line
    state = torch.get_rng_state()
    tr.sample(lines, n=3)  # no seed: one from the operating system
    assert torch.equal(state, torch.get_rng_state())


def test_no_unk_forbids_the_unknown_token_in_greedy_and_beam_search():
    tr = tiny_translator(6, unk_bias=50.0)  # the model wants nothing else
    batch = make_batch([[4, 5, 6], [7]], None, [0, 1])
    limit = max_lengths(batch.src_lengths, 1.5, 4)
    for search, options in [(greedy, SearchOptions()), (beam_search, SearchOptions(beam_size=3, alpha=1.0))]:
        plain = search(tr.model, batch.src, batch.src_lengths, limit, options)
        assert any(UNK in h[0].tokens for h in plain)
        no_unk = dataclasses.replace(options, no_unk=True)
        assert not any(
            UNK in h.tokens for n in search(tr.model, batch.src, batch.src_lengths, limit, no_unk) for h in n
        )
