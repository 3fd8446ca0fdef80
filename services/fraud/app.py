"""Wiring of the fraud service: stores, the event view, operations, training jobs and subjects."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from nats.aio.msg import Msg

from contracts import subjects, topology
from contracts.fraud import (
    AFD_OPERATIONS,
    EventDeleted,
    EventLabelUpdated,
    EventSent,
    EventsPurged,
    EventsSent,
    GetKmsEncryptionKeyRequest,
    PutKmsEncryptionKeyCommand,
)
from runtime import codec
from runtime.bus import Bus
from runtime.kv import ResourceStore
from runtime.object_store import open_object_store
from runtime.service import Service
from runtime.settings import SharedSettings
from runtime.topology import ensure_bucket, ensure_stream
from runtime.view import StreamView
from services.fraud.adapters.artifacts import Artifacts
from services.fraud.adapters.event_store import EventStore
from services.fraud.batch_imports import BatchImports
from services.fraud.batch_predictions import BatchPredictions
from services.fraud.config import Settings
from services.fraud.detectors import Detectors
from services.fraud.domain.account import AccountSettings
from services.fraud.domain.resources import BatchImportRecord, BatchPredictionRecord
from services.fraud.handlers import FraudHandlers, afd_handler
from services.fraud.models import LEASE, Models
from services.fraud.operations import FraudOperations, Stores

log = logging.getLogger("trellis.fraud")
RESUME_CHECK_S = LEASE.total_seconds() / 4


async def build(bus: Bus, settings: Settings, shared: SharedSettings) -> Service:
    service = Service("fraud", bus, settings, shared)
    replicas = shared.stream_replicas
    await ensure_stream(bus.js, topology.FRAUD_EVENTS, replicas)
    settings_bucket = await ensure_bucket(bus.js, topology.FRAUD_SETTINGS, replicas)
    kv = await ensure_bucket(bus.js, topology.FRAUD_RESOURCES, replicas)
    data = shared.data_dir.resolve() / "fraud"
    import_roots = settings.import_roots or [data / "imports"]
    for root in import_roots:
        root.mkdir(parents=True, exist_ok=True)
    events = EventStore(data / "events")

    def keep(sequence: int, sent: EventSent) -> None:
        events.apply_sent(sequence, sent)
        models.observe(sent)

    async def apply(msg: Msg, sequence: int) -> None:
        try:
            if msg.subject == subjects.FRAUD_EVENT_SENT:
                keep(sequence, codec.decode(msg.data, EventSent)[1])
            elif msg.subject == subjects.FRAUD_EVENTS_SENT:
                # One sequence for all; the store keeps their order. A bad one fails alone.
                for sent in codec.decode(msg.data, EventsSent)[1].events:
                    try:
                        keep(sequence, sent)
                    except ValueError as exc:
                        await bus.dead_letter(
                            subjects.FRAUD_EVENT_SENT,
                            codec.encode(sent, source=bus.source),
                            None,
                            exc,
                            stream=topology.FRAUD_EVENTS.name,
                            stream_sequence=sequence,
                        )
            elif msg.subject == subjects.FRAUD_EVENT_LABEL_UPDATED:
                events.apply_label(sequence, codec.decode(msg.data, EventLabelUpdated)[1])
            elif msg.subject == subjects.FRAUD_EVENT_DELETED:
                deleted = codec.decode(msg.data, EventDeleted)[1]
                events.apply_deleted(sequence, deleted)
                models.forget(deleted.event_type)
            elif msg.subject == subjects.FRAUD_EVENTS_PURGED:
                event_type = codec.decode(msg.data, EventsPurged)[1].event_type
                await asyncio.to_thread(events.apply_purged, sequence, event_type)
                models.forget(event_type)
        except (codec.DecodeError, ValueError) as exc:
            await bus.dead_letter(
                msg.subject,
                msg.data,
                msg.headers,
                exc,
                stream=topology.FRAUD_EVENTS.name,
                stream_sequence=sequence,
            )

    view = StreamView(bus, topology.FRAUD_EVENTS, subjects.FRAUD_EVENTS_ALL, apply)
    stores = Stores(kv)
    uploads = await open_object_store(
        bus.js, topology.FRAUD_UPLOADS, "Event files uploaded through the gateway", replicas
    )
    ops = FraudOperations(
        bus,
        stores,
        events,
        view,
        region=settings.region,
        account_id=settings.account_id,
        import_roots=import_roots,
        uploads=uploads,
        upload_cache=data / "uploads",
    )
    artifacts = Artifacts(
        await open_object_store(
            bus.js,
            topology.FRAUD_ARTIFACTS,
            "Fraud model versions: boosters, ONNX, metrics, charts",
            replicas,
        )
    )
    inference_artifacts = await open_object_store(
        bus.js,
        topology.INFERENCE_ARTIFACTS,
        "ONNX models and tokenizers, by <name>/<version>/<file>",
        replicas,
    )
    models = Models(
        ops,
        artifacts,
        inference_artifacts,
        instance_id=service.instance_id,
        training_threads=settings.training_threads,
        scoring=settings.scoring,
    )
    detectors = Detectors(ops, models)
    imports = BatchImports(
        ops, ResourceStore(kv, BatchImportRecord, "batch import", prefix="batch_import.")
    )

    predictions = BatchPredictions(
        detectors,
        ResourceStore(kv, BatchPredictionRecord, "batch prediction", prefix="batch_prediction."),
    )
    implementations: list[Any] = [ops, models, detectors, imports, predictions]
    registered: set[str] = set()
    for operation in AFD_OPERATIONS:
        if operation.bus_operation in registered:
            continue
        owner = next((o for o in implementations if hasattr(o, operation.bus_operation)), None)
        if owner is None:
            raise RuntimeError(f"no implementation of {operation.bus_operation}")
        service.handle(
            subjects.fraud_operation(operation.bus_operation),
            operation.request,
            afd_handler(getattr(owner, operation.bus_operation)),
        )
        registered.add(operation.bus_operation)

    account = FraudHandlers(ResourceStore(settings_bucket, AccountSettings, "account settings"))
    service.handle(
        subjects.FRAUD_GET_KMS_ENCRYPTION_KEY,
        GetKmsEncryptionKeyRequest,
        account.get_kms_encryption_key,
    )
    service.handle(
        subjects.FRAUD_PUT_KMS_ENCRYPTION_KEY,
        PutKmsEncryptionKeyCommand,
        account.put_kms_encryption_key,
    )

    await view.start(events.flushed_seq)

    async def keep_store() -> None:
        """Flush the event tail to Parquet, resume abandoned trainings; flush once more on stop."""
        next_resume_check = 0.0
        try:
            while True:
                await asyncio.sleep(settings.flush_interval_s)
                if events.tail_rows():
                    await asyncio.to_thread(events.flush)
                    try:
                        await asyncio.to_thread(events.maintain)
                    except Exception:  # the store stays correct, only slower to read
                        log.warning("could not merge the event store's parts", exc_info=True)
                # Listing the versions costs a JetStream consumer; a lease lasts minutes.
                if time.monotonic() >= next_resume_check:
                    next_resume_check = time.monotonic() + RESUME_CHECK_S
                    with contextlib.suppress(Exception):
                        await models.resume_abandoned()
        finally:
            await view.stop()
            await asyncio.to_thread(events.flush)

    service.background(keep_store)
    service.describe(
        lambda: {"events_applied_seq": view.applied, "events_flushed_seq": events.flushed_seq}
    )
    return service
