"""Fraud Detector messages: one request model per AFD operation (AFD's field names) and the reply."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, Literal

from pydantic import ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

from contracts.envelope import Command, Message

DEFAULT_KMS_KEY = "DEFAULT"
IDENTIFIER = r"^[0-9a-z_-]+$"
NO_DASH_IDENTIFIER = r"^[0-9a-z_]+$"
DataType = Literal["STRING", "INTEGER", "FLOAT", "BOOLEAN", "DATETIME"]
DataSource = Literal["EVENT", "MODEL_SCORE", "EXTERNAL_MODEL_SCORE"]
ModelType = Literal[
    "ONLINE_FRAUD_INSIGHTS", "TRANSACTION_FRAUD_INSIGHTS", "ACCOUNT_TAKEOVER_INSIGHTS"
]
VARIABLE_TYPES = frozenset(
    """AUTH_CODE AVS BILLING_ADDRESS_L1 BILLING_ADDRESS_L2 BILLING_CITY BILLING_COUNTRY BILLING_NAME
    BILLING_PHONE BILLING_STATE BILLING_ZIP CARD_BIN CATEGORICAL CURRENCY_CODE EMAIL_ADDRESS FINGERPRINT
    FRAUD_LABEL FREE_FORM_TEXT IP_ADDRESS NUMERIC ORDER_ID PAYMENT_TYPE PHONE_NUMBER PRICE PRODUCT_CATEGORY
    SHIPPING_ADDRESS_L1 SHIPPING_ADDRESS_L2 SHIPPING_CITY SHIPPING_COUNTRY SHIPPING_NAME SHIPPING_PHONE
    SHIPPING_STATE SHIPPING_ZIP USERAGENT""".split()
)


class AfdMessage(Message):
    """AFD's JSON names (camelCase) on the AWS API; Python names inside. Unknown fields are refused."""

    model_config = ConfigDict(extra="forbid", alias_generator=to_camel, populate_by_name=True)


class Tag(AfdMessage):
    message_type: ClassVar[str] = "fraud.v1.tag"
    key: str = Field(min_length=1, max_length=128)
    value: str = Field(max_length=256)


class Entity(AfdMessage):
    message_type: ClassVar[str] = "fraud.v1.entity"
    entity_type: str = Field(min_length=1, max_length=64)
    entity_id: str = Field(min_length=1, max_length=256, pattern=r"^[0-9A-Za-z_.@+-]+$")


class _Tagged(AfdMessage):
    tags: list[Tag] = Field(default_factory=list, max_length=200)


# -- operations ------------------------------------------------------------------------------


class VariableEntry(AfdMessage):
    message_type: ClassVar[str] = "fraud.v1.variable_entry"
    name: str = Field(min_length=1, max_length=64, pattern=r"^[a-z_][a-z0-9_]*$")
    data_type: DataType
    data_source: DataSource = "EVENT"
    default_value: str = Field(max_length=1024)
    description: str | None = Field(default=None, max_length=256)
    variable_type: str | None = None

    @field_validator("variable_type")
    @classmethod
    def _known_type(cls, value: str | None) -> str | None:
        if value is not None and value not in VARIABLE_TYPES:
            raise ValueError(f"unknown variableType {value!r}; use one of {sorted(VARIABLE_TYPES)}")
        return value


class CreateVariable(VariableEntry, _Tagged):
    message_type: ClassVar[str] = "fraud.v1.create_variable"


class BatchCreateVariable(_Tagged):
    message_type: ClassVar[str] = "fraud.v1.batch_create_variable"
    variable_entries: list[VariableEntry] = Field(min_length=1, max_length=25)


class GetVariables(AfdMessage):
    message_type: ClassVar[str] = "fraud.v1.get_variables"
    name: str | None = None
    next_token: str | None = None
    max_results: int | None = Field(default=None, ge=50, le=100)


class UpdateVariable(AfdMessage):
    message_type: ClassVar[str] = "fraud.v1.update_variable"
    name: str
    default_value: str | None = None
    description: str | None = Field(default=None, max_length=256)
    variable_type: str | None = None


class DeleteVariable(AfdMessage):
    message_type: ClassVar[str] = "fraud.v1.delete_variable"
    name: str


class PutNamed(_Tagged):
    """PutEntityType, PutLabel, PutOutcome: create or update a named resource."""

    message_type: ClassVar[str] = "fraud.v1.put_named"
    kind: Literal["entity_type", "label", "outcome"] = "entity_type"
    name: str = Field(min_length=1, max_length=64, pattern=IDENTIFIER)
    description: str | None = Field(default=None, max_length=128)


class GetNamed(AfdMessage):
    """GetEntityTypes, GetLabels, GetOutcomes, GetEventTypes, GetDetectors, GetModels' name filter."""

    message_type: ClassVar[str] = "fraud.v1.get_named"
    kind: Literal["entity_type", "label", "outcome", "event_type", "detector", "list"] = (
        "entity_type"
    )
    name: str | None = None
    detector_id: str | None = Field(default=None, description="GetDetectors names its filter so.")
    next_token: str | None = None
    max_results: int | None = Field(default=None, ge=1, le=100)

    @model_validator(mode="after")
    def _detector_id_is_the_name(self) -> GetNamed:
        _name_from_detector_id(self)
        return self


class DeleteNamed(AfdMessage):
    message_type: ClassVar[str] = "fraud.v1.delete_named"
    kind: Literal["entity_type", "label", "outcome", "event_type", "detector", "list"] = (
        "entity_type"
    )
    name: str = ""
    detector_id: str | None = Field(default=None, description="DeleteDetector names it so.")

    @model_validator(mode="after")
    def _detector_id_is_the_name(self) -> DeleteNamed:
        _name_from_detector_id(self)
        if not self.name:
            missing = "detectorId" if self.kind == "detector" else "name"
            raise ValueError(f"{missing} is required")
        return self


def _name_from_detector_id(message: GetNamed | DeleteNamed) -> None:
    """AFD calls a detector's name `detectorId`; Trellis keeps it as the name."""
    if message.detector_id is not None:
        if message.kind != "detector":
            raise ValueError("detectorId applies to detectors only")
        if message.name and message.name != message.detector_id:
            raise ValueError("give detectorId or name, not both")
        message.name = message.detector_id
        message.detector_id = None


class CreateList(_Tagged):
    message_type: ClassVar[str] = "fraud.v1.create_list"
    name: str = Field(min_length=1, max_length=64, pattern=NO_DASH_IDENTIFIER)
    elements: list[str] = Field(default_factory=list, max_length=100_000)
    variable_type: str | None = None
    description: str | None = Field(default=None, max_length=128)


class UpdateList(AfdMessage):
    message_type: ClassVar[str] = "fraud.v1.update_list"
    name: str
    elements: list[str] | None = Field(default=None, max_length=100_000)
    description: str | None = None
    update_mode: Literal["REPLACE", "APPEND", "REMOVE"] | None = None
    variable_type: str | None = None


class GetListElements(AfdMessage):
    message_type: ClassVar[str] = "fraud.v1.get_list_elements"
    name: str
    next_token: str | None = None
    max_results: int | None = Field(default=None, ge=500, le=5000)


class EventOrchestration(AfdMessage):
    message_type: ClassVar[str] = "fraud.v1.event_orchestration"
    event_bridge_enabled: bool


class PutEventType(_Tagged):
    message_type: ClassVar[str] = "fraud.v1.put_event_type"
    name: str = Field(min_length=1, max_length=64, pattern=IDENTIFIER)
    description: str | None = Field(default=None, max_length=128)
    event_variables: list[str] = Field(min_length=1)
    labels: list[str] = Field(default_factory=list)
    entity_types: list[str] = Field(min_length=1)
    event_ingestion: Literal["ENABLED", "DISABLED"] | None = None
    event_orchestration: EventOrchestration | None = None


class SendEvent(AfdMessage):
    message_type: ClassVar[str] = "fraud.v1.send_event"
    event_id: str = Field(min_length=1, max_length=64, pattern=IDENTIFIER)
    event_type_name: str
    event_timestamp: str
    event_variables: dict[str, str] = Field(min_length=1)
    assigned_label: str | None = None
    label_timestamp: str | None = None
    entities: list[Entity] = Field(min_length=1, max_length=1)


class EventRef(AfdMessage):
    """GetEvent and DeleteEvent."""

    message_type: ClassVar[str] = "fraud.v1.event_ref"
    event_id: str
    event_type_name: str
    delete_audit_history: bool | None = None


class UpdateEventLabel(AfdMessage):
    message_type: ClassVar[str] = "fraud.v1.update_event_label"
    event_id: str
    event_type_name: str
    assigned_label: str
    label_timestamp: str


class DeleteEventsByEventType(AfdMessage):
    message_type: ClassVar[str] = "fraud.v1.delete_events_by_event_type"
    event_type_name: str


class CreateBatchImportJob(_Tagged):
    message_type: ClassVar[str] = "fraud.v1.create_batch_import_job"
    job_id: str = Field(min_length=1, max_length=64, pattern=IDENTIFIER)
    input_path: str = Field(min_length=1, max_length=4096)
    output_path: str = Field(min_length=1, max_length=4096)
    event_type_name: str
    iam_role_arn: str


class CreateBatchPredictionJob(_Tagged):
    message_type: ClassVar[str] = "fraud.v1.create_batch_prediction_job"
    job_id: str = Field(min_length=1, max_length=64, pattern=IDENTIFIER)
    input_path: str = Field(min_length=1, max_length=4096)
    output_path: str = Field(min_length=1, max_length=4096)
    event_type_name: str
    detector_name: str
    detector_version: str | None = Field(default=None, pattern=r"^[1-9][0-9]*$")
    iam_role_arn: str


class GetBatchImportJobs(AfdMessage):
    message_type: ClassVar[str] = "fraud.v1.get_batch_import_jobs"
    job_id: str | None = None
    max_results: int | None = Field(default=None, ge=1, le=50)
    next_token: str | None = None


class CreateModel(_Tagged):
    message_type: ClassVar[str] = "fraud.v1.create_model"
    model_id: str = Field(min_length=1, max_length=64, pattern=r"^[0-9a-z_]+$")
    model_type: ModelType
    description: str | None = Field(default=None, max_length=128)
    event_type_name: str


class ModelRef(AfdMessage):
    """GetModels (filters), DeleteModel, DescribeModelVersions."""

    message_type: ClassVar[str] = "fraud.v1.model_ref"
    model_id: str | None = None
    model_type: ModelType | None = None
    model_version_number: str | None = None
    next_token: str | None = None
    max_results: int | None = Field(default=None, ge=1, le=10)


class LabelSchema(AfdMessage):
    message_type: ClassVar[str] = "fraud.v1.label_schema"
    label_mapper: dict[str, list[str]] = Field(default_factory=dict)
    unlabeled_events_treatment: Literal["IGNORE", "FRAUD", "LEGIT", "AUTO"] | None = None


class TrainingDataSchema(AfdMessage):
    message_type: ClassVar[str] = "fraud.v1.training_data_schema"
    model_variables: list[str] = Field(min_length=1)
    label_schema: LabelSchema | None = None


class ExternalEventsDetail(AfdMessage):
    message_type: ClassVar[str] = "fraud.v1.external_events_detail"
    data_location: str = Field(min_length=1, max_length=4096)
    data_access_role_arn: str


class TimeWindow(AfdMessage):
    message_type: ClassVar[str] = "fraud.v1.time_window"
    start_time: str
    end_time: str


class IngestedEventsDetail(AfdMessage):
    message_type: ClassVar[str] = "fraud.v1.ingested_events_detail"
    ingested_events_time_window: TimeWindow


class CreateModelVersion(_Tagged):
    message_type: ClassVar[str] = "fraud.v1.create_model_version"
    model_id: str
    model_type: ModelType
    training_data_source: Literal["EXTERNAL_EVENTS", "INGESTED_EVENTS"]
    training_data_schema: TrainingDataSchema
    external_events_detail: ExternalEventsDetail | None = None
    ingested_events_detail: IngestedEventsDetail | None = None


class UpdateModelVersionStatus(AfdMessage):
    message_type: ClassVar[str] = "fraud.v1.update_model_version_status"
    model_id: str
    model_type: ModelType
    model_version_number: str
    status: Literal["ACTIVE", "INACTIVE", "TRAINING_CANCELLED"]


class PutDetector(_Tagged):
    message_type: ClassVar[str] = "fraud.v1.put_detector"
    detector_id: str = Field(min_length=1, max_length=64, pattern=IDENTIFIER)
    description: str | None = Field(default=None, max_length=128)
    event_type_name: str


class CreateRule(_Tagged):
    message_type: ClassVar[str] = "fraud.v1.create_rule"
    rule_id: str = Field(min_length=1, max_length=64, pattern=IDENTIFIER)
    detector_id: str
    description: str | None = Field(default=None, max_length=128)
    expression: str = Field(min_length=1, max_length=4096)
    language: Literal["DETECTORPL"]
    outcomes: list[str] = Field(min_length=1)


class RuleRef(AfdMessage):
    message_type: ClassVar[str] = "fraud.v1.rule_ref"
    detector_id: str
    rule_id: str
    rule_version: str = Field(pattern=r"^[1-9][0-9]*$")


class ModelVersionRef(AfdMessage):
    message_type: ClassVar[str] = "fraud.v1.model_version_ref"
    model_id: str
    model_type: ModelType
    model_version_number: str = Field(pattern=r"^[1-9][0-9]{0,3}\.[0-9]{1,2}$")


class CreateDetectorVersion(_Tagged):
    message_type: ClassVar[str] = "fraud.v1.create_detector_version"
    detector_id: str
    description: str | None = Field(default=None, max_length=128)
    external_model_endpoints: list[str] = Field(default_factory=list)
    rules: list[RuleRef] = Field(min_length=1)
    model_versions: list[ModelVersionRef] = Field(default_factory=list)
    rule_execution_mode: Literal["FIRST_MATCHED", "ALL_MATCHED"] | None = None


class DescribeDetector(AfdMessage):
    """A detector and the summaries of its versions."""

    message_type: ClassVar[str] = "fraud.v1.describe_detector"
    detector_id: str = Field(min_length=1, max_length=64)
    detector_version_id: str | None = Field(default=None, pattern=r"^[1-9][0-9]*$")
    next_token: str | None = None
    max_results: int | None = Field(default=None, ge=1000, le=2500)


class DetectorVersionRef(AfdMessage):
    """GetDetectorVersion, UpdateDetectorVersionStatus (with status), DeleteDetectorVersion."""

    message_type: ClassVar[str] = "fraud.v1.detector_version_ref"
    detector_id: str
    detector_version_id: str = Field(pattern=r"^[1-9][0-9]*$")
    status: Literal["DRAFT", "ACTIVE", "INACTIVE"] | None = None


class GetRules(AfdMessage):
    message_type: ClassVar[str] = "fraud.v1.get_rules"
    detector_id: str
    rule_id: str | None = None
    rule_version: str | None = None
    next_token: str | None = None
    max_results: int | None = Field(default=None, ge=50, le=100)


class DeleteRule(AfdMessage):
    message_type: ClassVar[str] = "fraud.v1.delete_rule"
    rule: RuleRef


class GetEventPrediction(AfdMessage):
    message_type: ClassVar[str] = "fraud.v1.get_event_prediction"
    detector_id: str
    detector_version_id: str | None = None
    event_id: str = Field(min_length=1, max_length=64)
    event_type_name: str
    entities: list[Entity] = Field(min_length=1, max_length=1)
    event_timestamp: str
    event_variables: dict[str, str] = Field(min_length=1)
    external_model_endpoint_data_blobs: dict[str, Any] | None = None
    explain: bool = Field(
        default=True,
        description="Trellis's addition: return each model's top variable impacts (SHAP, "
        "in log-odds) as `explanations`. AFD's response has no place for them, so the AWS "
        "endpoint asks for them only when the request sets it.",
    )


class BacktestDetectorVersion(AfdMessage):
    """Trellis's addition: evaluate a detector version over stored events before activating it."""

    message_type: ClassVar[str] = "fraud.v1.backtest_detector_version"
    detector_id: str
    detector_version_id: str = Field(pattern=r"^[1-9][0-9]*$")
    start_time: str
    end_time: str
    max_events: int = Field(default=100_000, ge=1, le=1_000_000)


class FraudResult(Message):
    """The reply of every fraud operation: AFD's output shape, with AFD's JSON names."""

    message_type: ClassVar[str] = "fraud.v1.result"
    output: dict[str, Any] = Field(default_factory=dict)


def parse_afd_timestamp(value: str, field: str) -> datetime:
    """AFD timestamps are ISO 8601 in UTC ('2022-12-04T06:07:46Z')."""
    if not re.match(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:?\d{2})$", value):
        raise ValueError(
            f"{field} {value!r} is not an ISO 8601 UTC timestamp like 2022-12-04T06:07:46Z"
        )
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


# -- account settings (already served) -----------------------------------------------------------


class GetKmsEncryptionKeyRequest(Message):
    message_type: ClassVar[str] = "fraud.v1.get_kms_encryption_key_request"


class KmsEncryptionKey(Message):
    message_type: ClassVar[str] = "fraud.v1.kms_encryption_key"

    kms_encryption_key_arn: str = Field(min_length=7, max_length=90)


class PutKmsEncryptionKeyCommand(Command):
    message_type: ClassVar[str] = "fraud.v1.put_kms_encryption_key_command"

    kms_encryption_key_arn: str = Field(
        min_length=7,
        max_length=90,
        pattern=r"^(DEFAULT|arn:[a-zA-Z0-9-]+:kms:[a-zA-Z0-9-]+:\d{12}:key\/\w{8}-\w{4}-\w{4}-\w{4}-\w{12})$",
    )


# -- events on the FRAUD_EVENTS stream (the log stored events are materialised from) ------------

# Events per EventsSent message: ~0.5 KB each keeps a message far below NATS's 1 MB default.
MAX_EVENTS_PER_MESSAGE = 256


class EventSent(Message):
    message_type: ClassVar[str] = "fraud.v1.event.sent"

    event_type: str
    event_id: str
    event_timestamp: datetime
    entity_type: str
    entity_id: str
    variables: dict[str, str | None]
    label: str | None = None
    label_timestamp: datetime | None = None


class EventsSent(Message):
    """Several events stored at once: one stream message per group commit (`EventLog`)."""

    message_type: ClassVar[str] = "fraud.v1.event.sent_together"

    events: list[EventSent] = Field(min_length=1, max_length=MAX_EVENTS_PER_MESSAGE)


class EventLabelUpdated(Message):
    message_type: ClassVar[str] = "fraud.v1.event.label_updated"

    event_type: str
    event_id: str
    label: str
    label_timestamp: datetime


class EventDeleted(Message):
    message_type: ClassVar[str] = "fraud.v1.event.deleted"

    event_type: str
    event_id: str


class EventsPurged(Message):
    """Every stored event of an event type was deleted (DeleteEventsByEventType)."""

    message_type: ClassVar[str] = "fraud.v1.event.purged"

    event_type: str


@dataclass(frozen=True)
class AfdOperation:
    """One AFD operation: its bus operation (`fraud.v1.<bus_operation>`), request model, fixed fields."""

    name: str
    bus_operation: str
    request: type[AfdMessage]
    fixed: tuple[tuple[str, str], ...] = ()


def _named(kind: str, put: str | None, get: str, delete: str) -> list[AfdOperation]:
    ops = [
        AfdOperation(get, "get_named", GetNamed, (("kind", kind),)),
        AfdOperation(delete, "delete_named", DeleteNamed, (("kind", kind),)),
    ]
    if put:
        ops.append(AfdOperation(put, "put_named", PutNamed, (("kind", kind),)))
    return ops


AFD_OPERATIONS: tuple[AfdOperation, ...] = (
    AfdOperation("CreateVariable", "create_variable", CreateVariable),
    AfdOperation("BatchCreateVariable", "batch_create_variable", BatchCreateVariable),
    AfdOperation("GetVariables", "get_variables", GetVariables),
    AfdOperation("UpdateVariable", "update_variable", UpdateVariable),
    AfdOperation("DeleteVariable", "delete_variable", DeleteVariable),
    *_named("entity_type", "PutEntityType", "GetEntityTypes", "DeleteEntityType"),
    *_named("label", "PutLabel", "GetLabels", "DeleteLabel"),
    *_named("outcome", "PutOutcome", "GetOutcomes", "DeleteOutcome"),
    *_named("event_type", None, "GetEventTypes", "DeleteEventType"),
    *_named("detector", None, "GetDetectors", "DeleteDetector"),
    *_named("list", None, "GetListsMetadata", "DeleteList"),
    AfdOperation("CreateList", "create_list", CreateList),
    AfdOperation("UpdateList", "update_list", UpdateList),
    AfdOperation("GetListElements", "get_list_elements", GetListElements),
    AfdOperation("PutEventType", "put_event_type", PutEventType),
    AfdOperation("SendEvent", "send_event", SendEvent),
    AfdOperation("GetEvent", "get_event", EventRef),
    AfdOperation("UpdateEventLabel", "update_event_label", UpdateEventLabel),
    AfdOperation("DeleteEvent", "delete_event", EventRef),
    AfdOperation("DeleteEventsByEventType", "delete_events_by_event_type", DeleteEventsByEventType),
    AfdOperation("CreateBatchImportJob", "create_batch_import_job", CreateBatchImportJob),
    AfdOperation("GetBatchImportJobs", "get_batch_import_jobs", GetBatchImportJobs),
    AfdOperation(
        "CreateBatchPredictionJob", "create_batch_prediction_job", CreateBatchPredictionJob
    ),
    AfdOperation("GetBatchPredictionJobs", "get_batch_prediction_jobs", GetBatchImportJobs),
    AfdOperation("CreateModel", "create_model", CreateModel),
    AfdOperation("GetModels", "get_models", ModelRef),
    AfdOperation("DeleteModel", "delete_model", ModelRef),
    AfdOperation("CreateModelVersion", "create_model_version", CreateModelVersion),
    AfdOperation("GetModelVersion", "get_model_version", ModelRef),
    AfdOperation("DescribeModelVersions", "describe_model_versions", ModelRef),
    AfdOperation(
        "UpdateModelVersionStatus", "update_model_version_status", UpdateModelVersionStatus
    ),
    AfdOperation("DeleteModelVersion", "delete_model_version", ModelRef),
    AfdOperation("PutDetector", "put_detector", PutDetector),
    AfdOperation("CreateRule", "create_rule", CreateRule),
    AfdOperation("GetRules", "get_rules", GetRules),
    AfdOperation("DeleteRule", "delete_rule", DeleteRule),
    AfdOperation("CreateDetectorVersion", "create_detector_version", CreateDetectorVersion),
    AfdOperation("DescribeDetector", "describe_detector", DescribeDetector),
    AfdOperation("GetDetectorVersion", "get_detector_version", DetectorVersionRef),
    AfdOperation(
        "UpdateDetectorVersionStatus", "update_detector_version_status", DetectorVersionRef
    ),
    AfdOperation("DeleteDetectorVersion", "delete_detector_version", DetectorVersionRef),
    AfdOperation("GetEventPrediction", "get_event_prediction", GetEventPrediction),
    AfdOperation("BacktestDetectorVersion", "backtest_detector_version", BacktestDetectorVersion),
)
