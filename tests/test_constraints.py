"""Outputs that must contain given phrases (`Translator.search(constraints=...)`, `nmt translate
--constraints`, the JSON's `constraints`): every output contains them (or says which it lacks)
and is scored whole; the
stopping rule returns what a search run to its length limit returns; a beam wide enough finds
the best output that contains them (exhaustive search); without constraints the search is
today's; one that cannot be met within the limit is returned marked."""

from __future__ import annotations

import itertools
import re

import pytest
import torch
from word_models import L_MAX, WORDS, save_run, tiny_translator

import nmt.search.beam
from nmt.data.tokenizer import EOS
from nmt.search import SearchOptions, beam_search
from nmt.search.constraints import START, Constraint, ConstraintRule
from nmt.translate import Translator

SOURCES = ["a b", "c", "d e a", "b b c"]


def contains(text: str, phrase: str) -> bool:
    """Whether the word-level output holds the phrase's words in a row."""
    return f" {phrase} " in f" {text} "


@pytest.mark.parametrize("beam", [1, 3])
@pytest.mark.parametrize("constraints", [["c"], ["e", "a"], ["b d"], ["a b", "c"]])
def test_every_output_contains_its_constraints_and_is_scored_whole(beam, constraints):
    tr = tiny_translator(6, alpha=0.6)
    results = tr.search(SOURCES, beam=beam, n_best=beam, no_unk=True, constraints=[constraints] * len(SOURCES))
    for source, nbest in zip(SOURCES, results):
        assert len(nbest) == beam and nbest[0].unmet_constraints == []
        for t in nbest:  # the n-best beyond the first may lack some: then they say which, and come last
            assert [p for p in constraints if not contains(t.text, p)] == t.unmet_constraints, t.text
            (log_prob, score), (by_text, _) = tr.score([source] * 2, [t.ids, t.text])
            assert (t.log_prob, t.search_score) == pytest.approx((log_prob, score), abs=1e-5)
            assert by_text == pytest.approx(log_prob, abs=1e-5)  # what `nmt score` gives for its text


@pytest.mark.parametrize("constraints", [["c"], ["e"], ["a", "d"]])
def test_a_wide_beam_finds_the_best_output_that_contains_the_constraints(constraints):
    """Against exhaustive search over every output within the length limit (L_MAX words plus the
    constraints' length) that contains the phrases: a beam that keeps every hypothesis finds it."""
    limit = L_MAX + len(constraints)
    everything = [" ".join(w) for n in range(limit + 1) for w in itertools.product(WORDS, repeat=n)]
    outputs = [o for o in everything if all(contains(o, p) for p in constraints)]
    for seed in range(3 if len(constraints) == 1 else 1):
        tr = tiny_translator(seed, alpha=0.6)
        for source in SOURCES[:3]:
            scores = [s for _, s in tr.score([source] * len(outputs), outputs)]
            best = max(zip(scores, outputs))
            found = wide_search(tr, source, constraints)
            assert tr.tgt_tok.decode(found.tokens) == best[1]
            assert found.search_score == pytest.approx(best[0], abs=1e-5)


def wide_search(tr: Translator, source: str, phrases: list[str], K: int = 6000):
    """The best hypothesis of a beam search wider than every hypothesis of the tiny model (wider
    than `nmt translate` allows), with the Translator's length limit for these constraints."""
    src = torch.tensor([tr.src_tok.encode([source])[0] + [EOS]])  # as nmt.data.batching gives it
    terms = tuple(tr.constraint(p) for p in phrases)
    limit = torch.tensor([L_MAX + sum(c.length for c in terms)])
    options = SearchOptions(beam_size=K, alpha=tr.cfg.decoding.alpha, no_unk=True, constraints=(terms,))
    return beam_search(tr.model, src, torch.tensor([src.size(1)]), limit, options)[0][0]


@pytest.mark.parametrize("n_best", [1, 3])
def test_the_stopping_rule_returns_what_a_search_to_the_length_limit_returns(monkeypatch, n_best):
    """The constrained search stops early by the exact rule; one that never stops early (runs to
    its forced EOS) finishes every hypothesis its beam ever could, and must agree."""
    tr = tiny_translator(4, alpha=1.0)
    lines, terms = SOURCES * 2, [["c"], ["a"], ["d e"], ["b", "e"]] * 2
    stopped = tr.search(lines, beam=4, n_best=n_best, constraints=terms)
    monkeypatch.setattr(nmt.search.beam, "_settled", lambda *args: False)
    to_the_limit = tr.search(lines, beam=4, n_best=n_best, constraints=terms)
    for a, b in zip(stopped, to_the_limit):
        assert [(t.text, round(t.search_score, 5)) for t in a] == [(t.text, round(t.search_score, 5)) for t in b]


@pytest.mark.parametrize("beam", [1, 4])
def test_without_constraints_the_search_is_todays(beam):
    tr = tiny_translator(3, alpha=0.6)
    plain = tr.search(SOURCES, beam=beam, n_best=beam)
    assert tr.search(SOURCES, beam=beam, n_best=beam, constraints=[[]] * len(SOURCES)) == plain
    if beam > 1:  # the unconstrained lines of a batch with constrained ones
        mixed = tr.search(SOURCES, beam=beam, n_best=beam, constraints=[[], ["a"], [], []])
        assert [mixed[i] for i in (0, 2, 3)] == [plain[i] for i in (0, 2, 3)]


def test_a_constraint_that_cannot_fit_the_length_limit_is_returned_marked():
    """A search told to stop after 1 token cannot place a phrase of 3: it ends at the limit and
    returns its best output all the same, marked with the constraint it lacks."""
    tr = tiny_translator(2, alpha=0.0)
    src = torch.tensor([tr.src_tok.encode(["a b"])[0] + [EOS]])
    spelled = tuple(tr.tgt_tok.encode(["c d e"])[0])
    options = SearchOptions(beam_size=3, n_best=2, constraints=((Constraint("c d e", (spelled,)),),))
    nbest = beam_search(tr.model, src, torch.tensor([src.size(1)]), torch.tensor([1]), options)[0]
    assert len(nbest) == 2 and all(h.unmet == (0,) and len(h.tokens) <= 2 for h in nbest)
    met = Constraint("c", (tuple(tr.tgt_tok.encode(["c"])[0]),))
    options = SearchOptions(beam_size=3, n_best=1, constraints=((met, Constraint("c d e", (spelled,))),))
    (best,) = beam_search(tr.model, src, torch.tensor([src.size(1)]), torch.tensor([1]), options)[0]
    assert best.unmet == (1,) and tr.tgt_tok.decode(best.tokens).split()[:1] == ["c"]  # the one that fits is met


def test_a_spelling_inside_a_word_never_starts_at_the_outputs_first_token():
    """A phrase spelled as a word's tail continues a word: as the output's first token it is no
    progress (it was met there once: '-12' came out as '-1279-05-03' on the dates)."""
    tail, word = Constraint("x", ((7, 8),), (True,)), Constraint("y", ((7, 8),), (False,))
    rule = ConstraintRule(((tail,), (word,)))
    assert rule.advance(0, START, 7).partial == frozenset() and 7 not in rule.wanted(0, START)
    assert rule.advance(1, START, 7).partial == {(0, 0, 1)} and 7 in rule.wanted(1, START)
    begun = rule.advance(0, START, 5)
    assert rule.advance(0, rule.advance(0, begun, 7), 8).met == 1 and 7 in rule.wanted(0, begun)


def test_a_phrase_is_spelled_at_a_word_start_and_inside_a_word(trained):
    """The dates model splits digits: '1985' is '▁' then a piece per digit at a word's start,
    the digits alone inside a word ('-1985' would follow '-'); either meets it."""
    tr = Translator.load(trained[0])
    c = tr.constraint("1985")
    assert [tr.tgt_tok.pieces(list(s)) for s in c.spellings] == [["▁", "1", "9", "8", "5"], ["1", "9", "8", "5"]]
    lines = ["3 May 1979", "Tuesday, March 12 1991", "28 FEB 2058", "12/05/1943"]
    for phrases in (["1985"], ["-12"], ["1985", "-07-"]):
        outputs = tr.search(lines, beam=4, constraints=[phrases] * len(lines))
        for nbest in outputs:
            assert all(p in nbest[0].text for p in phrases) and nbest[0].unmet_constraints == []


@pytest.mark.parametrize("how", ["ensemble", "int8"])
def test_constraints_work_with_ensembles_and_int8(trained, how):
    """They share the search's model protocol: the same rule, the same guarantee."""
    run = trained[0]
    tr = Translator.load([run, run]) if how == "ensemble" else Translator.load(run, device="cpu", precision="int8")
    lines, terms = ["3 May 1979", "Tuesday, March 12 1991"], [["1985"], ["1980", "-12"]]
    for nbest, phrases in zip(tr.search(lines, beam=5, constraints=terms), terms):
        assert nbest[0].unmet_constraints == [] and all(p in nbest[0].text for p in phrases)
        (log_prob, _), *_ = tr.score(lines[:1] if phrases == terms[0] else lines[1:], [nbest[0].ids])
        tolerance = 1e-4 if how == "ensemble" else 0.05  # int8's step and forced scoring round apart
        assert nbest[0].log_prob == pytest.approx(log_prob, abs=tolerance)


def test_cli_constraints_give_one_output_per_line_containing_them(tmp_path, nmt_cli, one_line_error):
    run = save_run(tiny_translator(6, alpha=0.6), tmp_path / "run")
    (tmp_path / "terms.txt").write_text("e\td\n\nb c\n")
    text = "a b\nc\nd e a\n"
    result = nmt_cli("translate", "-m", run, "--constraints", tmp_path / "terms.txt", "--beam", "3", input=text)
    assert result.returncode == 0 and result.stderr == "", result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 3 and contains(lines[0], "e") and contains(lines[0], "d") and contains(lines[2], "b c")
    assert lines[1] == Translator.load(run).translate(["c"], beam=3)[0]
    (tmp_path / "two.txt").write_text("a\nb\n")
    message = one_line_error(
        nmt_cli("translate", "-m", run, "--constraints", tmp_path / "two.txt", input=text), "data error", 1
    )
    assert message == f"{tmp_path / 'two.txt'}: 2 constraint lines for 3 input lines: expected one per line"
    (tmp_path / "bad.txt").write_text("a\n\nb\tz\n")
    message = one_line_error(
        nmt_cli("translate", "-m", run, "--constraints", tmp_path / "bad.txt", input=text), "data error", 1
    )
    assert re.fullmatch(rf"{re.escape(str(tmp_path / 'bad.txt'))} line 3: constraint 'z' has characters .*", message)
    result = nmt_cli("translate", "-m", run, "--constraints", tmp_path / "terms.txt", "--sample", input=text)
    assert result.returncode == 2 and "--constraints: an option of search; not with --sample" in result.stderr
