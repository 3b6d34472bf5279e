"""Would the tests notice a wrong formula? Run a fixed list of one-line mutants against them.

    python scripts/mutants.py            # every mutant (a few minutes on 2 cores)
    python scripts/mutants.py --list     # the list, without running anything
    python scripts/mutants.py -k gnmt    # only mutants whose name contains "gnmt"

Each mutant replaces one line of the package (the text must occur exactly once) in a temporary
copy of the repository, then runs the tests that should catch it there. A mutant is caught when
those tests fail. Prints one line per mutant, caught or MISSED, and exits 1 if any was missed:
every mutant on this list must be caught. When a change to the code moves a line, update the
mutant (tests/test_code_layout.py checks that every mutant's text is still in the package).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Mutant:
    name: str
    file: str  # relative to the repository
    old: str  # occurs exactly once in the file
    new: str
    tests: tuple[str, ...]  # pytest arguments that must fail


MUTANTS = [
    Mutant(
        "length penalty exponent negated",
        "nmt/search/common.py",
        "return length**alpha",
        "return length**-alpha",
        ("tests/test_search.py",),
    ),
    Mutant(
        "GNMT penalty (6 + T) / 6",
        "nmt/search/common.py",
        "((5 + length) / 6) ** alpha",
        "((6 + length) / 6) ** alpha",
        ("tests/test_search.py",),
    ),
    Mutant(
        "exact stop bound at T = 1",
        "nmt/search/beam.py",
        "options.search_score(best_alive, max_len + 1)",
        "options.search_score(best_alive, 1)",
        ("tests/test_search.py",),
    ),
    Mutant(
        "beam looks at K + 1 extensions, not 2K",
        "nmt/search/beam.py",
        "best_extensions(beams.scores, log_probs, min(2 * K, K * V))",
        "best_extensions(beams.scores, log_probs, min(K + 1, K * V))",
        ("tests/test_search.py",),
    ),
    Mutant(
        "blockwise top-k picks blocks without the rows' scores",
        "nmt/search/beam.py",
        "maxima = log_probs.view(n * K, M, C).amax(dim=2).view(n, K, M) + scores.unsqueeze(2)",
        "maxima = log_probs.view(n * K, M, C).amax(dim=2).view(n, K, M)",
        ("tests/test_search.py",),
    ),
    Mutant(
        "greedy takes the least probable token",
        "nmt/search/greedy.py",
        "log_probs.max(dim=-1).indices",
        "log_probs.min(dim=-1).indices",
        ("tests/test_search.py",),
    ),
    Mutant(
        "tune recommends its worst pair",
        "nmt/evaluation/tuning.py",
        "return max(results, key=",
        "return min(results, key=",
        ("tests/test_tuning.py",),
    ),
    Mutant(
        "brevity penalty prints c/r for r/c",
        "nmt/evaluation/metrics.py",
        "exp(1 - {r}/{c}) = {b.bp:.4f}",
        "exp(1 - {c}/{r}) = {b.bp:.4f}",
        ("tests/test_metrics.py",),
    ),
    Mutant(
        "BLEU's mean of logs over 3",
        "nmt/evaluation/metrics.py",
        "/ len(b.precisions)",
        "/ 3",
        ("tests/test_metrics.py",),
    ),
    Mutant(
        "search error when the output scores higher",
        "nmt/evaluation/analysis.py",
        "return SEARCH if reference_score > output_score else MODEL",
        "return SEARCH if reference_score < output_score else MODEL",
        ("tests/test_analysis.py",),
    ),
    Mutant(
        "sigmoid-form attention without its factor 2",
        "nmt/model/attention.py",
        "energies = 2 * self.v(torch.sigmoid(pre)).squeeze(3)",
        "energies = self.v(torch.sigmoid(pre)).squeeze(3)",
        ("tests/test_model.py",),
    ),
    Mutant(
        "attention on padding",
        "nmt/model/attention.py",
        'energies.masked_fill(~src_mask.unsqueeze(1), float("-inf"))',
        'energies.masked_fill(src_mask.unsqueeze(1) & False, float("-inf"))',
        ("tests/test_model.py", "tests/test_search.py"),
    ),
    Mutant(
        "label smoothing's uniform part added",
        "nmt/model/output.py",
        "rows = rows - smoothing * z.mean(dim=1)",
        "rows = rows + smoothing * z.mean(dim=1)",
        ("tests/test_training_step.py",),
    ),
    Mutant(
        "label smoothing's gradient not divided by V",
        "nmt/model/output.py",
        "g.sub_(smoothing / V)",
        "g.sub_(smoothing)",
        ("tests/test_training_step.py",),
    ),
]


def copy_repository(to: Path) -> None:
    """The files git tracks (and untracked ones it does not ignore), as they are now."""
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout.splitlines()
    for name in listed:
        source = ROOT / name
        if source.is_file():
            (to / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, to / name)


def apply(mutant: Mutant, root: Path) -> None:
    path = root / mutant.file
    text = path.read_text(encoding="utf-8")
    if text.count(mutant.old) != 1:
        raise SystemExit(
            f"mutants.py: {mutant.name}: {mutant.file} holds {text.count(mutant.old)} copies of "
            f"{mutant.old!r}, expected exactly one; update the mutant"
        )
    path.write_text(text.replace(mutant.old, mutant.new), encoding="utf-8")


def run(mutant: Mutant) -> tuple[bool, float]:
    """(caught, seconds): the mutant's tests in a mutated copy of the repository."""
    with tempfile.TemporaryDirectory(prefix="nmt-mutant-") as tmp:
        root = Path(tmp)
        copy_repository(root)
        apply(mutant, root)
        env = {**os.environ, "PYTHONPATH": str(root)}
        t0 = time.time()
        result = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *mutant.tests],
            cwd=root,
            env=env,
            capture_output=True,
            text=True,
        )
        return result.returncode != 0, time.time() - t0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--list", action="store_true", help="print the mutants and stop")
    p.add_argument("-k", default="", help="only mutants whose name contains this")
    args = p.parse_args()
    chosen = [m for m in MUTANTS if args.k in m.name]
    missed = 0
    for mutant in chosen:
        if args.list:
            print(f"{mutant.name}: {mutant.file}: {mutant.old!r} -> {mutant.new!r} ({' '.join(mutant.tests)})")
            continue
        caught, seconds = run(mutant)
        missed += not caught
        print(f"{'caught' if caught else 'MISSED'}  {mutant.name}  ({mutant.file}, {seconds:.0f}s)", flush=True)
    if not args.list:
        print(f"{len(chosen) - missed} caught, {missed} missed")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
