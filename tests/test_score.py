"""`nmt score`: forced scoring of given translations, equal to what beam search reports for them."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest
from tiny_runs import LINES, shared_run

from nmt.cli import main
from nmt.translate import Translator
from nmt.translate.scoring import read_pairs, score_pairs


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    return shared_run(tmp_path_factory)


def _cli(capsys, monkeypatch, *args: str, stdin: str = "") -> list[str]:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin.encode("utf-8"))))
    assert main(["score", *map(str, args)]) == 0
    return capsys.readouterr().out.split("\n")[:-1]


@pytest.mark.parametrize("alpha, penalty", [(1.0, "average"), (0.6, "gnmt"), (0.0, "average")])
def test_scores_equal_the_scores_of_beam_search(run, alpha, penalty):
    tr = Translator.load(run)
    tr.cfg.decoding.length_penalty = penalty
    results = tr.search(LINES, beam=4, alpha=alpha, n_best=4)
    hyps = [(line, h) for line, nbest in zip(LINES, results) if line for h in nbest]
    assert len(hyps) == 4 * 5
    scored = score_pairs(tr, [line for line, _ in hyps], [h.text for _, h in hyps], alpha)
    by_ids = tr.score([line for line, _ in hyps], [h.ids for _, h in hyps], alpha)
    assert len({h.log_prob for _, h in hyps}) > 10  # different outputs, different scores
    for (_, h), s, (lp, sc) in zip(hyps, scored, by_ids):
        assert (lp, sc) == pytest.approx((h.log_prob, h.search_score), abs=1e-4)  # the very ids the search made
        if tr.tgt_tok.encode([h.text])[0] == h.ids:  # the text encodes to them again (a trained model's do)
            assert (s.log_prob, s.search_score, s.tokens) == pytest.approx(
                (h.log_prob, h.search_score, len(h.ids) + 1), abs=1e-4
            )


def test_files_and_stdin_give_one_line_per_pair(run, tmp_path, capsys, monkeypatch):
    tr = Translator.load(run)
    targets = tr.translate(LINES, beam=3, alpha=0.0)
    targets[1] = ""  # a blank target: the output that ends at once
    src, tgt = tmp_path / "src.txt", tmp_path / "tgt.txt"
    src.write_text("\n".join(LINES) + "\n", encoding="utf-8")
    tgt.write_text("\n".join(targets) + "\n", encoding="utf-8")
    from_files = _cli(capsys, monkeypatch, "-m", run, "-i", src, "-t", tgt, "--alpha", "0")
    pairs = "".join(f"{s}\t{t}\n" if s else "\n" for s, t in zip(LINES, targets))
    assert _cli(capsys, monkeypatch, "-m", run, "--alpha", "0", stdin=pairs) == from_files
    assert len(from_files) == len(LINES) and from_files[2] == ""  # a blank pair: an empty line
    fields = [line.split("\t") for line in from_files if line]
    for log_prob, score, _ in fields:
        assert float(log_prob) == float(score) < 0  # alpha 0: the raw log-probability
    assert fields[1][2] == "1"  # the blank target: EOS alone
    (log_prob, _), (blank, _) = tr.score(LINES[:2], targets[:2], alpha=0.0)
    assert [float(x) for x in fields[0][:2] + fields[1][:2]] == pytest.approx([log_prob] * 2 + [blank] * 2, abs=1e-4)
    assert int(fields[0][2]) == len(tr.tgt_tok.encode([targets[0]])[0]) + 1


def test_read_pairs_rejects_lines_without_one_tab():
    assert read_pairs(None, None, ["a\tb", "", "c\t"]) == (["a", "", "c"], ["b", "", ""])
    with pytest.raises(Exception, match=r"<stdin>: line 2: expected SOURCE<TAB>TARGET \(one tab\), got 0 tabs"):
        read_pairs(None, None, ["a\tb", "no tab"])


def test_bad_input_is_one_line_and_writes_nothing(run, tmp_path, nmt_cli, one_line_error):
    src, short, out = tmp_path / "src.txt", tmp_path / "short.txt", tmp_path / "out.txt"
    src.write_text("a\nb\n", encoding="utf-8")
    short.write_text("a\n", encoding="utf-8")
    result = nmt_cli("score", "-m", run, "-i", src, "-t", short, "-o", out)
    assert one_line_error(result, "data error", 1) == f"line counts differ: {src} has 2 lines but {short} has 1"
    assert not out.exists()
    result = nmt_cli("score", "-m", run, "-i", src)
    assert result.returncode == 2 and "-i and -t go together" in result.stderr
