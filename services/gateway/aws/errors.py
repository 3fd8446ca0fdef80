"""AWS JSON 1.1 protocol error shapes: the exception, its wire body and headers."""

from __future__ import annotations

from contracts.errors import ErrorCode

JSON_CONTENT_TYPE = "application/x-amz-json-1.1"


class AwsError(Exception):
    """An error to be returned to an AWS SDK caller as `{"__type", "message"}`."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(code, message, status)
        self.code = code
        self.message = message
        self.status = status

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(code={self.code!r}, message={self.message!r}, "
            f"status={self.status})"
        )


def error_body(code: str, message: str) -> dict[str, str]:
    return {"__type": code, "message": message}


def error_headers(code: str) -> dict[str, str]:
    return {"x-amzn-ErrorType": code, "Content-Type": JSON_CONTENT_TYPE}


def validation(message: str) -> AwsError:
    return AwsError("ValidationException", message, 400)


def not_found(message: str) -> AwsError:
    return AwsError("ResourceNotFoundException", message, 404)


def conflict(message: str) -> AwsError:
    return AwsError("ConflictException", message, 409)


def access_denied(message: str) -> AwsError:
    return AwsError("AccessDeniedException", message, 403)


def throttled(message: str) -> AwsError:
    return AwsError("ThrottlingException", message, 429)


def internal(message: str) -> AwsError:
    return AwsError("InternalServerException", message, 500)


def unavailable(message: str) -> AwsError:
    return AwsError("ServiceUnavailableException", message, 503)


def unknown_operation(target: str) -> AwsError:
    if not target:
        return AwsError("UnknownOperationException", "Missing X-Amz-Target header", 400)
    return AwsError("UnknownOperationException", f"Unknown operation: {target}", 400)


def serialization(message: str) -> AwsError:
    return AwsError("SerializationException", message, 400)


_BY_CODE = {
    ErrorCode.VALIDATION: validation,
    ErrorCode.NOT_FOUND: not_found,
    ErrorCode.CONFLICT: conflict,
    ErrorCode.FORBIDDEN: access_denied,
    ErrorCode.UNAVAILABLE: unavailable,
    ErrorCode.TIMEOUT: unavailable,
    ErrorCode.INTERNAL: internal,
}


def from_error_code(code: ErrorCode, message: str) -> AwsError:
    """The AWS error for a Trellis error reply."""
    return _BY_CODE.get(code, internal)(message)
