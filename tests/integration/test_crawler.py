"""The crawler end to end: a site served on loopback, real NATS, the crawler, indexer and gateway,
driven by boto3's kendra client; incremental syncs, deletions, protection and SSRF refusals, and
connections pinned to the addresses that were checked (DNS rebinding)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import gzip
import socket
import ssl
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from runtime.bus import Bus
from runtime.service import Service
from runtime.settings import SharedSettings
from services.crawler.adapters import fetcher as fetcher_module
from services.crawler.adapters.fetcher import Access, Fetcher
from services.crawler.app import build as build_crawler
from services.crawler.config import Settings as CrawlerSettings
from services.crawler.domain.networks import NetworkPolicy
from services.crawler.domain.secrets import Credentials
from services.gateway.adapters.bootstrap import load_or_create_credentials
from services.gateway.config import BootstrapSettings
from services.indexer.app import build as build_indexer
from services.indexer.config import Settings as IndexerSettings
from tests.conftest import gateway_client, serving_gateway
from tests.pdf import make_pdf


def page(title: str, body: str, links: Sequence[str] = ()) -> str:
    anchors = "".join(f'<a href="{href}">{href}</a> ' for href in links)
    return (
        f"<html lang='en'><head><title>{title}</title></head><body>"
        f"<nav>Site menu {anchors}</nav><main><h1>{title}</h1><p>{body}</p></main></body></html>"
    )


@dataclass
class Site:
    """A small web site whose pages the test changes between syncs."""

    pages: dict[str, tuple[int, str, str | bytes]] = field(
        default_factory=dict
    )  # path -> status, type, body
    hits: list[str] = field(default_factory=list)
    url: str = ""
    etags: dict[str, str] = field(default_factory=dict)  # path -> ETag it is served with
    not_modified: list[str] = field(default_factory=list)  # paths answered 304

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.hits.append(request.path)
        etag = self.etags.get(request.path)
        if etag is not None and request.headers.get("If-None-Match") == etag:
            self.not_modified.append(request.path)
            return web.Response(status=304, headers={"ETag": etag})
        if request.path == "/redirect-to-metadata":
            raise web.HTTPFound("http://169.254.169.254/latest/meta-data/")
        status, kind, body = self.pages.get(request.path, (404, "text/plain", "not found"))
        headers = {"ETag": etag} if etag is not None else None
        if isinstance(body, bytes):
            return web.Response(status=status, body=body, content_type=kind, headers=headers)
        if kind == "application/gzip":
            sitemap = body.replace("{site}", self.url).encode()
            return web.Response(status=status, body=gzip.compress(sitemap), content_type=kind)
        text = body.replace("{site}", self.url)
        return web.Response(status=status, text=text, content_type=kind, headers=headers)


FILLER = [f"/filler/{i}.html" for i in range(12)]


def build_site(site: Site) -> None:
    html = "text/html"
    site.pages = {
        "/robots.txt": (
            200,
            "text/plain",
            "User-agent: *\nDisallow: /private/\nSitemap: {site}/sitemap.xml.gz\n",
        ),
        "/sitemap.xml.gz": (
            200,
            "application/gzip",
            '<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
            "<url><loc>{site}/from-sitemap.html</loc><lastmod>2026-01-01</lastmod></url></urlset>",
        ),
        "/from-sitemap.html": (200, html, page("Lemurs", "Lemurs sunbathe in the morning.")),
        "/": (
            200,
            html,
            page(
                "Home",
                "Welcome to the animal pages.",
                [
                    "/a.html",
                    "/b.html",
                    "/private/secret.html",
                    "/big.html",
                    "/trap/1",
                    "/redirect-to-metadata",
                    "http://other.invalid/x",
                    *FILLER,
                ],
            ),
        ),
        # dup.html repeats a.html's main text and is only reached through it (so after it).
        "/a.html": (
            200,
            html,
            page("Alpacas", "Alpacas hum when they are curious.", ["/b.html", "/dup.html"]),
        ),
        "/dup.html": (200, html, page("Alpacas", "Alpacas hum when they are curious.")),
        "/b.html": (200, html, page("Bison", "Bison can run at fifty kilometres an hour.")),
        "/private/secret.html": (200, html, page("Secret", "Nobody may crawl this.")),
        "/big.html": (200, html, page("Big", "x " * 700_000)),
        "/trap/1": (200, html, page("Calendar 1", "Day one.", ["/trap/2"])),
        "/trap/2": (200, html, page("Calendar 2", "Day two.", ["/trap/3"])),
        "/trap/3": (200, html, page("Calendar 3", "Day three.", ["/trap/4"])),
        **{
            path: (200, html, page(f"Filler {i}", f"Filler page number {i} about owls."))
            for i, path in enumerate(FILLER)
        },
    }


@dataclass
class Stack:
    http: httpx.AsyncClient
    url: str
    key: str
    access_key: str
    secret_key: str
    site: Site

    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    def kendra(self) -> Any:
        return gateway_client("kendra", self.url, self.access_key, self.secret_key)

    async def call(self, method: str, **params: Any) -> Any:
        client = self.kendra()
        return await asyncio.to_thread(getattr(client, method), **params)

    async def sync(self, index_id: str, source_id: str) -> dict[str, Any]:
        started = await self.call("start_data_source_sync_job", Id=source_id, IndexId=index_id)
        listed = await self.call("list_data_source_sync_jobs", Id=source_id, IndexId=index_id)
        assert started["ExecutionId"] in [j["ExecutionId"] for j in listed["History"]]
        for _ in range(600):
            # REST: boto3 drops the members Kendra does not have (every counter, the errors).
            response = await self.http.get(
                f"/v1/data-sources/{source_id}/sync-jobs",
                params={"index_id": index_id},
                headers=self.auth(),
            )
            assert response.status_code == 200, response.text
            history = response.json()["History"]
            job = next(j for j in history if j["ExecutionId"] == started["ExecutionId"])
            if job["Status"] in ("SUCCEEDED", "FAILED", "STOPPED", "ABORTED"):
                return dict(job)
            await asyncio.sleep(0.1)
        raise AssertionError(f"the sync never ended: {job}")

    async def keyword(self, index_id: str, text: str) -> list[str]:
        response = await self.http.post(
            f"/v1/indexes/{index_id}/query",
            json={"QueryText": text, "RankingMode": "KEYWORD"},
            headers=self.auth(),
        )
        assert response.status_code == 200, response.text
        return [i["DocumentId"] for i in response.json()["ResultItems"] if i["Type"] == "DOCUMENT"]

    async def drop(self, index_id: str) -> None:
        """Delete the index: later tests' replicas then skip its documents when they replay."""
        response = await self.http.delete(f"/v1/indexes/{index_id}", headers=self.auth())
        assert response.status_code == 200, response.text

    async def settle(self, index_id: str, documents: int) -> None:
        for _ in range(200):
            described = (await self.http.get(f"/v1/indexes/{index_id}", headers=self.auth())).json()
            if (
                described["IndexStatistics"]["TextDocumentStatistics"]["IndexedTextDocumentsCount"]
                == documents
            ):
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"the index never held {documents} documents: {described}")


async def _serve(site: Site) -> AsyncIterator[web.AppRunner]:
    app = web.Application()
    app.router.add_route("GET", "/{tail:.*}", site.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    tcp = web.TCPSite(runner, "127.0.0.1", 0)
    await tcp.start()
    port = tcp._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    site.url = f"http://127.0.0.1:{port}"
    yield runner
    await runner.cleanup()


@pytest.fixture
async def stack(
    nats_url: str, data_dir: Path, request: pytest.FixtureRequest
) -> AsyncIterator[Stack]:
    allowed = getattr(request, "param", "127.0.0.0/8")
    site = Site()
    build_site(site)
    shared = SharedSettings(data_dir=data_dir)
    buses = [await Bus.connect(nats_url, source=n) for n in ("crawler", "indexer", "gateway")]
    services: list[Service] = [
        await build_crawler(buses[0], CrawlerSettings(allowed_networks=allowed), shared),
        await build_indexer(buses[1], IndexerSettings(commit_interval_s=0.05), shared),
    ]
    for service in services:
        await service.start()
    credentials = load_or_create_credentials(data_dir, BootstrapSettings())
    async for _ in _serve(site):
        async with serving_gateway(buses[2], shared, request_timeout_s=20) as url:
            async with httpx.AsyncClient(base_url=url, timeout=30) as http:
                yield Stack(
                    http,
                    url,
                    credentials.api_key,
                    credentials.access_key_id,
                    credentials.secret_access_key,
                    site,
                )
    for service in services:
        await service.stop()
    for bus in buses:
        await bus.close()


def _web_crawler(site: Site, **extra: Any) -> dict[str, Any]:
    return {
        "WebCrawlerConfiguration": {
            "Urls": {"SeedUrlConfiguration": {"SeedUrls": [f"{site.url}/"]}},
            "CrawlDepth": 3,
            "MaxContentSizePerPageInMegaBytes": 1,
            **extra,
        }
    }


async def test_sync_indexes_the_site_then_recrawls_incrementally(stack: Stack, unique: str) -> None:
    site = stack.site
    index_id = (
        await stack.call("create_index", Name=f"web-{unique}", RoleArn="arn:aws:iam::0:role/k")
    )["Id"]
    source_id = (
        await stack.call(
            "create_data_source",
            Name="animals",
            IndexId=index_id,
            Type="WEBCRAWLER",
            Configuration=_web_crawler(site),
        )
    )["Id"]
    described = await stack.call("describe_data_source", Id=source_id, IndexId=index_id)
    assert described["Type"] == "WEBCRAWLER" and described["Name"] == "animals"

    first = await stack.sync(index_id, source_id)
    assert first["Status"] == "SUCCEEDED", first
    metrics = first["TrellisMetrics"]
    # Home, a, b, trap/1 and trap/2 (depth 3 stops the calendar), 12 fillers, and the page
    # only the sitemap named in robots.txt lists.
    assert metrics["added"] == 18, first
    assert metrics["skipped_robots"] == 1 and "/private/secret.html" not in site.hits
    assert metrics["skipped_duplicate"] == 1 and metrics["skipped_size"] == 1
    assert metrics["skipped_scope"] == 1
    assert "/trap/3" not in site.hits
    errors = {e["url"]: e["message"] for e in first["Errors"]}
    assert "cloud metadata" in errors[f"{site.url}/redirect-to-metadata"]
    assert first["Metrics"]["DocumentsAdded"] == "18"
    await stack.settle(index_id, 18)
    assert await stack.keyword(index_id, "lemurs sunbathe") == [f"{site.url}/from-sitemap.html"]
    assert await stack.keyword(index_id, "alpacas hum") == [f"{site.url}/a.html"]

    # Between syncs: one page changes, one disappears.
    site.pages["/b.html"] = (
        200,
        "text/html",
        page("Bison", "Bison wallow in dust to keep insects away."),
    )
    del site.pages["/a.html"]
    site.hits.clear()
    second = await stack.sync(index_id, source_id)
    assert second["Status"] == "SUCCEEDED", second
    assert second["TrellisMetrics"]["modified"] == 1
    assert second["TrellisMetrics"]["deleted"] == 1
    assert second["TrellisMetrics"]["added"] == 0  # dup.html was only reachable through a.html
    assert second["TrellisMetrics"]["unchanged"] == 16
    await stack.settle(index_id, 17)
    assert await stack.keyword(index_id, "wallow insects") == [f"{site.url}/b.html"]
    assert await stack.keyword(index_id, "fifty kilometres") == []

    # Deletion protection: losing most of the site deletes nothing and fails the sync.
    for path in FILLER[:6]:
        del site.pages[path]
    third = await stack.sync(index_id, source_id)
    assert third["Status"] == "FAILED" and "nothing was deleted" in third["ErrorMessage"]
    await stack.settle(index_id, 17)
    assert await stack.keyword(index_id, "owls filler number 1")  # still there

    # Deleting the source takes its documents out of the index, as Kendra does.
    await stack.call("delete_data_source", Id=source_id, IndexId=index_id)
    await stack.settle(index_id, 0)
    deadline = asyncio.get_running_loop().time() + 15
    while asyncio.get_running_loop().time() < deadline:
        listed = await stack.call("list_data_sources", IndexId=index_id)
        if not listed["SummaryItems"]:
            break
        assert listed["SummaryItems"][0]["Status"] == "DELETING"
        await asyncio.sleep(0.05)
    assert listed["SummaryItems"] == []
    await stack.drop(index_id)


async def _titles(stack: Stack, index_id: str, text: str) -> dict[str, str]:
    response = await stack.http.post(
        f"/v1/indexes/{index_id}/query",
        json={"QueryText": text, "RankingMode": "KEYWORD"},
        headers=stack.auth(),
    )
    assert response.status_code == 200, response.text
    items = [i for i in response.json()["ResultItems"] if i["Type"] == "DOCUMENT"]
    return {i["DocumentId"]: i["DocumentTitle"]["Text"] for i in items}


def _sitemap(entries: dict[str, str]) -> str:
    urls = "".join(
        f"<url><loc>{{site}}{path}</loc><lastmod>{lastmod}</lastmod></url>"
        for path, lastmod in entries.items()
    )
    return (
        '<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
        f"{urls}</urlset>"
    )


async def test_pdfs_tracking_parameters_and_sitemap_lastmod(stack: Stack, unique: str) -> None:
    site = stack.site
    html = "text/html"
    site.pages = {
        "/": (
            200,
            html,
            page(
                "Home",
                "Field guides.",
                ["/files/capybara.pdf", "/files/untyped", "/b.html?sessionid=42&utm_source=feed"],
            ),
        ),
        "/files/capybara.pdf": (
            200,
            "application/pdf",
            make_pdf(["Capybaras graze on aquatic plants."], title="Capybara field guide"),
        ),
        # A server that does not know the type: the body's %PDF- signature decides.
        "/files/untyped": (200, "application/octet-stream", make_pdf(["Tapirs browse at dusk."])),
        "/b.html": (200, html, page("Bison", "Bison wallow in dust.", ["/c.html"])),
        "/c.html": (200, html, page("Cranes", "Cranes dance in winter.")),
        "/sitemap.xml": (
            200,
            "application/xml",
            _sitemap({"/old.html": "2020-01-01", "/fresh.html": "2100-01-01T00:00:00Z"}),
        ),
        "/old.html": (200, html, page("Old", "Okapis are shy.", ["/only-from-old.html"])),
        "/only-from-old.html": (200, html, page("Hidden", "Quokkas smile at strangers.")),
        "/fresh.html": (200, html, page("Fresh", "Newts regrow their limbs.")),
    }
    site.etags["/b.html"] = '"bison-1"'
    index_id = (
        await stack.call("create_index", Name=f"pdf-{unique}", RoleArn="arn:aws:iam::0:role/k")
    )["Id"]
    configuration = _web_crawler(site, TrackingParameters=["SessionID"])
    configuration["WebCrawlerConfiguration"]["Urls"]["SiteMapsConfiguration"] = {
        "SiteMaps": [f"{site.url}/sitemap.xml"]
    }
    # boto3 drops members Kendra does not have (TrackingParameters): REST keeps them.
    created = await stack.http.post(
        "/v1/data-sources",
        json={
            "Name": "guides",
            "IndexId": index_id,
            "Type": "WEBCRAWLER",
            "Configuration": configuration,
        },
        headers=stack.auth(),
    )
    assert created.status_code == 201, created.text
    source_id = created.json()["Id"]

    first = await stack.sync(index_id, source_id)
    assert first["Status"] == "SUCCEEDED", first
    assert first["TrellisMetrics"]["added"] == 8, first
    await stack.settle(index_id, 8)
    assert await _titles(stack, index_id, "capybaras graze") == {
        f"{site.url}/files/capybara.pdf": "Capybara field guide"
    }
    assert await _titles(stack, index_id, "tapirs browse dusk") == {
        f"{site.url}/files/untyped": "untyped"
    }
    # Only the configured parameter goes: utm_source is no tracking parameter of this source.
    assert await stack.keyword(index_id, "bison wallow") == [f"{site.url}/b.html?utm_source=feed"]

    # The sitemap says old.html has not changed since: no request, and the page only it links
    # to is still reached. fresh.html's lastmod is newer than any fetch: it is requested.
    # b.html answers 304: the page only it links to is still reached too.
    site.hits.clear()
    second = await stack.sync(index_id, source_id)
    assert second["Status"] == "SUCCEEDED", second
    assert "/old.html" not in site.hits
    assert "/fresh.html" in site.hits and "/only-from-old.html" in site.hits
    assert site.not_modified == ["/b.html"] and "/c.html" in site.hits
    metrics = second["TrellisMetrics"]
    assert (metrics["unchanged"], metrics["added"], metrics["deleted"]) == (8, 0, 0), second
    await stack.settle(index_id, 8)

    # A newer lastmod: fetched again, and the change indexed.
    site.pages["/sitemap.xml"] = (
        200,
        "application/xml",
        _sitemap({"/old.html": "2099-01-01", "/fresh.html": "2100-01-01T00:00:00Z"}),
    )
    site.pages["/old.html"] = (200, html, page("Old", "Okapis eat clay.", ["/only-from-old.html"]))
    site.hits.clear()
    third = await stack.sync(index_id, source_id)
    assert third["Status"] == "SUCCEEDED" and third["TrellisMetrics"]["modified"] == 1, third
    assert "/old.html" in site.hits
    await stack.settle(index_id, 8)
    assert await stack.keyword(index_id, "okapis clay") == [f"{site.url}/old.html"]
    await stack.drop(index_id)


async def test_template_data_source_through_boto3(stack: Stack, unique: str) -> None:
    import botocore.exceptions

    site = stack.site
    site.pages["/"] = (
        200,
        "text/html",
        page("Home", "Welcome to the animal pages.", ["/a.html", "/b.html", "/files/tapirs.pdf"]),
    )
    site.pages["/files/tapirs.pdf"] = (200, "application/pdf", make_pdf(["Tapirs swim well."]))
    index_id = (
        await stack.call("create_index", Name=f"tpl-{unique}", RoleArn="arn:aws:iam::0:role/k")
    )["Id"]
    template: dict[str, Any] = {
        "version": "1.0.0",
        "type": "WEBCRAWLERV2",
        "syncMode": "FULL_CRAWL",
        "connectionConfiguration": {
            "repositoryEndpointMetadata": {
                "seedUrlConnections": [{"seedUrl": f"{site.url}/"}],
                "authentication": "NoAuthentication",
            }
        },
        "additionalProperties": {
            "crawlDepth": "2",
            "maxLinksPerUrl": "100",
            "maxFileSize": "1",
            "rateLimit": "300",
            "crawlSubDomain": False,
            "crawlAllDomain": False,
            "honorRobots": True,
            "crawlAttachments": False,
        },
        "repositoryConfigurations": {
            "webPage": {
                "fieldMappings": [
                    {
                        "indexFieldName": "_source_uri",
                        "indexFieldType": "STRING",
                        "dataSourceFieldName": "sourceUrl",
                    }
                ]
            }
        },
    }
    source_id = (
        await stack.call(
            "create_data_source",
            Name="template",
            IndexId=index_id,
            Type="TEMPLATE",
            Configuration={"TemplateConfiguration": {"Template": template}},
        )
    )["Id"]
    described = await stack.call("describe_data_source", Id=source_id, IndexId=index_id)
    assert described["Type"] == "TEMPLATE"
    assert described["Configuration"]["TemplateConfiguration"]["Template"] == template
    job = await stack.sync(index_id, source_id)
    assert job["Status"] == "SUCCEEDED", job
    # Home, a.html, b.html and the page of the sitemap robots.txt names; crawlAttachments
    # false leaves the PDF out.
    assert job["TrellisMetrics"]["added"] == 4, job
    await stack.settle(index_id, 4)
    assert await stack.keyword(index_id, "alpacas hum") == [f"{site.url}/a.html"]
    assert await stack.keyword(index_id, "tapirs swim") == []

    template["connectionConfiguration"]["repositoryEndpointMetadata"]["authentication"] = "Form"
    with pytest.raises(botocore.exceptions.ClientError) as refused:
        await stack.call(
            "create_data_source",
            Name="form",
            IndexId=index_id,
            Type="TEMPLATE",
            Configuration={"TemplateConfiguration": {"Template": template}},
        )
    assert refused.value.response["Error"]["Code"] == "ValidationException"
    assert "NoAuthentication" in refused.value.response["Error"]["Message"]
    # Deleting the index deletes its data sources too, as in Kendra.
    await stack.drop(index_id)
    deadline = asyncio.get_running_loop().time() + 15
    while asyncio.get_running_loop().time() < deadline:
        gone = await stack.http.get(
            f"/v1/data-sources/{source_id}",
            params={"index_id": index_id},
            headers=stack.auth(),
            timeout=5,
        )
        if gone.status_code == 404:
            break
        await asyncio.sleep(0.1)
    assert gone.status_code == 404, gone.text


@pytest.mark.parametrize("stack", [""], indirect=True)
async def test_loopback_is_refused_without_the_allow_list(stack: Stack, unique: str) -> None:
    index_id = (
        await stack.call("create_index", Name=f"ssrf-{unique}", RoleArn="arn:aws:iam::0:role/k")
    )["Id"]
    source_id = (
        await stack.call(
            "create_data_source",
            Name="loopback",
            IndexId=index_id,
            Type="WEBCRAWLER",
            Configuration=_web_crawler(stack.site),
        )
    )["Id"]
    job = await stack.sync(index_id, source_id)
    assert job["Status"] == "SUCCEEDED"
    assert job["TrellisMetrics"]["added"] == 0 and stack.site.hits == []
    assert any("loopback" in e["message"] for e in job["Errors"]), job
    await stack.drop(index_id)


async def test_bad_configuration_is_refused(stack: Stack, unique: str) -> None:
    index_id = (
        await stack.call("create_index", Name=f"bad-{unique}", RoleArn="arn:aws:iam::0:role/k")
    )["Id"]
    for configuration, problem in (
        ({}, "WebCrawlerConfiguration"),
        (
            {
                "WebCrawlerConfiguration": {
                    "Urls": {"SeedUrlConfiguration": {"SeedUrls": ["ftp://x/"]}}
                }
            },
            "http(s)",
        ),
        (_web_crawler(stack.site, CrawlDepth=11), "CrawlDepth"),
        (_web_crawler(stack.site, UrlInclusionPatterns=["(unclosed"]), "unclosed"),
    ):
        response = await stack.http.post(
            "/v1/data-sources",
            json={
                "Name": "bad",
                "IndexId": index_id,
                "Type": "WEBCRAWLER",
                "Configuration": configuration,
            },
            headers=stack.auth(),
        )
        assert response.status_code == 400, response.text
        assert problem in response.text
    missing = await stack.http.post(
        "/v1/data-sources",
        json={
            "Name": "x",
            "IndexId": "0" * 36,
            "Type": "WEBCRAWLER",
            "Configuration": _web_crawler(stack.site),
        },
        headers=stack.auth(),
    )
    assert missing.status_code == 404


async def test_cli_creates_syncs_and_reports(
    stack: Stack, unique: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from trellis import cli

    monkeypatch.setenv("TRELLIS_GATEWAY_URL", stack.url)
    monkeypatch.setenv("TRELLIS_API_KEY", stack.key)
    name = f"cli-{unique}"
    created = await stack.http.post("/v1/indexes", json={"Name": name}, headers=stack.auth())
    assert created.status_code == 201

    async def run(*argv: str) -> str:
        assert await asyncio.to_thread(cli.main, list(argv)) == 0
        return capsys.readouterr().out

    out = await run(
        "crawl",
        "create",
        "--index",
        name,
        "--name",
        "site",
        "--seed",
        f"{stack.site.url}/",
        "--depth",
        "1",
    )
    assert out.startswith("created data source")
    assert "started sync" in await run("crawl", "sync", "--index", name, "--source", "site")
    for _ in range(200):
        status = await run("crawl", "status", "--index", name, "--source", "site")
        if "SUCCEEDED" in status:
            break
        await asyncio.sleep(0.1)
    assert "SUCCEEDED" in status
    assert (
        await asyncio.to_thread(cli.main, ["crawl", "stop", "--index", name, "--source", "site"])
        == 2
    )
    assert "no running sync" in capsys.readouterr().err


async def test_a_scheduled_sync_starts_when_due(nats_url: str, data_dir: Path, unique: str) -> None:
    from datetime import UTC, datetime, timedelta

    from contracts import topology
    from runtime.kv import ResourceStore
    from runtime.topology import ensure_bucket
    from services.crawler.domain.records import DataSourceRecord, SyncJob
    from services.crawler.domain.sync import SyncStatus

    site = Site()
    build_site(site)
    shared = SharedSettings(data_dir=data_dir)
    buses = [await Bus.connect(nats_url, source=n) for n in ("crawler", "indexer", "gateway")]
    crawler = await build_crawler(
        buses[0], CrawlerSettings(allowed_networks="127.0.0.0/8", schedule_check_s=0.2), shared
    )
    indexer = await build_indexer(buses[1], IndexerSettings(commit_interval_s=0.05), shared)
    for service in (crawler, indexer):
        await service.start()
    credentials = load_or_create_credentials(data_dir, BootstrapSettings())
    async for _ in _serve(site):
        async with serving_gateway(buses[2], shared, request_timeout_s=20) as url:
            async with httpx.AsyncClient(base_url=url, timeout=30) as http:
                stack = Stack(http, url, credentials.api_key, "", "", site)
                auth = stack.auth()
                index_id = (
                    await http.post("/v1/indexes", json={"Name": f"cron-{unique}"}, headers=auth)
                ).json()["Id"]
                created = await http.post(
                    "/v1/data-sources",
                    json={
                        "Name": "nightly",
                        "IndexId": index_id,
                        "Type": "WEBCRAWLER",
                        "Configuration": _web_crawler(site, CrawlDepth=1),
                        "Schedule": "cron(0 2 * * ? *)",
                    },
                    headers=auth,
                )
                assert created.status_code == 201, created.text
                source_id = created.json()["Id"]
                history = f"/v1/data-sources/{source_id}/sync-jobs"
                await asyncio.sleep(0.6)
                assert (
                    await http.get(history, params={"index_id": index_id}, headers=auth)
                ).json()["History"] == []
                # The source was created two days ago: its 02:00 sync is overdue and starts.
                bucket = await ensure_bucket(buses[0].js, topology.CRAWL_SOURCES)
                sources = ResourceStore(bucket, DataSourceRecord, "data source", prefix="source.")
                await sources.mutate(
                    source_id,
                    lambda s: s.model_copy(
                        update={"created_at": datetime.now(UTC) - timedelta(days=2)}
                    ),
                )
                for _ in range(100):
                    jobs = (
                        await http.get(history, params={"index_id": index_id}, headers=auth)
                    ).json()["History"]
                    if jobs:
                        break
                    await asyncio.sleep(0.1)
                assert len(jobs) == 1
                await asyncio.sleep(0.6)  # the next firing is tomorrow: no second sync
                jobs = (
                    await http.get(history, params={"index_id": index_id}, headers=auth)
                ).json()["History"]
                assert len(jobs) == 1
                aborted = await http.get(
                    history,
                    params={"index_id": index_id, "status": "ABORTED", "max_results": 1},
                    headers=auth,
                )
                assert aborted.status_code == 200 and aborted.json()["History"] == []
                # A replica that died while finishing a sync leaves it SYNCING_INDEXING: any
                # replica's stalled-sync finisher completes it.
                syncs = ResourceStore(bucket, SyncJob, "sync job", prefix="job.")
                hours_ago = datetime.now(UTC) - timedelta(hours=2)
                await syncs.create(
                    f"{source_id}.stuck{unique}",
                    SyncJob(
                        id=f"stuck{unique}",
                        source_id=source_id,
                        index_id=index_id,
                        status=SyncStatus.SYNCING_INDEXING,
                        started_at=hours_ago,
                        updated_at=hours_ago,
                    ),
                )
                deadline = asyncio.get_running_loop().time() + 15
                while asyncio.get_running_loop().time() < deadline:
                    stuck = (await syncs.get(f"{source_id}.stuck{unique}")).value
                    if stuck.status != SyncStatus.SYNCING_INDEXING:
                        break
                    await asyncio.sleep(0.1)
                # Every page belongs to the other sync: deletion protection fails it, cleanly.
                assert stuck.status == SyncStatus.FAILED and stuck.ended_at is not None
    for service in (crawler, indexer):
        await service.stop()
    for bus in buses:
        await bus.close()


async def test_kill_9_mid_sync_loses_nothing(
    nats_url: str, data_dir: Path, tmp_path: Path, unique: str
) -> None:
    import os
    import signal
    import sys

    site = Site()
    build_site(site)
    slow_pages = [f"/slow/{i}.html" for i in range(30)]
    for i, path in enumerate(slow_pages):
        site.pages[path] = (200, "text/html", page(f"Slow {i}", f"Slow page {i} about tapirs."))
    site.pages["/"] = (200, "text/html", page("Home", "Tapir index.", slow_pages))
    original = site.handle

    async def slow(request: web.Request) -> web.StreamResponse:
        if request.path.startswith("/slow/"):
            await asyncio.sleep(0.15)
        return await original(request)

    site.handle = slow  # type: ignore[method-assign]
    shared = SharedSettings(data_dir=data_dir)
    buses = [await Bus.connect(nats_url, source=n) for n in ("crawler", "indexer", "gateway")]
    indexer = await build_indexer(buses[1], IndexerSettings(commit_interval_s=0.05), shared)
    await indexer.start()
    env = {
        **os.environ,
        "TRELLIS_NATS_URL": nats_url,
        "TRELLIS_DATA_DIR": str(tmp_path / "crashing"),
        "TRELLIS_CRAWLER_ALLOWED_NETWORKS": "127.0.0.0/8",
        "TRELLIS_CRAWLER_FRONTIER_ACK_WAIT_S": "2",
        "TRELLIS_CRAWLER_CONCURRENCY": "2",
        "TRELLIS_LOG_LEVEL": "WARNING",
    }
    credentials = load_or_create_credentials(data_dir, BootstrapSettings())
    async for _ in _serve(site):
        async with serving_gateway(buses[2], shared, request_timeout_s=20) as url:
            async with httpx.AsyncClient(base_url=url, timeout=30) as http:
                auth = {"Authorization": f"Bearer {credentials.api_key}"}
                process = await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-m",
                    "services.crawler",
                    env=env,
                    stdout=asyncio.subprocess.DEVNULL,
                    stderr=asyncio.subprocess.DEVNULL,
                )
                try:
                    index_id = (
                        await http.post(
                            "/v1/indexes", json={"Name": f"kill-{unique}"}, headers=auth
                        )
                    ).json()["Id"]
                    for _ in range(200):  # the crawler process answers once it is up
                        created = await http.post(
                            "/v1/data-sources",
                            json={
                                "Name": "tapirs",
                                "IndexId": index_id,
                                "Type": "WEBCRAWLER",
                                "Configuration": _web_crawler(site, CrawlDepth=2),
                            },
                            headers=auth,
                        )
                        if created.status_code != 503:
                            break
                        await asyncio.sleep(0.1)
                    assert created.status_code == 201, created.text
                    source_id = created.json()["Id"]
                    started = await http.post(
                        f"/v1/data-sources/{source_id}/sync-jobs",
                        json={"IndexId": index_id},
                        headers=auth,
                    )
                    assert started.status_code == 201, started.text
                    for _ in range(500):  # kill it mid-sync, a few pages in
                        if sum(p.startswith("/slow/") for p in site.hits) >= 8:
                            break
                        await asyncio.sleep(0.02)
                finally:
                    process.send_signal(signal.SIGKILL)
                    await process.wait()
                fetched_before = [p for p in site.hits if p.startswith("/slow/")]
                assert len(fetched_before) < len(slow_pages)
                # A new replica picks the same sync up: the frontier and seen-set are in NATS.
                survivor = await build_crawler(
                    buses[0],
                    CrawlerSettings(
                        allowed_networks="127.0.0.0/8",
                        frontier_ack_wait_s=2,
                        schedule_check_s=0.5,
                        stall_after_s=3,
                    ),
                    shared,
                )
                await survivor.start()
                history = f"/v1/data-sources/{source_id}/sync-jobs"
                for _ in range(300):
                    job = (
                        await http.get(history, params={"index_id": index_id}, headers=auth)
                    ).json()["History"][0]
                    if job["Status"] not in ("SYNCING", "SYNCING_INDEXING"):
                        break
                    await asyncio.sleep(0.1)
                # Nothing lost: every page is in the index (home and from-sitemap.html too).
                checker = Stack(http, url, credentials.api_key, "", "", site)
                await checker.settle(index_id, len(slow_pages) + 2)
                await checker.drop(index_id)
                await survivor.stop()
    await indexer.stop()
    for bus in buses:
        await bus.close()
    assert job["Status"] == "SUCCEEDED", job
    # Counted at most once each; a page the killed replica indexed but had not counted yet is
    # indexed and not counted (at most what it held unacknowledged).
    metrics = job["TrellisMetrics"]
    assert len(slow_pages) + 2 - 4 <= metrics["added"] + metrics["unchanged"] <= len(slow_pages) + 2
    fetches = [p for p in site.hits if p.startswith("/slow/")]
    assert set(fetches) == set(slow_pages)
    # Refetched: only what the killed replica held unacknowledged: 2 in flight and 2 fetched
    # ahead (its concurrency and batch are 2).
    assert len(fetches) - len(slow_pages) <= 4


# -- connections go to the checked address (DNS rebinding) ------------------------------------


class Resolver:
    """Stands in for DNS: made-up names, and a second answer that differs from the first, as a
    rebinding name server gives (the first passes the policy, the next would not)."""

    def __init__(self, answers: dict[str, list[list[str]]]) -> None:
        self.answers = answers
        self.asked: list[str] = []

    async def __call__(self, host: str, port: int) -> list[str]:
        self.asked.append(host)
        queue = self.answers.get(host)
        if not queue:
            raise socket.gaierror(socket.EAI_NONAME, f"{host} is not known")
        return queue.pop(0) if len(queue) > 1 else queue[0]


@contextlib.asynccontextmanager
async def _loopback(app: web.Application, tls: ssl.SSLContext | None = None) -> AsyncIterator[int]:
    runner = web.AppRunner(app)
    await runner.setup()
    tcp = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=tls)
    await tcp.start()
    try:
        yield tcp._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    finally:
        await runner.cleanup()


def _certificate(name: str, directory: Path) -> tuple[Path, Path, str]:
    """A self-signed certificate for `name` alone: its file, its key's file, its PEM."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    pem = certificate.public_bytes(serialization.Encoding.PEM)
    cert_file, key_file = directory / "site.pem", directory / "site.key"
    cert_file.write_bytes(pem)
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file, pem.decode()


async def test_a_fetch_connects_to_the_address_that_was_checked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[dict[str, str]] = []

    async def handle(request: web.Request) -> web.Response:
        seen.append({"path": request.path, **request.headers})
        if request.path == "/login":
            response = web.HTTPFound("/")
            response.set_cookie("session", "s-1", path="/")
            raise response
        if request.path == "/hop":
            raise web.HTTPFound(f"http://evil.test:{request.url.port}/")
        return web.Response(text="pinned", content_type="text/plain")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    async with _loopback(app) as port:
        resolver = Resolver({"rebind.test": [["127.0.0.1"]], "evil.test": [["169.254.169.254"]]})
        monkeypatch.setattr(fetcher_module, "resolve", resolver)
        fetcher = Fetcher(NetworkPolicy.from_setting("127.0.0.0/8"), user_agent="t")
        site = f"http://rebind.test:{port}"
        login, jar = await fetcher.login(f"{site}/login", {"user": "u"})
        assert login.ok and login.url == f"{site}/" and jar.get("session") == "s-1", login
        # A second lookup of rebind.test would give the metadata address. httpx cannot resolve
        # rebind.test at all: a fetch that works connected to the address the check passed.
        resolver.answers["rebind.test"] = [["127.0.0.1"], ["169.254.169.254"]]
        access = Access(basic={f"rebind.test:{port}": Credentials("u", "p4ss")}, cookies=jar)
        fetched = await fetcher.get(f"{site}/page", max_bytes=1000, access=access)
        assert fetched.ok and fetched.body == b"pinned" and fetched.url == f"{site}/page"
        assert seen[-1]["path"] == "/page" and seen[-1]["Host"] == f"rebind.test:{port}"
        assert seen[-1]["Cookie"] == "session=s-1"
        assert seen[-1]["Authorization"].startswith("Basic ")
        # Every hop is looked up once and checked: the redirect's target is refused.
        resolver.answers["rebind.test"] = [["127.0.0.1"]]
        asked = len(resolver.asked)
        hop = await fetcher.get(f"{site}/hop", max_bytes=1000)
        assert hop.refused and "cloud metadata" in (hop.error or "") and "evil.test" in hop.url
        assert resolver.asked[asked:] == ["rebind.test", "evil.test"]
        # Past the fetcher's checks nothing connects: the pool has no address for the name.
        with pytest.raises(httpx.ConnectError, match="no checked address"):
            await fetcher.client.get(f"http://unchecked.test:{port}/")
        await fetcher.close()
    assert [s["path"] for s in seen] == ["/login", "/", "/page", "/hop"]


async def test_https_keeps_the_host_name_for_sni_and_the_certificate(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    cert_file, key_file, pem = _certificate("rebind.test", tmp_path)
    server_names: list[str | None] = []
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert_file, key_file)
    tls.sni_callback = lambda _socket, name, _context: server_names.append(name)

    async def handle(request: web.Request) -> web.Response:
        return web.Response(text=request.host, content_type="text/plain")

    app = web.Application()
    app.router.add_get("/{tail:.*}", handle)
    async with _loopback(app, tls) as port:
        resolver = Resolver({"rebind.test": [["127.0.0.1"]], "other.test": [["127.0.0.1"]]})
        monkeypatch.setattr(fetcher_module, "resolve", resolver)
        fetcher = Fetcher(NetworkPolicy.from_setting("127.0.0.0/8"), user_agent="t")
        fetcher.ssl_context.load_verify_locations(cadata=pem)
        fetched = await fetcher.get(f"https://rebind.test:{port}/", max_bytes=1000)
        assert fetched.ok and fetched.body == f"rebind.test:{port}".encode(), fetched
        assert server_names == ["rebind.test"]
        # Same address, another name: its certificate is checked against that name, and fails.
        other = await fetcher.get(f"https://other.test:{port}/", max_bytes=1000)
        assert other.error is not None and "CERTIFICATE_VERIFY_FAILED" in other.error, other
        assert server_names == ["rebind.test", "other.test"]
        await fetcher.close()
