"""A split translated and measured (BLEU, chrF and exact match: nmt.evaluation.metrics.CorpusMetrics),
its hypotheses written: what `nmt evaluate` and the end of `nmt train` do."""

from __future__ import annotations

from pathlib import Path

from nmt.data.corpus import read_parallel
from nmt.evaluation.metrics import CorpusMetrics, corpus_metrics
from nmt.files import write_lines
from nmt.translate import Translator


def translate_and_score(
    translator: Translator,
    src: list[str],
    refs: list[str],
    out_path: Path | None = None,
    beam: int | None = None,
    alpha: float | None = None,
) -> tuple[CorpusMetrics, list[str]]:
    """Translate `src`, write the hypotheses to `out_path` (if given), score them against `refs`.

    Returns the metrics and the hypotheses.
    """
    hyps = translator.translate(src, beam, alpha)
    if out_path is not None:
        write_lines(out_path, hyps)
    return corpus_metrics(hyps, refs), hyps


def evaluate_split(
    translator: Translator,
    prefix: str,
    out_path: Path | None = None,
    beam: int | None = None,
    alpha: float | None = None,
) -> tuple[CorpusMetrics, list[str], list[str], list[str]]:
    """Translate split `prefix` of the translator's languages; write hypotheses to `out_path`.

    Returns the metrics, the sources, the references and the hypotheses.
    """
    d = translator.cfg.data
    src, refs = read_parallel(prefix, d.src_lang, d.tgt_lang)
    metrics, hyps = translate_and_score(translator, src, refs, out_path, beam, alpha)
    return metrics, src, refs, hyps
