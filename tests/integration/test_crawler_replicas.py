"""One per-host rate for every crawler replica: slots claimed from the shared `crawl_rates` bucket,
two replicas crawling one host, and a stopped sync that ends the URLs waiting for their turn."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from contracts import topology
from runtime.bus import Bus
from runtime.topology import ensure_bucket
from services.crawler.adapters.host_slots import SharedSlots
from services.crawler.engine import CrawlEngine
from tests.integration.test_crawler import page
from tests.integration.test_crawler_credentials import Platform, seeds, serving, two_crawlers


@pytest.fixture
async def platform(nats_url: str, data_dir: Path) -> AsyncIterator[Platform]:
    async with two_crawlers(nats_url, data_dir) as running:
        yield running


# Server-side times of requests include the wake-up and the loopback round trip of each.
JITTER_S = 0.12


def _site(pages: dict[str, str], starts: list[tuple[float, str]]) -> web.Application:
    async def handle(request: web.Request) -> web.Response:
        if request.path == "/robots.txt":
            return web.Response(status=404)
        starts.append((time.monotonic(), request.path))
        return web.Response(text=pages[request.path], content_type="text/html")

    app = web.Application()
    app.router.add_get("/{tail:.*}", handle)
    return app


def _engines_fetching(monkeypatch: pytest.MonkeyPatch) -> set[int]:
    """The replicas (engines) that fetch a page from now on."""
    engines: set[int] = set()
    original = CrawlEngine._polite_get

    async def polite_get(self: CrawlEngine, *args: Any, **kwargs: Any) -> Any:
        engines.add(id(self))
        return await original(self, *args, **kwargs)

    monkeypatch.setattr(CrawlEngine, "_polite_get", polite_get)
    return engines


async def test_slots_claimed_by_two_replicas_are_distinct_and_spaced(
    nats_url: str, unique: str
) -> None:
    bus = await Bus.connect(nats_url, source="rates")
    kv = await ensure_bucket(bus.js, topology.CRAWL_RATES)
    now = 1000.0
    a, b = SharedSlots(kv, clock=lambda: now), SharedSlots(kv, clock=lambda: now)
    claims = [s.claim(f"s{unique}", "example.com:443", 0.5) for s in (a, b) for _ in range(10)]
    starts = sorted(await asyncio.gather(*claims))
    assert starts == [1000.0 + 0.5 * i for i in range(20)]
    # Another host, or another sync, has a schedule of its own.
    assert await a.claim(f"s{unique}", "example.org:443", 0.5) == 1000.0
    assert await b.claim(f"t{unique}", "example.com:443", 0.5) == 1000.0
    # A lone replica writes once per claim: its last write's revision is still the latest.
    writes: list[str] = []
    reads: list[str] = []
    update, get = kv.update, kv.get

    async def counted_update(key: str, *args: Any, **kwargs: Any) -> int:
        writes.append(key)
        return await update(key, *args, **kwargs)

    async def counted_get(key: str, *args: Any, **kwargs: Any) -> Any:
        reads.append(key)
        return await get(key, *args, **kwargs)

    kv.update, kv.get = counted_update, counted_get  # type: ignore[method-assign]
    for i in range(5):
        assert await a.claim(f"s{unique}", "example.org:443", 0.5) == 1000.5 + 0.5 * i
    assert len(writes) == 5 and reads == []
    # The other replica's next claim finds the key moved on, reads it once, and queues behind.
    assert await b.claim(f"s{unique}", "example.org:443", 0.5) == 1003.0
    assert len(reads) == 1
    a.forget(f"s{unique}")
    b.forget(f"s{unique}")
    await bus.close()


async def test_two_replicas_keep_one_rate_for_a_host(
    platform: Platform, unique: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    engines = _engines_fetching(monkeypatch)
    starts: list[tuple[float, str]] = []
    links = [f"/p/{i}.html" for i in range(11)]
    pages = {
        "/": page("Owls", "An index of owl pages.", links),
        **{
            link: page(f"Owl {i}", f"Owl number {i} hoots at night.")
            for i, link in enumerate(links)
        },
    }
    async with serving(_site(pages, starts)) as url:
        index_id = await platform.index(f"rates-{unique}")
        # 60 a minute: one start a second, for both replicas together.
        source_id = await platform.source(
            index_id, "owls", seeds(url, MaxUrlsPerMinuteCrawlRate=60)
        )
        job = await platform.sync(index_id, source_id)
    assert job["Status"] == "SUCCEEDED" and job["TrellisMetrics"]["added"] == 12, job
    assert len(engines) == 2  # both replicas fetched pages of the host
    times = [t for t, _ in starts]
    assert len(times) == 12
    gaps = [b - a for a, b in pairwise(times)]
    # Each replica alone at 60 a minute would let the two start as close as they like.
    assert min(gaps) >= 1.0 - JITTER_S, gaps
    assert times[-1] - times[0] >= 11.0 - JITTER_S
    await platform.drop(index_id)


async def test_stopping_a_sync_ends_the_urls_waiting_for_their_slot(
    platform: Platform, unique: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    in_flight: list[str] = []
    original = CrawlEngine._process

    async def process(self: CrawlEngine, item: Any, *args: Any) -> Any:
        in_flight.append(item.url)
        try:
            return await original(self, item, *args)
        finally:
            in_flight.remove(item.url)

    monkeypatch.setattr(CrawlEngine, "_process", process)
    starts: list[tuple[float, str]] = []
    shelves = [f"/shelf/{i}.html" for i in range(4)]
    pages = {path: page(f"Shelf {path}", f"Books on {path}.") for path in ["/", *shelves]}
    async with serving(_site(pages, starts)) as url:
        index_id = await platform.index(f"stop-{unique}")
        # One a minute: after the first fetch the others wait a minute or more for their slots.
        configuration = seeds(
            url,
            MaxUrlsPerMinuteCrawlRate=1,
            Urls={"SeedUrlConfiguration": {"SeedUrls": [f"{url}/", *(url + s for s in shelves)]}},
        )
        source_id = await platform.source(index_id, "shelves", configuration)
        await platform.call("start_data_source_sync_job", Id=source_id, IndexId=index_id)
        await _until(lambda: len(starts) == 1 and len(in_flight) >= 3, 20.0)
        await platform.call("stop_data_source_sync_job", Id=source_id, IndexId=index_id)
        stopped = time.monotonic()
        await _until(lambda: not in_flight, 10.0)
        assert time.monotonic() - stopped < 5.0
        assert len(starts) == 1  # nothing was fetched after the stop
        listed = await platform.call("list_data_source_sync_jobs", Id=source_id, IndexId=index_id)
        assert listed["History"][0]["Status"] == "STOPPED"
    await platform.drop(index_id)


async def _until(condition: Callable[[], bool], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)
