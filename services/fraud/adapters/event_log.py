"""Stored events go to the FRAUD_EVENTS stream in group commits: one message, one ack, many events."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from contracts import subjects
from contracts.fraud import MAX_EVENTS_PER_MESSAGE, EventSent, EventsSent
from runtime.bus import Bus
from runtime.logs import correlation_id_var


@dataclass
class _Pending:
    event: EventSent
    stored: asyncio.Future[int]
    correlation_id: str | None


class EventLog:
    """Appends events to the stream; `append` returns once the stream has acked the event.

    One publish is in flight at a time. Events appended while it waits for its ack go out
    together in the next message (`EventsSent`), as a database's log does a group commit: under
    load a prediction's event costs a share of one publish, one ack and one delivery to every
    replica's view instead of all three, and alone it goes out at once as a plain `EventSent`.
    Either way the caller hears back only when its event is durable.
    """

    def __init__(self, bus: Bus, *, max_events: int = MAX_EVENTS_PER_MESSAGE) -> None:
        self.bus = bus
        self.max_events = max_events
        self._pending: list[_Pending] = []
        self._writer: asyncio.Task[None] | None = None
        self.messages = 0  # stream messages written (statistics, tests)

    async def append(self, event: EventSent) -> int:
        """Store `event`; returns the stream sequence of the message that holds it."""
        stored: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._pending.append(_Pending(event, stored, correlation_id_var.get()))
        if self._writer is None:
            self._writer = asyncio.create_task(self._write(), name="fraud-event-log")
        return await stored

    async def _write(self) -> None:
        batch: list[_Pending] = []
        try:
            await asyncio.sleep(0)  # events appended later in this loop turn join the first one
            while self._pending:
                batch = self._pending[: self.max_events]
                del self._pending[: self.max_events]
                try:
                    sequence = await self._publish(batch)
                except Exception as exc:
                    _settle(batch, exc)
                    continue
                for pending in batch:
                    if not pending.stored.done():  # done: its caller was cancelled
                        pending.stored.set_result(sequence)
        finally:
            self._writer = None
            # Only when cancelled (the service is stopping): nobody may wait forever.
            _settle([*batch, *self._pending], RuntimeError("the event log was stopped"))
            self._pending.clear()

    async def _publish(self, batch: list[_Pending]) -> int:
        self.messages += 1
        if len(batch) == 1:
            only = batch[0]
            return await self.bus.emit(
                subjects.FRAUD_EVENT_SENT, only.event, correlation_id=only.correlation_id
            )
        return await self.bus.emit(
            subjects.FRAUD_EVENTS_SENT, EventsSent(events=[p.event for p in batch])
        )


def _settle(batch: list[_Pending], error: Exception) -> None:
    for pending in batch:
        if not pending.stored.done():
            pending.stored.set_exception(error)
