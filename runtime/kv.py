"""Resources kept in a JetStream KV bucket, with revisions for optimistic concurrency."""

from __future__ import annotations

import asyncio
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import nats.errors
import nats.js.errors
from nats.js.kv import KeyValue
from pydantic import BaseModel, ValidationError

from runtime.errors import Conflict, NotFound, ValidationFailed

T = TypeVar("T", bound=BaseModel)

_KEY = re.compile(r"^[-/_=.a-zA-Z0-9]{1,255}$")
_WRONG_LAST_SEQUENCE = (10071, 10164)
# After the end-of-initial-values marker: how long to wait for one more entry, and in all.
LATE_ENTRIES_S = 0.02
LATE_ENTRIES_MAX_S = 0.2


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
        # A short inactive threshold: the consumer behind the watch goes away soon after, instead
        # of lingering for minutes (streams cap their consumers; busy lists would hit the cap).
        watcher = await self.kv.watch(
            f"{self.prefix}>" if self.prefix else ">", ignore_deletes=True, inactive_threshold=2.0
        )
        found: dict[str, Versioned[T]] = {}

        def take(entry: Any) -> None:
            if entry.operation is None and entry.value:
                key = entry.key.removeprefix(self.prefix)
                found[key] = Versioned(
                    self._decode(entry.value).resource, int(entry.revision or 0), key
                )

        try:
            async for entry in watcher:
                if entry is None:  # end of the initial values
                    break
                take(entry)
            # While keys are being written, nats-py can mark the end of the initial values
            # before the last of them arrives: take what follows the marker at once, too.
            deadline = time.monotonic() + LATE_ENTRIES_MAX_S
            while (left := deadline - time.monotonic()) > 0:
                try:
                    late = await watcher.updates(timeout=min(LATE_ENTRIES_S, left))  # type: ignore[no-untyped-call]
                except nats.errors.TimeoutError:
                    break
                if late is not None:
                    take(late)
        finally:
            await watcher.stop()  # type: ignore[no-untyped-call]
        return [found[k] for k in sorted(found)]

    def _conflict(self, key: str, expected: int, actual: int) -> Conflict:
        return Conflict(
            f"{self.kind} {key!r} changed: expected revision {expected}, found {actual}",
            kind=self.kind,
            id=key,
            expected_revision=expected,
            actual_revision=actual,
        )
