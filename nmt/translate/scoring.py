"""Forced scoring (`nmt score`): how probable the model finds given translations.

For every (source, target) pair: log P(target | source) summed over the target's subwords and
the end-of-sentence token, the length-normalised score log P / lp(T) with the run's alpha and
penalty (exactly what beam search ranks by and reports, `nmt.search.common.length_penalty`),
and T, the number of target tokens with EOS. Pairs are scored in batches of similar source
length, like translation (`Translator.score`). A pair whose source is blank is not scored (no
translation is made of a blank line either): its output line is empty. A blank target with a
source is scored: it is the output that ends at once, T = 1.

Uses: filtering noisy training pairs, reranking n-best lists, checking `nmt analyze`'s numbers.
"""

from __future__ import annotations

from dataclasses import dataclass

from nmt.data.corpus import read_lines
from nmt.errors import DataError


@dataclass(frozen=True)
class PairScore:
    """log_prob: log P(target | source), EOS included; search_score: log_prob / lp(tokens), what
    beam search ranks by; tokens: T."""

    log_prob: float
    search_score: float
    tokens: int

    @property
    def score(self) -> float:
        """search_score's name before nmt 0.2 (kept for code written then)."""
        return self.search_score

    def line(self) -> str:
        """The output line: log-probability, normalised score, tokens, tab-separated."""
        return f"{self.log_prob:.6f}\t{self.search_score:.6f}\t{self.tokens}"


def read_pairs(src_path: str | None, tgt_path: str | None, stdin_lines: list[str] | None) -> tuple[list, list]:
    """(sources, targets): from two files aligned by line, or from `SOURCE<TAB>TARGET` lines
    (stdin; an empty line is a blank pair). A DataError names the file and line at fault."""
    if src_path is not None and tgt_path is not None:
        sources, targets = read_lines(src_path), read_lines(tgt_path)
        if len(sources) != len(targets):
            counts = f"{src_path} has {len(sources)} lines but {tgt_path} has {len(targets)}"
            raise DataError(f"line counts differ: {counts}")
        return sources, targets
    sources, targets = [], []
    for number, line in enumerate(stdin_lines or [], 1):
        fields = line.split("\t") if line.strip() else ["", ""]
        if len(fields) != 2:
            raise DataError(f"<stdin>: line {number}: expected SOURCE<TAB>TARGET (one tab), got {len(fields) - 1} tabs")
        sources.append(fields[0])
        targets.append(fields[1])
    return sources, targets


def score_pairs(translator, sources: list[str], targets: list[str], alpha: float | None = None) -> list:
    """A PairScore for every pair, None where the source is blank. alpha: default decoding.alpha."""
    todo = [i for i, src in enumerate(sources) if src.strip()]
    ids = translator.tgt_tok.encode([targets[i] for i in todo]) if todo else []
    forced = translator.score([sources[i] for i in todo], ids, alpha) if todo else []
    out: list[PairScore | None] = [None] * len(sources)
    for i, tgt_ids, (log_prob, search_score) in zip(todo, ids, forced):
        out[i] = PairScore(log_prob, search_score, len(tgt_ids) + 1)  # T counts EOS
    return out
