"""nmt.analysis: search errors or model errors, on tiny word-level models whose best output is
known exactly (exhaustive search over every short output)."""

from __future__ import annotations

import pytest
from word_models import find_search_error, tiny_translator

from nmt import analysis

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
