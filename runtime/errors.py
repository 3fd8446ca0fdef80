"""Errors raised by domain code and the runtime; each maps to one ErrorCode on the wire."""

from __future__ import annotations

from typing import Any

from contracts.errors import ErrorCode, ErrorReply


class TrellisError(Exception):
    code: ErrorCode = ErrorCode.INTERNAL

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def to_reply(self) -> ErrorReply:
        return ErrorReply(code=self.code, message=self.message, details=self.details)


class ValidationFailed(TrellisError):
    code = ErrorCode.VALIDATION


class NotFound(TrellisError):
    code = ErrorCode.NOT_FOUND


class Conflict(TrellisError):
    code = ErrorCode.CONFLICT


class Forbidden(TrellisError):
    code = ErrorCode.FORBIDDEN


class ServiceUnavailable(TrellisError):
    """Nobody answers on the subject: the service is down or not deployed."""

    code = ErrorCode.UNAVAILABLE

    def __init__(self, service: str, subject: str) -> None:
        super().__init__(f"service {service!r} is unavailable", service=service, subject=subject)
        self.service = service


class RequestTimeout(TrellisError):
    code = ErrorCode.TIMEOUT

    def __init__(self, service: str, subject: str, timeout_s: float) -> None:
        super().__init__(
            f"service {service!r} did not answer within {timeout_s:g}s",
            service=service,
            subject=subject,
        )
        self.service = service


class InternalError(TrellisError):
    code = ErrorCode.INTERNAL


class RemoteError(TrellisError):
    """An error reply from another service, re-raised on the requester's side."""

    def __init__(self, reply: ErrorReply, service: str) -> None:
        super().__init__(reply.message, **reply.details)
        self.code = reply.code
        self.service = service
