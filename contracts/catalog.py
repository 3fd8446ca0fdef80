"""Every message, operation and event in one list: the source of schema snapshots and AsyncAPI."""

from __future__ import annotations

from dataclasses import dataclass

from contracts import crawl, fraud, images, index, inference, subjects, system, topology, tune
from contracts.envelope import Message
from contracts.errors import ErrorReply


@dataclass(frozen=True)
class OperationDoc:
    subject: str
    request: type[Message]
    reply: type[Message]
    summary: str
    broadcast: bool = False  # every replica answers (no queue group)


@dataclass(frozen=True)
class EventDoc:
    subject: str
    message: type[Message]
    stream: str  # empty: a core NATS broadcast, not stored
    summary: str


def _ping_operations() -> list[OperationDoc]:
    return [
        OperationDoc(
            subjects.ping(service),
            system.PingRequest,
            system.PingReply,
            f"Liveness of the {service} service: one replica answers.",
        )
        for service in subjects.BACKEND_SERVICES
    ]


def _fraud_operations() -> list[OperationDoc]:
    seen: dict[str, OperationDoc] = {}
    for op in fraud.AFD_OPERATIONS:
        if op.bus_operation not in seen:
            seen[op.bus_operation] = OperationDoc(
                subjects.fraud_operation(op.bus_operation),
                op.request,
                fraud.FraudResult,
                f"Fraud Detector {op.name} (AFD's request and response shapes).",
            )
    return list(seen.values())


def _kendra_operations() -> list[OperationDoc]:
    return [
        OperationDoc(
            subjects.index_operation(op.bus_operation),
            op.request,
            index.IndexResult,
            f"Kendra {op.name} (Kendra's request and response shapes).",
        )
        for op in index.KENDRA_OPERATIONS
    ]


def _crawl_operations() -> list[OperationDoc]:
    return [
        OperationDoc(
            subjects.crawl_operation(op.bus_operation),
            op.request,
            crawl.CrawlResult,
            f"Kendra {op.name} (Kendra's request and response shapes).",
        )
        for op in crawl.CRAWL_OPERATIONS
    ] + [
        OperationDoc(
            subjects.crawl_operation(op.bus_operation),
            op.request,
            crawl.CrawlResult,
            f"Secrets Manager {op.name} for data source credentials (never returns a value).",
        )
        for op in crawl.SECRET_OPERATIONS
    ]


def _image_operations() -> list[OperationDoc]:
    sagemaker = [
        OperationDoc(
            subjects.image_operation(op.bus_operation),
            op.request,
            images.ImageResult,
            f"SageMaker {op.name} (SageMaker's request and response shapes).",
        )
        for op in (*images.SAGEMAKER_OPERATIONS, *images.REST_OPERATIONS)
    ]
    builds = [
        OperationDoc(
            subjects.image_operation("start_build"),
            images.StartBuild,
            images.BuildReply,
            "Queue a buildah build of an uploaded context, pushed to the registry.",
        ),
        OperationDoc(
            subjects.image_operation("describe_build"),
            images.DescribeBuild,
            images.BuildReply,
            "One build: status, image URI and digest.",
        ),
        OperationDoc(
            subjects.image_operation("cancel_build"),
            images.CancelBuild,
            images.BuildReply,
            "Cancel a queued or running build.",
        ),
        OperationDoc(
            subjects.image_operation("list_builds"),
            images.ListBuilds,
            images.BuildList,
            "Builds, newest first.",
        ),
    ]
    return [*sagemaker, *builds]


def _image_events() -> list[EventDoc]:
    work = topology.IMAGE_WORK.name
    return [
        EventDoc(
            subjects.IMAGE_BUILD_QUEUED, images.BuildQueued, work, "A build waits for a builder."
        ),
        EventDoc(
            subjects.IMAGE_VERSION_SUBMITTED,
            images.VersionSubmitted,
            work,
            "An image version waits for validation of the pushed image.",
        ),
        EventDoc(
            "image.v1.build_log.{build_id}",
            images.BuildLogLine,
            topology.IMAGE_BUILD_LOGS.name,
            "One line of a build's output; the last line carries the outcome.",
        ),
        EventDoc(
            subjects.IMAGE_BUILD_CANCEL_REQUESTED,
            images.BuildCancelRequested,
            "",
            "Core NATS broadcast: the builder running this build stops it.",
        ),
    ]


def _tune_operations() -> list[OperationDoc]:
    return [
        OperationDoc(subjects.tune_operation(name), request, tune.TuneResult, summary)
        for name, request, summary in (
            ("create_tuning_job", tune.TuningJobSpec, "Start a tuning job from its spec."),
            ("describe_tuning_job", tune.JobRef, "A job: status, best trial, Pareto set."),
            ("list_tuning_jobs", tune.ListTuningJobs, "Tuning jobs, newest first."),
            ("stop_tuning_job", tune.JobRef, "Stop a job and its running trials."),
            ("list_trials", tune.JobRef, "A job's trial table (and CSV)."),
            ("job_chart", tune.JobChart, "A chart of a job (SVG or PNG, base64)."),
        )
    ]


def _tune_events() -> list[EventDoc]:
    return [
        EventDoc(
            "tune.v1.trial_queued.{pool}",
            tune.TrialQueued,
            topology.TUNE_TRIAL_QUEUE.name,
            "A trial waits for a worker of its pool (a work queue per pool).",
        ),
        EventDoc(
            subjects.TUNE_TRIAL_REPORTED,
            tune.TrialReported,
            topology.TUNE_TRIAL_EVENTS.name,
            "A running trial reported metrics.",
        ),
        EventDoc(
            subjects.TUNE_TRIAL_ENDED,
            tune.TrialEnded,
            topology.TUNE_TRIAL_EVENTS.name,
            "A trial's process ended (completed, failed, stopped, paused, lost).",
        ),
        EventDoc(
            subjects.TUNE_TRIAL_CONTROL_REQUESTED,
            tune.TrialControl,
            "",
            "Core NATS broadcast: the worker running this trial stops or pauses it.",
        ),
    ]


def _index_events() -> list[EventDoc]:
    documents, activity = topology.DOCUMENTS.name, topology.INDEX_ACTIVITY.name
    return [
        EventDoc(subjects.CRAWL_DOCUMENT_ADDED, index.DocumentAdded, documents, "A new page."),
        EventDoc(
            subjects.CRAWL_DOCUMENT_MODIFIED,
            index.DocumentModified,
            documents,
            "A page fetched again changed.",
        ),
        EventDoc(
            subjects.CRAWL_DOCUMENT_DELETED,
            index.DocumentDeleted,
            documents,
            "A page is gone or out of scope.",
        ),
        EventDoc(
            subjects.INDEX_DOCUMENT_SUBMITTED,
            index.DocumentSubmitted,
            documents,
            "BatchPutDocument accepted a document.",
        ),
        EventDoc(
            subjects.INDEX_DOCUMENT_WITHDRAWN,
            index.DocumentWithdrawn,
            documents,
            "BatchDeleteDocument removed a document.",
        ),
        EventDoc(subjects.INDEX_FAQ_LOADED, index.FaqLoaded, documents, "An FAQ was loaded."),
        EventDoc(subjects.INDEX_FAQ_REMOVED, index.FaqRemoved, documents, "An FAQ was deleted."),
        EventDoc(
            subjects.INDEX_INDEX_DROPPED,
            index.IndexDropped,
            documents,
            "An index was deleted: replicas drop its content, the crawler its data sources.",
        ),
        EventDoc(subjects.INDEX_QUERY_LOGGED, index.QueryLogged, activity, "A query was answered."),
        EventDoc(
            subjects.INDEX_FEEDBACK_SUBMITTED,
            index.FeedbackSubmitted,
            activity,
            "Clicks and relevance votes on query results.",
        ),
    ]


OPERATIONS: tuple[OperationDoc, ...] = (
    *_ping_operations(),
    *_fraud_operations(),
    *_kendra_operations(),
    *_crawl_operations(),
    *_image_operations(),
    *_tune_operations(),
    OperationDoc(
        subjects.HEALTH_POLL,
        system.HealthPoll,
        system.ServiceHealth,
        "Every replica of every service answers with its health.",
        broadcast=True,
    ),
    OperationDoc(
        subjects.FRAUD_GET_KMS_ENCRYPTION_KEY,
        fraud.GetKmsEncryptionKeyRequest,
        fraud.KmsEncryptionKey,
        "The KMS key Fraud Detector data is encrypted with.",
    ),
    OperationDoc(
        subjects.FRAUD_PUT_KMS_ENCRYPTION_KEY,
        fraud.PutKmsEncryptionKeyCommand,
        fraud.KmsEncryptionKey,
        "Set the KMS key.",
    ),
    OperationDoc(
        subjects.INFERENCE_REGISTER_MODEL,
        inference.RegisterModelCommand,
        inference.ModelStatus,
        "Register a model version whose artifacts are in the model store (and load it).",
    ),
    OperationDoc(
        subjects.INFERENCE_LOAD_MODEL,
        inference.LoadModelCommand,
        inference.ModelStatus,
        "Serve a model: the latest version, or pin one.",
    ),
    OperationDoc(
        subjects.INFERENCE_UNLOAD_MODEL,
        inference.UnloadModelCommand,
        inference.ModelStatus,
        "Stop serving a model and free its memory.",
    ),
    OperationDoc(
        subjects.INFERENCE_LIST_MODELS,
        inference.ListModelsRequest,
        inference.ModelList,
        "Every registered model and its state on the answering replica.",
    ),
    OperationDoc(
        subjects.INFERENCE_GET_MODEL,
        inference.ModelRef,
        inference.ModelStatus,
        "One model's state.",
    ),
    OperationDoc(
        subjects.INFERENCE_INFER_TEMPLATE,
        inference.InferRequest,
        inference.InferReply,
        "Run a model: tensors, texts (embedding, classification) or rows (tabular scoring).",
    ),
    OperationDoc(
        subjects.INDEX_LIST_INDEXES,
        index.ListIndexesRequest,
        index.ListIndexesReply,
        "List search indexes.",
    ),
)

EVENTS: tuple[EventDoc, ...] = (
    *_index_events(),
    *_image_events(),
    *_tune_events(),
    EventDoc(
        subjects.CRAWL_FRONTIER_QUEUED,
        crawl.FrontierUrl,
        topology.CRAWL_FRONTIER.name,
        "A URL waits to be fetched in a sync (a work queue shared by crawler replicas).",
    ),
    EventDoc(
        subjects.FRAUD_EVENT_SENT,
        fraud.EventSent,
        topology.FRAUD_EVENTS.name,
        "An event was stored.",
    ),
    EventDoc(
        subjects.FRAUD_EVENTS_SENT,
        fraud.EventsSent,
        topology.FRAUD_EVENTS.name,
        "Several events were stored in one message (a group commit); in their order.",
    ),
    EventDoc(
        subjects.FRAUD_EVENT_LABEL_UPDATED,
        fraud.EventLabelUpdated,
        topology.FRAUD_EVENTS.name,
        "A stored event was relabelled.",
    ),
    EventDoc(
        subjects.FRAUD_EVENT_DELETED,
        fraud.EventDeleted,
        topology.FRAUD_EVENTS.name,
        "An event was deleted.",
    ),
    EventDoc(
        subjects.FRAUD_EVENTS_PURGED,
        fraud.EventsPurged,
        topology.FRAUD_EVENTS.name,
        "Every stored event of an event type was deleted.",
    ),
    EventDoc(
        subjects.DEAD_LETTERED,
        system.DeadLetter,
        topology.DEAD_LETTERS.name,
        "A message that could not be processed, with the error.",
    ),
)


def all_messages() -> dict[str, type[Message]]:
    """Every message body by its type name, plus the error reply and nested models."""
    found: dict[str, type[Message]] = {ErrorReply.message_type: ErrorReply}
    for op in OPERATIONS:
        found[op.request.message_type] = op.request
        found[op.reply.message_type] = op.reply
    for ev in EVENTS:
        found[ev.message.message_type] = ev.message
    found[system.ConsumerStatus.message_type] = system.ConsumerStatus
    found[index.IndexSummary.message_type] = index.IndexSummary
    found[inference.ModelStatus.message_type] = inference.ModelStatus
    found[images.Build.message_type] = images.Build
    return dict(sorted(found.items()))
