"""Wiring of the fraud service: stores, handlers and subjects."""

from __future__ import annotations

from contracts import subjects, topology
from contracts.fraud import GetKmsEncryptionKeyRequest, PutKmsEncryptionKeyCommand
from runtime.bus import Bus
from runtime.kv import ResourceStore
from runtime.service import Service
from runtime.settings import SharedSettings
from runtime.topology import ensure_bucket
from services.fraud.config import Settings
from services.fraud.domain.account import AccountSettings
from services.fraud.handlers import FraudHandlers


async def build(bus: Bus, settings: Settings, shared: SharedSettings) -> Service:
    service = Service("fraud", bus, settings, shared)
    bucket = await ensure_bucket(bus.js, topology.FRAUD_SETTINGS, shared.stream_replicas)
    handlers = FraudHandlers(ResourceStore(bucket, AccountSettings, "account settings"))
    service.handle(
        subjects.FRAUD_GET_KMS_ENCRYPTION_KEY,
        GetKmsEncryptionKeyRequest,
        handlers.get_kms_encryption_key,
    )
    service.handle(
        subjects.FRAUD_PUT_KMS_ENCRYPTION_KEY,
        PutKmsEncryptionKeyCommand,
        handlers.put_kms_encryption_key,
    )
    return service
