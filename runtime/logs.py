"""Structured JSON logs that carry the current correlation id, with secrets redacted."""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

correlation_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "correlation_id", default=None
)

_STANDARD_ATTRS = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys() | {"message", "asctime"}
)
_SECRET_KEY = re.compile(
    r"(secret|password|passwd|token|api_key|apikey|authorization|credential)", re.I
)
_BEARER = re.compile(r"(Bearer\s+)[A-Za-z0-9._~+/=-]+", re.I)
_AWS_SIGNATURE = re.compile(r"(Signature=)[0-9a-f]{16,}", re.I)
# Credentials inside a URL (a proxy's, say): scheme://user:password@host
_URL_USERINFO = re.compile(r"(\b[a-z][a-z0-9+.-]*://)[^/\s:@]*:[^/\s@]*@", re.I)
REDACTED = "[redacted]"


def redact_text(text: str) -> str:
    text = _URL_USERINFO.sub(r"\1" + REDACTED + "@", text)
    return _AWS_SIGNATURE.sub(r"\1" + REDACTED, _BEARER.sub(r"\1" + REDACTED, text))


def redact(value: Any, key: str = "") -> Any:
    """Mask values whose key names a secret, and bearer tokens / signatures inside strings."""
    if key and _SECRET_KEY.search(key) and not key.endswith(("_id", "_count")):
        return REDACTED
    if isinstance(value, dict):
        return {k: redact(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact(v) for v in value]
    if isinstance(value, str):
        return redact_text(value)
    return value


@contextmanager
def correlation(correlation_id: str | None) -> Iterator[None]:
    token = correlation_id_var.set(correlation_id)
    try:
        yield
    finally:
        correlation_id_var.reset(token)


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "service": self.service,
            "logger": record.name,
            "message": redact_text(record.getMessage()),
        }
        cid = getattr(record, "correlation_id", None) or correlation_id_var.get()
        if cid:
            entry["correlation_id"] = cid
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRS and key not in entry:
                entry[key] = redact(value, key)
        if record.exc_info:
            entry["exception"] = redact_text(self.formatException(record.exc_info))
        return json.dumps(entry, default=str)


class TextFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__("%(asctime)s %(levelname)s " + service + " %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = redact_text(super().format(record))
        cid = correlation_id_var.get()
        return f"{line} [cid={cid}]" if cid else line


class RecentErrors(logging.Handler):
    """Keeps the last warnings and errors of this process (redacted) for its health reports."""

    def __init__(self, keep: int = 20) -> None:
        super().__init__(logging.WARNING)
        self._entries: deque[dict[str, str]] = deque(maxlen=keep)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = redact_text(record.getMessage())[:500]
        except Exception:  # a bad format string must not break logging
            message = str(record.msg)[:500]
        self._entries.append(
            {
                "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
                "level": record.levelname.lower(),
                "logger": record.name,
                "message": message,
            }
        )

    def snapshot(self) -> list[dict[str, str]]:
        return list(self._entries)


RECENT_ERRORS = RecentErrors()


def configure_logging(service: str, level: str = "INFO", fmt: str = "json") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(service) if fmt == "json" else TextFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler, RECENT_ERRORS]
    root.setLevel(level)
    # uvicorn's access log prints full request lines; ours logs requests without secrets.
    logging.getLogger("uvicorn.access").disabled = True
    # httpcore's DEBUG trace prints response headers whole: the crawler's login cookies too.
    logging.getLogger("httpcore").setLevel(max(root.level, logging.INFO))
