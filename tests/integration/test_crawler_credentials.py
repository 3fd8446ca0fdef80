"""Crawling with credentials, end to end: secrets through the gateway (REST and boto3's
secretsmanager), basic auth per host:port, a form login shared by two crawler replicas, and a
forward proxy that asks for credentials; no reply and no log line ever holds a secret."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web
from botocore.exceptions import ClientError

from runtime.bus import Bus
from runtime.service import Service
from runtime.settings import SharedSettings
from services.crawler.adapters.fetcher import Fetcher, ProxyAccess
from services.crawler.app import build as build_crawler
from services.crawler.config import Settings as CrawlerSettings
from services.crawler.domain.networks import NetworkPolicy
from services.crawler.domain.secrets import Credentials
from services.gateway.adapters.bootstrap import load_or_create_credentials
from services.gateway.config import BootstrapSettings
from services.indexer.app import build as build_indexer
from services.indexer.config import Settings as IndexerSettings
from tests.conftest import gateway_client, serving_gateway
from tests.integration.test_crawler import Site, Stack, page

SITE_PASSWORD = "wonder-land-7781"
FORM_PASSWORD = "open-sesame-4242"
PROXY_PASSWORD = "pr0xy-pass-9911"
PASSWORDS = (SITE_PASSWORD, FORM_PASSWORD, PROXY_PASSWORD)


def basic(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


def secret_string(username: str, password: str) -> str:
    return json.dumps({"username": username, "password": password})


@contextlib.asynccontextmanager
async def serving(app: web.Application) -> AsyncIterator[str]:
    runner = web.AppRunner(app)
    await runner.setup()
    tcp = web.TCPSite(runner, "127.0.0.1", 0)
    await tcp.start()
    port = tcp._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@dataclass
class Platform(Stack):
    """Two crawler replicas, an indexer and the gateway; every response body is kept."""

    bodies: list[str] = field(default_factory=list)

    async def rest(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        response = await self.http.request(method, path, headers=self.auth(), **kwargs)
        self.bodies.append(response.text)
        return response

    async def sync(self, index_id: str, source_id: str) -> dict[str, Any]:
        job = await super().sync(index_id, source_id)
        self.bodies.append(json.dumps(job))  # its errors and messages too
        return job

    async def index(self, name: str) -> str:
        created = await self.rest("POST", "/v1/indexes", json={"Name": name})
        assert created.status_code == 201, created.text
        return str(created.json()["Id"])

    async def secret(self, name: str, username: str, password: str) -> str:
        created = await self.rest(
            "POST",
            "/v1/secrets",
            json={"Name": name, "SecretString": secret_string(username, password)},
        )
        assert created.status_code == 201, created.text
        return str(created.json()["ARN"])

    async def source(self, index_id: str, name: str, web_crawler: dict[str, Any]) -> str:
        created = await self.rest(
            "POST",
            "/v1/data-sources",
            json={
                "Name": name,
                "IndexId": index_id,
                "Type": "WEBCRAWLER",
                "Configuration": {"WebCrawlerConfiguration": web_crawler},
            },
        )
        assert created.status_code == 201, created.text
        return str(created.json()["Id"])

    def assert_no_secret_in_replies(self) -> None:
        for body in self.bodies:
            for password in PASSWORDS:
                assert password not in body, body


@pytest.fixture
async def platform(nats_url: str, data_dir: Path) -> AsyncIterator[Platform]:
    async with two_crawlers(nats_url, data_dir) as running:
        yield running


@contextlib.asynccontextmanager
async def two_crawlers(nats_url: str, data_dir: Path) -> AsyncIterator[Platform]:
    """Two crawler replicas, an indexer and the gateway, each on its own bus connection."""
    shared = SharedSettings(data_dir=data_dir)
    names = ("crawler-a", "crawler-b", "indexer", "gateway")
    buses = [await Bus.connect(nats_url, source=n) for n in names]
    # Two URLs at a time per replica: a sync's first URLs spread over both replicas.
    crawler = CrawlerSettings(allowed_networks="127.0.0.0/8", concurrency=2)
    services: list[Service] = [
        await build_crawler(buses[0], crawler, shared),
        await build_crawler(buses[1], crawler, shared),
        await build_indexer(buses[2], IndexerSettings(commit_interval_s=0.05), shared),
    ]
    for service in services:
        await service.start()
    credentials = load_or_create_credentials(data_dir, BootstrapSettings())
    async with serving_gateway(buses[3], shared, request_timeout_s=20) as url:
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            yield Platform(
                http,
                url,
                credentials.api_key,
                credentials.access_key_id,
                credentials.secret_access_key,
                Site(),
            )
    for service in services:
        await service.stop()
    for bus in buses:
        await bus.close()


def seeds(url: str, **extra: Any) -> dict[str, Any]:
    return {
        "Urls": {"SeedUrlConfiguration": {"SeedUrls": [f"{url}/"]}},
        "CrawlDepth": 2,
        "MaxUrlsPerMinuteCrawlRate": 0,
        **extra,
    }


async def test_secrets_api_never_returns_a_value(platform: Platform, unique: str) -> None:
    name = f"site/{unique}@x+y"
    arn = await platform.secret(name, "alice", SITE_PASSWORD)
    assert arn == f"arn:aws:secretsmanager:us-east-1:000000000000:secret:{name}"
    again = await platform.rest(
        "POST", "/v1/secrets", json={"Name": name, "SecretString": secret_string("a", "b")}
    )
    assert again.status_code == 409 and "already exists" in again.text
    bad = await platform.rest(
        "POST",
        "/v1/secrets",
        json={"Name": f"bad-{unique}", "SecretString": json.dumps({"password": SITE_PASSWORD})},
    )
    assert bad.status_code == 400 and '"username"' in bad.json()["detail"]
    described = await platform.rest("GET", f"/v1/secrets/{name}")
    assert described.status_code == 200, described.text
    assert described.json()["ARN"] == arn and described.json()["DataSources"] == []
    listed = await platform.rest("GET", "/v1/secrets", params={"max_results": 100})
    assert name in [s["Name"] for s in listed.json()["SecretList"]]
    put = await platform.rest(
        "PUT", f"/v1/secrets/{name}/value", json={"SecretString": secret_string("al", "x" * 8)}
    )
    assert put.status_code == 200, put.text
    assert put.json()["VersionId"] != described.json()["VersionIdsToStages"]

    # Referenced by a data source: shown as the ARN only, and not deletable.
    index_id = await platform.index(f"secrets-{unique}")
    missing = await platform.rest(
        "POST",
        "/v1/data-sources",
        json={
            "Name": "missing",
            "IndexId": index_id,
            "Type": "WEBCRAWLER",
            "Configuration": {
                "WebCrawlerConfiguration": seeds(
                    "http://127.0.0.1:9",
                    ProxyConfiguration={"Host": "127.0.0.1", "Port": 9, "Credentials": "nope"},
                )
            },
        },
    )
    assert missing.status_code == 400 and "'nope': no such secret" in missing.text
    source_id = await platform.source(
        index_id,
        "protected",
        seeds(
            "http://127.0.0.1:9",
            AuthenticationConfiguration={
                "BasicAuthentication": [{"Host": "127.0.0.1", "Port": 9, "Credentials": name}]
            },
        ),
    )
    shown = await platform.rest(
        "GET", f"/v1/data-sources/{source_id}", params={"index_id": index_id}
    )
    basic_auth = shown.json()["Configuration"]["WebCrawlerConfiguration"][
        "AuthenticationConfiguration"
    ]["BasicAuthentication"]
    assert basic_auth == [{"Host": "127.0.0.1", "Port": 9, "Credentials": arn}]
    updated = await platform.rest(
        "PATCH",
        f"/v1/data-sources/{source_id}",
        json={
            "IndexId": index_id,
            "Configuration": {
                "WebCrawlerConfiguration": seeds(
                    "http://127.0.0.1:9",
                    AuthenticationConfiguration={
                        "BasicAuthentication": [
                            {"Host": "127.0.0.1", "Port": 9, "Credentials": f"gone-{unique}"}
                        ]
                    },
                )
            },
        },
    )
    assert updated.status_code == 400 and "no such secret" in updated.text
    refused = await platform.rest("DELETE", f"/v1/secrets/{name}")
    assert refused.status_code == 409 and "protected" in refused.text and source_id in refused.text
    users = (await platform.rest("GET", f"/v1/secrets/{name}")).json()["DataSources"]
    assert users == [{"Id": source_id, "IndexId": index_id, "Name": "protected"}]

    # boto3's secretsmanager client, unchanged: the five operations, and no way to read a value.
    client = gateway_client(
        "secretsmanager", platform.url, platform.access_key, platform.secret_key
    )
    other = f"boto/{unique}"
    created = await asyncio.to_thread(
        client.create_secret, Name=other, SecretString=secret_string("bob", FORM_PASSWORD)
    )
    assert created["ARN"].endswith(f":secret:{other}") and created["VersionId"]
    described_boto = await asyncio.to_thread(client.describe_secret, SecretId=created["ARN"])
    assert described_boto["Name"] == other and described_boto["CreatedDate"]
    listed_boto = await asyncio.to_thread(
        client.list_secrets, Filters=[{"Key": "name", "Values": ["boto/"]}]
    )
    assert other in [s["Name"] for s in listed_boto["SecretList"]]
    await asyncio.to_thread(
        client.put_secret_value, SecretId=other, SecretString=secret_string("bob", PROXY_PASSWORD)
    )
    with pytest.raises(ClientError) as exists:
        await asyncio.to_thread(client.create_secret, Name=other, SecretString="{}")
    assert exists.value.response["Error"]["Code"] in (
        "ResourceExistsException",
        "InvalidParameterException",
    )
    with pytest.raises(ClientError) as in_use:
        await asyncio.to_thread(client.delete_secret, SecretId=name)
    assert in_use.value.response["Error"]["Code"] == "InvalidRequestException"
    with pytest.raises(ClientError) as unknown:
        await asyncio.to_thread(client.get_secret_value, SecretId=other)
    assert unknown.value.response["Error"]["Code"] == "UnknownOperationException"
    await asyncio.to_thread(client.delete_secret, SecretId=other, ForceDeleteWithoutRecovery=True)
    with pytest.raises(ClientError) as gone:
        await asyncio.to_thread(client.describe_secret, SecretId=other)
    assert gone.value.response["Error"]["Code"] == "ResourceNotFoundException"

    # Free again once no data source uses it.
    deleted = await platform.rest(
        "DELETE", f"/v1/data-sources/{source_id}", params={"index_id": index_id}
    )
    assert deleted.status_code == 200, deleted.text
    assert (await platform.rest("DELETE", f"/v1/secrets/{name}")).status_code == 200
    assert (await platform.rest("GET", f"/v1/secrets/{name}")).status_code == 404
    platform.assert_no_secret_in_replies()
    await platform.drop(index_id)


async def test_basic_auth_goes_to_its_host_and_port_only(
    platform: Platform, unique: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    expected = basic("alice", SITE_PASSWORD)
    protected: list[tuple[str, str | None]] = []
    elsewhere: list[str | None] = []

    async def other_site(request: web.Request) -> web.Response:
        elsewhere.append(request.headers.get("Authorization"))
        return web.Response(
            text=page("Landing", "Kestrels hover over the landing."), content_type="text/html"
        )

    other_app = web.Application()
    other_app.router.add_get("/{tail:.*}", other_site)
    async with serving(other_app) as other_url:

        async def protected_site(request: web.Request) -> web.StreamResponse:
            protected.append((request.path, request.headers.get("Authorization")))
            if request.headers.get("Authorization") != expected:
                return web.Response(status=401, headers={"WWW-Authenticate": 'Basic realm="zoo"'})
            if request.path == "/moved.html":
                raise web.HTTPFound(f"{other_url}/landing.html")
            pages = {
                "/": page("Zoo", "Members only.", ["/a.html", "/b.html", "/moved.html"]),
                "/a.html": page("Aardvark", "Aardvarks dig for termites at night."),
                "/b.html": page("Badger", "Badgers build setts underground."),
            }
            if request.path not in pages:
                return web.Response(status=404)
            return web.Response(text=pages[request.path], content_type="text/html")

        app = web.Application()
        app.router.add_get("/{tail:.*}", protected_site)
        async with serving(app) as url:
            port = int(url.rsplit(":", 1)[1])
            index_id = await platform.index(f"basic-{unique}")
            await platform.secret(f"zoo-{unique}", "alice", SITE_PASSWORD)
            source_id = await platform.source(
                index_id,
                "zoo",
                seeds(
                    url,
                    AuthenticationConfiguration={
                        "BasicAuthentication": [
                            {"Host": "127.0.0.1", "Port": port, "Credentials": f"zoo-{unique}"}
                        ]
                    },
                ),
            )
            job = await platform.sync(index_id, source_id)
    assert job["Status"] == "SUCCEEDED", job
    assert job["TrellisMetrics"]["added"] == 4 and job["TrellisMetrics"]["failed"] == 0, job
    assert protected and all(auth == expected for _, auth in protected)
    assert {"/", "/a.html", "/b.html", "/moved.html"} <= {path for path, _ in protected}
    assert elsewhere == [None]  # the redirect to another port went without the credentials
    await platform.settle(index_id, 4)
    assert await platform.keyword(index_id, "aardvarks termites") == [f"{url}/a.html"]
    platform.assert_no_secret_in_replies()
    assert SITE_PASSWORD not in caplog.text and expected.split()[1] not in caplog.text
    await platform.drop(index_id)


async def test_form_login_once_per_sync_across_replicas(
    platform: Platform, unique: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.INFO, logger="httpcore")  # as configure_logging sets it
    logins: list[dict[str, str]] = []
    refused: list[str] = []
    session = f"s-{unique}"
    pages = {
        "/": page("Library", "Welcome back.", [f"/shelf/{i}.html" for i in range(8)]),
        "/welcome": page("Welcome", "You are signed in to the library."),
        **{
            f"/shelf/{i}.html": page(f"Shelf {i}", f"Shelf {i} holds books about herons.")
            for i in range(8)
        },
    }

    async def login(request: web.Request) -> web.Response:
        form = dict(await request.post())
        logins.append({k: str(v) for k, v in form.items()})
        await asyncio.sleep(0.2)  # slow enough that both replicas want it at once
        if form != {"user": "bob", "pass": FORM_PASSWORD, "csrf": "t0ken"}:
            return web.Response(status=403, text="bad credentials")
        response = web.HTTPFound("/welcome")
        response.set_cookie("session", session, path="/", httponly=True)
        raise response

    async def content(request: web.Request) -> web.Response:
        if request.path == "/robots.txt":
            return web.Response(status=404)
        if request.cookies.get("session") != session:
            refused.append(request.path)
            return web.Response(status=403, text="sign in first")
        return web.Response(text=pages[request.path], content_type="text/html")

    app = web.Application()
    app.router.add_post("/login", login)
    app.router.add_get("/{tail:.*}", content)
    async with serving(app) as url:
        index_id = await platform.index(f"form-{unique}")
        await platform.secret(f"library-{unique}", "bob", FORM_PASSWORD)
        await platform.secret(f"wrong-{unique}", "bob", "not-the-password")

        def form(secret: str) -> dict[str, Any]:
            return {
                "FormAuthentication": {
                    "LoginUrl": f"{url}/login",
                    "UsernameField": "user",
                    "PasswordField": "pass",
                    "Credentials": secret,
                    "ExtraFields": {"csrf": "t0ken"},
                }
            }

        shelves = [f"{url}/shelf/{i}.html" for i in range(4)]
        source_id = await platform.source(
            index_id,
            "library",
            seeds(
                url,
                Urls={"SeedUrlConfiguration": {"SeedUrls": [f"{url}/", *shelves]}},
                AuthenticationConfiguration=form(f"library-{unique}"),
            ),
        )
        job = await platform.sync(index_id, source_id)
        assert job["Status"] == "SUCCEEDED", job
        assert job["TrellisMetrics"]["added"] == 9 and job["TrellisMetrics"]["failed"] == 0, job
        assert len(logins) == 1 and refused == []
        await platform.settle(index_id, 9)

        # A login that fails fails the sync, deletes nothing and says why (without the password).
        logins.clear()
        wrong = await platform.source(
            index_id, "wrong", seeds(url, AuthenticationConfiguration=form(f"wrong-{unique}"))
        )
        failed = await platform.sync(index_id, wrong)
        assert failed["Status"] == "FAILED", failed
        assert "form login failed: HTTP 403" in failed["ErrorMessage"]
        assert len(logins) == 1 and refused == []
        # The next sync of the good source logs in again: a session lives for one sync.
        again = await platform.sync(index_id, source_id)
        assert again["Status"] == "SUCCEEDED" and again["TrellisMetrics"]["unchanged"] == 9
        assert len(logins) == 2
    platform.assert_no_secret_in_replies()
    assert FORM_PASSWORD not in caplog.text and session not in caplog.text
    await platform.drop(index_id)


@dataclass
class ForwardProxy:
    """An HTTP forward proxy (absolute-form GET only) that wants basic proxy credentials."""

    credentials: str
    seen: list[str] = field(default_factory=list)
    refused: int = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request_line = (await reader.readline()).decode()
            headers: dict[str, str] = {}
            while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
                key, _, value = line.decode().partition(":")
                headers[key.strip().lower()] = value.strip()
            method, target, _ = request_line.split(" ", 2)
            if headers.get("proxy-authorization") != self.credentials or method != "GET":
                self.refused += 1
                writer.write(
                    b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                    b'Proxy-Authenticate: Basic realm="proxy"\r\n'
                    b"Content-Length: 0\r\nConnection: close\r\n\r\n"
                )
                return
            self.seen.append(target)
            async with httpx.AsyncClient(trust_env=False) as client:
                upstream = await client.get(target, headers={"Via": "1.1 test-proxy"})
            kind = upstream.headers.get("content-type", "text/plain")
            writer.write(
                f"HTTP/1.1 {upstream.status_code} Relayed\r\nContent-Type: {kind}\r\n"
                f"Content-Length: {len(upstream.content)}\r\nConnection: close\r\n\r\n".encode()
                + upstream.content
            )
        finally:
            await writer.drain()
            writer.close()


@contextlib.asynccontextmanager
async def proxying(proxy: ForwardProxy, host: str = "127.0.0.1") -> AsyncIterator[int]:
    server = await asyncio.start_server(proxy.handle, host, 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


async def test_a_crawl_through_a_proxy_with_credentials(
    platform: Platform, unique: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    proxy = ForwardProxy(basic("squid", PROXY_PASSWORD))
    direct: list[str] = []

    async def site(request: web.Request) -> web.Response:
        if request.headers.get("Via") != "1.1 test-proxy":
            direct.append(request.path)
        if request.path == "/robots.txt":
            return web.Response(status=404)
        pages = {
            "/": page("Harbour", "Boats in the harbour.", ["/ferry.html"]),
            "/ferry.html": page("Ferry", "The ferry leaves at dawn for the islands."),
        }
        return web.Response(text=pages[request.path], content_type="text/html")

    app = web.Application()
    app.router.add_get("/{tail:.*}", site)
    async with serving(app) as url, proxying(proxy) as proxy_port:
        index_id = await platform.index(f"proxy-{unique}")
        await platform.secret(f"squid-{unique}", "squid", PROXY_PASSWORD)
        source_id = await platform.source(
            index_id,
            "harbour",
            seeds(
                url,
                ProxyConfiguration={
                    "Host": "127.0.0.1",
                    "Port": proxy_port,
                    "Credentials": f"squid-{unique}",
                },
            ),
        )
        job = await platform.sync(index_id, source_id)
        assert job["Status"] == "SUCCEEDED", job
        assert job["TrellisMetrics"]["added"] == 2, job
        assert set(proxy.seen) == {f"{url}/robots.txt", f"{url}/", f"{url}/ferry.html"}
        assert direct == [] and proxy.refused == 0

        # Without its credentials the proxy answers 407 for every page.
        bare = await platform.source(
            index_id,
            "bare",
            seeds(url, ProxyConfiguration={"Host": "127.0.0.1", "Port": proxy_port}),
        )
        refused = await platform.sync(index_id, bare)
        assert refused["TrellisMetrics"]["added"] == 0 and proxy.refused >= 1, refused
        assert any("HTTP 407" in e["message"] for e in refused["Errors"]), refused
    await platform.settle(index_id, 2)
    platform.assert_no_secret_in_replies()
    assert PROXY_PASSWORD not in caplog.text
    assert base64.b64encode(f"squid:{PROXY_PASSWORD}".encode()).decode() not in caplog.text
    await platform.drop(index_id)


async def test_the_proxy_must_pass_the_network_policy_and_pages_are_still_checked() -> None:
    proxy = ForwardProxy(basic("squid", PROXY_PASSWORD))
    credentials = Credentials("squid", PROXY_PASSWORD)
    async with proxying(proxy, "127.0.0.2") as port:
        # Only 127.0.0.1 is open: the proxy on 127.0.0.2 is refused before any connection.
        fetcher = Fetcher(
            NetworkPolicy.from_setting("127.0.0.1/32"),
            user_agent="t",
            proxy=ProxyAccess("127.0.0.2", port, credentials),
        )
        fetched = await fetcher.get("http://127.0.0.1:9/", max_bytes=1000)
        await fetcher.close()
        assert fetched.refused and fetched.error is not None
        assert fetched.error.startswith("proxy: ") and "loopback" in fetched.error
        # With the proxy allowed, a page at a cloud metadata address is still refused.
        fetcher = Fetcher(
            NetworkPolicy.from_setting("127.0.0.0/8"),
            user_agent="t",
            proxy=ProxyAccess("127.0.0.2", port, credentials),
        )
        metadata = await fetcher.get("http://169.254.169.254/latest/", max_bytes=1000)
        await fetcher.close()
        assert metadata.refused and "cloud metadata" in (metadata.error or "")
    assert proxy.seen == [] and proxy.refused == 0
    # A proxy that is not there: the error names neither its password nor its credentials.
    fetcher = Fetcher(
        NetworkPolicy.from_setting("127.0.0.0/8"),
        user_agent="t",
        proxy=ProxyAccess("127.0.0.1", 9, credentials),
    )
    unreachable = await fetcher.get("http://127.0.0.1:9/page", max_bytes=1000)
    await fetcher.close()
    assert unreachable.error is not None and PROXY_PASSWORD not in unreachable.error
