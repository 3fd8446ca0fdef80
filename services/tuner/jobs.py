"""Tuning jobs on the bus: each step loads the job from KV, decides, saves, then queues and controls."""

from __future__ import annotations

import asyncio
import base64
import csv
import io
import logging
from collections import Counter, defaultdict
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from contracts import subjects
from contracts.envelope import EnvelopeMeta
from contracts.tune import (
    JobChart,
    JobRef,
    ListTuningJobs,
    TrialControl,
    TrialEnded,
    TrialQueued,
    TrialReported,
    TuneResult,
    TuningJobSpec,
)
from runtime.bus import Bus
from runtime.errors import Conflict, NotFound, ValidationFailed
from runtime.kv import ResourceStore
from services.tuner.adapters import charts
from services.tuner.adapters.checkpoints import delete_job_checkpoints
from services.tuner.domain.jobs import (
    ACTIVE,
    Control,
    JobEngine,
    JobRecord,
    JobSpecError,
    Launch,
    TrialRecord,
    best_of,
    build_scheduler,
    simulator_of,
)
from services.tuner.domain.simulated import STOPPED_BY_REQUEST, resolve_spec
from services.tuner.simulations import Simulations

log = logging.getLogger("trellis.tuner")
T = TypeVar("T")
_OVER = frozenset({"Completed", "Stopped", "Failed"})


def _now() -> datetime:
    return datetime.now(UTC)


class Jobs:
    def __init__(
        self,
        bus: Bus,
        store: ResourceStore[JobRecord],
        simulations: Simulations | None = None,
    ) -> None:
        self.bus = bus
        self.store = store
        # Simulator jobs run here, in threads, rather than on workers.
        self.simulations = simulations or Simulations(
            store, f"tuner-{id(self):x}", max_record_bytes=bus.nc.max_payload
        )
        self._locks: dict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._resumed = False

    async def _step(self, name: str, step: Callable[[JobEngine], T]) -> T:
        """Load, change, save at the read revision (retry if another replica wrote), then act."""
        for attempt in range(10):
            async with self._locks[name]:
                current = await self.store.get(name)
                if simulator_of(current.value.spec) is not None:
                    # Its trials are simulated by the replica that runs it, never stepped here.
                    raise ValidationFailed(f"tuning job {name!r} runs on the simulator")
                was_over = current.value.status in _OVER
                engine = JobEngine(current.value)
                result = step(engine)
                launches, controls = engine.advance(_now())
                try:
                    await self.store.update(name, engine.save(), expected_revision=current.revision)
                except Conflict:
                    if attempt == 9:
                        raise
                    continue
            await self._act(engine.record, launches, controls)
            if not was_over and engine.record.status in _OVER:
                await self._forget_checkpoints(name)
            return result
        raise AssertionError("unreachable")

    async def _act(self, job: JobRecord, launches: list[Launch], controls: list[Control]) -> None:
        for launch in launches:
            await self.queue(job, launch.trial)
        for control in controls:
            await self.bus.publish(
                subjects.TUNE_TRIAL_CONTROL_REQUESTED,
                TrialControl(job=job.spec.name, trial_id=control.trial_id, action=control.action),
            )

    async def _forget_checkpoints(self, name: str) -> None:
        """Nothing resumes once a job is over: its trials' stored checkpoints go."""
        try:
            removed = await delete_job_checkpoints(self.bus.js, name)
        except Exception as exc:
            log.warning("checkpoints of tuning job %s not removed: %s", name, type(exc).__name__)
            return
        if removed:
            log.info("removed %d checkpoints of tuning job %s", removed, name)

    async def queue(self, job: JobRecord, trial: TrialRecord) -> None:
        spec = job.spec
        assert spec.entry_point is not None  # required of every job on workers
        await self.bus.emit(
            subjects.tune_trial_queued(trial.pool),
            TrialQueued(
                job=spec.name,
                trial_id=trial.trial_id,
                attempt=trial.attempt,
                pool=trial.pool,
                entry_point=spec.entry_point,
                config=trial.config,
                resume=trial.resume,
                checkpoint_dir=f"{spec.name}/{trial.trial_id}",
                timeout_s=spec.trial_timeout_s,
                on_worker_loss=spec.on_worker_loss,
            ),
            # A retried save or a restart re-queues with the same id: the stream drops the copy.
            message_id=f"{spec.name}-{trial.trial_id}-{trial.attempt}",
        )

    # -- operations --------------------------------------------------------------------------

    async def create(self, spec: TuningJobSpec, _: EnvelopeMeta) -> TuneResult:
        simulated = simulator_of(spec) is not None
        try:
            if simulated:
                spec = resolve_spec(spec)
            build_scheduler(spec)
        except JobSpecError as exc:
            raise ValidationFailed(str(exc)) from None
        record = JobRecord(spec=spec, created_at=_now())
        try:
            await self.store.create(spec.name, record, client_token=spec.client_token)
        except Conflict:
            raise Conflict(f"tuning job {spec.name!r} already exists") from None
        if simulated:
            await self.simulations.claim(spec.name)  # or the clock, once a thread is free
        else:
            await self._step(spec.name, lambda engine: None)
        return TuneResult(output=await self._describe(spec.name))

    async def describe(self, ref: JobRef, _: EnvelopeMeta) -> TuneResult:
        return TuneResult(output=await self._describe(ref.name))

    async def _engine(self, name: str) -> JobEngine:
        try:
            return JobEngine((await self.store.get(name)).value)
        except NotFound:
            raise NotFound(f"tuning job {name!r} does not exist") from None

    async def _describe(self, name: str) -> dict[str, Any]:
        engine = await self._engine(name)
        return summary(engine)

    async def list(self, request: ListTuningJobs, _: EnvelopeMeta) -> TuneResult:
        jobs = [v.value for v in await self.store.list()]
        if request.status:
            jobs = [j for j in jobs if j.status == request.status]
        jobs.sort(key=lambda j: j.created_at, reverse=True)
        return TuneResult(
            output={
                "jobs": [
                    {
                        "name": j.spec.name,
                        "status": j.status,
                        "created_at": j.created_at.isoformat(),
                        "trials": len(j.trials),
                        "stop_reason": j.stop_reason,
                        "scheduler": j.spec.scheduler.type,
                        "trial_counts": dict(Counter(t.status for t in j.trials.values())),
                        "best": best_of(j),
                    }
                    for j in jobs
                ]
            }
        )

    async def stop(self, ref: JobRef, _: EnvelopeMeta) -> TuneResult:
        engine = await self._engine(ref.name)
        if simulator_of(engine.spec) is not None:
            await self._stop_simulation(ref.name)
        else:
            await self._step(ref.name, lambda engine: engine.request_stop())
        return TuneResult(output=await self._describe(ref.name))

    async def _stop_simulation(self, name: str) -> None:
        """Marks the stop in KV, where the replica running the simulation reads it."""

        def stopping(job: JobRecord) -> JobRecord:
            if job.status == "InProgress":
                job.status = "Stopping"
                job.stop_reason = STOPPED_BY_REQUEST
            return job

        await self.store.mutate(name, stopping)
        self.simulations.request_stop(name)
        await self.simulations.claim(name)  # nobody runs it: stopped here at once

    async def trials(self, ref: JobRef, _: EnvelopeMeta) -> TuneResult:
        engine = await self._engine(ref.name)
        rows = [
            trial_row(engine, t)
            for t in sorted(engine.record.trials.values(), key=lambda t: t.trial_id)
        ]
        return TuneResult(output={"job": ref.name, "trials": rows, "csv": trials_csv(engine)})

    async def chart(self, request: JobChart, _: EnvelopeMeta) -> TuneResult:
        engine = await self._engine(request.name)
        draw = charts.best_so_far if request.kind == "best" else charts.pareto_front
        try:
            data = await asyncio.to_thread(draw, engine, request.format)
        except ValueError as exc:
            raise ValidationFailed(str(exc)) from None
        media = "image/svg+xml" if request.format == "svg" else "image/png"
        return TuneResult(output={"content_type": media, "data": base64.b64encode(data).decode()})

    # -- trial events --------------------------------------------------------------------------

    async def on_trial_event(self, event: TrialReported | TrialEnded, _: EnvelopeMeta) -> None:
        try:
            if isinstance(event, TrialReported):
                await self._step(event.job, lambda engine: engine.on_report(event))
            else:
                await self._step(event.job, lambda engine: engine.on_end(event))
        except NotFound:
            log.warning("event for unknown tuning job %s dropped", event.job)
        except ValidationFailed as exc:
            log.warning("trial event dropped: %s", exc)

    async def tick(self) -> None:
        """Advance every running job: wall-clock limits, free slots (also after a restart)."""
        resuming = not self._resumed
        self._resumed = True
        for versioned in await self.store.list():
            job = versioned.value
            if job.status in ("InProgress", "Stopping") and simulator_of(job.spec) is not None:
                try:
                    await self.simulations.claim(job.spec.name, job)  # if its runner is gone
                except Exception:
                    log.exception("tuning job %s: its simulation could not start", job.spec.name)
            elif job.status in ("InProgress", "Stopping"):
                try:
                    await self._step(job.spec.name, lambda engine: None)
                    if resuming:
                        # A tuner that died between saving a job and queueing its trials lost
                        # those messages: queue them again (a copy still queued within the
                        # stream's duplicate window is dropped; a worker's claim stops any other).
                        for trial in job.trials.values():
                            if trial.status == "queued":
                                await self.queue(job, trial)
                except Exception:
                    log.exception("tuning job %s could not advance", job.spec.name)


def trial_row(engine: JobEngine, trial: TrialRecord) -> dict[str, Any]:
    reports = [r for r in trial.reports if "ignored" not in r]
    return {
        "trial_id": trial.trial_id,
        "status": trial.status,
        "config": trial.config,
        "pool": trial.pool,
        "attempt": trial.attempt,
        "worker": trial.worker,
        "resource": trial.resource,
        "last": reports[-1] if reports else None,
        "reports": reports,
        "elapsed_s": round(trial.elapsed_s, 3),
        "cost": round(trial.cost, 6),
        "error": trial.error,
    }


def trials_csv(engine: JobEngine) -> str:
    """One row per trial: config, final metrics, status, pool, cost (for spreadsheets)."""
    params = sorted({k for t in engine.record.trials.values() for k in t.config})
    metrics = [m.name for m in engine.spec.metrics]
    attr = engine.spec.scheduler.resource_attr
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(
        ["trial_id", "status", "pool", *params, attr, *metrics, "elapsed_s", "cost", "error"]
    )
    for trial in sorted(engine.record.trials.values(), key=lambda t: t.trial_id):
        reports = [r for r in trial.reports if "ignored" not in r]
        last = reports[-1] if reports else {}
        writer.writerow(
            [
                trial.trial_id,
                trial.status,
                trial.pool,
                *(trial.config.get(p, "") for p in params),
                last.get(attr, ""),
                *(last.get(m, "") for m in metrics),
                round(trial.elapsed_s, 3),
                round(trial.cost, 6),
                trial.error or "",
            ]
        )
    return out.getvalue()


def summary(engine: JobEngine) -> dict[str, Any]:
    record = engine.record
    counts: dict[str, int] = defaultdict(int)
    for trial in record.trials.values():
        counts[trial.status] += 1
    return {
        "name": record.spec.name,
        "status": record.status,
        "stop_reason": record.stop_reason,
        "failure_reason": record.failure_reason,
        "created_at": record.created_at.isoformat(),
        "ended_at": record.ended_at.isoformat() if record.ended_at else None,
        "spec": record.spec.model_dump(mode="json", exclude={"client_token"}),
        "trial_counts": dict(counts),
        "running": sum(counts[s] for s in ACTIVE),
        "total_cost": round(record.total_cost, 6),
        "best": engine.best(),
        "pareto": engine.pareto(),
        "simulation": _simulation(record),
    }


def _simulation(record: JobRecord) -> dict[str, Any] | None:
    """Where a simulator job's run stands: simulated seconds and reports so far, its runner."""
    state = record.simulation
    if simulator_of(record.spec) is None:
        return None
    if state is None:
        return {"simulated_time": 0.0, "reports": 0, "runner": None, "starts": 0}
    return {
        "simulated_time": round(state.simulated_time, 3),
        "reports": state.events,
        "runner": state.runner,
        "starts": state.starts,
    }
