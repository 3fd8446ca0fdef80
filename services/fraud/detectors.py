"""Detectors, rules and their versions, and real-time predictions (GetEventPrediction)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
from datetime import datetime
from typing import Any, Protocol

import polars as pl

from contracts.envelope import utc_now
from contracts.fraud import (
    BacktestDetectorVersion,
    CreateDetectorVersion,
    CreateRule,
    DeleteRule,
    DescribeDetector,
    DetectorVersionRef,
    GetEventPrediction,
    GetRules,
    PutDetector,
    parse_afd_timestamp,
)
from runtime.errors import NotFound, ValidationFailed
from runtime.paging import page
from services.fraud.domain.resources import (
    DetectorRecord,
    DetectorVersionRecord,
    RuleRecord,
    refuse_delete,
)
from services.fraud.domain.rules import (
    RuleSyntaxError,
    compile_rule,
    model_score_variable,
    validate_rule,
)
from services.fraud.operations import FraudOperations, Output


class ModelScorer(Protocol):
    async def score(
        self,
        model_id: str,
        model_type: str,
        version: str,
        event: dict[str, Any],
        *,
        explain: bool = True,
    ) -> tuple[float, list[dict[str, Any]]]: ...

    async def score_frame(
        self, model_id: str, version: str, events: pl.DataFrame
    ) -> list[float]: ...


class Detectors:
    def __init__(self, ops: FraudOperations, scorer: ModelScorer) -> None:
        self.ops = ops
        self.stores = ops.stores
        self.scorer = scorer

    async def put_detector(self, request: PutDetector) -> Output:
        await self.ops.event_type(request.event_type_name)
        try:
            current = (await self.stores.detectors.get(request.detector_id)).value
        except NotFound:
            record = DetectorRecord(
                detector_id=request.detector_id,
                event_type_name=request.event_type_name,
                **self.ops.stamp(
                    "detector", request.detector_id, request.description, request.tags
                ),
            )
            await self.stores.detectors.create(request.detector_id, record)
            return {}
        if current.event_type_name != request.event_type_name:
            raise ValidationFailed(
                f"detector {request.detector_id!r} is bound to {current.event_type_name!r}"
            )
        await self.stores.detectors.put(
            request.detector_id,
            current.model_copy(
                update={"description": request.description, "last_updated_time": utc_now()}
            ),
        )
        return {}

    async def detector(self, detector_id: str, *, cached: bool = False) -> DetectorRecord:
        async def load() -> DetectorRecord:
            return (await self.stores.detectors.get(detector_id)).value

        record: DetectorRecord = (
            await self.ops.hot.get(("detector", detector_id), load) if cached else await load()
        )
        return record

    async def _known_rule_names(self, detector: DetectorRecord) -> tuple[set[str], set[str]]:
        event_type = await self.ops.event_type(detector.event_type_name)
        variables = set(event_type.event_variables)
        variables |= {
            model_score_variable(m.value.model_id)
            for m in await self.stores.models.list()
            if m.value.event_type_name == detector.event_type_name
        }
        lists = {v.value.name for v in await self.stores.lists.list()}
        return variables, lists

    async def create_rule(self, request: CreateRule) -> Output:
        detector = await self.detector(request.detector_id)
        for outcome in request.outcomes:
            await self.ops.must_exist(self.stores.named["outcome"], outcome, "outcome")
        variables, lists = await self._known_rule_names(detector)
        try:
            validate_rule(request.expression, known_variables=variables, known_lists=lists)
        except RuleSyntaxError as exc:
            raise ValidationFailed(f"rule {request.rule_id!r}: {exc}") from None
        except ValueError as exc:
            raise ValidationFailed(f"rule {request.rule_id!r}: {exc}") from None
        existing = [
            r.value
            for r in await self.stores.rules.list()
            if r.value.detector_id == request.detector_id and r.value.rule_id == request.rule_id
        ]
        version = str(max((int(r.rule_version) for r in existing), default=0) + 1)
        record = RuleRecord(
            detector_id=request.detector_id,
            rule_id=request.rule_id,
            rule_version=version,
            expression=request.expression,
            language=request.language,
            outcomes=request.outcomes,
            **self.ops.stamp(
                "rule",
                f"{request.detector_id}/{request.rule_id}",
                request.description,
                request.tags,
            ),
        )
        await self.stores.rules.create(record.key, record)
        return {"rule": record.ref()}

    async def get_rules(self, request: GetRules) -> Output:
        rules = [
            r.value
            for r in await self.stores.rules.list()
            if r.value.detector_id == request.detector_id
            and (request.rule_id is None or r.value.rule_id == request.rule_id)
            and (request.rule_version is None or r.value.rule_version == request.rule_version)
        ]
        chosen, token = page(rules, lambda r: r.key, request.next_token, request.max_results or 100)
        return {
            "ruleDetails": [r.to_afd() for r in chosen],
            **({"nextToken": token} if token else {}),
        }

    async def delete_rule(self, request: DeleteRule) -> Output:
        ref = request.rule
        key = f"{ref.detector_id}.{ref.rule_id}.{ref.rule_version}"
        await self.stores.rules.get(key)
        users = [
            f"detector version {v.value.version} ({v.value.status})"
            for v in await self.stores.detector_versions.list()
            if v.value.detector_id == ref.detector_id
            and {
                "detectorId": ref.detector_id,
                "ruleId": ref.rule_id,
                "ruleVersion": ref.rule_version,
            }
            in v.value.rules
        ]
        refuse_delete("rule", f"{ref.rule_id} v{ref.rule_version}", users)
        await self.stores.rules.delete(key)
        return {}

    # -- detector versions ------------------------------------------------------------------

    async def create_detector_version(self, request: CreateDetectorVersion) -> Output:
        detector = await self.detector(request.detector_id)
        for rule in request.rules:
            if rule.detector_id != request.detector_id:
                raise ValidationFailed(
                    f"rule {rule.rule_id!r} belongs to detector {rule.detector_id!r}"
                )
            await self.stores.rules.get(f"{rule.detector_id}.{rule.rule_id}.{rule.rule_version}")
        for model in request.model_versions:
            model_record = (await self.stores.models.get(model.model_id)).value
            if model_record.event_type_name != detector.event_type_name:
                raise ValidationFailed(
                    f"model {model.model_id!r} is for event type {model_record.event_type_name!r}"
                )
            version = (
                await self.stores.model_versions.get(
                    f"{model.model_id}.{model.model_version_number}"
                )
            ).value
            if version.status != "ACTIVE":
                raise ValidationFailed(
                    f"model {model.model_id!r} version {version.version} is {version.status}; activate it first"
                )
        if request.external_model_endpoints:
            raise ValidationFailed(
                "external model endpoints (SageMaker) are not supported; use Trellis models"
            )
        existing = [
            v.value
            for v in await self.stores.detector_versions.list()
            if v.value.detector_id == request.detector_id
        ]
        number = str(max((int(v.version) for v in existing), default=0) + 1)
        record = DetectorVersionRecord(
            detector_id=request.detector_id,
            version=number,
            rules=[r.model_dump(by_alias=True) for r in request.rules],
            model_versions=[m.model_dump(by_alias=True) for m in request.model_versions],
            rule_execution_mode=request.rule_execution_mode or "FIRST_MATCHED",
            **self.ops.stamp(
                "detector-version",
                f"{request.detector_id}/{number}",
                request.description,
                request.tags,
            ),
        )
        await self.stores.detector_versions.create(record.key, record)
        return {"detectorId": request.detector_id, "detectorVersionId": number, "status": "DRAFT"}

    async def describe_detector(self, request: DescribeDetector) -> Output:
        detector = (await self.stores.detectors.get(request.detector_id)).value
        versions = [
            v.value
            for v in await self.stores.detector_versions.list()
            if v.value.detector_id == request.detector_id
            and request.detector_version_id in (None, v.value.version)
        ]
        chosen, token = page(
            versions,
            lambda v: f"{int(v.version):010d}",  # numeric order: 2 before 10
            request.next_token,
            request.max_results or 2500,
        )
        summaries = [
            {
                "detectorVersionId": v.version,
                "status": v.status,
                "description": v.description,
                "lastUpdatedTime": v.to_afd().get("lastUpdatedTime"),
            }
            for v in chosen
        ]
        return {
            "detectorId": request.detector_id,
            "detectorVersionSummaries": summaries,
            "arn": detector.to_afd().get("arn"),
            **({"nextToken": token} if token else {}),
        }

    async def get_detector_version(self, request: DetectorVersionRef) -> Output:
        return (
            await self.stores.detector_versions.get(
                f"{request.detector_id}.{request.detector_version_id}"
            )
        ).value.to_afd()

    async def update_detector_version_status(self, request: DetectorVersionRef) -> Output:
        if request.status is None:
            raise ValidationFailed("status is required")
        key = f"{request.detector_id}.{request.detector_version_id}"
        current = (await self.stores.detector_versions.get(key)).value
        allowed = {
            ("DRAFT", "ACTIVE"),
            ("ACTIVE", "INACTIVE"),
            ("INACTIVE", "ACTIVE"),
            ("DRAFT", "DRAFT"),
            ("ACTIVE", "ACTIVE"),
            ("INACTIVE", "INACTIVE"),
        }
        if (current.status, request.status) not in allowed:
            raise ValidationFailed(
                f"detector version {current.version} cannot go from {current.status} to {request.status}"
            )
        if request.status == "ACTIVE":
            # One ACTIVE version per detector: the previous one becomes INACTIVE.
            for other in await self.stores.detector_versions.list():
                value = other.value
                if (
                    value.detector_id == request.detector_id
                    and value.status == "ACTIVE"
                    and value.version != current.version
                ):
                    await self.stores.detector_versions.update(
                        other.key,
                        value.model_copy(
                            update={"status": "INACTIVE", "last_updated_time": utc_now()}
                        ),
                        expected_revision=other.revision,
                    )
        await self.stores.detector_versions.mutate(
            key,
            lambda v: v.model_copy(
                update={"status": request.status, "last_updated_time": utc_now()}
            ),
        )
        return {}

    async def delete_detector_version(self, request: DetectorVersionRef) -> Output:
        key = f"{request.detector_id}.{request.detector_version_id}"
        current = (await self.stores.detector_versions.get(key)).value
        if current.status == "ACTIVE":
            refuse_delete(
                "detector version", current.version, ["its ACTIVE status (deactivate it first)"]
            )
        await self.stores.detector_versions.delete(key)
        return {}

    async def version_for_prediction(
        self, detector_id: str, version_id: str | None, *, cached: bool = False
    ) -> DetectorVersionRecord:
        if cached:
            found: DetectorVersionRecord = await self.ops.hot.get(
                ("detector_version", detector_id, version_id),
                lambda: self.version_for_prediction(detector_id, version_id),
            )
            return found
        if version_id:
            return (await self.stores.detector_versions.get(f"{detector_id}.{version_id}")).value
        for version in await self.stores.detector_versions.list():
            if version.value.detector_id == detector_id and version.value.status == "ACTIVE":
                return version.value
        raise NotFound(
            f"detector {detector_id!r} has no ACTIVE version", kind="detector", id=detector_id
        )

    # -- predictions --------------------------------------------------------------------------

    async def get_event_prediction(self, request: GetEventPrediction) -> Output:
        detector = await self.detector(request.detector_id, cached=True)
        if request.event_type_name != detector.event_type_name:
            raise ValidationFailed(
                f"detector {detector.detector_id!r} takes {detector.event_type_name!r} events"
            )
        version = await self.version_for_prediction(
            request.detector_id, request.detector_version_id, cached=True
        )
        event_type = await self.ops.event_type(request.event_type_name, cached=True)
        entity = request.entities[0]
        raw = await self.ops.check_event(
            event_type, request.event_variables, entity.entity_type, None, cached=True
        )
        values, typed = await self._variables(raw)
        event = {
            "EVENT_ID": request.event_id,
            "EVENT_TIMESTAMP": request.event_timestamp,
            "ENTITY_TYPE": entity.entity_type,
            "ENTITY_ID": entity.entity_id,
            **values,
        }
        stored: asyncio.Future[None] | None = None
        if event_type.event_ingestion == "ENABLED":
            # AFD stores the events it scores; so does Trellis (TFI histories learn from them).
            # The publish runs while the event is scored, and the answer waits for its ack: the
            # event is durable before anyone hears of the prediction, at no cost in latency.
            # (Aggregates count only events strictly before an event, so it never sees itself.)
            stored = asyncio.ensure_future(
                self.ops.store_event(
                    event_type.name,
                    request.event_id,
                    request.event_timestamp,
                    entity,
                    raw,
                    wait=False,
                )
            )
        try:
            output = await self._predict(version, event, typed, explain=request.explain)
        except Exception:
            if stored is not None:
                with contextlib.suppress(Exception):
                    await stored
            raise
        if stored is not None:
            await stored
        return output

    async def _predict(
        self,
        version: DetectorVersionRecord,
        event: dict[str, Any],
        typed: dict[str, object],
        *,
        explain: bool,
    ) -> Output:
        model_scores = []
        explanations = []
        scores = [
            self.scorer.score(
                m["modelId"], m["modelType"], m["modelVersionNumber"], event, explain=explain
            )
            for m in version.model_versions
        ]
        # One model (the usual detector) is awaited in place: gather would add a task.
        scored = [await scores[0]] if len(scores) == 1 else await asyncio.gather(*scores)
        for model, (score, explanation) in zip(version.model_versions, scored, strict=True):
            name = model_score_variable(model["modelId"])
            typed[name] = score
            model_scores.append({"modelVersion": model, "scores": {name: score}})
            explanations.append({"modelVersion": model, "variableImpacts": explanation})
        matched = await self.matched_rules(
            version, typed, await self.ops.list_elements(cached=True)
        )
        output: Output = {
            "modelScores": model_scores,
            "ruleResults": matched,
            "externalModelOutputs": [],
        }
        if explain:
            output["explanations"] = explanations
        return output

    async def matched_rules(
        self, version: DetectorVersionRecord, typed: dict[str, object], lists: dict[str, list[str]]
    ) -> list[dict[str, Any]]:
        matched: list[dict[str, Any]] = []
        for ref in version.rules:
            rule = await self._rule(ref)
            try:
                hit = _compiled(rule.expression).evaluate(typed, lists)
            except ValueError as exc:
                raise ValidationFailed(
                    f"rule {rule.rule_id!r} could not be evaluated: {exc}"
                ) from None
            if hit:
                matched.append({"ruleId": rule.rule_id, "outcomes": rule.outcomes})
                if version.rule_execution_mode == "FIRST_MATCHED":
                    break
        return matched

    async def _rule(self, ref: dict[str, str]) -> RuleRecord:
        key = f"{ref['detectorId']}.{ref['ruleId']}.{ref['ruleVersion']}"

        async def load() -> RuleRecord:
            return (await self.stores.rules.get(key)).value

        rule: RuleRecord = await self.ops.hot.get(("rule", key), load)  # rule versions never change
        return rule

    # -- backtesting ---------------------------------------------------------------------------

    async def backtest_detector_version(self, request: BacktestDetectorVersion) -> Output:
        """Run a version (a DRAFT one, typically) over stored events: outcomes and fraud capture."""
        detector = await self.detector(request.detector_id)
        version = (
            await self.stores.detector_versions.get(
                f"{request.detector_id}.{request.detector_version_id}"
            )
        ).value
        events = await asyncio.to_thread(
            self.ops.events.events,
            detector.event_type_name,
            start=_when(request.start_time, "startTime"),
            end=_when(request.end_time, "endTime"),
        )
        events = events.tail(request.max_events)
        if events.is_empty():
            raise ValidationFailed("no stored events in that time range")
        names = [c for c in events.columns if c not in _RESERVED]
        types = {n: (await self.stores.variables.get(n)).value for n in names}
        scores: dict[str, list[float]] = {}
        for model in version.model_versions:
            scores[model_score_variable(model["modelId"])] = await self.scorer.score_frame(
                model["modelId"], model["modelVersionNumber"], events
            )
        lists = await self.ops.list_elements()
        outcomes: dict[str, dict[str, int]] = {}
        rule_hits: dict[str, int] = {}
        for i, row in enumerate(events.iter_rows(named=True)):
            typed: dict[str, object] = {
                n: typed_value(
                    row[n] if row[n] is not None else types[n].default_value, types[n].data_type
                )
                for n in names
            }
            typed.update({name: values[i] for name, values in scores.items()})
            matched = await self.matched_rules(version, typed, lists)
            label = row["EVENT_LABEL"] or "(unlabelled)"
            for hit in matched:
                rule_hits[hit["ruleId"]] = rule_hits.get(hit["ruleId"], 0) + 1
            for outcome in {o for hit in matched for o in hit["outcomes"]} or {"(no rule matched)"}:
                by_label = outcomes.setdefault(outcome, {})
                by_label[label] = by_label.get(label, 0) + 1
        labels_total: dict[str, int] = {}
        for label in events["EVENT_LABEL"].fill_null("(unlabelled)").to_list():
            labels_total[label] = labels_total.get(label, 0) + 1
        return {
            "detectorId": request.detector_id,
            "detectorVersionId": version.version,
            "status": version.status,
            "eventsEvaluated": events.height,
            "labels": labels_total,
            "ruleMatches": rule_hits,
            "outcomes": [
                {
                    "outcome": outcome,
                    "events": sum(by_label.values()),
                    "labels": by_label,
                    "captureRate": {
                        label: round(n / labels_total[label], 4) for label, n in by_label.items()
                    },
                }
                for outcome, by_label in sorted(outcomes.items())
            ],
        }

    async def _variables(
        self, raw: dict[str, str | None]
    ) -> tuple[dict[str, str], dict[str, object]]:
        """Defaults for missing values (as AFD does); typed values for the rules."""
        values: dict[str, str] = {}
        typed: dict[str, object] = {}
        for name, value in raw.items():
            variable = await self.ops.variable(name, cached=True)
            text = value if value is not None else variable.default_value
            values[name] = text
            typed[name] = typed_value(text, variable.data_type)
        return values, typed


_compiled = functools.lru_cache(maxsize=1024)(compile_rule)
_RESERVED = {
    "EVENT_ID",
    "EVENT_TIMESTAMP",
    "ENTITY_TYPE",
    "ENTITY_ID",
    "EVENT_LABEL",
    "LABEL_TIMESTAMP",
}


def _when(value: str, field: str) -> datetime:
    try:
        return parse_afd_timestamp(value, field)
    except ValueError as exc:
        raise ValidationFailed(str(exc)) from None


def typed_value(value: str, data_type: str) -> object:
    """A variable's text as the rules see it: numbers and booleans typed, the rest text."""
    try:
        if data_type == "INTEGER":
            return int(value)
        if data_type == "FLOAT":
            return float(value)
        if data_type == "BOOLEAN":
            return value.lower() == "true"
    except ValueError:
        return None
    return value
