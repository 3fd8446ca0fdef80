"""The web console: sign-in with an API key (a sealed session cookie), the page shell, assets."""

from __future__ import annotations

import re
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, RedirectResponse, Response

from services.gateway.adapters.key_store import KeyStore
from services.gateway.auth import (
    SESSION_COOKIE,
    SESSION_TTL_S,
    AuthError,
    authenticate,
    seal_session,
)

router = APIRouter(prefix="/console", include_in_schema=False)
home = APIRouter(include_in_schema=False)
STATIC = Path(__file__).resolve().parent.parent / "console" / "static"
# What the sign-in page itself needs; everything else is served to a signed-in session only.
PUBLIC_ASSETS = frozenset({"login.js", "console.css", "favicon.svg"})
_ASSET = re.compile(r"^(?:pages/)?[a-z0-9][a-z0-9_-]{0,63}\.(?:js|css|svg)$")
_MEDIA = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
# Nothing is loaded from elsewhere: scripts, styles and images come from the gateway itself.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
        "frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}
MAX_KEY_CHARS = 512


def _page(name: str) -> Response:
    return FileResponse(
        STATIC / name,
        media_type="text/html; charset=utf-8",
        headers={**SECURITY_HEADERS, "Cache-Control": "no-store"},
    )


async def _signed_in(request: Request) -> bool:
    try:
        await authenticate(request)
    except AuthError:
        return False
    return True


@home.get("/")
async def root() -> RedirectResponse:
    return RedirectResponse("/console/", status_code=307)


@router.get("")
async def console_root() -> RedirectResponse:
    return RedirectResponse("/console/", status_code=307)


@router.get("/")
async def shell(request: Request) -> Response:
    if request.headers.get("authorization") or not await _signed_in(request):
        return RedirectResponse("/console/login", status_code=303)
    return _page("index.html")


@router.get("/login")
async def login_page() -> Response:
    return _page("login.html")


@router.post("/session")
async def sign_in(request: Request) -> Response:
    form = await request.form()
    api_key = form.get("api_key")
    store: KeyStore = request.app.state.key_store
    if (
        not isinstance(api_key, str)
        or not 0 < len(api_key) <= MAX_KEY_CHARS
        or await store.authenticate_bearer(api_key.strip()) is None
    ):
        return RedirectResponse("/console/login?error=1", status_code=303)
    response = RedirectResponse("/console/", status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        seal_session(store.sealer, api_key.strip()),
        max_age=SESSION_TTL_S,
        path="/",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


@router.delete("/session", status_code=204)
async def sign_out() -> Response:
    response = Response(status_code=204)
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
    return response


@router.get("/static/{asset:path}")
async def asset(asset: str, request: Request) -> Response:
    if not _ASSET.match(asset) or not (STATIC / asset).is_file():
        return Response("not found", status_code=404, media_type="text/plain")
    if asset not in PUBLIC_ASSETS and not await _signed_in(request):
        return Response("sign in first", status_code=401, media_type="text/plain")
    return FileResponse(
        STATIC / asset,
        media_type=_MEDIA[Path(asset).suffix],
        headers={**SECURITY_HEADERS, "Cache-Control": "no-cache"},
    )
