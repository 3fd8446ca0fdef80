"""EventLog's group commit alone: one publish in flight, failures confined to their message."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest

from contracts import subjects
from contracts.fraud import EventSent, EventsSent
from services.fraud.adapters.event_log import EventLog


class SlowStream:
    """Stands in for Bus.emit: acks after a pause, fails messages holding a chosen event."""

    def __init__(self) -> None:
        self.written: list[tuple[str, list[str]]] = []
        self.in_flight = 0
        self.most_in_flight = 0

    async def emit(self, subject: str, message: Any, **_: Any) -> int:
        ids = (
            [e.event_id for e in message.events]
            if isinstance(message, EventsSent)
            else [message.event_id]
        )
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        await asyncio.sleep(0.01)
        self.in_flight -= 1
        if "bad" in ids:
            raise RuntimeError("stream unavailable")
        self.written.append((subject, ids))
        return len(self.written)


def sent(event_id: str) -> EventSent:
    return EventSent(
        event_type="t",
        event_id=event_id,
        event_timestamp=datetime(2025, 1, 1, tzinfo=UTC),
        entity_type="customer",
        entity_id="c",
        variables={},
    )


def event_log(stream: SlowStream, max_events: int = 3) -> EventLog:
    bus: Any = stream  # only `emit` is used
    return EventLog(bus, max_events=max_events)


async def test_events_arriving_during_a_publish_go_out_together_next() -> None:
    stream = SlowStream()
    log = event_log(stream)
    first = asyncio.ensure_future(log.append(sent("a")))
    await asyncio.sleep(0.002)  # "a" is being published alone
    rest = [asyncio.ensure_future(log.append(sent(i))) for i in "bcdefg"]
    assert await first == 1
    assert await asyncio.gather(*rest) == [2, 2, 2, 3, 3, 3]
    assert stream.written == [
        (subjects.FRAUD_EVENT_SENT, ["a"]),
        (subjects.FRAUD_EVENTS_SENT, ["b", "c", "d"]),
        (subjects.FRAUD_EVENTS_SENT, ["e", "f", "g"]),
    ]
    assert stream.most_in_flight == 1 and log.messages == 3


async def test_a_failed_message_fails_its_events_and_the_next_one_goes_on() -> None:
    stream = SlowStream()
    log = event_log(stream, max_events=2)
    results = await asyncio.gather(
        *(log.append(sent(i)) for i in ("x", "bad", "y", "z")), return_exceptions=True
    )
    assert isinstance(results[0], RuntimeError) and isinstance(results[1], RuntimeError)
    assert results[2:] == [1, 1] and stream.written == [(subjects.FRAUD_EVENTS_SENT, ["y", "z"])]
    assert await log.append(sent("later")) == 2


async def test_a_cancelled_caller_leaves_the_others_their_answer() -> None:
    stream = SlowStream()
    log = event_log(stream)
    calls = [asyncio.ensure_future(log.append(sent(i))) for i in "abc"]
    await asyncio.sleep(0)
    calls[1].cancel()
    assert await calls[0] == 1 and await calls[2] == 1
    with pytest.raises(asyncio.CancelledError):
        await calls[1]
    assert stream.written == [(subjects.FRAUD_EVENTS_SENT, ["a", "b", "c"])]


async def test_stopping_the_log_mid_publish_leaves_no_caller_waiting() -> None:
    stream = SlowStream()
    log = event_log(stream, max_events=2)
    calls = [asyncio.ensure_future(log.append(sent(i))) for i in "abcd"]
    await asyncio.sleep(0.002)  # "a" and "b" are being published, "c" and "d" wait
    assert log._writer is not None
    log._writer.cancel()
    results = await asyncio.gather(*calls, return_exceptions=True)
    assert all(isinstance(r, RuntimeError) and "stopped" in str(r) for r in results)
