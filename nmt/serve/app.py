"""The ASGI app of `nmt serve` (starlette): the endpoints, the page, and the request limits.

POST /translate   JSON in and out (nmt.serve.schema); sentences go through the batcher
GET  /health      200 {"status": "ok"} while the decoding workers run, else 503
GET  /info        the model, a summary of its config, the decoding defaults, the limits, nmt's version
GET  /metrics     Prometheus text format (nmt.serve.metrics)
GET  /            the page (nmt/serve/page: plain HTML, JS and CSS served from here; no build step)
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import time
from dataclasses import asdict
from pathlib import Path

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from nmt import __version__
from nmt.serve import Limits
from nmt.serve.batcher import Batcher, Job, Overloaded, Search, SearchKey
from nmt.serve.metrics import Metrics
from nmt.serve.schema import RequestError, parse_json, parse_request, too_long_notes, translation_json
from nmt.translate import Translator

PAGE = Path(__file__).parent / "page"
#: the page loads nothing but its own files
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:",
    "X-Content-Type-Options": "nosniff",
}
PATHS = ("/", "/translate", "/health", "/info", "/metrics", "/static")


class _PageFiles(StaticFiles):
    """The page's files, each with the page's headers (index.html is also /static/index.html)."""

    def file_response(self, *args, **kwargs) -> Response:
        response = super().file_response(*args, **kwargs)
        response.headers.update(PAGE_HEADERS)
        return response


def _error(status: int, reason: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": reason}, status_code=status, headers=headers)


async def _read_body(request: Request, max_bytes: int, timeout_s: float) -> bytes:
    """The body, refused (413) as soon as it is known to be larger than max_bytes, and (408) when
    it has not all arrived within timeout_s: a client that sends its headers and then nothing
    must not hold a connection, nor the server's shutdown, forever."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise RequestError(413, f"the body has {int(declared)} bytes, more than this server takes ({max_bytes})")
    try:
        return await asyncio.wait_for(_receive_body(request, max_bytes), timeout_s)
    except asyncio.TimeoutError:
        raise RequestError(408, f"the body did not arrive within {timeout_s:g} s") from None


async def _receive_body(request: Request, max_bytes: int) -> bytes:
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > max_bytes:
            raise RequestError(413, f"the body has more than the {max_bytes} bytes this server takes")
    return bytes(body)


async def _until_disconnect(request: Request) -> None:
    """Returns when the client goes away (the body has been read: the next message says so)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


class Server:
    """The app's state: the translator, the batcher, the metrics, the limits. searches: the
    workers' search functions (default: limits.workers threads sharing the translator's)."""

    def __init__(
        self, translator: Translator, name: str, paths: list[str], limits: Limits, searches: list[Search] | None
    ):
        self.translator, self.name, self.paths, self.limits = translator, name, paths, limits
        self.metrics = Metrics(lambda: self.batcher.waiting)
        searches = searches or [translator.search] * limits.workers
        self.batcher = Batcher(
            searches, limits.max_batch, limits.max_wait_ms, limits.max_queue, on_batch=self.metrics.batch
        )

    async def translate(self, request: Request) -> Response:
        start = time.perf_counter()
        try:
            data = parse_json(await _read_body(request, self.limits.max_bytes, self.limits.read_timeout_s))
            req = parse_request(data, self.translator, self.limits)
            d = req.decoding
            key, loop = SearchKey(d.beam_size, d.alpha), asyncio.get_running_loop()
            attention = req.attention or bool(req.align)
            job = Job(req.src, key, d.n_best, attention, loop, prefixes=req.prefix, constraints=req.constraints)
            self.batcher.submit(job)
        except ClientDisconnect:
            return Response(status_code=499)  # nobody reads it
        except RequestError as e:
            return _error(e.status, str(e), e.headers)
        except Overloaded as e:
            return _error(503, str(e), {"Retry-After": str(e.retry_after)})
        results = await self._results(request, job)
        if results is None:
            return Response(status_code=499)
        if isinstance(results, Exception):
            return _error(500, f"decoding failed: {' '.join(str(results).split()) or type(results).__name__}")
        self.metrics.sentences.inc(len(req.src))
        return JSONResponse(
            {
                "translations": [
                    translation_json(nbest, req.attention, req.align, req.constraints is not None) for nbest in results
                ],
                "model": self.name,
                "elapsed_ms": round(1000 * (time.perf_counter() - start), 2),
                "notes": too_long_notes(self.translator, results),
            }
        )

    async def _results(self, request: Request, job: Job) -> list | Exception | None:
        """The job's results, its exception, or None when the client went away first (the
        job is then cancelled, so that its sentences take no place in later batches)."""
        gone = asyncio.ensure_future(_until_disconnect(request))
        try:
            await asyncio.wait({job.future, gone}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            gone.cancel()
        if not job.future.done():
            self.batcher.cancel(job)
            return None
        return job.future.exception() or job.future.result()

    async def health(self, request: Request) -> Response:
        if self.batcher.alive:
            return JSONResponse({"status": "ok", "model": self.name})
        return JSONResponse({"status": "stopping", "model": self.name}, status_code=503)

    async def info(self, request: Request) -> Response:
        cfg, model = self.translator.cfg, self.translator.model
        return JSONResponse(
            {
                "model": self.name,
                "paths": self.paths,  # the checkpoint(s): several for an ensemble
                "version": __version__,
                "config": {
                    "languages": [cfg.data.src_lang, cfg.data.tgt_lang],
                    "vocab": [len(self.translator.src_tok), len(self.translator.tgt_tok)],
                    "parameters": sum(p.numel() for p in model.parameters()),
                    "model": asdict(cfg.model),
                    "max_src_length": cfg.data.max_src_length,
                },
                "decoding": asdict(cfg.decoding),
                "device": str(self.translator.device),
                "precision": self.translator.precision,
                "limits": asdict(self.limits),
            }
        )

    async def metrics_text(self, request: Request) -> Response:
        return Response(self.metrics.render(), media_type=self.metrics.content_type)

    async def page(self, request: Request) -> Response:
        return FileResponse(PAGE / "index.html", headers=PAGE_HEADERS)

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Starlette):
        self.batcher.start()
        yield
        await asyncio.get_running_loop().run_in_executor(None, self.batcher.stop)


def _metrics_middleware(app, metrics: Metrics):
    """Counts every response by path and status code and times it (pure ASGI, so that it
    sees the status of every response, errors too)."""

    async def wrapped(scope, receive, send):
        if scope["type"] != "http":
            return await app(scope, receive, send)
        start, status = time.perf_counter(), [500]

        async def sending(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await app(scope, receive, sending)
        finally:
            path = scope["path"]
            label = path if path in PATHS else "/static" if path.startswith("/static/") else "other"
            metrics.request(label, status[0], time.perf_counter() - start)

    return wrapped


async def _http_error(request: Request, exc: HTTPException) -> Response:
    return _error(exc.status_code, exc.detail, getattr(exc, "headers", None))


def create_app(
    translator: Translator,
    name: str,
    paths: list[str],
    limits: Limits = Limits(),
    searches: list[Search] | None = None,
    token: str | None = None,
):
    """The ASGI app serving `translator` (an app of its own: its batcher, metrics and limits);
    searches: its workers' search functions (see Server); token: the bearer token the API
    needs (None: none)."""
    server = Server(translator, name, paths, limits, searches)
    routes = [
        Route("/", server.page),
        Route("/translate", server.translate, methods=["POST"]),
        Route("/health", server.health),
        Route("/info", server.info),
        Route("/metrics", server.metrics_text),
        Mount("/static", _PageFiles(directory=PAGE), name="static"),
    ]
    app = Starlette(routes=routes, lifespan=server.lifespan, exception_handlers={HTTPException: _http_error})
    app.state.server = server
    return _metrics_middleware(app if token is None else _token_required(app, token), server.metrics)


#: what answers without a token: the health check, the page and its files (the page asks for it)
OPEN_PATHS = ("/health", "/")


def _token_required(app, token: str):
    """The app behind a bearer token: a request to any other path than OPEN_PATHS and the page's
    files without `Authorization: Bearer TOKEN` gets a 401 (compared in constant time; the
    token is in no message)."""
    expected = f"Bearer {token}".encode()

    async def wrapped(scope, receive, send):
        if scope["type"] == "http" and scope["path"] not in OPEN_PATHS and not scope["path"].startswith("/static/"):
            given = dict(scope["headers"]).get(b"authorization", b"")
            if not hmac.compare_digest(given, expected):
                reason = "this server needs 'Authorization: Bearer TOKEN' (nmt serve --token-file)"
                await _error(401, reason, {"WWW-Authenticate": "Bearer"})(scope, receive, send)
                return
        await app(scope, receive, send)

    return wrapped
