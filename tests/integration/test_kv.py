"""KV-backed resources on a real NATS: revisions, conflicts, idempotent creates, listing."""

from __future__ import annotations

import asyncio

import pytest
from pydantic import BaseModel

from contracts.topology import BucketSpec
from runtime.bus import Bus
from runtime.errors import Conflict, NotFound, ValidationFailed
from runtime.kv import ResourceStore, scan
from runtime.topology import ensure_bucket


class Widget(BaseModel):
    name: str
    size: int = 0


async def store(bus: Bus, unique: str, prefix: str = "") -> ResourceStore[Widget]:
    kv = await ensure_bucket(
        bus.js, BucketSpec(name=f"test_{unique}", description="test", history=3)
    )
    return ResourceStore(kv, Widget, "widget", prefix=prefix)


async def test_update_with_a_stale_revision_is_a_conflict(bus: Bus, unique: str) -> None:
    widgets = await store(bus, unique)
    created = await widgets.create("w1", Widget(name="a"))
    updated = await widgets.update("w1", Widget(name="b"), expected_revision=created.revision)
    assert updated.revision > created.revision
    with pytest.raises(Conflict) as caught:
        await widgets.update("w1", Widget(name="c"), expected_revision=created.revision)
    assert caught.value.details["actual_revision"] == updated.revision
    assert (await widgets.get("w1")).value.name == "b"


async def test_concurrent_mutations_all_apply(bus: Bus, unique: str) -> None:
    widgets = await store(bus, unique)
    await widgets.create("counter", Widget(name="c"))

    async def bump() -> None:
        await widgets.mutate(
            "counter", lambda w: w.model_copy(update={"size": w.size + 1}), attempts=20
        )

    await asyncio.gather(*(bump() for _ in range(8)))
    assert (await widgets.get("counter")).value.size == 8


async def test_create_twice_conflicts_unless_the_client_token_matches(
    bus: Bus, unique: str
) -> None:
    widgets = await store(bus, unique)
    first = await widgets.create("w", Widget(name="a"), client_token="tok-1")
    again = await widgets.create("w", Widget(name="a"), client_token="tok-1")
    assert again.revision == first.revision
    with pytest.raises(Conflict):
        await widgets.create("w", Widget(name="a"), client_token="tok-2")
    with pytest.raises(Conflict):
        await widgets.create("w", Widget(name="a"))


async def test_delete_list_and_missing(bus: Bus, unique: str) -> None:
    widgets = await store(bus, unique, prefix="w.")
    others = await store(bus, unique, prefix="x.")
    for name in ("b", "a", "c"):
        await widgets.create(name, Widget(name=name))
    await others.create("z", Widget(name="z"))
    current = await widgets.get("b")
    with pytest.raises(Conflict):
        await widgets.delete("b", expected_revision=current.revision + 100)
    await widgets.delete("b", expected_revision=current.revision)
    assert [v.value.name for v in await widgets.list()] == ["a", "c"]
    assert [v.value.name for v in await others.list()] == ["z"]
    with pytest.raises(NotFound):
        await widgets.get("b")
    # A deleted id can be created again.
    await widgets.create("b", Widget(name="b2"))
    assert (await widgets.get("b")).value.name == "b2"


async def test_invalid_ids_are_refused(bus: Bus, unique: str) -> None:
    widgets = await store(bus, unique)
    for bad in ("", "a b", "../etc", "a*", ".x", "x" * 300):
        with pytest.raises(ValidationFailed):
            await widgets.get(bad)


async def test_empty_store_lists_nothing(bus: Bus, unique: str) -> None:
    assert await (await store(bus, unique)).list() == []


async def test_scan_reads_every_live_key_at_its_latest_revision(bus: Bus, unique: str) -> None:
    kv = await ensure_bucket(
        bus.js, BucketSpec(name=f"test_{unique}", description="test", history=3)
    )
    for i in range(600):  # more than one fetch batch
        await kv.put(f"src.k{i:04d}", b"v1")
    await kv.put("src.k0001", b"v2")
    await kv.delete("src.k0002")
    await kv.put("other.k", b"x")
    # Repeated scans right after the writes: each must see all of them, never end early.
    for _ in range(5):
        entries = await scan(kv, "src.>")
        assert len(entries) == 599
        by_key = {e.key: e for e in entries}
        assert by_key["src.k0001"].value == b"v2" and "src.k0002" not in by_key
        assert "other.k" not in by_key
    assert await scan(kv, "none.>") == []
    # The scans clean up their consumers.
    info = await bus.js.stream_info(f"KV_test_{unique}")
    assert info.state.consumer_count == 0
