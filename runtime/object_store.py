"""Object stores (artifacts, uploads, snapshots): open one, creating it on first use."""

from __future__ import annotations

import nats.js.errors
from nats.js import JetStreamContext
from nats.js.api import ObjectStoreConfig, StorageType
from nats.js.object_store import ObjectStore


async def open_object_store(
    js: JetStreamContext, bucket: str, description: str, replicas: int = 1
) -> ObjectStore:
    try:
        return await js.object_store(bucket)
    except nats.js.errors.BucketNotFoundError:
        return await js.create_object_store(
            bucket,
            config=ObjectStoreConfig(
                description=description, storage=StorageType.FILE, replicas=replicas
            ),
        )
