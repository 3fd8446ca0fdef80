"""A tuning job as a pure state machine: trials to launch, reports to decide on, when to stop."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, Field

from contracts.tune import (
    JobStatus,
    SimulatorBackend,
    TrialEnded,
    TrialReported,
    TrialStatus,
    TuningJobSpec,
)
from services.tuner.domain.pareto import hypervolume, pareto_front
from services.tuner.domain.schedulers import (
    ASHA,
    MOASHA,
    BayesianSearch,
    Decision,
    GridSearch,
    Hyperband,
    MORandomSearch,
    RandomSearch,
    Scheduler,
    SchedulerError,
    restore_scheduler,
)
from services.tuner.domain.space import SearchSpace, SpaceError

ACTIVE: frozenset[str] = frozenset({"queued", "running"})
SIMULATOR_POOL = "simulator"  # the pool simulated trials show


class JobSpecError(ValueError):
    """A job spec that cannot run: the message names the part."""


class TrialRecord(BaseModel):
    trial_id: int
    config: dict[str, Any]
    status: TrialStatus = "queued"
    pool: str
    attempt: int = 1
    last_seq: int = -1  # the last report applied, within `attempt`
    resource: float | None = None  # the highest resource level reported
    reports: list[dict[str, Any]] = Field(default_factory=list)
    worker: str | None = None
    queued_at: datetime
    started_at: datetime | None = None
    ended_at: datetime | None = None
    elapsed_s: float = 0.0
    cost: float = 0.0
    error: str | None = None
    resume: bool = False
    pending_action: Literal["stop", "pause"] | None = None
    pending_end: TrialEnded | None = None  # an end that arrived before the reports it follows


class SimulationState(BaseModel):
    """A simulator job's run: which tuner replica holds it, and how far the saved record got."""

    runner: str | None = None  # the replica running it; another may take over once it is silent
    heartbeat_at: datetime | None = None  # wall clock of the runner's last save
    simulated_time: float = 0.0  # simulated seconds since created_at the saved trials reach
    starts: int = 0  # runs begun: 1, plus one per takeover after a tuner stopped or died
    events: int = 0  # reports simulated so far


class JobRecord(BaseModel):
    spec: TuningJobSpec
    status: JobStatus = "InProgress"
    stop_reason: str | None = None
    failure_reason: str | None = None
    created_at: datetime
    ended_at: datetime | None = None
    scheduler_state: dict[str, Any] | None = None
    trials: dict[str, TrialRecord] = Field(default_factory=dict)
    total_cost: float = 0.0
    simulation: SimulationState | None = None  # simulator jobs only


def simulator_of(spec: TuningJobSpec) -> SimulatorBackend | None:
    """The simulator backend of a spec, None for a job on workers."""
    return spec.backend if isinstance(spec.backend, SimulatorBackend) else None


@dataclass(frozen=True)
class Launch:
    trial: TrialRecord


@dataclass(frozen=True)
class Control:
    trial_id: int
    action: Literal["stop", "pause"]


def build_scheduler(spec: TuningJobSpec) -> Scheduler:
    """The scheduler a spec names, over its search space; bad settings raise JobSpecError."""
    try:
        space = SearchSpace.from_json(spec.config_space)
    except SpaceError as exc:
        raise JobSpecError(f"config_space: {exc}") from None
    if spec.pool_param is not None and spec.pool_param not in spec.config_space:
        raise JobSpecError(f"pool_param {spec.pool_param!r} is not a parameter of config_space")
    s = spec.scheduler
    names = [m.name for m in spec.metrics]
    modes = [m.mode for m in spec.metrics]
    multi = s.type in ("moasha", "mo_random")
    if multi and len(names) < 2:
        raise JobSpecError(f"scheduler {s.type!r} needs at least two metrics")
    if not multi and len(names) > 1:
        raise JobSpecError(f"scheduler {s.type!r} optimises one metric; use moasha or mo_random")
    common: dict[str, Any] = {"resource_attr": s.resource_attr, "seed": s.seed}
    try:
        if s.type == "random":
            return RandomSearch(
                space, metric=names[0], mode=modes[0], max_resource=s.max_resource, **common
            )
        if s.type == "grid":
            return GridSearch(
                space,
                metric=names[0],
                mode=modes[0],
                max_resource=s.max_resource,
                points_per_dimension=s.points_per_dimension,
                **common,
            )
        if s.type == "bo":
            return BayesianSearch(
                space,
                metric=names[0],
                mode=modes[0],
                max_resource=s.max_resource,
                searcher="gp" if s.searcher == "gp" else "tpe",
                **common,
            )
        if s.type == "mo_random":
            return MORandomSearch(
                space, metrics=names, modes=modes, max_resource=s.max_resource, **common
            )
        assert s.max_resource is not None  # the spec's validator requires it
        fidelity: dict[str, Any] = {
            "max_resource": s.max_resource,
            "grace_period": s.grace_period,
            "reduction_factor": s.reduction_factor,
            **common,
        }
        if s.type == "moasha":
            return MOASHA(space, metrics=names, modes=modes, brackets=s.brackets or 1, **fidelity)
        if s.type == "hyperband":
            return Hyperband(
                space,
                metric=names[0],
                mode=modes[0],
                type=s.variant,
                brackets=s.brackets,
                searcher=s.searcher,
                **fidelity,
            )
        return ASHA(
            space,
            metric=names[0],
            mode=modes[0],
            type=s.variant,
            brackets=s.brackets or 1,
            searcher=s.searcher,
            **fidelity,
        )
    except (SchedulerError, ValueError) as exc:
        raise JobSpecError(f"scheduler: {exc}") from None


def finals_of(record: JobRecord) -> list[tuple[TrialRecord, dict[str, float]]]:
    """Each trial's best report on the job's metrics (the first metric decides)."""
    metric = record.spec.metrics[0]
    sign = 1.0 if metric.mode == "min" else -1.0
    out = []
    for trial in record.trials.values():
        good = [
            _numeric(r)
            for r in trial.reports
            if "ignored" not in r and all(m.name in r for m in record.spec.metrics)
        ]
        if good:
            out.append((trial, min(good, key=lambda r: sign * r[metric.name])))
    return out


def best_of(record: JobRecord) -> dict[str, Any] | None:
    """The best trial so far: no scheduler needed (a job listing reads it for every job)."""
    metric = record.spec.metrics[0]
    sign = 1.0 if metric.mode == "min" else -1.0
    finals = finals_of(record)
    if not finals:
        return None
    trial, metrics = min(finals, key=lambda tm: sign * tm[1][metric.name])
    return {"trial_id": trial.trial_id, "config": trial.config, "metrics": metrics}


class JobEngine:
    """One job's decisions. The caller persists `record` (with the scheduler's state) after each
    step and then carries out the launches and controls it returned."""

    def __init__(self, record: JobRecord, scheduler: Scheduler | None = None) -> None:
        self.record = record
        if scheduler is not None:
            self.scheduler = scheduler
        elif record.scheduler_state is not None:
            self.scheduler = restore_scheduler(record.scheduler_state)
        else:
            self.scheduler = build_scheduler(record.spec)
        self.decided: list[Control] = []  # stops and pauses decided on reports, for advance()
        self.requeued: list[Launch] = []  # trials lost with their worker, to queue again

    @property
    def spec(self) -> TuningJobSpec:
        return self.record.spec

    def save(self) -> JobRecord:
        self.record.scheduler_state = self.scheduler.state()
        return self.record

    def _trials(self, *statuses: str) -> list[TrialRecord]:
        return [t for t in self.record.trials.values() if t.status in statuses]

    def _pool_of(self, config: dict[str, Any]) -> str:
        if simulator_of(self.spec) is not None:
            return SIMULATOR_POOL
        if self.spec.pool_param is None:
            return self.spec.pool
        return str(config.get(self.spec.pool_param, self.spec.pool))

    # -- launching ---------------------------------------------------------------------------

    def fill(self, now: datetime) -> list[Launch]:
        """New or resumed trials for every free worker slot, unless the job is stopping."""
        launches: list[Launch] = []
        if self.record.status != "InProgress":
            return launches
        while len(self._trials(*ACTIVE)) < self.spec.n_workers:
            if self.stop_reason(now, starting=True) is not None:
                break
            suggestion = self.scheduler.suggest()
            if suggestion is None:
                break
            key = str(suggestion.trial_id)
            existing = self.record.trials.get(key)
            if existing is not None and suggestion.resume:
                existing.status = "queued"
                existing.resume = True
                existing.attempt += 1
                existing.last_seq = -1
                existing.queued_at = now
                existing.pending_action = None
                trial = existing
            else:
                trial = TrialRecord(
                    trial_id=suggestion.trial_id,
                    config=suggestion.config,
                    pool=self._pool_of(suggestion.config),
                    queued_at=now,
                )
                self.record.trials[key] = trial
            launches.append(Launch(trial))
        return launches

    # -- reports and ends --------------------------------------------------------------------

    def on_report(self, event: TrialReported) -> list[Control]:
        controls = self._on_report(event)
        self.decided.extend(controls)
        trial = self.record.trials.get(str(event.trial_id))
        if trial is not None and trial.pending_end is not None:
            if trial.last_seq >= trial.pending_end.reports - 1:
                ended, trial.pending_end = trial.pending_end, None
                self.on_end(ended)
        return controls

    def _on_report(self, event: TrialReported) -> list[Control]:
        trial = self.record.trials.get(str(event.trial_id))
        if trial is None or event.attempt != trial.attempt or event.seq <= trial.last_seq:
            return []  # unknown, an old attempt, or a redelivered report already applied
        trial.last_seq = event.seq
        if trial.status == "queued":
            trial.status = "running"
            trial.started_at = event.reported_at
            trial.worker = event.worker
        if trial.status != "running":
            return []
        metrics = {k: v for k, v in event.metrics.items() if isinstance(v, int | float)}
        attr = self.spec.scheduler.resource_attr
        resource = metrics.get(attr)
        if resource is not None and trial.resource is not None and resource <= trial.resource:
            return []  # a resumed or restarted trial repeating a level it already reported
        wanted = [m.name for m in self.spec.metrics]
        missing = [name for name in wanted if name not in metrics]
        if missing:
            trial.reports.append({**event.metrics, "ignored": f"missing {missing}"})
            return []
        if trial.pending_action == "stop":
            return []  # overtook the stop: the trial ends where the scheduler stopped it
        since_start = (event.reported_at - self.record.created_at).total_seconds()
        trial.reports.append({**event.metrics, "st_tuner_time": round(since_start, 3)})
        if resource is not None:
            trial.resource = float(resource)
        if trial.pending_action == "pause":
            # Overtook the pause: kept, since the trial resumes from its checkpoint past it,
            # but the scheduler already decided on this rung.
            return []
        try:
            decision = self.scheduler.on_result(event.trial_id, metrics)
        except SchedulerError as exc:
            trial.error = str(exc)
            trial.pending_action = "stop"
            return [Control(event.trial_id, "stop")]
        top = self.spec.scheduler.max_resource
        if (
            decision is Decision.STOP
            and top is not None
            and resource is not None
            and resource >= top
        ):
            return []  # finished its budget: the script ends by itself and the trial completes
        if decision is Decision.STOP:
            trial.pending_action = "stop"
            return [Control(event.trial_id, "stop")]
        if decision is Decision.PAUSE:
            trial.pending_action = "pause"
            return [Control(event.trial_id, "pause")]
        return []

    def on_end(self, event: TrialEnded) -> None:
        trial = self.record.trials.get(str(event.trial_id))
        if trial is None or event.attempt != trial.attempt or trial.status not in ACTIVE:
            return  # an old attempt or a repeated end
        if event.reports - 1 > trial.last_seq:
            trial.pending_end = event  # its last reports are still on their way
            return
        trial.ended_at = event.ended_at
        trial.elapsed_s += event.elapsed_s
        cost = event.elapsed_s / 3600 * event.cost_per_hour
        trial.cost += cost
        self.record.total_cost += cost
        trial.worker = event.worker
        if event.reason == "lost":
            if self.spec.on_worker_loss == "requeue" and trial.attempt < self.spec.max_attempts:
                trial.attempt += 1
                trial.last_seq = -1
                trial.status = "queued"
                trial.resume = True  # from its checkpoint, if the script keeps one
                self.requeued.append(Launch(trial))
                return
            trial.status = "failed"
            trial.error = event.error or "its worker was lost"
            self.scheduler.on_error(event.trial_id)
            return
        if event.reason == "paused":
            trial.status = "paused"
            trial.pending_action = None
            return
        if trial.pending_action == "stop" or event.reason == "stopped":
            trial.status = "stopped"
            trial.pending_action = None
            self._complete(trial)
            return
        # A resumed trial whose checkpoint was already at its end has nothing left to report.
        finished_before = event.reason == "no_report" and trial.resume and trial.reports
        if event.reason == "completed" or finished_before:
            trial.status = "completed"
            self._complete(trial)
            return
        trial.status = "failed"
        trial.error = event.error or event.reason
        self.scheduler.on_error(event.trial_id)

    def _complete(self, trial: TrialRecord) -> None:
        last = next(
            (r for r in reversed(trial.reports) if "ignored" not in r),
            None,
        )
        try:
            self.scheduler.on_complete(trial.trial_id, _numeric(last) if last else None)
        except SchedulerError:
            pass  # the scheduler already ended it (a STOP it decided)

    # -- stopping ----------------------------------------------------------------------------

    def stop_reason(self, now: datetime, *, starting: bool = False) -> str | None:
        stop = self.spec.stop
        trials = list(self.record.trials.values())
        if stop.max_wallclock_time is not None:
            if (now - self.record.created_at).total_seconds() >= stop.max_wallclock_time:
                return f"max_wallclock_time {stop.max_wallclock_time:g}s reached"
        if stop.max_num_trials_started is not None and starting:
            if len(trials) >= stop.max_num_trials_started:
                return f"max_num_trials_started {stop.max_num_trials_started} reached"
        simulator = simulator_of(self.spec)
        if simulator is not None and starting and len(trials) >= simulator.max_trials:
            return f"the simulator's max_trials {simulator.max_trials} reached"
        if stop.max_num_trials_completed is not None:
            done = sum(1 for t in trials if t.status in ("completed", "stopped"))
            if done >= stop.max_num_trials_completed:
                return f"max_num_trials_completed {stop.max_num_trials_completed} reached"
        if stop.max_cost is not None and self.record.total_cost >= stop.max_cost:
            return f"max_cost {stop.max_cost:g} reached"
        if stop.metric_threshold is not None:
            best = self.best()
            metric = self.spec.metrics[0]
            if best is not None:
                value = best["metrics"][metric.name]
                reached = (
                    value <= stop.metric_threshold
                    if metric.mode == "min"
                    else value >= stop.metric_threshold
                )
                if reached:
                    return f"{metric.name} reached {stop.metric_threshold:g}"
        return None

    def advance(self, now: datetime) -> tuple[list[Launch], list[Control]]:
        """Stop when a criterion is met (stopping what runs), finish when nothing is left; the
        controls include those decided on reports since the last call."""
        controls, self.decided = self.decided, []
        failed = self._trials("failed")
        reported = any(t.reports for t in self.record.trials.values())
        if (
            self.record.status == "InProgress"
            and not reported
            and len(failed) >= max(3, self.spec.n_workers)
        ):
            # Nothing ever reported and every trial failed: the script is broken, not the configs.
            self.record.status = "Stopping"
            self.record.failure_reason = (
                f"the first {len(failed)} trials failed and none reported: {failed[-1].error}"
            )
            self.record.stop_reason = "every trial failed"
        if self.record.status == "InProgress":
            reason = self.stop_reason(now)
            if reason is not None:
                self.record.stop_reason = reason
                self.record.status = "Stopping"
        if self.record.status == "Stopping":
            for trial in self._trials("running"):
                if trial.pending_action != "stop":
                    trial.pending_action = "stop"
                    controls.append(Control(trial.trial_id, "stop"))
            for trial in self._trials("queued"):
                trial.status = "stopped"  # never started: the worker will skip it
        launches, self.requeued = self.requeued, []
        if self.record.status == "Stopping":
            launches = []  # marked stopped above: a worker skips them
        launches += self.fill(now)
        if (
            not self._trials(*ACTIVE)
            and not launches
            and self.record.status in ("InProgress", "Stopping")
        ):
            user_stopped = self.record.stop_reason == "stopped by request"
            if self.record.failure_reason:
                self.record.status = "Failed"
            else:
                self.record.status = "Stopped" if user_stopped else "Completed"
            self.record.stop_reason = (
                self.record.stop_reason
                or self.stop_reason(now, starting=True)
                or "search space exhausted"
            )
            self.record.ended_at = now
        return launches, controls

    def request_stop(self) -> None:
        if self.record.status == "InProgress":
            self.record.status = "Stopping"
            self.record.stop_reason = "stopped by request"

    # -- results -----------------------------------------------------------------------------

    def finals(self) -> list[tuple[TrialRecord, dict[str, float]]]:
        return finals_of(self.record)

    def best(self) -> dict[str, Any] | None:
        return best_of(self.record)

    def pareto(self) -> dict[str, Any]:
        """The non-dominated trials over the job's metrics, and their hypervolume."""
        finals = self.finals()
        if len(self.spec.metrics) < 2 or not finals:
            return {"trials": [], "hypervolume": None}
        signs = np.array([1.0 if m.mode == "min" else -1.0 for m in self.spec.metrics])
        points = (
            np.array(
                [[metrics[m.name] for m in self.spec.metrics] for _, metrics in finals], dtype=float
            )
            * signs
        )
        front = [int(i) for i in pareto_front(points)]
        reference = points.max(axis=0) + np.abs(points.max(axis=0)) * 0.1 + 1e-9
        volume = float(hypervolume(points[front], reference))
        return {
            "trials": [
                {
                    "trial_id": finals[i][0].trial_id,
                    "pool": finals[i][0].pool,
                    "metrics": finals[i][1],
                }
                for i in front
            ],
            "hypervolume": volume if math.isfinite(volume) else None,
            "reference_point": (reference * signs).tolist(),
        }


def _numeric(report: dict[str, Any]) -> dict[str, float]:
    return {
        k: float(v)
        for k, v in report.items()
        if isinstance(v, int | float) and not isinstance(v, bool)
    }
