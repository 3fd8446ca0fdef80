"""Creates the streams, consumers and KV buckets that contracts.topology declares (idempotent)."""

from __future__ import annotations

import nats.js.errors
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    KeyValueConfig,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.kv import KeyValue

from contracts import topology
from contracts.topology import BucketSpec, ConsumerSpec, StreamSpec


async def ensure_stream(js: JetStreamContext, spec: StreamSpec, replicas: int = 1) -> None:
    config = StreamConfig(
        name=spec.name,
        subjects=list(spec.subjects),
        description=spec.description,
        max_age=spec.max_age_s or None,
        max_bytes=spec.max_bytes,
        storage=StorageType.FILE,
        num_replicas=replicas,
        duplicate_window=spec.duplicate_window_s,
        retention=RetentionPolicy.WORK_QUEUE if spec.work_queue else RetentionPolicy.LIMITS,
    )
    try:
        await js.stream_info(spec.name)
    except nats.js.errors.NotFoundError:
        await js.add_stream(config)
    else:
        await js.update_stream(config)


def consumer_config(spec: ConsumerSpec) -> ConsumerConfig:
    return ConsumerConfig(
        durable_name=spec.durable,
        filter_subject=spec.filter_subject,
        ack_policy=AckPolicy.EXPLICIT,
        deliver_policy=DeliverPolicy.ALL,
        ack_wait=spec.ack_wait_s,
        # One more than ours: the runtime dead-letters a message delivered more than
        # max_deliver times itself, so a message that crashes its consumer is not stuck.
        max_deliver=spec.max_deliver + 1,
        max_ack_pending=spec.max_ack_pending,
    )


async def ensure_consumer(js: JetStreamContext, spec: ConsumerSpec) -> None:
    config = consumer_config(spec)
    try:
        await js.consumer_info(spec.stream, spec.durable)
    except nats.js.errors.NotFoundError:
        await js.add_consumer(spec.stream, config)
    else:
        # add_consumer with an existing durable name updates its mutable settings.
        await js.add_consumer(spec.stream, config)


async def ensure_bucket(js: JetStreamContext, spec: BucketSpec, replicas: int = 1) -> KeyValue:
    try:
        return await js.key_value(spec.name)
    except nats.js.errors.BucketNotFoundError:
        pass
    return await js.create_key_value(
        KeyValueConfig(
            bucket=spec.name,
            description=spec.description,
            history=spec.history,
            ttl=spec.ttl_s or None,
            replicas=replicas,
        )
    )


async def ensure_platform(js: JetStreamContext, replicas: int = 1) -> None:
    """The streams and buckets every deployment has."""
    for stream in topology.STREAMS:
        await ensure_stream(js, stream, replicas)
    for bucket in topology.BUCKETS:
        await ensure_bucket(js, bucket, replicas)
