"""Batch predictions: a detector version over a file of events, scores and outcomes to a CSV."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import polars as pl

from contracts.envelope import utc_now
from contracts.fraud import CreateBatchPredictionJob, GetBatchImportJobs
from runtime.errors import ValidationFailed
from runtime.kv import ResourceStore
from runtime.paging import page
from services.fraud.batch_imports import read_event_file
from services.fraud.detectors import Detectors, typed_value
from services.fraud.domain.imports import read_events
from services.fraud.domain.resources import BatchPredictionRecord
from services.fraud.domain.rules import model_score_variable
from services.fraud.operations import Output

log = logging.getLogger("trellis.fraud.predictions")


class BatchPredictions:
    def __init__(self, detectors: Detectors, jobs: ResourceStore[BatchPredictionRecord]) -> None:
        self.detectors = detectors
        self.ops = detectors.ops
        self.jobs = jobs
        self._tasks: set[asyncio.Task[None]] = set()

    async def create_batch_prediction_job(self, request: CreateBatchPredictionJob) -> Output:
        detector = await self.detectors.detector(request.detector_name)
        if detector.event_type_name != request.event_type_name:
            raise ValidationFailed(
                f"detector {detector.detector_id!r} takes {detector.event_type_name!r} events"
            )
        version = await self.detectors.version_for_prediction(
            detector.detector_id, request.detector_version
        )
        self.ops.check_location(request.input_path)
        output = self.ops.output_dir(request.output_path)
        record = BatchPredictionRecord(
            job_id=request.job_id,
            status="IN_PROGRESS",
            input_path=request.input_path,
            output_path=request.output_path,
            event_type_name=detector.event_type_name,
            detector_name=detector.detector_id,
            detector_version=version.version,
            iam_role_arn=request.iam_role_arn,
            arn=self.ops.arn("batch-prediction", request.job_id),
            start_time=utc_now(),
        )
        await self.jobs.create(request.job_id, record)
        task = asyncio.create_task(self._run(record, output))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return {}

    async def _run(self, record: BatchPredictionRecord, output: Path) -> None:
        try:
            version = (
                await self.ops.stores.detector_versions.get(
                    f"{record.detector_name}.{record.detector_version}"
                )
            ).value
            event_type = await self.ops.event_type(record.event_type_name)
            variables = {
                n: (await self.ops.stores.variables.get(n)).value
                for n in event_type.event_variables
            }
            frame = await asyncio.to_thread(
                read_event_file, await self.ops.readable_path(record.input_path)
            )
            rows = await asyncio.to_thread(
                read_events,
                frame,
                variables={n: v.data_type for n, v in variables.items()},
                labels=event_type.labels,
                entity_types=event_type.entity_types,
            )
            if rows.errors:
                raise ValidationFailed(
                    f"{len(rows.errors)} rows are invalid; first: row {rows.errors[0].row}: "
                    f"{rows.errors[0].reason}"
                )
            events = pl.DataFrame(rows.events)
            for name in variables:
                if name not in events.columns:
                    events = events.with_columns(pl.lit(None, dtype=pl.Utf8).alias(name))
            scores = {
                model_score_variable(m["modelId"]): await self.detectors.scorer.score_frame(
                    m["modelId"], m["modelVersionNumber"], events
                )
                for m in version.model_versions
            }
            lists = await self.ops.list_elements()
            outcomes, rules = [], []
            for i, row in enumerate(events.iter_rows(named=True)):
                typed: dict[str, object] = {
                    n: typed_value(row[n] if row[n] is not None else v.default_value, v.data_type)
                    for n, v in variables.items()
                }
                typed.update({name: values[i] for name, values in scores.items()})
                matched = await self.detectors.matched_rules(version, typed, lists)
                rules.append("|".join(m["ruleId"] for m in matched))
                outcomes.append("|".join(o for m in matched for o in m["outcomes"]))
            result = events.select(
                "EVENT_ID", "EVENT_TIMESTAMP", "ENTITY_TYPE", "ENTITY_ID"
            ).with_columns(
                *(pl.Series(name, values) for name, values in scores.items()),
                pl.Series("OUTCOMES", outcomes),
                pl.Series("RULES", rules),
            )
            await asyncio.to_thread(result.write_csv, output / f"{record.job_id}-predictions.csv")
            update = {
                "status": "COMPLETE",
                "processed_records_count": events.height,
                "total_records_count": rows.total,
            }
        except (ValueError, pl.exceptions.PolarsError) as exc:
            update = {"status": "FAILED", "failure_reason": str(exc)}
        except Exception as exc:
            log.exception("batch prediction %s failed", record.job_id)
            update = {"status": "FAILED", "failure_reason": f"prediction failed: {exc}"}
        await self.jobs.mutate(
            record.job_id, lambda r: r.model_copy(update={**update, "completion_time": utc_now()})
        )

    async def get_batch_prediction_jobs(self, request: GetBatchImportJobs) -> Output:
        jobs = [j.value for j in await self.jobs.list() if request.job_id in (None, j.value.job_id)]
        chosen, token = page(
            jobs, lambda j: j.job_id, request.next_token, request.max_results or 50
        )
        return {
            "batchPredictions": [j.to_afd() for j in chosen],
            **({"nextToken": token} if token else {}),
        }
