"""`nmt serve`: a translation server with micro-batching across requests and a page that shows
the attention. uvicorn runs the ASGI app (nmt.serve.app, starlette); decoding workers (one per
core; on the CPU each a process of its own, nmt.serve.workers) take the sentences of all
requests from one queue (nmt.serve.batcher).

uvicorn, starlette and prometheus_client are an optional extra, `pip install 'nmt[serve]'`:
translation and training do not need them. Importing this package needs none of them;
`serve` says what to install when they are missing.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import signal
import socket
import sys
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING

from nmt import submodules_on_use
from nmt.errors import MissingDependency, NmtError

if TYPE_CHECKING:
    from nmt.translate import Translator


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity), at least 1."""
    cores = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else range(os.cpu_count() or 1)
    return max(1, len(cores))


@dataclass(frozen=True)
class Limits:
    """The server's limits: the options of `nmt serve`, same names, and their defaults."""

    max_batch: int = 64  # sentences per decoded batch
    max_wait_ms: float = 50.0  # longest the worker waits after a batch for its clients' next sentences
    max_sentences: int = 256  # per request (more: 413)
    max_bytes: int = 1_000_000  # request body (more: 413)
    max_queue: int = 2048  # sentences waiting for a batch (more: 503 with Retry-After)
    max_beam: int = 32  # the largest beam a request may ask for
    max_pieces: int = 1000  # subwords of one input line (more: 413)
    read_timeout_s: float = 30.0  # longest a request's body may take to arrive (more: 408)
    workers: int = field(default_factory=lambda: min(64, usable_cores()))  # decoding workers, one per core

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Limits:
        """The limits given as options of `nmt serve` (same names)."""
        return cls(**{f.name: getattr(args, f.name) for f in fields(cls)})


INSTALL = "pip install 'nmt[serve]' (or pip install uvicorn starlette prometheus-client)"


def require() -> None:
    """MissingDependency, with the install command, unless the server's packages import."""
    for module in ("uvicorn", "starlette", "prometheus_client"):
        try:
            __import__(module)
        except ImportError:
            raise MissingDependency(f"nmt serve needs {module}: {INSTALL}") from None


def listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port (port 0: any free port), or a one-line NmtError.

    Made with proto IPPROTO_TCP, so that asyncio sets TCP_NODELAY on every connection: a
    response goes out in two writes (head, body), and with Nagle's algorithm the second waits
    for the client's delayed ACK, 40 ms on Linux, on every request of a kept-alive connection
    but the first (socket.create_server makes proto 0, which asyncio leaves alone)."""
    family = _family(host)
    try:
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    except OSError as e:
        raise NmtError(f"--host {host}: cannot make a socket ({e.strerror or e})") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((host, port))
        sock.listen(2048)
        return sock
    except (OSError, OverflowError) as e:
        sock.close()
        reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        raise NmtError(f"--host {host} --port {port}: cannot listen there ({reason})") from None


def _family(host: str) -> socket.AddressFamily:
    try:
        return socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)[0][0]
    except (OSError, UnicodeError) as e:
        raise NmtError(f"--host {host}: not an address of this machine ({e})") from None


#: the environment variable that gives the API's token when --token-file does not
TOKEN_VARIABLE = "NMT_SERVE_TOKEN"


def read_token(path: str | None) -> str | None:
    """The API's token: the first line of `path`, else $NMT_SERVE_TOKEN, else None (no token).
    A file that cannot be read, or an empty token, is a one-line NmtError (the token is never shown)."""
    if path is None:
        return os.environ.get(TOKEN_VARIABLE) or None
    try:
        with open(path, encoding="utf-8") as f:
            token = f.readline().strip()
    except (OSError, UnicodeDecodeError) as e:
        raise NmtError(f"--token-file {path}: cannot read it ({getattr(e, 'strerror', None) or e})") from None
    if not token:
        raise NmtError(f"--token-file {path}: its first line is empty: expected the token")
    return token


def serve(
    translator: Translator,
    sock: socket.socket,
    limits: Limits,
    models: list[str] | None = None,
    searches: list | None = None,
    token: str | None = None,
) -> str | None:
    """Serve on `sock` until SIGTERM or SIGINT: then stop accepting connections (after half a
    second that lets those on their way in), finish the requests in flight (their sentences
    still get decoded), and return the signal's name (nmt.serve.graceful).
    models: what `translator` was loaded from (None: the latest run; several: their ensemble);
    searches: the decoding workers' search functions (default: threads sharing the translator);
    token: the API's bearer token (None: an open API, with a warning off the loopback)."""
    import uvicorn

    from nmt.rundir.checkpoint import resolve_checkpoint
    from nmt.rundir.defaults import latest_run
    from nmt.serve.app import create_app
    from nmt.serve.graceful import GracefulServer

    paths = [str(resolve_checkpoint(m)) for m in (models or [latest_run()])]
    name = translator.cfg.name if len(paths) == 1 else f"ensemble of {len(paths)} ({translator.cfg.name} first)"
    host, port = sock.getsockname()[:2]
    app = create_app(translator, name, paths, limits, searches, token)
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on")
    server = GracefulServer(config)
    shown = f"[{host}]" if ":" in host else host
    received: list[str] = []

    def note(sig: int, frame) -> None:
        """A signal before uvicorn's own handlers are in place stops it as soon as it has started;
        after, uvicorn raises the signal again once it has stopped, and this records it."""
        received.append(signal.Signals(sig).name)
        server.should_exit = True

    old = {sig: signal.signal(sig, note) for sig in (signal.SIGINT, signal.SIGTERM)}  # before the line says "serving"
    print(f"nmt: serving {name} on http://{shown}:{port}/ (Ctrl-C or SIGTERM to stop)", file=sys.stderr, flush=True)
    if token is None and not ipaddress.ip_address(host).is_loopback:
        print(
            f"nmt: note: {shown} is reachable from other machines and the API has no token: anyone who reaches "
            "it can use it (--token-file, or a reverse proxy: docs/serving.md)",
            file=sys.stderr,
            flush=True,
        )
    try:
        server.run(sockets=[sock])
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
    return received[0] if received else None


__getattr__ = submodules_on_use(__name__)  # `nmt.ROOM.MODULE` after `import nmt`
