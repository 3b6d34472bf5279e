"""Decoding workers in processes of their own (`nmt serve --workers N`, N > 1).

Beam search spends about a third of its time in Python (bookkeeping between the matrix
products). Decoding threads of one process take turns at the GIL for it, with each other and
with the event loop that answers HTTP: on 2 cores, 2 threads decoding batches of 16 ran at 168
sentences/s, 2 processes at 200 (docs/results.md, "Serving"). So with several workers each one is a process:
the server's thread for that worker sends it a batch through a pipe and waits (without the GIL)
for the n-best lists.

Every worker builds its model from the checkpoint states the server loaded (`nmt.translate.loading.load_states`;
the weights travel once, through shared memory), so all of them translate with the same
weights and decoding defaults as the server's own translator, even when training replaces the
checkpoint file meanwhile. A worker ignores SIGINT and SIGTERM: the server decides when it stops
(after the requests in flight), and a worker whose server is gone sees its pipe close and exits.
A worker that dies (killed, out of memory) is started again, and decodes the batch it was
decoding once more; dying on the same batch twice fails that batch's requests.
"""

from __future__ import annotations

import pickle
import signal
import sys
import threading
import time
from multiprocessing.connection import Connection
from multiprocessing.reduction import ForkingPickler
from pathlib import Path

import torch.multiprocessing as mp

from nmt.errors import NmtError
from nmt.rundir.contents import model_part
from nmt.translate import Translator
from nmt.translate.loading import from_states, load_states

#: longest a worker may take to import torch and build its model
START_SECONDS = 600


class WorkerDied(RuntimeError):
    """The worker process ended while decoding a batch."""


class WorkerProcess:
    """One decoding process, built from `states` (nmt.translate.loading.load_states) on `device` in
    `precision`, with `threads` torch threads. `search` has Translator.search's signature."""

    def __init__(self, states: list[tuple[str, Path, dict]], device: str, precision: str | None, threads: int):
        self.states = [(given, ckpt, model_part(state)) for given, ckpt, state in states]  # no optimizer
        self.device, self.precision, self.threads = device, precision, threads
        self.process: mp.Process | None = None
        self.conn: Connection | None = None
        self.lock = threading.Lock()  # one batch at a time (one server thread per worker)

    def start(self) -> None:
        """Start the process and send it the states; `ready` waits until it has built its model.

        The states go through the pipe, not as the process's arguments: multiprocessing writes
        those into a pipe whose reading end the parent keeps open while it writes, so a process
        killed as it starts (before it has read them) would block this thread forever once they
        are more than the pipe's 64 KB (the sentencepiece models are); the pipe here breaks."""
        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe()
        args = (child, self.device, self.precision, self.threads)
        self.process = ctx.Process(target=_work, args=args, name="nmt-decoder", daemon=True)
        self.process.start()
        child.close()
        try:  # tensors in shared memory (torch's reductions of ForkingPickler), the rest copied
            self.conn.send_bytes(ForkingPickler.dumps(self.states))
        except OSError:
            pass  # it has stopped already: ready() says so

    def ready(self, timeout: float) -> None:
        """Wait for the model; an NmtError with the worker's reason if it could not build it.
        Watches the process too, so that its end is seen even if its end of the pipe were held
        open elsewhere (the pipe's closing is what usually tells)."""
        deadline = time.monotonic() + timeout
        while not self.conn.poll(0.2):
            if not self.process.is_alive():
                raise NmtError(f"a decoding worker stopped while starting (exit code {self._exit_code()})")
            if time.monotonic() > deadline:
                raise NmtError(f"a decoding worker did not start within {timeout} s")
        try:
            status, value = pickle.loads(self.conn.recv_bytes())
        except (EOFError, OSError):
            raise NmtError(f"a decoding worker stopped while starting (exit code {self._exit_code()})") from None
        if status != "ready":
            raise NmtError(f"a decoding worker could not start: {value}")

    def search(self, lines: list[str], beam: int, alpha: float, **given):
        """The n-best lists of `lines`, decoded by the process; `given`: Translator.search's other
        arguments (n_best, attention, prefixes, constraints). A process that died is started
        again first; one that dies while decoding the batch is started again and decodes it once
        more (its clients see nothing but the delay); dying on it a second time fails the batch
        (WorkerDied: it may be what kills the process, e.g. out of memory)."""
        request = pickle.dumps((lines, beam, alpha, given))
        with self.lock:
            for attempt in (1, 2):
                if not self.process.is_alive():
                    self._restart()
                try:
                    self.conn.send_bytes(request)
                    status, value = pickle.loads(self.conn.recv_bytes())
                    break
                except (EOFError, OSError):
                    code = self._exit_code()
                    if attempt == 2:
                        raise WorkerDied(f"the decoding worker stopped twice on one batch (exit code {code})") from None
        if status != "ok":
            raise RuntimeError(value)
        return value

    def _restart(self) -> None:
        """Start the process that stopped again, saying so on the server's stderr (one line)."""
        code = self._exit_code()
        print(f"nmt: a decoding worker stopped (exit code {code}): started again", file=sys.stderr, flush=True)
        self.close()
        self.start()
        self.ready(timeout=START_SECONDS)

    def close(self, timeout: float = 5.0) -> None:
        """Ask the process to end (after its current batch), then make sure it has."""
        if self.process is None:
            return
        try:
            self.conn.send_bytes(pickle.dumps(None))
        except OSError:
            pass  # it is gone already
        self.process.join(timeout)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
        self.conn.close()

    def _exit_code(self) -> int | None:
        self.process.join(1.0)
        return self.process.exitcode


def _work(conn: Connection, device: str, precision: str | None, threads: int) -> None:
    """The worker process: receive the states, build the translator, then decode batches until
    told to stop or until the server's end of the pipe closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the server finishes its requests first
    from nmt.runtime import configure

    configure(threads)
    try:
        states = pickle.loads(conn.recv_bytes())
    except (EOFError, OSError):
        return  # the server is gone
    try:
        translator = from_states(states, device, precision)
    except Exception as e:  # noqa: BLE001 - the server reports it
        conn.send_bytes(pickle.dumps(("error", f"{type(e).__name__}: {e}")))
        return
    del states
    conn.send_bytes(pickle.dumps(("ready", None)))
    while True:
        try:
            request = pickle.loads(conn.recv_bytes())
        except (EOFError, OSError):
            return  # the server is gone
        if request is None:
            return
        lines, beam, alpha, given = request
        try:
            reply = ("ok", translator.search(lines, beam, alpha, **given))
        except Exception as e:  # noqa: BLE001 - fails this batch's requests, not the worker
            reply = ("error", f"{type(e).__name__}: {e}")
        conn.send_bytes(pickle.dumps(reply))


def load_workers(
    models: list[str] | None, device: str, precision: str | None, threads: int, count: int
) -> tuple[Translator, list[WorkerProcess]]:
    """The server's translator (Translator.load's arguments) and, when it runs on the CPU and
    `count` > 1, `count` decoding processes built from the same checkpoint states, ready. With
    none, the server's workers are threads sharing the translator (one worker, or a GPU, whose
    kernels one process queues as well as several)."""
    states = load_states(models, device, precision)
    translator = from_states(states, device, precision)
    if count == 1 or translator.device.type != "cpu":
        return translator, []
    return translator, start_workers(states, device, precision, threads, count)


def start_workers(
    states: list[tuple[str, Path, dict]], device: str, precision: str | None, threads: int, count: int
) -> list[WorkerProcess]:
    """`count` worker processes, started together, ready when this returns (or none and an NmtError)."""
    workers = [WorkerProcess(states, device, precision, threads) for _ in range(count)]
    try:
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.ready(timeout=START_SECONDS)
    except BaseException:
        for worker in workers:
            worker.close(timeout=1.0)
        raise
    return workers
