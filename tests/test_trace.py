"""Beam search step by step, as a lecture draws it: `Translator.trace` and `nmt translate
--trace` show the search that `search` runs (its steps against a plain reference beam search:
tests/test_search.py)."""

from __future__ import annotations

import pytest
from word_models import save_run, tiny_translator

SOURCES = ["a b", "c", "d e a", "b b c"]


@pytest.mark.parametrize("beam", [1, 3])
def test_the_trace_ends_with_what_the_search_returns(beam):
    tr = tiny_translator(6, alpha=0.6)
    for source, nbest in zip(SOURCES, tr.search(SOURCES, beam=beam, n_best=beam)):
        steps = tr.trace(source, beam=beam)
        assert [s.t for s in steps] == list(range(1, len(steps) + 1))
        for s in steps:
            assert len(s.alive) <= beam and all(len(pieces) == s.t for pieces, _ in s.alive)
            assert [lp for _, lp in s.alive] == sorted((lp for _, lp in s.alive), reverse=True)
            assert all(pieces[-1] == "</s>" and len(pieces) == s.t for pieces, _, _ in s.finished)
        ended = sorted((f for s in steps for f in s.finished), key=lambda f: -f[2])
        assert [pieces for pieces, _, _ in ended[:beam]] == [t.tgt_pieces for t in nbest]
        assert [score for _, _, score in ended[:beam]] == pytest.approx([t.search_score for t in nbest], abs=1e-5)
    assert tr.trace("   ", beam=beam) == []


def test_cli_trace_writes_the_steps_to_stderr_and_the_same_translations(tmp_path, nmt_cli):
    run = save_run(tiny_translator(6, alpha=0.6), tmp_path / "run")
    text = "\n".join([*SOURCES[:2], "", SOURCES[2]]) + "\n"
    plain = nmt_cli("translate", "-m", run, "--beam", "3", input=text)
    traced = nmt_cli("translate", "-m", run, "--beam", "3", "--trace", input=text)
    assert traced.returncode == 0 and traced.stdout == plain.stdout, traced.stderr
    headers = [line for line in traced.stderr.splitlines() if line.startswith("trace of line")]
    assert headers == [
        "trace of line 1: 'a b'",
        "trace of line 2: 'c'",
        "trace of line 3: '' (blank: nothing searched)",
    ] + ["trace of line 4: 'd e a'"]
    assert traced.stderr.splitlines()[1].startswith("  t=1   ")
    best = run_best_pieces(run, SOURCES[0])
    assert any(line.split("  ")[-1].strip() == " ".join(best) for line in traced.stderr.splitlines() if "end" in line)


def run_best_pieces(run, source: str) -> list[str]:
    from nmt.translate import Translator

    return Translator.load(run).search([source], beam=3)[0][0].tgt_pieces
