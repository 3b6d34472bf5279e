"""Is it the search or the model? Beam-search error analysis.

For every sentence with reference y* the search returns ŷ. Score both under the model with the
length normalisation the search uses, score(y) = log P(y | x) / lp(|y|):

- ŷ = y* (same text): correct;
- score(y*) > score(ŷ): a search error, the model prefers the reference but the search missed it;
- otherwise: a model error, the model prefers the wrong output (a wider beam cannot fix it).

`analyze` does this for several beam sizes; `verdict` turns the counts into advice.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

from nmt import metrics
from nmt.translate import Translator

CORRECT, SEARCH, MODEL = "correct", "search error", "model error"


@dataclass
class SentenceResult:
    index: int
    output: str
    output_score: float
    reference_score: float
    kind: str  # CORRECT, SEARCH or MODEL


@dataclass
class BeamResult:
    """The analysis at one beam size: counts per kind, corpus BLEU, and each sentence."""

    beam: int
    alpha: float
    bleu: float
    seconds: float
    counts: dict[str, int]
    sentences: list[SentenceResult] = field(repr=False)

    @property
    def errors(self) -> int:
        return self.counts[SEARCH] + self.counts[MODEL]

    def share(self, kind: str) -> float:
        """Fraction of the errors (not of all sentences) of this kind."""
        return self.counts[kind] / self.errors if self.errors else 0.0


def classify(output: str, reference: str, output_score: float, reference_score: float) -> str:
    """CORRECT, SEARCH or MODEL for one sentence (see the module docstring)."""
    if output.strip() == reference.strip():
        return CORRECT
    return SEARCH if reference_score > output_score else MODEL


def analyze(
    translator: Translator, sources: list[str], references: list[str], beams: list[int], alpha: float | None = None
) -> list[BeamResult]:
    """Search and model errors of `translator` on (sources, references) at each beam size."""
    alpha = translator.cfg.decoding.alpha if alpha is None else alpha
    reference_scores = [s for _, s in translator.score(sources, references, alpha)]
    results = []
    for beam in beams:
        t0 = time.perf_counter()
        best = [nbest[0] for nbest in translator.search(sources, beam=beam, alpha=alpha, n_best=1)]
        seconds = time.perf_counter() - t0
        outputs = [t.text for t in best]
        # rescored by forced decoding, like the references: both scores come from one computation
        output_scores = [s for _, s in translator.score(sources, [t.ids for t in best], alpha)]
        sentences = [
            SentenceResult(i, out, o, r, classify(out, ref, o, r))
            for i, (out, ref, o, r) in enumerate(zip(outputs, references, output_scores, reference_scores))
        ]
        counts = {kind: sum(s.kind == kind for s in sentences) for kind in (CORRECT, SEARCH, MODEL)}
        bleu = metrics.bleu(outputs, [references]).score
        results.append(BeamResult(beam, alpha, bleu, seconds, counts, sentences))
    return results


def verdict(result: BeamResult) -> str:
    """Plain-language advice from one beam size's counts."""
    if not result.errors:
        return f"beam {result.beam}: every output equals its reference"
    search, model = result.share(SEARCH), result.share(MODEL)
    if model >= 0.8:
        return (
            f"beam {result.beam}: {100 * model:.0f}% of errors are model errors: a wider beam will not help; "
            "a better model (more data, training, capacity) will"
        )
    if search >= 0.5:
        return (
            f"beam {result.beam}: {100 * search:.0f}% of errors are search errors: the model prefers the "
            "reference but the search misses it; try a wider beam or another alpha"
        )
    return (
        f"beam {result.beam}: {100 * search:.0f}% search errors, {100 * model:.0f}% model errors: "
        "a wider beam can fix only the search errors"
    )


def table(results: list[BeamResult]) -> str:
    """The analysis as a text table, one row per beam size."""
    n = sum(results[0].counts.values()) if results else 0
    lines = [
        f"{'beam':>4}  {'alpha':>5}  {'BLEU':>5}  {'correct':>9}  {'search err':>12}  {'model err':>12}  "
        f"{'search share':>12}  {'sent/s':>7}"
    ]
    for r in results:
        pct = {k: f"{r.counts[k]} ({100 * r.counts[k] / max(1, n):.0f}%)" for k in (CORRECT, SEARCH, MODEL)}
        lines.append(
            f"{r.beam:>4}  {r.alpha:>5g}  {r.bleu:>5.1f}  {pct[CORRECT]:>9}  {pct[SEARCH]:>12}  "
            f"{pct[MODEL]:>12}  {100 * r.share(SEARCH):>11.1f}%  {n / max(r.seconds, 1e-9):>7.0f}"
        )
    return "\n".join(lines)


def to_json(results: list[BeamResult], with_sentences: bool = False) -> list[dict]:
    """JSON-ready records: counts, fractions of all sentences, share of errors, verdict."""
    out = []
    for r in results:
        n = max(1, sum(r.counts.values()))
        record = {
            "beam": r.beam,
            "alpha": r.alpha,
            "bleu": r.bleu,
            "sentences": n,
            "counts": r.counts,
            "fractions": {k: v / n for k, v in r.counts.items()},
            "search_error_share": r.share(SEARCH),
            "model_error_share": r.share(MODEL),
            "sents_per_s": n / max(r.seconds, 1e-9),
            "verdict": verdict(r),
        }
        if with_sentences:
            record["per_sentence"] = [asdict(s) for s in r.sentences]
        out.append(record)
    return out
