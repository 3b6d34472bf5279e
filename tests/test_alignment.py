"""Word alignments from attention (`nmt translate --align`, the JSON's `align`): the links of a
beam output are those of the same output teacher-forced, one per target word, in range; on the
dates task, where the truth is known by construction, the year's digits align into the source's
year; standard output holds only the output lines."""

from __future__ import annotations

import pytest
import torch
from word_models import save_run, tiny_translator

from nmt.data.batching import make_batch
from nmt.data.tokenizer import BOS
from nmt.translate import Translator
from nmt.translate.alignment import pharaoh, piece_alignment, word_alignment, word_of_piece

SOURCES = ["a b", "c", "d e a", "b b c", "e a b c"]


def test_word_links_against_weights_summed_by_hand():
    src, tgt = ["▁a", "b", "▁c", "</s>"], ["▁x", "▁y", "z", "</s>"]  # words: ab, c -> x, yz
    attention = torch.tensor(
        [
            [0.1, 0.1, 0.7, 0.1],  # x: c (0.7) over ab (0.2)
            [0.3, 0.3, 0.3, 0.1],  # y: ab 0.6, c 0.3
            [0.05, 0.05, 0.5, 0.4],  # z: ab 0.1, c 0.5 -> yz: ab 0.7, c 0.8: c
            [0.0, 0.0, 0.0, 1.0],  # EOS: dropped
        ]
    )
    assert word_of_piece(src[:-1]) == [0, 0, 1] and word_of_piece(["b", "▁c"]) == [0, 1]
    assert word_of_piece(["▁", "1", "<unk>", "9", "▁"]) == [0, 0, 1, 2, 2]  # '1 ⁇ 9': the unknown a word
    assert word_of_piece(["▁a", "▁", "1"]) == [0, 1, 1]  # a piece of spaces only: the next word's
    assert word_alignment(src, tgt, attention) == [(1, 0), (1, 1)]
    assert piece_alignment(src, tgt, attention) == [(2, 0), (0, 1), (2, 2)]
    assert pharaoh([(1, 0), (1, 1)]) == "1-0 1-1"


def forced_attention(tr: Translator, source: str, ids: list[int]) -> torch.Tensor:
    """The attention of `ids` (then EOS) teacher-forced through the model's own steps: row t is
    what the model attends to while it predicts output token t."""
    batch = make_batch([tr.src_tok.encode([source])[0]], None, [0])  # the source as search has it (EOS too)
    memory, state = tr.model.encode(batch.src, batch.src_lengths)
    rows = []
    for prev in [BOS, *ids]:
        _, state, weights = tr.model.step(torch.tensor([prev]), memory, state)
        rows.append(weights[0])
    return torch.stack(rows)


@pytest.mark.parametrize("beam", [1, 4])
def test_a_beam_outputs_links_are_those_of_the_same_output_teacher_forced(beam):
    """The off-by-one that aligns each word with the attention of the step before it fails here."""
    for seed in range(4):
        tr = tiny_translator(seed, alpha=0.6)
        for source, nbest in zip(SOURCES, tr.search(SOURCES, beam=beam, n_best=beam, attention=True)):
            for t in nbest:
                forced = forced_attention(tr, source, t.ids)
                assert torch.allclose(t.attention, forced, atol=1e-5)
                for align in (word_alignment, piece_alignment):
                    assert align(t.src_pieces, t.tgt_pieces, t.attention) == align(t.src_pieces, t.tgt_pieces, forced)
                links = word_alignment(t.src_pieces, t.tgt_pieces, t.attention)
                assert [j for _, j in links] == list(range(len(t.text.split())))  # one link per target word
                assert all(0 <= i < len(source.split()) for i, _ in links)


def test_on_the_dates_the_years_digits_align_into_the_sources_year(trained):
    """Every correct output's four year digits, subword by subword: the source subword each links
    to lies inside the source's own year (found as the one run of four digits spelling it)."""
    run, data, _, _ = trained
    tr = Translator.load(run)
    sources, refs = (data.joinpath(f"test.{side}").read_text().splitlines() for side in ("src", "tgt"))
    right = total = 0
    for ref, nbest in zip(refs, tr.search(sources, attention=True)):
        t = nbest[0]
        spelled = [p.lstrip("▁") for p in t.src_pieces[:-1]]
        runs = [set(range(i, i + 4)) for i in range(len(spelled) - 3) if "".join(spelled[i : i + 4]) == ref[:4]]
        if t.text != ref or len(runs) != 1 or not all(len(spelled[i]) == 1 for i in runs[0]):
            continue
        links = dict((j, i) for i, j in piece_alignment(t.src_pieces, t.tgt_pieces, t.attention))
        digits = [j for j, p in enumerate(t.tgt_pieces[:-1]) if p.lstrip("▁")][:4]
        right += sum(links[j] in runs[0] for j in digits)
        total += len(digits)
    assert total >= 200 and right / total >= 0.9, (right, total)


def test_cli_align_prints_only_the_output_lines_with_their_links(tmp_path, nmt_cli):
    tr = tiny_translator(6, alpha=0.6)
    run = save_run(tr, tmp_path / "run")
    text = "a b\n\nd e a\n"
    result = nmt_cli("translate", "-m", run, "--beam", "3", "--align", input=text)
    assert result.returncode == 0 and result.stderr == "", result.stderr
    lines = result.stdout.splitlines()
    expected = Translator.load(run).search(["a b", "", "d e a"], beam=3, attention=True)
    best = [nbest[0] for nbest in expected]
    links = [pharaoh(word_alignment(t.src_pieces, t.tgt_pieces, t.attention)) if t.ids else "" for t in best]
    assert lines == [f"{t.text} ||| {link}" for t, link in zip(best, links)]
    pieces = nmt_cli("translate", "-m", run, "--align", "pieces", "--n-best", "2", "--beam", "2", input="a b\n")
    first = pieces.stdout.splitlines()
    assert len(first) == 2 and all(line.startswith("0 ||| ") and line.count(" ||| ") == 3 for line in first)
