"""Transaction Fraud Insights end to end through boto3: import, train, score, restart.

The synthetic events carry their fraud signal in entity history only: fraudsters make one burst
of transactions a minute or so apart with rising amounts, legitimate customers transact once a
month or so, and every raw value (amount, card BIN, IP, email) is drawn from the same
distributions for both. A TFI model (entity aggregates from strictly earlier events) must see
it; an ONLINE_FRAUD_INSIGHTS model on the same events, with the raw variables alone, cannot.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from runtime.bus import Bus
from runtime.settings import SharedSettings
from services.fraud.app import build as build_fraud
from services.fraud.config import Settings as FraudSettings
from services.gateway.adapters.bootstrap import load_or_create_credentials
from services.gateway.config import BootstrapSettings
from services.inference.app import build as build_inference
from services.inference.config import Settings as InferenceSettings
from tests.conftest import gateway_client, serving_gateway
from tests.integration.test_fraud import Afd, eventually, forget_fraud

pytestmark = pytest.mark.slow

ROLE = "arn:aws:iam::000000000000:role/none"
START = datetime(2024, 1, 1, tzinfo=UTC)
DAYS = 91
VARIABLES = [  # name, AFD dataType, AFD variableType, default
    ("amount", "FLOAT", "PRICE", "0.0"),
    ("card_bin", "INTEGER", "CARD_BIN", "0"),
    ("ip_address", "STRING", "IP_ADDRESS", "unknown"),
    ("email_address", "STRING", "EMAIL_ADDRESS", "unknown"),
]
COLUMNS = ["EVENT_ID", "EVENT_TIMESTAMP", "ENTITY_TYPE", "ENTITY_ID", "EVENT_LABEL"]
LABELS = {"labelMapper": {"FRAUD": ["fraud"], "LEGIT": ["legit"]}}


@dataclass
class Stack:
    afd: Afd
    restart_fraud: Callable[[], Awaitable[None]]


@pytest.fixture
async def stack(nats_url: str, data_dir: Path) -> AsyncIterator[Stack]:
    """Fraud, inference and the gateway in-process; `restart_fraud` replaces the fraud replica."""
    shared = SharedSettings(data_dir=data_dir)
    settings = FraudSettings(flush_interval_s=0.5, training_threads=2)
    buses = [await Bus.connect(nats_url, source=n) for n in ("fraud", "inference", "gateway")]
    fraud = await build_fraud(buses[0], settings, shared)
    inference = await build_inference(buses[1], InferenceSettings(default_models=False), shared)
    for service in (fraud, inference):
        await service.start()

    async def restart_fraud() -> None:
        """Stop the fraud replica (it flushes its event store) and start a new one on a new bus."""
        nonlocal fraud
        await fraud.stop()
        await buses[0].close()
        buses[0] = await Bus.connect(nats_url, source="fraud")
        fraud = await build_fraud(buses[0], settings, shared)
        await fraud.start()

    creds = load_or_create_credentials(data_dir, BootstrapSettings())
    async with serving_gateway(buses[2], shared, request_timeout_s=30) as url:
        client = gateway_client(
            "frauddetector", url, creds.access_key_id, creds.secret_access_key, read_timeout=60
        )
        afd = Afd(client, data_dir / "fraud" / "imports", url, creds.api_key)
        yield Stack(afd, restart_fraud)
    for service in (fraud, inference):
        await service.stop()
    await forget_fraud(buses[0], buses[1])
    for bus in buses:
        await bus.close()


def synthetic_events(
    seed: int = 7, legit_entities: int = 4500, fraud_entities: int = 170
) -> tuple[str, int]:
    """An AFD-format CSV (about 11,000 legit and 1,400 fraud events) and its number of rows."""
    rng = np.random.default_rng(seed)
    bins = [str(b) for b in rng.integers(400_000, 560_000, 40)]
    ips = [
        ".".join(str(o) for o in (rng.integers(11, 99), *rng.integers(1, 255, 3)))
        for _ in range(3000)
    ]
    names = ["alex", "sam", "kim", "lee", "max", "ana", "joe", "eva", "tom", "mia"]
    domains = ["gmail.com", "yahoo.com", "outlook.com", "example.org", "mail.com"]

    def email() -> str:
        name, domain = names[rng.integers(len(names))], domains[rng.integers(len(domains))]
        return f"{name}.{rng.integers(100, 999)}@{domain}"

    def amounts(n: int) -> list[float]:
        return [float(a) for a in np.round(rng.lognormal(3.6, 0.9, n), 2)]

    # Entity ids say nothing about the class: one numbering, shuffled.
    ids = [f"cust-{k:06d}" for k in rng.permutation(legit_entities + fraud_entities)]
    span = DAYS * 86_400
    rows: list[tuple[float, str, str, float, str, str, str]] = []
    for i in range(legit_entities):
        n = 1 + int(rng.poisson(1.5))  # a purchase a month or so, own card and IPs
        card, mail = bins[rng.integers(len(bins))], email()
        own = [ips[k] for k in rng.integers(len(ips), size=2)]
        for t, a in zip(np.sort(rng.uniform(0, span, n)), amounts(n), strict=True):
            rows.append((float(t), ids[i], "legit", a, card, own[rng.integers(2)], mail))
    for i in range(fraud_entities):
        n = 6 + int(rng.integers(0, 5))  # one burst, 15-90 s apart, amounts rising
        begin = rng.uniform(0, span - 3600)
        mail = email()
        times = begin + np.cumsum(rng.uniform(15, 90, n))
        for t, a in zip(times, sorted(amounts(n)), strict=True):
            card, ip = bins[rng.integers(len(bins))], ips[rng.integers(len(ips))]
            rows.append((float(t), ids[legit_entities + i], "fraud", a, card, ip, mail))
    rows.sort()
    lines = [",".join([*COLUMNS, *(v[0] for v in VARIABLES)])]
    for k, (t, entity, label, amount, card, ip, mail) in enumerate(rows):
        ts = iso(START + timedelta(seconds=t))
        lines.append(f"e{k},{ts},customer,{entity},{label},{amount:.2f},{card},{ip},{mail}")
    return "\n".join(lines) + "\n", len(rows)


def iso(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


async def setup_event_type(afd: Afd) -> None:
    await afd(
        "batch_create_variable",
        variableEntries=[
            {
                "name": name,
                "dataType": data_type,
                "dataSource": "EVENT",
                "defaultValue": default,
                "variableType": variable_type,
            }
            for name, data_type, variable_type, default in VARIABLES
        ],
    )
    await afd("put_entity_type", name="customer")
    for label in ("fraud", "legit"):
        await afd("put_label", name=label)
    await afd(
        "put_event_type",
        name="transaction",
        eventVariables=[v[0] for v in VARIABLES],
        labels=["fraud", "legit"],
        entityTypes=["customer"],
        eventIngestion="ENABLED",
    )


async def import_events(afd: Afd) -> int:
    text, rows = synthetic_events()
    (afd.imports / "tfi_events.csv").write_text(text)
    await afd(
        "create_batch_import_job",
        jobId="tfi-import",
        inputPath=f"file://{afd.imports}/tfi_events.csv",
        outputPath=f"file://{afd.imports}",
        eventTypeName="transaction",
        iamRoleArn=ROLE,
    )

    async def finished() -> dict[str, Any] | None:
        job = (await afd("get_batch_import_jobs", jobId="tfi-import"))["batchImports"][0]
        return job if job["status"] != "IN_PROGRESS" else None

    job = await eventually(finished, 60, "the batch import")
    assert job["status"] == "COMPLETE", job
    assert (job["processedRecordsCount"], job["failedRecordsCount"]) == (rows, 0), job
    return rows


async def train(afd: Afd, model_id: str, model_type: str) -> dict[str, Any]:
    """Create the model and a version on the ingested events; its details once trained."""
    await afd("create_model", modelId=model_id, modelType=model_type, eventTypeName="transaction")
    created = await afd(
        "create_model_version",
        modelId=model_id,
        modelType=model_type,
        trainingDataSource="INGESTED_EVENTS",
        trainingDataSchema={"modelVariables": [v[0] for v in VARIABLES], "labelSchema": LABELS},
        ingestedEventsDetail={
            "ingestedEventsTimeWindow": {
                "startTime": iso(START),
                "endTime": iso(START + timedelta(days=DAYS)),
            }
        },
    )
    assert created["status"] == "TRAINING_IN_PROGRESS", created
    return {"modelId": model_id, "modelType": model_type, "modelVersionNumber": "1.0"}


async def trained(afd: Afd, ref: dict[str, Any]) -> dict[str, Any]:
    async def done() -> dict[str, Any] | None:
        version = await afd("get_model_version", **ref)
        return version if version["status"] != "TRAINING_IN_PROGRESS" else None

    version = await eventually(done, 90, f"the training of {ref['modelId']}")
    assert version["status"] == "TRAINING_COMPLETE", version
    details: dict[str, Any] = (await afd("describe_model_versions", modelId=ref["modelId"]))[
        "modelVersionDetails"
    ][0]
    return details


def importance(details: dict[str, Any]) -> dict[str, tuple[str, float]]:
    metrics = details["trainingResult"]["variableImportanceMetrics"]["logOddsMetrics"]
    return {m["variableName"]: (m["variableType"], m["variableImportance"]) for m in metrics}


async def predict(
    afd: Afd, event_id: str, when: datetime, entity: str, values: dict[str, str], *, explain: bool
) -> tuple[float, list[dict[str, Any]]]:
    """GetEventPrediction: the TFI score (and its variable impacts with `explain`), returned once
    the event it stored is applied.

    boto3 (AFD's API) has no place for explanations: with `explain` the request goes to the REST
    API, which takes Trellis's `explain` flag.
    """
    request = {
        "detectorId": "tfi_detector",
        "eventId": event_id,
        "eventTypeName": "transaction",
        "eventTimestamp": iso(when),
        "entities": [{"entityType": "customer", "entityId": entity}],
        "eventVariables": values,
    }
    if explain:
        response = await afd.rest(
            "POST", "/v1/fraud/GetEventPrediction", json={**request, "explain": True}
        )
        assert response.status_code == 200, response.text
        prediction = response.json()
        [explanation] = prediction["explanations"]
        impacts: list[dict[str, Any]] = explanation["variableImpacts"]
    else:
        prediction = await afd("get_event_prediction", **request)
        impacts = []
    [scores] = prediction["modelScores"]
    score: float = scores["scores"]["tfi_model_insightscore"]
    [rule] = prediction["ruleResults"]
    assert rule["outcomes"] == (["review"] if score > 900 else ["approve"]), prediction

    # The prediction stores the event without waiting for this replica to apply it; once GetEvent
    # sees it, the replica has also added it to the model's entity history (the same step).
    async def stored() -> bool:
        try:
            await afd("get_event", eventId=event_id, eventTypeName="transaction")
        except afd.client.exceptions.ResourceNotFoundException:
            return False
        return True

    await eventually(stored, 10, f"event {event_id} to be stored")
    return score, impacts


async def test_tfi_trains_on_history_and_keeps_aggregates_at_prediction(stack: Stack) -> None:
    afd = stack.afd
    await setup_event_type(afd)
    rows = await import_events(afd)
    stats = (await afd("get_event_types", name="transaction"))["eventTypes"][0][
        "ingestedEventStatistics"
    ]
    assert stats["numberOfEvents"] == rows

    tfi_ref = await train(afd, "tfi_model", "TRANSACTION_FRAUD_INSIGHTS")
    ofi_ref = await train(afd, "ofi_model", "ONLINE_FRAUD_INSIGHTS")
    tfi, ofi = await trained(afd, tfi_ref), await trained(afd, ofi_ref)

    # AFD's shapes, with TFI's key in trainingMetricsV2.
    result, v2 = tfi["trainingResult"], tfi["trainingResultV2"]
    assert {"dataValidationMetrics", "trainingMetrics", "variableImportanceMetrics"} <= set(result)
    tfi_auc = result["trainingMetrics"]["auc"]
    points = result["trainingMetrics"]["metricDataPoints"]
    assert points and all({"fpr", "tpr", "threshold"} <= set(p) for p in points)
    assert set(v2["trainingMetricsV2"]) == {"tfi"}
    performance = v2["trainingMetricsV2"]["tfi"]["modelPerformance"]
    assert performance["auc"] == pytest.approx(tfi_auc, abs=1e-3)
    bounds = performance["uncertaintyRange"]
    assert bounds["lowerBoundValue"] <= tfi_auc <= bounds["upperBoundValue"]
    assert v2["trainingMetricsV2"]["tfi"]["metricDataPoints"] == points
    assert v2["variableImportanceMetrics"] == result["variableImportanceMetrics"]
    assert "logOddsMetrics" in v2["aggregatedVariablesImportanceMetrics"]
    assert "fileLevelMessages" in v2["dataValidationMetrics"]
    assert tfi_auc > 0.95, tfi_auc

    # The entity aggregates carry the model: their roll-up (ENTITY_ID: counts, time since the
    # previous event) leads, and the raw variables keep their AFD types.
    tfi_importance = importance(tfi)
    assert set(tfi_importance) == {"ENTITY_ID", *(v[0] for v in VARIABLES)}
    assert max(tfi_importance, key=lambda n: tfi_importance[n][1]) == "ENTITY_ID"
    assert all(tfi_importance[name][0] == vt for name, _, vt, _ in VARIABLES)

    # The same events without history: the raw variables alone are close to chance.
    ofi_auc = ofi["trainingResult"]["trainingMetrics"]["auc"]
    assert set(ofi["trainingResultV2"]["trainingMetricsV2"]) == {"ofi"}
    assert "ENTITY_ID" not in importance(ofi)
    assert ofi_auc < 0.75 and tfi_auc - ofi_auc > 0.25, (tfi_auc, ofi_auc)

    # A detector on the TFI score.
    await afd("update_model_version_status", **tfi_ref, status="ACTIVE")
    for outcome in ("review", "approve"):
        await afd("put_outcome", name=outcome)
    await afd("put_detector", detectorId="tfi_detector", eventTypeName="transaction")
    rules = [
        (
            await afd(
                "create_rule",
                ruleId=rule_id,
                detectorId="tfi_detector",
                expression=expression,
                language="DETECTORPL",
                outcomes=[outcome],
            )
        )["rule"]
        for rule_id, expression, outcome in (
            ("burst", "$tfi_model_insightscore > 900", "review"),
            ("usual", "$tfi_model_insightscore <= 900", "approve"),
        )
    ]
    version_id = (
        await afd(
            "create_detector_version",
            detectorId="tfi_detector",
            rules=rules,
            modelVersions=[tfi_ref],
            ruleExecutionMode="FIRST_MATCHED",
        )
    )["detectorVersionId"]
    await afd(
        "update_detector_version_status",
        detectorId="tfi_detector",
        detectorVersionId=version_id,
        status="ACTIVE",
    )

    # A new customer's burst: aggregates are kept at prediction time, from the stored events.
    rng = np.random.default_rng(11)
    begin = START + timedelta(days=DAYS + 10, hours=12)
    burst = [
        (
            f"burst-{k}",
            begin + timedelta(seconds=45 * k),
            {
                "amount": f"{20.0 * 1.5**k:.2f}",
                "card_bin": str(rng.integers(400_000, 560_000)),
                "ip_address": f"{rng.integers(11, 99)}.{rng.integers(1, 255)}.7.{k + 1}",
                "email_address": "kim.512@gmail.com",
            },
        )
        for k in range(6)
    ]
    predicted = [
        await predict(afd, i, t, "cust-new", v, explain=k == len(burst) - 1)
        for k, (i, t, v) in enumerate(burst)
    ]
    scores = [score for score, _ in predicted]
    # Its first event has no history (a new customer: somewhat risky); the burst then is.
    assert all(s > scores[0] for s in scores[2:]), scores
    assert scores[-1] > 900 and scores[-1] - scores[0] >= 100, scores
    assert "ENTITY_ID" in {i["variableName"] for i in predicted[-1][1]}, predicted[-1]

    # A replica that starts afresh rebuilds the histories from the stored events: the same event
    # scores the same as it did just before the restart.
    await stack.restart_fraud()
    last_id, last_time, last_values = burst[-1]
    again = await predict(afd, last_id, last_time, "cust-new", last_values, explain=True)
    assert again == predicted[-1], (again, predicted[-1])
    # ...and the burst goes on where it was.
    later, _ = await predict(
        afd, "burst-6", last_time + timedelta(seconds=45), "cust-new", last_values, explain=False
    )
    assert later > 900 and later - scores[0] >= 100, (later, scores)
