"""Fraud Detector through boto3 against the real gateway, fraud and inference services."""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import botocore.exceptions
import httpx
import pytest

from runtime.bus import Bus
from runtime.service import Service
from runtime.settings import SharedSettings
from services.fraud.app import build as build_fraud
from services.fraud.config import Settings as FraudSettings
from services.gateway.adapters.bootstrap import load_or_create_credentials
from services.gateway.config import BootstrapSettings
from services.inference.app import build as build_inference
from services.inference.config import Settings as InferenceSettings
from tests.conftest import forget_models, gateway_client, serving_gateway

SAMPLES = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "afd-samples"
pytestmark = pytest.mark.skipif(
    not SAMPLES.exists(), reason="AFD sample data not found beside the repository"
)


@dataclass
class Afd:
    client: Any
    imports: Path
    url: str
    admin_key: str
    # Replaces the fraud service by one with other settings (same NATS, same data dir).
    restart_fraud: Callable[[FraudSettings], Awaitable[None]] | None = None

    async def rest(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        async with httpx.AsyncClient(base_url=self.url, timeout=30) as http:
            headers = {"Authorization": f"Bearer {self.admin_key}"}
            return await http.request(method, path, headers=headers, **kwargs)

    async def __call__(self, operation: str, **kwargs: Any) -> Any:
        return await asyncio.to_thread(getattr(self.client, operation), **kwargs)

    async def error(self, operation: str, **kwargs: Any) -> tuple[str, int, str]:
        try:
            await self(operation, **kwargs)
        except botocore.exceptions.ClientError as exc:
            return (
                exc.response["Error"]["Code"],
                exc.response["ResponseMetadata"]["HTTPStatusCode"],
                exc.response["Error"]["Message"],
            )
        raise AssertionError(f"{operation} should have failed")


@pytest.fixture
async def afd(nats_url: str, data_dir: Path) -> AsyncIterator[Afd]:
    shared = SharedSettings(data_dir=data_dir)
    buses = [await Bus.connect(nats_url, source=n) for n in ("fraud", "inference", "gateway")]
    imports = data_dir / "fraud" / "imports"
    services: list[Service] = [
        await build_fraud(buses[0], FraudSettings(flush_interval_s=0.5), shared),
        await build_inference(buses[1], InferenceSettings(default_models=False), shared),
    ]
    for service in services:
        await service.start()

    async def restart_fraud(settings: FraudSettings) -> None:
        await services[0].stop()
        buses.append(await Bus.connect(nats_url, source="fraud"))
        services[0] = await build_fraud(buses[-1], settings, shared)
        await services[0].start()

    creds = load_or_create_credentials(data_dir, BootstrapSettings())
    async with serving_gateway(buses[2], shared, request_timeout_s=30) as url:
        client = gateway_client(
            "frauddetector", url, creds.access_key_id, creds.secret_access_key, read_timeout=60
        )
        yield Afd(client, imports, url, creds.api_key, restart_fraud)
    for service in services:
        await service.stop()
    await forget_fraud(buses[0], buses[1])
    for bus in buses:
        await bus.close()


async def forget_fraud(fraud_bus: Bus, inference_bus: Bus) -> None:
    """Remove what a fraud test left on the shared NATS: served models, resources, events."""
    await forget_models(inference_bus)
    for name in ("fraud_resources", "fraud_settings"):
        await fraud_bus.js.delete_key_value(name)
    await fraud_bus.js.delete_stream("FRAUD_EVENTS")
    await fraud_bus.js.delete_object_store("fraud_artifacts")


async def eventually(check: Callable[[], Any], timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = await check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.5)


async def registration_setup(afd: Afd) -> None:
    await afd(
        "create_variable",
        name="ip_address",
        dataType="STRING",
        dataSource="EVENT",
        defaultValue="unknown",
        variableType="IP_ADDRESS",
    )
    await afd(
        "batch_create_variable",
        variableEntries=[
            {
                "name": "email_address",
                "dataType": "STRING",
                "dataSource": "EVENT",
                "defaultValue": "unknown",
                "variableType": "EMAIL_ADDRESS",
            },
        ],
    )
    await afd("put_entity_type", name="customer")
    for label in ("fraud", "legit"):
        await afd("put_label", name=label)
    await afd(
        "put_event_type",
        name="registration",
        eventVariables=["ip_address", "email_address"],
        labels=["fraud", "legit"],
        entityTypes=["customer"],
    )


async def test_resources_events_and_bad_input(afd: Afd) -> None:
    await registration_setup(afd)
    listed = await afd.rest("POST", "/v1/fraud/GetVariables", json={})
    assert listed.status_code == 200 and len(listed.json()["variables"]) == 2
    unknown = await afd.rest("POST", "/v1/fraud/GetVariables", json={"colour": "red"})
    assert unknown.status_code == 400 and "colour" in unknown.json()["detail"]
    variables = (await afd("get_variables"))["variables"]
    assert {v["name"] for v in variables} == {"ip_address", "email_address"}
    assert await afd.error(
        "create_variable",
        name="ip_address",
        dataType="STRING",
        dataSource="EVENT",
        defaultValue="x",
    ) == ("ConflictException", 409, "variable 'ip_address' already exists")
    code, status, message = await afd.error(
        "update_variable", name="ip_address", variableType="EMAIL_ADDRESS"
    )
    assert (code, status) == ("ValidationException", 400) and "locked" in message

    event = {
        "eventId": "reg-1",
        "eventTypeName": "registration",
        "eventTimestamp": "2024-01-02T03:04:05Z",
        "eventVariables": {"ip_address": "1.2.3.4", "email_address": "a@example.com"},
        "entities": [{"entityType": "customer", "entityId": "c-1"}],
    }
    await afd("send_event", **event, assignedLabel="legit", labelTimestamp="2024-01-02T03:04:05Z")
    stored = (await afd("get_event", eventId="reg-1", eventTypeName="registration"))["event"]
    assert stored["eventVariables"]["ip_address"] == "1.2.3.4" and stored["currentLabel"] == "legit"
    await afd(
        "update_event_label",
        eventId="reg-1",
        eventTypeName="registration",
        assignedLabel="fraud",
        labelTimestamp="2024-01-03T00:00:00Z",
    )
    assert (await afd("get_event", eventId="reg-1", eventTypeName="registration"))["event"][
        "currentLabel"
    ] == "fraud"
    # The same id and timestamp overwrites, new variables included.
    await afd("send_event", **{**event, "eventVariables": {"ip_address": "9.9.9.9"}})
    again = (await afd("get_event", eventId="reg-1", eventTypeName="registration"))["event"]
    assert again["eventVariables"] == {"ip_address": "9.9.9.9"}

    bad_variable = await afd.error("send_event", **{**event, "eventVariables": {"colour": "red"}})
    assert bad_variable[0] == "ValidationException" and "colour" in bad_variable[2]
    bad_time = await afd.error("send_event", **{**event, "eventTimestamp": "the day before"})
    assert bad_time[0] == "ValidationException" and "ISO 8601" in bad_time[2]
    bad_label = await afd.error(
        "send_event", **event, assignedLabel="maybe", labelTimestamp="2024-01-02T03:04:05Z"
    )
    assert bad_label[0] == "ValidationException" and "maybe" in bad_label[2]

    in_use = await afd.error("delete_variable", name="ip_address")
    assert in_use[:2] == ("ConflictException", 409) and "event type registration" in in_use[2]
    stored_events = await afd.error("delete_event_type", name="registration")
    assert "stored events" in stored_events[2]
    types = (await afd("get_event_types", name="registration"))["eventTypes"][0]
    assert types["ingestedEventStatistics"]["numberOfEvents"] == 1
    await afd("delete_event", eventId="reg-1", eventTypeName="registration")
    missing = await afd.error("get_event", eventId="reg-1", eventTypeName="registration")
    assert missing[:2] == ("ResourceNotFoundException", 404)


async def test_batch_import_reports_bad_rows_and_keeps_good_ones(afd: Afd) -> None:
    source = SAMPLES / "transaction_data_2K_coldstart.csv"
    header = source.read_text().splitlines()[0].split(",")
    reserved = {
        "EVENT_ID",
        "EVENT_TIMESTAMP",
        "ENTITY_TYPE",
        "ENTITY_ID",
        "EVENT_LABEL",
        "LABEL_TIMESTAMP",
    }
    names = [c.lower() for c in header if c not in reserved]
    await afd(
        "batch_create_variable",
        variableEntries=[
            {
                "name": n,
                "dataType": "FLOAT" if n == "order_price" else "STRING",
                "dataSource": "EVENT",
                "defaultValue": "0" if n == "order_price" else "unknown",
            }
            for n in names
        ][:25],
    )
    if len(names) > 25:
        await afd(
            "batch_create_variable",
            variableEntries=[
                {"name": n, "dataType": "STRING", "dataSource": "EVENT", "defaultValue": "unknown"}
                for n in names[25:]
            ],
        )
    await afd("put_entity_type", name="customer")
    for label in ("0", "1"):
        await afd("put_label", name=label)
    await afd(
        "put_event_type",
        name="transaction",
        eventVariables=names,
        labels=["0", "1"],
        entityTypes=["customer"],
    )
    afd.imports.mkdir(parents=True, exist_ok=True)
    lines = source.read_text().splitlines()
    broken = [*lines[:1], lines[1].replace("2022-12-24T15:53:30Z", "not-a-time", 1), *lines[2:]]
    uploaded = await afd.rest(
        "PUT", "/v1/fraud/uploads/transactions.csv", content="\n".join(broken) + "\n"
    )
    assert uploaded.status_code == 200, uploaded.text
    assert uploaded.json()["location"] == "s3://trellis-uploads/transactions.csv"
    sneaky = await afd.rest("PUT", "/v1/fraud/uploads/.hidden", content="x")
    assert sneaky.status_code == 400
    await afd(
        "create_batch_import_job",
        jobId="import-1",
        inputPath="s3://trellis-uploads/transactions.csv",
        outputPath=f"file://{afd.imports}",
        eventTypeName="transaction",
        iamRoleArn="arn:aws:iam::000000000000:role/none",
    )

    async def finished() -> dict[str, Any] | None:
        job = (await afd("get_batch_import_jobs", jobId="import-1"))["batchImports"][0]
        return job if job["status"] in ("COMPLETE", "FAILED") else None

    job = await eventually(finished, 60, "the import")
    assert job["status"] == "COMPLETE", job
    assert (
        job["failedRecordsCount"] == 1
        and job["processedRecordsCount"] == job["totalRecordsCount"] - 1
    )
    failures = (afd.imports / "import-1-failures.csv").read_text()
    assert "EVENT_TIMESTAMP" in failures and failures.splitlines()[1].startswith("1,")
    stats = (await afd("get_event_types", name="transaction"))["eventTypes"][0][
        "ingestedEventStatistics"
    ]
    assert stats["numberOfEvents"] == job["processedRecordsCount"]
    outside = await afd.error(
        "create_batch_import_job",
        jobId="import-2",
        inputPath="file:///etc/passwd",
        outputPath=f"file://{afd.imports}",
        eventTypeName="transaction",
        iamRoleArn="arn:aws:iam::000000000000:role/none",
    )
    assert outside[0] == "ValidationException" and "outside the import directories" in outside[2]


@pytest.mark.slow
async def test_train_activate_detect_predict(afd: Afd) -> None:
    await registration_setup(afd)
    afd.imports.mkdir(parents=True, exist_ok=True)
    shutil.copy(SAMPLES / "registration_data_20K_minimum.csv", afd.imports / "registrations.csv")
    await afd(
        "create_model",
        modelId="registration_model",
        modelType="ONLINE_FRAUD_INSIGHTS",
        eventTypeName="registration",
    )
    created = await afd(
        "create_model_version",
        modelId="registration_model",
        modelType="ONLINE_FRAUD_INSIGHTS",
        trainingDataSource="EXTERNAL_EVENTS",
        trainingDataSchema={
            "modelVariables": ["ip_address", "email_address"],
            "labelSchema": {
                "labelMapper": {"FRAUD": ["fraud"], "LEGIT": ["legit"]},
                "unlabeledEventsTreatment": "IGNORE",
            },
        },
        externalEventsDetail={
            "dataLocation": f"file://{afd.imports}/registrations.csv",
            "dataAccessRoleArn": "arn:aws:iam::000000000000:role/none",
        },
    )
    assert created["modelVersionNumber"] == "1.0" and created["status"] == "TRAINING_IN_PROGRESS"
    ref = {
        "modelId": "registration_model",
        "modelType": "ONLINE_FRAUD_INSIGHTS",
        "modelVersionNumber": "1.0",
    }

    async def trained() -> dict[str, Any] | None:
        version = await afd("get_model_version", **ref)
        return version if version["status"] != "TRAINING_IN_PROGRESS" else None

    version = await eventually(trained, 180, "training")
    assert version["status"] == "TRAINING_COMPLETE", version
    details = (await afd("describe_model_versions", modelId="registration_model"))[
        "modelVersionDetails"
    ][0]
    performance = details["trainingResult"]["trainingMetrics"]
    assert 0.5 < performance["auc"] <= 1.0
    assert details["trainingResultV2"]["trainingMetricsV2"]["ofi"]["modelPerformance"][
        "auc"
    ] == pytest.approx(performance["auc"], abs=1e-3)

    await afd("update_model_version_status", **ref, status="ACTIVE")
    assert (await afd("get_model_version", **ref))["status"] == "ACTIVE"
    for outcome in ("review", "approve"):
        await afd("put_outcome", name=outcome)
    await afd("put_detector", detectorId="registration_detector", eventTypeName="registration")
    bad_rule = await afd.error(
        "create_rule",
        ruleId="broken",
        detectorId="registration_detector",
        expression="$registration_model_insightscore >",
        language="DETECTORPL",
        outcomes=["review"],
    )
    assert bad_rule[0] == "ValidationException" and "column" in bad_rule[2]
    high = await afd(
        "create_rule",
        ruleId="high_risk",
        detectorId="registration_detector",
        expression="$registration_model_insightscore > 900",
        language="DETECTORPL",
        outcomes=["review"],
    )
    low = await afd(
        "create_rule",
        ruleId="low_risk",
        detectorId="registration_detector",
        expression="$registration_model_insightscore <= 900",
        language="DETECTORPL",
        outcomes=["approve"],
    )
    version_id = (
        await afd(
            "create_detector_version",
            detectorId="registration_detector",
            rules=[high["rule"], low["rule"]],
            modelVersions=[ref],
            ruleExecutionMode="FIRST_MATCHED",
        )
    )["detectorVersionId"]
    # Before activating: backtest the DRAFT version over stored, labelled events.
    rows = (SAMPLES / "registration_data_20K_minimum.csv").read_text().splitlines()[1:41]
    for i, line in enumerate(rows):
        ip, email, timestamp, label = line.split(",")
        await afd(
            "send_event",
            eventId=f"stored-{i}",
            eventTypeName="registration",
            eventTimestamp=timestamp,
            eventVariables={"ip_address": ip, "email_address": email},
            entities=[{"entityType": "customer", "entityId": f"c-{i}"}],
            assignedLabel=label,
            labelTimestamp=timestamp,
        )
    backtest = await afd.rest(
        "POST",
        "/v1/fraud/BacktestDetectorVersion",
        json={
            "detectorId": "registration_detector",
            "detectorVersionId": version_id,
            "startTime": "2020-01-01T00:00:00Z",
            "endTime": "2030-01-01T00:00:00Z",
        },
    )
    assert backtest.status_code == 200, backtest.text
    report = backtest.json()
    assert report["eventsEvaluated"] == 40 and report["status"] == "DRAFT"
    assert sum(o["events"] for o in report["outcomes"]) == 40
    assert {o["outcome"] for o in report["outcomes"]} <= {"review", "approve"}
    await afd(
        "update_detector_version_status",
        detectorId="registration_detector",
        detectorVersionId=version_id,
        status="ACTIVE",
    )
    # AFD's own names: DescribeDetector, and GetDetectors / DeleteDetector by detectorId.
    detector = await afd("describe_detector", detectorId="registration_detector")
    assert [
        (v["detectorVersionId"], v["status"]) for v in detector["detectorVersionSummaries"]
    ] == [(version_id, "ACTIVE")]
    listed = await afd("get_detectors", detectorId="registration_detector")
    assert [d["detectorId"] for d in listed["detectors"]] == ["registration_detector"]
    code, _, message = await afd.error("delete_detector", detectorId="registration_detector")
    assert code == "ConflictException" and f"detector version {version_id}" in message
    prediction = await afd(
        "get_event_prediction",
        detectorId="registration_detector",
        eventId="p-1",
        eventTypeName="registration",
        eventTimestamp="2024-06-01T00:00:00Z",
        entities=[{"entityType": "customer", "entityId": "c-9"}],
        eventVariables={
            "ip_address": "46.41.252.160",
            "email_address": "fake_acostasusan@example.org",
        },
    )
    [scores] = prediction["modelScores"]
    score = scores["scores"]["registration_model_insightscore"]
    assert 0 <= score <= 1000
    [result] = prediction["ruleResults"]
    assert result["outcomes"] == (["review"] if score > 900 else ["approve"])
    roc = await afd.rest("GET", "/v1/fraud/models/registration_model/versions/1.0/charts/roc.svg")
    assert (
        roc.status_code == 200
        and roc.headers["content-type"] == "image/svg+xml"
        and b"<svg" in roc.content
    )
    rate = await afd.rest(
        "GET", "/v1/fraud/models/registration_model/versions/1.0/charts/fraud_rate.png"
    )
    assert rate.status_code == 200 and rate.content.startswith(b"\x89PNG")
    described = await afd.rest(
        "POST", "/v1/fraud/DescribeModelVersions", json={"modelId": "registration_model"}
    )
    diagnostics = described.json()["modelVersionDetails"][0]["diagnostics"]
    assert all({"code", "severity", "message", "advice"} <= set(d) for d in diagnostics)
    # A batch prediction job over a file of events writes scores and outcomes.
    lines = ["EVENT_ID,EVENT_TIMESTAMP,ENTITY_TYPE,ENTITY_ID,ip_address,email_address"]
    for i, line in enumerate(rows[:10]):
        ip, email, timestamp, _ = line.split(",")
        lines.append(f"batch-{i},{timestamp},customer,c-{i},{ip},{email}")
    (afd.imports / "to_score.csv").write_text("\n".join(lines) + "\n")
    await afd(
        "create_batch_prediction_job",
        jobId="score-1",
        inputPath=f"file://{afd.imports}/to_score.csv",
        outputPath=f"file://{afd.imports}",
        eventTypeName="registration",
        detectorName="registration_detector",
        iamRoleArn="arn:aws:iam::000000000000:role/none",
    )

    async def predicted() -> dict[str, Any] | None:
        job = (await afd("get_batch_prediction_jobs", jobId="score-1"))["batchPredictions"][0]
        return job if job["status"] != "IN_PROGRESS" else None

    job = await eventually(predicted, 60, "the batch prediction")
    assert job["status"] == "COMPLETE" and job["processedRecordsCount"] == 10, job
    output = (afd.imports / "score-1-predictions.csv").read_text().splitlines()
    assert output[0].startswith("EVENT_ID") and "registration_model_insightscore" in output[0]
    assert len(output) == 11 and all(("review" in r) or ("approve" in r) for r in output[1:])
    # The online path (one-event features, the model in the fraud service's own ONNX Runtime)
    # scores an event exactly as the batch path (polars features, the inference service) did.
    header = output[0].split(",")
    batch_scores = {
        row["EVENT_ID"]: float(row["registration_model_insightscore"])
        for row in (dict(zip(header, line.split(","), strict=True)) for line in output[1:])
    }
    for i, line in enumerate(rows[:10]):
        ip, email, timestamp, _ = line.split(",")
        request = {
            "detectorId": "registration_detector",
            "eventId": f"online-{i}",
            "eventTypeName": "registration",
            "eventTimestamp": timestamp,
            "entities": [{"entityType": "customer", "entityId": f"c-{i}"}],
            "eventVariables": {"ip_address": ip, "email_address": email},
        }
        online = await afd.rest("POST", "/v1/fraud/GetEventPrediction", json=request)
        assert online.status_code == 200, online.text
        [online_scores] = online.json()["modelScores"]
        assert (
            online_scores["scores"]["registration_model_insightscore"] == batch_scores[f"batch-{i}"]
        ), f"event {i}"
    # REST returns each model's variable impacts unless told not to.
    [explanation] = online.json()["explanations"]
    impacts = explanation["variableImpacts"]
    assert impacts and {i["variableName"] for i in impacts} <= {"ip_address", "email_address"}
    assert all(isinstance(i["logOddsImpact"], float) for i in impacts)
    quiet = await afd.rest(
        "POST", "/v1/fraud/GetEventPrediction", json={**request, "explain": False}
    )
    assert quiet.status_code == 200 and "explanations" not in quiet.json()
    # TRELLIS_FRAUD_SCORING=inference: the same score, from the inference service's copy.
    assert afd.restart_fraud is not None
    await afd.restart_fraud(FraudSettings(flush_interval_s=0.5, scoring="inference"))
    for i in (0, 9):
        ip, email, timestamp, _ = rows[i].split(",")
        remote = await afd.rest(
            "POST",
            "/v1/fraud/GetEventPrediction",
            json={
                **request,
                "eventId": f"remote-{i}",
                "eventTimestamp": timestamp,
                "entities": [{"entityType": "customer", "entityId": f"c-{i}"}],
                "eventVariables": {"ip_address": ip, "email_address": email},
                "explain": False,
            },
        )
        assert remote.status_code == 200, remote.text
        [remote_scores] = remote.json()["modelScores"]
        assert (
            remote_scores["scores"]["registration_model_insightscore"] == batch_scores[f"batch-{i}"]
        ), f"event {i} scored by the inference service"

    # The scored event is stored, as AFD stores the events it predicts on.
    stored = (await afd("get_event", eventId="p-1", eventTypeName="registration"))["event"]
    assert stored["eventVariables"]["ip_address"] == "46.41.252.160"
    in_use = await afd.error("update_model_version_status", **ref, status="INACTIVE")
    assert in_use[0] == "ValidationException" and "registration_detector" in in_use[2]
