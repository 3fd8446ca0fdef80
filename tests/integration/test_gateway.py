"""The real gateway (uvicorn on a free port) over real services: auth, scopes, AWS API, errors."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import botocore.exceptions
import httpx
import pytest

from contracts import subjects
from contracts.envelope import Envelope
from runtime.bus import Bus
from runtime.service import Service
from runtime.settings import SharedSettings
from services.fraud.app import build as build_fraud
from services.fraud.config import Settings as FraudSettings
from services.gateway.adapters.bootstrap import BootstrapCredentials, load_or_create_credentials
from services.gateway.config import BootstrapSettings
from services.indexer.app import build as build_indexer
from services.indexer.config import Settings as IndexerSettings
from tests.conftest import gateway_client, serving_gateway

ARN = "arn:aws:kms:us-east-1:123456789012:key/12345678-1234-1234-1234-123456789012"


@dataclass
class Platform:
    url: str
    creds: BootstrapCredentials
    http: httpx.AsyncClient
    services: dict[str, Service]
    bus: Bus

    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.creds.api_key}"}

    def aws(self, service: str, key_id: str | None = None, secret: str | None = None) -> Any:
        return gateway_client(
            service,
            self.url,
            key_id or self.creds.access_key_id,
            secret or self.creds.secret_access_key,
        )


@pytest.fixture
async def platform(nats_url: str, data_dir: Path) -> AsyncIterator[Platform]:
    shared = SharedSettings(data_dir=data_dir)
    buses = [await Bus.connect(nats_url, source=name) for name in ("fraud", "indexer", "gateway")]
    services: list[Service] = [
        await build_fraud(buses[0], FraudSettings(), shared),
        await build_indexer(buses[1], IndexerSettings(), shared),
    ]
    for service in services:
        await service.start()
    gateway = serving_gateway(
        buses[2], shared, max_body_bytes=64 * 1024, health_poll_s=0.3, request_timeout_s=2
    )
    async with gateway as url, httpx.AsyncClient(base_url=url, timeout=10) as http:
        creds = load_or_create_credentials(data_dir, BootstrapSettings())
        yield Platform(url, creds, http, {s.name: s for s in services}, buses[0])
    for service in services:
        if service.ready:
            await service.stop()
    for b in buses:
        await b.close()


async def test_routes_need_a_valid_key_with_the_right_scope(platform: Platform) -> None:
    http = platform.http
    missing = await http.get("/v1/services")
    assert (
        missing.status_code == 401 and missing.headers["content-type"] == "application/problem+json"
    )
    assert missing.headers["www-authenticate"].startswith("Bearer")
    assert (
        await http.get("/v1/services", headers={"Authorization": "Bearer nope"})
    ).status_code == 401

    created = await http.post(
        "/v1/keys",
        headers=platform.admin(),
        json={"name": "fraud-reader", "scopes": ["fraud:read"]},
    )
    assert created.status_code == 201
    token = created.json()["api_key"]
    reader = {"Authorization": f"Bearer {token}"}
    assert (await http.get("/v1/whoami", headers=reader)).json()["scopes"] == ["fraud:read"]
    forbidden = await http.get("/v1/services", headers=reader)
    assert forbidden.status_code == 403 and "platform:read" in forbidden.json()["detail"]
    assert (await http.get("/v1/keys", headers=reader)).status_code == 403

    listed = (await http.get("/v1/keys", headers=platform.admin())).json()["keys"]
    assert any(k["id"] == created.json()["id"] for k in listed)
    assert all("secret" not in str(k) and "api_key" not in k for k in listed)

    revoked = await http.delete(f"/v1/keys/{created.json()['id']}", headers=platform.admin())
    assert revoked.json()["revoked_at"] is not None
    assert (await http.get("/v1/whoami", headers=reader)).status_code == 401


async def test_readyz_and_services_report_live_replicas(platform: Platform) -> None:
    ready = await platform.http.get("/readyz")  # only fraud and indexer run here
    assert ready.status_code == 503
    services = ready.json()["services"]
    assert services["fraud"]["ready"] == 1 and services["indexer"]["ready"] == 1
    assert services["crawler"] == {"replicas": 0, "ready": 0, "status": "down"}
    listed = (await platform.http.get("/v1/services", headers=platform.admin())).json()["services"]
    assert {s["name"] for s in listed} == set(services)


async def test_a_request_to_a_service_that_is_down_gets_503_naming_it(platform: Platform) -> None:
    started = asyncio.get_running_loop().time()
    down = await platform.http.post("/v1/services/crawler/ping", headers=platform.admin())
    assert down.status_code == 503 and down.json()["service"] == "crawler"
    assert "crawler" in down.json()["detail"]
    assert asyncio.get_running_loop().time() - started < 1.5
    up = await platform.http.post("/v1/services/fraud/ping", headers=platform.admin())
    assert up.status_code == 200 and up.json()["service"] == "fraud"
    assert (
        await platform.http.post("/v1/services/nope/ping", headers=platform.admin())
    ).status_code == 404


async def test_bad_bodies_are_refused_clearly(platform: Platform) -> None:
    http = platform.http
    unknown = await http.post(
        "/v1/keys",
        headers=platform.admin(),
        json={"name": "x", "scopes": ["admin"], "role": "root"},
    )
    assert unknown.status_code == 400 and any(
        "role" in e["location"] for e in unknown.json()["errors"]
    )
    bad_scope = await http.post(
        "/v1/keys", headers=platform.admin(), json={"name": "x", "scopes": ["root"]}
    )
    assert bad_scope.status_code == 400
    huge = await http.post("/v1/keys", headers=platform.admin(), content=b"x" * (65 * 1024))
    assert huge.status_code == 413 and huge.headers["content-type"] == "application/problem+json"

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(80):
            yield b"y" * 1024

    streamed = await http.post("/", headers={"Content-Type": "application/json"}, content=chunks())
    assert streamed.status_code == 413


async def test_boto3_round_trip_and_aws_shaped_errors(platform: Platform) -> None:
    fraud = platform.aws("frauddetector")
    kendra = platform.aws("kendra")
    assert (await asyncio.to_thread(fraud.get_kms_encryption_key))["kmsKey"][
        "kmsEncryptionKeyArn"
    ] in ("DEFAULT", ARN)
    await asyncio.to_thread(fraud.put_kms_encryption_key, kmsEncryptionKeyArn=ARN)
    assert (await asyncio.to_thread(fraud.get_kms_encryption_key))["kmsKey"][
        "kmsEncryptionKeyArn"
    ] == ARN
    # Other tests' indexes may be listed (NATS is shared): the call itself is what is checked.
    listed = (await asyncio.to_thread(kendra.list_indices))["IndexConfigurationSummaryItems"]
    assert all(item["Status"] == "ACTIVE" for item in listed)

    def error_of(call: Any, **kwargs: Any) -> tuple[str, int]:
        try:
            call(**kwargs)
        except botocore.exceptions.ClientError as exc:
            return exc.response["Error"]["Code"], exc.response["ResponseMetadata"]["HTTPStatusCode"]
        raise AssertionError("expected an error")

    wrong_secret = platform.aws("frauddetector", secret="not-the-secret")
    assert await asyncio.to_thread(error_of, wrong_secret.get_kms_encryption_key) == (
        "InvalidSignatureException",
        400,
    )
    unknown = platform.aws("kendra", key_id="TRLSAAAAAAAAAAAAAAAA", secret="x")
    assert await asyncio.to_thread(error_of, unknown.list_indices) == (
        "UnrecognizedClientException",
        400,
    )
    assert await asyncio.to_thread(
        error_of, fraud.put_kms_encryption_key, kmsEncryptionKeyArn="bogus-key"
    ) == (
        "ValidationException",
        400,
    )
    sagemaker = platform.aws("sagemaker")
    # An operation Trellis does not speak; one it speaks, with its service down, is a 503.
    assert (await asyncio.to_thread(error_of, sagemaker.list_training_jobs))[
        0
    ] == "UnknownOperationException"
    assert await asyncio.to_thread(error_of, sagemaker.list_images) == (
        "ServiceUnavailableException",
        503,
    )


async def test_access_keys_have_scopes_and_can_be_revoked(platform: Platform) -> None:
    http = platform.http
    created = (
        await http.post(
            "/v1/access-keys",
            headers=platform.admin(),
            json={"name": "reader", "scopes": ["fraud:read"]},
        )
    ).json()
    key_id, secret = created["access_key_id"], created["secret_access_key"]
    reader = platform.aws("frauddetector", key_id=key_id, secret=secret)
    await asyncio.to_thread(reader.get_kms_encryption_key)
    with pytest.raises(botocore.exceptions.ClientError) as denied:
        await asyncio.to_thread(reader.put_kms_encryption_key, kmsEncryptionKeyArn=ARN)
    assert denied.value.response["Error"]["Code"] == "AccessDeniedException"
    listed = (await http.get("/v1/access-keys", headers=platform.admin())).text
    assert key_id in listed and secret not in listed
    await http.delete(f"/v1/access-keys/{key_id}", headers=platform.admin())
    with pytest.raises(botocore.exceptions.ClientError) as revoked:
        await asyncio.to_thread(reader.get_kms_encryption_key)
    assert revoked.value.response["Error"]["Code"] == "UnrecognizedClientException"


async def test_secrets_never_reach_the_logs(
    platform: Platform, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    created = (
        await platform.http.post(
            "/v1/keys", headers=platform.admin(), json={"name": "k", "scopes": ["admin"]}
        )
    ).json()
    await platform.http.get("/v1/whoami", headers={"Authorization": f"Bearer {created['api_key']}"})
    await asyncio.to_thread(platform.aws("frauddetector").get_kms_encryption_key)
    text = caplog.text
    assert caplog.records, "the gateway logs requests"
    for secret in (platform.creds.api_key, platform.creds.secret_access_key, created["api_key"]):
        assert secret not in text


async def test_correlation_id_is_echoed_and_metrics_are_served(platform: Platform) -> None:
    response = await platform.http.get(
        "/v1/whoami", headers={**platform.admin(), "X-Correlation-Id": "trace-123"}
    )
    assert response.headers["x-correlation-id"] == "trace-123"
    metrics = await platform.http.get("/metrics", headers=platform.admin())
    assert (
        'trellis_http_requests_total{method="GET",route="/v1/whoami",status="200"}' in metrics.text
    )
    assert (await platform.http.get("/metrics")).status_code == 401
    assert (await platform.http.get("/openapi.json")).json()["info"]["title"] == "Trellis"


async def test_correlation_id_travels_from_http_to_the_service(platform: Platform) -> None:
    seen: list[str] = []

    async def spy(msg: Any) -> None:  # a plain subscriber beside the real replica
        seen.append(Envelope.model_validate_json(msg.data).correlation_id)

    sub = await platform.bus.nc.subscribe(subjects.ping("fraud"), cb=spy)
    await platform.bus.nc.flush()
    try:
        await platform.http.post(
            "/v1/services/fraud/ping", headers={**platform.admin(), "X-Correlation-Id": "trace-xyz"}
        )
        await asyncio.sleep(0.1)
    finally:
        await sub.unsubscribe()
    assert seen == ["trace-xyz"]


async def test_aws_call_to_a_stopped_service_is_service_unavailable(platform: Platform) -> None:
    await platform.services["fraud"].stop()
    fraud = platform.aws("frauddetector")
    with pytest.raises(botocore.exceptions.ClientError) as caught:
        await asyncio.to_thread(fraud.get_kms_encryption_key)
    error = caught.value.response
    assert error["Error"]["Code"] == "ServiceUnavailableException"
    assert (
        error["ResponseMetadata"]["HTTPStatusCode"] == 503 and "fraud" in error["Error"]["Message"]
    )


async def test_hot_paths_answer_as_the_routes_do(platform: Platform) -> None:
    """Fraud operations and the AWS endpoint skip FastAPI's routing, not its behaviour."""
    http = platform.http
    path = "/v1/fraud/GetVariables"
    anonymous = await http.post(path, json={})
    assert anonymous.status_code == 401 and anonymous.headers["www-authenticate"].startswith(
        "Bearer"
    )
    assert anonymous.headers["content-type"] == "application/problem+json"
    created = await http.post(
        "/v1/keys", headers=platform.admin(), json={"name": "crawl", "scopes": ["crawler:read"]}
    )
    other_area = {"Authorization": f"Bearer {created.json()['api_key']}"}
    assert (await http.post(path, headers=other_area, json={})).status_code == 403

    headers = {**platform.admin(), "X-Correlation-Id": "hot-1"}
    answered = await http.post(path, headers=headers, json={})
    assert answered.status_code == 200 and answered.headers["x-correlation-id"] == "hot-1"
    assert answered.json()["variables"] == []

    not_json = await http.post(path, headers=platform.admin(), content=b"{nope")
    assert not_json.status_code == 400 and not_json.json()["errors"][0]["location"] == "body"
    a_list = await http.post(path, headers=platform.admin(), json=[1])
    assert a_list.status_code == 400 and a_list.json()["detail"] == "the request is invalid"
    invalid = await http.post(
        "/v1/fraud/GetEventPrediction", headers=platform.admin(), json={"detectorId": 5}
    )
    assert invalid.status_code == 400 and invalid.json()["code"] == "validation"
    # Not a hot path (unknown operation): FastAPI's route answers, with the same shapes.
    unknown = await http.post("/v1/fraud/NoSuchOperation", headers=platform.admin(), json={})
    assert unknown.status_code == 404 and "GetEventPrediction" in unknown.json()["detail"]
    huge = await http.post(path, headers=platform.admin(), content=b"x" * (65 * 1024))
    assert huge.status_code == 413

    metrics = (await http.get("/metrics", headers=platform.admin())).text
    assert (
        'trellis_http_requests_total{method="POST",route="/v1/fraud/{operation}",status="200"}'
        in metrics
    )
    assert 'route="/v1/fraud/{operation}",status="401"' in metrics
