"""Event-driven simulation of a tuning job on a tabulated benchmark, on a simulated clock."""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import numpy as np

from services.tuner.domain.pareto import hypervolume
from services.tuner.domain.schedulers import Decision, TrialSuggestion

__all__ = [
    "AskTellScheduler",
    "Benchmark",
    "Report",
    "SimulationError",
    "SimulationResult",
    "simulate",
]

StopReason = Literal["exhausted", "time", "max_trials"]


class SimulationError(ValueError):
    """A scheduler or benchmark broke the simulation's contract (unknown resume, bad time)."""


class Benchmark(Protocol):
    """A tabulated or analytic problem: metrics and simulated training time per fidelity step.

    Resources are the integers 1..max_resource (epochs, anchors, fidelity levels).
    """

    name: str
    config_space: dict[str, Any]  # JSON spec for SearchSpace.from_json
    metrics: list[str]
    modes: list[str]  # "min" or "max", one per metric
    resource_attr: str
    max_resource: int

    def evaluate(self, config: Mapping[str, Any], resource: int) -> dict[str, float]:
        """Metric values of `config` at fidelity `resource` (extra keys are recorded too)."""
        ...

    def elapsed(self, config: Mapping[str, Any], resource: int) -> float:
        """Simulated seconds to train `config` from resource - 1 to `resource`."""
        ...


class AskTellScheduler(Protocol):
    """What the simulator drives: the Trellis schedulers, or an adapter around another library."""

    def suggest(self) -> TrialSuggestion | None: ...

    def on_result(self, trial_id: int, result: Mapping[str, float]) -> Decision: ...

    def on_complete(self, trial_id: int, result: Mapping[str, float] | None = None) -> None: ...


@dataclass(frozen=True, slots=True)
class Report:
    """One result a trial reported: at simulated `time`, after training to `resource`."""

    time: float
    trial_id: int
    resource: int
    metrics: dict[str, float]


def _sign(mode: str) -> float:
    if mode not in ("min", "max"):
        raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
    return 1.0 if mode == "min" else -1.0


@dataclass
class SimulationResult:
    """Every report of a simulated run, in time order, with anytime-quality helpers.

    The helpers count a report at any resource by default: a model trained to a lower
    fidelity is a usable model, as in Syne Tune's anytime plots (best metric over all reported
    results so far). Pass `max_resource_only=True` when lower fidelities are not the same
    quantity (e.g. a cheaper, biased approximation of the objective).
    """

    reports: list[Report]
    configs: dict[int, dict[str, Any]]
    n_workers: int
    max_resource: int
    end_time: float
    stop_reason: StopReason
    resumed: int = 0  # how many times a paused trial was resumed

    @property
    def trials_started(self) -> int:
        return len(self.configs)

    @property
    def resource_steps(self) -> int:
        """Resource steps trained in total (one per report)."""
        return len(self.reports)

    def _selected(self, max_resource_only: bool) -> list[Report]:
        if not max_resource_only:
            return self.reports
        return [r for r in self.reports if r.resource >= self.max_resource]

    def best_so_far(
        self, metric: str, mode: str = "min", *, max_resource_only: bool = False
    ) -> list[tuple[float, float]]:
        """(time, best value so far) at each improvement, in time order (a step function)."""
        sign = _sign(mode)
        curve: list[tuple[float, float]] = []
        best = math.inf
        for report in self._selected(max_resource_only):
            value = report.metrics.get(metric)
            if value is None or not math.isfinite(value):
                continue
            if sign * value < best:
                best = sign * value
                curve.append((report.time, float(value)))
        return curve

    def time_to_reach(
        self, target: float, metric: str, mode: str = "min", *, max_resource_only: bool = False
    ) -> float | None:
        """First simulated time the best value is at least as good as `target`; None if never."""
        sign = _sign(mode)
        for time, value in self.best_so_far(metric, mode, max_resource_only=max_resource_only):
            if sign * value <= sign * target:
                return time
        return None

    def final_best(
        self, metric: str, mode: str = "min", *, max_resource_only: bool = False
    ) -> float | None:
        curve = self.best_so_far(metric, mode, max_resource_only=max_resource_only)
        return curve[-1][1] if curve else None

    def hypervolume_over_time(
        self,
        reference: Sequence[float],
        metrics: Sequence[str],
        modes: Sequence[str],
        *,
        max_resource_only: bool = False,
    ) -> list[tuple[float, float]]:
        """(time, hypervolume of the reports so far) at each increase.

        `reference` is in the metrics' own units; "max" metrics are negated (with their
        reference coordinate) so that the volume is the one `hypervolume` computes for
        minimisation. Only points strictly better than the reference everywhere count.
        """
        if not (len(reference) == len(metrics) == len(modes)):
            raise ValueError("reference, metrics and modes must have the same length")
        signs = np.array([_sign(mode) for mode in modes])
        ref = np.asarray(reference, dtype=np.float64) * signs
        front = np.empty((0, len(metrics)))
        curve: list[tuple[float, float]] = []
        for report in self._selected(max_resource_only):
            values = [report.metrics.get(metric) for metric in metrics]
            if any(v is None or not math.isfinite(v) for v in values):
                continue
            point = np.asarray(values, dtype=np.float64) * signs
            if not np.all(point < ref):
                continue
            if front.shape[0] and np.any(np.all(front <= point, axis=1)):
                continue  # weakly dominated: the volume does not grow
            dominated = np.all(point <= front, axis=1)
            front = np.vstack([front[~dominated], point])
            curve.append((report.time, hypervolume(front, ref)))
        return curve


@dataclass
class _Running:
    config: dict[str, Any]
    resource: int  # the level being trained to


def _check_positive_int(value: int | None, what: str) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{what} must be an integer >= 1 or None, got {value!r}")


def simulate(
    scheduler: AskTellScheduler,
    benchmark: Benchmark,
    n_workers: int = 4,
    max_simulated_time: float | None = None,
    max_trials: int | None = None,
    on_time: Callable[[float], None] | None = None,
) -> SimulationResult:
    """Runs `scheduler` on `benchmark` with `n_workers` simulated workers.

    A free worker asks `suggest()`: a new trial starts at resource 1, a resumed (paused) one at
    its last reported resource + 1 (`milestone` is not enforced: decisions drive the trial).
    Training a step takes `benchmark.elapsed` simulated seconds, then the trial reports its
    metrics plus `resource_attr` and the scheduler decides: CONTINUE trains the next step, or
    at max_resource ends the trial with `on_complete`; STOP ends it (no `on_complete`, as in
    Syne Tune's tuner); PAUSE frees the worker and keeps the trial resumable. Idle workers ask
    again after every report. The run ends when nothing is running and `suggest()` returns
    None, at `max_simulated_time` (reports after it are dropped, running trials are cut), or
    once `max_trials` trials have started and finished: a new trial suggested past the limit
    is discarded and the simulator asks no more (give the scheduler its own `max_trials` to
    keep promotions possible). Ties in finish time go to the step scheduled first, so a run
    is deterministic for a deterministic scheduler and benchmark. `on_time`, when given, is
    called with the simulated time of each report before the scheduler hears of it, and with
    the end time when `max_simulated_time` cuts the run (a scheduler that keeps time, e.g. to
    stamp its records, reads the clock there).
    """
    if isinstance(n_workers, bool) or not isinstance(n_workers, int) or n_workers < 1:
        raise ValueError(f"n_workers must be an integer >= 1, got {n_workers!r}")
    _check_positive_int(max_trials, "max_trials")
    if max_simulated_time is not None and not max_simulated_time >= 0:
        raise ValueError(f"max_simulated_time must be >= 0 or None, got {max_simulated_time!r}")
    max_resource = int(benchmark.max_resource)
    resource_attr = benchmark.resource_attr

    events: list[tuple[float, int, int]] = []  # (finish time, sequence, trial id)
    sequence = 0
    running: dict[int, _Running] = {}
    configs: dict[int, dict[str, Any]] = {}
    last_resource: dict[int, int] = {}
    paused: set[int] = set()
    reports: list[Report] = []
    free = n_workers
    asking = True
    limit_hit = False
    resumed = 0
    now = 0.0

    def schedule(trial_id: int, config: dict[str, Any], resource: int) -> None:
        nonlocal sequence
        seconds = float(benchmark.elapsed(config, resource))
        if not (math.isfinite(seconds) and seconds >= 0):
            raise SimulationError(f"{benchmark.name}: elapsed() gave {seconds!r} at {resource}")
        running[trial_id] = _Running(config, resource)
        heapq.heappush(events, (now + seconds, sequence, trial_id))
        sequence += 1

    def fill() -> None:
        nonlocal free, asking, limit_hit, resumed
        while free > 0 and asking:
            suggestion = scheduler.suggest()
            if suggestion is None:
                return
            trial_id = suggestion.trial_id
            if suggestion.resume:
                if trial_id not in paused:
                    raise SimulationError(f"resume of trial {trial_id}, which is not paused")
                paused.discard(trial_id)
                resumed += 1
                config = configs[trial_id]
                start = last_resource.get(trial_id, 0) + 1
                if start > max_resource:  # nothing left to train
                    scheduler.on_complete(trial_id, None)
                    continue
            else:
                if trial_id in configs:
                    raise SimulationError(f"new trial {trial_id} reuses an existing id")
                if max_trials is not None and len(configs) >= max_trials:
                    asking = False
                    limit_hit = True
                    return
                config = dict(suggestion.config)
                configs[trial_id] = config
                start = 1
            schedule(trial_id, config, start)
            free -= 1

    fill()
    stop_reason: StopReason = "max_trials" if limit_hit else "exhausted"
    while events:
        finish, _, trial_id = heapq.heappop(events)
        if max_simulated_time is not None and finish > max_simulated_time:
            now = float(max_simulated_time)
            stop_reason = "time"
            if on_time is not None:
                on_time(now)
            break
        now = finish
        if on_time is not None:
            on_time(now)
        step = running.pop(trial_id)
        metrics = {
            key: float(value)
            for key, value in benchmark.evaluate(step.config, step.resource).items()
        }
        reports.append(Report(now, trial_id, step.resource, metrics))
        last_resource[trial_id] = step.resource
        result = {**metrics, resource_attr: float(step.resource)}
        decision = scheduler.on_result(trial_id, result)
        if not isinstance(decision, Decision):
            raise SimulationError(f"on_result gave {decision!r}, not a Decision")
        if decision is Decision.CONTINUE and step.resource < max_resource:
            schedule(trial_id, step.config, step.resource + 1)
            continue
        free += 1
        if decision is Decision.PAUSE:
            paused.add(trial_id)
        elif decision is Decision.CONTINUE:
            scheduler.on_complete(trial_id, result)
        fill()
        if limit_hit:
            stop_reason = "max_trials"
    return SimulationResult(
        reports=reports,
        configs=configs,
        n_workers=n_workers,
        max_resource=max_resource,
        end_time=now,
        stop_reason=stop_reason,
        resumed=resumed,
    )
