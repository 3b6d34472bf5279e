"""Ensembles: the mean of the members' log-probabilities at every step, each member with its own
source tokenizer and states; search unchanged; a shared target vocabulary required."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest
import torch
from tiny_runs import LINES, shared_run

from nmt.cli import main
from nmt.data.batching import make_batch
from nmt.data.tokenizer import BOS
from nmt.errors import CheckpointError
from nmt.translate import Translator


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """a; b: another seed and another source tokenizer (100 pieces), the same target pieces;
    c: another target vocabulary (digits merged)."""
    return {
        "a": shared_run(tmp_path_factory),
        "b": shared_run(tmp_path_factory, "b", seed=2, steps=20, overrides=("tokenizer.vocab_size=100",)),
        "c": shared_run(tmp_path_factory, "c", steps=10, overrides=("tokenizer.split_digits=false",)),
    }


def test_a_model_with_itself_is_the_model(runs):
    alone, twice = Translator.load(runs["a"]), Translator.load([runs["a"], runs["a"]])
    for beam in (1, 3):
        ours = twice.search(LINES, beam=beam, n_best=beam)
        theirs = alone.search(LINES, beam=beam, n_best=beam)
        assert [[t.text for t in n] for n in ours] == [[t.text for t in n] for n in theirs]
        assert [t.search_score for n in ours for t in n] == pytest.approx(
            [t.search_score for n in theirs for t in n], abs=1e-5
        )


def test_each_step_is_the_mean_of_the_members_own_log_probs(runs):
    """Member b encodes the lines with its own tokenizer: the ensemble's step equals the mean of
    what a and b give alone, each from its own source ids."""
    ens = Translator.load([runs["a"], runs["b"]], device="cpu")  # the steps below take CPU tensors
    a, b = Translator.load(runs["a"], device="cpu"), Translator.load(runs["b"], device="cpu")
    assert a.src_tok.encode(LINES) != b.src_tok.encode(LINES)  # the source sides differ
    lines = [line for line in LINES if line]
    prev = torch.full((len(lines),), BOS)
    bound = ens._search_model(lines)
    memory, state = bound.encode(*_src(a, lines))
    log_probs, state, weights = bound.step(prev, memory, state)
    members = (a, b)
    memories = [tr.model.encode(*_src(tr, lines)) for tr in members]  # (memory, initial state) each
    alone = [tr.model.step(prev, *encoded) for tr, encoded in zip(members, memories)]
    assert torch.allclose(log_probs, (alone[0][0] + alone[1][0]) / 2, atol=1e-6)
    assert torch.equal(weights, alone[0][2])  # the leader's attention, over its own pieces
    prev = log_probs.argmax(dim=-1)  # the next step goes on from each member's own new state
    second = bound.step(prev, memory, state)[0]
    expected = [tr.model.step(prev, enc[0], step[1])[0] for tr, enc, step in zip(members, memories, alone)]
    assert torch.allclose(second, (expected[0] + expected[1]) / 2, atol=1e-6)


def _src(tr: Translator, lines: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    batch = make_batch(tr.src_tok.encode(lines), None, list(range(len(lines))))
    return batch.src, batch.src_lengths


def test_ensemble_scores_are_its_search_scores_and_the_mean_of_the_members(runs):
    ens = Translator.load([runs["a"], runs["b"]])
    a, b = Translator.load(runs["a"]), Translator.load(runs["b"])
    results = ens.search(LINES, beam=3, n_best=3)
    hyps = [(line, h) for line, nbest in zip(LINES, results) if line for h in nbest]
    sources, ids = [line for line, _ in hyps], [h.ids for _, h in hyps]
    forced = ens.score(sources, ids)
    assert [lp for lp, _ in forced] == pytest.approx([h.log_prob for _, h in hyps], abs=1e-4)
    assert [s for _, s in forced] == pytest.approx([h.search_score for _, h in hyps], abs=1e-4)
    means = [(x[0] + y[0]) / 2 for x, y in zip(a.score(sources, ids), b.score(sources, ids))]
    assert [lp for lp, _ in forced] == pytest.approx(means, abs=1e-4)


def test_cli_translate_and_evaluate_take_several_models(runs, tmp_path, capsys):
    src = tmp_path / "in.txt"
    src.write_text("\n".join(LINES) + "\n", encoding="utf-8")
    out, hyp = tmp_path / "out.txt", tmp_path / "dev.hyp"
    assert main(["translate", "-m", str(runs["a"]), "-m", str(runs["b"]), "-i", str(src), "-o", str(out)]) == 0
    assert out.read_text().split("\n")[:-1] == Translator.load([runs["a"], runs["b"]]).translate(LINES)
    args = ["evaluate", str(runs["a"]), "-m", str(runs["a"]), "-m", str(runs["b"]), "--split", "dev", "-o", str(hyp)]
    assert main([*args, "--beam", "2"]) == 0
    assert "BLEU = " in capsys.readouterr().out and len(hyp.read_text().splitlines()) == 20


def test_score_takes_several_models(runs, capsys, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"3 May 1979\t1979-05-03\n")))
    assert main(["score", "-m", str(runs["a"]), "-m", str(runs["b"]), "--alpha", "0"]) == 0
    log_prob, _, _ = capsys.readouterr().out.split("\t")
    ens = Translator.load([runs["a"], runs["b"]])
    assert float(log_prob) == pytest.approx(ens.score(["3 May 1979"], ["1979-05-03"], alpha=0.0)[0][0], abs=1e-5)


def test_different_target_vocabularies_are_refused(runs, nmt_cli, one_line_error):
    with pytest.raises(CheckpointError, match="the target vocabularies differ"):
        Translator.load([runs["a"], runs["c"]])
    result = nmt_cli("translate", "-m", runs["a"], "-m", runs["c"], input="3 May 1979\n")
    message = one_line_error(result, "checkpoint error", 1)
    assert message.startswith(f"{runs['c']}: cannot ensemble with {runs['a']}: the target vocabularies differ")
    assert result.stdout == ""
