"""Tuner messages: tuning job specs and operations, trials queued to worker pools, their reports."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, ClassVar, Literal

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


class StopSpec(_Strict):
    max_wallclock_time: float | None = Field(default=None, gt=0)
    max_num_trials_started: int | None = Field(default=None, ge=1)
    max_num_trials_completed: int | None = Field(default=None, ge=1)
    max_cost: float | None = Field(default=None, gt=0)
    # Stop once the first metric reaches this value (at or below for min, at or above for max).
    metric_threshold: float | None = None


# The most trials one simulated job may start (its record must fit in one KV value as well).
SIMULATOR_MAX_TRIALS = 10_000


class WorkersBackend(_Strict):
    """Trials are processes of `entry_point` on the workers of a pool (the default)."""

    type: Literal["workers"] = "workers"


class SimulatorBackend(_Strict):
    """Trials are evaluations of a built-in benchmark in simulated time, inside the tuner."""

    type: Literal["simulator"]
    benchmark: str = Field(
        min_length=1,
        max_length=64,
        description="a benchmark of the tuner's catalog (an unknown name is refused, listing them)",
    )
    time_scale: float = Field(
        default=1.0,
        gt=0,
        le=10_000,
        description="multiplies the benchmark's simulated training times (2: hardware half as fast)",
    )
    max_trials: int = Field(
        default=1_000,
        ge=1,
        le=SIMULATOR_MAX_TRIALS,
        description="the most trials the simulation starts, whatever the stop criteria",
    )
    cost_per_hour: float = Field(
        default=0.0, ge=0, description="what a simulated worker costs per simulated hour"
    )


Backend = Annotated[WorkersBackend | SimulatorBackend, Field(discriminator="type")]
# Fields about trial processes on workers, refused for a simulator job; pool, on_worker_loss
# and max_attempts keep their defaults' meaning for worker jobs and are ignored by simulations.
_WORKER_ONLY = ("entry_point", "pool_param", "trial_timeout_s")


class TuningJobSpec(Message):
    """`POST /v1/tuning-jobs`: what to run, over which space, scheduled how, stopped when."""

    message_type: ClassVar[str] = "tune.v1.create_tuning_job"
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=JOB_NAME)
    backend: Backend = Field(
        default_factory=WorkersBackend,
        description="workers (processes of entry_point on a pool) or simulator (a benchmark)",
    )
    entry_point: str | None = Field(
        default=None,
        min_length=1,
        max_length=1024,
        description="a script the workers can read (worker jobs only, and required there)",
    )
    config_space: dict[str, Any] = Field(
        default_factory=dict,
        max_length=200,
        description="required for worker jobs; a simulator job defaults to its benchmark's",
    )
    metrics: list[MetricSpec] = Field(
        default_factory=list,
        max_length=4,
        description="required for worker jobs; a simulator job defaults to its benchmark's",
    )
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

    @model_validator(mode="after")
    def _backend_needs(self) -> TuningJobSpec:
        if isinstance(self.backend, SimulatorBackend):
            given = [name for name in _WORKER_ONLY if getattr(self, name) is not None]
            if given:
                raise ValueError(
                    f"{', '.join(given)} cannot be given for a simulator job: its trials are"
                    " evaluations of the benchmark in the tuner, not processes on workers"
                )
            return self  # the tuner fills the rest in from the benchmark
        missing = [
            name
            for name, value in (
                ("entry_point", self.entry_point),
                ("config_space", self.config_space),
                ("metrics", self.metrics),
            )
            if not value
        ]
        if missing:
            raise ValueError(f"a job on workers needs {', '.join(missing)}")
        s = self.scheduler
        if s.type in ("asha", "hyperband", "moasha") and s.max_resource is None:
            raise ValueError(f"scheduler {s.type!r} needs max_resource")
        return self


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
