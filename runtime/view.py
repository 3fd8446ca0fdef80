"""Materialised views: replay a stream from a sequence, in order, into local state (no acks)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from contracts.topology import StreamSpec
from runtime.bus import Bus
from runtime.tasks import cancel_and_wait

log = logging.getLogger("trellis.view")
Apply = Callable[[Msg, int], Awaitable[None]]


class StreamView:
    """Feeds every message of `stream` after `start_after` to `apply(msg, sequence)`, in order.

    For state a replica rebuilds from the log (a search index, a store of events): the state
    remembers the last sequence it made durable, and the view resumes after it. An ordered
    consumer is ephemeral and unacked, so replicas never compete for messages. `apply` must not
    raise for bad data (dead-letter it); if it does, the message is logged and skipped.
    """

    def __init__(self, bus: Bus, stream: StreamSpec, subject: str, apply: Apply) -> None:
        self.bus = bus
        self.stream = stream
        self.subject = subject
        self.apply = apply
        self.applied = 0  # last stream sequence handed to apply
        self._caught_up = asyncio.Condition()
        self._queue: asyncio.Queue[Msg] = asyncio.Queue(maxsize=10_000)
        self._task: asyncio.Task[None] | None = None
        self._sub: object | None = None

    async def start(self, start_after: int) -> None:
        self.applied = start_after
        config = ConsumerConfig(
            ack_policy=AckPolicy.NONE,
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
            opt_start_seq=start_after + 1,
        )
        self._sub = await self.bus.js.subscribe(
            self.subject,
            stream=self.stream.name,
            ordered_consumer=True,
            config=config,
            cb=self._queue.put,
            idle_heartbeat=5.0,
        )
        self._task = asyncio.create_task(self._run(), name=f"view:{self.stream.name}")

    async def _run(self) -> None:
        while True:
            msg = await self._queue.get()
            sequence = int(msg.metadata.sequence.stream)
            if sequence <= self.applied:
                continue
            try:
                await self.apply(msg, sequence)
            except Exception:
                log.exception("could not apply %s #%d; skipped", msg.subject, sequence)
            self.applied = sequence
            async with self._caught_up:
                self._caught_up.notify_all()

    async def wait_for(self, sequence: int, timeout_s: float = 5.0) -> bool:
        """Read-your-writes: wait until this replica applied `sequence`."""

        async def reached() -> None:
            async with self._caught_up:
                await self._caught_up.wait_for(lambda: self.applied >= sequence)

        try:
            await asyncio.wait_for(reached(), timeout=timeout_s)
        except TimeoutError:
            return False
        return True

    async def stop(self) -> None:
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()  # type: ignore[attr-defined]
        if self._task is not None:
            await cancel_and_wait([self._task])
