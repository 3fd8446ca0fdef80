"""Group commit of stored events on a real JetStream stream, and what the event store makes of it."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

from contracts import subjects, topology
from contracts.fraud import EventSent, EventsSent
from runtime import codec
from runtime.bus import Bus
from runtime.topology import ensure_stream
from services.fraud.adapters.event_log import EventLog
from services.fraud.adapters.event_store import EventStore

T0 = datetime(2025, 1, 1, tzinfo=UTC)


def event(event_type: str, event_id: str, ip: str, minutes: int = 0) -> EventSent:
    return EventSent(
        event_type=event_type,
        event_id=event_id,
        event_timestamp=T0 + timedelta(minutes=minutes),
        entity_type="customer",
        entity_id=f"c-{event_id}",
        variables={"ip": ip},
    )


async def read_back(bus: Bus, sequences: set[int]) -> list[tuple[int, str, list[EventSent]]]:
    found = []
    for sequence in sorted(sequences):
        msg = await bus.js.get_msg(topology.FRAUD_EVENTS.name, sequence)
        assert msg.subject is not None and msg.data is not None
        if msg.subject == subjects.FRAUD_EVENTS_SENT:
            events = codec.decode(msg.data, EventsSent)[1].events
        else:
            events = [codec.decode(msg.data, EventSent)[1]]
        found.append((sequence, msg.subject, events))
    return found


async def test_events_sent_together_share_messages_in_their_order(
    bus: Bus, unique: str, tmp_path: Path
) -> None:
    await ensure_stream(bus.js, topology.FRAUD_EVENTS)
    log = EventLog(bus, max_events=4)
    kind = f"log{unique}"
    alone = event(kind, "e0", "10.0.0.0")
    first = await log.append(alone)
    together = [event(kind, f"e{i}", f"10.0.0.{i}", minutes=i) for i in range(1, 10)]
    # The same event id and time again, later in the same burst: the later copy must win.
    together.append(event(kind, "e3", "99.9.9.9", minutes=3))
    sequences = await asyncio.gather(*(log.append(e) for e in together))

    messages = await read_back(bus, {first, *sequences})
    assert messages[0] == (first, subjects.FRAUD_EVENT_SENT, [alone])  # alone: a plain message
    assert [e for _, _, events in messages for e in events] == [alone, *together]
    assert log.messages == len(messages) < 1 + len(together)
    assert all(len(events) <= 4 for _, _, events in messages)
    assert any(subject == subjects.FRAUD_EVENTS_SENT for _, subject, _ in messages)
    for event_, sequence in zip(together, sequences, strict=True):  # each got its message's
        assert any(s == sequence and event_ in events for s, _, events in messages)

    # Applied as the service applies them (one sequence for a message's events), in memory
    # and from Parquet, the later copy of e3 wins.
    store = EventStore(tmp_path)
    for sequence, _, events in messages:
        for sent in events:
            store.apply_sent(sequence, sent)
    for _ in range(2):
        stored = store.events(kind)
        ips = dict(zip(stored["EVENT_ID"], stored["ip"], strict=True))
        assert stored.height == 10 and ips["e3"] == "99.9.9.9" and ips["e4"] == "10.0.0.4"
        store.flush()
