"""HTTP fetching for the crawler: SSRF checks on every hop, connections only to the checked addresses,
size limits while streaming, conditional GETs, a source's proxy, basic auth per host:port and
form-login cookies."""

from __future__ import annotations

import asyncio
import base64
import http.cookiejar
import re
import socket
import ssl
import time
from collections.abc import Iterable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpcore
import httpx

from runtime.errors import ValidationFailed
from runtime.logs import REDACTED, redact_text
from services.crawler.domain.networks import AddressRefused, NetworkPolicy, literal_address
from services.crawler.domain.secrets import Credentials
from services.crawler.domain.urls import host_key

REDIRECTS = (301, 302, 303, 307, 308)
MAX_LOGIN_BYTES = 1024 * 1024
# Shorter secrets are no secret; replacing them everywhere would only garble the message.
_MIN_SCRUBBED = 4
_BASIC = re.compile(r"(Basic\s+)[A-Za-z0-9+/=]{4,}", re.I)
# httpx's defaults, kept for the pool built here.
_LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=20, keepalive_expiry=5.0)
# The addresses the current request may connect to, per host name as httpcore connects to it.
_CHECKED: ContextVar[Mapping[str, tuple[str, ...]]] = ContextVar("crawler_checked_addresses")

Pins = dict[str, tuple[str, ...]]


@dataclass
class Fetched:
    url: str  # after redirects
    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    error: str | None = None  # network, TLS, SSRF, size, redirect problems (per URL)
    too_large: bool = False
    refused: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None and 200 <= self.status < 300

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "").split(";")[0].strip().lower()

    @property
    def charset(self) -> str | None:
        for part in self.headers.get("content-type", "").split(";")[1:]:
            key, _, value = part.strip().partition("=")
            if key.lower() == "charset" and value:
                return value.strip('"')
        return None


@dataclass(frozen=True)
class ProxyAccess:
    """An HTTP proxy and, optionally, the basic credentials it asks for."""

    host: str
    port: int
    credentials: Credentials | None = None

    @property
    def url(self) -> str:  # never with the credentials in it: URLs end up in messages
        return f"http://{self.host}:{self.port}"


@dataclass(frozen=True)
class Access:
    """What a sync adds to its requests: basic credentials per host:port, login cookies."""

    basic: Mapping[str, Credentials] = field(default_factory=dict)  # "host:port" -> credentials
    cookies: httpx.Cookies | None = None

    @property
    def secrets(self) -> list[str]:
        return [c.password for c in self.basic.values()]


class _NoCookies(http.cookiejar.DefaultCookiePolicy):
    """The shared client keeps no cookies: one source's (or sync's) must not reach another."""

    def set_ok(self, cookie: http.cookiejar.Cookie, request: Any) -> bool:
        return False

    def return_ok(self, cookie: http.cookiejar.Cookie, request: Any) -> bool:
        return False


async def resolve(host: str, port: int) -> list[str]:
    """The addresses `host` resolves to: the crawler's one DNS lookup per hop."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


class _CheckedBackend(httpcore.AsyncNetworkBackend):
    """Connects only to addresses the network policy passed for the request being sent.

    httpx would resolve the name again when it connects, and an answer that changed since the
    check (DNS rebinding) would reach an address nobody checked. Connecting here instead keeps
    the URL's host name everywhere else: the Host header, TLS SNI and certificate check, cookies,
    and connection pooling per name (a pooled connection went to an address checked then).
    """

    def __init__(self) -> None:
        self._backend = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        addresses = _CHECKED.get({}).get(host)
        if not addresses:
            raise httpcore.ConnectError(f"no checked address to connect to for {host!r}")
        deadline = None if timeout is None else time.monotonic() + timeout
        failure: Exception = httpcore.ConnectTimeout(f"connecting to {host!r} timed out")
        for address in addresses:  # in the resolver's order, the next when one does not answer
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                break
            try:
                return await self._backend.connect_tcp(
                    address, port, left, local_address, socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
        raise failure

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("the crawler connects to TCP addresses only")

    async def sleep(self, seconds: float) -> None:
        await self._backend.sleep(seconds)


def _transport(ssl_context: ssl.SSLContext, proxy: ProxyAccess | None) -> httpx.AsyncHTTPTransport:
    """httpx's transport, its pool rebuilt with the checked-address backend (httpx takes none)."""
    transport = httpx.AsyncHTTPTransport(verify=ssl_context, trust_env=False)
    if proxy is None:
        transport._pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl_context,
            max_connections=_LIMITS.max_connections,
            max_keepalive_connections=_LIMITS.max_keepalive_connections,
            keepalive_expiry=_LIMITS.keepalive_expiry,
            network_backend=_CheckedBackend(),
        )
        return transport
    url = httpx.URL(proxy.url)
    auth = proxy.credentials
    transport._pool = httpcore.AsyncHTTPProxy(
        proxy_url=httpcore.URL(
            scheme=url.raw_scheme, host=url.raw_host, port=url.port, target=url.raw_path
        ),
        proxy_auth=(auth.username.encode(), auth.password.encode()) if auth else None,
        ssl_context=ssl_context,
        max_connections=_LIMITS.max_connections,
        max_keepalive_connections=_LIMITS.max_keepalive_connections,
        keepalive_expiry=_LIMITS.keepalive_expiry,
        network_backend=_CheckedBackend(),
    )
    return transport


def basic_header(credentials: Credentials) -> str:
    token = f"{credentials.username}:{credentials.password}".encode()
    return "Basic " + base64.b64encode(token).decode()


def scrub(text: str, secrets: Iterable[str]) -> str:
    """`text` without the given secrets, credentials in URLs or basic tokens (for error messages)."""
    for secret in secrets:
        if len(secret) >= _MIN_SCRUBBED:
            text = text.replace(secret, REDACTED)
    return _BASIC.sub(r"\1" + REDACTED, redact_text(text))


def cookies_to_json(cookies: httpx.Cookies) -> list[dict[str, Any]]:
    return [
        {
            "name": c.name,
            "value": c.value,
            "domain": c.domain,
            "domain_specified": c.domain_specified,
            "domain_initial_dot": c.domain_initial_dot,
            "path": c.path,
            "path_specified": c.path_specified,
            "secure": c.secure,
            "expires": c.expires,
            "port": c.port,
        }
        for c in cookies.jar
    ]


def cookies_from_json(stored: list[dict[str, Any]]) -> httpx.Cookies:
    jar = http.cookiejar.CookieJar()
    for c in stored:
        jar.set_cookie(
            http.cookiejar.Cookie(
                version=0,
                name=c["name"],
                value=c["value"],
                port=c.get("port"),
                port_specified=c.get("port") is not None,
                domain=c["domain"],
                domain_specified=bool(c.get("domain_specified")),
                domain_initial_dot=bool(c.get("domain_initial_dot")),
                path=c.get("path") or "/",
                path_specified=bool(c.get("path_specified")),
                secure=bool(c.get("secure")),
                expires=c.get("expires"),
                discard=False,
                comment=None,
                comment_url=None,
                rest={},
            )
        )
    return httpx.Cookies(jar)


class Fetcher:
    def __init__(
        self,
        policy: NetworkPolicy,
        *,
        user_agent: str,
        proxy: ProxyAccess | None = None,
        connect_timeout_s: float = 10.0,
        read_timeout_s: float = 30.0,
        max_redirects: int = 5,
    ) -> None:
        self.policy = policy
        self.max_redirects = max_redirects
        self.proxy = proxy
        self.ssl_context = httpx.create_ssl_context(trust_env=False)
        self.client = httpx.AsyncClient(
            follow_redirects=False,
            timeout=httpx.Timeout(read_timeout_s, connect=connect_timeout_s),
            headers={"User-Agent": user_agent},
            trust_env=False,  # no proxy or netrc from the environment: only what a source sets
            transport=_transport(self.ssl_context, proxy),  # through the proxy when there is one
            cookies=httpx.Cookies(http.cookiejar.CookieJar(policy=_NoCookies())),
        )

    def _secrets(self, access: Access | None) -> list[str]:
        found = list(access.secrets) if access else []
        if self.proxy is not None and self.proxy.credentials is not None:
            found.append(self.proxy.credentials.password)
        return found

    async def _check(self, url: str) -> tuple[str, tuple[str, ...]]:
        """The host name httpcore connects to for `url`, and its addresses, all of them allowed."""
        parts = urlsplit(url)
        host = parts.hostname or ""
        name = httpx.URL(url).raw_host.decode("ascii")  # IDNA-encoded, as it is connected to
        literal = literal_address(host)
        if literal is not None:
            self.policy.check(host, literal)
            return name, (literal,)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        addresses = tuple(dict.fromkeys(await resolve(name, port)))
        self.policy.check_all(host, addresses)
        return name, addresses

    async def _admit(self, url: str) -> Pins | Fetched:
        """Where a request for `url` may connect; a Fetched saying why when it may not."""
        pins: Pins = {}
        for target, what in ((self.proxy.url if self.proxy else None, "proxy: "), (url, "")):
            if target is None:
                continue
            try:
                name, addresses = await self._check(target)
            except AddressRefused as exc:
                return Fetched(url, error=f"{what}{exc}", refused=True)
            except OSError as exc:
                return Fetched(url, error=f"{what}DNS lookup failed: {exc}")
            except httpx.InvalidURL as exc:
                return Fetched(url, error=f"{what}invalid URL: {exc}")
            # Through a proxy only the proxy's address is connected to: the proxy resolves the
            # page's host itself, so the page is checked (as above) but cannot be pinned.
            if not pins:
                pins[name] = addresses
        return pins

    async def _send(self, request: httpx.Request, pins: Pins) -> httpx.Response:
        """Send `request`, connecting (when it needs a new connection) only to `pins`."""
        token = _CHECKED.set(pins)
        try:
            return await self.client.send(request, stream=True)
        finally:
            _CHECKED.reset(token)

    def _request(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        access: Access | None,
        data: Mapping[str, str] | None = None,
        cookies: httpx.Cookies | None = None,
    ) -> httpx.Request:
        request = self.client.build_request(method, url, headers=dict(headers), data=data)
        if access is not None and access.basic:
            try:
                credentials = access.basic.get(host_key(url))
            except ValidationFailed:
                credentials = None
            if credentials is not None:  # only to its host:port, so never across a redirect
                request.headers["Authorization"] = basic_header(credentials)
        jar = cookies if cookies is not None else (access.cookies if access else None)
        if jar is not None:
            jar.set_cookie_header(request)
        return request

    async def get(
        self,
        url: str,
        *,
        max_bytes: int,
        headers: dict[str, str] | None = None,
        etag: str | None = None,
        last_modified: str | None = None,
        access: Access | None = None,
    ) -> Fetched:
        request_headers = dict(headers or {})
        if etag:
            request_headers["If-None-Match"] = etag
        if last_modified:
            request_headers["If-Modified-Since"] = last_modified
        current = url
        for _ in range(self.max_redirects + 1):
            pins = await self._admit(current)
            if isinstance(pins, Fetched):
                return pins
            response: httpx.Response | None = None
            try:
                request = self._request("GET", current, request_headers, access)
                response = await self._send(request, pins)
                if response.status_code in REDIRECTS and "location" in response.headers:
                    current = urljoin(current, response.headers["location"])
                    if urlsplit(current).scheme not in ("http", "https"):
                        return Fetched(current, error="redirect to a non-HTTP URL")
                    continue
                return await self._read(current, response, max_bytes)
            except httpx.HTTPError as exc:
                message = scrub(f"{type(exc).__name__}: {exc}", self._secrets(access))
                return Fetched(current, error=message)
            finally:
                if response is not None:
                    await response.aclose()
        return Fetched(current, error=f"more than {self.max_redirects} redirects")

    @staticmethod
    async def _read(url: str, response: httpx.Response, max_bytes: int) -> Fetched:
        declared = response.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > max_bytes:
            return Fetched(url, response.status_code, error="too large", too_large=True)
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size > max_bytes:
                # Abandoned while streaming: the rest is never downloaded.
                return Fetched(url, response.status_code, error="too large", too_large=True)
            chunks.append(chunk)
        return Fetched(
            url,
            response.status_code,
            {k.lower(): v for k, v in response.headers.items()},
            b"".join(chunks),
        )

    async def login(
        self,
        url: str,
        fields: Mapping[str, str],
        *,
        access: Access | None = None,
        secrets: Iterable[str] = (),
    ) -> tuple[Fetched, httpx.Cookies]:
        """POST a login form (urlencoded) and follow its redirects; the cookies set on the way."""
        jar = httpx.Cookies()
        hidden = [*self._secrets(access), *secrets]
        method, data = "POST", dict(fields)
        current = url
        for _ in range(self.max_redirects + 1):
            pins = await self._admit(current)
            if isinstance(pins, Fetched):
                return pins, jar
            response: httpx.Response | None = None
            try:
                request = self._request(
                    method, current, {}, access, data if method == "POST" else None, cookies=jar
                )
                response = await self._send(request, pins)
                jar.extract_cookies(response)
                if response.status_code in REDIRECTS and "location" in response.headers:
                    current = urljoin(current, response.headers["location"])
                    if urlsplit(current).scheme not in ("http", "https"):
                        return Fetched(current, error="redirect to a non-HTTP URL"), jar
                    if response.status_code not in (307, 308):
                        method = "GET"  # as browsers do after a form post
                    continue
                return await self._read(current, response, MAX_LOGIN_BYTES), jar
            except httpx.HTTPError as exc:
                return Fetched(current, error=scrub(f"{type(exc).__name__}: {exc}", hidden)), jar
            finally:
                if response is not None:
                    await response.aclose()
        return Fetched(current, error=f"more than {self.max_redirects} redirects"), jar

    async def close(self) -> None:
        await self.client.aclose()
