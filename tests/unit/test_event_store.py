"""The Parquet event store: overwrites, labels, deletes, flush, restart and compaction."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from contracts.fraud import EventDeleted, EventLabelUpdated, EventSent
from services.fraud.adapters.event_store import EventStore

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def sent(event_id: str, minutes: int, label: str | None = None, **variables: str) -> EventSent:
    return EventSent(
        event_type="reg",
        event_id=event_id,
        event_timestamp=T0 + timedelta(minutes=minutes),
        entity_type="customer",
        entity_id=f"c-{event_id}",
        variables=variables,
        label=label,
    )


def test_same_id_and_timestamp_overwrites_including_new_variables(tmp_path: Path) -> None:
    store = EventStore(tmp_path)
    store.apply_sent(1, sent("e1", 0, "legit", ip="1.1.1.1"))
    store.apply_sent(2, sent("e1", 0, "fraud", ip="2.2.2.2", email="a@b.c"))
    store.apply_sent(3, sent("e1", 5, ip="3.3.3.3"))  # same id, other time: a second event
    events = store.events("reg")
    assert events.height == 2
    first = events.row(0, named=True)
    assert (
        first["ip"] == "2.2.2.2" and first["email"] == "a@b.c" and first["EVENT_LABEL"] == "fraud"
    )


def test_labels_and_deletes_follow_the_log_order(tmp_path: Path) -> None:
    store = EventStore(tmp_path)
    store.apply_sent(1, sent("e1", 0, ip="1"))
    store.apply_label(
        2, EventLabelUpdated(event_type="reg", event_id="e1", label="fraud", label_timestamp=T0)
    )
    assert store.get("reg", "e1")["EVENT_LABEL"] == "fraud"  # type: ignore[index]
    store.apply_deleted(3, EventDeleted(event_type="reg", event_id="e1"))
    assert store.get("reg", "e1") is None
    store.apply_sent(4, sent("e1", 0, ip="again"))  # sent again after the delete
    assert store.get("reg", "e1")["ip"] == "again"  # type: ignore[index]


def test_flush_restart_and_compaction_keep_the_same_view(tmp_path: Path) -> None:
    store = EventStore(tmp_path)
    for i in range(10):
        store.apply_sent(i + 1, sent(f"e{i}", i, "legit" if i % 2 else "fraud", amount=str(i)))
    store.flush()
    store.apply_label(
        11, EventLabelUpdated(event_type="reg", event_id="e0", label="legit", label_timestamp=T0)
    )
    store.apply_deleted(12, EventDeleted(event_type="reg", event_id="e9"))
    store.flush()
    before = store.events("reg")
    reopened = EventStore(tmp_path)
    assert reopened.flushed_seq == 12
    assert reopened.events("reg").equals(before)
    reopened.compact("reg")
    assert len(list((tmp_path / "reg").glob("part-*.parquet"))) == 1
    assert reopened.events("reg").equals(before)
    assert before.height == 9 and reopened.get("reg", "e0")["EVENT_LABEL"] == "legit"  # type: ignore[index]
    stats = reopened.statistics("reg")
    assert stats["numberOfEvents"] == 9 and stats["leastRecentEvent"] == "2024-01-01T00:00:00Z"


def test_purge_drops_everything_of_the_type(tmp_path: Path) -> None:
    store = EventStore(tmp_path)
    store.apply_sent(1, sent("e1", 0, ip="1"))
    store.flush()
    store.apply_purged(2, "reg")
    assert store.events("reg").height == 0 and not store.has_events("reg")


def test_reads_during_flushes_and_compactions_never_miss_an_event(tmp_path: Path) -> None:
    import threading

    store = EventStore(tmp_path)
    stop = threading.Event()

    def churn() -> None:
        seq = 3000
        while not stop.is_set():
            seq += 1
            store.apply_sent(seq, sent(f"x{seq}", 0, ip="1"))
            store.flush()
            if seq % 5 == 0:
                store.compact("reg")

    for i in range(20):
        store.apply_sent(i + 1, sent(f"e{i}", i, ip="1"))
    worker = threading.Thread(target=churn)
    worker.start()
    try:
        for _ in range(60):
            ids = set(store.events("reg")["EVENT_ID"].to_list())
            assert {f"e{i}" for i in range(20)} <= ids
    finally:
        stop.set()
        worker.join()


def test_timestamps_read_back_exactly_from_the_tail_and_from_parts(tmp_path: Path) -> None:
    """The tail keeps timestamps as epoch microseconds; reads give the same instants in UTC."""
    from datetime import timezone

    paris = timezone(timedelta(hours=1))
    instants = [
        datetime(2024, 3, 1, 12, 30, 15, 123456, tzinfo=paris),
        datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        datetime(2024, 3, 1, 11, 30, 15, 123457),  # naive: taken as UTC
    ]
    store = EventStore(tmp_path)
    for i, when in enumerate(instants):
        event = sent(f"e{i}", 0).model_copy(
            update={"event_timestamp": when, "label": "fraud", "label_timestamp": when}
        )
        store.apply_sent(i + 1, event)
    store.apply_label(
        9,
        EventLabelUpdated(
            event_type="reg", event_id="e0", label="legit", label_timestamp=instants[1]
        ),
    )
    expected = {
        "e0": (instants[0].astimezone(UTC), instants[1]),
        "e1": (instants[1], instants[1]),
        "e2": (instants[2].replace(tzinfo=UTC), instants[2].replace(tzinfo=UTC)),
    }

    def read() -> dict[str, tuple[datetime, datetime]]:
        rows = store.events("reg").iter_rows(named=True)
        return {r["EVENT_ID"]: (r["EVENT_TIMESTAMP"], r["LABEL_TIMESTAMP"]) for r in rows}

    assert read() == expected
    store.flush()
    assert read() == expected
    found = store.get("reg", "e0")
    assert found is not None and found["EVENT_TIMESTAMP"] == instants[0]


def test_maintenance_merges_parts_without_changing_what_is_read(tmp_path: Path) -> None:
    store = EventStore(tmp_path)
    directory = tmp_path / "reg"

    def parts() -> int:
        return len(list(directory.glob("part-*.parquet")))

    for i in range(3000):  # a big first part, then many small flushes
        store.apply_sent(i + 1, sent(f"base{i}", i, "legit", ip=f"10.{i}.{i * 7}.{i * 13}"))
    store.flush()
    seq = 3000
    for i in range(6):
        seq += 1
        store.apply_sent(seq, sent(f"new{i}", 3000 + i, ip="1.1.1.1"))
        store.flush()
    seq += 1
    store.apply_deleted(seq, EventDeleted(event_type="reg", event_id="base0"))
    store.flush()
    seq += 1
    store.apply_label(
        seq,
        EventLabelUpdated(event_type="reg", event_id="base1", label="fraud", label_timestamp=T0),
    )
    store.flush()
    assert parts() == 9
    before = store.events("reg")
    assert store.maintain(max_parts=16) == [] and parts() == 9

    # The small parts are merged as log rows: the delete and the label still reach base0/1.
    assert store.maintain(max_parts=4) == ["reg"] and parts() == 2
    after = store.events("reg")
    assert after.equals(before) and "base0" not in after["EVENT_ID"].to_list()
    labels = dict(zip(after["EVENT_ID"], after["EVENT_LABEL"], strict=True))
    assert labels["base1"] == "fraud" and labels["base2"] == "legit"

    # Once the recent parts weigh half the oldest, everything is resolved into one part.
    for i in range(3000):
        seq += 1
        store.apply_sent(seq, sent(f"more{i}", 4000 + i, ip=f"2.{i}.{i * 3}.{i * 11}"))
        if i % 500 == 499:
            store.flush()
    expected = store.events("reg")
    assert store.maintain(max_parts=4) == ["reg"] and parts() == 1
    assert store.events("reg").equals(expected) and expected.height == 2999 + 6 + 3000
    reopened = EventStore(tmp_path)
    assert reopened.events("reg").equals(expected)
