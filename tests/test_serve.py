"""`nmt serve` against real server processes on random loopback ports: the JSON API, its
errors and limits, batching across requests, clients that go away, SIGTERM, and the page in
headless Chromium. The dates model is the session's tiny trained run (conftest `trained`)."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import REPO_ROOT, check_one_line_error

from nmt.translate import Translator
from nmt.translate.alignment import piece_alignment, word_alignment

pytest.importorskip("uvicorn", reason="nmt serve needs the serve extra: pip install -e '.[serve]'")
pytest.importorskip("starlette", reason="nmt serve needs the serve extra: pip install -e '.[serve]'")

DATES = ["3 May 1979", "", "Tuesday, March 12 1991", "28 FEB 2058", "12/05/1943"]
#: 150 subwords, beyond data.max_src_length (100); beam search goes on to its maximum length of
#: 1.5 x 150 + 10 = 235 steps: a few tenths of a second, long enough to see the queue
LONG = " ".join(["12 March 1991,"] * 15)
# a search that keeps a worker busy for a while (the test model: 165 ms a line here): a long line,
# a wide beam and n_best = beam, so that it waits for the beam's K finished hypotheses (with
# n_best 1 the exact rule stops much sooner: 9 ms with a beam of 6, too short to watch the queue)
SLOW = {"src": [LONG] * 3, "beam": 32, "n_best": 32}


class Server:
    """`nmt serve -m RUN --port 0 OPTIONS` in a subprocess; its address read from its first line."""

    def __init__(self, run: Path, *options: str, new_session: bool = False, env: dict | None = None):
        self.process = subprocess.Popen(
            [sys.executable, "-m", "nmt", "serve", "-m", str(run), "--port", "0", *options],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO_ROOT,
            start_new_session=new_session,  # a process group of its own, as a terminal's job is
            env=None if env is None else {**os.environ, **env},
        )
        self.signalled = False
        line = self._first_line(timeout=120)
        found = re.search(r"http://[^/]+:(\d+)/", line)
        if not found:
            self.stop()
            pytest.fail(f"nmt serve did not start: {line!r}")
        self.port = int(found.group(1))

    def _first_line(self, timeout: float) -> str:
        """Read byte by byte from the pipe, so that nothing after the line is buffered here and
        lost to stop()'s communicate()."""
        line, fd, deadline = b"", self.process.stderr.fileno(), time.monotonic() + timeout
        while not line.endswith(b"\n") and select.select([fd], [], [], max(0, deadline - time.monotonic()))[0]:
            byte = os.read(fd, 1)
            if not byte:
                break
            line += byte
        return line.decode("utf-8", "replace")

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
        """(status, headers, body) of one request on a connection of its own."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        finally:
            conn.close()

    def translate(self, payload, **headers) -> tuple[int, dict]:
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        status, _, body = self.request("POST", "/translate", data, {"Content-Type": "application/json", **headers})
        return status, json.loads(body)

    def metric(self, name: str) -> float:
        """The value of one sample of /metrics, e.g. 'nmt_queue_sentences'."""
        _, _, body = self.request("GET", "/metrics")
        for line in body.decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[-1])
        raise AssertionError(f"{name} not in /metrics")

    def wait_for(self, name: str, value: float, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while self.metric(name) != value:
            assert time.monotonic() < deadline, f"{name} never reached {value}"
            time.sleep(0.02)

    def send_signal(self, sig: int) -> None:
        """A signal to the server, remembered: `stop` then waits without sending a second one."""
        self.signalled = True
        self.process.send_signal(sig)

    def stop(self) -> tuple[int, str]:
        """SIGTERM (unless one was sent already: a second one, once the server has stopped and its
        default handler is back, ends it by default), then (exit status, the rest of stderr)."""
        if self.process.poll() is None and not self.signalled:
            self.process.send_signal(signal.SIGTERM)
        try:
            _, err = self.process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            _, err = self.process.communicate()
        return self.process.returncode, err


@pytest.fixture(scope="module")
def server(trained):
    s = Server(trained[0], "--max-sentences", "8", "--max-bytes", "4000", "--max-beam", "6", "--workers", "2")
    yield s
    s.stop()


@pytest.fixture(scope="module")
def translator(trained):
    return Translator.load(trained[0])


@pytest.fixture(scope="module")
def one_at_a_time(trained):
    """A server that decodes one sentence at a time and queues at most 3: easy to fill."""
    options = ("--max-batch", "1", "--max-sentences", "3", "--max-queue", "3", "--max-wait-ms", "0", "--workers", "1")
    s = Server(trained[0], *options)
    yield s
    s.stop()


def in_thread(call, *args) -> tuple[threading.Thread, list]:
    out: list = []
    thread = threading.Thread(target=lambda: out.append(call(*args)), daemon=True)
    thread.start()
    return thread, out


# --- the API --------------------------------------------------------------------------------


def test_translate_gives_one_entry_per_line_in_order_as_the_python_api_does(server, translator):
    status, data = server.translate({"src": DATES, "beam": 3, "n_best": 2, "attention": True})
    assert status == 200, data
    expected = translator.search(DATES, beam=3, n_best=2, attention=True)
    assert [t["text"] for t in data["translations"]] == [nbest[0].text for nbest in expected]
    assert data["translations"][2]["text"] == "1991-03-12"
    assert data["model"] == "dates" and data["elapsed_ms"] > 0 and data["notes"] == []
    for entry, nbest in zip(data["translations"], expected):
        assert [h["text"] for h in entry["n_best"]] == [t.text for t in nbest]
        assert entry["score"] == pytest.approx(nbest[0].search_score, abs=1e-4)
        assert entry["log_prob"] == pytest.approx(nbest[0].log_prob, abs=1e-4)
        assert entry["src_pieces"] == nbest[0].src_pieces and entry["tgt_pieces"] == nbest[0].tgt_pieces
        rows = entry["attention"]
        assert len(rows) == len(entry["tgt_pieces"]) and all(len(r) == len(entry["src_pieces"]) for r in rows)
        assert all(abs(sum(r) - 1) < 1e-2 for r in rows)
        assert [h["score"] for h in entry["n_best"]] == sorted((h["score"] for h in entry["n_best"]), reverse=True)
    blank = data["translations"][1]
    assert blank["text"] == "" and blank["src_pieces"] == [] and blank["attention"] == []


@pytest.mark.parametrize("align", [True, "pieces"])
def test_align_adds_the_links_nmt_translate_align_prints(server, translator, align):
    status, data = server.translate({"src": DATES, "beam": 3, "n_best": 2, "align": align})
    assert status == 200, data
    links = word_alignment if align is True else piece_alignment
    for entry, nbest in zip(data["translations"], translator.search(DATES, beam=3, n_best=2, attention=True)):
        expected = [[list(link) for link in links(t.src_pieces, t.tgt_pieces, t.attention)] for t in nbest]
        assert [h["alignment"] for h in entry["n_best"]] == expected and entry["alignment"] == expected[0]
        assert "attention" not in entry  # not asked for


def test_prefixes_give_what_the_python_api_gives_beside_requests_without(server, translator):
    prefixes = ["1979-0", "", "1991-03-1 "[:-1], "20"]
    status, data = server.translate({"src": DATES[:4], "beam": 3, "n_best": 2, "prefix": prefixes})
    assert status == 200, data
    expected = translator.search(DATES[:4], beam=3, n_best=2, prefixes=prefixes)
    assert [[h["text"] for h in e["n_best"]] for e in data["translations"]] == [[t.text for t in n] for n in expected]
    assert all(h["text"].startswith(p) for e, p in zip(data["translations"], prefixes) for h in e["n_best"])
    status, plain = server.translate({"src": DATES[:4], "beam": 3})
    assert [e["text"] for e in plain["translations"]] == translator.translate(DATES[:4], beam=3)


def test_constraints_give_what_the_python_api_gives_beside_requests_without(server, translator):
    constraints = [["1985"], [], ["-12", "1991"], ["2000"]]
    status, data = server.translate({"src": DATES[:4], "beam": 3, "n_best": 2, "constraints": constraints})
    assert status == 200, data
    expected = translator.search(DATES[:4], beam=3, n_best=2, constraints=constraints)
    got = [[(h["text"], h["unmet_constraints"]) for h in e["n_best"]] for e in data["translations"]]
    assert got == [[(t.text, t.unmet_constraints) for t in n] for n in expected]
    assert all(p in e["text"] for e, phrases in zip(data["translations"], constraints) for p in phrases)
    status, plain = server.translate({"src": DATES[:4], "beam": 3})
    assert [e["text"] for e in plain["translations"]] == translator.translate(DATES[:4], beam=3)
    assert "unmet_constraints" not in plain["translations"][0]


def test_defaults_come_from_the_run_and_attention_only_when_asked(server, translator):
    status, data = server.translate({"src": ["3 May 1979"]})
    assert status == 200
    entry = data["translations"][0]
    assert "attention" not in entry and len(entry["n_best"]) == translator.cfg.decoding.n_best
    assert entry["text"] == translator.translate(["3 May 1979"])[0] == "1979-05-03"


def test_a_line_beyond_the_length_cap_is_translated_whole_with_a_note(server, translator):
    status, data = server.translate({"src": ["3 May 1979", LONG], "beam": 1})
    assert status == 200
    assert [t["text"] for t in data["translations"]] == translator.translate(["3 May 1979", LONG], beam=1)
    assert len(data["translations"][1]["src_pieces"]) > 101
    (note,) = data["notes"]
    assert note.startswith("src[1]: ") and "translated whole" in note


def test_health_info_metrics_and_the_page(server, translator, trained):
    status, _, body = server.request("GET", "/health")
    assert status == 200 and json.loads(body) == {"status": "ok", "model": "dates"}
    status, _, body = server.request("GET", "/info")
    info = json.loads(body)
    assert info["decoding"]["beam_size"] == translator.cfg.decoding.beam_size
    assert info["config"]["languages"] == ["src", "tgt"] and info["config"]["model"]["enc_hidden_size"] == 64
    assert info["limits"]["max_beam"] == 6 and info["version"]
    assert info["paths"] == [str(trained[0] / "checkpoints" / "best.pt")]
    before = server.metric("nmt_sentences_total")
    assert server.translate({"src": ["1 May 2000", "", "2 May 2000"]})[0] == 200
    assert server.metric("nmt_sentences_total") == before + 3
    _, headers, body = server.request("GET", "/metrics")
    text = body.decode()
    assert headers["content-type"].startswith("text/plain")
    assert re.search(r'^nmt_requests_total\{code="200",path="/translate"\} [1-9]', text, re.M)
    for name in ("nmt_batch_sentences_bucket", "nmt_request_seconds_bucket", "nmt_queue_sentences "):
        assert name in text
    status, headers, body = server.request("GET", "/")
    assert status == 200 and b'<textarea id="src"' in body
    assert headers["content-security-policy"].startswith("default-src 'self'")
    for asset in ("/static/app.js", "/static/style.css", "/static/index.html"):
        status, headers, body = server.request("GET", asset)
        assert status == 200 and not re.search(rb"https?://(?!www\.w3\.org/2000/svg)", body)  # nothing external
        assert headers["content-security-policy"].startswith("default-src 'self'")  # the page's policy, however reached
        assert headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize(
    "body,status,reason",
    [
        (b'{"src": ["a"', 400, "invalid JSON: "),
        (b'{"src": ["a"], "alpha": NaN}', 400, "invalid JSON: NaN is not a JSON number"),
        (b'{"src": ["\xff"]}', 400, "invalid JSON: the body is not UTF-8"),
        (b'["3 May 1979"]', 422, "expected a JSON object with the field 'src', got list"),
        (b'{"beam": 2}', 422, "src: expected a list of strings"),
        (b'{"src": "3 May 1979"}', 422, "src: expected a list of strings"),
        (b'{"src": ["a", 3]}', 422, "src: expected a list of strings"),
        (b'{"src": ["a"], "beams": 2}', 422, "unknown field 'beams' (expected some of: src, beam, alpha"),
        (b'{"src": ["a"], "beam": "5"}', 422, 'beam: expected an integer, got "5"'),
        (b'{"src": ["a"], "beam": true}', 422, "beam: expected an integer, got true"),
        (b'{"src": ["a"], "beam": 2.0}', 422, "beam: expected an integer, got 2.0"),
        (b'{"src": ["a"], "beam": 0}', 422, "beam: expected an integer from 1 to"),
        (b'{"src": ["a"], "beam": 7}', 422, "beam: at most 6 on this server (nmt serve --max-beam), got 7"),
        (b'{"src": ["a"], "alpha": -1}', 422, "alpha: expected a number in [0, 10], got -1"),
        (b'{"src": ["a"], "alpha": 1e999}', 422, "alpha: expected a finite number"),
        (b'{"src": ["a"], "alpha": 1' + b"0" * 400 + b"}", 422, "alpha: expected a finite number, got 1000"),
        (b'{"src": ["3 May \\ud800 1979"]}', 422, "src[0]: not Unicode text (surrogates not allowed at character 6)"),
        (b"[" * 1800 + b"]" * 1800, 400, "invalid JSON: nested too deeply"),
        (json.dumps({"src": ["a", "1 " * 1900]}).encode(), 413, "src[1]: 3800 subwords, more than this server takes"),
        (b'{"src": ["a"], "alpha": 1e300}', 422, "alpha: expected a number in [0, 10], got 1e+300"),
        (b'{"src": ["a"], "beam": 2, "n_best": 3}', 422, "n_best: expected at most the beam size (2), got 3"),
        (b'{"src": ["a"], "attention": 1}', 422, "attention: expected true or false, got 1"),
        (b'{"src": ["a", "b"], "prefix": ["1979"]}', 422, "prefix: expected a list of 2 strings, one per sentence"),
        (b'{"src": ["a"], "align": "words"}', 422, 'align: expected true, false or "pieces", got "words"'),
        (b'{"src": ["a"], "prefix": [3]}', 422, "prefix: expected a list of 1 strings, one per sentence of src"),
        (b'{"src": ["a"], "constraints": ["1979"]}', 422, "constraints: expected a list of 1 lists of strings"),
        (b'{"src": ["a", "b"], "constraints": [[]]}', 422, "constraints: expected a list of 2 lists of strings"),
        (b'{"src": ["a"], "constraints": [["1979", 3]]}', 422, "constraints: expected a list of 1 lists of strings"),
        (b'{"src": ["a"], "constraints": [[""]]}', 422, "constraints[0][0]: constraint '' is empty"),
        (b'{"src": ["a"], "constraints": [["\\u4e2d"]]}', 422, "constraints[0][0]: constraint '\u4e2d' has characters"),
        (json.dumps({"src": ["a"], "constraints": [["1 " * 600]]}).encode(), 413, "constraints[0]: 1200 subwords"),
        (b'{"src": ["a"], "prefix": ["\\ud800"]}', 422, "prefix[0]: not Unicode text (surrogates not allowed"),
        (json.dumps({"src": ["a"] * 9}).encode(), 413, "src: 9 sentences, more than this server takes (8)"),
        (
            json.dumps({"src": ["a" * 5000]}).encode(),
            413,
            "the body has 5013 bytes, more than this server takes (4000)",
        ),
    ],
    ids=lambda value: value if isinstance(value, str) else str(value) if isinstance(value, int) else "",
)
def test_bad_requests_are_refused_with_a_one_line_reason(server, body, status, reason):
    got, data = server.translate(body)
    assert got == status and list(data) == ["error"] and "\n" not in data["error"], data
    assert data["error"].startswith(reason), data["error"]


def test_a_chunked_body_is_cut_off_at_the_limit(server):
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    chunks = (b'{"src": ["' if i == 0 else b"x" * 1000 for i in range(10))
    conn.request("POST", "/translate", body=chunks, encode_chunked=True)
    response = conn.getresponse()
    assert response.status == 413
    assert json.loads(response.read())["error"] == "the body has more than the 4000 bytes this server takes"
    conn.close()
    assert server.request("GET", "/health")[0] == 200


def test_concurrent_requests_share_batches_and_different_beams_are_searched_apart(server, translator):
    lines = [f"{day} March {1950 + day}" for day in range(1, 25)]
    beams = [1 + i % 3 for i in range(len(lines))]
    batches_before, sentences_before = server.metric("nmt_batch_sentences_count"), server.metric("nmt_sentences_total")
    calls = [in_thread(server.translate, {"src": [line], "beam": b, "n_best": b}) for line, b in zip(lines, beams)]
    for thread, _ in calls:
        thread.join(120)
    for (_, out), line, beam in zip(calls, lines, beams):
        status, data = out[0]
        assert status == 200
        expected = translator.search([line], beam=beam, n_best=beam)[0]
        assert [h["text"] for h in data["translations"][0]["n_best"]] == [t.text for t in expected]
    batches = server.metric("nmt_batch_sentences_count") - batches_before
    assert server.metric("nmt_sentences_total") - sentences_before == len(lines)
    assert 3 <= batches < len(lines)  # three beams: at least three searches; fewer than one per request


def test_a_full_queue_is_503_with_retry_after(one_at_a_time, translator):
    slow, _ = in_thread(one_at_a_time.translate, SLOW)
    one_at_a_time.wait_for("nmt_queue_sentences", 2)  # one in the worker, two waiting
    status, headers, body = one_at_a_time.request(
        "POST", "/translate", json.dumps({"src": ["1 May 2000"] * 2}).encode()
    )
    assert status == 503 and int(headers["retry-after"]) >= 1
    assert json.loads(body)["error"].startswith("the translation queue is full; retry after")
    slow.join(120)
    assert one_at_a_time.translate({"src": ["1 May 2000"]})[1]["translations"][0]["text"] == "2000-05-01"


def test_a_client_that_goes_away_leaves_the_queue_and_stalls_nobody(one_at_a_time):
    decoded_before = one_at_a_time.metric("nmt_batch_sentences_sum")
    conn = socket.create_connection(("127.0.0.1", one_at_a_time.port))
    body = json.dumps(SLOW).encode()
    conn.sendall(b"POST /translate HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
    one_at_a_time.wait_for("nmt_queue_sentences", 2)
    conn.close()  # gone: its two waiting sentences leave the queue
    one_at_a_time.wait_for("nmt_queue_sentences", 0, timeout=5)
    status, data = one_at_a_time.translate({"src": ["28 FEB 2058"]})
    assert status == 200 and data["translations"][0]["text"] == "2058-02-28"
    # the one sentence that was in the worker, and the new one: the other two were never decoded
    assert one_at_a_time.metric("nmt_batch_sentences_sum") - decoded_before == 2


def test_a_body_that_does_not_arrive_is_408_and_does_not_hold_the_shutdown(trained):
    """A client sends its headers and one byte of a 100-byte body, then nothing."""
    s = Server(trained[0], "--read-timeout-s", "2", "--workers", "1")
    conn = socket.create_connection(("127.0.0.1", s.port), timeout=30)
    conn.sendall(b"POST /translate HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
    started = time.monotonic()
    reply = b""
    while not reply.endswith(b"}") and (chunk := conn.recv(4096)):  # headers and body may come apart
        reply += chunk
    assert reply.startswith(b"HTTP/1.1 408 ") and b'{"error":"the body did not arrive within 2 s"}' in reply
    assert time.monotonic() - started < 20
    second = socket.create_connection(("127.0.0.1", s.port), timeout=30)
    second.sendall(b"POST /translate HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
    time.sleep(0.5)
    started = time.monotonic()
    code, err = s.stop()  # SIGTERM with a stalled upload in flight: over once it times out
    assert code == 0 and time.monotonic() - started < 30, err
    assert "Traceback" not in err, err
    conn.close(), second.close()


def test_sigterm_finishes_the_requests_in_flight_then_exits(trained):
    s = Server(trained[0], "--max-batch", "1", "--workers", "2")
    inflight, out = in_thread(s.translate, {**SLOW, "src": [LONG, LONG, "3 May 1979"]})
    s.wait_for("nmt_queue_sentences", 1)  # a long line in each worker, one line waiting
    code, err = s.stop()
    inflight.join(60)
    status, data = out[0]
    assert status == 200 and data["translations"][2]["text"] == "1979-05-03" and len(data["translations"]) == 3
    assert code == 0, err
    assert err.strip().splitlines()[-1] == "nmt: server stopped (SIGTERM): finished the requests in flight"
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", s.port), timeout=5)


def test_sigterm_answers_the_requests_sent_just_before_it_on_new_connections(trained, translator):
    """200 requests, each on a new connection, all sent, then SIGTERM at once: most of them are
    still in the listening socket's backlog or unread on their connection. Each gets its answer
    (uvicorn's own stop reset every one of them: nmt.serve.graceful)."""
    s = Server(trained[0], "--workers", "2")
    body = json.dumps({"src": DATES}).encode()
    head = f"POST /translate HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    connections = [socket.create_connection(("127.0.0.1", s.port), timeout=120) for _ in range(200)]
    for connection in connections:
        connection.sendall(head.encode() + body)
    s.send_signal(signal.SIGTERM)
    answers = []
    for connection in connections:
        with connection, connection.makefile("rb") as f:
            answers.append(f.read())
    assert all(answer.startswith(b"HTTP/1.1 200 ") for answer in answers), {a[:12] for a in answers}
    texts = [t["text"] for t in json.loads(answers[-1].partition(b"\r\n\r\n")[2])["translations"]]
    assert texts == translator.translate(DATES)
    code, err = s.stop()
    assert code == 0, err


def test_the_batcher_keeps_clients_that_take_turns_in_one_batch():
    """Eight clients, each sending its next sentence when answered. The first batch takes the
    first sentence alone, the other seven queue behind it; a worker that then started the next
    batch with whatever waited would split the clients into a group of 1 and a group of 7 for
    good. Waiting (up to a quarter of a batch's time) for the answered clients to come back joins
    them: after the start, every batch holds all eight (the last, seven: the first client is done)."""
    import asyncio

    from nmt.serve.batcher import Batcher, Job, SearchKey
    from nmt.translate import Translation

    class SlowModel:
        def search(self, lines, beam, alpha, n_best=1, attention=False):
            time.sleep(0.2)
            return [[Translation(line.upper(), 0.0, 0.0, [], [])] for line in lines]

    sizes: list[int] = []
    batcher = Batcher([SlowModel().search], 64, 100.0, 100, on_batch=lambda size, seconds: sizes.append(size))

    async def client(i: int) -> None:
        for k in range(5):
            job = Job([f"client {i} line {k}"], SearchKey(5, 1.0), 1, False, asyncio.get_running_loop())
            batcher.submit(job)
            assert (await job.future)[0][0].text == f"CLIENT {i} LINE {k}"

    async def clients() -> None:
        first = asyncio.ensure_future(client(0))
        await asyncio.sleep(0.05)  # its sentence is being decoded: the other seven queue behind it
        await asyncio.gather(first, *(client(i) for i in range(1, 8)))

    batcher.start()
    try:
        asyncio.run(clients())
    finally:
        batcher.stop(timeout=30)
    assert sum(sizes) == 40 and sizes.count(8) >= 3 and len(sizes) <= 7, sizes  # ideally 1, 8, 8, 8, 8, 7


def test_two_workers_decode_two_batches_at_once_and_a_job_split_between_them_completes():
    """--workers 2: a request of four lines with --max-batch 2 is two batches, decoded at the
    same time by the two workers (their decoding intervals overlap); the request gets all four
    results, in order, once both are done."""
    import asyncio

    from nmt.serve.batcher import Batcher, Job, SearchKey
    from nmt.translate import Translation

    spans: list[tuple[str, float, float]] = []

    class SlowModel:
        def search(self, lines, beam, alpha, n_best=1, attention=False):
            start = time.monotonic()
            time.sleep(0.3)
            spans.append((threading.current_thread().name, start, time.monotonic()))
            return [[Translation(line.upper(), 0.0, 0.0, [], [])] for line in lines]

    model = SlowModel()
    batcher = Batcher([model.search, model.search], 2, 0.0, 100)

    async def request() -> list:
        job = Job(["a", "b", "c", "d"], SearchKey(5, 1.0), 1, False, asyncio.get_running_loop())
        batcher.submit(job)
        return await job.future

    batcher.start()
    try:
        results = asyncio.run(request())
    finally:
        batcher.stop(timeout=30)
    assert [nbest[0].text for nbest in results] == ["A", "B", "C", "D"]
    (name_a, start_a, end_a), (name_b, start_b, end_b) = spans
    assert name_a != name_b and start_b < end_a and start_a < end_b


def test_idle_workers_share_the_queue_instead_of_one_taking_all_of_it():
    """8 sentences arrive while both workers wait: each takes 4 (--max-batch 64 would let the
    first take all 8 and leave the other idle until the answered clients come back)."""
    import asyncio

    from nmt.serve.batcher import Batcher, Job, SearchKey
    from nmt.translate import Translation

    sizes: list[int] = []

    def search(lines, beam, alpha, n_best=1, attention=False):
        time.sleep(0.1)
        return [[Translation(line.upper(), 0.0, 0.0, [], [])] for line in lines]

    batcher = Batcher([search, search], 64, 0.0, 100, on_batch=lambda size, seconds: sizes.append(size))

    async def request() -> list:
        job = Job([f"line {i}" for i in range(8)], SearchKey(5, 1.0), 1, False, asyncio.get_running_loop())
        batcher.submit(job)
        return await job.future

    batcher.start()
    try:
        deadline = time.monotonic() + 30
        while batcher._idle < 2:  # both workers are waiting for sentences
            assert time.monotonic() < deadline, "the workers never started waiting"
            time.sleep(0.01)
        results = asyncio.run(request())
    finally:
        batcher.stop(timeout=30)
    assert [nbest[0].text for nbest in results] == [f"LINE {i}" for i in range(8)]
    assert sizes == [4, 4]


def _worker_processes(server: Server) -> list[int]:
    """The PIDs of the server's decoding processes (its children named by multiprocessing; a
    worker started again is the child of the thread that started it, so of every thread)."""
    children = [
        pid for task in Path(f"/proc/{server.process.pid}/task").glob("*/children") for pid in _read(task).split()
    ]
    return [int(pid) for pid in children if "spawn_main" in _read(Path(f"/proc/{pid}/cmdline"))]


def _read(path: Path) -> str:
    """A /proc file's text, "" once the process or thread is gone."""
    try:
        return path.read_text()
    except (FileNotFoundError, ProcessLookupError):
        return ""


def test_workers_are_processes_and_one_killed_decodes_its_batch_again(trained, translator):
    """--workers 2 on the CPU: two decoding processes. SIGKILL both while a request decodes: both
    are started again and decode their batches once more, so the request is answered as before
    (the server's stderr says what happened), and the next request too."""
    s = Server(trained[0], "--workers", "2", "--max-batch", "1")
    try:
        pids = _worker_processes(s)
        assert len(pids) == 2
        request = {**SLOW, "src": [LONG, LONG, "3 May 1979"]}
        inflight, out = in_thread(s.translate, request)
        s.wait_for("nmt_queue_sentences", 1)  # a long line in each worker, one line waiting
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        inflight.join(120)
        status, data = out[0]
        assert status == 200, data
        expected = translator.translate(request["src"], beam=32)
        assert [t["text"] for t in data["translations"]] == expected
        assert set(_worker_processes(s)).isdisjoint(pids)
        status, data = s.translate({"src": DATES})
        assert status == 200
        assert [t["text"] for t in data["translations"]] == translator.translate(DATES)
    finally:
        code, err = s.stop()
    assert code == 0, err
    assert err.count("nmt: a decoding worker stopped (exit code -9): started again\n") == 2, err


@pytest.mark.slow
def test_a_batch_whose_worker_keeps_dying_fails_with_a_500_that_says_so(trained):
    """A worker that dies again on the batch it decodes once more (here: every worker process
    killed every 0.2 s until the request is answered) fails that batch's request with a 500
    naming the cause; the server goes on, and decodes the next request."""
    s = Server(trained[0], "--workers", "2", "--max-batch", "1")
    try:
        inflight, out = in_thread(s.translate, {**SLOW, "src": [LONG]})
        s.wait_for("nmt_queue_sentences", 0)
        while inflight.is_alive():
            for pid in _worker_processes(s):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            inflight.join(0.2)
        status, data = out[0]
        assert status == 500 and "decoding worker stopped" in data["error"], data
        assert s.translate({"src": DATES})[0] == 200
    finally:
        code, err = s.stop()
    assert code == 0, err


def test_ctrl_c_to_the_process_group_finishes_the_request_in_flight(trained):
    """Ctrl-C in a terminal sends SIGINT to the server and its worker processes alike: the
    workers leave it to the server, which finishes the request in flight, then ends them."""
    s = Server(trained[0], "--workers", "2", "--max-batch", "1", new_session=True)
    pids = _worker_processes(s)
    inflight, out = in_thread(s.translate, {**SLOW, "src": [LONG, LONG, "3 May 1979"]})
    s.wait_for("nmt_queue_sentences", 1)  # a long line in each worker, one line waiting
    os.killpg(s.process.pid, signal.SIGINT)
    inflight.join(60)
    s.process.wait(60)  # it stops by itself
    code, err = s.stop()
    status, data = out[0]
    assert status == 200 and data["translations"][2]["text"] == "1979-05-03"
    assert code == 0 and err.strip().splitlines()[-1].startswith("nmt: server stopped (SIGINT)"), err
    assert not any(Path(f"/proc/{pid}").exists() for pid in pids)


def test_worker_processes_end_when_the_server_is_killed(trained):
    """SIGKILL leaves the server no time to end its workers: they see their pipe close and exit."""
    s = Server(trained[0], "--workers", "2")
    pids = _worker_processes(s)
    assert s.translate({"src": DATES})[0] == 200
    s.process.kill()
    s.process.wait(30)
    deadline = time.monotonic() + 30
    while any(_alive(pid) for pid in pids):
        assert time.monotonic() < deadline, "the worker processes outlived their server"
        time.sleep(0.1)


def _alive(pid: int) -> bool:
    """Whether the process runs (a zombie, ended but not yet reaped, does not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


# --- the command's own errors ---------------------------------------------------------------


# --- the token ----------------------------------------------------------------------------------

TOKEN = "s3cret-Token_for-the-test"


@pytest.fixture(scope="module")
def guarded(trained, tmp_path_factory):
    """A server whose API needs TOKEN, read from a file."""
    path = tmp_path_factory.mktemp("token") / "token"
    path.write_text(TOKEN + "\n")
    s = Server(trained[0], "--token-file", str(path), "--workers", "1")
    yield s
    code, err = s.stop()
    assert code == 0 and TOKEN not in err, err  # the token is never shown


def test_a_token_guards_the_api_and_leaves_health_and_the_page_open(guarded, translator):
    for given in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}, {"Authorization": f"Basic {TOKEN}"}):
        status, body = guarded.translate({"src": DATES[:1]}, **given)
        assert status == 401 and body == {
            "error": "this server needs 'Authorization: Bearer TOKEN' (nmt serve --token-file)"
        }, (given, body)
    status, headers, _ = guarded.request("GET", "/info")
    assert status == 401 and headers["www-authenticate"] == "Bearer"
    assert guarded.request("GET", "/metrics")[0] == 401
    right = {"Authorization": f"Bearer {TOKEN}"}
    status, body = guarded.translate({"src": DATES[:1]}, **right)
    assert status == 200 and body["translations"][0]["text"] == translator.translate(DATES[:1])[0]
    assert guarded.request("GET", "/info", headers=right)[0] == 200
    assert guarded.request("GET", "/metrics", headers=right)[0] == 200
    for path in ("/health", "/", "/static/app.js"):
        assert guarded.request("GET", path)[0] == 200, path


def test_the_token_can_come_from_the_environment_and_a_bad_token_file_is_one_line(
    trained, nmt_cli, one_line_error, tmp_path
):
    s = Server(trained[0], "--workers", "1", env={"NMT_SERVE_TOKEN": TOKEN})
    try:
        assert s.translate({"src": DATES[:1]})[0] == 401
        assert s.translate({"src": DATES[:1]}, Authorization=f"Bearer {TOKEN}")[0] == 200
    finally:
        assert s.stop()[0] == 0
    message = one_line_error(nmt_cli("serve", "--token-file", "no/such/file"), "error", 1)
    assert message.startswith("--token-file no/such/file: cannot read it (")
    empty = tmp_path / "empty-token"
    empty.write_text("\n")
    message = one_line_error(nmt_cli("serve", "--token-file", empty), "error", 1)
    assert message == f"--token-file {empty}: its first line is empty: expected the token"


@pytest.mark.slow
def test_listening_beyond_the_loopback_without_a_token_warns_once(trained, tmp_path):
    path = tmp_path / "token"
    path.write_text(TOKEN)
    for options, warned in ((("--host", "0.0.0.0"), True), (("--host", "0.0.0.0", "--token-file", str(path)), False)):
        s = Server(trained[0], *options, "--workers", "1")
        assert s.request("GET", "/health")[0] == 200  # it is up: anything it had to say is said
        _, err = s.stop()
        notes = [line for line in err.splitlines() if "reachable from other machines" in line]
        assert len(notes) == int(warned), err
    s = Server(trained[0], "--workers", "1")  # the loopback: no note
    _, err = s.stop()
    assert "reachable from other machines" not in err


def test_sigterm_as_soon_as_the_server_says_it_serves_stops_it(trained):
    """A signal between the line and uvicorn's own handlers was once swallowed: it served on."""
    s = Server(trained[0], "--workers", "1")
    s.send_signal(signal.SIGTERM)
    code, err = s.process.wait(timeout=30), s.process.stderr.read()
    assert code == 0 and err.strip() == "nmt: server stopped (SIGTERM): finished the requests in flight", err


def test_without_the_serve_extra_a_one_line_error_names_it(nmt_cli):
    code = "import sys; sys.modules['uvicorn'] = None; from nmt.cli import main; sys.exit(main(['serve']))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT, timeout=60)
    message = check_one_line_error(result, "missing dependency", 1)
    assert (
        message
        == "nmt serve needs uvicorn: pip install 'nmt[serve]' (or pip install uvicorn starlette prometheus-client)"
    )


def test_a_port_in_use_is_one_line_before_any_model_is_loaded(nmt_cli, one_line_error):
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        result = nmt_cli("serve", "-m", "no/such/run", "--port", port, timeout=120)
    message = one_line_error(result, "error", 1)
    assert message.startswith(f"--host 127.0.0.1 --port {port}: cannot listen there (")


def test_a_queue_smaller_than_a_request_is_a_usage_error(nmt_cli):
    result = nmt_cli("serve", "--max-queue", "4", "--max-sentences", "5")
    assert result.returncode == 2 and "--max-queue (4) must hold one request of --max-sentences (5)" in result.stderr


# --- the page in a browser --------------------------------------------------------------------


def _chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.skip("no Chromium: install Debian's chromium package (apt-get install chromium), as .ci/run does")
    return path


def test_the_page_translates_a_date_and_draws_its_attention(server, translator, tmp_path):
    playwright = pytest.importorskip("playwright.sync_api", reason="the browser test needs playwright (test extra)")
    executable = _chromium()
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 800})
            page.goto(f"http://127.0.0.1:{server.port}/")
            page.fill("#src", "Tuesday, March 12 1991\n\n3 May 1979")
            page.click("#translate")
            page.wait_for_selector("#heatmap svg rect.cell", timeout=60_000)
            assert page.locator("#results .tgt").all_inner_texts() == ["1991-03-12", "", "1979-05-03"]
            page.locator("#results li").nth(2).click()
            assert page.locator("#detail-text").inner_text() == "3 May 1979 → 1979-05-03"
            _, data = server.translate({"src": ["3 May 1979"], "attention": True})
            entry = data["translations"][0]
            cells = page.locator("#heatmap svg rect.cell")
            assert cells.count() == len(entry["src_pieces"]) * len(entry["tgt_pieces"])
            fills = set(cells.evaluate_all("cells => cells.map(c => c.getAttribute('fill'))"))
            assert len(fills) > 3  # the weights differ, and so do the colours
            assert page.locator("#nbest-list li").count() >= 1
            page.screenshot(path=str(tmp_path / "page.png"), full_page=True)
            page.fill("#prefix", "1991-0\n\n1978")  # the translations begin as typed, a last word unfinished
            page.click("#translate")
            page.locator("#results .tgt", has_text="1978").wait_for(timeout=60_000)  # the new results are in
            texts = page.locator("#results .tgt").all_inner_texts()
            lines, prefixes = ["Tuesday, March 12 1991", "", "3 May 1979"], ["1991-0", "", "1978"]
            assert texts == translator.translate(lines, prefixes=prefixes)
            page.locator("#results li").nth(0).locator(".tgt .word").nth(0).hover()  # its source word lights up
            marked = page.locator("#results li").nth(0).locator(".src .word.aligned").all_inner_texts()
            best = translator.search(lines[:1], prefixes=prefixes[:1], attention=True)[0][0]
            (source_word, _), *_ = word_alignment(best.src_pieces, best.tgt_pieces, best.attention)
            assert marked == [lines[0].split()[source_word]]
            assert texts[2].startswith("1978")
            page.fill("#prefix", "")
            page.fill("#terms", "-07-\n\n1985 | -12")  # terms: each translation contains its own
            page.click("#translate")
            page.locator("#results .tgt", has_text="1985").wait_for(timeout=60_000)
            texts = page.locator("#results .tgt").all_inner_texts()
            assert texts == translator.translate(lines, constraints=[["-07-"], [], ["1985", "-12"]])
            assert "-07-" in texts[0] and "1985" in texts[2] and "-12" in texts[2]
        finally:
            browser.close()
    assert (tmp_path / "page.png").stat().st_size > 10_000


def test_the_page_asks_for_the_token_once_and_keeps_it_for_the_tab(guarded, translator):
    playwright = pytest.importorskip("playwright.sync_api", reason="the browser test needs playwright (test extra)")
    executable = _chromium()
    asked: list[str] = []

    def answer(dialog) -> None:
        asked.append(dialog.message)
        dialog.accept("wrong" if len(asked) == 1 else TOKEN)  # a mistyped token first

    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        try:
            page = browser.new_page()
            page.on("dialog", answer)
            page.goto(f"http://127.0.0.1:{guarded.port}/")
            page.locator("#model", has_text="no model information").wait_for(timeout=60_000)
            assert asked == ["This server needs a token:"]  # /info: asked once, then the refusal shown
            for line in DATES[:1] + DATES[3:4]:  # asked again once (the stored token was refused), then never
                page.fill("#src", line)
                page.click("#translate")
                page.locator("#results .tgt", has_text=translator.translate([line])[0]).wait_for(timeout=60_000)
            assert asked == ["This server needs a token:", "That token was refused; the server's token:"]
            assert page.evaluate("sessionStorage.getItem('nmt-token')") == TOKEN
            assert TOKEN not in page.url
        finally:
            browser.close()


def test_every_connection_gets_tcp_nodelay():
    """Else a kept-alive connection's every response but the first waits 40 ms for a delayed ACK
    (Nagle's algorithm holds the body back until the head is acknowledged)."""
    import asyncio

    from nmt.serve import listen

    sock = listen("127.0.0.1", 0)

    async def accept_one() -> int:
        accepted = asyncio.get_running_loop().create_future()

        def on_connection(reader, writer) -> None:
            option = writer.get_extra_info("socket").getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
            accepted.set_result(option)
            writer.close()

        server = await asyncio.start_server(on_connection, sock=sock)
        _, writer = await asyncio.open_connection("127.0.0.1", sock.getsockname()[1])
        option = await asyncio.wait_for(accepted, 10)
        writer.close()
        server.close()
        return option

    assert asyncio.run(accept_one()) != 0


def test_an_ensemble_is_served_as_the_python_api_computes_it(trained):
    """`nmt serve -m RUN -m CHECKPOINT`: /info lists both members, /translate gives what
    Translator.load([RUN, CHECKPOINT]) gives (texts, scores, n-best)."""
    run = trained[0]
    member = run / "checkpoints" / "last.pt"
    ensemble = Server(run, "-m", str(member))
    try:
        _, _, body = ensemble.request("GET", "/info")
        assert len(json.loads(body)["paths"]) == 2
        status, data = ensemble.translate({"src": DATES, "beam": 3, "n_best": 2})
    finally:
        ensemble.stop()
    assert status == 200, data
    expected = Translator.load([run, member]).search(DATES, beam=3, n_best=2)
    for entry, nbest in zip(data["translations"], expected):
        assert [h["text"] for h in entry["n_best"]] == [t.text for t in nbest]
        assert entry["score"] == pytest.approx(nbest[0].search_score, abs=1e-4)
    assert data["translations"][2]["text"] == "1991-03-12"
