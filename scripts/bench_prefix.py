"""How well a model continues a translator's typing: prefix-constrained decoding measured.

    python scripts/bench_prefix.py RUN_DIR --src SRC --ref REF [--beam 5] [--max-k 5] [--lines N]

For k = 0..max-k, each test sentence's first k reference words are given as the prefix, and the
output's next word is compared with the reference's word k + 1 ("whole words": the prefix ends
with a space). "Mid-word" gives the first half of word k + 1 too (its first ceil(n/2)
characters, no space after: a translator still typing it) and checks that the output completes
it as the reference does. Sentences with fewer than k + 1 words are left out of row k. Prints a
Markdown table: the accuracies, the share of outputs that begin with their prefix, and the
decoding speed (sentences/s, this machine).
"""

from __future__ import annotations

import argparse
import math
import time

import nmt
from nmt.data.corpus import read_lines


def next_word_accuracy(tr, sources: list[str], refs: list[list[str]], k: int, mid_word: bool, beam: int):
    """(accuracy, share beginning with the prefix, sentences/s, sentences) for row k."""
    rows = [i for i, words in enumerate(refs) if len(words) > k]
    prefixes = []
    for i in rows:
        words = refs[i][:k]
        if mid_word:
            word = refs[i][k]
            prefixes.append(" ".join([*words, word[: math.ceil(len(word) / 2)]]))
        else:
            prefixes.append(" ".join(words) + " " if words else "")
    start = time.perf_counter()
    outputs = tr.translate([sources[i] for i in rows], beam=beam, prefixes=prefixes)
    speed = len(rows) / (time.perf_counter() - start)
    right = sum(len(o.split()) > k and o.split()[k] == refs[i][k] for o, i in zip(outputs, rows))
    begins = sum(o.startswith(p.rstrip()) for o, p in zip(outputs, prefixes))
    return right / len(rows), begins / len(rows), speed, len(rows)


def model_and_test_set(parser: argparse.ArgumentParser) -> tuple[argparse.Namespace, nmt.Translator, list, list]:
    """What the benchmarks of steered search share (this one, bench_constraints.py): the
    arguments RUN, --src, --ref, --beam, --lines added to `parser` and parsed; the model loaded;
    the first --lines sources and references."""
    parser.add_argument("run", help="run directory or checkpoint")
    parser.add_argument("--src", required=True)
    parser.add_argument("--ref", required=True)
    parser.add_argument("--beam", type=int, default=5)
    parser.add_argument("--lines", type=int, default=0, help="only the first N sentences (0: all)")
    args = parser.parse_args()
    nmt.runtime.configure()
    sources, refs = read_lines(args.src), read_lines(args.ref)
    if args.lines:
        sources, refs = sources[: args.lines], refs[: args.lines]
    return args, nmt.Translator.load(args.run), sources, refs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-k", type=int, default=5)
    args, tr, sources, refs = model_and_test_set(parser)
    refs = [line.split() for line in refs]
    print(f"beam {args.beam}, {len(sources)} sentences of {args.src}")
    print("| k words given | next word right | begins with prefix | mid-word: word completed right | begins | sent/s |")
    print("| --- | --- | --- | --- | --- | --- |")
    for k in range(args.max_k + 1):
        whole = next_word_accuracy(tr, sources, refs, k, False, args.beam)
        mid = next_word_accuracy(tr, sources, refs, k, True, args.beam)
        print(
            f"| {k} ({whole[3]} sentences) | {100 * whole[0]:.1f}% | {100 * whole[1]:.1f}% | "
            f"{100 * mid[0]:.1f}% | {100 * mid[1]:.1f}% | {whole[2]:.0f} / {mid[2]:.0f} |"
        )


if __name__ == "__main__":
    main()
