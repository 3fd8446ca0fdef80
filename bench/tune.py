"""Benchmark: tuner scheduler overhead, and anytime quality against Syne Tune on simulated benchmarks."""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import math
import os
import platform
import resource
import statistics
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Final, Literal

if __package__ in (None, ""):  # run as `python bench/tune.py`: make the repo root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import numpy.typing as npt

from bench.common import cpu_model, fmt, loadavg, package_version
from services.tuner.domain.schedulers import (
    ASHA,
    MOASHA,
    BayesianSearch,
    Decision,
    MORandomSearch,
    RandomSearch,
    TrialSuggestion,
)
from services.tuner.domain.simulator import (
    AskTellScheduler,
    Benchmark,
    SimulationResult,
    simulate,
)
from services.tuner.domain.space import SearchSpace

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUTPUT = REPO_ROOT / "bench" / "results" / "tune.json"
LIBRARIES = ("syne-tune", "lcdb", "mf2", "numpy", "pandas", "polars", "scipy")

N_WORKERS: Final = 4
GRACE_PERIOD: Final = 1
REDUCTION_FACTOR: Final = 3
# Per simulated run. LCDB's cheapest learners train in milliseconds, so ASHA could otherwise
# start millions of trials of them within the budget.
MAX_TRIALS_PER_RUN: Final = 2_000
OVERHEAD_GOAL_MS: Final = 1.0  # ASHA and MOASHA, median suggest + on_result
OVERHEAD_SIZES: Final = (1_000, 10_000)
OVERHEAD_WINDOW: Final = 100  # timings from the last this many trials before each size
SYNE_TUNE_OVERHEAD_SIZE: Final = 1_000  # its ASHA searcher refits on every result: O(n^2)

RANDOM: Final = "Random search"
TRELLIS_ASHA: Final = "Trellis ASHA"
TRELLIS_ASHA_TPE: Final = "Trellis ASHA + TPE"
TRELLIS_ASHA_GP: Final = "Trellis ASHA + GP"
SYNE_ASHA: Final = "Syne Tune ASHA"
MO_RANDOM: Final = "MO random search"
TRELLIS_MOASHA: Final = "Trellis MOASHA"
SYNE_MOASHA: Final = "Syne Tune MOASHA"
SYNE_MOASHA_FIXED: Final = "Syne Tune MOASHA, rank fix"
BAYESIAN: Final = "Trellis BayesianSearch (TPE)"
BAYESIAN_GP: Final = "Trellis BayesianSearch (GP)"
FULL_FIDELITY_METHODS: Final = frozenset({BAYESIAN, BAYESIAN_GP})
SINGLE_METHODS: Final = (RANDOM, TRELLIS_ASHA, TRELLIS_ASHA_TPE, TRELLIS_ASHA_GP, SYNE_ASHA)
MULTI_METHODS: Final = (MO_RANDOM, TRELLIS_MOASHA, SYNE_MOASHA, SYNE_MOASHA_FIXED)
SYNE_TUNE_METHODS: Final = frozenset({SYNE_ASHA, SYNE_MOASHA, SYNE_MOASHA_FIXED})


def syne_tune_available() -> bool:
    try:
        return importlib.util.find_spec("syne_tune") is not None
    except (ImportError, ValueError):
        return False


# -- Syne Tune, driven by the Trellis simulator ---------------------------------------------------


def syne_tune_space(spec: Mapping[str, Any]) -> dict[str, Any]:
    """A Syne Tune config space for a Trellis JSON spec (no conditions)."""
    cs = importlib.import_module("syne_tune.config_space")
    space: dict[str, Any] = {}
    for name, entry in spec.items():
        if not isinstance(entry, Mapping):
            space[name] = entry
            continue
        if "condition" in entry:
            raise ValueError(f"{name}: Syne Tune spaces have no conditions")
        kind = entry["type"]
        if kind in ("uniform", "loguniform", "randint", "lograndint"):
            space[name] = getattr(cs, kind)(entry["lower"], entry["upper"])
        elif kind == "choice":
            space[name] = cs.choice(list(entry["categories"]))
        elif kind == "ordinal":
            space[name] = cs.ordinal(list(entry["categories"]))
        else:
            raise ValueError(f"{name}: no Syne Tune counterpart for type {kind!r}")
    return space


class SyneTuneScheduler:
    """A Syne Tune 0.16 TrialScheduler behind the Trellis ask/tell interface.

    Calls follow Syne Tune's Tuner: suggest() then on_trial_add() for a new trial,
    on_trial_result() per report, on_trial_remove() after STOP or PAUSE, and
    on_trial_complete() for a trial that ran to its end while the scheduler said CONTINUE.
    """

    def __init__(self, scheduler: Any) -> None:
        self.scheduler = scheduler
        self._trial_class = importlib.import_module("syne_tune.backend.trial_status").Trial
        self._decisions = {
            "CONTINUE": Decision.CONTINUE,
            "PAUSE": Decision.PAUSE,
            "STOP": Decision.STOP,
        }
        self._trials: dict[int, Any] = {}
        self._removed: set[int] = set()
        self._next_id = 0

    def suggest(self) -> TrialSuggestion | None:
        suggestion = self.scheduler.suggest()
        if suggestion is None:
            return None
        if not suggestion.spawn_new_trial_id:
            trial_id = int(suggestion.checkpoint_trial_id)
            trial = self._trials[trial_id]
            if suggestion.config is not None:
                trial.config = dict(suggestion.config)
            self._removed.discard(trial_id)
            return TrialSuggestion(trial_id, dict(trial.config), resume=True)
        trial_id = self._next_id
        self._next_id += 1
        trial = self._trial_class(
            trial_id=trial_id, config=dict(suggestion.config), creation_time=datetime.now()
        )
        self._trials[trial_id] = trial
        self.scheduler.on_trial_add(trial)
        return TrialSuggestion(trial_id, dict(suggestion.config))

    def on_result(self, trial_id: int, result: Mapping[str, float]) -> Decision:
        trial = self._trials[trial_id]
        decision = self._decisions[str(self.scheduler.on_trial_result(trial, dict(result)))]
        if decision is not Decision.CONTINUE:
            self.scheduler.on_trial_remove(trial)
            self._removed.add(trial_id)
        return decision

    def on_complete(self, trial_id: int, result: Mapping[str, float] | None = None) -> None:
        if trial_id in self._removed:
            return
        self._removed.add(trial_id)
        if result is not None:
            self.scheduler.on_trial_complete(self._trials[trial_id], dict(result))


class RankedNonDominatedPriority:
    """Syne Tune's non-dominated sort with epsilon-net ties, returned as one rank per point.

    Syne Tune 0.16's Bracket reads a priority per point (lower is better) and takes the new
    point's, the last; but NonDominatedPriority returns the sorted order (point indices, best
    first), and inside each front it also applies compute_epsilon_net's ranks as an order. So
    MOASHA as shipped decides on the index of the worst point, not on the new one: a trial
    dominating every other one at its rung is stopped about half the time. This callable, passed
    as MOASHA's `multiobjective_priority`, ranks with Syne Tune's own pareto_efficient and
    compute_epsilon_net (seeded on the first objective, as NonDominatedPriority's default).
    """

    def __init__(self) -> None:
        module = importlib.import_module(
            "syne_tune.optimizer.schedulers.multiobjective.non_dominated_priority"
        )
        self._pareto_efficient = module.pareto_efficient
        self._epsilon_net = module.compute_epsilon_net

    def __call__(self, objectives: Any) -> npt.NDArray[np.int64]:
        points = np.asarray(objectives, dtype=np.float64)
        ranks = np.empty(points.shape[0], dtype=np.int64)
        remaining = np.arange(points.shape[0])
        position = 0
        while remaining.size:
            on_front = np.asarray(self._pareto_efficient(points[remaining]), dtype=bool)
            front = remaining[on_front]
            ranks[front] = position + np.asarray(self._epsilon_net(points[front], dim=0))
            position += front.size
            remaining = remaining[~on_front]
        return ranks


# -- schedulers -----------------------------------------------------------------------------------


def make_scheduler(method: str, benchmark: Benchmark, seed: int) -> AskTellScheduler:
    """A fresh scheduler for `method` on `benchmark`; Syne Tune ones also seed numpy's global
    generator, which its MOASHA and random searcher sample from."""
    space = SearchSpace.from_json(benchmark.config_space)
    metric = benchmark.metrics[0]
    mode: Literal["min", "max"] = "min" if benchmark.modes[0] == "min" else "max"
    common: dict[str, Any] = {
        "resource_attr": benchmark.resource_attr,
        "max_resource": benchmark.max_resource,
        "seed": seed,
    }
    halving: dict[str, Any] = {"grace_period": GRACE_PERIOD, "reduction_factor": REDUCTION_FACTOR}
    modes: list[Any] = list(benchmark.modes)
    if method == RANDOM:
        return RandomSearch(space, metric=metric, mode=mode, **common)
    if method == TRELLIS_ASHA:
        return ASHA(space, metric=metric, mode=mode, searcher="random", **common, **halving)
    if method == TRELLIS_ASHA_TPE:
        return ASHA(space, metric=metric, mode=mode, searcher="bayesian", **common, **halving)
    if method == TRELLIS_ASHA_GP:
        return ASHA(space, metric=metric, mode=mode, searcher="gp", **common, **halving)
    if method == BAYESIAN:
        return BayesianSearch(space, metric=metric, mode=mode, **common)
    if method == BAYESIAN_GP:
        return BayesianSearch(space, metric=metric, mode=mode, searcher="gp", **common)
    if method == MO_RANDOM:
        return MORandomSearch(space, metrics=benchmark.metrics, modes=modes, **common)
    if method == TRELLIS_MOASHA:
        return MOASHA(space, metrics=benchmark.metrics, modes=modes, **common, **halving)
    if method in SYNE_TUNE_METHODS:
        np.random.seed(seed)  # Syne Tune samples from numpy's global generator
        st_space = syne_tune_space(benchmark.config_space)
        settings: dict[str, Any] = {
            "time_attr": benchmark.resource_attr,
            "max_t": benchmark.max_resource,
            "grace_period": GRACE_PERIOD,
            "reduction_factor": REDUCTION_FACTOR,
            "random_seed": seed,
        }
        if method == SYNE_ASHA:
            module = importlib.import_module("syne_tune.optimizer.schedulers.asha")
            scheduler = module.AsynchronousSuccessiveHalving(
                st_space,
                metric=metric,
                do_minimize=mode == "min",
                searcher="random_search",
                **settings,
            )
        else:
            if any(m != "min" for m in benchmark.modes):
                raise ValueError("Syne Tune's MOASHA takes one direction for all metrics")
            module = importlib.import_module("syne_tune.optimizer.schedulers.multiobjective.moasha")
            priority = RankedNonDominatedPriority() if method == SYNE_MOASHA_FIXED else None
            scheduler = module.MOASHA(
                st_space,
                metrics=list(benchmark.metrics),
                do_minimize=True,
                multiobjective_priority=priority,
                **settings,
            )
        return SyneTuneScheduler(scheduler)
    raise ValueError(f"unknown method {method!r}")


# -- scheduler overhead ---------------------------------------------------------------------------


class OverheadBenchmark:
    """A cheap synthetic problem for timing schedulers: two shifted quadratics in 4 inputs that
    approach their final values as the resource grows (so rung decisions vary)."""

    name = "overhead-quadratic"
    resource_attr = "epoch"
    max_resource = 27

    def __init__(self) -> None:
        self.config_space: dict[str, Any] = {
            f"x{i}": {"type": "uniform", "lower": 0.0, "upper": 1.0} for i in range(4)
        }
        self.metrics = ["loss", "cost"]
        self.modes = ["min", "min"]

    def evaluate(self, config: Mapping[str, Any], resource: int) -> dict[str, float]:
        x = np.array([float(config[f"x{i}"]) for i in range(4)])
        decay = 1.0 / math.sqrt(resource)
        loss = float(((x - 0.3) ** 2).sum()) + decay * float(x[0])
        cost = float(((x - 0.7) ** 2).sum()) + decay * float(x[1])
        return {"loss": loss, "cost": cost}

    def elapsed(self, config: Mapping[str, Any], resource: int) -> float:
        return 1.0


def _percentile_ms(samples_ns: Sequence[int], q: float) -> float:
    return float(np.percentile(np.asarray(samples_ns, dtype=np.float64), q)) / 1e6


def scheduler_overhead(
    method: str,
    sizes: Sequence[int] = OVERHEAD_SIZES,
    window: int = OVERHEAD_WINDOW,
    seed: int = 0,
) -> dict[str, Any]:
    """Times suggest() and on_result() while trials are run one after another to max(sizes).

    Each trial reports epochs 1, 2, ... until the scheduler stops it (BayesianSearch, TPE or GP,
    a full-fidelity method, reports once at max_resource). For each size N the medians come
    from trials N - window .. N - 1; "pair" is a trial's suggest() plus its first on_result().
    """
    benchmark = OverheadBenchmark()
    scheduler = make_scheduler(method, benchmark, seed)
    full_fidelity = method in FULL_FIDELITY_METHODS
    total = max(sizes)
    suggest_ns: list[int] = []
    first_result_ns: list[int] = []
    result_ns: list[list[int]] = []
    started = time.perf_counter()
    for _ in range(total):
        before = time.perf_counter_ns()
        suggestion = scheduler.suggest()
        suggest_ns.append(time.perf_counter_ns() - before)
        if suggestion is None:
            raise RuntimeError(f"{method} stopped suggesting after {len(suggest_ns)} trials")
        levels = [benchmark.max_resource] if full_fidelity else range(1, benchmark.max_resource + 1)
        timings: list[int] = []
        result: dict[str, float] = {}
        decision = Decision.CONTINUE
        for level in levels:
            result = {
                **benchmark.evaluate(suggestion.config, level),
                benchmark.resource_attr: float(level),
            }
            before = time.perf_counter_ns()
            decision = scheduler.on_result(suggestion.trial_id, result)
            timings.append(time.perf_counter_ns() - before)
            if decision is not Decision.CONTINUE:
                break
        if decision is Decision.CONTINUE:
            scheduler.on_complete(suggestion.trial_id, result)
        first_result_ns.append(timings[0])
        result_ns.append(timings)
    out: dict[str, Any] = {"method": method, "total_s": time.perf_counter() - started}
    for size in sizes:
        low = max(0, size - window)
        suggests = suggest_ns[low:size]
        results = [t for trial in result_ns[low:size] for t in trial]
        pairs = [s + r for s, r in zip(suggests, first_result_ns[low:size], strict=True)]
        out[str(size)] = {
            "trials": size - low,
            "suggest_p50_ms": _percentile_ms(suggests, 50),
            "on_result_p50_ms": _percentile_ms(results, 50),
            "pair_p50_ms": _percentile_ms(pairs, 50),
            "pair_p99_ms": _percentile_ms(pairs, 99),
            "reports_per_trial": len(results) / (size - low),
        }
    return out


# -- anytime quality ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """A benchmark, its budget in mean full evaluations per worker, and how to judge it."""

    name: str
    build: Callable[[], Any]
    evaluations_per_worker: float
    max_resource_only: bool  # judge on full-fidelity reports only
    multi_objective: bool = False


def default_cases() -> list[Case]:
    tb = importlib.import_module("bench.tune_benchmarks")
    return [
        Case("lcdb-kin8nm", lambda: tb.LCDBBenchmark.from_openml(807), 10, False),
        Case("lcdb-mnist_784", lambda: tb.LCDBBenchmark.from_openml(554), 10, False),
        Case("mf2-branin", tb.mf2_branin, 25, True),
        Case("mf2-hartmann3", tb.mf2_hartmann3, 25, True),
        Case("mf2-hartmann6", tb.mf2_hartmann6, 25, True),
        Case("mf2-branin-currin", tb.branin_currin, 25, True, multi_objective=True),
    ]


def _median(values: Sequence[float]) -> float:
    return float(statistics.median(values)) if values else math.nan


def _quartiles(values: Sequence[float]) -> tuple[float, float]:
    """First and third quartiles as order statistics (values may be inf)."""
    if not values:
        return math.nan, math.nan
    array = np.asarray(values, dtype=np.float64)
    low, high = np.percentile(array, [25, 75], method="nearest")
    return float(low), float(high)


def run_case(
    case_name: str,
    benchmark: Any,
    methods: Sequence[str],
    seeds: Sequence[int],
    budget_s: float,
    *,
    max_resource_only: bool,
    multi_objective: bool,
    n_workers: int = N_WORKERS,
    max_trials: int = MAX_TRIALS_PER_RUN,
) -> dict[str, Any]:
    """Every method on every seed with the same simulated budget, then regret (or normalised
    hypervolume) at the end and the time each run first reaches a target: the final value that
    at least 3/4 of the random baseline's seeds reach (the first method in `methods` is the
    baseline), so the baseline's median time to it is defined."""
    metric, mode = benchmark.metrics[0], benchmark.modes[0]
    runs: dict[str, list[SimulationResult]] = {}
    wall: dict[str, float] = {}
    for method in methods:
        began = time.perf_counter()
        runs[method] = []
        for seed in seeds:
            scheduler = make_scheduler(method, benchmark, seed)
            runs[method].append(
                simulate(
                    scheduler,
                    benchmark,
                    n_workers=n_workers,
                    max_simulated_time=budget_s,
                    max_trials=max_trials,
                )
            )
        wall[method] = time.perf_counter() - began

    optimum = None if multi_objective else float(benchmark.optimum)
    max_volume = float(benchmark.max_hypervolume) if multi_objective else 1.0

    def trajectory(run: SimulationResult) -> list[tuple[float, float]]:
        """(time, regret) or (time, hypervolume / max) at each improvement."""
        if multi_objective:
            curve = run.hypervolume_over_time(
                benchmark.reference_point,
                benchmark.metrics,
                benchmark.modes,
                max_resource_only=max_resource_only,
            )
            return [(moment, volume / max_volume) for moment, volume in curve]
        assert optimum is not None
        best = run.best_so_far(metric, mode, max_resource_only=max_resource_only)
        sign = 1.0 if mode == "min" else -1.0
        return [(moment, sign * (value - optimum)) for moment, value in best]

    curves = {method: [trajectory(run) for run in runs[method]] for method in methods}
    empty = 0.0 if multi_objective else math.inf
    finals = {
        method: [curve[-1][1] if curve else empty for curve in curves[method]] for method in methods
    }
    baseline = methods[0]
    # A value at least 3/4 of the baseline's seeds reach by the end (nearest order statistic).
    target = float(np.percentile(finals[baseline], 25 if multi_objective else 75, method="nearest"))

    def time_to_target(curve: list[tuple[float, float]]) -> float:
        for moment, value in curve:
            if (value >= target) if multi_objective else (value <= target):
                return moment
        return math.inf

    results: dict[str, Any] = {}
    for method in methods:
        times = [time_to_target(curve) for curve in curves[method]]
        low, high = _quartiles(finals[method])
        results[method] = {
            "final_median": _median(finals[method]),
            "final_q1": low,
            "final_q3": high,
            "time_to_target_median_s": _median(times),
            "seeds_reaching_target": sum(math.isfinite(t) for t in times),
            "trials_median": _median([run.trials_started for run in runs[method]]),
            "steps_median": _median([run.resource_steps for run in runs[method]]),
            "runs_hitting_trial_cap": sum(run.stop_reason == "max_trials" for run in runs[method]),
            "wall_s": wall[method],
            "finals": finals[method],
            "times_to_target_s": times,
        }
    base_time = results[baseline]["time_to_target_median_s"]
    for method in methods:
        own = results[method]["time_to_target_median_s"]
        speedup = base_time / own if math.isfinite(own) and math.isfinite(base_time) else None
        results[method]["speedup_vs_random"] = speedup
    # Where the space can be enumerated: no method reaches the target sooner than this, which
    # bounds the speed-up over random search any method can show on this benchmark.
    fastest_time_to = getattr(benchmark, "fastest_time_to", None)
    fastest = (
        float(fastest_time_to(target)) if fastest_time_to and not multi_objective else math.nan
    )
    attainable = base_time / fastest if math.isfinite(fastest) and fastest > 0 else None
    return {
        "case": case_name,
        "benchmark": benchmark.name,
        "multi_objective": multi_objective,
        "max_resource_only": max_resource_only,
        "max_resource": benchmark.max_resource,
        "budget_s": budget_s,
        "n_workers": n_workers,
        "max_trials": max_trials,
        "seeds": list(seeds),
        "target": target,
        "fastest_time_to_target_s": fastest,
        "attainable_speedup_vs_random": attainable,
        "optimum": optimum,
        "reference_point": benchmark.reference_point if multi_objective else None,
        "max_hypervolume": benchmark.max_hypervolume if multi_objective else None,
        "methods": results,
    }


# -- the whole run --------------------------------------------------------------------------------


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def machine_info() -> dict[str, Any]:
    return {
        "cpu_count": os.cpu_count(),
        "cpu_model": cpu_model(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "libraries": {name: package_version(name) for name in LIBRARIES},
    }


def bench(args: argparse.Namespace) -> dict[str, Any]:
    started = time.perf_counter()
    result: dict[str, Any] = {
        "machine": machine_info(),
        "loadavg_start": loadavg(),
        "seeds": args.seeds,
        "quick": args.quick,
        "n_workers": N_WORKERS,
        "grace_period": GRACE_PERIOD,
        "reduction_factor": REDUCTION_FACTOR,
    }
    have_syne_tune = syne_tune_available()
    sizes = (1_000,) if args.quick else OVERHEAD_SIZES
    overhead: list[dict[str, Any]] = []
    for method in (TRELLIS_ASHA, TRELLIS_MOASHA, BAYESIAN, BAYESIAN_GP):
        print(f"overhead: {method} to {max(sizes):,} trials", flush=True)
        overhead.append(scheduler_overhead(method, sizes))
    if have_syne_tune:
        for method in (SYNE_ASHA, SYNE_MOASHA, SYNE_MOASHA_FIXED):
            print(f"overhead: {method} to {SYNE_TUNE_OVERHEAD_SIZE:,} trials", flush=True)
            overhead.append(scheduler_overhead(method, (SYNE_TUNE_OVERHEAD_SIZE,)))
    result["overhead"] = overhead

    seeds = list(range(args.seeds))
    scale = 0.4 if args.quick else 1.0
    cases: list[dict[str, Any]] = []
    skipped: dict[str, str] = {}
    for case in default_cases():
        try:
            benchmark = case.build()
        except (ImportError, FileNotFoundError, LookupError) as error:
            skipped[case.name] = f"{type(error).__name__}: {error}"
            print(f"{case.name}: skipped ({error})", flush=True)
            continue
        methods = [
            m
            for m in (MULTI_METHODS if case.multi_objective else SINGLE_METHODS)
            if have_syne_tune or m not in SYNE_TUNE_METHODS
        ]
        budget = scale * case.evaluations_per_worker * benchmark.full_evaluation_seconds()
        print(
            f"{case.name}: {len(methods)} methods x {len(seeds)} seeds, budget {budget:,.1f}"
            " simulated s",
            flush=True,
        )
        cases.append(
            run_case(
                case.name,
                benchmark,
                methods,
                seeds,
                budget,
                max_resource_only=case.max_resource_only,
                multi_objective=case.multi_objective,
            )
        )
    result["cases"] = cases
    result["skipped"] = skipped
    if not have_syne_tune:
        skipped["syne-tune"] = "not installed: pip install --no-deps syne-tune==0.16.0 dill pandas"
    result["loadavg_end"] = loadavg()
    result["peak_rss_mb"] = peak_rss_mb()
    result["total_s"] = time.perf_counter() - started
    return result


# -- report ---------------------------------------------------------------------------------------


def overhead_table(result: dict[str, Any]) -> str:
    lines = [
        "| Scheduler | trials so far | suggest p50 ms | on_result p50 ms"
        " | suggest + on_result p50 ms | p99 ms | reports/trial |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for entry in result["overhead"]:
        for key, row in entry.items():
            if not isinstance(row, dict):
                continue
            lines.append(
                f"| {entry['method']} | {int(key):,} | {row['suggest_p50_ms']:.3f}"
                f" | {row['on_result_p50_ms']:.3f} | {row['pair_p50_ms']:.3f}"
                f" | {row['pair_p99_ms']:.3f} | {row['reports_per_trial']:.1f} |"
            )
    return "\n".join(lines)


def _seconds(value: float) -> str:
    return "not reached" if not math.isfinite(value) else fmt(value, 1)


def _value(value: float, digits: int) -> str:
    return "none" if not math.isfinite(value) else f"{value:.{digits}g}"


def quality_table(result: dict[str, Any], multi_objective: bool) -> str:
    what = "final HV / max HV" if multi_objective else "final regret"
    lines = [
        f"| Benchmark | method | target | median time to target s | seeds reaching"
        f" | speed-up vs random | {what} median [q1, q3] | trials | steps |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for case in result["cases"]:
        if case["multi_objective"] != multi_objective:
            continue
        seeds = len(case["seeds"])
        for method, row in case["methods"].items():
            speedup = row["speedup_vs_random"]
            lines.append(
                f"| {case['case']} | {method} | {_value(case['target'], 3)}"
                f" | {_seconds(row['time_to_target_median_s'])}"
                f" | {row['seeds_reaching_target']}/{seeds}"
                f" | {'n/a' if speedup is None else f'{speedup:.2f}x'}"
                f" | {_value(row['final_median'], 3)} [{_value(row['final_q1'], 3)},"
                f" {_value(row['final_q3'], 3)}]"
                f" | {row['trials_median']:,.0f} | {row['steps_median']:,.0f} |"
            )
    bounds = [
        f"- {case['case']}: no method can reach the target before"
        f" {_seconds(case['fastest_time_to_target_s'])} simulated s (the right config alone,"
        " stepped to the first good enough resource), so at most"
        f" {case['attainable_speedup_vs_random']:.2f}x over random search is attainable"
        for case in result["cases"]
        if case["multi_objective"] == multi_objective
        and case.get("attainable_speedup_vs_random") is not None
    ]
    if bounds:
        lines += ["", *bounds]
    return "\n".join(lines)


def print_report(result: dict[str, Any], output: Path | None) -> None:
    m = result["machine"]
    libs = ", ".join(f"{k} {v}" for k, v in m["libraries"].items())
    print()
    print(
        f"## Tuner: {m['cpu_count']} CPUs ({m['cpu_model']}), Python {m['python']},"
        f" load average {fmt(result['loadavg_start'], 2)} at start,"
        f" {fmt(result['loadavg_end'], 2)} at end; total {result['total_s']:.0f} s,"
        f" peak RSS {result['peak_rss_mb']:,.0f} MB"
    )
    print()
    print(f"Libraries: {libs}")
    print()
    print(
        "### Scheduler overhead (one trial after another; each trial reports epochs 1..27 until"
        " stopped, BayesianSearch (TPE or GP) once at epoch 27; medians over the last"
        f" {OVERHEAD_WINDOW} trials before each size)"
    )
    print()
    print(overhead_table(result))
    goal_rows = [
        (entry["method"], entry[str(size)]["pair_p50_ms"])
        for entry in result["overhead"]
        if entry["method"] in (TRELLIS_ASHA, TRELLIS_MOASHA)
        for size in OVERHEAD_SIZES
        if str(size) in entry
    ]
    if goal_rows:
        met = all(value < OVERHEAD_GOAL_MS for _, value in goal_rows)
        print()
        print(
            f"Goal: ASHA and MOASHA suggest + on_result under {OVERHEAD_GOAL_MS:g} ms at every"
            f" size: {'met' if met else 'NOT met'}"
            f" (worst {max(value for _, value in goal_rows):.3f} ms)"
        )
    print()
    print(
        f"### Anytime quality ({result['n_workers']} simulated workers, {result['seeds']} seeds,"
        f" grace period {result['grace_period']}, reduction factor {result['reduction_factor']},"
        f" at most {MAX_TRIALS_PER_RUN:,} trials a run;"
        " target = the final value at least 3/4 of random-search seeds reach; LCDB judged on"
        " every report, mf2 on full-fidelity reports only)"
    )
    print()
    print(quality_table(result, multi_objective=False))
    print()
    print(quality_table(result, multi_objective=True))
    print()
    for case in result["cases"]:
        walls = ", ".join(f"{k} {v['wall_s']:.1f} s" for k, v in case["methods"].items())
        capped = ", ".join(
            f"{k} {v['runs_hitting_trial_cap']}/{len(case['seeds'])}"
            for k, v in case["methods"].items()
            if v["runs_hitting_trial_cap"]
        )
        print(
            f"{case['case']}: budget {fmt(case['budget_s'])} simulated s, max resource"
            f" {case['max_resource']}; wall time {walls}"
            + (f"; runs ended by the {case['max_trials']:,}-trial cap: {capped}" if capped else "")
        )
    for name, why in result["skipped"].items():
        print(f"skipped {name}: {why}")
    if output is not None:
        print()
        print(f"results written to {output}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, default=10, help="seeds per method and benchmark")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="overhead to 1,000 trials only and 40%% of the simulated budgets",
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUTPUT, help="JSON results path")
    args = parser.parse_args(argv)
    if args.seeds < 1:
        parser.error("--seeds must be positive")
    result = bench(args)
    result["tables_markdown"] = {
        "overhead": overhead_table(result),
        "quality": quality_table(result, multi_objective=False),
        "quality_multi_objective": quality_table(result, multi_objective=True),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print_report(result, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
