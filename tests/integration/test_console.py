"""The console's edge on the real gateway: sign-in sessions, CSRF, assets, server-sent events."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from contracts import topology
from runtime.bus import Bus
from runtime.settings import SharedSettings
from runtime.topology import ensure_bucket
from services.gateway.adapters.bootstrap import BootstrapCredentials, load_or_create_credentials
from services.gateway.auth import SESSION_COOKIE
from services.gateway.config import BootstrapSettings
from tests.conftest import serving_gateway


@dataclass
class Gateway:
    url: str
    creds: BootstrapCredentials
    bus: Bus

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url, timeout=10, follow_redirects=False)

    async def key(self, *scopes: str) -> str:
        async with self.client() as http:
            created = await http.post(
                "/v1/keys",
                json={"name": "console-user", "scopes": list(scopes)},
                headers={"Authorization": f"Bearer {self.creds.api_key}"},
            )
        assert created.status_code == 201, created.text
        return str(created.json()["api_key"])

    @contextlib.asynccontextmanager
    async def signed_in(self, api_key: str) -> AsyncIterator[httpx.AsyncClient]:
        async with self.client() as http:
            response = await http.post("/console/session", data={"api_key": api_key})
            assert response.status_code == 303 and response.headers["location"] == "/console/"
            yield http


@pytest.fixture
async def gateway(nats_url: str, data_dir: Path) -> AsyncIterator[Gateway]:
    shared = SharedSettings(data_dir=data_dir)
    bus = await Bus.connect(nats_url, source="gateway")
    async with serving_gateway(bus, shared, health_poll_s=0.2) as url:
        yield Gateway(url, load_or_create_credentials(data_dir, BootstrapSettings()), bus)
    await bus.close()


async def test_the_console_needs_a_session_made_from_a_valid_key(gateway: Gateway) -> None:
    async with gateway.client() as http:
        assert (await http.get("/")).headers["location"] == "/console/"
        shell = await http.get("/console/")
        assert shell.status_code == 303 and shell.headers["location"] == "/console/login"
        login = await http.get("/console/login")
        assert login.status_code == 200 and 'name="api_key"' in login.text
        policy = login.headers["content-security-policy"]
        assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
        refused = await http.post("/console/session", data={"api_key": "tra_not-a-key"})
        assert refused.headers["location"] == "/console/login?error=1"
        assert SESSION_COOKIE not in refused.cookies
        # Assets the sign-in page needs are public; the application itself is not.
        assert (await http.get("/console/static/console.css")).status_code == 200
        assert (await http.get("/console/static/app.js")).status_code == 401
        assert (await http.get("/console/static/../handlers/console.py")).status_code == 404
        assert (await http.get("/console/static/%2e%2e/console/static/lib.js")).status_code == 404

    async with gateway.signed_in(gateway.creds.api_key) as http:
        cookie = next(c for c in http.cookies.jar if c.name == SESSION_COOKIE)
        assert cookie.has_nonstandard_attr("HttpOnly")
        assert str(cookie.get_nonstandard_attr("SameSite")).lower() == "strict"
        assert gateway.creds.api_key not in str(cookie.value)  # sealed, not the key itself
        shell = await http.get("/console/")
        assert shell.status_code == 200 and 'id="page"' in shell.text
        assert shell.headers["cache-control"] == "no-store"
        script = await http.get("/console/static/pages/overview.js")
        assert script.status_code == 200 and script.headers["content-type"].startswith(
            "text/javascript"
        )
        assert (await http.get("/v1/whoami")).json()["key_id"] == "bootstrap-admin"
        signed_out = await http.delete("/console/session", headers={"X-Trellis-Console": "1"})
        assert signed_out.status_code == 204
        assert (await http.get("/v1/whoami")).status_code == 401


async def test_console_writes_need_the_console_header(gateway: Gateway) -> None:
    async with gateway.signed_in(gateway.creds.api_key) as http:
        body = {"name": "made-from-the-console", "scopes": ["fraud:read"]}
        forged = await http.post("/v1/keys", json=body)
        assert forged.status_code == 403 and "x-trellis-console" in forged.json()["detail"]
        made = await http.post("/v1/keys", json=body, headers={"X-Trellis-Console": "1"})
        assert made.status_code == 201


async def test_a_session_has_the_scopes_of_its_key_and_ends_with_it(gateway: Gateway) -> None:
    api_key = await gateway.key("crawler:read")
    async with gateway.signed_in(api_key) as http:
        assert (await http.get("/v1/whoami")).json()["scopes"] == ["crawler:read"]
        denied = await http.get("/v1/tuning-jobs")
        assert denied.status_code == 403
        assert (await http.get("/v1/events", params={"topic": "fraud"})).status_code == 403
        key_id = (await http.get("/v1/whoami")).json()["key_id"]
        async with gateway.client() as admin:
            revoked = await admin.delete(
                f"/v1/keys/{key_id}", headers={"Authorization": f"Bearer {gateway.creds.api_key}"}
            )
            assert revoked.status_code == 200
        assert (await http.get("/v1/whoami")).status_code == 401
        http.cookies.set(SESSION_COOKIE, "gAAAAAB-tampered")
        assert (await http.get("/v1/whoami")).status_code == 401


async def _events(response: httpx.Response) -> AsyncIterator[tuple[str, dict[str, object]]]:
    event = ""
    async for line in response.aiter_lines():
        if line.startswith("event: "):
            event = line.removeprefix("event: ")
        elif line.startswith("data: "):
            yield event, json.loads(line.removeprefix("data: "))


async def test_events_announce_each_change_of_a_topic(gateway: Gateway, unique: str) -> None:
    jobs = await ensure_bucket(gateway.bus.js, topology.TUNE_JOBS)
    await jobs.put(f"job.before-{unique}", b"{}")  # existed before: not announced
    async with (
        gateway.signed_in(gateway.creds.api_key) as http,
        http.stream("GET", "/v1/events", params={"topic": "tuning"}) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        received = _events(response)
        assert await anext(received) == ("ready", {})
        await asyncio.sleep(0.2)
        await jobs.put(f"job.j-{unique}", b"{}")
        await jobs.delete(f"job.j-{unique}")
        changes = [await asyncio.wait_for(anext(received), 5) for _ in range(2)]
    # The bucket is the tuner's, shared by the other tests: leave no stand-in records in it.
    for key in (f"job.before-{unique}", f"job.j-{unique}"):
        await jobs.purge(key)
    assert changes == [
        ("change", {"key": f"j-{unique}", "deleted": False}),
        ("change", {"key": f"j-{unique}", "deleted": True}),
    ]


async def test_bad_topics_are_refused(gateway: Gateway) -> None:
    async with gateway.signed_in(gateway.creds.api_key) as http:
        assert (await http.get("/v1/events", params={"topic": "nope"})).status_code == 404
        bad = await http.get("/v1/events", params={"topic": "syncs:../../x"})
        assert bad.status_code == 400
        assert (await http.get("/v1/events")).status_code == 400
