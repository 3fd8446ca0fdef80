"""Stored Fraud Detector resources, their AFD output shapes, and who depends on whom (pure)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from runtime.errors import Conflict

NamedKind = Literal["entity_type", "label", "outcome"]


def afd_time(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Stamped(BaseModel):
    description: str | None = None
    tags: list[dict[str, str]] = Field(default_factory=list)
    arn: str = ""
    created_time: datetime
    last_updated_time: datetime

    def _times(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "createdTime": afd_time(self.created_time),
            "lastUpdatedTime": afd_time(self.last_updated_time),
            "arn": self.arn,
        }
        if self.description is not None:
            out["description"] = self.description
        return out


class VariableRecord(Stamped):
    name: str
    data_type: str
    data_source: str
    default_value: str
    variable_type: str | None = None

    def to_afd(self) -> dict[str, Any]:
        out = {
            "name": self.name,
            "dataType": self.data_type,
            "dataSource": self.data_source,
            "defaultValue": self.default_value,
            **self._times(),
        }
        if self.variable_type:
            out["variableType"] = self.variable_type
        return out


class NamedRecord(Stamped):
    """Entity types, labels and outcomes: a name and a description."""

    kind: NamedKind
    name: str

    def to_afd(self) -> dict[str, Any]:
        return {"name": self.name, **self._times()}


class ListRecord(Stamped):
    name: str
    variable_type: str | None = None
    elements: list[str] = Field(default_factory=list)

    def to_afd(self) -> dict[str, Any]:
        out = {"name": self.name, **self._times()}
        out["updatedTime"] = out.pop("lastUpdatedTime")
        if self.variable_type:
            out["variableType"] = self.variable_type
        return out


class EventTypeRecord(Stamped):
    name: str
    event_variables: list[str]
    labels: list[str] = Field(default_factory=list)
    entity_types: list[str]
    event_ingestion: str = "ENABLED"
    event_orchestration: dict[str, Any] | None = None

    def to_afd(self, statistics: dict[str, Any] | None = None) -> dict[str, Any]:
        out = {
            "name": self.name,
            "eventVariables": self.event_variables,
            "labels": self.labels,
            "entityTypes": self.entity_types,
            "eventIngestion": self.event_ingestion,
            **self._times(),
        }
        if statistics is not None:
            out["ingestedEventStatistics"] = statistics
        if self.event_orchestration is not None:
            out["eventOrchestration"] = self.event_orchestration
        return out


class ModelRecord(Stamped):
    model_id: str
    model_type: str
    event_type_name: str

    def to_afd(self) -> dict[str, Any]:
        return {
            "modelId": self.model_id,
            "modelType": self.model_type,
            "eventTypeName": self.event_type_name,
            **self._times(),
        }


ModelVersionStatus = Literal[
    "TRAINING_IN_PROGRESS",
    "TRAINING_COMPLETE",
    "ACTIVATE_REQUESTED",
    "ACTIVATE_IN_PROGRESS",
    "ACTIVE",
    "INACTIVATE_REQUESTED",
    "INACTIVATE_IN_PROGRESS",
    "INACTIVE",
    "ERROR",
    "TRAINING_CANCELLED",
]


class ModelVersionRecord(Stamped):
    model_id: str
    model_type: str
    version: str  # AFD writes "1.0", "2.0"
    status: ModelVersionStatus
    training_data_source: str
    training_data_schema: dict[str, Any]
    external_events_detail: dict[str, Any] | None = None
    ingested_events_detail: dict[str, Any] | None = None
    training_result: dict[str, Any] | None = None
    training_result_v2: dict[str, Any] | None = None
    failure_reason: str | None = None
    findings: list[dict[str, Any]] = Field(default_factory=list)
    diagnostics: list[dict[str, Any]] = Field(default_factory=list)
    artifacts: dict[str, str] = Field(default_factory=dict)
    inference_model: str | None = None
    training_seconds: float | None = None
    lease_owner: str | None = None
    lease_until: datetime | None = None

    @property
    def key(self) -> str:
        return f"{self.model_id}.{self.version}"

    def to_afd(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "modelId": self.model_id,
            "modelType": self.model_type,
            "modelVersionNumber": self.version,
            "status": self.status,
            "trainingDataSource": self.training_data_source,
            "trainingDataSchema": self.training_data_schema,
            **self._times(),
        }
        out.pop("description", None)
        if self.failure_reason:
            out["failureReason"] = self.failure_reason
        # Beyond AFD's shape (SDKs ignore them): what the automatic diagnosis found.
        out["diagnostics"] = self.diagnostics
        out["dataFindings"] = self.findings
        for name, value in (
            ("externalEventsDetail", self.external_events_detail),
            ("ingestedEventsDetail", self.ingested_events_detail),
            ("trainingResult", self.training_result),
            ("trainingResultV2", self.training_result_v2),
        ):
            if value is not None:
                out[name] = value
        return out


class DetectorRecord(Stamped):
    detector_id: str
    event_type_name: str

    def to_afd(self) -> dict[str, Any]:
        return {
            "detectorId": self.detector_id,
            "eventTypeName": self.event_type_name,
            **self._times(),
        }


class RuleRecord(Stamped):
    detector_id: str
    rule_id: str
    rule_version: str
    expression: str
    language: str = "DETECTORPL"
    outcomes: list[str]

    @property
    def key(self) -> str:
        return f"{self.detector_id}.{self.rule_id}.{self.rule_version}"

    def ref(self) -> dict[str, str]:
        return {
            "detectorId": self.detector_id,
            "ruleId": self.rule_id,
            "ruleVersion": self.rule_version,
        }

    def to_afd(self) -> dict[str, Any]:
        return {
            **self.ref(),
            "expression": self.expression,
            "language": self.language,
            "outcomes": self.outcomes,
            **self._times(),
        }


DetectorVersionStatus = Literal["DRAFT", "ACTIVE", "INACTIVE"]


class DetectorVersionRecord(Stamped):
    detector_id: str
    version: str
    status: DetectorVersionStatus = "DRAFT"
    rules: list[dict[str, str]]
    model_versions: list[dict[str, str]] = Field(default_factory=list)
    rule_execution_mode: str = "FIRST_MATCHED"
    external_model_endpoints: list[str] = Field(default_factory=list)

    @property
    def key(self) -> str:
        return f"{self.detector_id}.{self.version}"

    def to_afd(self) -> dict[str, Any]:
        out = {
            "detectorId": self.detector_id,
            "detectorVersionId": self.version,
            "status": self.status,
            "rules": self.rules,
            "modelVersions": self.model_versions,
            "ruleExecutionMode": self.rule_execution_mode,
            "externalModelEndpoints": self.external_model_endpoints,
            **self._times(),
        }
        return out


def refuse_delete(kind: str, name: str, users: list[str]) -> None:
    """AFD refuses to delete a resource something still uses; the error names the users."""
    if users:
        raise Conflict(
            f"cannot delete {kind} {name!r}: it is used by {', '.join(sorted(users))}",
            kind=kind,
            id=name,
        )


def next_model_version(existing: list[str]) -> str:
    """AFD numbers model versions 1.0, 2.0, ... (minor versions come from retraining in place)."""
    majors = [int(v.split(".")[0]) for v in existing]
    return f"{max(majors, default=0) + 1}.0"


class BatchPredictionRecord(BaseModel):
    job_id: str
    status: Literal["IN_PROGRESS", "COMPLETE", "FAILED"]
    input_path: str
    output_path: str
    event_type_name: str
    detector_name: str
    detector_version: str
    iam_role_arn: str
    arn: str
    start_time: datetime
    completion_time: datetime | None = None
    failure_reason: str | None = None
    processed_records_count: int = 0
    total_records_count: int = 0

    def to_afd(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "jobId": self.job_id,
            "status": self.status,
            "inputPath": self.input_path,
            "outputPath": self.output_path,
            "eventTypeName": self.event_type_name,
            "detectorName": self.detector_name,
            "detectorVersion": self.detector_version,
            "iamRoleArn": self.iam_role_arn,
            "arn": self.arn,
            "startTime": afd_time(self.start_time),
            "processedRecordsCount": self.processed_records_count,
            "totalRecordsCount": self.total_records_count,
        }
        if self.completion_time is not None:
            out["completionTime"] = afd_time(self.completion_time)
        if self.failure_reason:
            out["failureReason"] = self.failure_reason
        return out


class BatchImportRecord(BaseModel):
    job_id: str
    status: Literal[
        "IN_PROGRESS_INITIALIZING",
        "IN_PROGRESS",
        "CANCEL_IN_PROGRESS",
        "CANCELED",
        "COMPLETE",
        "FAILED",
    ]
    input_path: str
    output_path: str
    event_type_name: str
    iam_role_arn: str
    arn: str
    start_time: datetime
    completion_time: datetime | None = None
    failure_reason: str | None = None
    processed_records_count: int = 0
    failed_records_count: int = 0
    total_records_count: int = 0
    row_errors: list[dict[str, Any]] = Field(
        default_factory=list, description="The first failures."
    )

    def to_afd(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "jobId": self.job_id,
            "status": self.status,
            "inputPath": self.input_path,
            "outputPath": self.output_path,
            "eventTypeName": self.event_type_name,
            "iamRoleArn": self.iam_role_arn,
            "arn": self.arn,
            "startTime": afd_time(self.start_time),
            "processedRecordsCount": self.processed_records_count,
            "failedRecordsCount": self.failed_records_count,
            "totalRecordsCount": self.total_records_count,
        }
        if self.completion_time is not None:
            out["completionTime"] = afd_time(self.completion_time)
        if self.failure_reason:
            out["failureReason"] = self.failure_reason
        return out
