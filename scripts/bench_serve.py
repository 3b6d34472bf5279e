#!/usr/bin/env python
"""Benchmark `nmt serve`: throughput and latency under concurrent clients, against `nmt translate`.

    python scripts/bench_serve.py -m RUN [--src FILE] [--concurrency 1,8,32] [--requests N]
                                  [--beam 5] [--max-seconds 120] [--json OUT] [--serve-option ...]

Starts `nmt serve -m RUN --port 0` (a random loopback port), warms it up, then for each
concurrency C sends N single-sentence POST /translate requests from C client threads (each
with a keep-alive connection of its own; a request is sent as soon as its thread's previous one
is answered), and reports requests/s, sentences/s and the p50/p95/p99 latency seen by the
clients. At most N requests and --max-seconds per concurrency: the load stops by itself.

Beside it, `nmt translate -m RUN -i FILE` of the same N sentences from a file, with torch's
default threads and with OMP_NUM_THREADS=1 (`nmt serve` decodes with one thread by default):
its sentences/s count the decoding only (the wall time of the command minus that of the same
command on an empty file, which loads the model and exits), measured before and after the loads
and averaged (the machine's load may drift); "vs file" is against the faster of the two. The
outputs of the server (at each concurrency) are compared with the file translation's, line by
line. Also reported: the mean batch the server decoded (from its /metrics), the cores the
server used during each load (its process and its worker processes, from /proc/PID/stat), how
many workers were decoding on average (the batches' decoding seconds per second, from /metrics),
and after the loads the PSS of the server and of each of its child processes (/proc/PID/smaps_rollup).

The sentences: --src (a text file, .gz too), else the run's test split source (data.test).
Only loopback traffic; the clients share the machine's cores with the server.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import select
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from nmt.data.corpus import read_lines, split_path  # noqa: E402


def start_server(model: str, options: list[str]) -> tuple[subprocess.Popen, int]:
    """`nmt serve` on a free loopback port; (process, port) once it says where it listens."""
    command = [sys.executable, "-m", "nmt", "serve", "-m", model, "--port", "0", *options]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=REPO)
    ready, _, _ = select.select([process.stderr], [], [], 300)
    line = process.stderr.readline() if ready else ""
    found = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
    if not found:
        process.kill()
        sys.exit(f"bench_serve: nmt serve did not start: {line or process.stderr.read()}")
    return process, int(found.group(1))


def batches(port: int) -> tuple[float, float, float]:
    """(batches decoded, sentences in them, seconds spent decoding them) so far, from /metrics."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.request("GET", "/metrics")
    text = conn.getresponse().read().decode()
    conn.close()
    value = lambda name: float(re.search(rf"^{name} (\S+)$", text, re.M).group(1))
    return value("nmt_batch_sentences_count"), value("nmt_batch_sentences_sum"), value("nmt_batch_seconds_sum")


def process_tree(pid: int) -> list[int]:
    """The process and its descendants (the server's worker processes), from /proc."""
    tree, i = [pid], 0
    while i < len(tree):
        for task in Path(f"/proc/{tree[i]}/task").glob("*/children"):
            tree += [int(child) for child in task.read_text().split()]
        i += 1
    return tree


def cpu_seconds(pids: list[int]) -> dict[int, float]:
    """User + system CPU seconds of each process so far."""
    tick, out = os.sysconf("SC_CLK_TCK"), {}
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        out[pid] = (int(fields[11]) + int(fields[12])) / tick
    return out


def pss_mb(pid: int) -> float:
    """The process's proportional set size in MB (0 once it has ended)."""
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:  # ended (or a zombie) since it was listed
        return 0.0
    for line in text.splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1]) / 1024
    return 0.0


def load(port: int, pid: int, sentences: list[str], concurrency: int, beam: int, max_seconds: float) -> dict:
    """N single-sentence requests from `concurrency` client threads to the server (process
    `pid`): throughput, latencies, the mean batch the server decoded, the cores it used, outputs."""
    latencies: list[float] = []
    outputs: list[str | None] = [None] * len(sentences)
    errors: list[str] = []
    next_index, lock = iter(range(len(sentences))), threading.Lock()
    deadline = time.monotonic() + max_seconds

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
        while time.monotonic() < deadline:
            with lock:
                i = next(next_index, None)
            if i is None:
                break
            body = json.dumps({"src": [sentences[i]], "beam": beam}).encode()
            start = time.perf_counter()
            conn.request("POST", "/translate", body, {"Content-Type": "application/json"})
            response = conn.getresponse()
            data = json.loads(response.read())
            latency = time.perf_counter() - start
            with lock:
                if response.status != 200:
                    errors.append(f"{response.status}: {data}")
                    continue
                latencies.append(latency)
                outputs[i] = data["translations"][0]["text"]
        conn.close()

    threads = [threading.Thread(target=client, daemon=True) for _ in range(concurrency)]
    before, cpu_before = batches(port), cpu_seconds(process_tree(pid))
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    after, cpu_after = batches(port), cpu_seconds(process_tree(pid))
    if errors:
        sys.exit(f"bench_serve: {len(errors)} requests failed, e.g. {errors[0]}")
    q = statistics.quantiles(latencies, n=100, method="inclusive")
    return {
        "concurrency": concurrency,
        "requests": len(latencies),
        "seconds": round(wall, 3),
        "requests_per_s": round(len(latencies) / wall, 2),
        "sentences_per_s": round(len(latencies) / wall, 2),
        "p50_ms": round(1000 * q[49], 1),
        "p95_ms": round(1000 * q[94], 1),
        "p99_ms": round(1000 * q[98], 1),
        "mean_batch": round((after[1] - before[1]) / max(after[0] - before[0], 1), 1),
        "server_cores": round(sum(cpu_after[p] - cpu_before[p] for p in cpu_after if p in cpu_before) / wall, 2),
        "workers_decoding": round((after[2] - before[2]) / wall, 2),
        "outputs": outputs,
    }


def file_translation(model: str, sentences: list[str], beam: int, threads: int = 0) -> tuple[float, list[str], float]:
    """(decoding sentences/s of `nmt translate -i FILE`, its outputs, the command's startup
    seconds), with torch's default threads (0) or OMP_NUM_THREADS=threads."""
    env = dict(os.environ, **({"OMP_NUM_THREADS": str(threads)} if threads else {}))
    with tempfile.TemporaryDirectory() as tmp:
        src, empty, out = Path(tmp, "src.txt"), Path(tmp, "empty.txt"), Path(tmp, "out.txt")
        src.write_text("".join(s + "\n" for s in sentences), encoding="utf-8")
        empty.write_text("", encoding="utf-8")
        timings = []
        for path in (empty, src):
            start = time.perf_counter()
            command = [sys.executable, "-m", "nmt", "translate", "-m", model, "--beam", str(beam), "-i", str(path)]
            subprocess.run([*command, "-o", str(out)], check=True, cwd=REPO, stderr=subprocess.DEVNULL, env=env)
            timings.append(time.perf_counter() - start)
        outputs = out.read_text(encoding="utf-8").splitlines()
    decoding = timings[1] - timings[0]
    if decoding < 0.1 * timings[1]:  # within the noise of starting the command
        sys.exit(f"bench_serve: translating {len(sentences)} lines took no longer than starting; use more --requests")
    return len(sentences) / decoding, outputs, timings[0]


def test_sentences(model: str, src: str | None, n: int) -> list[str]:
    """The first n non-blank lines of --src, or of the run's test split source."""
    if src is None:
        from nmt.translate import Translator

        data = Translator.load(model, device="cpu").cfg.data
        if not data.test:
            sys.exit("bench_serve: the run has no test split (data.test); give --src FILE")
        src = str(split_path(data.test, data.src_lang))
    lines = [line for line in read_lines(src) if line.strip()][:n]
    if len(lines) < n:
        sys.exit(f"bench_serve: {src} has only {len(lines)} non-blank lines, fewer than --requests {n}")
    return lines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("-m", "--model", required=True, help="run directory or checkpoint")
    p.add_argument("--src", help="sentences to send (default: the run's test split source)")
    p.add_argument("--concurrency", default="1,8,32", help="client counts, e.g. 1,8,32")
    p.add_argument("--requests", type=int, default=200, help="requests (sentences) per concurrency")
    p.add_argument("--beam", type=int, default=5)
    p.add_argument("--max-seconds", type=float, default=120, help="stop each load after this long")
    p.add_argument(
        "--serve-option", action="append", default=[], help="an option for nmt serve: --serve-option=--max-batch=32"
    )
    p.add_argument("--json", help="write the results here too")
    args = p.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]
    sentences = test_sentences(args.model, args.src, args.requests)
    files = {threads: file_translation(args.model, sentences, args.beam, threads) for threads in (0, 1)}
    process, port = start_server(args.model, args.serve_option)
    try:
        load(port, process.pid, sentences[:16], 4, args.beam, 60)  # warm-up
        results = [load(port, process.pid, sentences, c, args.beam, args.max_seconds) for c in levels]
        memory = {pid: round(pss_mb(pid)) for pid in process_tree(process.pid)}
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(60)
    after = {threads: file_translation(args.model, sentences, args.beam, threads) for threads in (0, 1)}
    report(args, results, {t: _mean_rate(files[t], after[t]) for t in files}, memory)


def _mean_rate(before: tuple, after: tuple) -> tuple:
    """A file translation measured before and after the loads: the mean rate, the outputs, the
    mean startup."""
    return (before[0] + after[0]) / 2, before[1], (before[2] + after[2]) / 2


def report(args, results: list[dict], files: dict, memory: dict[int, int]) -> None:
    """The table (Markdown), against the faster of the two file translations; the processes' PSS."""
    print(f"nmt serve, {args.model}, beam {args.beam}, {args.requests} single-sentence requests per concurrency")
    for threads, (rate, _, startup) in files.items():
        how = "torch's default threads" if threads == 0 else f"OMP_NUM_THREADS={threads}"
        print(f"nmt translate -i FILE, same sentences, {how}: {rate:.1f} sentences/s (startup {startup:.1f} s apart)")
    file_rate, file_outputs, _ = max(files.values(), key=lambda f: f[0])
    print(
        "| clients | requests/s | sentences/s | vs file | p50 ms | p95 ms | p99 ms | mean batch | same as file "
        "| server cores | workers decoding |"
    )
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    base = results[0]["requests_per_s"]
    for r in results:
        same = sum(a == b for a, b in zip(r["outputs"], file_outputs) if a is not None)
        r["same_as_file"] = same
        r["speedup_vs_first"] = round(r["requests_per_s"] / base, 2)
        r["vs_file"] = round(r["sentences_per_s"] / file_rate, 3)
        print(
            f"| {r['concurrency']} | {r['requests_per_s']:.1f} | {r['sentences_per_s']:.1f} | "
            f"{100 * r['vs_file']:.0f}% | {r['p50_ms']:.1f} | {r['p95_ms']:.1f} | {r['p99_ms']:.1f} | "
            f"{r['mean_batch']:.1f} | {same}/{r['requests']} | {r['server_cores']:.2f} | {r['workers_decoding']:.2f} |"
        )
    server, *children = memory.values()
    print(f"PSS after the loads: the server {server} MB, its {len(children)} child process(es) {children} MB")
    if args.json:
        kept = [{k: v for k, v in r.items() if k != "outputs"} for r in results]
        rates = {f"threads_{t}": f[0] for t, f in files.items()}
        record = {"file_sentences_per_s": rates, "loads": kept, "pss_mb": list(memory.values())}
        Path(args.json).write_text(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
