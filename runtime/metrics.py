"""Prometheus metrics of one service process, in a registry of its own."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1,
    2.5,
    5,
    10,
    30,
)


class ServiceMetrics:
    def __init__(self, service: str) -> None:
        self.service = service
        self.registry = CollectorRegistry()
        self._request_children: dict[tuple[str, str, str], tuple[Any, Any]] = {}
        r = self.registry
        self.requests = Counter(
            "trellis_requests",
            "Requests handled, by subject and outcome.",
            ["service", "subject", "outcome"],
            registry=r,
        )
        self.request_seconds = Histogram(
            "trellis_request_duration_seconds",
            "Time to handle a request.",
            ["service", "subject"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.messages = Counter(
            "trellis_consumed_messages",
            "Stream messages processed, by outcome (acked, retried, dead_lettered).",
            ["service", "stream", "consumer", "outcome"],
            registry=r,
        )
        self.redeliveries = Counter(
            "trellis_redeliveries",
            "Stream messages received more than once.",
            ["service", "stream", "consumer"],
            registry=r,
        )
        self.dead_letters = Counter(
            "trellis_dead_letters",
            "Messages sent to the dead-letter stream.",
            ["service", "subject"],
            registry=r,
        )
        self.consumer_lag = Gauge(
            "trellis_consumer_lag",
            "Messages in the stream not yet delivered to the consumer.",
            ["service", "stream", "consumer"],
            registry=r,
        )
        self.consumer_ack_pending = Gauge(
            "trellis_consumer_ack_pending",
            "Messages delivered but not yet acknowledged.",
            ["service", "stream", "consumer"],
            registry=r,
        )
        self.in_flight = Gauge(
            "trellis_in_flight", "Requests and messages being handled now.", ["service"], registry=r
        )

    def observe_request(self, service: str, subject: str, outcome: str, seconds: float) -> None:
        # labels() costs a lock and a tuple per call; requests are the hot path, so keep children.
        key = (service, subject, outcome)
        children = self._request_children.get(key)
        if children is None:
            children = (
                self.requests.labels(service, subject, outcome),
                self.request_seconds.labels(service, subject),
            )
            self._request_children[key] = children
        children[0].inc()
        children[1].observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
