#!/usr/bin/env python
"""Benchmark: the training-data path at 100x Multi30k (issue 15).

    python scripts/bench_data.py --pairs 1M,3M [--out DIR] [--json FILE] [--no-first-train] [--no-torchrun]

For each size it makes a deterministic synthetic corpus (each pair: two random Multi30k
training pairs joined, source to source and target to target, ~24 words a side, about WMT's
sentence length; random.Random(size)) as plain files in DIR, and runs the reference config
(configs/multi30k_de_en.yaml, no dev or test split, training.log_every 1) on it through the
`nmt` command, each command a process of its own:

- `nmt prepare CONFIG`: sentencepiece seconds and encoding pairs/s (from its log lines), and
  the peak RSS of preparation (the process's, from wait4);
- `nmt train CONFIG --set training.max_steps=10` (a new run that maps the prepared corpus):
  peak RSS of training, and its largest PSS (proportional set size, /proc/PID/smaps_rollup:
  pages shared with other processes, such as the mapped corpus, counted in shares) sampled
  every 0.1 s;
- `nmt train RUN --resume` to step 11: seconds from the command's start to its line `resumed
  from ...` (checkpoint loaded, corpus mapped), and to the end of its first step (the step's
  record in metrics.jsonl, polled: this includes the first epoch's batching and one step);
- `torchrun --nproc_per_node 2 -m nmt train RUN --resume` (2 CPU ranks, 4 steps): the largest
  sum of the two ranks' PSS, and its ratio to one process's PSS above; the same for the PSS of
  their mappings of train.bin alone (from /proc/PID/smaps), which shows whether the corpus is
  held once (ratio 1) or once per rank (ratio 2), and what the second rank adds (2 ranks' PSS
  minus one process's: its own model memory, and the corpus if it were copied);
- unless --no-first-train: the whole first `nmt train CONFIG` (sentencepiece, encoding and 10
  steps in one process, in a fresh run directory): its peak RSS.

Sizes take a suffix k or M. Prints a Markdown table (docs/results.md's) and, with --json, the figures.
`--old PATH` first measures, for each size, the nmt checkout at PATH (say `git worktree add
/tmp/base COMMIT` of the code before the binary corpus) where the measurements apply: its first
`nmt train` (10 steps; peak RSS and PSS), its --resume and its 2 ranks.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MULTI30K = [REPO / "data" / "multi30k", REPO.parent / "shared" / "data" / "multi30k"]
ENV = {**os.environ, "PYTHONPATH": str(REPO)}
NMT = [sys.executable, "-m", "nmt"]
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "nmt"]


def size(text: str) -> int:
    scale = {"k": 1_000, "m": 1_000_000}.get(text[-1].lower(), 1)
    return int(float(text[:-1] if scale > 1 else text) * scale)


def make_corpus(n: int, out: Path) -> str:
    """out/pairs_N.{de,en}: pair i joins Multi30k training pairs a and b (drawn at random)."""
    prefix = out / f"pairs_{n}"
    if Path(f"{prefix}.en").is_file():
        return str(prefix)
    folder = next(f for f in MULTI30K if (f / "train.de.gz").is_file())
    de, en = (
        gzip.open(folder / f"train.{lang}.gz", "rt", encoding="utf-8").read().splitlines() for lang in ("de", "en")
    )
    rng = random.Random(n)
    with open(f"{prefix}.de.tmp", "w", encoding="utf-8") as fd, open(f"{prefix}.en.tmp", "w", encoding="utf-8") as fe:
        for _ in range(n):
            a, b = rng.randrange(len(de)), rng.randrange(len(de))
            fd.write(f"{de[a]} {de[b]}\n")
            fe.write(f"{en[a]} {en[b]}\n")
    os.replace(f"{prefix}.de.tmp", f"{prefix}.de")
    os.replace(f"{prefix}.en.tmp", f"{prefix}.en")
    return str(prefix)


def pss_kb(pid: int) -> int:
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return 0
    return int(re.search(r"^Pss:\s+(\d+) kB", text, re.M)[1])


def corpus_pss_kb(pid: int) -> int:
    """The PSS of the process's mappings of a binary corpus (a path ending in /train.bin), from
    /proc/PID/smaps: the corpus's pages, each counted in shares among the processes mapping it."""
    try:
        text = Path(f"/proc/{pid}/smaps").read_text()
    except OSError:
        return 0
    total, in_corpus = 0, False
    for line in text.splitlines():
        if re.match(r"^[0-9a-f]+-[0-9a-f]+ ", line):
            in_corpus = line.endswith("/train.bin")
        elif in_corpus and line.startswith("Pss:"):
            total += int(line.split()[1])
    return total


def descendants(pid: int) -> list[int]:
    """Processes below `pid` (children, grandchildren, ...), from /proc."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                pass
    found, frontier = [], [pid]
    while frontier:
        children = [p for p, parent in parents.items() if parent in frontier]
        found += children
        frontier = children
    return found


def run_rss(command: list[str], cwd: Path, watch=None, env: dict = ENV) -> dict:
    """`run`, with the peak RSS of the process (MB) from wait4 (the process is reaped by it)."""
    t0 = time.time()
    err_path = cwd / "stderr.txt"
    with open(err_path, "w") as err:
        proc = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=err)
        seen, status, usage = None, None, None
        while status is None:
            pid, code, rusage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                status, usage = code, rusage
                break
            if watch is not None:
                seen = watch(proc.pid, time.time() - t0, seen)
            time.sleep(0.1)
    proc.returncode = os.waitstatus_to_exitcode(status)
    stderr = err_path.read_text()
    if proc.returncode:
        raise SystemExit(f"{' '.join(command)} failed:\n{stderr[-3000:]}")
    return {"stderr": stderr, "seconds": time.time() - t0, "seen": seen, "rss_mb": usage.ru_maxrss / 1024}


def largest_pss(pids: list[int], seen):
    """[largest PSS (MB) of `pids` together, largest PSS (MB) of their corpus mappings together]."""
    now = [sum(pss_kb(p) for p in pids) / 1024, sum(corpus_pss_kb(p) for p in pids) / 1024]
    return [max(a, b) for a, b in zip(seen, now)] if seen else now


def max_pss(pid: int, elapsed: float, seen):
    """watch: the largest PSS of the process and its descendants, and of their corpus mappings."""
    return largest_pss([pid, *descendants(pid)], seen)


def max_ranks_pss(pid: int, elapsed: float, seen):
    """watch: the same for torchrun's two worker processes (python ... nmt train) together."""
    workers = [p for p in descendants(pid) if b"nmt" in _cmdline(p)]
    return largest_pss(workers, seen) if len(workers) == 2 else seen


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def pss_pair(r: dict, ranks: list[float]) -> dict:
    """The two ranks' PSS (total and the corpus's) and their ratios to one process's."""
    figures = {"two_ranks_pss_mb": ranks[0], "two_ranks_pss_ratio": ranks[0] / r["train_pss_mb"]}
    figures["second_rank_pss_mb"] = ranks[0] - r["train_pss_mb"]
    if r.get("corpus_pss_mb"):
        figures.update(two_ranks_corpus_pss_mb=ranks[1], two_ranks_corpus_ratio=ranks[1] / r["corpus_pss_mb"])
    return figures


def resume_watch(metrics: Path, stderr: Path, step: int):
    """watch: [seconds to the line `resumed from ...` (the data mapped, the checkpoint loaded),
    seconds to the end of step `step` (its record in metrics.jsonl)]."""

    def watch(pid: int, elapsed: float, seen):
        seen = seen or [None, None]
        if seen[0] is None and "resumed from" in stderr.read_text():
            seen[0] = elapsed
        if seen[1] is None and metrics.is_file() and f'"step": {step},' in metrics.read_text():
            seen[1] = elapsed
        return seen

    return watch


def bench_old(n: int, out: Path, old: Path, torchrun: bool) -> dict:
    """The same measurements, where they apply, for another nmt checkout (`--old`: the code before
    the binary corpus, which has no `nmt prepare`): its first `nmt train` (10 steps), --resume
    and 2 ranks."""
    env = {**os.environ, "PYTHONPATH": str(old)}
    prefix, run_dir = make_corpus(n, out), out / f"old_{n}"
    sets = [f"data.train={prefix}", "data.dev=''", "data.test=''", f"run_dir={run_dir}", "training.log_every=1"]
    config = [str(REPO / "configs/multi30k_de_en.yaml")] + [a for s in sets for a in ("--set", s)]
    r: dict = {"pairs": n, "code": str(old)}
    first = run_rss(NMT + ["train", *config, "--overwrite", "--set", "training.max_steps=10"], out, max_pss, env)
    r.update(first_train_peak_rss_mb=first["rss_mb"], train_pss_mb=first["seen"][0], first_train_s=first["seconds"])
    watch = resume_watch(run_dir / "metrics.jsonl", out / "stderr.txt", 11)
    resume = run_rss(NMT + ["train", str(run_dir), "--resume", "--set", "training.max_steps=11"], out, watch, env)
    r.update(resume_to_start_s=resume["seen"][0], resume_to_first_step_s=resume["seen"][1])
    r.update(resume_peak_rss_mb=resume["rss_mb"], load_average=os.getloadavg()[0])
    if torchrun:
        command = TORCHRUN + ["train", str(run_dir), "--resume", "--set", "training.max_steps=15"]
        ranks = run_rss(command, out, max_ranks_pss, env)
        r.update(pss_pair(r, ranks["seen"]))
    return r


def bench_size(n: int, out: Path, first_train: bool, torchrun: bool) -> dict:
    prefix = make_corpus(n, out)
    run_dir = out / f"run_{n}"
    sets = [f"data.train={prefix}", "data.dev=''", "data.test=''", f"run_dir={run_dir}", "training.log_every=1"]
    config = [str(REPO / "configs/multi30k_de_en.yaml")] + [a for s in sets for a in ("--set", s)]
    r: dict = {"pairs": n}
    shutil.rmtree(run_dir, ignore_errors=True)  # an earlier run's corpus would be reused, not encoded
    prep = run_rss(NMT + ["prepare", *config, "--overwrite"], out)
    spm = re.search(r"sentencepiece: .*\(([\d.]+)s\)", prep["stderr"])
    enc = re.search(r"encoded ([\d,]+) pairs in ([\d.]+)s \(([\d,]+) pairs/s, (\d+) threads", prep["stderr"])
    r.update(spm_s=float(spm[1]), encode_s=float(enc[2]), encode_pairs_per_s=int(enc[3].replace(",", "")))
    r.update(encode_threads=int(enc[4]), prepare_s=prep["seconds"], prepare_peak_rss_mb=prep["rss_mb"])
    r["corpus_mb"] = (run_dir / "train.bin").stat().st_size / 2**20
    train = run_rss(NMT + ["train", *config, "--set", "training.max_steps=10"], out, max_pss)
    r.update(train_peak_rss_mb=train["rss_mb"], train_pss_mb=train["seen"][0], train10_s=train["seconds"])
    r.update(corpus_pss_mb=train["seen"][1])
    resume = run_rss(
        NMT + ["train", str(run_dir), "--resume", "--set", "training.max_steps=11"],
        out,
        resume_watch(run_dir / "metrics.jsonl", out / "stderr.txt", 11),
    )
    r.update(resume_to_start_s=resume["seen"][0], resume_to_first_step_s=resume["seen"][1])
    r.update(resume_peak_rss_mb=resume["rss_mb"], load_average=os.getloadavg()[0])
    if torchrun:
        ranks = run_rss(
            TORCHRUN + ["train", str(run_dir), "--resume", "--set", "training.max_steps=15"], out, max_ranks_pss
        )
        r.update(pss_pair(r, ranks["seen"]))
    if first_train:
        sets[3] = f"run_dir={out / f'first_{n}'}"
        fresh = [str(REPO / "configs/multi30k_de_en.yaml")] + [a for s in sets for a in ("--set", s)]
        first = run_rss(NMT + ["train", *fresh, "--overwrite", "--set", "training.max_steps=10"], out)
        r.update(first_train_peak_rss_mb=first["rss_mb"], first_train_s=first["seconds"])
    return r


COLUMNS = [
    ("code", "code", "{}"),
    ("pairs", "pairs", "{:,}"),
    ("spm_s", "sentencepiece s", "{:.0f}"),
    ("encode_pairs_per_s", "encoding pairs/s", "{:,}"),
    ("prepare_peak_rss_mb", "prepare peak RSS MB", "{:,.0f}"),
    ("train_peak_rss_mb", "train (10 steps) peak RSS MB", "{:,.0f}"),
    ("resume_to_start_s", "--resume to data ready s", "{:.1f}"),
    ("resume_to_first_step_s", "--resume to end of 1st step s", "{:.1f}"),
    ("train_pss_mb", "1 process PSS MB", "{:,.0f}"),
    ("two_ranks_pss_mb", "2 ranks PSS MB", "{:,.0f}"),
    ("two_ranks_pss_ratio", "2 ranks / 1", "{:.2f}"),
    ("second_rank_pss_mb", "2 ranks - 1 MB", "{:,.0f}"),
    ("corpus_pss_mb", "corpus PSS MB, 1 process", "{:,.0f}"),
    ("two_ranks_corpus_pss_mb", "corpus PSS MB, 2 ranks", "{:,.0f}"),
    ("two_ranks_corpus_ratio", "corpus 2 ranks / 1", "{:.2f}"),
    ("first_train_peak_rss_mb", "first `nmt train` peak RSS MB", "{:,.0f}"),
]


def table(results: list[dict]) -> str:
    lines = ["| " + " | ".join(title for _, title, _ in COLUMNS) + " |", "|" + " --- |" * len(COLUMNS)]
    for r in results:
        cells = [fmt.format(r[key]) if r.get(key) is not None else "-" for key, _, fmt in COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--pairs", default="1M,3M", help="corpus sizes, e.g. 200k,1M,3M")
    p.add_argument("--out", default="/tmp/nmt_bench_data", help="folder for the corpora and runs")
    p.add_argument("--json", help="write the figures here too")
    p.add_argument("--no-first-train", action="store_true", help="skip the whole first `nmt train` (slow)")
    p.add_argument("--no-torchrun", action="store_true", help="skip the 2-rank PSS")
    p.add_argument(
        "--old", type=Path, help="also measure the nmt checkout at this path (e.g. a git worktree of the old code)"
    )
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = []
    for n in map(size, args.pairs.split(",")):
        if args.old:
            results.append(bench_old(n, out, args.old, not args.no_torchrun))
            print(json.dumps(results[-1]), flush=True)
        results.append({"code": "this", **bench_size(n, out, not args.no_first_train, not args.no_torchrun)})
        print(json.dumps(results[-1]), flush=True)
    print(f"{time.strftime('%Y-%m-%d')}, {os.cpu_count()} CPUs, {sys.version.split()[0]}\n")
    print(table(results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
