"""Tuner messages: tuning job specs and operations, trials queued to worker pools, their reports."""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from contracts.envelope import Message

JOB_NAME = r"^[a-zA-Z0-9][a-zA-Z0-9-]{0,62}$"
POOL_NAME = r"^[a-z][a-z0-9_]{0,31}$"  # a subject token: each pool has its own queue subject
JobStatus = Literal["InProgress", "Stopping", "Completed", "Stopped", "Failed"]
TrialStatus = Literal["queued", "running", "paused", "completed", "stopped", "failed"]
TrialEndReason = Literal["completed", "failed", "stopped", "paused", "timeout", "no_report", "lost"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MetricSpec(_Strict):
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z_][A-Za-z0-9_.-]*$")
    mode: Literal["min", "max"] = "min"


class SchedulerSpec(_Strict):
    type: Literal["random", "grid", "asha", "hyperband", "moasha", "bo", "mo_random"] = "random"
    resource_attr: str = Field(default="epoch", min_length=1, max_length=64)
    max_resource: int | None = Field(default=None, ge=1, le=100_000)
    grace_period: int = Field(default=1, ge=1)
    reduction_factor: float = Field(default=3.0, gt=1.0, le=100.0)
    variant: Literal["stopping", "promotion"] = "stopping"
    brackets: int | None = Field(default=None, ge=1, le=20)
    searcher: Literal["random", "bayesian", "tpe", "gp"] = Field(
        default="random",
        description=(
            "where asha and hyperband get new configs: random, TPE ('bayesian' or 'tpe') or"
            " Gaussian-process BO ('gp'); bo uses GP for 'gp' and TPE otherwise"
        ),
    )
    points_per_dimension: int = Field(default=5, ge=1, le=100)
    seed: int = 0

    @model_validator(mode="after")
    def _fidelity(self) -> SchedulerSpec:
        if self.type in ("asha", "hyperband", "moasha") and self.max_resource is None:
            raise ValueError(f"scheduler {self.type!r} needs max_resource")
        return self


class StopSpec(_Strict):
    max_wallclock_time: float | None = Field(default=None, gt=0)
    max_num_trials_started: int | None = Field(default=None, ge=1)
    max_num_trials_completed: int | None = Field(default=None, ge=1)
    max_cost: float | None = Field(default=None, gt=0)
    # Stop once the first metric reaches this value (at or below for min, at or above for max).
    metric_threshold: float | None = None


class TuningJobSpec(Message):
    """`POST /v1/tuning-jobs`: what to run, over which space, scheduled how, stopped when."""

    message_type: ClassVar[str] = "tune.v1.create_tuning_job"
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=JOB_NAME)
    entry_point: str = Field(
        min_length=1, max_length=1024, description="a script the workers can read"
    )
    config_space: dict[str, Any] = Field(min_length=1, max_length=200)
    metrics: list[MetricSpec] = Field(min_length=1, max_length=4)
    scheduler: SchedulerSpec = Field(default_factory=SchedulerSpec)
    stop: StopSpec = Field(default_factory=StopSpec)
    n_workers: int = Field(default=4, ge=1, le=1024)
    pool: str = Field(default="local", pattern=POOL_NAME)
    # A categorical hyperparameter whose value names the pool each trial runs on.
    pool_param: str | None = Field(default=None, max_length=64)
    trial_timeout_s: float | None = Field(default=None, gt=0)
    on_worker_loss: Literal["requeue", "fail"] = "requeue"
    max_attempts: int = Field(default=3, ge=1, le=20)
    client_token: str | None = Field(default=None, min_length=1, max_length=64)


class JobRef(Message):
    message_type: ClassVar[str] = "tune.v1.job_ref"
    name: str = Field(pattern=JOB_NAME)


class JobChart(Message):
    message_type: ClassVar[str] = "tune.v1.job_chart"
    name: str = Field(pattern=JOB_NAME)
    kind: Literal["best", "pareto"]
    format: Literal["svg", "png"] = "svg"


class ListTuningJobs(Message):
    message_type: ClassVar[str] = "tune.v1.list_tuning_jobs"
    status: JobStatus | None = None


class TuneResult(Message):
    """The reply of every tuner operation: JSON shaped for the REST API."""

    message_type: ClassVar[str] = "tune.v1.result"
    output: dict[str, Any] = Field(default_factory=dict)


# -- trials on worker pools ---------------------------------------------------------------------


class TrialQueued(Message):
    """A trial (or its resumption) waiting for a worker of its pool (the TUNE_TRIAL_QUEUE)."""

    message_type: ClassVar[str] = "tune.v1.trial.queued"
    job: str = Field(pattern=JOB_NAME)
    trial_id: int = Field(ge=0)
    attempt: int = Field(ge=1)
    pool: str = Field(pattern=POOL_NAME)
    entry_point: str
    config: dict[str, Any]
    resume: bool = False
    checkpoint_dir: str
    timeout_s: float | None = None
    on_worker_loss: Literal["requeue", "fail"] = "requeue"


class TrialReported(Message):
    """One `[tune-metric]` report of a running trial."""

    message_type: ClassVar[str] = "tune.v1.trial.reported"
    job: str = Field(pattern=JOB_NAME)
    trial_id: int = Field(ge=0)
    attempt: int = Field(ge=1)
    seq: int = Field(ge=0, description="report number within this attempt")
    metrics: dict[str, float | int | str | bool]
    worker: str
    reported_at: datetime


class TrialEnded(Message):
    """A trial's process ended: completed, failed, stopped or paused on request, or lost."""

    message_type: ClassVar[str] = "tune.v1.trial.ended"
    job: str = Field(pattern=JOB_NAME)
    trial_id: int = Field(ge=0)
    attempt: int = Field(ge=1)
    reason: TrialEndReason
    error: str | None = Field(default=None, max_length=8192)
    worker: str
    pool: str = Field(pattern=POOL_NAME)
    elapsed_s: float = Field(ge=0)
    cost_per_hour: float = Field(default=0.0, ge=0)
    ended_at: datetime
    # Reports this attempt sent before it ended: an end read before its last report waits for it.
    reports: int = Field(default=0, ge=0)


class TrialControl(Message):
    """Broadcast to every worker: the one running this trial stops or pauses it."""

    message_type: ClassVar[str] = "tune.v1.trial.control_requested"
    job: str = Field(pattern=JOB_NAME)
    trial_id: int = Field(ge=0)
    action: Literal["stop", "pause"]


class WorkerInfo(BaseModel):
    """A worker of a pool, as it announces itself (KV, refreshed by its heartbeat)."""

    worker: str
    pool: str
    slots: int
    busy: int
    cpus: int
    gpus_per_trial: int
    cost_per_hour: float
    host: str
    started_at: datetime
