"""HTTP fetching for the crawler: SSRF checks on every hop, size limits while streaming, conditional GETs."""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass, field
from urllib.parse import urljoin, urlsplit

import httpx

from services.crawler.domain.networks import AddressRefused, NetworkPolicy, literal_address

REDIRECTS = (301, 302, 303, 307, 308)


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


class Fetcher:
    def __init__(
        self,
        policy: NetworkPolicy,
        *,
        user_agent: str,
        connect_timeout_s: float = 10.0,
        read_timeout_s: float = 30.0,
        max_redirects: int = 5,
    ) -> None:
        self.policy = policy
        self.max_redirects = max_redirects
        self.client = httpx.AsyncClient(
            follow_redirects=False,
            timeout=httpx.Timeout(read_timeout_s, connect=connect_timeout_s),
            headers={"User-Agent": user_agent},
            trust_env=False,  # no proxy or netrc from the environment: only what a source sets
        )

    async def _check(self, url: str) -> None:
        parts = urlsplit(url)
        host = parts.hostname or ""
        literal = literal_address(host)
        if literal is not None:
            self.policy.check(host, literal)
            return
        port = parts.port or (443 if parts.scheme == "https" else 80)
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        self.policy.check_all(host, [str(info[4][0]) for info in infos])

    async def get(
        self,
        url: str,
        *,
        max_bytes: int,
        headers: dict[str, str] | None = None,
        etag: str | None = None,
        last_modified: str | None = None,
    ) -> Fetched:
        request_headers = dict(headers or {})
        if etag:
            request_headers["If-None-Match"] = etag
        if last_modified:
            request_headers["If-Modified-Since"] = last_modified
        current = url
        for _ in range(self.max_redirects + 1):
            try:
                await self._check(current)
            except AddressRefused as exc:
                return Fetched(current, error=str(exc), refused=True)
            except OSError as exc:
                return Fetched(current, error=f"DNS lookup failed: {exc}")
            try:
                async with self.client.stream("GET", current, headers=request_headers) as response:
                    if response.status_code in REDIRECTS and "location" in response.headers:
                        current = urljoin(current, response.headers["location"])
                        if urlsplit(current).scheme not in ("http", "https"):
                            return Fetched(current, error="redirect to a non-HTTP URL")
                        continue
                    declared = response.headers.get("content-length")
                    if declared and declared.isdigit() and int(declared) > max_bytes:
                        return Fetched(
                            current, response.status_code, error="too large", too_large=True
                        )
                    chunks: list[bytes] = []
                    size = 0
                    async for chunk in response.aiter_bytes():
                        size += len(chunk)
                        if size > max_bytes:
                            # Abandoned while streaming: the rest is never downloaded.
                            return Fetched(
                                current, response.status_code, error="too large", too_large=True
                            )
                        chunks.append(chunk)
                    return Fetched(
                        current,
                        response.status_code,
                        {k.lower(): v for k, v in response.headers.items()},
                        b"".join(chunks),
                    )
            except httpx.HTTPError as exc:
                return Fetched(current, error=f"{type(exc).__name__}: {exc}")
        return Fetched(current, error=f"more than {self.max_redirects} redirects")

    async def close(self) -> None:
        await self.client.aclose()
