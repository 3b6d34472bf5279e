"""Scoring translations of a split: BLEU and chrF (sacrebleu), and exact-match accuracy."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from nmt import metrics
from nmt.data.corpus import read_parallel
from nmt.files import write_lines
from nmt.translate import Translator


@dataclass
class Scores:
    """Corpus scores of hypotheses against one reference per line."""

    bleu: float
    chrf: float
    accuracy: float  # fraction of lines equal to the reference (whitespace-trimmed)
    bleu_signature: str
    chrf_signature: str

    def line(self) -> str:
        return f"BLEU {self.bleu:.2f}  chrF {self.chrf:.2f}  exact match {100 * self.accuracy:.2f}%"


def score(hyps: list[str], refs: list[str]) -> Scores:
    """BLEU, chrF and accuracy of `hyps` against `refs` (aligned by line)."""
    b, c = metrics.bleu(hyps, [refs]), metrics.chrf(hyps, [refs])
    exact = sum(h.strip() == r.strip() for h, r in zip(hyps, refs)) / max(1, len(refs))
    return Scores(b.score, c.score, exact, b.signature, c.signature)


def evaluate_split(translator: Translator, prefix: str, out_path: Path | None = None,
                   beam: int | None = None, alpha: float | None = None) -> tuple[Scores, list[str], list[str], list[str]]:
    """Translate split `prefix` of the translator's languages; write hypotheses to `out_path`.

    Returns the scores, the sources, the references and the hypotheses.
    """
    d = translator.cfg.data
    src, refs = read_parallel(prefix, d.src_lang, d.tgt_lang)
    hyps = translator.translate(src, beam, alpha)
    if out_path is not None:
        write_lines(out_path, hyps)
    return score(hyps, refs), src, refs, hyps
