"""Real services run in-process on an injected bus: ping, health, ops endpoints, draining."""

from __future__ import annotations

from pathlib import Path

import httpx
import nats.js.errors
import pytest

from contracts import subjects, topology
from contracts.errors import ErrorCode
from contracts.fraud import GetKmsEncryptionKeyRequest, KmsEncryptionKey, PutKmsEncryptionKeyCommand
from contracts.index import ListIndexesReply, ListIndexesRequest
from contracts.system import HealthPoll, PingReply, PingRequest, ServiceHealth
from runtime.bus import Bus
from runtime.errors import RemoteError, ServiceUnavailable
from runtime.settings import SharedSettings
from runtime.topology import ensure_bucket
from services.fraud.app import build as build_fraud
from services.fraud.config import Settings as FraudSettings
from services.indexer.app import build as build_indexer
from services.indexer.config import Settings as IndexerSettings
from tests.conftest import free_port

ARN = "arn:aws:kms:us-east-1:123456789012:key/12345678-1234-1234-1234-123456789012"


async def test_fraud_service_answers_ping_and_kms_operations(
    nats_url: str, bus: Bus, tmp_path: Path
) -> None:
    service_bus = await Bus.connect(nats_url, source="fraud")
    ops_port = free_port()
    service = await build_fraud(
        service_bus,
        FraudSettings(ops_port=ops_port, heartbeat_s=0.2),
        SharedSettings(data_dir=tmp_path),
    )
    await service.start()
    try:
        pong = await bus.request(subjects.ping("fraud"), PingRequest(), PingReply, timeout_s=2)
        assert pong.service == "fraud" and pong.instance_id == service.instance_id

        key = await bus.request(
            subjects.FRAUD_GET_KMS_ENCRYPTION_KEY,
            GetKmsEncryptionKeyRequest(),
            KmsEncryptionKey,
            timeout_s=2,
        )
        await bus.request(
            subjects.FRAUD_PUT_KMS_ENCRYPTION_KEY,
            PutKmsEncryptionKeyCommand(kms_encryption_key_arn=ARN),
            KmsEncryptionKey,
            timeout_s=2,
        )
        after = await bus.request(
            subjects.FRAUD_GET_KMS_ENCRYPTION_KEY,
            GetKmsEncryptionKeyRequest(),
            KmsEncryptionKey,
            timeout_s=2,
        )
        assert after.kms_encryption_key_arn == ARN and key.kms_encryption_key_arn in (
            "DEFAULT",
            ARN,
        )

        reports = await bus.gather(subjects.HEALTH_POLL, HealthPoll(), ServiceHealth, window_s=0.5)
        mine = [r for r in reports if r.instance_id == service.instance_id]
        assert len(mine) == 1 and mine[0].ready and mine[0].handled >= 3

        registry = await ensure_bucket(bus.js, topology.SERVICE_REGISTRY)
        entry = await registry.get(f"fraud.{service.instance_id}")
        assert ServiceHealth.model_validate_json(entry.value or b"").service == "fraud"

        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{ops_port}") as http:
            assert (await http.get("/healthz")).status_code == 200
            ready = await http.get("/readyz")
            assert ready.status_code == 200 and ready.json()["service"] == "fraud"
            metrics = (await http.get("/metrics")).text
            assert (
                'trellis_requests_total{outcome="ok",service="fraud",subject="fraud.v1.put_kms_encryption_key"}'
                in metrics
            )
            assert (await http.get("/nope")).status_code == 404
    finally:
        await service.stop()
        await service_bus.close()
    with pytest.raises(ServiceUnavailable):
        await bus.request(subjects.ping("fraud"), PingRequest(), PingReply, timeout_s=1)
    with pytest.raises(nats.js.errors.KeyNotFoundError):
        await registry.get(f"fraud.{service.instance_id}")


async def test_invalid_command_gets_a_validation_error(
    nats_url: str, bus: Bus, tmp_path: Path
) -> None:
    service_bus = await Bus.connect(nats_url, source="fraud")
    service = await build_fraud(service_bus, FraudSettings(), SharedSettings(data_dir=tmp_path))
    await service.start()
    try:
        bad = PutKmsEncryptionKeyCommand.model_construct(kms_encryption_key_arn="not-an-arn")
        with pytest.raises(RemoteError) as caught:
            await bus.request(
                subjects.FRAUD_PUT_KMS_ENCRYPTION_KEY, bad, KmsEncryptionKey, timeout_s=2
            )
        assert (
            caught.value.code is ErrorCode.VALIDATION
            and "kms_encryption_key_arn" in caught.value.message
        )
    finally:
        await service.stop()
        await service_bus.close()


async def test_failing_readiness_check_makes_the_replica_unready(
    nats_url: str, tmp_path: Path
) -> None:
    service_bus = await Bus.connect(nats_url, source="indexer")
    ops_port = free_port()
    service = await build_indexer(
        service_bus, IndexerSettings(ops_port=ops_port), SharedSettings(data_dir=tmp_path)
    )

    async def disk_full() -> None:
        raise OSError("disk full")

    service.readiness_check("disk", disk_full)
    await service.start()
    try:
        listed = await service_bus.request(
            subjects.INDEX_LIST_INDEXES, ListIndexesRequest(), ListIndexesReply
        )
        # The replica answers requests (other tests' indexes may be listed: NATS is shared)...
        assert isinstance(listed, ListIndexesReply)
        async with httpx.AsyncClient() as http:
            ready = await http.get(f"http://127.0.0.1:{ops_port}/readyz")
        # ...but reports itself unready.
        assert ready.status_code == 503 and ready.json()["checks"]["disk"] == "disk full"
    finally:
        await service.stop()
        await service_bus.close()
