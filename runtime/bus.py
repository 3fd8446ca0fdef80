"""Typed publish / subscribe / request-reply over nats-py, with envelopes and dead-lettering."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import contextvars
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import nats
import nats.errors
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext

from contracts import subjects
from contracts.envelope import EnvelopeMeta, Message, utc_now
from contracts.errors import ErrorCode, ErrorReply
from contracts.system import DeadLetter
from runtime import codec
from runtime.errors import (
    InternalError,
    RemoteError,
    RequestTimeout,
    ServiceUnavailable,
    TrellisError,
    ValidationFailed,
)
from runtime.logs import correlation, correlation_id_var
from runtime.metrics import ServiceMetrics

M = TypeVar("M", bound=Message)
R = TypeVar("R", bound=Message)
RequestHandler = Callable[[M, EnvelopeMeta], Awaitable[Message]]
EventHandler = Callable[[M, EnvelopeMeta], Awaitable[None]]

log = logging.getLogger("trellis.bus")
_subject_var: contextvars.ContextVar[str] = contextvars.ContextVar("subject", default="")


def current_subject() -> str:
    """The subject of the message being handled (for handlers of wildcard subscriptions)."""
    return _subject_var.get()


MSG_ID_HEADER = "Nats-Msg-Id"


class Bus:
    """One NATS connection, speaking Trellis envelopes. `source` names this process in envelopes."""

    def __init__(
        self,
        nc: NATS,
        *,
        source: str,
        service: str | None = None,
        metrics: ServiceMetrics | None = None,
        max_concurrency: int = 64,
    ) -> None:
        self.nc = nc
        self.js: JetStreamContext = nc.jetstream()
        self.source = source
        self.service = service or source
        self.metrics = metrics
        self._handler_slots = asyncio.Semaphore(max_concurrency)
        self._tasks: set[asyncio.Task[None]] = set()
        self._subscriptions: list[Subscription] = []
        self.handled = 0
        self.failed = 0

    @classmethod
    async def connect(
        cls,
        url: str,
        *,
        source: str,
        service: str | None = None,
        metrics: ServiceMetrics | None = None,
        max_concurrency: int = 64,
        connect_timeout_s: float = 5.0,
    ) -> Bus:
        nc = await nats.connect(
            servers=[u.strip() for u in url.split(",") if u.strip()],
            name=source,
            connect_timeout=max(1, round(connect_timeout_s)),
            max_reconnect_attempts=-1,
            reconnect_time_wait=0.5,
            allow_reconnect=True,
            error_cb=_log_error,
            disconnected_cb=_log_event("disconnected from NATS"),
            reconnected_cb=_log_event("reconnected to NATS"),
        )
        return cls(
            nc, source=source, service=service, metrics=metrics, max_concurrency=max_concurrency
        )

    # -- sending ---------------------------------------------------------------------------

    def _correlation(self, correlation_id: str | None) -> str | None:
        """The caller's id, else the one of the message being handled; None starts a new one."""
        return correlation_id or correlation_id_var.get()

    async def publish(
        self, subject: str, message: Message, *, correlation_id: str | None = None
    ) -> None:
        """Core NATS publish: fire and forget (no stream keeps it)."""
        payload = codec.encode(
            message, source=self.source, correlation_id=self._correlation(correlation_id)
        )
        await self.nc.publish(subject, payload)

    async def emit(
        self,
        subject: str,
        message: Message,
        *,
        correlation_id: str | None = None,
        message_id: str | None = None,
        timeout_s: float = 5.0,
    ) -> int:
        """Publish to JetStream and wait for the stream's ack; returns the stream sequence.

        Give `message_id` when a retry may repeat the message (e.g. derived from a client
        token): it is the envelope id and the JetStream de-duplication id, so the stream keeps
        one copy. Without it, the message gets a fresh id and no de-duplication.
        """
        payload = codec.encode(
            message,
            source=self.source,
            correlation_id=self._correlation(correlation_id),
            message_id=message_id,
        )
        headers = {MSG_ID_HEADER: message_id} if message_id else None
        ack = await self.js.publish(subject, payload, timeout=timeout_s, headers=headers)
        return int(ack.seq)

    async def request(
        self,
        subject: str,
        message: Message,
        reply_type: type[R],
        *,
        timeout_s: float = 5.0,
        service: str | None = None,
        correlation_id: str | None = None,
    ) -> R:
        """Send a request and return the typed reply; error replies are raised as TrellisError."""
        target = service or subject.split(".", 1)[0]
        payload = codec.encode(
            message, source=self.source, correlation_id=self._correlation(correlation_id)
        )
        try:
            msg = await self.nc.request(subject, payload, timeout=timeout_s)
        except nats.errors.NoRespondersError:
            raise ServiceUnavailable(target, subject) from None
        except nats.errors.TimeoutError:
            raise RequestTimeout(target, subject, timeout_s) from None
        try:
            reply = codec.decode_reply(msg.data, reply_type)
        except codec.DecodeError as exc:
            raise InternalError(f"malformed reply from {target!r}: {exc}") from exc
        if isinstance(reply, ErrorReply):
            raise RemoteError(reply, target)
        return reply

    async def gather(
        self,
        subject: str,
        message: Message,
        reply_type: type[R],
        *,
        window_s: float,
        expected: int | None = None,
    ) -> list[R]:
        """Scatter a request to every subscriber and collect replies for `window_s`
        (or until `expected` replies arrived). Malformed replies are logged and skipped."""
        inbox = self.nc.new_inbox()
        replies: list[R] = []
        done = asyncio.Event()

        async def collect(msg: Msg) -> None:
            try:
                reply = codec.decode_reply(msg.data, reply_type)
            except codec.DecodeError as exc:
                log.warning("skipping malformed reply on %s: %s", subject, exc)
                return
            if isinstance(reply, ErrorReply):
                log.warning("error reply on %s: %s", subject, reply.message)
                return
            replies.append(reply)
            if expected is not None and len(replies) >= expected:
                done.set()

        sub = await self.nc.subscribe(inbox, cb=collect)
        try:
            payload = codec.encode(
                message, source=self.source, correlation_id=self._correlation(None)
            )
            await self.nc.publish(subject, payload, reply=inbox)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), timeout=window_s)
        finally:
            await sub.unsubscribe()
        return replies

    # -- receiving -------------------------------------------------------------------------

    async def serve(
        self,
        subject: str,
        request_type: type[M],
        handler: RequestHandler[M],
        *,
        queue: str | None = None,
    ) -> Subscription:
        """Answer requests on `subject`. Replicas sharing `queue` split the work."""

        async def on_message(msg: Msg) -> None:
            await self._spawn(self._handle_request(msg, request_type, handler))

        sub = await self.nc.subscribe(subject, queue=queue or "", cb=on_message)
        self._subscriptions.append(sub)
        await self.nc.flush()  # the server knows the subscription before we report it ready
        return sub

    async def subscribe(
        self,
        subject: str,
        event_type: type[M],
        handler: EventHandler[M],
        *,
        queue: str | None = None,
    ) -> Subscription:
        """Handle core-NATS messages on `subject` (no replies). Bad messages are dead-lettered."""

        async def on_message(msg: Msg) -> None:
            await self._spawn(self._handle_event(msg, event_type, handler))

        sub = await self.nc.subscribe(subject, queue=queue or "", cb=on_message)
        self._subscriptions.append(sub)
        await self.nc.flush()  # the server knows the subscription before we report it ready
        return sub

    async def _spawn(self, work: Awaitable[None]) -> None:
        # Waiting for a slot here applies back-pressure: nats-py buffers in the subscription.
        await self._handler_slots.acquire()
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._handler_slots.release()

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    async def _handle_request(
        self, msg: Msg, request_type: type[M], handler: RequestHandler[M]
    ) -> None:
        started = time.perf_counter()
        outcome = "ok"
        correlation_id: str | None = None
        reply: Message
        try:
            envelope, body = codec.decode(msg.data, request_type)
            correlation_id = envelope.correlation_id
            _subject_var.set(msg.subject)  # each handler runs in its own task: no reset needed
            with correlation(correlation_id):
                reply = await handler(body, envelope)
        except codec.DecodeError as exc:
            outcome = "invalid"
            reply = ValidationFailed(str(exc)).to_reply()
            await self.dead_letter(msg.subject, msg.data, msg.headers, exc)
        except TrellisError as exc:
            outcome = exc.code.value
            reply = exc.to_reply()
        except Exception as exc:
            outcome = "internal"
            with correlation(correlation_id):
                log.exception("handler for %s failed", msg.subject)
            reply = ErrorReply(
                code=ErrorCode.INTERNAL, message=f"internal error ({type(exc).__name__})"
            )
        self.handled += 1
        if outcome != "ok":
            self.failed += 1
        if msg.reply:
            try:
                await self.nc.publish(
                    msg.reply,
                    codec.encode(reply, source=self.source, correlation_id=correlation_id),
                )
            except Exception:
                log.exception("could not send reply on %s", msg.subject)
        if self.metrics is not None:
            self.metrics.observe_request(
                self.service, msg.subject, outcome, time.perf_counter() - started
            )

    async def _handle_event(self, msg: Msg, event_type: type[M], handler: EventHandler[M]) -> None:
        try:
            envelope, body = codec.decode(msg.data, event_type)
        except codec.DecodeError as exc:
            await self.dead_letter(msg.subject, msg.data, msg.headers, exc)
            return
        try:
            with correlation(envelope.correlation_id):
                await handler(body, envelope)
        except Exception as exc:
            with correlation(envelope.correlation_id):
                log.exception("handler for %s failed", msg.subject)
            await self.dead_letter(msg.subject, msg.data, msg.headers, exc)

    async def dead_letter(
        self,
        subject: str,
        raw: bytes,
        headers: dict[str, str] | None,
        error: BaseException,
        *,
        stream: str | None = None,
        consumer: str | None = None,
        stream_sequence: int | None = None,
        deliveries: int = 1,
    ) -> bool:
        """Keep an unprocessable message with its error on the dead-letter stream.

        Returns False (after logging) when even that fails, so callers can leave the
        original unacknowledged and lose nothing.
        """
        try:
            payload, encoding = raw.decode("utf-8"), "utf-8"
        except UnicodeDecodeError:
            payload, encoding = base64.b64encode(raw).decode(), "base64"
        letter = DeadLetter(
            service=self.service,
            subject=subject,
            reason=str(error)[:4000] or type(error).__name__,
            error_type=type(error).__name__,
            payload=payload,
            payload_encoding=encoding,
            headers=dict(headers or {}),
            stream=stream,
            consumer=consumer,
            stream_sequence=stream_sequence,
            deliveries=deliveries,
            dead_lettered_at=utc_now(),
        )
        # The same original message dead-lettered twice (e.g. after a crash) is stored once.
        dedupe = (
            f"dl:{stream}:{consumer}:{stream_sequence}" if stream_sequence is not None else None
        )
        try:
            await self.emit(subjects.DEAD_LETTERED, letter, message_id=dedupe)
        except Exception:
            log.exception("could not dead-letter a message from %s", subject)
            return False
        log.warning(
            "dead-lettered a message", extra={"subject": subject, "reason": letter.reason[:500]}
        )
        if self.metrics is not None:
            self.metrics.dead_letters.labels(self.service, subject).inc()
        return True

    # -- lifecycle -------------------------------------------------------------------------

    async def stop_serving(self, timeout_s: float = 20.0) -> None:
        """Stop taking new messages, then wait for in-flight handlers (up to `timeout_s`)."""
        for sub in self._subscriptions:
            with contextlib.suppress(Exception):
                await sub.drain()  # type: ignore[no-untyped-call]
        self._subscriptions.clear()
        await self.wait_idle(timeout_s)

    async def wait_idle(self, timeout_s: float) -> None:
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=timeout_s)
            if pending:
                log.warning(
                    "%d handlers still running after %.0fs; cancelling", len(pending), timeout_s
                )
                for task in pending:
                    task.cancel()

    async def close(self) -> None:
        if not self.nc.is_closed:
            with contextlib.suppress(Exception):
                await self.nc.drain()
            with contextlib.suppress(Exception):
                await self.nc.close()


async def _log_error(exc: Exception) -> None:
    log.warning("NATS error: %s", exc)


def _log_event(text: str) -> Callable[[], Awaitable[None]]:
    async def callback() -> None:
        log.info(text)

    return callback
