"""The tuning simulator (simulated clock, workers, pause/resume) and bench/tune.py's pieces."""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pytest

from bench.tune import (
    MO_RANDOM,
    RANDOM,
    SYNE_ASHA,
    SYNE_MOASHA,
    SYNE_MOASHA_FIXED,
    TRELLIS_ASHA,
    TRELLIS_MOASHA,
    RankedNonDominatedPriority,
    make_scheduler,
    quality_table,
    run_case,
    scheduler_overhead,
    syne_tune_space,
)
from bench.tune_benchmarks import LCDBBenchmark, LearningCurves
from services.tuner.domain.pareto import hypervolume
from services.tuner.domain.schedulers import (
    ASHA,
    Decision,
    RandomSearch,
    TrialStatus,
    TrialSuggestion,
)
from services.tuner.domain.simulator import (
    Report,
    SimulationError,
    SimulationResult,
    simulate,
)
from services.tuner.domain.space import SearchSpace


class Toy:
    """loss = (x - 0.2)^2 + 1 / resource (y = (x - 0.8)^2 + 1 / resource), one second a step."""

    name = "toy"
    resource_attr = "epoch"

    def __init__(self, max_resource: int = 9, two_objectives: bool = False) -> None:
        self.max_resource = max_resource
        self.config_space: dict[str, Any] = {"x": {"type": "uniform", "lower": 0.0, "upper": 1.0}}
        self.metrics = ["loss", "y"] if two_objectives else ["loss"]
        self.modes = ["min"] * len(self.metrics)
        self.optimum = 1.0 / max_resource
        self.reference_point = [2.0, 2.0]
        grid = [{"x": x} for x in np.linspace(0.0, 1.0, 1001)]
        front = [[(c["x"] - 0.2) ** 2, (c["x"] - 0.8) ** 2] for c in grid]
        self.max_hypervolume = hypervolume(np.array(front) + 1.0 / max_resource, [2.0, 2.0])

    def evaluate(self, config: Mapping[str, Any], resource: int) -> dict[str, float]:
        x = float(config["x"])
        out = {"loss": (x - 0.2) ** 2 + 1.0 / resource}
        if len(self.metrics) == 2:
            out["y"] = (x - 0.8) ** 2 + 1.0 / resource
        return out

    def elapsed(self, config: Mapping[str, Any], resource: int) -> float:
        return 1.0

    def full_evaluation_seconds(self) -> float:
        return float(self.max_resource)


def _space(benchmark: Toy) -> SearchSpace:
    return SearchSpace.from_json(benchmark.config_space)


def _asha(benchmark: Toy, seed: int = 0, **kwargs: Any) -> ASHA:
    return ASHA(
        _space(benchmark),
        metric="loss",
        resource_attr="epoch",
        max_resource=benchmark.max_resource,
        grace_period=1,
        reduction_factor=3,
        seed=seed,
        **kwargs,
    )


def _random(benchmark: Toy, seed: int = 0, max_trials: int | None = None) -> RandomSearch:
    return RandomSearch(
        _space(benchmark),
        metric="loss",
        resource_attr="epoch",
        max_resource=benchmark.max_resource,
        seed=seed,
        max_trials=max_trials,
    )


def _by_trial(result: SimulationResult) -> dict[int, list[Report]]:
    trials: dict[int, list[Report]] = {}
    for report in result.reports:
        trials.setdefault(report.trial_id, []).append(report)
    return trials


def test_asha_stops_bad_trials_early() -> None:
    toy = Toy()
    asha = simulate(_asha(toy, max_trials=60), toy, n_workers=4)
    random = simulate(_random(toy, max_trials=60), toy, n_workers=4)
    assert asha.trials_started == random.trials_started == 60
    assert random.resource_steps == 60 * toy.max_resource
    assert asha.resource_steps < 0.6 * random.resource_steps
    assert asha.end_time < random.end_time
    assert asha.stop_reason == random.stop_reason == "exhausted"
    stopped_early = [r for r in _by_trial(asha).values() if r[-1].resource < toy.max_resource]
    assert len(stopped_early) > 20


def test_workers_run_trials_in_parallel() -> None:
    toy = Toy()
    ends = {
        workers: simulate(_random(toy, max_trials=8), toy, n_workers=workers).end_time
        for workers in (1, 2, 4)
    }
    assert ends[1] == 8 * toy.max_resource
    assert ends[1] / ends[4] == pytest.approx(4.0)
    assert ends[1] / ends[2] == pytest.approx(2.0)


def test_completed_trials_get_on_complete_and_time_is_monotone() -> None:
    toy = Toy()
    scheduler = _random(toy, max_trials=5)
    result = simulate(scheduler, toy, n_workers=2)
    assert all(scheduler.trial_status(t) is TrialStatus.COMPLETED for t in range(5))
    times = [report.time for report in result.reports]
    assert times == sorted(times)
    for reports in _by_trial(result).values():
        assert [r.resource for r in reports] == list(range(1, toy.max_resource + 1))


def test_paused_trials_resume_from_their_last_resource() -> None:
    toy = Toy()
    scheduler = _asha(toy, type="promotion", max_trials=30)
    result = simulate(scheduler, toy, n_workers=3)
    assert result.resumed > 0
    gaps = 0
    for reports in _by_trial(result).values():
        # Never a replay: each report is one step beyond the previous one.
        assert [r.resource for r in reports] == list(range(1, len(reports) + 1))
        gaps += sum(b.time - a.time > 1.0 for a, b in itertools.pairwise(reports))
    assert gaps > 0  # some trials waited, paused, between two steps
    finished = [r for r in _by_trial(result).values() if r[-1].resource == toy.max_resource]
    assert finished


def test_results_are_deterministic_for_a_seed() -> None:
    toy = Toy()
    first = simulate(_asha(toy, seed=3, max_trials=40), toy, n_workers=4)
    again = simulate(_asha(toy, seed=3, max_trials=40), toy, n_workers=4)
    other = simulate(_asha(toy, seed=4, max_trials=40), toy, n_workers=4)
    assert first.reports == again.reports
    assert first.reports != other.reports


def test_time_budget_cuts_the_run() -> None:
    toy = Toy()
    result = simulate(_random(toy), toy, n_workers=2, max_simulated_time=20.5)
    assert result.stop_reason == "time"
    assert result.end_time == 20.5
    assert all(report.time <= 20.5 for report in result.reports)
    assert result.resource_steps == 2 * 20


def test_max_trials_of_the_simulator() -> None:
    toy = Toy()
    result = simulate(_random(toy), toy, n_workers=4, max_trials=6)
    assert result.trials_started == 6
    assert result.stop_reason == "max_trials"
    assert result.resource_steps == 6 * toy.max_resource


def test_anytime_helpers() -> None:
    reports = [
        Report(1.0, 0, 1, {"loss": 5.0, "y": 1.0}),
        Report(2.0, 1, 1, {"loss": 3.0, "y": 3.0}),
        Report(3.0, 0, 2, {"loss": 4.0, "y": 0.5}),
        Report(4.0, 1, 2, {"loss": 1.0, "y": 2.0}),
        Report(5.0, 2, 1, {"loss": math.nan, "y": 0.0}),
    ]
    result = SimulationResult(reports, {0: {}, 1: {}, 2: {}}, 2, 2, 5.0, "exhausted")
    assert result.best_so_far("loss") == [(1.0, 5.0), (2.0, 3.0), (4.0, 1.0)]
    assert result.best_so_far("loss", "max") == [(1.0, 5.0)]
    assert result.best_so_far("loss", max_resource_only=True) == [(3.0, 4.0), (4.0, 1.0)]
    assert result.time_to_reach(3.0, "loss") == 2.0
    assert result.time_to_reach(0.5, "loss") is None
    assert result.final_best("loss") == 1.0
    assert result.final_best("loss", max_resource_only=True) == 1.0
    curve = result.hypervolume_over_time([6.0, 4.0], ["loss", "y"], ["min", "min"])
    assert [time for time, _ in curve] == [1.0, 2.0, 3.0, 4.0]
    assert curve[0][1] == pytest.approx(1.0 * 3.0)
    # Final front (1, 2) and (4, 0.5): 5 x 2 + 2 x 1.5.
    assert curve[-1][1] == pytest.approx(13.0)
    volumes = [volume for _, volume in curve]
    assert volumes == sorted(volumes)
    # A "max" metric counts above its reference: y <= 3 never beats 4 when maximised.
    assert result.hypervolume_over_time([6.0, 4.0], ["loss", "y"], ["min", "max"]) == []
    flipped = result.hypervolume_over_time([6.0, 0.0], ["loss", "y"], ["min", "max"])
    # As losses (loss, -y): (5, -1), then (3, -3) dominating it, then (1, -2) joining it.
    assert [time for time, _ in flipped] == [1.0, 2.0, 4.0]
    assert [volume for _, volume in flipped] == pytest.approx([1.0, 9.0, 13.0])


class _ResumesUnknown:
    def suggest(self) -> TrialSuggestion | None:
        return TrialSuggestion(7, {"x": 0.5}, resume=True)

    def on_result(self, trial_id: int, result: Mapping[str, float]) -> Decision:
        return Decision.CONTINUE

    def on_complete(self, trial_id: int, result: Mapping[str, float] | None = None) -> None:
        return None


def test_contract_errors() -> None:
    toy = Toy()
    with pytest.raises(SimulationError):
        simulate(_ResumesUnknown(), toy)
    with pytest.raises(ValueError):
        simulate(_random(toy, max_trials=1), toy, n_workers=0)


def test_lcdb_benchmark_on_given_curves() -> None:
    curves = LearningCurves(
        openmlid=0,
        dataset="toy",
        anchors=[16, 32, 64],
        learners=["a", "b"],
        error=np.array([[0.5, 0.4, 0.3], [0.6, 0.3, 0.1]]),
        test_error=np.array([[0.5, 0.4, 0.3], [0.6, 0.3, 0.1]]),
        train_time=np.array([[0.0, 1.0, 2.0], [1.0, 2.0, 4.0]]),
        dropped_learners=[],
    )
    benchmark = LCDBBenchmark(curves)
    assert benchmark.max_resource == 3
    assert benchmark.optimum == pytest.approx(0.1)
    assert benchmark.evaluate({"learner": "b"}, 3)["error"] == pytest.approx(0.1)
    assert benchmark.elapsed({"learner": "a"}, 1) == pytest.approx(1e-3)
    assert benchmark.full_evaluation_seconds() == pytest.approx((3.001 + 7.0) / 2)
    result = simulate(
        make_scheduler(TRELLIS_ASHA, benchmark, 0), benchmark, n_workers=2, max_simulated_time=30
    )
    assert result.final_best("error") == pytest.approx(0.1)
    # The optimum only at b's last anchor (1 + 2 + 4 s); within 0.2 of it, b at its second
    # anchor (1 + 2 s) beats a at its third (0.001 + 1 + 2 s).
    assert benchmark.fastest_time_to(0.0) == pytest.approx(7.0)
    assert benchmark.fastest_time_to(0.2) == pytest.approx(3.0)
    assert benchmark.fastest_time_to(0.5) == pytest.approx(1e-3)
    assert benchmark.fastest_time_to(-1.0) == math.inf
    case = run_case(
        "toy-lcdb", benchmark, [RANDOM, TRELLIS_ASHA], [0, 1], budget_s=60.0,
        max_resource_only=False, multi_objective=False,
    )  # fmt: skip
    fastest = benchmark.fastest_time_to(case["target"])
    assert case["fastest_time_to_target_s"] == fastest
    random_time = case["methods"][RANDOM]["time_to_target_median_s"]
    assert case["attainable_speedup_vs_random"] == pytest.approx(random_time / fastest)
    for row in case["methods"].values():  # nothing beats the bound
        assert row["time_to_target_median_s"] >= fastest
    assert "at most" in quality_table({"cases": [case]}, multi_objective=False)


# -- bench/tune.py, tiny budgets --------------------------------------------------------------------


def test_overhead_measurement_runs() -> None:
    out = scheduler_overhead(TRELLIS_ASHA, sizes=(40, 80), window=20)
    assert out["80"]["trials"] == 20
    assert out["80"]["pair_p50_ms"] > 0
    assert out["40"]["reports_per_trial"] >= 1


def test_run_case_single_and_multi_objective() -> None:
    toy = Toy()
    single = run_case(
        "toy",
        toy,
        [RANDOM, TRELLIS_ASHA],
        [0, 1, 2],
        budget_s=60.0,
        max_resource_only=False,
        multi_objective=False,
    )
    assert single["methods"][RANDOM]["speedup_vs_random"] == pytest.approx(1.0)
    assert single["methods"][RANDOM]["seeds_reaching_target"] >= 3 * 3 // 4
    assert (
        single["methods"][TRELLIS_ASHA]["trials_median"]
        > single["methods"][RANDOM]["trials_median"]
    )
    assert "toy" in quality_table({"cases": [single]}, multi_objective=False)
    multi = run_case(
        "toy-mo",
        Toy(two_objectives=True),
        [MO_RANDOM, TRELLIS_MOASHA],
        [0, 1],
        budget_s=60.0,
        max_resource_only=True,
        multi_objective=True,
    )
    for row in multi["methods"].values():
        assert 0.0 < row["final_median"] <= 1.0
    assert "toy-mo" in quality_table({"cases": [multi]}, multi_objective=True)


def test_syne_tune_schedulers_on_the_simulator() -> None:
    pytest.importorskip("syne_tune")
    toy = Toy()
    space = syne_tune_space({"x": toy.config_space["x"], "c": 3})
    assert space["c"] == 3
    case = run_case(
        "toy",
        toy,
        [RANDOM, SYNE_ASHA],
        [0, 1],
        60.0,
        max_resource_only=False,
        multi_objective=False,
    )
    assert case["methods"][SYNE_ASHA]["trials_median"] > case["methods"][RANDOM]["trials_median"]
    first = simulate(make_scheduler(SYNE_ASHA, toy, 5), toy, n_workers=4, max_simulated_time=40)
    again = simulate(make_scheduler(SYNE_ASHA, toy, 5), toy, n_workers=4, max_simulated_time=40)
    assert first.reports == again.reports
    two = Toy(two_objectives=True)
    for method in (SYNE_MOASHA, SYNE_MOASHA_FIXED):
        result = simulate(make_scheduler(method, two, 0), two, n_workers=4, max_simulated_time=40)
        assert result.trials_started > 4
    ranks = RankedNonDominatedPriority()(
        np.array([[5.0, 5.0], [4.0, 6.0], [6.0, 4.0], [7.0, 7.0], [0.0, 0.0]])
    )
    assert ranks[4] == 0 and ranks[3] == 4
    assert sorted(ranks.tolist()) == [0, 1, 2, 3, 4]


def test_mf2_benchmarks() -> None:
    from bench.tune_benchmarks import branin_currin, import_mf2, mf2_hartmann3

    try:
        import_mf2()
    except ImportError:
        pytest.skip("mf2 is not installed")

    hartmann = mf2_hartmann3()
    config = {"x0": 0.1, "x1": 0.55, "x2": 0.85}
    high = hartmann.evaluate(config, hartmann.max_resource)["y"]
    low = hartmann.evaluate(config, 1)["y"]
    middle = hartmann.evaluate(config, 9)["y"]
    assert min(high, low) <= middle <= max(high, low)
    assert hartmann.optimum == pytest.approx(-3.86278, abs=1e-4)
    total = sum(hartmann.elapsed(config, r) for r in range(1, hartmann.max_resource + 1))
    assert total == pytest.approx(hartmann.full_evaluation_seconds())
    pair = branin_currin()
    assert set(pair.evaluate({"x0": 0.5, "x1": 0.5}, 27)) == {"branin", "currin"}
    assert pair.max_hypervolume > 0
