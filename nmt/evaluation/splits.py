"""A split translated and measured: BLEU and chrF (sacrebleu), and exact-match accuracy.

`eval_data` decides what `nmt evaluate`, `nmt analyze` and `nmt tune` read: the --src/--ref
files, or the dev/test split the config names (PREFIX.SRC_LANG, PREFIX.TGT_LANG). The paths in
a checkpoint's config are read only when the user asks for its split by name (`--split`):
a checkpoint may come from anyone (`check_eval_choice`). `corpus_metrics` turns hypotheses and
references into `CorpusMetrics`, which keep nmt.evaluation.metrics' reports (sacrebleu's score
with its signature), so BLEU and its signature are computed in one place.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from nmt.data.corpus import read_lines, read_parallel, split_path
from nmt.errors import DataError
from nmt.evaluation import metrics
from nmt.files import write_lines
from nmt.translate import Translator

if TYPE_CHECKING:
    from nmt.config import DataConfig

#: `eval_data`'s message for a split the config does not name (analyze and tune, which take files)
NO_SPLIT = "data.{split}: the run's config names no {split} split; pass --src and --ref"
#: ... and nmt evaluate's, which takes a split only
NO_SPLIT_TO_EVALUATE = "data.{split}: this config names no {split} split to evaluate"
#: analyze's and tune's message when neither a split nor files are named
NO_DATA = "no data named: pass --split dev|test (the run's own split) or --src FILE --ref FILE"


@dataclass
class CorpusMetrics:
    """Corpus metrics of hypotheses against one reference per line (not a model's scores: those
    are log-probabilities, nmt.translate)."""

    bleu_report: metrics.BleuReport
    chrf_report: metrics.ChrfReport
    accuracy: float  # fraction of lines equal to the reference (whitespace-trimmed)

    @property
    def bleu(self) -> float:
        return self.bleu_report.score

    @property
    def chrf(self) -> float:
        return self.chrf_report.score

    @property
    def bleu_signature(self) -> str:
        return self.bleu_report.signature

    @property
    def chrf_signature(self) -> str:
        return self.chrf_report.signature

    def line(self) -> str:
        return f"BLEU {self.bleu:.2f}  chrF {self.chrf:.2f}  exact match {100 * self.accuracy:.2f}%"


def corpus_metrics(hyps: list[str], refs: list[str]) -> CorpusMetrics:
    """BLEU, chrF and accuracy of `hyps` against `refs` (aligned by line)."""
    exact = sum(h.strip() == r.strip() for h, r in zip(hyps, refs)) / max(1, len(refs))
    return CorpusMetrics(metrics.bleu(hyps, [refs]), metrics.chrf(hyps, [refs]), exact)


def check_eval_choice(split: str | None, src: str | None, ref: str | None) -> None:
    """A DataError unless the user named the data: --src and --ref (both), or a split."""
    if src or ref:
        if not (src and ref):
            raise DataError("--src and --ref go together: give both files")
    elif split is None:
        raise DataError(NO_DATA)


def eval_data(
    data: DataConfig,
    split: str | None,
    src: str | None = None,
    ref: str | None = None,
    splits: DataConfig | None = None,
    missing: str = NO_SPLIT,
) -> tuple[list[str], list[str], str]:
    """Sources, references and a name for them (the source file, or the split's prefix).

    The files `src` and `ref` (both or neither, aligned line by line) if given; else the split
    `split` ('dev' or 'test'), whose prefix `splits` names (default: `data`), read in `data`'s
    languages. A split that is not named raises DataError(`missing`, formatted with `split`);
    neither files nor a split (None) raises DataError(NO_DATA).
    """
    check_eval_choice(split, src, ref)
    if src or ref:
        sources, references = read_lines(src), read_lines(ref)
        if len(sources) != len(references):
            raise DataError(f"{src} has {len(sources)} lines but {ref} has {len(references)}: expected aligned files")
        if not sources:
            raise DataError(f"{src}: no lines to translate")
        return sources, references, src
    prefix = getattr(splits or data, split)
    if not prefix:
        raise DataError(missing.format(split=split))
    sources, references = read_parallel(prefix, data.src_lang, data.tgt_lang)
    if not sources:
        raise DataError(f"{split_path(prefix, data.src_lang)}: no lines to translate")
    return sources, references, prefix


def translate_and_score(
    translator: Translator,
    src: list[str],
    refs: list[str],
    out_path: Path | None = None,
    beam: int | None = None,
    alpha: float | None = None,
) -> tuple[CorpusMetrics, list[str]]:
    """Translate `src`, write the hypotheses to `out_path` (if given), score them against `refs`.

    Returns the scores and the hypotheses.
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

    Returns the scores, the sources, the references and the hypotheses.
    """
    d = translator.cfg.data
    src, refs = read_parallel(prefix, d.src_lang, d.tgt_lang)
    scores, hyps = translate_and_score(translator, src, refs, out_path, beam, alpha)
    return scores, src, refs, hyps
