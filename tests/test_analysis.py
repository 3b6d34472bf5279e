"""nmt.evaluation.analysis: search errors or model errors, on tiny word-level models whose best output is
known exactly (exhaustive search over every short output), and on a tiny trained model."""

from __future__ import annotations

import pytest
import sacrebleu
import torch
from word_models import find_search_error, save_run, tiny_translator

from nmt.data.tokenizer import BOS, EOS
from nmt.evaluation import analysis
from nmt.evaluation.inputs import NO_DATA
from nmt.translate import Translator

# --- analysis ----------------------------------------------------------------------------------


@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_analysis_finds_the_known_search_error(alpha):
    tr, source, best, worst = find_search_error(alpha)
    # reference = the model's best output: greedy misses it (a search error); a beam that keeps
    # every hypothesis (5^3 + ... < 200) finds it (correct)
    greedy_run, exact_run = analysis.analyze(tr, [source], [best], beams=[1, 200], alpha=alpha)
    assert greedy_run.sentences[0].kind == analysis.SEARCH
    assert greedy_run.sentences[0].reference_score > greedy_run.sentences[0].output_score
    assert exact_run.sentences[0].kind == analysis.CORRECT
    assert exact_run.sentences[0].output == best
    # reference = the model's worst output: whatever the search does, the model is wrong
    for run in analysis.analyze(tr, [source], [worst], beams=[1, 200], alpha=alpha):
        assert run.sentences[0].kind == analysis.MODEL
    assert "search errors" in analysis.verdict(greedy_run)


def test_analysis_counts_verdict_and_json():
    tr = tiny_translator(0)
    sources = ["a b", "c", "d e a", "b b c", "e", "a"]
    refs = tr.translate(sources[:3], beam=1) + ["e e e", "d", "c c"]  # 3 correct at beam 1
    (result,) = analysis.analyze(tr, sources, refs, beams=[1])
    assert result.counts[analysis.CORRECT] >= 3
    assert sum(result.counts.values()) == len(sources)
    (record,) = analysis.to_json([result], with_sentences=True)
    assert record["beam"] == 1 and len(record["per_sentence"]) == len(sources)
    assert abs(sum(record["fractions"].values()) - 1) < 1e-9
    assert record["verdict"] == analysis.verdict(result)
    assert "beam" in analysis.table([result]).splitlines()[0]


@pytest.mark.parametrize(
    "search,model,expect",
    [
        (0, 10, "a wider beam will not help"),
        (9, 1, "try a wider beam"),
        (4, 6, "can fix only the search errors"),
    ],
)
def test_verdict_wording(search, model, expect):
    r = analysis.BeamResult(
        5, 1.0, 20.0, 1.0, {analysis.CORRECT: 3, analysis.SEARCH: search, analysis.MODEL: model}, []
    )
    assert expect in analysis.verdict(r)


def test_cli_analyze_reads_the_runs_split_only_when_asked(tmp_path, nmt_cli, one_line_error):
    """A checkpoint (anyone's) names data paths: without --split, or --src and --ref, nothing
    is read, and one line says what to pass."""
    tr = tiny_translator(1)
    (tmp_path / "dev.src").write_text("a b\nc\n")
    (tmp_path / "dev.tgt").write_text("b\nc\n")
    tr.cfg.data.dev = str(tmp_path / "dev")
    run = save_run(tr, tmp_path / "run")
    assert one_line_error(nmt_cli("analyze", "-m", run, "--beam", "1"), "data error", 1) == NO_DATA
    result = nmt_cli("analyze", "-m", run, "--beam", "1", "--split", "dev")
    assert result.returncode == 0 and result.stdout.startswith(f"{tmp_path / 'dev'}: 2 sentences"), result.stderr


def test_unreachable_blank_and_correct_on_subword_ids():
    """A reference longer than the search may go is 'unreachable' (not a search error), a blank
    source is 'blank' and not scored, and 'correct' compares subword ids (a double space in the
    reference does not make a correct output wrong)."""
    tr = tiny_translator(4, alpha=1.0)  # outputs of at most L_MAX = 3 words for these sources
    sources = ["a b", "c", "", "d e a"]
    outputs = tr.translate(sources, beam=3)
    references = [outputs[0].replace(" ", "  "), "a b c d e", "anything", outputs[3]]
    (result,) = analysis.analyze(tr, sources, references, [3])
    kinds = [s.kind for s in result.sentences]
    assert kinds == [analysis.CORRECT, analysis.UNREACHABLE, analysis.BLANK, analysis.CORRECT]
    assert result.sentences[2].output_score is None and result.scored == 3
    assert result.errors == 0 and "longer than the search may go" in analysis.verdict(result)
    assert "1 (33%)" in analysis.table([result]).splitlines()[1]  # unreachable, of the 3 scored
    assert "(1 blank source lines, not scored)" in analysis.table([result])
    record = analysis.to_json([result], with_sentences=True)[0]
    assert record["counts"][analysis.UNREACHABLE] == 1 and record["sentences"] == 3


@pytest.mark.parametrize("penalty,formula", [("average", "T^alpha"), ("gnmt", "((5 + T) / 6)^alpha")])
def test_header_names_the_length_penalty_in_use(penalty, formula):
    line = analysis.header("dev", 7, penalty, 0.6)
    assert line == f"dev: 7 sentences; scores are log P / {formula} with alpha 0.6 ({penalty})"


def test_analyze_on_a_trained_run_classifies_by_independent_scores(reversal_run):
    """A trained model with real errors: each verdict agrees with scores computed here by teacher
    forcing (log P / T^alpha over the subword ids, EOS included), and BLEU with sacrebleu's."""
    run, sources, references = reversal_run
    tr = Translator.load(run, device="cpu")  # the scores below are computed on CPU tensors

    def score(source: str, ids: list[int], alpha: float) -> float:
        src = torch.tensor([tr.src_tok.encode([source])[0] + [EOS]])
        tgt = torch.tensor([[BOS] + ids + [EOS]])
        with torch.no_grad():
            log_probs = torch.log_softmax(tr.model(src, torch.tensor([src.size(1)]), tgt[:, :-1]).double(), -1)
        return float(log_probs[0].gather(1, tgt[0, 1:, None]).sum()) / (tgt.size(1) - 1) ** alpha

    results = analysis.analyze(tr, sources, references, beams=[1, 5], alpha=1.0)
    for result in results:
        outputs = [s.output for s in result.sentences]
        assert result.bleu == pytest.approx(sacrebleu.corpus_bleu(outputs, [references]).score, abs=1e-9)
        assert sum(result.counts.values()) == len(sources)
        for s, source, ref in zip(result.sentences, sources, references):
            out_ids, ref_ids = tr.tgt_tok.encode([s.output])[0], tr.tgt_tok.encode([ref])[0]
            if out_ids == ref_ids:
                assert s.kind == analysis.CORRECT
                continue
            assert s.output_score == pytest.approx(score(source, out_ids, 1.0), abs=1e-5)
            assert s.reference_score == pytest.approx(score(source, ref_ids, 1.0), abs=1e-5)
            assert s.kind == (analysis.SEARCH if s.reference_score > s.output_score else analysis.MODEL)
    greedy, beam = results
    assert greedy.counts[analysis.CORRECT] > 0 and greedy.errors > 0  # a model with real errors
    assert greedy.counts != beam.counts  # and the beam size changes them
