"""Per-host fetch start slots shared by every crawler replica: one KV key per sync and host, claimed
by compare-and-set."""

from __future__ import annotations

import asyncio
import hashlib
import random
import time
from collections.abc import Callable

import nats.js.errors
from nats.js.kv import KeyValue

from services.crawler.domain.politeness import claim_slot

ATTEMPTS = 200


def slot_key(sync_id: str, host: str) -> str:
    # Hosts carry ":" (host:port), which KV keys may not hold.
    return f"{sync_id}.{hashlib.sha256(host.encode()).hexdigest()[:32]}"


def _decode(raw: bytes | None) -> float | None:
    try:
        return float((raw or b"").decode())
    except ValueError:
        return None  # unreadable: the schedule starts again


class SharedSlots:
    """Claims fetch start times per (sync, host) from a KV bucket that every replica shares.

    The value is the next allowed start in wall-clock seconds, so replicas on several machines
    need synchronised clocks (NTP): a skew of s seconds can bring two starts up to s seconds
    closer than the interval (or hold them further apart). Claims of one replica queue on a lock
    per key and write at the revision the last one left, so a lone replica pays one KV write per
    fetch; a write that another replica overtook re-reads the key and tries again.
    """

    def __init__(self, kv: KeyValue, *, clock: Callable[[], float] = time.time) -> None:
        self.kv = kv
        self.clock = clock
        self._known: dict[str, tuple[float | None, int]] = {}  # key -> next start, revision
        self._locks: dict[str, asyncio.Lock] = {}

    async def claim(self, sync_id: str, host: str, interval_s: float) -> float:
        """The wall-clock time at which this replica may start its next fetch of `host`."""
        key = slot_key(sync_id, host)
        async with self._locks.setdefault(key, asyncio.Lock()):
            known = self._known.get(key, (None, 0))  # first claim: assume there is no schedule
            for attempt in range(ATTEMPTS):
                next_start, revision = known
                start, following = claim_slot(next_start, self.clock(), interval_s)
                try:
                    written = await self.kv.update(key, repr(following).encode(), last=revision)
                except nats.js.errors.KeyWrongLastSequenceError:
                    # Spread the retries: replicas that collided would otherwise collide again.
                    await asyncio.sleep(random.uniform(0, min(0.001 * 2**attempt, 0.05)))  # noqa: S311
                    known = await self._read(key)
                    continue
                self._known[key] = (following, int(written))
                return start
        raise TimeoutError(f"no fetch slot for {host} after {ATTEMPTS} contended claims")

    async def _read(self, key: str) -> tuple[float | None, int]:
        try:
            entry = await self.kv.get(key)
        except nats.js.errors.KeyDeletedError as exc:
            return None, int(exc.entry.revision or 0) if exc.entry is not None else 0
        except nats.js.errors.KeyNotFoundError:
            return None, 0  # expired, or never written
        return _decode(entry.value), int(entry.revision or 0)

    def forget(self, sync_id: str) -> None:
        """Drop what this replica keeps for a sync that ended (its keys expire with the bucket's TTL)."""
        for key in [k for k in self._known if k.startswith(f"{sync_id}.")]:
            del self._known[key]
        for key in [k for k in self._locks if k.startswith(f"{sync_id}.")]:
            del self._locks[key]
