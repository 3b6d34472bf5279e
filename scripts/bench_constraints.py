"""What terminology constraints do to a model's output: constrained decoding measured.

    python scripts/bench_constraints.py RUN_DIR --src SRC --ref REF [--beam 5] [--lines N]

Each test sentence is translated without constraints first. Then, for n = 1 and 2, the n
longest reference words missing from that output (words as whitespace splits them, without
their closing punctuation, that the target vocabulary can spell; ties by position) are given as
constraints, as a terminology list would give a translator's terms, and the sentence is
translated again. Sentences with fewer than
n missing words keep their unconstrained output. Prints a Markdown table: per n, the sentences
constrained, the share of their outputs that contain all their constraints, the test BLEU
(sacrebleu, all sentences) beside the unconstrained one, and the decoding speed of the
constrained sentences with and without their constraints (sentences/s, this machine, same beam).
"""

from __future__ import annotations

import argparse
import time

import sacrebleu
from bench_prefix import model_and_test_set  # (this folder: python scripts/bench_constraints.py)

from nmt.errors import DataError

PUNCTUATION = ".,;:!?\"'()"


def missing_words(tr, output: str, reference: str, n: int) -> list[str]:
    """The n longest words of `reference` that `output` lacks (fewer if it lacks fewer), among
    those the target vocabulary can spell."""
    have = {w.strip(PUNCTUATION) for w in output.split()}
    words = [w.strip(PUNCTUATION) for w in reference.split()]
    missing = [w for w in dict.fromkeys(w for w in words if w and w not in have) if spellable(tr, w)]
    return sorted(missing, key=lambda w: (-len(w), missing.index(w)))[:n]


def spellable(tr, word: str) -> bool:
    try:
        tr.constraint(word)
    except DataError:
        return False
    return True


def timed(tr, lines: list[str], beam: int, constraints=None) -> tuple[list[str], float]:
    """(outputs, sentences per second)."""
    start = time.perf_counter()
    outputs = tr.translate(lines, beam=beam, constraints=constraints)
    return outputs, len(lines) / (time.perf_counter() - start)


def main() -> None:
    args, tr, sources, refs = model_and_test_set(argparse.ArgumentParser(description=__doc__.splitlines()[0]))
    plain, speed = timed(tr, sources, args.beam)
    base = sacrebleu.corpus_bleu(plain, [refs]).score
    print(
        f"beam {args.beam}, {len(sources)} sentences of {args.src}: BLEU {base:.2f} unconstrained, {speed:.1f} sent/s"
    )
    print("| constraints | sentences | all constraints appear | BLEU (all sentences) | sent/s without / with |")
    print("| --- | --- | --- | --- | --- |")
    for n in (1, 2):
        terms = [missing_words(tr, plain[i], refs[i], n) for i in range(len(sources))]
        rows = [i for i in range(len(sources)) if len(terms[i]) == n]
        terms = [terms[i] for i in rows]
        subset = [sources[i] for i in rows]
        _, unconstrained_speed = timed(tr, subset, args.beam)
        constrained, constrained_speed = timed(tr, subset, args.beam, terms)
        met = sum(all(p in out for p in phrases) for out, phrases in zip(constrained, terms))
        outputs = list(plain)
        for i, out in zip(rows, constrained):
            outputs[i] = out
        bleu = sacrebleu.corpus_bleu(outputs, [refs]).score
        print(
            f"| {n} | {len(rows)} | {100 * met / len(rows):.1f}% ({met}) | {bleu:.2f} (+{bleu - base:.2f}) | "
            f"{unconstrained_speed:.1f} / {constrained_speed:.1f} ({constrained_speed / unconstrained_speed:.2f}x) |"
        )


if __name__ == "__main__":
    main()
