"""Wiring of the tuner service: jobs in KV, tuner operations, trial events, the job clock."""

from __future__ import annotations

import asyncio
import logging

from contracts import subjects, topology
from contracts.tune import (
    JobChart,
    JobRef,
    ListTuningJobs,
    TrialEnded,
    TrialReported,
    TuningJobSpec,
)
from runtime.bus import Bus
from runtime.kv import ResourceStore
from runtime.service import Service
from runtime.settings import SharedSettings
from runtime.tasks import raise_if_cancelled
from runtime.topology import ensure_bucket, ensure_stream
from services.tuner.config import Settings
from services.tuner.domain.jobs import JobRecord
from services.tuner.jobs import Jobs
from services.tuner.simulations import Simulations

log = logging.getLogger("trellis.tuner")


async def build(bus: Bus, settings: Settings, shared: SharedSettings) -> Service:
    service = Service("tuner", bus, settings, shared)
    replicas = shared.stream_replicas
    await ensure_stream(bus.js, topology.TUNE_TRIAL_QUEUE, replicas)
    await ensure_stream(bus.js, topology.TUNE_TRIAL_EVENTS, replicas)
    kv = await ensure_bucket(bus.js, topology.TUNE_JOBS, replicas)
    await ensure_bucket(bus.js, topology.TUNE_WORKERS, replicas)
    store = ResourceStore(kv, JobRecord, "tuning job", prefix="job.")
    simulations = Simulations(
        store,
        service.instance_id,
        max_running=settings.max_simulations,
        save_s=settings.simulation_save_s,
        lease_s=settings.simulation_lease_s,
        max_record_bytes=bus.nc.max_payload,
    )
    jobs = Jobs(bus, store, simulations)

    service.handle(subjects.tune_operation("create_tuning_job"), TuningJobSpec, jobs.create)
    service.handle(subjects.tune_operation("describe_tuning_job"), JobRef, jobs.describe)
    service.handle(subjects.tune_operation("list_tuning_jobs"), ListTuningJobs, jobs.list)
    service.handle(subjects.tune_operation("stop_tuning_job"), JobRef, jobs.stop)
    service.handle(subjects.tune_operation("list_trials"), JobRef, jobs.trials)
    service.handle(subjects.tune_operation("job_chart"), JobChart, jobs.chart)
    # One consumer, one event at a time: a job's reports are applied in the order they came.
    service.consume(topology.TUNE_REPORTS_CONSUMER, TrialReported, jobs.on_trial_event)
    service.consume(topology.TUNE_ENDS_CONSUMER, TrialEnded, jobs.on_trial_event)

    async def clock() -> None:
        try:
            while True:
                await jobs.tick()
                raise_if_cancelled()
                await asyncio.sleep(settings.tick_s)
        finally:
            # Simulations stop with the service; a replica (or this one restarted) takes them on.
            await simulations.close()

    service.background(clock)
    return service
