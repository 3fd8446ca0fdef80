"""Resources kept in a JetStream KV bucket, with revisions for optimistic concurrency."""

from __future__ import annotations

import asyncio
import contextlib
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

import nats.errors
import nats.js.errors
from nats.js import api
from nats.js.kv import KV_DEL, KV_OP, KV_PURGE, KeyValue
from pydantic import BaseModel, ValidationError

from runtime.errors import Conflict, NotFound, ValidationFailed

T = TypeVar("T", bound=BaseModel)

_KEY = re.compile(r"^[-/_=.a-zA-Z0-9]{1,255}$")
_WRONG_LAST_SEQUENCE = (10071, 10164)
SCAN_BATCH = 256
SCAN_TIMEOUT_S = 30.0
SCAN_WAIT_S = 0.5


@dataclass(frozen=True)
class Entry:
    """One live key of a bucket, as a scan read it."""

    key: str
    value: bytes
    revision: int


async def scan(kv: KeyValue, keys: str = ">", *, timeout_s: float = SCAN_TIMEOUT_S) -> list[Entry]:
    """Every live key matching `keys` (a subject filter), each at its latest revision.

    nats-py's watcher signals the end of the initial values from a consumer-info call that
    races the messages already pushed, and can end a listing early or empty. A pull consumer
    delivers nothing until asked, so its pending count is an exact snapshot to read up to.
    """
    js = kv._js  # the bucket's own JetStream context, stream and subject prefix
    stream: str = kv._stream
    prefix: str = kv._pre
    config = api.ConsumerConfig(
        deliver_policy=api.DeliverPolicy.LAST_PER_SUBJECT,
        ack_policy=api.AckPolicy.NONE,
        inactive_threshold=max(timeout_s, 5.0),
        mem_storage=True,
    )
    subscription = await js.pull_subscribe(f"{prefix}{keys}", stream=stream, config=config)
    found: dict[str, Entry] = {}
    consumer: str | None = None
    try:
        info = await subscription.consumer_info()
        consumer = info.name
        remaining = int(info.num_pending or 0)
        deadline = time.monotonic() + timeout_s
        while remaining > 0:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"scanning {stream} took more than {timeout_s:.0f} s")
            try:
                messages = await subscription.fetch(
                    min(remaining, SCAN_BATCH), timeout=min(left, SCAN_WAIT_S)
                )
            except nats.errors.TimeoutError:
                # What was pending may have gone since (expired, or replaced in a one-revision
                # bucket): ask the consumer what is still to come.
                remaining = int((await subscription.consumer_info()).num_pending or 0)
                continue
            for message in messages:
                key = message.subject[len(prefix) :]
                operation = (message.headers or {}).get(KV_OP)
                if operation in (KV_DEL, KV_PURGE):
                    found.pop(key, None)
                else:
                    revision = int(message.metadata.sequence.stream)
                    found[key] = Entry(key, message.data, revision)
                remaining = int(message.metadata.num_pending)
    finally:
        await subscription.unsubscribe()
        if consumer is not None:
            with contextlib.suppress(Exception):  # its inactive threshold removes it anyway
                await js._jsm.delete_consumer(stream, consumer)
    return [found[k] for k in sorted(found)]


@dataclass(frozen=True)
class Versioned(Generic[T]):
    value: T
    revision: int
    key: str = ""


class _Record(BaseModel, Generic[T]):
    """Stored form: the resource plus the client token of the command that created it."""

    resource: T
    client_token: str | None = None


class ResourceStore(Generic[T]):
    """Typed CRUD over one KV bucket. Every write names the revision it read, or fails."""

    def __init__(self, kv: KeyValue, model: type[T], kind: str, *, prefix: str = "") -> None:
        """`prefix` (e.g. `api.`) lets several resource kinds share one bucket."""
        self.kv = kv
        self.model = model
        self.kind = kind
        self.prefix = prefix
        self._record = _Record[model]  # type: ignore[valid-type]

    def _check_key(self, key: str) -> str:
        if not _KEY.match(key) or key.startswith(".") or key.endswith(".") or ".." in key:
            raise ValidationFailed(f"invalid {self.kind} id {key!r}")
        return self.prefix + key

    def _encode(self, value: T, client_token: str | None) -> bytes:
        return self._record(resource=value, client_token=client_token).model_dump_json().encode()

    def _decode(self, raw: bytes | None) -> _Record[T]:
        try:
            return self._record.model_validate_json(raw or b"")
        except ValidationError as exc:
            raise ValidationFailed(f"stored {self.kind} is unreadable: {exc}") from exc

    async def get(self, key: str) -> Versioned[T]:
        try:
            entry = await self.kv.get(self._check_key(key))
        except nats.js.errors.KeyNotFoundError:
            raise NotFound(f"{self.kind} {key!r} not found", kind=self.kind, id=key) from None
        return Versioned(self._decode(entry.value).resource, int(entry.revision or 0), key)

    async def create(self, key: str, value: T, *, client_token: str | None = None) -> Versioned[T]:
        """Store a new resource. Retrying with the same client token returns the stored one."""
        stored_key = self._check_key(key)
        try:
            revision = await self.kv.create(stored_key, self._encode(value, client_token))
        except nats.js.errors.KeyWrongLastSequenceError:
            entry = await self.kv.get(stored_key)
            record = self._decode(entry.value)
            if client_token is not None and record.client_token == client_token:
                return Versioned(record.resource, int(entry.revision or 0), key)
            raise Conflict(f"{self.kind} {key!r} already exists", kind=self.kind, id=key) from None
        return Versioned(value, int(revision), key)

    async def update(self, key: str, value: T, *, expected_revision: int) -> Versioned[T]:
        """Replace a resource only if it is still at `expected_revision`."""
        current = await self.get(key)
        if current.revision != expected_revision:
            raise self._conflict(key, expected_revision, current.revision)
        try:
            revision = await self.kv.update(
                self._check_key(key), self._encode(value, None), last=expected_revision
            )
        except nats.js.errors.KeyWrongLastSequenceError:
            latest = await self.get(key)
            raise self._conflict(key, expected_revision, latest.revision) from None
        return Versioned(value, int(revision), key)

    async def put(self, key: str, value: T) -> Versioned[T]:
        """Unconditional write, for values with a single writer (settings, heartbeats)."""
        revision = await self.kv.put(self._check_key(key), self._encode(value, None))
        return Versioned(value, int(revision), key)

    async def mutate(
        self, key: str, change: Callable[[T], T], *, attempts: int = 5
    ) -> Versioned[T]:
        """Read, apply `change`, write back at the read revision; retry on concurrent writes."""
        for attempt in range(attempts):
            current = await self.get(key)
            try:
                return await self.update(
                    key, change(current.value), expected_revision=current.revision
                )
            except Conflict:
                if attempt == attempts - 1:
                    raise
                # Spread the retries: writers that collided would otherwise collide again.
                await asyncio.sleep(random.uniform(0, min(0.001 * 2**attempt, 0.05)))  # noqa: S311
        raise AssertionError("unreachable")

    async def delete(self, key: str, *, expected_revision: int | None = None) -> None:
        current = await self.get(key)
        if expected_revision is not None and current.revision != expected_revision:
            raise self._conflict(key, expected_revision, current.revision)
        try:
            await self.kv.delete(self._check_key(key), last=expected_revision or current.revision)
        except nats.js.errors.APIError as exc:
            if exc.err_code in _WRONG_LAST_SEQUENCE:
                latest = await self.get(key)
                raise self._conflict(
                    key, expected_revision or current.revision, latest.revision
                ) from None
            raise

    async def list(self) -> list[Versioned[T]]:
        """Every live resource, read in one pass over the bucket (no request per key)."""
        found = []
        for entry in await scan(self.kv, f"{self.prefix}>" if self.prefix else ">"):
            if entry.value:
                key = entry.key.removeprefix(self.prefix)
                found.append(Versioned(self._decode(entry.value).resource, entry.revision, key))
        return found

    def _conflict(self, key: str, expected: int, actual: int) -> Conflict:
        return Conflict(
            f"{self.kind} {key!r} changed: expected revision {expected}, found {actual}",
            kind=self.kind,
            id=key,
            expected_revision=expected,
            actual_revision=actual,
        )
