"""Is it the search or the model? Beam-search error analysis.

For every sentence with reference y* the search returns ŷ. Score both under the model with the
length normalisation the search uses, score(y) = log P(y | x) / lp(|y|):

- ŷ = y* (the same subword ids): correct;
- y* longer than the search's length cap for this source: unreachable (no search could
  produce it; counted apart, neither a search nor a model error);
- score(y*) > score(ŷ): a search error, the model prefers the reference but the search missed it;
- otherwise: a model error, the model prefers the wrong output (a wider beam cannot fix it).

A blank source line is reported as blank and not scored. `analyze` does this for several beam
sizes; `verdict` turns the counts into advice.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import torch

from nmt.evaluation import metrics
from nmt.search import max_lengths
from nmt.translate import Translator

CORRECT, SEARCH, MODEL, UNREACHABLE, BLANK = "correct", "search error", "model error", "unreachable", "blank"
KINDS = (CORRECT, SEARCH, MODEL, UNREACHABLE, BLANK)
PENALTIES = {"average": "T^alpha", "gnmt": "((5 + T) / 6)^alpha"}  # lp(T), as the header prints it


@dataclass
class SentenceResult:
    index: int
    output: str
    output_score: float | None  # None for a blank source
    reference_score: float | None
    kind: str  # one of KINDS


@dataclass
class BeamResult:
    """The analysis at one beam size: counts per kind, corpus BLEU, and each sentence."""

    beam_size: int
    alpha: float
    bleu: float
    seconds: float
    counts: dict[str, int]
    sentences: list[SentenceResult] = field(repr=False)

    @property
    def errors(self) -> int:
        return self.counts[SEARCH] + self.counts[MODEL]

    @property
    def scored(self) -> int:
        """Sentences scored (all but the blank ones)."""
        return sum(self.counts.values()) - self.counts.get(BLANK, 0)

    def share(self, kind: str) -> float:
        """Fraction of the errors (not of all sentences) of this kind."""
        return self.counts[kind] / self.errors if self.errors else 0.0


def classify(output: list[int], reference: list[int], output_score: float, reference_score: float, cap: int) -> str:
    """The kind of one sentence from the subword ids of output and reference, their scores and
    the most tokens the search may produce for its source (see the module docstring)."""
    if output == reference:
        return CORRECT
    if len(reference) > cap:
        return UNREACHABLE
    return SEARCH if reference_score > output_score else MODEL


def header(name: str, n: int, penalty: str, alpha: float) -> str:
    """The line above the table: the data and the score the search ranks by."""
    return f"{name}: {n} sentences; scores are log P / {PENALTIES[penalty]} with alpha {alpha:g} ({penalty})"


def analyze(
    translator: Translator, sources: list[str], references: list[str], beams: list[int], alpha: float | None = None
) -> list[BeamResult]:
    """Search and model errors of `translator` on (sources, references) at each beam size."""
    d = translator.decoding(alpha=alpha)
    scored = [i for i, line in enumerate(sources) if line.strip()]
    ref_ids = translator.tgt_tok.encode(list(references))
    src_lengths = torch.tensor([len(ids) + 1 for ids in translator.src_tok.encode(list(sources))])  # + EOS
    caps = max_lengths(src_lengths, d.max_length_ratio, d.max_length_offset).tolist()
    reference_scores = _scores(translator, sources, [ref_ids[i] for i in scored], scored, d.alpha)
    results = []
    for beam in beams:
        t0 = time.perf_counter()
        best = [nbest[0] for nbest in translator.search(sources, beam=beam, alpha=d.alpha, n_best=1)]
        seconds = time.perf_counter() - t0
        # rescored by forced decoding, like the references: both scores come from one computation
        output_scores = _scores(translator, sources, [best[i].ids for i in scored], scored, d.alpha)
        sentences = []
        for i, t in enumerate(best):
            if i not in output_scores:
                sentences.append(SentenceResult(i, "", None, None, BLANK))
                continue
            o, r = output_scores[i], reference_scores[i]
            sentences.append(SentenceResult(i, t.text, o, r, classify(t.ids, ref_ids[i], o, r, caps[i])))
        counts = {kind: sum(s.kind == kind for s in sentences) for kind in KINDS}
        bleu = metrics.bleu([t.text for t in best], [references]).score
        results.append(BeamResult(beam, d.alpha, bleu, seconds, counts, sentences))
    return results


def _scores(translator: Translator, sources: list[str], targets: list[list[int]], lines: list[int], alpha: float):
    """{line: normalised score of its target} for the given lines of `sources`."""
    pairs = translator.score([sources[i] for i in lines], targets, alpha)
    return {i: score for i, (_, score) in zip(lines, pairs)}


def verdict(result: BeamResult) -> str:
    """Plain-language advice from one beam size's counts."""
    return _advice(result) + _unreachable_note(result)


def _advice(result: BeamResult) -> str:
    if not result.errors:
        if result.counts.get(UNREACHABLE, 0):
            return f"beam {result.beam_size}: no search or model errors"
        return f"beam {result.beam_size}: every output equals its reference"
    search, model = result.share(SEARCH), result.share(MODEL)
    if model >= 0.8:
        return (
            f"beam {result.beam_size}: {100 * model:.0f}% of errors are model errors: a wider beam will not help; "
            "a better model (more data, training, capacity) will"
        )
    if search >= 0.5:
        return (
            f"beam {result.beam_size}: {100 * search:.0f}% of errors are search errors: the model prefers the "
            "reference but the search misses it; try a wider beam or another alpha"
        )
    return (
        f"beam {result.beam_size}: {100 * search:.0f}% search errors, {100 * model:.0f}% model errors: "
        "a wider beam can fix only the search errors"
    )


def _unreachable_note(result: BeamResult) -> str:
    n = result.counts.get(UNREACHABLE, 0)
    if not n:
        return ""
    return (
        f"; {n} reference{'s are' if n > 1 else ' is'} longer than the search may go "
        "(decoding.max_length_ratio and max_length_offset)"
    )


def table(results: list[BeamResult]) -> str:
    """The analysis as a text table, one row per beam size (percentages of the scored sentences)."""
    n = results[0].scored if results else 0
    kinds = (CORRECT, SEARCH, MODEL, UNREACHABLE)
    lines = [
        f"{'beam':>4}  {'alpha':>5}  {'BLEU':>5}  {'correct':>9}  {'search err':>12}  {'model err':>12}  "
        f"{'unreachable':>11}  {'search share':>12}  {'sent/s':>7}"
    ]
    for r in results:
        pct = {k: f"{r.counts.get(k, 0)} ({100 * r.counts.get(k, 0) / max(1, n):.0f}%)" for k in kinds}
        lines.append(
            f"{r.beam_size:>4}  {r.alpha:>5g}  {r.bleu:>5.1f}  {pct[CORRECT]:>9}  {pct[SEARCH]:>12}  "
            f"{pct[MODEL]:>12}  {pct[UNREACHABLE]:>11}  {100 * r.share(SEARCH):>11.1f}%  "
            f"{n / max(r.seconds, 1e-9):>7.0f}"
        )
    if results and results[0].counts.get(BLANK):
        lines.append(f"({results[0].counts[BLANK]} blank source lines, not scored)")
    return "\n".join(lines)


def to_json(results: list[BeamResult], with_sentences: bool = False) -> list[dict]:
    """JSON-ready records: counts, fractions of the scored sentences, share of errors, verdict."""
    out = []
    for r in results:
        n = max(1, r.scored)
        record = {
            "beam": r.beam_size,
            "alpha": r.alpha,
            "bleu": r.bleu,
            "sentences": n,
            "counts": r.counts,
            "fractions": {k: v / n for k, v in r.counts.items() if k != BLANK},
            "search_error_share": r.share(SEARCH),
            "model_error_share": r.share(MODEL),
            "sents_per_s": n / max(r.seconds, 1e-9),
            "verdict": verdict(r),
        }
        if with_sentences:
            record["per_sentence"] = [asdict(s) for s in r.sentences]
        out.append(record)
    return out
