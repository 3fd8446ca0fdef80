"""Kendra data source operations of the crawler: each takes its request contract, returns Kendra's output."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from datetime import UTC, datetime
from typing import Any

from contracts import subjects
from contracts.crawl import (
    CreateDataSource,
    DeleteDataSource,
    DescribeDataSource,
    ListDataSources,
    ListDataSourceSyncJobs,
    StartDataSourceSyncJob,
    StopDataSourceSyncJob,
    UpdateDataSource,
)
from contracts.index import DescribeIndex, IndexResult
from runtime.bus import Bus
from runtime.errors import Conflict, NotFound, ValidationFailed
from runtime.kv import ResourceStore
from services.crawler.adapters.secret_store import SecretStore
from services.crawler.domain.records import DELETING, DataSourceRecord
from services.crawler.domain.settings import parse_data_source, with_credentials
from services.crawler.domain.sync import parse_schedule
from services.crawler.engine import CrawlEngine


class CrawlerOperations:
    def __init__(
        self,
        bus: Bus,
        sources: ResourceStore[DataSourceRecord],
        engine: CrawlEngine,
        secrets: SecretStore,
    ) -> None:
        self.bus = bus
        self.sources = sources
        self.engine = engine
        self.secrets = secrets
        self._purges: set[asyncio.Task[None]] = set()

    async def _source(self, source_id: str, index_id: str) -> DataSourceRecord:
        try:
            source = (await self.sources.get(source_id)).value
        except NotFound:
            raise NotFound(f"Data source {source_id} does not exist") from None
        if source.index_id != index_id:
            raise NotFound(f"Data source {source_id} does not exist in index {index_id}")
        return source

    async def _check_index(self, index_id: str) -> None:
        # The index belongs to the indexer: ask it (a missing index is a 404 from there).
        await self.bus.request(
            subjects.index_operation("describe_index"),
            DescribeIndex(id=index_id),
            IndexResult,
            service="indexer",
        )

    async def _validate(
        self, kind: str, configuration: dict[str, Any] | None, schedule: str | None
    ) -> dict[str, Any]:
        """The configuration to store: valid, every secret it names existing, named by ARN."""
        settings = parse_data_source(kind, configuration)
        if schedule:
            parse_schedule(schedule)
        arns: dict[str, str] = {}
        for reference in settings.secret_references:
            try:
                arns[reference] = (await self.secrets.get(reference)).arn
            except NotFound:
                raise ValidationFailed(
                    f"Credentials {reference[:300]!r}: no such secret. Create it first "
                    "(POST /v1/secrets, or Secrets Manager CreateSecret)"
                ) from None
        # Stored (and described) by ARN only: a reference, never a value.
        return with_credentials(configuration or {}, lambda reference: arns[reference])

    async def create_data_source(self, r: CreateDataSource) -> dict[str, Any]:
        configuration = await self._validate(r.type, r.configuration, r.schedule)
        await self._check_index(r.index_id)
        source_id = (
            hashlib.sha256(f"{r.index_id}/{r.client_token}".encode()).hexdigest()[:36]
            if r.client_token
            else uuid.uuid4().hex[:36]
        )
        if any(
            v.value.name == r.name and v.value.index_id == r.index_id and v.key != source_id
            for v in await self.sources.list()
        ):
            raise Conflict(f"a data source named {r.name!r} already exists in this index")
        now = datetime.now(UTC)
        record = DataSourceRecord(
            id=source_id,
            index_id=r.index_id,
            name=r.name,
            type=r.type,
            configuration=configuration,
            description=r.description,
            schedule=r.schedule,
            role_arn=r.role_arn,
            language_code=r.language_code or "en",
            created_at=now,
            updated_at=now,
            tags=[t.model_dump(by_alias=True) for t in r.tags],
        )
        stored = await self.sources.create(source_id, record, client_token=r.client_token)
        return {"Id": stored.value.id}

    async def describe_data_source(self, r: DescribeDataSource) -> dict[str, Any]:
        source = await self._source(r.id, r.index_id)
        out: dict[str, Any] = {
            "Id": source.id,
            "IndexId": source.index_id,
            "Name": source.name,
            "Type": source.type,
            "Configuration": source.configuration,
            "CreatedAt": source.created_at.timestamp(),
            "UpdatedAt": source.updated_at.timestamp(),
            "Status": source.status,
            "LanguageCode": source.language_code,
        }
        for key, value in (
            ("Description", source.description),
            ("Schedule", source.schedule),
            ("RoleArn", source.role_arn),
        ):
            if value is not None:
                out[key] = value
        return out

    async def update_data_source(self, r: UpdateDataSource) -> dict[str, Any]:
        source = await self._source(r.id, r.index_id)
        configuration = r.configuration if r.configuration is not None else source.configuration
        schedule = r.schedule if r.schedule is not None else source.schedule
        configuration = await self._validate(source.type, configuration, schedule)

        def change(current: DataSourceRecord) -> DataSourceRecord:
            updates: dict[str, Any] = {
                "configuration": configuration,
                "schedule": schedule,
                "updated_at": datetime.now(UTC),
            }
            for name in ("name", "description", "role_arn", "language_code"):
                value = getattr(r, name)
                if value is not None:
                    updates[name] = value
            return current.model_copy(update=updates)

        await self.sources.mutate(r.id, change)
        return {}

    async def delete_data_source(self, r: DeleteDataSource) -> dict[str, Any]:
        await self._source(r.id, r.index_id)
        for job in await self.engine.jobs_of(r.id):
            if job.status.value in ("SYNCING", "SYNCING_INDEXING"):
                await self.engine.stop(r.id)
        marked = await self.sources.mutate(
            r.id,
            lambda s: s.model_copy(update={"status": DELETING, "updated_at": datetime.now(UTC)}),
        )
        # Its documents leave the index in the background (Kendra's DELETING status); if this
        # replica dies first, the schedule loop of any replica finishes the job.
        task = asyncio.create_task(self.engine.purge(marked.value))
        self._purges.add(task)
        task.add_done_callback(self._purges.discard)
        return {}

    async def list_data_sources(self, r: ListDataSources) -> dict[str, Any]:
        records = sorted(
            (v.value for v in await self.sources.list() if v.value.index_id == r.index_id),
            key=lambda s: s.id,
        )
        if r.next_token:
            records = [s for s in records if s.id > r.next_token]
        page = records[: r.max_results]
        out: dict[str, Any] = {
            "SummaryItems": [
                {
                    "Name": s.name,
                    "Id": s.id,
                    "Type": s.type,
                    "CreatedAt": s.created_at.timestamp(),
                    "UpdatedAt": s.updated_at.timestamp(),
                    "Status": s.status,
                    "LanguageCode": s.language_code,
                }
                for s in page
            ]
        }
        if len(records) > r.max_results:
            out["NextToken"] = page[-1].id
        return out

    async def start_data_source_sync_job(self, r: StartDataSourceSyncJob) -> dict[str, Any]:
        source = await self._source(r.id, r.index_id)
        mode = r.sync_mode or parse_data_source(source.type, source.configuration).sync_mode
        job = await self.engine.start(source, mode)
        return {"ExecutionId": job.id}

    async def stop_data_source_sync_job(self, r: StopDataSourceSyncJob) -> dict[str, Any]:
        await self._source(r.id, r.index_id)
        await self.engine.stop(r.id)
        return {}

    async def list_data_source_sync_jobs(self, r: ListDataSourceSyncJobs) -> dict[str, Any]:
        await self._source(r.id, r.index_id)
        jobs = sorted(await self.engine.jobs_of(r.id), key=lambda j: j.started_at, reverse=True)
        if r.status_filter:
            jobs = [j for j in jobs if j.status.value == r.status_filter]
        if r.start_time_filter:
            low, high = _time_range(r.start_time_filter)
            jobs = [j for j in jobs if low <= j.started_at.timestamp() <= high]
        start = 0
        if r.next_token:
            if not r.next_token.isdigit():
                raise ValidationFailed("NextToken is not one this operation returned")
            start = int(r.next_token)
        page = jobs[start : start + r.max_results]
        out: dict[str, Any] = {"History": [j.kendra() for j in page]}
        if len(jobs) > start + r.max_results:
            out["NextToken"] = str(start + r.max_results)
        return out


def _time_range(raw: dict[str, Any]) -> tuple[float, float]:
    """Kendra's TimeRange {StartTime, EndTime} (epoch seconds; either may be left out)."""
    bounds = []
    for key, default in (("StartTime", float("-inf")), ("EndTime", float("inf"))):
        value = raw.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValidationFailed(f"StartTimeFilter.{key} must be a time in epoch seconds")
        bounds.append(float(value))
    unknown = set(raw) - {"StartTime", "EndTime"}
    if unknown:
        raise ValidationFailed(f"StartTimeFilter: unknown members {sorted(unknown)}")
    return bounds[0], bounds[1]
