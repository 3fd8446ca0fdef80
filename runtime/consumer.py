"""JetStream durable pull consumers: explicit ack, bounded redelivery with backoff, dead-lettering."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable
from typing import Generic, TypeVar

import nats.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from contracts.envelope import Message
from contracts.system import ConsumerStatus
from contracts.topology import ConsumerSpec
from runtime import codec
from runtime.bus import Bus, EventHandler
from runtime.logs import correlation
from runtime.tasks import cancel_and_wait
from runtime.topology import ensure_consumer

M = TypeVar("M", bound=Message)
log = logging.getLogger("trellis.consumer")


def redelivery_delay(spec: ConsumerSpec, deliveries: int) -> float:
    """Delay before the next attempt after the `deliveries`-th one failed."""
    if not spec.backoff_s:
        return 0.0
    return spec.backoff_s[min(deliveries, len(spec.backoff_s)) - 1]


class DurableConsumer(Generic[M]):
    """Runs `handler` on every message of a durable consumer until stopped.

    A message is acked only after the handler returned. A handler error naks it with the
    spec's backoff; after `max_deliver` attempts (crashes included) or when it cannot be
    decoded, it goes to the dead-letter stream with the error and is terminated.
    """

    def __init__(
        self,
        bus: Bus,
        spec: ConsumerSpec,
        event_type: type[M],
        handler: EventHandler[M],
        *,
        batch: int = 16,
        concurrency: int = 1,
        fetch_timeout_s: float = 1.0,
    ) -> None:
        self.bus = bus
        self.spec = spec
        self.event_type = event_type
        self.handler = handler
        self.batch = batch
        self.fetch_timeout_s = fetch_timeout_s
        self._slots = asyncio.Semaphore(concurrency)
        self._in_flight: set[asyncio.Task[None]] = set()
        self._sub: JetStreamContext.PullSubscription | None = None
        self._loop_task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._labels = (bus.service, spec.stream, spec.durable)

    async def start(self) -> None:
        await ensure_consumer(self.bus.js, self.spec)
        self._sub = await self.bus.js.pull_subscribe_bind(
            durable=self.spec.durable, stream=self.spec.stream
        )
        self._loop_task = asyncio.create_task(
            self._fetch_loop(), name=f"consumer:{self.spec.durable}"
        )

    async def stop(self, timeout_s: float = 20.0) -> None:
        """Stop fetching, let in-flight messages finish (up to `timeout_s`), then unsubscribe."""
        self._stopping.set()
        if self._loop_task is not None:
            await asyncio.wait({self._loop_task}, timeout=self.fetch_timeout_s + 2)
            await cancel_and_wait([self._loop_task])
        if self._in_flight:
            _, pending = await asyncio.wait(set(self._in_flight), timeout=timeout_s)
            # Unacked: the server redelivers them to another replica.
            await cancel_and_wait(pending)
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()

    async def status(self) -> ConsumerStatus:
        assert self._sub is not None, "consumer not started"
        info = await self._sub.consumer_info()
        status = ConsumerStatus(
            stream=self.spec.stream,
            durable=self.spec.durable,
            pending=info.num_pending or 0,
            ack_pending=info.num_ack_pending or 0,
            redelivered=info.num_redelivered or 0,
        )
        metrics = self.bus.metrics
        if metrics is not None:
            metrics.consumer_lag.labels(*self._labels).set(status.pending)
            metrics.consumer_ack_pending.labels(*self._labels).set(status.ack_pending)
        return status

    async def _fetch_loop(self) -> None:
        assert self._sub is not None
        while not self._stopping.is_set():
            # Fetch only what free slots can start now: a message never waits in memory, unacked,
            # for a slot (a long handler would let it be redelivered to another replica meanwhile).
            await self._slots.acquire()
            wanted = 1
            while wanted < self.batch and not self._slots.locked():
                await self._slots.acquire()
                wanted += 1
            msgs: list[Msg] = []
            try:
                msgs = await self._sub.fetch(wanted, timeout=self.fetch_timeout_s)
            except (TimeoutError, nats.errors.TimeoutError):
                pass
            except (nats.errors.ConnectionClosedError, nats.errors.ConnectionDrainingError):
                return
            except Exception:
                log.exception("fetch from %s failed; retrying", self.spec.durable)
                await asyncio.sleep(1.0)
            finally:
                for _ in range(wanted - len(msgs)):
                    self._slots.release()
            for msg in msgs:
                task = asyncio.create_task(self._process(msg))
                self._in_flight.add(task)
                task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._in_flight.discard(task)
        self._slots.release()

    async def _process(self, msg: Msg) -> None:
        meta = msg.metadata
        deliveries = int(meta.num_delivered or 1)
        sequence = int(meta.sequence.stream) if meta.sequence else None
        metrics = self.bus.metrics
        if deliveries > 1 and metrics is not None:
            metrics.redeliveries.labels(*self._labels).inc()
        if deliveries > self.spec.max_deliver:
            error = RuntimeError(
                f"delivered {deliveries} times without being acknowledged (max {self.spec.max_deliver})"
            )
            await self._give_up(msg, error, deliveries, sequence)
            return
        try:
            envelope, body = codec.decode(msg.data, self.event_type)
        except codec.DecodeError as exc:
            await self._give_up(msg, exc, deliveries, sequence)
            return
        keep_alive = asyncio.create_task(self._keep_alive(msg))
        try:
            with correlation(envelope.correlation_id):
                await self.handler(body, envelope)
        except Exception as exc:
            keep_alive.cancel()
            with correlation(envelope.correlation_id):
                log.warning(
                    "handler failed on %s (delivery %d of %d): %s",
                    msg.subject,
                    deliveries,
                    self.spec.max_deliver,
                    exc,
                    exc_info=True,
                )
            if deliveries >= self.spec.max_deliver:
                await self._give_up(msg, exc, deliveries, sequence)
            else:
                await self._settle(
                    msg.nak(delay=redelivery_delay(self.spec, deliveries)), "retried"
                )
            return
        keep_alive.cancel()
        await self._settle(msg.ack(), "acked")

    async def _keep_alive(self, msg: Msg) -> None:
        """Tell the server a long handler is still working, so it does not redeliver."""
        interval = max(self.spec.ack_wait_s / 2, 0.1)
        while True:
            await asyncio.sleep(interval)
            with contextlib.suppress(Exception):
                await msg.in_progress()

    async def _give_up(
        self, msg: Msg, error: BaseException, deliveries: int, sequence: int | None
    ) -> None:
        stored = await self.bus.dead_letter(
            msg.subject,
            msg.data,
            msg.headers,
            error,
            stream=self.spec.stream,
            consumer=self.spec.durable,
            stream_sequence=sequence,
            deliveries=deliveries,
        )
        if stored:
            await self._settle(msg.term(), "dead_lettered")
        else:  # keep it in the stream rather than lose it
            await self._settle(msg.nak(delay=redelivery_delay(self.spec, deliveries)), "retried")

    async def _settle(self, action: Awaitable[None], outcome: str) -> None:
        try:
            await action
        except Exception:
            log.exception("could not %s a message on %s", outcome, self.spec.durable)
            return
        if self.bus.metrics is not None:
            self.bus.metrics.messages.labels(*self._labels, outcome).inc()
