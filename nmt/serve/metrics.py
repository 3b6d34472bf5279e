"""The server's Prometheus metrics (prometheus_client, in a registry of the app's own).

nmt_requests_total{path,code}     requests answered, by endpoint and status code
nmt_sentences_total                sentences translated (blank lines included)
nmt_batch_sentences                histogram: sentences per decoded batch
nmt_batch_seconds                  histogram: time to decode a batch
nmt_queue_sentences                gauge: sentences waiting for a batch
nmt_request_seconds{path}          histogram: request latency, from arrival to the response
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


class Metrics:
    """The counters the app and the batcher update; `render()` is the /metrics body."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self, queue_length: Callable[[], float]):
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("nmt_requests", "Requests answered", ["path", "code"], registry=r)
        self.sentences = Counter("nmt_sentences", "Sentences translated", registry=r)
        self.batch_sentences = Histogram(
            "nmt_batch_sentences", "Sentences per decoded batch", buckets=BATCH_BUCKETS, registry=r
        )
        self.batch_seconds = Histogram(
            "nmt_batch_seconds", "Time to decode one batch", buckets=LATENCY_BUCKETS, registry=r
        )
        self.latency = Histogram(
            "nmt_request_seconds", "Request latency", ["path"], buckets=LATENCY_BUCKETS, registry=r
        )
        Gauge("nmt_queue_sentences", "Sentences waiting for a batch", registry=r).set_function(queue_length)

    def batch(self, size: int, seconds: float) -> None:
        """A decoded batch (called from the decoding worker)."""
        self.batch_sentences.observe(size)
        self.batch_seconds.observe(seconds)

    def request(self, path: str, code: int, seconds: float) -> None:
        self.requests.labels(path, str(code)).inc()
        self.latency.labels(path).observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
