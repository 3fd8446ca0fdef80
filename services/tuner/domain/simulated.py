"""Simulator jobs: a spec resolved against its benchmark, and its run in simulated time.

A `SimulatedRun` drives `simulator.simulate` (the event loop `bench/tune.py` uses) with a
`JobEngine` as its scheduler: every simulated report and end goes through the same engine as a
real trial's, so the job's record (trial table, best, Pareto set, stop criteria) is the one a
job on workers keeps, with times taken from the simulated clock: `reported_at`, `ended_at` and
`elapsed_time` are `created_at` plus simulated seconds, and `max_wallclock_time` is simulated.

A run is deterministic (seeded schedulers, deterministic benchmarks), so a tuner that takes over
an unfinished run replays it from the start and arrives at the same record; `resume_at` keeps it
from publishing snapshots older than the one already saved.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from contracts.tune import TrialEnded, TrialReported, TuningJobSpec
from services.tuner.domain.benchmarks import benchmark
from services.tuner.domain.jobs import (
    ACTIVE,
    SIMULATOR_POOL,
    JobEngine,
    JobRecord,
    JobSpecError,
    Launch,
    SimulationState,
    TrialRecord,
    simulator_of,
)
from services.tuner.domain.schedulers import Decision, TrialSuggestion
from services.tuner.domain.simulator import Benchmark, simulate
from services.tuner.domain.space import Domain, SearchSpace, SpaceError

__all__ = [
    "MAX_SIMULATED_S",
    "STOPPED_BY_REQUEST",
    "JobBenchmark",
    "SimulatedRun",
    "SimulationAbandoned",
    "Snapshot",
    "finish_stopped",
    "resolve_spec",
]

STOPPED_BY_REQUEST: Final = "stopped by request"  # JobEngine.request_stop's reason
# Simulated time a run may reach whatever its spec says (ten years: datetimes stay valid).
MAX_SIMULATED_S: Final = 10 * 365 * 24 * 3600.0
WORKER: Final = "simulator"
# A run stops itself once its record reaches this share of the largest value the bus takes.
RECORD_SHARE: Final = 0.8
# Extra metrics simulated trials report, as workers add them to a script's reports.
EXTRA_METRICS: Final = ("elapsed_time", "cost")
_FIDELITY_SCHEDULERS: Final = ("asha", "hyperband", "moasha")
_MULTI_OBJECTIVE: Final = ("moasha", "mo_random")


class SimulationAbandoned(Exception):
    """The run was given up: its tuner is stopping, or another replica holds the job now."""


@dataclass(frozen=True)
class Snapshot:
    """A run's progress as the JSON of its record, ready to store."""

    payload: bytes
    stopping: bool  # taken after a stop request reached the run
    simulated_time: float


# -- the spec ----------------------------------------------------------------------------------


def _values(domain: Domain) -> list[Any]:
    """Every value of a small finite domain, else the ends of its range."""
    count = domain.cardinality
    if count is not None and count <= 1000:
        return domain.grid(count)
    return [domain.from_unit(0.0), domain.from_unit(1.0)]


def _narrowed_space(given: Mapping[str, Any], bench: Benchmark) -> dict[str, Any]:
    full = SearchSpace.from_json(bench.config_space)
    known = ", ".join(full.names)
    try:
        narrowed = SearchSpace.from_json(given)
    except SpaceError as exc:
        raise JobSpecError(f"config_space: {exc}") from None
    for name in given:
        if name not in full.names:
            raise JobSpecError(
                f"config_space: {name!r} is not a parameter of benchmark {bench.name!r}"
                f" (its parameters: {known})"
            )
        if narrowed.condition(name) is not None:
            raise JobSpecError(
                f"config_space: {name!r} has a condition; a benchmark takes every parameter"
            )
        outer = full.domain(name)
        inner = (
            [narrowed.constants[name]]
            if name in narrowed.constants
            else _values(narrowed.domain(name))
        )
        outside = [value for value in inner if not outer.contains(value)]
        if outside:
            raise JobSpecError(
                f"config_space: {name!r} must stay within the benchmark's domain"
                f" {outer.to_json()}; {outside[0]!r} is outside it"
            )
    # Parameters not given keep the benchmark's domain.
    return {**bench.config_space, **given}


def resolve_spec(spec: TuningJobSpec) -> TuningJobSpec:
    """A simulator job's spec with what it left out taken from its benchmark, checked against it.

    Defaults: config_space (the benchmark's), metrics (its first, or all of them for moasha and
    mo_random), scheduler.max_resource (its number of epochs). A config_space may narrow the
    benchmark's parameters (a domain within theirs, or a constant); metrics may be the
    benchmark's (in their mode) or the elapsed_time and cost simulated workers add.
    """
    backend = simulator_of(spec)
    if backend is None:
        raise JobSpecError("not a simulator job")
    try:
        bench = benchmark(backend.benchmark)
    except KeyError as exc:
        raise JobSpecError(f"backend.benchmark: {exc.args[0]}") from None
    data = spec.model_dump(mode="json")
    s = spec.scheduler
    data["config_space"] = _narrowed_space(spec.config_space, bench)
    modes = dict(zip(bench.metrics, bench.modes, strict=True))
    if not spec.metrics:
        wanted = bench.metrics if s.type in _MULTI_OBJECTIVE else bench.metrics[:1]
        data["metrics"] = [{"name": name, "mode": modes[name]} for name in wanted]
    for metric in spec.metrics:
        if metric.name in EXTRA_METRICS:
            continue
        if metric.name not in modes:
            choices = ", ".join([*bench.metrics, *EXTRA_METRICS])
            raise JobSpecError(
                f"metrics: benchmark {bench.name!r} reports no {metric.name!r} (it has {choices})"
            )
        if metric.mode != modes[metric.name]:
            raise JobSpecError(
                f"metrics: {metric.name!r} of benchmark {bench.name!r} is to"
                f" {'minimise' if modes[metric.name] == 'min' else 'maximise'}"
                f" (mode {modes[metric.name]!r})"
            )
    if s.resource_attr != bench.resource_attr:
        raise JobSpecError(
            f"scheduler.resource_attr: benchmark {bench.name!r} reports its resource as"
            f" {bench.resource_attr!r}, not {s.resource_attr!r}"
        )
    if s.max_resource is None:
        data["scheduler"]["max_resource"] = bench.max_resource
    elif s.max_resource > bench.max_resource:
        raise JobSpecError(
            f"scheduler.max_resource: benchmark {bench.name!r} has {bench.max_resource}"
            f" {bench.resource_attr}s, not {s.max_resource}"
        )
    try:
        return TuningJobSpec.model_validate(data)
    except ValueError as exc:
        raise JobSpecError(str(exc)) from None


# -- the run -----------------------------------------------------------------------------------


class JobBenchmark:
    """A benchmark as a job sees it: cut at the job's max_resource, times scaled."""

    def __init__(self, inner: Benchmark, max_resource: int, time_scale: float) -> None:
        self.inner = inner
        self.name = inner.name
        self.config_space = inner.config_space
        self.metrics = inner.metrics
        self.modes = inner.modes
        self.resource_attr = inner.resource_attr
        self.max_resource = max_resource
        self.time_scale = time_scale

    def evaluate(self, config: Mapping[str, Any], resource: int) -> dict[str, float]:
        return self.inner.evaluate(config, resource)

    def elapsed(self, config: Mapping[str, Any], resource: int) -> float:
        return self.inner.elapsed(config, resource) * self.time_scale


def finish_stopped(record: JobRecord) -> JobRecord:
    """A job whose run ended with its tuner after a stop was asked for: stopped where it was."""
    simulated = record.simulation.simulated_time if record.simulation else 0.0
    at = record.created_at + timedelta(seconds=simulated)
    for trial in record.trials.values():
        if trial.status in ACTIVE:
            trial.status = "stopped"
            trial.pending_action = None
            trial.ended_at = at
    record.status = "Stopped"
    record.stop_reason = record.stop_reason or STOPPED_BY_REQUEST
    record.ended_at = at
    return record


def _stop_pending(trial: TrialRecord) -> bool:
    return trial.status in ACTIVE and trial.pending_action == "stop"


class SimulatedRun:
    """One run of a simulator job, meant for a thread: `run()` returns the finished record.

    Thread-safe from outside: `request_stop()`, `abandon()`, `take_snapshot()`. Snapshots come
    every `snapshot_s` (longer for a large record: a second per MiB, up to `max_snapshot_s`)
    once the simulated clock passes `resume_at`, and carry `lease` with a fresh heartbeat.
    """

    def __init__(
        self,
        record: JobRecord,
        *,
        lease: SimulationState | None = None,
        max_record_bytes: int | None = None,
        snapshot_s: float = 1.0,
        max_snapshot_s: float = 5.0,
        resume_at: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        spec = record.spec
        backend = simulator_of(spec)
        if backend is None:
            raise ValueError(f"tuning job {spec.name!r} does not run on the simulator")
        self.backend = backend
        fresh = JobRecord(
            spec=spec,
            created_at=record.created_at,
            simulation=SimulationState(),
        )
        self.engine = JobEngine(fresh)
        top = spec.scheduler.max_resource
        inner = benchmark(backend.benchmark)
        self.benchmark = JobBenchmark(
            inner, top if top is not None else inner.max_resource, backend.time_scale
        )
        self.now = 0.0
        self.events = 0
        self.resume_at = resume_at
        self.snapshot_s = snapshot_s
        self.max_snapshot_s = max(snapshot_s, max_snapshot_s)
        self.max_record_bytes = max_record_bytes
        self.lease = lease or SimulationState()
        self._clock = clock
        self._wall = wall
        self._launches: deque[Launch] = deque()
        self._started: dict[int, float] = {}  # simulated time each trial's attempt began
        self._stop_at: float | None = None
        self._stop = threading.Event()
        self._abandon = threading.Event()
        self._lock = threading.Lock()
        self._snapshot: Snapshot | None = None
        self._last_snapshot = clock()
        self._snapshot_every = snapshot_s
        # The record's size (without the lease, which differs between replicas): measured at
        # deterministic points, so that a replay stops where the first run did; estimated
        # in between.
        self._size = len(self._record_json(leased=False)) if max_record_bytes else 0
        self._next_size_check = self._size_limit()

    # -- from other threads --------------------------------------------------------------------

    def request_stop(self) -> None:
        self._stop.set()

    def abandon(self) -> None:
        self._abandon.set()

    def take_snapshot(self) -> Snapshot | None:
        """The latest progress published since the last call, if any."""
        with self._lock:
            snapshot, self._snapshot = self._snapshot, None
        return snapshot

    # -- the run -------------------------------------------------------------------------------

    def run(self) -> JobRecord:
        """Simulates the job to its end; a benchmark or scheduler that breaks fails the job."""
        stop = self.engine.spec.stop
        limit = MAX_SIMULATED_S
        if stop.max_wallclock_time is not None:
            limit = min(limit, stop.max_wallclock_time)
        try:
            result = simulate(
                self,
                self.benchmark,
                n_workers=self.engine.spec.n_workers,
                max_simulated_time=limit,
                on_time=self._on_time,
            )
            self._finish(result.stop_reason == "time" and limit == MAX_SIMULATED_S)
        except SimulationAbandoned:
            raise
        except Exception as exc:
            self._fail(exc)
        return self._record(leased=False)

    # AskTellScheduler, called by simulate() --------------------------------------------------

    def suggest(self) -> TrialSuggestion | None:
        self._check()
        if not self._launches and self.engine.record.status == "InProgress":
            self._advance()
        if not self._launches:
            return None
        trial = self._launches.popleft().trial
        self._started[trial.trial_id] = self.now
        if not trial.resume:
            self._grow(len(str(trial.config)) + 400)
        return TrialSuggestion(trial.trial_id, dict(trial.config), resume=trial.resume)

    def on_result(self, trial_id: int, result: Mapping[str, float]) -> Decision:
        self._check()
        trial = self.engine.record.trials.get(str(trial_id))
        if trial is None or trial.status not in ACTIVE:
            return Decision.STOP  # the job stopped it before its first report
        if trial.pending_action == "stop":
            self._end(trial, "stopped", self._stop_at)  # the job is stopping
            return Decision.STOP
        attr = self.benchmark.resource_attr
        metrics: dict[str, float | int | str | bool] = {attr: int(result[attr])}
        metrics.update((key, value) for key, value in result.items() if key != attr)
        elapsed = self.now - self._started.get(trial_id, self.now)
        metrics.setdefault("elapsed_time", round(elapsed, 6))
        metrics.setdefault("cost", round(elapsed / 3600 * self.backend.cost_per_hour, 9))
        report = TrialReported(
            job=self.engine.spec.name,
            trial_id=trial_id,
            attempt=trial.attempt,
            seq=trial.last_seq + 1,
            metrics=metrics,
            worker=WORKER,
            reported_at=self._at(self.now),
        )
        self.events += 1
        controls = self.engine.on_report(report)
        decision = Decision.CONTINUE
        for control in controls:
            if control.trial_id == trial_id:
                decision = Decision.STOP if control.action == "stop" else Decision.PAUSE
        if decision is Decision.STOP:
            self._end(trial, "stopped")
        elif decision is Decision.PAUSE:
            self._end(trial, "paused")
        if self._threshold_reached(metrics):
            self._advance()
            if _stop_pending(trial):  # the job reached its threshold: this one stops too
                self._end(trial, "stopped", self._stop_at)
                decision = Decision.STOP
        self._grow(len(str(metrics)) + 80)
        return decision

    def on_complete(self, trial_id: int, result: Mapping[str, float] | None = None) -> None:
        self._check()
        trial = self.engine.record.trials.get(str(trial_id))
        if trial is not None and trial.status in ACTIVE:
            self._end(trial, "completed")

    # -- steps -----------------------------------------------------------------------------------

    def _at(self, seconds: float) -> datetime:
        return self.engine.record.created_at + timedelta(seconds=seconds)

    def _on_time(self, now: float) -> None:
        self.now = now
        self._check()
        if self.now < self.resume_at or self._clock() - self._last_snapshot < self._snapshot_every:
            return
        stopping = self._stop.is_set()  # set before the record is taken: it is applied in it
        self._check()
        payload = self._record_json(leased=True)
        with self._lock:
            self._snapshot = Snapshot(payload, stopping, self.now)
        self._last_snapshot = self._clock()
        self._snapshot_every = min(
            self.max_snapshot_s, self.snapshot_s * max(1.0, len(payload) / 2**20)
        )

    def _check(self) -> None:
        if self._abandon.is_set():
            raise SimulationAbandoned(self.engine.spec.name)
        if self._stop.is_set() and self.engine.record.status == "InProgress":
            self.engine.request_stop()
            self._advance()

    def _advance(self) -> None:
        """The engine's step: stop criteria at the simulated now, free slots, the job's end."""
        launches, _ = self.engine.advance(self._at(self.now))
        if self.engine.record.status != "InProgress":
            if self._stop_at is None:
                self._stop_at = self.now
            self._launches.clear()  # the engine marked them stopped
            return
        self._launches.extend(launches)

    def _end(self, trial: TrialRecord, reason: str, at: float | None = None) -> None:
        at = self.now if at is None else at
        began = self._started.pop(trial.trial_id, at)
        self.engine.on_end(
            TrialEnded.model_validate(
                {
                    "job": self.engine.spec.name,
                    "trial_id": trial.trial_id,
                    "attempt": trial.attempt,
                    "reason": reason,
                    "worker": WORKER,
                    "pool": SIMULATOR_POOL,
                    "elapsed_s": max(0.0, at - began),
                    "cost_per_hour": self.backend.cost_per_hour,
                    "ended_at": self._at(at),
                    "reports": trial.last_seq + 1,
                }
            )
        )

    def _threshold_reached(self, metrics: Mapping[str, Any]) -> bool:
        threshold = self.engine.spec.stop.metric_threshold
        metric = self.engine.spec.metrics[0]
        value = metrics.get(metric.name)
        if threshold is None or not isinstance(value, int | float):
            return False
        return value <= threshold if metric.mode == "min" else value >= threshold

    def _size_limit(self) -> float:
        return RECORD_SHARE * self.max_record_bytes if self.max_record_bytes else math.inf

    def _grow(self, size: int) -> None:
        """Stops the job before its record outgrows what the bus stores as one value."""
        if not self.max_record_bytes:
            return
        self._size += size
        if self._size < self._next_size_check:
            return
        self._size = len(self._record_json(leased=False))
        limit = self._size_limit()
        if self._size < limit:
            self._next_size_check = self._size + max((limit - self._size) / 2, 0.01 * limit)
            return
        self._next_size_check = math.inf
        if self.engine.record.status == "InProgress":
            self.engine.record.status = "Stopping"
            self.engine.record.stop_reason = (
                f"the job's record reached {self._size / 2**20:.1f} MiB, near the"
                f" {self.max_record_bytes / 2**20:.1f} MiB a message may have"
            )
            self._advance()

    def _finish(self, out_of_time: bool) -> None:
        """After the last event: stop criteria at the end time, what still runs stopped."""
        record = self.engine.record
        if out_of_time and record.status == "InProgress":
            record.status = "Stopping"
            record.stop_reason = f"the simulated time limit of {MAX_SIMULATED_S:g} s reached"
        self._advance()
        at = self._stop_at if self._stop_at is not None else self.now
        for trial in list(record.trials.values()):
            if trial.status == "running":
                self._end(trial, "stopped", at)
            elif trial.status == "queued":
                trial.status = "stopped"
        self.engine.advance(self._at(at))

    def _fail(self, exc: Exception) -> None:
        record = self.engine.record
        at = self._at(self._stop_at if self._stop_at is not None else self.now)
        for trial in record.trials.values():
            if trial.status in ACTIVE:
                trial.status = "stopped"
                trial.ended_at = at
        record.status = "Failed"
        record.failure_reason = f"the simulation failed: {type(exc).__name__}: {exc}"
        record.stop_reason = record.stop_reason or "the simulation failed"
        record.ended_at = at

    def _record(self, *, leased: bool) -> JobRecord:
        record = self.engine.save()
        record.simulation = SimulationState(
            runner=self.lease.runner if leased else None,
            heartbeat_at=self._wall() if leased else None,
            starts=self.lease.starts if leased else 0,
            simulated_time=self.now,
            events=self.events,
        )
        return record

    def _record_json(self, *, leased: bool) -> bytes:
        return self._record(leased=leased).model_dump_json().encode()
