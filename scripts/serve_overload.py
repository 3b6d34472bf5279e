#!/usr/bin/env python
"""`nmt serve` under sustained overload, with decoding workers killed and clients that go away.

    python scripts/serve_overload.py -m RUN [--minutes 10] [--overload 2] [--lines 8] [--kills 2]
                                     [--disconnect-every 3] [--beam 5] [--json OUT] [--serve-option ...]

Starts `nmt serve -m RUN --port 0` (loopback only) and measures what it can serve: --clients
clients, each sending its next request as soon as the last is answered, for --capacity-seconds.
Then for --minutes it sends requests of --lines sentences at --overload times that rate, each
on a connection of its own, at random (Poisson) moments that do not wait for the answers;
kills a decoding worker process with SIGKILL --kills times, evenly spread; and every
--disconnect-every seconds sends a request that goes away before its answer (every other one
in the middle of its body). Every second it reads the memory (PSS) of the server and its worker
processes. At the end it stops sending, sends SIGTERM at once, and waits for every request in
flight to be answered and the server to exit.

It checks, and exits 1 naming what failed:
- no answer but 200 and 503; every 503 has a Retry-After;
- every request sent (but those that went away) got exactly one answer, even across SIGTERM, and
  every 200 has the model's translation of each of its lines, in order (the same model's
  translations, computed here first), so no request got another's results or lost any;
- every killed worker came back (its restart line on the server's stderr), and the server
  exited 0 after SIGTERM;
- the p99 latency of the accepted requests stays within --p99-bound seconds (default: the time
  the measured rate takes to decode a full queue, --max-queue of the server, twice over, plus 10 s).

It prints the figures (the peak memory, p50/p99/max latency of the accepted requests, the share
answered 503, the Retry-After values) and writes them to --json. Only loopback traffic; the
clients share the machine's cores with the server, and the rate is measured with them running.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_serve import process_tree, pss_mb, start_server, test_sentences  # noqa: E402

RESTARTED = "a decoding worker stopped"  # the server's line when it starts a worker that died again


@dataclass
class Outcome:
    """One request: when it was sent (seconds from the start of the load), what came back."""

    kind: str  # "load" (answered), "gone" (went away after its body), "cut" (went away in its body)
    sent: float
    first: int  # index of its first line in the pool
    status: int | None = None  # None: no answer
    seconds: float | None = None
    retry_after: str | None = None
    correct: bool | None = None  # a 200's translations are the expected ones
    error: str | None = None


class Load:
    """The clients: requests of `lines` consecutive sentences of `pool` (whose expected
    translations are `expected`) to the server on `port`."""

    def __init__(self, port: int, pool: list[str], expected: list[str], lines: int, beam: int):
        self.port, self.pool, self.expected, self.lines, self.beam = port, pool, expected, lines, beam
        self.start = time.monotonic()
        self.outcomes: list[Outcome] = []  # of every request sent, answered or not (yet)

    def body(self, first: int) -> bytes:
        src = [self.pool[(first + i) % len(self.pool)] for i in range(self.lines)]
        return json.dumps({"src": src, "beam": self.beam}).encode()

    def head(self, length: int) -> bytes:
        return (
            "POST /translate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {length}\r\nConnection: close\r\n\r\n"
        ).encode()

    async def send(self, first: int, kind: str = "load") -> Outcome:
        """One request on a connection of its own; "gone" and "cut" go away without the answer."""
        outcome, began = Outcome(kind, round(time.monotonic() - self.start, 3), first), time.monotonic()
        self.outcomes.append(outcome)
        body = self.body(first)
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        except OSError as e:
            outcome.error = f"connect: {e}"
            return outcome
        try:
            writer.write(self.head(len(body)) + (body[: len(body) // 2] if kind == "cut" else body))
            await writer.drain()
            if kind != "load":
                await asyncio.sleep(random.uniform(0.05, 0.5))
                return outcome
            raw = await reader.read()
            outcome.seconds = time.monotonic() - began
            self.read_answer(raw, outcome)
        except OSError as e:
            outcome.error = f"{type(e).__name__}: {e}"
        finally:
            writer.close()
        return outcome

    def read_answer(self, raw: bytes, outcome: Outcome) -> None:
        head, _, payload = raw.partition(b"\r\n\r\n")
        if not head:
            outcome.error = "the connection closed without an answer"
            return
        lines = head.decode("latin-1").split("\r\n")
        outcome.status = int(lines[0].split()[1])
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        outcome.retry_after = headers.get("retry-after")
        if outcome.status == 200:
            got = [t["text"] for t in json.loads(payload)["translations"]]
            want = [self.expected[(outcome.first + i) % len(self.pool)] for i in range(self.lines)]
            outcome.correct = got == want
        elif outcome.status != 503:
            outcome.error = payload.decode("utf-8", "replace")[:300]

    async def closed_loop(self, clients: int, seconds: float) -> float:
        """Sentences per second answered by `clients` clients that wait for their answers."""
        deadline, answered = time.monotonic() + seconds, []

        async def client(k: int) -> None:
            first = k * self.lines
            while time.monotonic() < deadline:
                outcome = await self.send(first % len(self.pool))
                if outcome.status != 200:
                    sys.exit(f"serve_overload: measuring the rate, a request got {outcome.status}: {outcome.error}")
                answered.append(time.monotonic())
                first += clients * self.lines

        began = time.monotonic()
        await asyncio.gather(*(client(k) for k in range(clients)))
        return len(answered) * self.lines / (time.monotonic() - began)


async def overload(args, load: Load, server, rate: float) -> tuple[list[tuple[float, float]], list]:
    """The overload phase, its outcomes in load.outcomes: (memory samples (seconds, MB), kills
    (seconds, pid)). Requests not answered within --drain-seconds of SIGTERM are left unanswered."""
    loop, rng = asyncio.get_running_loop(), random.Random(args.seed)
    seconds = 60 * args.minutes
    began = loop.time()
    requests: list[asyncio.Task] = []
    memory: list[tuple[float, float]] = []
    kills: list[tuple[float, int]] = []
    kill_at = [seconds * (k + 1) / (args.kills + 1) for k in range(args.kills)]
    next_arrival = next_disconnect = began
    while (now := loop.time()) < began + seconds:
        while now >= next_arrival:  # every arrival due (the loop may have been late)
            requests.append(asyncio.ensure_future(load.send(rng.randrange(len(load.pool)))))
            next_arrival += rng.expovariate(args.overload * rate / args.lines)
        if args.disconnect_every and now >= next_disconnect + args.disconnect_every:
            kind = "cut" if len(requests) % 2 else "gone"
            requests.append(asyncio.ensure_future(load.send(rng.randrange(len(load.pool)), kind)))
            next_disconnect = now
        if kill_at and now - began >= kill_at[0]:
            kill_at.pop(0)
            kills.append((round(now - began, 1), kill_worker(server.pid, rng)))
        if not memory or now - began - memory[-1][0] >= 1.0:
            memory.append((round(now - began, 1), sum(pss_mb(pid) for pid in process_tree(server.pid))))
        await asyncio.sleep(min(0.2, max(0.001, min(next_arrival, began + seconds) - loop.time())))
    server.send_signal(signal.SIGTERM)  # with the requests sent so far in flight
    _, unanswered = await asyncio.wait(requests, timeout=args.drain_seconds)
    for request in unanswered:
        request.cancel()
    return memory, kills


def kill_worker(server_pid: int, rng: random.Random) -> int:
    """SIGKILL one of the server's decoding processes; its PID."""
    workers = [pid for pid in process_tree(server_pid)[1:] if "spawn_main" in _cmdline(pid)]
    if not workers:
        sys.exit("serve_overload: the server has no worker processes to kill (--workers 1, or a GPU?)")
    pid = rng.choice(workers)
    os.kill(pid, signal.SIGKILL)
    return pid


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_text()
    except OSError:
        return ""


def percentile(values: list[float], p: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[p - 1] if len(values) > 1 else values[0]


def summarise(args, rate: float, outcomes: list[Outcome], memory, kills, exit_code: int, stderr: str) -> dict:
    """The figures and the checks (a list of what failed)."""
    load = [o for o in outcomes if o.kind == "load"]
    accepted = [o for o in load if o.status == 200]
    latencies = [o.seconds for o in accepted]
    retry = [int(o.retry_after) for o in load if o.status == 503 and o.retry_after]
    half = len(memory) // 2
    bound = args.p99_bound or 2 * args.max_queue / rate + 10
    figures = {
        "rate_sentences_per_s": round(rate, 1),
        "offered_sentences_per_s": round(args.overload * rate, 1),
        "sent_sentences_per_s": round(len(load) * args.lines / (60 * args.minutes), 1),
        "minutes": args.minutes,
        "requests": len(load),
        "accepted": len(accepted),
        "answered_503": sum(o.status == 503 for o in load),
        "went_away": len(outcomes) - len(load),
        "statuses": {str(s): sum(o.status == s for o in load) for s in sorted({o.status or 0 for o in load})},
        "p50_s": round(percentile(latencies, 50), 2) if latencies else None,
        "p99_s": round(percentile(latencies, 99), 2) if latencies else None,
        "max_s": round(max(latencies), 2) if latencies else None,
        "p99_bound_s": round(bound, 1),
        "retry_after_s": [min(retry), round(statistics.median(retry)), max(retry)] if retry else None,
        "accepted_per_s": round(len(accepted) * args.lines / (60 * args.minutes), 1),
        "memory_mb": {
            "first": round(memory[0][1]),
            "peak": round(max(m for _, m in memory)),
            "peak_first_half": round(max(m for _, m in memory[:half] or memory)),
            "peak_second_half": round(max(m for _, m in memory[half:])),
        },
        "kills": kills,
        "restart_lines": stderr.count(RESTARTED),
        "exit_code": exit_code,
    }
    failed = []
    if unanswered := [o for o in load if o.status is None]:
        failed.append(f"{len(unanswered)} requests got no answer, e.g. {unanswered[0]}")
    elif any(o.status not in (200, 503) for o in load):
        bad = next(o for o in load if o.status not in (200, 503))
        failed.append(f"a request got {bad.status}: {bad.error}")
    if any(o.status == 503 and not o.retry_after for o in load):
        failed.append("a 503 without a Retry-After")
    if wrong := sum(o.correct is False for o in accepted):
        failed.append(f"{wrong} answers had translations other than the model's for their lines")
    if figures["restart_lines"] != len(kills):
        failed.append(f"{len(kills)} workers killed, {figures['restart_lines']} restarts said on the server's stderr")
    if exit_code != 0:
        failed.append(f"the server exited {exit_code} after SIGTERM: {stderr.strip().splitlines()[-1:]}")
    if latencies and figures["p99_s"] > bound:
        failed.append(f"the accepted requests' p99 {figures['p99_s']} s is beyond {bound:.0f} s")
    if not accepted:
        failed.append("no request was accepted")
    figures["failed"] = failed
    return figures


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("-m", "--model", required=True, help="run directory or checkpoint")
    p.add_argument("--src", help="sentences to send (default: the run's test split source)")
    p.add_argument("--pool", type=int, default=200, help="distinct sentences the requests are made of")
    p.add_argument("--minutes", type=float, default=10.0, help="how long the overload lasts")
    p.add_argument("--overload", type=float, default=2.0, help="offered load, times the measured rate")
    p.add_argument("--lines", type=int, default=8, help="sentences per request")
    p.add_argument("--beam", type=int, default=5)
    p.add_argument("--clients", type=int, default=32, help="clients measuring the rate")
    p.add_argument("--capacity-seconds", type=float, default=30.0, help="how long the rate is measured")
    p.add_argument("--kills", type=int, default=2, help="decoding workers killed (SIGKILL) during the overload")
    p.add_argument("--disconnect-every", type=float, default=3.0, help="seconds between clients that go away")
    p.add_argument("--max-queue", type=int, default=2048, help="the server's --max-queue")
    p.add_argument("--p99-bound", type=float, help="seconds (default: see above)")
    p.add_argument("--drain-seconds", type=float, default=300.0, help="longest wait for the answers after SIGTERM")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--serve-option", action="append", default=[], help="e.g. --serve-option=--workers=2")
    p.add_argument("--json", help="write the figures here too")
    args = p.parse_args()

    from nmt.translate import Translator

    pool = test_sentences(args.model, args.src, args.pool)
    expected = Translator.load(args.model, device="cpu").translate(pool, beam=args.beam)
    server, port = start_server(args.model, [f"--max-queue={args.max_queue}", *args.serve_option])
    try:
        load = Load(port, pool, expected, args.lines, args.beam)
        asyncio.run(load.closed_loop(4, 5.0))  # warm-up
        rate = asyncio.run(load.closed_loop(args.clients, args.capacity_seconds))
        print(f"serve_overload: the server answers {rate:.1f} sentences/s; offering {args.overload:g}x", flush=True)
        load.start, load.outcomes = time.monotonic(), []
        memory, kills = asyncio.run(overload(args, load, server, rate))
        outcomes = load.outcomes
        _, stderr = server.communicate(timeout=args.drain_seconds)
    finally:
        if server.poll() is None:
            server.kill()
    figures = summarise(args, rate, outcomes, memory, kills, server.returncode, stderr)
    print(json.dumps(figures, indent=1))
    if args.json:
        record = {**figures, "args": vars(args), "outcomes": [asdict(o) for o in outcomes]}
        Path(args.json).write_text(json.dumps(record, indent=1))
    if figures["failed"]:
        sys.exit("serve_overload: " + "; ".join(figures["failed"]))


if __name__ == "__main__":
    main()
