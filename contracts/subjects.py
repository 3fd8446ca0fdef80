"""The one module that builds NATS subject names.

Events are `<domain>.v1.<entity>.<event>` (past tense), request/reply operations are
`<domain>.v1.<operation>`. Nothing else in the code base writes a subject by hand.
"""

from __future__ import annotations

import re

VERSION = "v1"

# Service (process) name -> the domain token its subjects start with.
SERVICE_DOMAINS: dict[str, str] = {
    "crawler": "crawl",
    "indexer": "index",
    "image_builder": "image",
    "fraud": "fraud",
    "tuner": "tune",
    "inference": "inference",
}
BACKEND_SERVICES: tuple[str, ...] = tuple(SERVICE_DOMAINS)
SYSTEM_DOMAIN = "system"

_TOKEN = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


def _check(*tokens: str) -> None:
    for token in tokens:
        if not _TOKEN.match(token):
            raise ValueError(f"invalid subject token {token!r}: use lowercase [a-z0-9_], start a-z")


def event(domain: str, entity: str, happened: str) -> str:
    """Subject of an event: `crawl.v1.document.added`."""
    _check(domain, entity, happened)
    return f"{domain}.{VERSION}.{entity}.{happened}"


def operation(domain: str, name: str) -> str:
    """Subject of a request/reply operation: `fraud.v1.get_event_prediction`."""
    _check(domain, name)
    return f"{domain}.{VERSION}.{name}"


def domain_of(service: str) -> str:
    try:
        return SERVICE_DOMAINS[service]
    except KeyError:
        raise ValueError(f"unknown service {service!r}") from None


def ping(service: str) -> str:
    """Every back-end service answers `<domain>.v1.ping` (one replica, queue group)."""
    return operation(domain_of(service), "ping")


# Every replica of every service answers this (no queue group): a scatter-gather health poll.
HEALTH_POLL = operation(SYSTEM_DOMAIN, "health")
# Messages that could not be processed, with the original bytes and the error.
DEAD_LETTERED = event(SYSTEM_DOMAIN, "message", "dead_lettered")

# Facts about stored fraud events (the FRAUD_EVENTS stream).
FRAUD_EVENT_SENT = event("fraud", "event", "sent")
FRAUD_EVENTS_SENT = event("fraud", "event", "sent_together")
FRAUD_EVENT_LABEL_UPDATED = event("fraud", "event", "label_updated")
FRAUD_EVENT_DELETED = event("fraud", "event", "deleted")
FRAUD_EVENTS_PURGED = event("fraud", "event", "purged")
FRAUD_EVENTS_ALL = "fraud.v1.event.*"


def fraud_operation(name: str) -> str:
    """`fraud.v1.<operation>` for an AFD operation in snake case (`get_event_prediction`)."""
    return operation("fraud", name)


# Operations implemented so far.
FRAUD_GET_KMS_ENCRYPTION_KEY = operation("fraud", "get_kms_encryption_key")
FRAUD_PUT_KMS_ENCRYPTION_KEY = operation("fraud", "put_kms_encryption_key")
INDEX_LIST_INDEXES = operation("index", "list_indexes")


def index_operation(name: str) -> str:
    """`index.v1.<operation>` for a Kendra operation in snake case (`batch_put_document`)."""
    return operation("index", name)


# The documents stream: what the crawler found and what the Kendra API put, in one log.
CRAWL_DOCUMENT_ADDED = event("crawl", "document", "added")
CRAWL_DOCUMENT_MODIFIED = event("crawl", "document", "modified")
CRAWL_DOCUMENT_DELETED = event("crawl", "document", "deleted")
INDEX_DOCUMENT_SUBMITTED = event("index", "document", "submitted")
INDEX_DOCUMENT_WITHDRAWN = event("index", "document", "withdrawn")
INDEX_FAQ_LOADED = event("index", "faq", "loaded")
INDEX_FAQ_REMOVED = event("index", "faq", "removed")
INDEX_INDEX_DROPPED = event("index", "index", "dropped")
CRAWL_DOCUMENTS_ALL = "crawl.v1.document.*"
CRAWL_FRONTIER_QUEUED = event("crawl", "frontier", "queued")


def crawl_operation(name: str) -> str:
    """`crawl.v1.<operation>` for a Kendra data source operation (`start_data_source_sync_job`)."""
    return operation("crawl", name)


INDEX_CONTENT_ALL = ("index.v1.document.*", "index.v1.faq.*", "index.v1.index.*")
# Query activity: the query log (suggestions, feedback resolution) and feedback.
INDEX_QUERY_LOGGED = event("index", "query", "logged")
INDEX_FEEDBACK_SUBMITTED = event("index", "feedback", "submitted")
INDEX_ACTIVITY_ALL = ("index.v1.query.*", "index.v1.feedback.*")
INFERENCE_REGISTER_MODEL = operation("inference", "register_model")
INFERENCE_LOAD_MODEL = operation("inference", "load_model")
INFERENCE_UNLOAD_MODEL = operation("inference", "unload_model")
INFERENCE_LIST_MODELS = operation("inference", "list_models")
INFERENCE_GET_MODEL = operation("inference", "get_model")

_MODEL_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
# One subscription serves every model: `inference.v1.<model>.infer`.
INFERENCE_INFER_ANY = f"inference.{VERSION}.*.infer"
INFERENCE_INFER_TEMPLATE = f"inference.{VERSION}.{{model}}.infer"  # for documents (AsyncAPI)


def model_infer(model: str) -> str:
    """Subject of inference on one model: `inference.v1.all-minilm-l6-v2.infer`."""
    if not _MODEL_NAME.match(model):
        raise ValueError(f"invalid model name {model!r}: use [a-z0-9][a-z0-9_-]{{0,62}}")
    return f"inference.{VERSION}.{model}.infer"


def model_of_infer_subject(subject: str) -> str:
    return subject.split(".")[2]


def queue_group(service: str) -> str:
    """Replicas of one service share work through this queue group."""
    domain_of(service)
    return f"trellis_{service}"


def image_operation(name: str) -> str:
    """`image.v1.<operation>` for a SageMaker image operation or a build (`create_image_version`)."""
    return operation("image", name)


# Work for builder replicas (the IMAGE_WORK queue) and the broadcast that cancels a running build.
IMAGE_BUILD_QUEUED = event("image", "build", "queued")
IMAGE_VERSION_SUBMITTED = event("image", "version", "submitted")
IMAGE_BUILD_CANCEL_REQUESTED = event("image", "build", "cancel_requested")
IMAGE_BUILD_LOG_ALL = "image.v1.build_log.*"


def image_build_log(build_id: str) -> str:
    """`image.v1.build_log.<build id>`: one build's output lines, so a follower filters on one."""
    _check(build_id)
    return f"image.{VERSION}.build_log.{build_id}"


def tune_operation(name: str) -> str:
    """`tune.v1.<operation>` for a tuning job operation (`create_tuning_job`)."""
    return operation("tune", name)


TUNE_TRIAL_QUEUED_ALL = "tune.v1.trial_queued.*"
TUNE_TRIAL_REPORTED = event("tune", "trial", "reported")
TUNE_TRIAL_ENDED = event("tune", "trial", "ended")
TUNE_TRIAL_EVENTS_ALL = (TUNE_TRIAL_REPORTED, TUNE_TRIAL_ENDED)
TUNE_TRIAL_CONTROL_REQUESTED = event("tune", "trial", "control_requested")


def tune_trial_queued(pool: str) -> str:
    """`tune.v1.trial_queued.<pool>`: the queue of one worker pool."""
    _check(pool)
    return f"tune.{VERSION}.trial_queued.{pool}"
