"""Fraud Detector operations: AFD semantics over the KV resources, the event log and the event store."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import nats.js.errors
from nats.js.object_store import ObjectStore

from contracts import subjects
from contracts.envelope import utc_now
from contracts.fraud import (
    BatchCreateVariable,
    CreateList,
    CreateVariable,
    DeleteEventsByEventType,
    DeleteNamed,
    DeleteVariable,
    EventDeleted,
    EventLabelUpdated,
    EventRef,
    EventSent,
    EventsPurged,
    GetListElements,
    GetNamed,
    GetVariables,
    PutEventType,
    PutNamed,
    SendEvent,
    UpdateEventLabel,
    UpdateList,
    UpdateVariable,
    VariableEntry,
    parse_afd_timestamp,
)
from contracts.topology import UPLOADS_LOCATION
from runtime.bus import Bus
from runtime.cache import TtlCache
from runtime.errors import Conflict, NotFound, ValidationFailed
from runtime.kv import ResourceStore
from runtime.paging import page
from runtime.view import StreamView
from services.fraud.adapters.event_log import EventLog
from services.fraud.adapters.event_store import EventStore
from services.fraud.domain.resources import (
    DetectorRecord,
    DetectorVersionRecord,
    EventTypeRecord,
    ListRecord,
    ModelRecord,
    ModelVersionRecord,
    NamedRecord,
    RuleRecord,
    VariableRecord,
    refuse_delete,
)

log = logging.getLogger("trellis.fraud")
Output = dict[str, Any]

COLLECTION_NAMES = {
    "entity_type": "entityTypes",
    "label": "labels",
    "outcome": "outcomes",
    "event_type": "eventTypes",
    "detector": "detectors",
    "list": "lists",
}


class Stores:
    """Typed views of the `fraud_resources` bucket, one prefix per resource kind."""

    def __init__(self, kv: Any) -> None:
        self.variables = ResourceStore(kv, VariableRecord, "variable", prefix="variable.")
        self.named = {
            kind: ResourceStore(kv, NamedRecord, kind.replace("_", " "), prefix=f"{kind}.")
            for kind in ("entity_type", "label", "outcome")
        }
        self.lists = ResourceStore(kv, ListRecord, "list", prefix="list.")
        self.event_types = ResourceStore(kv, EventTypeRecord, "event type", prefix="event_type.")
        self.models = ResourceStore(kv, ModelRecord, "model", prefix="model.")
        self.model_versions = ResourceStore(
            kv, ModelVersionRecord, "model version", prefix="model_version."
        )
        self.detectors = ResourceStore(kv, DetectorRecord, "detector", prefix="detector.")
        self.rules = ResourceStore(kv, RuleRecord, "rule", prefix="rule.")
        self.detector_versions = ResourceStore(
            kv, DetectorVersionRecord, "detector version", prefix="detector_version."
        )


class FraudOperations:
    def __init__(
        self,
        bus: Bus,
        stores: Stores,
        events: EventStore,
        view: StreamView,
        *,
        region: str,
        account_id: str,
        import_roots: Sequence[Path],
        uploads: ObjectStore | None = None,
        upload_cache: Path | None = None,
    ) -> None:
        self.bus = bus
        self.stores = stores
        self.events = events
        self.event_log = EventLog(bus)
        self.view = view
        self.region = region
        self.account_id = account_id
        self.import_roots = [p.resolve() for p in import_roots]
        # Predictions read the same resources on every request; they may lag writes by a second,
        # or by two while a refresh is under way (a refresh never holds a prediction up).
        self.hot = TtlCache(ttl_s=1.0, stale_s=1.0)
        self.uploads = uploads
        self.upload_cache = upload_cache or Path("var/fraud/uploads")

    def arn(self, kind: str, name: str) -> str:
        return f"arn:aws:frauddetector:{self.region}:{self.account_id}:{kind}/{name}"

    def stamp(
        self, kind: str, name: str, description: str | None, tags: list[Any]
    ) -> dict[str, Any]:
        now = utc_now()
        return {
            "description": description,
            "tags": [t.model_dump() for t in tags],
            "arn": self.arn(kind, name),
            "created_time": now,
            "last_updated_time": now,
        }

    # -- variables ----------------------------------------------------------------------------

    async def _create_variable(self, entry: VariableEntry, tags: list[Any]) -> None:
        if entry.data_source != "EVENT":
            raise ValidationFailed(f"variable {entry.name!r}: only EVENT variables can be created")
        record = VariableRecord(
            name=entry.name,
            data_type=entry.data_type,
            data_source=entry.data_source,
            default_value=entry.default_value,
            variable_type=entry.variable_type,
            **self.stamp("variable", entry.name, entry.description, tags),
        )
        await self.stores.variables.create(entry.name, record)

    async def create_variable(self, request: CreateVariable) -> Output:
        await self._create_variable(request, request.tags)
        return {}

    async def batch_create_variable(self, request: BatchCreateVariable) -> Output:
        errors = []
        for entry in request.variable_entries:
            try:
                await self._create_variable(entry, request.tags)
            except (Conflict, ValidationFailed) as exc:
                errors.append(
                    {
                        "name": entry.name,
                        "code": 400 if isinstance(exc, ValidationFailed) else 409,
                        "message": exc.message,
                    }
                )
        return {"errors": errors}

    async def get_variables(self, request: GetVariables) -> Output:
        if request.name:
            return {"variables": [(await self.stores.variables.get(request.name)).value.to_afd()]}
        items = [v.value for v in await self.stores.variables.list()]
        chosen, token = page(
            items, lambda v: v.name, request.next_token, request.max_results or 100
        )
        return {
            "variables": [v.to_afd() for v in chosen],
            **({"nextToken": token} if token else {}),
        }

    async def update_variable(self, request: UpdateVariable) -> Output:
        def change(record: VariableRecord) -> VariableRecord:
            if request.variable_type is not None and request.variable_type != record.variable_type:
                raise ValidationFailed(
                    f"variable {record.name!r}: variableType is locked once created ({record.variable_type})"
                )
            update: dict[str, Any] = {"last_updated_time": utc_now()}
            if request.default_value is not None:
                update["default_value"] = request.default_value
            if request.description is not None:
                update["description"] = request.description
            return record.model_copy(update=update)

        await self.stores.variables.mutate(request.name, change)
        return {}

    async def delete_variable(self, request: DeleteVariable) -> Output:
        await self.stores.variables.get(request.name)
        users = [
            f"event type {e.value.name}"
            for e in await self.stores.event_types.list()
            if request.name in e.value.event_variables
        ]
        refuse_delete("variable", request.name, users)
        await self.stores.variables.delete(request.name)
        return {}

    # -- entity types, labels, outcomes, lists ------------------------------------------------

    async def put_named(self, request: PutNamed) -> Output:
        store = self.stores.named[request.kind]
        try:
            current = (await store.get(request.name)).value
        except NotFound:
            record = NamedRecord(
                kind=request.kind,
                name=request.name,
                **self.stamp(
                    request.kind.replace("_", "-"), request.name, request.description, request.tags
                ),
            )
            await store.create(request.name, record)
            return {}
        await store.put(
            request.name,
            current.model_copy(
                update={"description": request.description, "last_updated_time": utc_now()}
            ),
        )
        return {}

    async def get_named(self, request: GetNamed) -> Output:
        stores: dict[str, ResourceStore[Any]] = {
            **self.stores.named,
            "event_type": self.stores.event_types,
            "detector": self.stores.detectors,
            "list": self.stores.lists,
        }
        store = stores[request.kind]
        collection = COLLECTION_NAMES[request.kind]
        if request.name:
            record = (await store.get(request.name)).value
            return {collection: [await self._describe(request.kind, record)]}
        items = [v.value for v in await store.list()]
        chosen, token = page(items, _name_of, request.next_token, request.max_results or 100)
        described = [await self._describe(request.kind, r) for r in chosen]
        return {collection: described, **({"nextToken": token} if token else {})}

    async def _describe(self, kind: str, record: Any) -> dict[str, Any]:
        if kind == "event_type":
            stats = await asyncio.to_thread(self.events.statistics, record.name)
            result: dict[str, Any] = record.to_afd(stats)
            return result
        described: dict[str, Any] = record.to_afd()
        return described

    async def delete_named(self, request: DeleteNamed) -> Output:
        name = request.name
        if request.kind in self.stores.named:
            await self.stores.named[request.kind].get(name)
            field = {"entity_type": "entity_types", "label": "labels", "outcome": None}[
                request.kind
            ]
            users: list[str] = []
            if field:
                users = [
                    f"event type {e.value.name}"
                    for e in await self.stores.event_types.list()
                    if name in getattr(e.value, field)
                ]
            else:
                users = [
                    f"rule {r.value.rule_id} v{r.value.rule_version}"
                    for r in await self.stores.rules.list()
                    if name in r.value.outcomes
                ]
            refuse_delete(request.kind.replace("_", " "), name, users)
            await self.stores.named[request.kind].delete(name)
        elif request.kind == "event_type":
            await self.stores.event_types.get(name)
            users = [
                f"model {m.value.model_id}"
                for m in await self.stores.models.list()
                if m.value.event_type_name == name
            ]
            users += [
                f"detector {d.value.detector_id}"
                for d in await self.stores.detectors.list()
                if d.value.event_type_name == name
            ]
            if await asyncio.to_thread(self.events.has_events, name):
                users.append("its stored events (DeleteEventsByEventType first)")
            refuse_delete("event type", name, users)
            await self.stores.event_types.delete(name)
        elif request.kind == "detector":
            await self.stores.detectors.get(name)
            users = [
                f"detector version {v.value.version}"
                for v in await self.stores.detector_versions.list()
                if v.value.detector_id == name
            ]
            users += [
                f"rule {r.value.rule_id}"
                for r in await self.stores.rules.list()
                if r.value.detector_id == name
            ]
            refuse_delete("detector", name, users)
            await self.stores.detectors.delete(name)
        else:
            await self.stores.lists.get(name)
            users = [
                f"rule {r.value.rule_id} v{r.value.rule_version}"
                for r in await self.stores.rules.list()
                if f"@{name}" in r.value.expression
            ]
            refuse_delete("list", name, users)
            await self.stores.lists.delete(name)
        return {}

    async def create_list(self, request: CreateList) -> Output:
        record = ListRecord(
            name=request.name,
            variable_type=request.variable_type,
            elements=_clean_elements(request.elements),
            **self.stamp("list", request.name, request.description, request.tags),
        )
        await self.stores.lists.create(request.name, record)
        return {}

    async def update_list(self, request: UpdateList) -> Output:
        def change(record: ListRecord) -> ListRecord:
            update: dict[str, Any] = {"last_updated_time": utc_now()}
            if request.description is not None:
                update["description"] = request.description
            if request.variable_type is not None:
                if record.variable_type and record.variable_type != request.variable_type:
                    raise ValidationFailed(
                        f"list {record.name!r}: variableType is locked ({record.variable_type})"
                    )
                update["variable_type"] = request.variable_type
            if request.elements is not None:
                new = _clean_elements(request.elements)
                mode = request.update_mode or "REPLACE"
                if mode == "APPEND":
                    new = list(dict.fromkeys([*record.elements, *new]))
                elif mode == "REMOVE":
                    gone = set(new)
                    new = [e for e in record.elements if e not in gone]
                update["elements"] = new
            return record.model_copy(update=update)

        await self.stores.lists.mutate(request.name, change)
        return {}

    async def get_list_elements(self, request: GetListElements) -> Output:
        elements = sorted((await self.stores.lists.get(request.name)).value.elements)
        chosen, token = page(elements, str, request.next_token, request.max_results or 5000)
        return {"elements": chosen, **({"nextToken": token} if token else {})}

    async def list_elements(self, *, cached: bool = False) -> dict[str, list[str]]:
        async def load() -> dict[str, list[str]]:
            return {v.value.name: v.value.elements for v in await self.stores.lists.list()}

        lists: dict[str, list[str]] = await self.hot.get("lists", load) if cached else await load()
        return lists

    async def variable(self, name: str, *, cached: bool = False) -> VariableRecord:
        async def load() -> VariableRecord:
            return (await self.stores.variables.get(name)).value

        record: VariableRecord = (
            await self.hot.get(("variable", name), load) if cached else await load()
        )
        return record

    # -- event types ----------------------------------------------------------------------------

    async def put_event_type(self, request: PutEventType) -> Output:
        for name in request.event_variables:
            await self.must_exist(self.stores.variables, name, "variable")
        for name in request.labels:
            await self.must_exist(self.stores.named["label"], name, "label")
        for name in request.entity_types:
            await self.must_exist(self.stores.named["entity_type"], name, "entity type")
        try:
            current = (await self.stores.event_types.get(request.name)).value
        except NotFound:
            record = EventTypeRecord(
                name=request.name,
                event_variables=list(dict.fromkeys(request.event_variables)),
                labels=request.labels,
                entity_types=request.entity_types,
                event_ingestion=request.event_ingestion or "ENABLED",
                event_orchestration=request.event_orchestration.model_dump(by_alias=True)
                if request.event_orchestration
                else None,
                **self.stamp("event-type", request.name, request.description, request.tags),
            )
            await self.stores.event_types.create(request.name, record)
            return {}
        removed = set(current.event_variables) - set(request.event_variables)
        has_events = await asyncio.to_thread(self.events.has_events, request.name)
        if removed and has_events:
            raise ValidationFailed(
                f"event type {request.name!r} has stored events: variables can be added, not removed "
                f"({sorted(removed)})"
            )
        await self.stores.event_types.put(
            request.name,
            current.model_copy(
                update={
                    "event_variables": list(dict.fromkeys(request.event_variables)),
                    "labels": request.labels,
                    "entity_types": request.entity_types,
                    "event_ingestion": request.event_ingestion or current.event_ingestion,
                    "description": request.description
                    if request.description is not None
                    else current.description,
                    "last_updated_time": utc_now(),
                }
            ),
        )
        return {}

    async def must_exist(self, store: ResourceStore[Any], name: str, kind: str) -> None:
        try:
            await store.get(name)
        except NotFound:
            raise ValidationFailed(f"{kind} {name!r} does not exist; create it first") from None

    async def event_type(self, name: str, *, cached: bool = False) -> EventTypeRecord:
        async def load() -> EventTypeRecord:
            try:
                return (await self.stores.event_types.get(name)).value
            except NotFound:
                raise NotFound(
                    f"event type {name!r} not found", kind="event type", id=name
                ) from None

        record: EventTypeRecord = (
            await self.hot.get(("event_type", name), load) if cached else await load()
        )
        return record

    # -- stored events ----------------------------------------------------------------------

    async def check_event(
        self,
        event_type: EventTypeRecord,
        variables: dict[str, str],
        entity_type: str,
        label: str | None,
        *,
        cached: bool = False,
    ) -> dict[str, str | None]:
        """Validate an event against its type; returns variables completed with defaults."""
        unknown = sorted(set(variables) - set(event_type.event_variables))
        if unknown:
            raise ValidationFailed(f"variables {unknown} are not in event type {event_type.name!r}")
        if entity_type not in event_type.entity_types:
            raise ValidationFailed(
                f"entity type {entity_type!r} is not in event type {event_type.name!r}"
            )
        if label is not None and label not in event_type.labels:
            raise ValidationFailed(f"label {label!r} is not in event type {event_type.name!r}")
        completed: dict[str, str | None] = {}
        for name in event_type.event_variables:
            variable = await self.variable(name, cached=cached)
            value = variables.get(name)
            if value is not None:
                _check_type(name, variable.data_type, value)
            completed[name] = value
        return completed

    async def send_event(self, request: SendEvent) -> Output:
        event_type = await self.event_type(request.event_type_name)
        if event_type.event_ingestion != "ENABLED":
            raise ValidationFailed(
                f"event ingestion is disabled for event type {event_type.name!r}"
            )
        _timestamp(
            request.event_timestamp, "eventTimestamp"
        )  # refuse a bad timestamp before anything
        label_ts = (
            _timestamp(request.label_timestamp, "labelTimestamp")
            if request.label_timestamp
            else None
        )
        if request.assigned_label and label_ts is None:
            raise ValidationFailed("labelTimestamp is required with assignedLabel")
        entity = request.entities[0]
        variables = await self.check_event(
            event_type, request.event_variables, entity.entity_type, request.assigned_label
        )
        await self.store_event(
            event_type.name,
            request.event_id,
            request.event_timestamp,
            entity,
            variables,
            label=request.assigned_label,
            label_timestamp=label_ts,
        )
        return {}

    async def store_event(
        self,
        event_type: str,
        event_id: str,
        timestamp: str,
        entity: Any,
        variables: dict[str, str | None],
        *,
        label: str | None = None,
        label_timestamp: Any = None,
        wait: bool = True,
    ) -> None:
        """Append the event to the log; with `wait`, until this replica's store shows it."""
        sequence = await self.event_log.append(
            EventSent(
                event_type=event_type,
                event_id=event_id,
                event_timestamp=_timestamp(timestamp, "eventTimestamp"),
                entity_type=entity.entity_type,
                entity_id=entity.entity_id,
                variables={k: v for k, v in variables.items() if v is not None},
                label=label,
                label_timestamp=label_timestamp,
            )
        )
        if wait:
            await self.view.wait_for(sequence)

    async def get_event(self, request: EventRef) -> Output:
        await self.event_type(request.event_type_name)
        row = await asyncio.to_thread(self.events.get, request.event_type_name, request.event_id)
        if row is None:
            raise NotFound(
                f"event {request.event_id!r} of type {request.event_type_name!r} not found"
            )
        variables = {k: v for k, v in row.items() if k not in _META and v is not None}
        event: dict[str, Any] = {
            "eventId": row["EVENT_ID"],
            "eventTypeName": request.event_type_name,
            "eventTimestamp": _iso(row["EVENT_TIMESTAMP"]),
            "eventVariables": variables,
            "entities": [{"entityType": row["ENTITY_TYPE"], "entityId": row["ENTITY_ID"]}],
        }
        if row.get("EVENT_LABEL"):
            event["currentLabel"] = row["EVENT_LABEL"]
            if row.get("LABEL_TIMESTAMP") is not None:
                event["labelTimestamp"] = _iso(row["LABEL_TIMESTAMP"])
        return {"event": event}

    async def update_event_label(self, request: UpdateEventLabel) -> Output:
        event_type = await self.event_type(request.event_type_name)
        if request.assigned_label not in event_type.labels:
            raise ValidationFailed(
                f"label {request.assigned_label!r} is not in event type {event_type.name!r}"
            )
        if await asyncio.to_thread(self.events.get, event_type.name, request.event_id) is None:
            raise NotFound(f"event {request.event_id!r} not found")
        sequence = await self.bus.emit(
            subjects.FRAUD_EVENT_LABEL_UPDATED,
            EventLabelUpdated(
                event_type=event_type.name,
                event_id=request.event_id,
                label=request.assigned_label,
                label_timestamp=_timestamp(request.label_timestamp, "labelTimestamp"),
            ),
        )
        await self.view.wait_for(sequence)
        return {}

    async def delete_event(self, request: EventRef) -> Output:
        await self.event_type(request.event_type_name)
        sequence = await self.bus.emit(
            subjects.FRAUD_EVENT_DELETED,
            EventDeleted(event_type=request.event_type_name, event_id=request.event_id),
        )
        await self.view.wait_for(sequence)
        return {}

    async def delete_events_by_event_type(self, request: DeleteEventsByEventType) -> Output:
        await self.event_type(request.event_type_name)
        sequence = await self.bus.emit(
            subjects.FRAUD_EVENTS_PURGED, EventsPurged(event_type=request.event_type_name)
        )
        await self.view.wait_for(sequence)
        return {"eventTypeName": request.event_type_name, "eventsDeletionStatus": "COMPLETE"}

    # -- paths --------------------------------------------------------------------------------

    def check_location(self, location: str) -> None:
        """Refuse a location before a job starts: a file:// path inside the roots, or an upload."""
        if location.startswith(UPLOADS_LOCATION):
            _upload_name(location)
        else:
            self.local_path(location)

    async def readable_path(self, location: str) -> Path:
        """A local file for `location`; uploads are fetched from the object store first."""
        if not location.startswith(UPLOADS_LOCATION):
            return self.local_path(location)
        if self.uploads is None:
            raise ValidationFailed("uploads are not configured on this fraud replica")
        name = _upload_name(location)
        try:
            result = await self.uploads.get(name)
        except nats.js.errors.ObjectNotFoundError:
            raise ValidationFailed(
                f"no uploaded object {name!r}; PUT it to /v1/fraud/uploads/{name}"
            ) from None
        cache = self.upload_cache / name
        cache.parent.mkdir(parents=True, exist_ok=True)
        await asyncio.to_thread(cache.write_bytes, bytes(result.data or b""))
        return cache

    def output_dir(self, location: str) -> Path:
        """Where a job writes its files: a file:// directory inside the import roots."""
        if not location.startswith("file://"):
            raise ValidationFailed(
                f"unsupported outputPath {location!r}: use file:///dir on the fraud server"
            )
        path = Path(location.removeprefix("file://")).resolve()
        if not any(path == root or root in path.parents for root in self.import_roots):
            raise ValidationFailed(f"outputPath {location!r} is outside the import directories")
        return path

    def local_path(self, location: str) -> Path:
        """A `file://` path, only inside the configured import roots (no traversal, no links out)."""
        if not location.startswith("file://"):
            raise ValidationFailed(
                f"unsupported location {location!r}: use file:///path on the fraud server or "
                f"{UPLOADS_LOCATION}<name> for a file uploaded through the gateway"
            )
        path = Path(location.removeprefix("file://")).resolve()
        if not any(path == root or root in path.parents for root in self.import_roots):
            raise ValidationFailed(
                f"{location!r} is outside the import directories ({', '.join(map(str, self.import_roots))})"
            )
        if not path.is_file():
            raise ValidationFailed(f"{location!r} is not a readable file")
        return path


def _upload_name(location: str) -> str:
    name = location.removeprefix(UPLOADS_LOCATION)
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}", name):
        raise ValidationFailed(f"invalid upload name in {location!r}")
    return name


_META = {
    "EVENT_ID",
    "EVENT_TIMESTAMP",
    "ENTITY_TYPE",
    "ENTITY_ID",
    "EVENT_LABEL",
    "LABEL_TIMESTAMP",
}


def _name_of(record: Any) -> str:
    for attribute in ("name", "detector_id", "model_id"):
        value = getattr(record, attribute, None)
        if isinstance(value, str):
            return value
    raise AssertionError(f"{type(record).__name__} has no name")


def _clean_elements(elements: list[str]) -> list[str]:
    cleaned = [e.strip() for e in elements]
    bad = [e for e in cleaned if not e or len(e) > 320]
    if bad:
        raise ValidationFailed("list elements must be 1 to 320 characters")
    return list(dict.fromkeys(cleaned))


def _timestamp(value: str, field: str) -> Any:
    try:
        return parse_afd_timestamp(value, field)
    except ValueError as exc:
        raise ValidationFailed(str(exc)) from None


def _iso(value: Any) -> str:
    text: str = value.isoformat(timespec="seconds")
    return text.replace("+00:00", "Z")


def _check_type(name: str, data_type: str, value: str) -> None:
    try:
        if data_type == "INTEGER":
            int(value)
        elif data_type == "FLOAT":
            float(value)
        elif data_type == "BOOLEAN":
            if value.lower() not in ("true", "false"):
                raise ValueError
        elif data_type == "DATETIME":
            parse_afd_timestamp(value, name)
    except ValueError:
        raise ValidationFailed(f"variable {name!r} must be {data_type}, got {value!r}") from None
