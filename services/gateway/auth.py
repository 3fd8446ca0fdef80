"""REST authentication (Bearer API keys, or the console's session cookie) and scope checks."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable

from cryptography.fernet import Fernet, InvalidToken
from fastapi import Request

from services.gateway.adapters.key_store import KeyStore
from services.gateway.domain.keys import ADMIN, Access, Principal, allows, required_scope


class AuthError(Exception):
    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


def _key_store(request: Request) -> KeyStore:
    store: KeyStore = request.app.state.key_store
    return store


SESSION_COOKIE = "trellis_session"
SESSION_TTL_S = 8 * 3600
# Console writes must carry this header: a cross-site form cannot set it (defence in depth
# beside the SameSite=Strict cookie).
CONSOLE_HEADER = "x-trellis-console"
_SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
_SESSION_PURPOSE = "console-session"


def seal_session(sealer: Fernet, api_key: str) -> str:
    """The console's session cookie: the API key, sealed and timestamped (checked per request,
    so revoking the key ends the session at once)."""
    return sealer.encrypt(json.dumps({"p": _SESSION_PURPOSE, "k": api_key}).encode()).decode()


def open_session(sealer: Fernet, cookie: str, ttl_s: int = SESSION_TTL_S) -> str | None:
    try:
        opened = json.loads(sealer.decrypt(cookie.encode(), ttl=ttl_s))
    except (InvalidToken, ValueError):
        return None
    if not isinstance(opened, dict) or opened.get("p") != _SESSION_PURPOSE:
        return None
    key = opened.get("k")
    return key if isinstance(key, str) else None


async def authenticate(request: Request) -> Principal:
    header = request.headers.get("authorization", "")
    cookie = request.cookies.get(SESSION_COOKIE)
    store = _key_store(request)
    if not header and cookie:
        token = open_session(store.sealer, cookie)
        if token is None:
            raise AuthError(401, "the console session has expired: sign in again")
        if request.method not in _SAFE_METHODS and request.headers.get(CONSOLE_HEADER) != "1":
            raise AuthError(403, f"console requests that change things must send {CONSOLE_HEADER}")
    else:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthError(401, "missing credentials: send 'Authorization: Bearer <api key>'")
    principal = await store.authenticate_bearer(token.strip())
    if principal is None:
        raise AuthError(401, "invalid or revoked API key")
    request.state.principal = principal
    return principal


def require(area: str, access: Access) -> Callable[[Request], Awaitable[Principal]]:
    """Dependency: a valid key holding `<area>:<access>` (or admin)."""
    scope = required_scope(area, access)
    return _requiring(scope)


def require_admin() -> Callable[[Request], Awaitable[Principal]]:
    return _requiring(ADMIN)


def ensure_scope(principal: Principal, area: str, access: Access) -> None:
    """403 unless the key holds `<area>:<access>` (or admin); for checks that depend on the body."""
    _ensure(principal, required_scope(area, access))


def _ensure(principal: Principal, scope: str) -> None:
    if not allows(set(principal.scopes), scope):
        raise AuthError(403, f"this key lacks the scope {scope!r}")


def _requiring(scope: str) -> Callable[[Request], Awaitable[Principal]]:
    async def dependency(request: Request) -> Principal:
        principal = await authenticate(request)
        _ensure(principal, scope)
        return principal

    return dependency
