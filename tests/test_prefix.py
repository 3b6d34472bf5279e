"""Outputs that begin with given text (`Translator.search(prefixes=...)`, `nmt translate
--prefix`, the JSON's `prefix`): every output begins with its prefix, is scored whole as forced
scoring scores it, is the best output that begins with it (exhaustive search), counts the prefix
in its length limit; a partly typed last word is completed, not broken."""

from __future__ import annotations

import itertools

import pytest
import torch
from word_models import L_MAX, WORDS, save_run, tiny_translator, word_tokenizer

from nmt.config import Config, ModelConfig
from nmt.model import build_model
from nmt.translate import Translator

SOURCES = ["a b", "c", "d e a", "b b c"]


@pytest.mark.parametrize("beam", [1, 3])
@pytest.mark.parametrize("prefix", ["a ", "b c ", "d", "e a"])
def test_every_output_begins_with_its_prefix_and_is_scored_whole(beam, prefix):
    tr = tiny_translator(6, alpha=0.6)
    results = tr.search(SOURCES, beam=beam, n_best=beam, prefixes=[prefix] * len(SOURCES))
    for source, nbest in zip(SOURCES, results):
        assert len(nbest) == beam
        for t in nbest:
            assert (t.text + " ").startswith(prefix if prefix.endswith(" ") else prefix + " ")
            (log_prob, score), (by_text, _) = tr.score([source] * 2, [t.ids, t.text])
            assert (t.log_prob, t.search_score) == pytest.approx((log_prob, score), abs=1e-5)
            assert by_text == pytest.approx(log_prob, abs=1e-5)  # what `nmt score` gives for its text


@pytest.mark.parametrize("prefix", ["a ", "c d ", "b"])
def test_beam_search_with_a_prefix_finds_the_best_output_that_begins_with_it(prefix):
    """Against exhaustive search over every output of at most L_MAX words that begins with the
    prefix's words: a beam wide enough to keep every hypothesis finds the exact best, and stops
    by the exact rule (the prefix rule only removes choices)."""
    words = prefix.split()
    for seed in range(6):
        tr = tiny_translator(seed, alpha=0.6)
        for source in SOURCES:
            rest = range(L_MAX - len(words) + 1)
            outputs = [" ".join(words + list(w)) for n in rest for w in itertools.product(WORDS, repeat=n)]
            scores = [s for _, s in tr.score([source] * len(outputs), outputs)]
            best = max(zip(scores, outputs))
            found = tr.search([source], beam=200, no_unk=True, prefixes=[prefix])[0][0]
            assert found.text == best[1] and found.search_score == pytest.approx(best[0], abs=1e-5)


def test_the_length_limit_counts_the_prefix():
    """The model's limit is L_MAX words: a prefix of 2 leaves room for 1 more, one of 4 (beyond
    the limit) for none: the output is the prefix, ended."""
    tr = tiny_translator(6, alpha=0.0)
    for nbest in tr.search(SOURCES, beam=5, n_best=5, prefixes=["a b "] * len(SOURCES)):
        assert all(len(t.text.split()) <= L_MAX for t in nbest)
    long = tr.search(SOURCES, beam=3, n_best=1, prefixes=["a b c d "] * len(SOURCES))
    assert [nbest[0].text for nbest in long] == ["a b c d"] * len(SOURCES)


@pytest.mark.parametrize("beam", [1, 4])
def test_without_prefixes_the_search_is_todays(beam):
    tr = tiny_translator(3, alpha=0.6)
    plain = tr.search(SOURCES, beam=beam, n_best=beam)
    assert tr.search(SOURCES, beam=beam, n_best=beam, prefixes=[""] * len(SOURCES)) == plain
    mixed = tr.search(SOURCES, beam=beam, n_best=beam, prefixes=["", "a ", "", ""])
    assert [mixed[i] for i in (0, 2, 3)] == [plain[i] for i in (0, 2, 3)]


COLOURS = ["green", "grey", "grass", "red", "rose", "blue"]


def colours_translator(seed: int) -> Translator:
    """A random model whose words have several letters (a partly typed word can go on several ways)."""
    tok = word_tokenizer([" ".join(p) for p in itertools.permutations(COLOURS)], vocab_size=4 + len(COLOURS))
    cfg = Config()
    cfg.model = ModelConfig(emb_size=8, enc_hidden_size=8, dec_hidden_size=8, attention_size=8, dropout=0.0)
    cfg.decoding.max_length_ratio, cfg.decoding.max_length_offset = 0.01, 3
    torch.manual_seed(seed)
    return Translator(build_model(cfg.model, len(tok), len(tok)), tok, tok, cfg, torch.device("cpu"))


@pytest.mark.parametrize(
    "prefix,first_words",
    [("gre", {"green", "grey"}), ("gr", {"green", "grey", "grass"}), ("r", {"red", "rose"}), ("green", {"green"})],
)
def test_a_partly_typed_last_word_is_completed(prefix, first_words):
    for seed in range(4):
        tr = colours_translator(seed)
        for nbest in tr.search(["red rose", "blue"], beam=4, n_best=4, prefixes=[prefix] * 2):
            assert {t.text.split()[0] for t in nbest} <= first_words
            assert all(t.text.startswith(prefix) for t in nbest)
    second = colours_translator(0).search(["blue"], beam=3, n_best=3, prefixes=["red gr"])[0]
    assert all(t.text.split()[:1] == ["red"] and t.text.split()[1] in {"green", "grey", "grass"} for t in second)


def test_characters_no_piece_spells_let_the_rule_go():
    tr = colours_translator(1)
    assert tr.search(["red"], prefixes=["x"]) == tr.search(["red"])


def test_cli_prefix_gives_one_output_per_line_beginning_with_its_prefix(tmp_path, nmt_cli, one_line_error):
    run = save_run(tiny_translator(6, alpha=0.6), tmp_path / "run")
    (tmp_path / "prefixes.txt").write_text("a \n\nb c\n")
    text = "a b\nc\nd e a\n"
    result = nmt_cli("translate", "-m", run, "--prefix", tmp_path / "prefixes.txt", "--beam", "3", input=text)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 3 and lines[0].startswith("a") and lines[2].startswith("b c")
    assert lines[1] == Translator.load(run).translate(["c"], beam=3)[0]
    (tmp_path / "two.txt").write_text("a\nb\n")
    message = one_line_error(
        nmt_cli("translate", "-m", run, "--prefix", tmp_path / "two.txt", input=text), "data error", 1
    )
    assert message == f"{tmp_path / 'two.txt'}: 2 prefixes for 3 input lines: expected one per line"
