"""REST authentication (Bearer API keys) and scope checks, as FastAPI dependencies."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

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


async def authenticate(request: Request) -> Principal:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthError(401, "missing credentials: send 'Authorization: Bearer <api key>'")
    principal = await _key_store(request).authenticate_bearer(token.strip())
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


def _requiring(scope: str) -> Callable[[Request], Awaitable[Principal]]:
    async def dependency(request: Request) -> Principal:
        principal = await authenticate(request)
        if not allows(set(principal.scopes), scope):
            raise AuthError(403, f"this key lacks the scope {scope!r}")
        return principal

    return dependency
