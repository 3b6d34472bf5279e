"""Micro-batching across requests: decoding workers, one queue of sentences.

Every request becomes a `Job`: its non-blank lines wait in the queue as single sentences, one
queue per `SearchKey` (requests with another beam size or alpha are searched apart). A
worker, a thread of its own (decoding is blocking torch code; the event loop must keep
answering), takes the oldest waiting sentence's queue and decodes up to `max_batch` sentences
of it in one call to `Translator.search`. While it decodes, new requests pile up and make the
next batch, so the batch size follows the load; after a batch it waits, at most `max_wait_ms`,
for the clients it just answered to send their next sentences (`Batcher._next_batch`). A job
whose client went away is cancelled: its waiting sentences leave the queue, and results of
sentences already in a batch are dropped.

With several workers (`--workers`) each decodes a batch of its own at the same time: the cores
work on separate batches instead of splitting each small product of one batch between them
(docs/results.md, "Serving", for what it measured). A worker is a thread of this process with a search
function: the translator's own, or a decoding process's (nmt.serve.workers: on the CPU, so that
the workers' Python does not take turns at one GIL). A worker that finds others idle takes its
share of the queue, not all of it: with 32 clients and 2 workers, batches of 16 side by side,
not one of 32 while the other worker waits for the answered clients to come back.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from nmt.translate import Translation

#: Translator.search's signature: (lines, beam, alpha, n_best=, attention=) -> n-best lists
Search = Callable[..., list[list[Translation]]]


@dataclass(frozen=True)
class SearchKey:
    """What sentences must share to be searched in one batch."""

    beam_size: int
    alpha: float


class Overloaded(Exception):
    """The queue is full; `retry_after`: seconds until it has probably drained."""

    def __init__(self, retry_after: int):
        super().__init__(f"the translation queue is full; retry after {retry_after} s")
        self.retry_after = retry_after


@dataclass(eq=False)
class Job:
    """One request: its lines, how to search them, and (filled by the worker) one n-best list
    per line. `future` (of the request's event loop) is resolved when every line is done, with
    the results or the exception that failed the batch."""

    lines: list[str]
    key: SearchKey
    n_best: int
    attention: bool
    loop: asyncio.AbstractEventLoop
    prefixes: list[str] | None = None  # one per line: what its translations begin with
    constraints: list[list[str]] | None = None  # one list per line: phrases its translations contain
    future: asyncio.Future = field(init=False)
    results: list[list[Translation] | None] = field(init=False)
    remaining: int = field(init=False)
    cancelled: bool = False

    def __post_init__(self) -> None:
        self.future = self.loop.create_future()
        empty = [Translation("", 0.0, 0.0, [], [])] * self.n_best
        self.results = [None if line.strip() else empty for line in self.lines]
        self.remaining = sum(r is None for r in self.results)
        if not self.remaining:
            self.future.set_result(self.results)

    def todo(self) -> list[int]:
        """The lines that need decoding (the blank ones are done already)."""
        return [i for i, r in enumerate(self.results) if r is None]

    def put(self, index: int, nbest: list[Translation]) -> None:
        """Line `index`'s n-best list (from the worker's thread)."""
        self.results[index] = nbest[: self.n_best]
        self.remaining -= 1
        if not self.remaining:
            self.loop.call_soon_threadsafe(self._resolve, self.results, None)

    def fail(self, error: BaseException) -> None:
        self.loop.call_soon_threadsafe(self._resolve, None, error)

    def _resolve(self, results: list | None, error: BaseException | None) -> None:
        if self.future.done():  # cancelled, or failed by an earlier batch
            return
        if error is not None:
            self.future.set_exception(error)
        else:
            self.future.set_result(results)


@dataclass
class _Item:
    job: Job
    index: int
    since: float  # time.monotonic() when queued


class Batcher:
    """The queue and its decoding workers. `submit` a Job (from the event loop), await its future.

    searches: one search function per worker (Translator.search, or a decoding process's);
    max_batch: most sentences per search; max_wait_ms: longest a worker waits for company
    after a batch (see `_next_batch`); max_queue: most sentences waiting (beyond: `Overloaded`).
    `on_batch(size, seconds)` is called after every decoded batch (metrics).
    """

    def __init__(self, searches: list[Search], max_batch: int, max_wait_ms: float, max_queue: int, on_batch=None):
        self.max_batch, self.max_wait, self.max_queue = max_batch, max_wait_ms / 1000.0, max_queue
        self.on_batch = on_batch or (lambda size, seconds: None)
        self._queues: dict[SearchKey, deque[_Item]] = {}
        self._waiting = 0
        self._busy = 0  # sentences in the batches being decoded
        self._rate = 0.0  # sentences per second of recent batches (for Retry-After)
        self._expect = 0  # sentences to wait for (up to max_wait) before the next batch
        self._free_since = 0.0  # time.monotonic() when the last batch ended
        self._window = 0.0  # how long after it to wait for its clients (at most max_wait)
        self._idle = 0  # workers waiting in _next_batch
        self._stopping = False
        self._cond = threading.Condition()
        self._threads = [
            threading.Thread(target=self._run, args=(search,), name=f"nmt-decoder-{i}", daemon=True)
            for i, search in enumerate(searches)
        ]

    @property
    def waiting(self) -> int:
        """Sentences in the queue, not yet in a batch."""
        return self._waiting

    @property
    def alive(self) -> bool:
        return all(t.is_alive() for t in self._threads) and not self._stopping

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self, timeout: float | None = None) -> None:
        """Decode what is queued, then end the workers."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        deadline = None if timeout is None else time.monotonic() + timeout
        for thread in self._threads:
            if thread.is_alive():
                thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))

    def submit(self, job: Job) -> None:
        """Queue the job's lines, or raise Overloaded when they do not fit in the queue."""
        todo = job.todo()
        if not todo:
            return
        with self._cond:
            if self._waiting + len(todo) > self.max_queue:
                raise Overloaded(self._retry_after(len(todo)))
            now = time.monotonic()
            queue = self._queues.setdefault(job.key, deque())
            queue.extend(_Item(job, i, now) for i in todo)
            self._waiting += len(todo)
            self._cond.notify_all()

    def cancel(self, job: Job) -> None:
        """The client went away: its waiting sentences leave the queue; results are dropped."""
        with self._cond:
            job.cancelled = True
            queue = self._queues.get(job.key)
            if queue:
                kept = deque(item for item in queue if item.job is not job)
                self._waiting -= len(queue) - len(kept)
                self._queues[job.key] = kept
        if not job.future.done():
            job.future.cancel()

    def _retry_after(self, extra: int) -> int:
        """Seconds until the queue has room, at the recent decoding rate of each worker (1..60)."""
        backlog, rate = self._waiting + self._busy + extra, self._rate * len(self._threads)
        return max(1, min(60, math.ceil(backlog / rate))) if rate > 0 else 1

    def _next_batch(self) -> tuple[SearchKey, list[_Item]] | None:
        """Wait for the next batch: the oldest waiting sentence's queue, up to max_batch of it,
        and no more than its share when other workers wait too (a ceil(1/idle) part). None:
        stopping and all done.

        It starts when the batch is full, or when the clients the last batch answered are back
        (`_expect` sentences waiting: those that waited through it, plus one per request it
        answered), or when the last batch ended a quarter of its decoding time or max_wait ago,
        whichever is sooner. So one client at a time never waits, and many clients are not split
        into two groups that take turns (half of them being answered while the other half's
        requests, queued during the last batch, start the next one at once, alone); waiting for
        them costs at most a quarter of a batch's time."""
        with self._cond:
            self._idle += 1
            while True:
                queues = [(q[0].since, key) for key, q in self._queues.items() if q]
                if not queues:
                    if self._stopping:
                        self._idle -= 1
                        return None
                    self._cond.wait()
                    continue
                key = min(queues, key=lambda pair: pair[0])[1]
                queue = self._queues[key]
                left = self._free_since + self._window - time.monotonic()
                if len(queue) >= self.max_batch or self._waiting >= self._expect or left <= 0 or self._stopping:
                    share = min(self.max_batch, math.ceil(len(queue) / self._idle))
                    self._idle -= 1
                    items = [queue.popleft() for _ in range(share)]
                    self._waiting -= len(items)
                    self._busy += len(items)
                    return key, items
                self._cond.wait(left)

    def _run(self, search: Search) -> None:
        while (batch := self._next_batch()) is not None:
            start = time.monotonic()
            self._decode(search, *batch)
            with self._cond:
                self._busy -= len(batch[1])
                self._expect = min(self.max_batch, self._waiting + len({id(item.job) for item in batch[1]}))
                self._free_since = time.monotonic()
                self._window = min(self.max_wait, (self._free_since - start) / 4)

    def _decode(self, search: Search, key: SearchKey, items: list[_Item]) -> None:
        """One search for the batch; each line's n-best list goes to its job."""
        items = [item for item in items if not item.job.cancelled]
        if not items:
            return
        lines = [item.job.lines[item.index] for item in items]
        n_best = max(item.job.n_best for item in items)
        attention = any(item.job.attention for item in items)
        given = {}  # only requests with prefixes (constraints) pass them: a search without is today's
        if any(item.job.prefixes for item in items):
            given["prefixes"] = [item.job.prefixes[item.index] if item.job.prefixes else "" for item in items]
        if any(item.job.constraints for item in items):
            given["constraints"] = [item.job.constraints[item.index] if item.job.constraints else [] for item in items]
        start = time.perf_counter()
        try:
            results = search(lines, key.beam_size, key.alpha, n_best=n_best, attention=attention, **given)
        except Exception as error:  # noqa: BLE001 - fail these requests, keep serving the others
            for job in {id(item.job): item.job for item in items}.values():
                job.fail(error)
            return
        seconds = time.perf_counter() - start
        rate = len(items) / max(seconds, 1e-6)
        self._rate = rate if self._rate == 0 else 0.8 * self._rate + 0.2 * rate
        self.on_batch(len(items), seconds)  # before the answers: a client that reads /metrics next sees it
        with self._cond:  # a job's lines may be in two workers' batches: one put at a time
            for item, nbest in zip(items, results):
                if not item.job.cancelled:
                    item.job.put(item.index, nbest)
