"""JetStream streams, durable consumers and KV buckets: declared here, created by the runtime."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from contracts import subjects


class StreamSpec(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    subjects: tuple[str, ...]
    description: str
    max_age_s: float = 0.0  # 0 = keep forever
    max_bytes: int = -1
    duplicate_window_s: float = 120.0
    work_queue: bool = False  # a message is removed once acked (a queue, not a log)


class ConsumerSpec(BaseModel):
    """A durable pull consumer with explicit ack and bounded, backed-off redelivery."""

    model_config = ConfigDict(frozen=True)

    stream: str
    durable: str
    filter_subject: str
    max_deliver: int = Field(default=5, ge=1)
    ack_wait_s: float = Field(default=30.0, gt=0)
    # Delay before the n-th redelivery (the last value repeats).
    backoff_s: tuple[float, ...] = (0.5, 2.0, 10.0)
    max_ack_pending: int = 1000


class BucketSpec(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    description: str
    history: int = 1
    ttl_s: float = 0.0  # 0 = no expiry


DEAD_LETTERS = StreamSpec(
    name="SYSTEM_DEAD_LETTERS",
    subjects=(subjects.DEAD_LETTERED,),
    description="Messages no consumer could process: original bytes, headers and the error.",
    max_age_s=30 * 24 * 3600,
    max_bytes=1024**3,  # a flood of bad input must not fill the disk: the oldest go first
)

FRAUD_EVENTS = StreamSpec(
    name="FRAUD_EVENTS",
    subjects=(subjects.FRAUD_EVENTS_ALL,),
    description="Stored fraud events: sent, relabelled, deleted. Each fraud replica's Parquet store "
    "is a view of this log.",
)

DOCUMENTS = StreamSpec(
    name="DOCUMENTS",
    subjects=(subjects.CRAWL_DOCUMENTS_ALL, *subjects.INDEX_CONTENT_ALL),
    description="Everything an index holds: crawled and submitted documents, deletions, FAQs, "
    "dropped indexes. Each search replica is a view of this log.",
)
INDEX_ACTIVITY = StreamSpec(
    name="INDEX_ACTIVITY",
    subjects=subjects.INDEX_ACTIVITY_ALL,
    description="Queries answered and feedback given: query suggestions and feedback reports.",
    max_age_s=365 * 24 * 3600,
    max_bytes=4 * 1024**3,
)

CRAWL_FRONTIER = StreamSpec(
    name="CRAWL_FRONTIER",
    subjects=(subjects.CRAWL_FRONTIER_QUEUED,),
    description="URLs waiting to be fetched, for every running sync; crawler replicas share it.",
    work_queue=True,
)
CRAWL_FRONTIER_CONSUMER = ConsumerSpec(
    stream="CRAWL_FRONTIER",
    durable="crawler-frontier",
    filter_subject=subjects.CRAWL_FRONTIER_QUEUED,
    ack_wait_s=120.0,
    max_ack_pending=256,
)
CRAWL_INDEX_DROPS_CONSUMER = ConsumerSpec(
    stream="DOCUMENTS",
    durable="crawler-index-drops",
    filter_subject=subjects.INDEX_INDEX_DROPPED,
)
CRAWL_SOURCES = BucketSpec(
    name="crawl_sources",
    description="Data sources (source.<id>) and their sync jobs (job.<source>.<sync>).",
    history=5,
)
CRAWL_PAGES = BucketSpec(
    name="crawl_pages",
    description=(
        "What each source indexed per URL: content hash, ETag, Last-Modified, fetch time, "
        "the links to follow without refetching, last sync."
    ),
)
CRAWL_SEEN = BucketSpec(
    name="crawl_seen",
    description="URLs (and main-text hashes) a sync has already queued: the frontier's seen-set.",
    ttl_s=7 * 24 * 3600,
)
CRAWL_SECRETS = BucketSpec(
    name="crawl_secrets",
    description="Credentials data sources use (secret.<name hash>), values sealed with Fernet.",
)
CRAWL_SESSIONS = BucketSpec(
    name="crawl_sessions",
    description="Form-login cookie jars, one per sync (<sync id>), sealed: every replica of a "
    "sync uses the one session.",
    ttl_s=7 * 24 * 3600,
)
CRAWL_RATES = BucketSpec(
    name="crawl_rates",
    description="Per-host fetch schedules, one per sync and host (<sync id>.<host hash>): the next "
    "allowed start, claimed by compare-and-set so that every crawler replica keeps one rate.",
    ttl_s=24 * 3600,
)

SERVICE_REGISTRY = BucketSpec(
    name="trellis_services",
    description="One key per live service replica, refreshed by its heartbeat; expires when it dies.",
    ttl_s=15.0,
)
GATEWAY_API_KEYS = BucketSpec(
    name="gateway_api_keys",
    description="REST API keys (hashed) and AWS access-key pairs (secret sealed), with scopes.",
    history=5,
)
FRAUD_SETTINGS = BucketSpec(
    name="fraud_settings",
    description="Account-level Fraud Detector settings (KMS key).",
    history=5,
)
INDEX_INDEXES = BucketSpec(
    name="index_indexes",
    description="Search index resources.",
    history=5,
)

INFERENCE_MODELS = BucketSpec(
    name="inference_models",
    description="Model versions (config.<name>.<version>) and what to serve (policy.<name>).",
    history=5,
)
INFERENCE_ARTIFACTS = "inference_artifacts"  # object store: <name>/<version>/<file>

FRAUD_RESOURCES = BucketSpec(
    name="fraud_resources",
    description="Fraud Detector resources: <kind>.<id> (variables, event types, models, detectors...).",
    history=5,
)
FRAUD_ARTIFACTS = "fraud_artifacts"  # object store: model versions' boosters, ONNX, metrics, charts
FRAUD_UPLOADS = "fraud_uploads"  # object store: event files uploaded through the gateway
UPLOADS_LOCATION = "s3://trellis-uploads/"  # how AFD requests name an uploaded object

INDEX_UPLOADS = "index_uploads"  # object store: FAQ files uploaded through the gateway
INDEX_SNAPSHOTS = "index_snapshots"  # object store: <snapshot id>/<index id>.{json.gz,npy}

IMAGE_WORK = StreamSpec(
    name="IMAGE_WORK",
    subjects=(subjects.IMAGE_BUILD_QUEUED, subjects.IMAGE_VERSION_SUBMITTED),
    description="Builds waiting for a builder and image versions waiting for validation; "
    "image-builder replicas share it.",
    work_queue=True,
)
IMAGE_BUILD_CONSUMER = ConsumerSpec(
    stream="IMAGE_WORK",
    durable="image-builds",
    filter_subject=subjects.IMAGE_BUILD_QUEUED,
    ack_wait_s=60.0,  # a running build keeps its message alive; a dead builder's is redelivered
    max_deliver=3,
    max_ack_pending=64,
)
IMAGE_VALIDATION_CONSUMER = ConsumerSpec(
    stream="IMAGE_WORK",
    durable="image-validations",
    filter_subject=subjects.IMAGE_VERSION_SUBMITTED,
    ack_wait_s=60.0,
    max_deliver=3,
    max_ack_pending=64,
)
IMAGE_BUILD_LOGS = StreamSpec(
    name="IMAGE_BUILD_LOGS",
    subjects=(subjects.IMAGE_BUILD_LOG_ALL,),
    description="Build output lines, one subject per build, for live followers; the whole log is "
    "also stored with the build.",
    max_age_s=7 * 24 * 3600,
    max_bytes=1024**3,
)
IMAGE_RESOURCES = BucketSpec(
    name="image_resources",
    description="SageMaker image resources: image.<name>, version.<name>.<n>, config.<name>, "
    "domain.<id>, profile.<domain>.<name>, and builds (build.<id>).",
    history=5,
)
IMAGE_CONTEXTS = "image_contexts"  # object store: build contexts (tar) uploaded through the gateway
IMAGE_LOGS = "image_build_logs"  # object store: each build's whole log, <build id>.log

TUNE_TRIAL_QUEUE = StreamSpec(
    name="TUNE_TRIAL_QUEUE",
    subjects=(subjects.TUNE_TRIAL_QUEUED_ALL,),
    description="Trials waiting for a worker, one subject per pool; workers of a pool share it.",
    work_queue=True,
)
TUNE_TRIAL_EVENTS = StreamSpec(
    name="TUNE_TRIAL_EVENTS",
    subjects=subjects.TUNE_TRIAL_EVENTS_ALL,
    description="What trials reported and how they ended; the tuner's jobs advance on it.",
    max_age_s=30 * 24 * 3600,
    max_bytes=4 * 1024**3,
)
TUNE_REPORTS_CONSUMER = ConsumerSpec(
    stream="TUNE_TRIAL_EVENTS",
    durable="tuner-trial-reports",
    filter_subject=subjects.TUNE_TRIAL_REPORTED,
    ack_wait_s=30.0,
    max_ack_pending=1000,
)
TUNE_ENDS_CONSUMER = ConsumerSpec(
    stream="TUNE_TRIAL_EVENTS",
    durable="tuner-trial-ends",
    filter_subject=subjects.TUNE_TRIAL_ENDED,
    ack_wait_s=30.0,
    max_ack_pending=1000,
)


def tune_pool_consumer(pool: str, ack_wait_s: float) -> ConsumerSpec:
    """The durable consumer a pool's workers share (created by the first worker of the pool)."""
    return ConsumerSpec(
        stream="TUNE_TRIAL_QUEUE",
        durable=f"tune-pool-{pool}",
        filter_subject=subjects.tune_trial_queued(pool),
        ack_wait_s=ack_wait_s,
        # Redelivered while its dead holder's registry entry (15 s TTL) lives on: try for long enough.
        max_deliver=20,
        backoff_s=(5.0,),
        max_ack_pending=10_000,
    )


TUNE_JOBS = BucketSpec(
    name="tune_jobs",
    description="Tuning jobs (job.<name>): spec, status, scheduler state, the trial table.",
    history=3,
)
# object store: <job>/<trial id>, a tar of the trial's checkpoint directory (bounded by workers)
TUNE_CHECKPOINTS = "tune_checkpoints"
TUNE_WORKERS = BucketSpec(
    name="tune_workers",
    description="Live tuner workers (<pool>.<worker>): slots, resources, cost; expires with them.",
    ttl_s=15.0,
)

STREAMS: tuple[StreamSpec, ...] = (
    DEAD_LETTERS,
    FRAUD_EVENTS,
    DOCUMENTS,
    INDEX_ACTIVITY,
    CRAWL_FRONTIER,
    IMAGE_WORK,
    IMAGE_BUILD_LOGS,
    TUNE_TRIAL_QUEUE,
    TUNE_TRIAL_EVENTS,
)
BUCKETS: tuple[BucketSpec, ...] = (
    SERVICE_REGISTRY,
    GATEWAY_API_KEYS,
    FRAUD_SETTINGS,
    INDEX_INDEXES,
    IMAGE_RESOURCES,
    TUNE_JOBS,
)
