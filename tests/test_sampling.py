"""Sampling (nmt.search.sample through Translator.sample): seeds, temperature, top-k, and samples
that follow the model's distribution, on tiny word-level models."""

from __future__ import annotations

import torch
from word_models import tiny_translator

from nmt.data.batching import make_batch
from nmt.data.tokenizer import BOS, EOS, PAD
from nmt.search import SearchOptions, greedy, max_lengths, sample

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
            g = torch.Generator().manual_seed(seed)
            got = [
                h[0].tokens
                for h in sample(tr.model, batch.src, batch.src_lengths, limit, SearchOptions(generator=g, **kw))
            ]
            assert got == want, kw


def test_samples_follow_the_model_distribution():
    """The first token's sampled frequencies match the model's probabilities."""
    tr = tiny_translator(4)
    batch = make_batch([[4, 5]] * 3000, None, list(range(3000)))
    limit = torch.full((3000,), 1)
    g = torch.Generator().manual_seed(0)
    samples = sample(tr.model, batch.src, batch.src_lengths, limit, SearchOptions(generator=g))
    first = [h[0].tokens[0] if h[0].tokens else EOS for h in samples]
    with torch.no_grad():
        memory, state = tr.model.encode(batch.src[:1], batch.src_lengths[:1])
        log_probs, _, _ = tr.model.step(torch.tensor([BOS]), memory, state)
    p = log_probs[0].exp()
    p[PAD] = p[BOS] = 0
    p = p / p.sum()
    for token in range(4, len(tr.src_tok)):
        assert abs(first.count(token) / 3000 - float(p[token])) < 0.04
