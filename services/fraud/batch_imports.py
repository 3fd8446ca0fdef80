"""Batch import of AFD-format CSV or Parquet files into stored events, with per-row errors."""

from __future__ import annotations

import asyncio
import csv
import io
import logging
from pathlib import Path

import polars as pl

from contracts.envelope import utc_now
from contracts.fraud import CreateBatchImportJob, EventSent, GetBatchImportJobs
from runtime.errors import ValidationFailed
from runtime.kv import ResourceStore
from runtime.paging import page
from services.fraud.domain.imports import event_fields, read_events
from services.fraud.domain.resources import BatchImportRecord
from services.fraud.operations import FraudOperations, Output

log = logging.getLogger("trellis.fraud.imports")
WINDOW = 4096  # events handed to the event log at once (it writes them 256 to a message, in order)


class BatchImports:
    def __init__(self, ops: FraudOperations, jobs: ResourceStore[BatchImportRecord]) -> None:
        self.ops = ops
        self.jobs = jobs
        self._tasks: set[asyncio.Task[None]] = set()

    async def create_batch_import_job(self, request: CreateBatchImportJob) -> Output:
        event_type = await self.ops.event_type(request.event_type_name)
        self.ops.check_location(request.input_path)
        output = self.ops.output_dir(request.output_path)
        record = BatchImportRecord(
            job_id=request.job_id,
            status="IN_PROGRESS",
            input_path=request.input_path,
            output_path=request.output_path,
            event_type_name=event_type.name,
            iam_role_arn=request.iam_role_arn,
            arn=self.ops.arn("batch-import", request.job_id),
            start_time=utc_now(),
        )
        await self.jobs.create(request.job_id, record)
        task = asyncio.create_task(self._run(request.job_id, request.input_path, output))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return {}

    async def _run(self, job_id: str, location: str, output: Path) -> None:
        record = (await self.jobs.get(job_id)).value
        try:
            source = await self.ops.readable_path(location)
            event_type = await self.ops.event_type(record.event_type_name)
            types = {
                name: (await self.ops.stores.variables.get(name)).value.data_type
                for name in event_type.event_variables
            }
            frame = await asyncio.to_thread(read_event_file, source)
            rows = await asyncio.to_thread(
                read_events,
                frame,
                variables=types,
                labels=event_type.labels,
                entity_types=event_type.entity_types,
            )
            last = 0
            for start in range(0, len(rows.events), WINDOW):
                chunk = rows.events[start : start + WINDOW]
                sequences = await asyncio.gather(
                    *(
                        self.ops.event_log.append(
                            EventSent(
                                event_type=event_type.name,
                                **event_fields(row, event_type.event_variables),
                            )
                        )
                        for row in chunk
                    )
                )
                last = max(last, *sequences)
            if rows.errors:
                await asyncio.to_thread(
                    _write_errors, output / f"{job_id}-failures.csv", rows.errors
                )
            await self.ops.view.wait_for(last, timeout_s=60)
            update = {
                "status": "COMPLETE",
                "processed_records_count": len(rows.events),
                "failed_records_count": len(rows.errors),
                "total_records_count": rows.total,
                "row_errors": [{"row": e.row, "reason": e.reason} for e in rows.errors[:100]],
            }
        except (ValueError, ValidationFailed, pl.exceptions.PolarsError) as exc:
            update = {"status": "FAILED", "failure_reason": str(exc)}
        except Exception as exc:
            log.exception("batch import %s failed", job_id)
            update = {"status": "FAILED", "failure_reason": f"import failed: {exc}"}
        await self.jobs.mutate(
            job_id, lambda r: r.model_copy(update={**update, "completion_time": utc_now()})
        )

    async def get_batch_import_jobs(self, request: GetBatchImportJobs) -> Output:
        jobs = [j.value for j in await self.jobs.list() if request.job_id in (None, j.value.job_id)]
        chosen, token = page(
            jobs, lambda j: j.job_id, request.next_token, request.max_results or 50
        )
        return {
            "batchImports": [j.to_afd() for j in chosen],
            **({"nextToken": token} if token else {}),
        }


def read_event_file(path: Path) -> pl.DataFrame:
    """An AFD-format CSV (or Parquet) file, every column as text."""
    if path.suffix == ".parquet":
        return pl.read_parquet(path).with_columns(pl.all().cast(pl.Utf8))
    return pl.read_csv(path, infer_schema=False)


def _write_errors(path: Path, errors: list) -> None:  # type: ignore[type-arg]
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["row", "reason"])
    writer.writerows((e.row, e.reason) for e in errors)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(buffer.getvalue())
