"""Tuner schedulers and Pareto helpers: rung decisions, promotions, brackets, TPE, snapshots."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pytest

from services.tuner.domain.pareto import (
    dominance_matrix,
    epsilon_net_order,
    hypervolume,
    non_dominated_sort,
    pareto_front,
    priority_order,
    ranks_within,
)
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
    Searcher,
    TPESearcher,
    TrialStatus,
    TrialSuggestion,
    hyperband_bracket_distribution,
    restore_scheduler,
    rung_levels,
)
from services.tuner.domain.space import SearchSpace

SPACE = SearchSpace.from_json(
    {
        "lr": {"type": "loguniform", "lower": 1e-6, "upper": 1e-1},
        "batch_size": {"type": "choice", "categories": [8, 16, 32]},
        "epochs": 9,
        "optimizer": {"type": "choice", "categories": ["sgd", "adam"]},
        "momentum": {
            "type": "uniform",
            "lower": 0.5,
            "upper": 0.99,
            "condition": {"param": "optimizer", "in": ["sgd"]},
        },
    }
)
QUADRATIC_SPACE = SearchSpace.from_json(
    {
        "x": {"type": "uniform", "lower": -5, "upper": 5},
        "y": {"type": "uniform", "lower": -5, "upper": 5},
    }
)


def _start(scheduler: Scheduler) -> TrialSuggestion:
    suggestion = scheduler.suggest()
    assert suggestion is not None
    return suggestion


# -- Pareto helpers ------------------------------------------------------------------------------


def test_hypervolume_of_known_point_sets() -> None:
    assert hypervolume([[1, 3], [2, 2], [3, 1]], [4, 4]) == pytest.approx(6.0)
    # Dominated points and points outside the reference box add nothing.
    assert hypervolume([[1, 3], [2, 2], [3, 1], [3, 3], [5, 0]], [4, 4]) == pytest.approx(6.0)
    assert hypervolume([[1, 1, 1]], [2, 2, 2]) == pytest.approx(1.0)
    # Two boxes of volume 2 overlapping in a unit cube.
    assert hypervolume([[1, 2, 2], [2, 1, 2]], [3, 3, 3]) == pytest.approx(3.0)
    assert hypervolume(np.empty((0, 2)), [1, 1]) == 0.0


def test_hypervolume_in_three_dimensions_matches_counting_unit_cells() -> None:
    rng = np.random.default_rng(7)
    for _ in range(5):
        points = rng.integers(0, 5, size=(8, 3))
        cells = np.array(list(itertools.product(range(5), repeat=3)))
        covered = sum(bool(np.any(np.all(points <= cell, axis=1))) for cell in cells)
        assert hypervolume(points, [5, 5, 5]) == pytest.approx(covered)


def test_non_dominated_sort_and_pareto_front() -> None:
    points = np.array([[1, 5], [2, 2], [5, 1], [3, 3], [4, 4], [2, 2], [6, 6]])
    fronts = non_dominated_sort(points)
    assert [front.tolist() for front in fronts] == [[0, 1, 2, 5], [3], [4], [6]]
    assert pareto_front(points).tolist() == [0, 1, 2, 5]
    assert dominance_matrix(points)[1, 3] and not dominance_matrix(points)[1, 5]


def test_epsilon_net_starts_best_on_first_objective_then_takes_the_farthest() -> None:
    points = np.array([[0.0, 1.0], [0.1, 0.9], [0.5, 0.5], [1.0, 0.0]])
    assert epsilon_net_order(points) == [0, 3, 2, 1]


def test_ranks_within_agrees_with_the_full_priority_order() -> None:
    rng = np.random.default_rng(11)
    for _ in range(60):
        count = int(rng.integers(2, 40))
        points = rng.integers(0, 6, size=(count, int(rng.integers(2, 4)))).astype(float)
        order = priority_order(points)
        for index in range(count):
            position = order.index(index)
            for limit in (0, count // 3, count // 2):
                assert ranks_within(points, index, limit) == (position <= limit)


# -- random and grid search ----------------------------------------------------------------------


def test_random_search_samples_the_space_and_never_stops() -> None:
    scheduler = RandomSearch(SPACE, metric="loss", seed=1, max_trials=20)
    for _ in range(20):
        suggestion = _start(scheduler)
        SPACE.validate(suggestion.config)
        assert suggestion.milestone is None and not suggestion.resume
        for epoch in range(1, 10):
            assert scheduler.on_result(suggestion.trial_id, {"loss": 1e9, "epoch": epoch}) is (
                Decision.CONTINUE
            )
        scheduler.on_complete(suggestion.trial_id, {"loss": 1.0})
        assert scheduler.trial_status(suggestion.trial_id) is TrialStatus.COMPLETED
    assert scheduler.suggest() is None


def test_grid_search_visits_every_point_once_then_is_exhausted() -> None:
    scheduler = GridSearch(SPACE, metric="loss", points_per_dimension=2)
    configs = []
    while (suggestion := scheduler.suggest()) is not None:
        configs.append(json.dumps(suggestion.config, sort_keys=True))
        assert scheduler.on_result(suggestion.trial_id, {"loss": 0.0}) is Decision.CONTINUE
    # lr: 2 x batch_size: 3 x (sgd x 2 momenta + adam) = 18.
    assert len(configs) == len(set(configs)) == 18
    assert scheduler.suggest() is None


# -- ASHA ----------------------------------------------------------------------------------------


def test_rung_levels_and_validation() -> None:
    assert rung_levels(1, 3, 27) == [1, 3, 9]
    assert rung_levels(2, 2, 16) == [2, 4, 8]
    assert rung_levels(5, 3, 5) == []
    with pytest.raises(SchedulerError, match="reduction_factor must be > 1"):
        ASHA(SPACE, metric="loss", max_resource=9, reduction_factor=1)
    with pytest.raises(SchedulerError, match="brackets must be from 1 to 3"):
        ASHA(SPACE, metric="loss", max_resource=9, brackets=4)
    with pytest.raises(SchedulerError, match="type must be 'stopping' or 'promotion'"):
        ASHA(SPACE, metric="loss", max_resource=9, type="halving")  # type: ignore[arg-type]


@pytest.mark.parametrize("mode", ["min", "max"])
def test_asha_stopping_keeps_the_top_third_at_a_rung(mode: str) -> None:
    scheduler = ASHA(SPACE, metric="loss", mode=mode, max_resource=9)  # type: ignore[arg-type]
    sign = 1.0 if mode == "min" else -1.0
    losses = [1.0, 2.0, 3.0, 0.5, 1.5, 0.9]
    # Two results: too few to judge. Then the cutoff is numpy.quantile(rung, 1/3):
    # [1, 2, 3] -> 1.67 stops 3; [0.5, 1, 2, 3] -> 1.0 keeps 0.5;
    # [0.5, 1, 1.5, 2, 3] -> 1.17 stops 1.5; [0.5, 0.9, 1, 1.5, 2, 3] -> 0.95 keeps 0.9.
    expected = ["continue", "continue", "stop", "continue", "stop", "continue"]
    decisions = []
    for loss in losses:
        trial_id = _start(scheduler).trial_id
        decisions.append(scheduler.on_result(trial_id, {"epoch": 1, "loss": sign * loss}).value)
    assert decisions == expected
    assert scheduler.trial_status(2) is TrialStatus.STOPPED
    # Between rungs nothing is decided; a stopped trial stays stopped.
    assert scheduler.on_result(0, {"epoch": 2, "loss": sign * 99.0}) is Decision.CONTINUE
    assert scheduler.on_result(2, {"epoch": 2, "loss": sign * 0.0}) is Decision.STOP
    # Reaching max_resource ends the trial.
    assert scheduler.on_result(0, {"epoch": 3, "loss": sign * 1.0}) is Decision.CONTINUE
    assert scheduler.on_result(0, {"epoch": 9, "loss": sign * 1.0}) is Decision.STOP
    assert scheduler.trial_status(0) is TrialStatus.COMPLETED


def test_asha_records_a_skipped_rung_at_the_highest_level_reached() -> None:
    scheduler = ASHA(SPACE, metric="loss", max_resource=27)
    for loss in (1.0, 2.0, 3.0):
        trial_id = _start(scheduler).trial_id
        scheduler.on_result(trial_id, {"epoch": 1, "loss": loss})
    late = _start(scheduler).trial_id
    # Reports only every 4 epochs: epoch 4 is recorded at rung 3 (empty so far), not rung 1.
    assert scheduler.on_result(late, {"epoch": 4, "loss": 5.0}) is Decision.CONTINUE
    state = scheduler.state()["dynamic"]["rungs"][0]
    assert [entry[0] for entry in state[1]] == [late]
    assert late not in [entry[0] for entry in state[0]]


def test_asha_promotion_pauses_then_promotes_the_best_paused_trial() -> None:
    scheduler = ASHA(SPACE, metric="loss", max_resource=9, type="promotion")
    first = [_start(scheduler) for _ in range(3)]
    assert all(s.milestone == 1 and not s.resume for s in first)
    for suggestion, loss in zip(first, [0.3, 0.1, 0.2], strict=True):
        decision = scheduler.on_result(suggestion.trial_id, {"epoch": 1, "loss": loss})
        assert decision is Decision.PAUSE
        assert scheduler.trial_status(suggestion.trial_id) is TrialStatus.PAUSED

    promoted = _start(scheduler)
    assert (promoted.trial_id, promoted.resume, promoted.milestone) == (1, True, 3)
    assert promoted.config == first[1].config
    # 0.2 is above the cutoff 0.167 of [0.1, 0.2, 0.3]: a new trial starts instead.
    fresh = _start(scheduler)
    assert (fresh.trial_id, fresh.resume, fresh.milestone) == (3, False, 1)

    # A resumed trial restarted from scratch replays epoch 1: ignored, not re-recorded.
    assert scheduler.on_result(1, {"epoch": 1, "loss": 0.1}) is Decision.CONTINUE
    assert scheduler.on_result(1, {"epoch": 2, "loss": 0.08}) is Decision.CONTINUE
    assert scheduler.on_result(1, {"epoch": 3, "loss": 0.05}) is Decision.PAUSE

    # [0.1, 0.15, 0.2, 0.3] has cutoff 0.15, so trial 3 (0.15) is now promotable.
    assert scheduler.on_result(3, {"epoch": 1, "loss": 0.15}) is Decision.PAUSE
    promoted = _start(scheduler)
    assert (promoted.trial_id, promoted.resume, promoted.milestone) == (3, True, 3)

    # At rung 3, [0.01] alone is too few to promote from; trial 2 (0.2) is still above rung 1's
    # cutoff, so a new trial starts. Its 0.05 at epoch 1 gets it promoted next.
    assert scheduler.on_result(3, {"epoch": 3, "loss": 0.01}) is Decision.PAUSE
    assert _start(scheduler).trial_id == 4
    assert scheduler.on_result(4, {"epoch": 1, "loss": 0.05}) is Decision.PAUSE
    promoted = _start(scheduler)
    assert (promoted.trial_id, promoted.resume, promoted.milestone) == (4, True, 3)
    assert scheduler.on_result(4, {"epoch": 3, "loss": 0.2}) is Decision.PAUSE
    # Rung 3 now holds [0.01, 0.05, 0.2]: trial 3 goes on to max_resource (milestone None).
    top = _start(scheduler)
    assert (top.trial_id, top.resume, top.milestone) == (3, True, None)
    assert scheduler.on_result(3, {"epoch": 9, "loss": 0.01}) is Decision.STOP
    assert scheduler.trial_status(3) is TrialStatus.COMPLETED


def test_a_paused_trial_that_fails_is_never_promoted() -> None:
    scheduler = ASHA(SPACE, metric="loss", max_resource=9, type="promotion")
    for loss in (0.1, 0.2, 0.3):
        trial_id = _start(scheduler).trial_id
        scheduler.on_result(trial_id, {"epoch": 1, "loss": loss})
    scheduler.on_error(0)
    assert scheduler.trial_status(0) is TrialStatus.FAILED
    suggestion = _start(scheduler)
    assert (suggestion.trial_id, suggestion.resume) == (3, False)


def test_results_for_unknown_trials_or_without_the_metric_are_rejected() -> None:
    scheduler = ASHA(SPACE, metric="loss", max_resource=9)
    trial_id = _start(scheduler).trial_id
    with pytest.raises(SchedulerError, match="unknown trial 42"):
        scheduler.on_result(42, {"epoch": 1, "loss": 1.0})
    with pytest.raises(SchedulerError, match="has no 'loss'"):
        scheduler.on_result(trial_id, {"epoch": 1, "acc": 1.0})
    with pytest.raises(SchedulerError, match="has no 'epoch'"):
        scheduler.on_result(trial_id, {"loss": 1.0})


def test_nan_metric_ranks_worst() -> None:
    scheduler = ASHA(SPACE, metric="loss", max_resource=9)
    for loss in (1.0, 2.0):
        scheduler.on_result(_start(scheduler).trial_id, {"epoch": 1, "loss": loss})
    trial_id = _start(scheduler).trial_id
    assert scheduler.on_result(trial_id, {"epoch": 1, "loss": float("nan")}) is Decision.STOP
    json.dumps(scheduler.state(), allow_nan=False)


class RecordingSearcher(Searcher):
    kind = "test_recording"

    def __init__(self, space: SearchSpace) -> None:
        super().__init__(space)
        self.results: list[tuple[int, float, float]] = []
        self._rng = np.random.default_rng(0)

    def suggest(self, trial_id: int) -> dict[str, Any] | None:
        return self.space.sample(self._rng)

    def on_result(
        self, trial_id: int, config: Mapping[str, Any], resource: float, value: float
    ) -> None:
        self.results.append((trial_id, resource, value))

    def state(self) -> dict[str, Any]:
        return {"kind": self.kind, "space": self.space.to_json(), "results": self.results}

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> RecordingSearcher:
        searcher = cls(SearchSpace.from_json(state["space"]))
        searcher.results = [(int(t), float(r), float(v)) for t, r, v in state["results"]]
        return searcher


def test_a_plugged_in_searcher_learns_rung_and_final_results() -> None:
    searcher = RecordingSearcher(SPACE)
    scheduler = ASHA(SPACE, metric="acc", mode="max", max_resource=9, searcher=searcher)
    trial_id = _start(scheduler).trial_id
    for epoch in range(1, 10):
        scheduler.on_result(trial_id, {"epoch": epoch, "acc": epoch / 10})
    assert searcher.results == [(0, 1, 0.1), (0, 3, 0.3), (0, 9, 0.9)]
    restored = restore_scheduler(json.loads(json.dumps(scheduler.state())))
    assert isinstance(restored.searcher, RecordingSearcher)
    assert restored.searcher.results == searcher.results


# -- Hyperband -----------------------------------------------------------------------------------


def test_hyperband_spreads_trials_over_brackets_by_the_default_distribution() -> None:
    probabilities = hyperband_bracket_distribution([1, 3, 9], 27, 4)
    # Proportional to 4/(4*1), 4/(3*3), 4/(2*9), 4/(1*27).
    raw = np.array([1.0, 4 / 9, 4 / 18, 4 / 27])
    assert probabilities == pytest.approx((raw / raw.sum()).tolist())

    scheduler = Hyperband(SPACE, metric="loss", max_resource=27, seed=5)
    assert scheduler.brackets == 4
    assert scheduler.bracket_levels == [[1, 3, 9], [3, 9], [9], []]
    brackets = [scheduler.trial_bracket(_start(scheduler).trial_id) for _ in range(2000)]
    counts = np.bincount(brackets, minlength=4) / len(brackets)
    assert counts == pytest.approx(probabilities, abs=0.03)


def test_hyperband_bracket_decides_first_at_its_own_grace_period() -> None:
    scheduler = Hyperband(SPACE, metric="loss", max_resource=27, seed=0)
    by_bracket: dict[int, list[int]] = {}
    while len(by_bracket.get(1, [])) < 4:
        trial_id = _start(scheduler).trial_id
        by_bracket.setdefault(scheduler.trial_bracket(trial_id), []).append(trial_id)
    decisions = []
    for trial_id, loss in zip(by_bracket[1], [1.0, 2.0, 3.0, 4.0], strict=True):
        # Level 1 is not a rung of bracket 1: a terrible value there changes nothing.
        assert scheduler.on_result(trial_id, {"epoch": 1, "loss": 100.0}) is Decision.CONTINUE
        decisions.append(scheduler.on_result(trial_id, {"epoch": 3, "loss": loss}))
    assert decisions == [Decision.CONTINUE, Decision.CONTINUE, Decision.STOP, Decision.STOP]


# -- MOASHA and multi-objective random search ----------------------------------------------------


def test_moasha_keeps_a_dominating_trial_and_stops_a_dominated_one() -> None:
    scheduler = MOASHA(
        SPACE, metrics=["loss", "accuracy"], modes=["min", "max"], max_resource=9, seed=0
    )
    results = [(0.5, 0.5), (0.4, 0.6), (0.9, 0.1), (0.1, 0.9), (0.45, 0.55), (0.3, 0.8)]
    decisions = []
    for loss, accuracy in results:
        trial_id = _start(scheduler).trial_id
        result = {"epoch": 1, "loss": loss, "accuracy": accuracy}
        decisions.append(scheduler.on_result(trial_id, result))
    assert decisions == [
        Decision.CONTINUE,  # fewer than eta results
        Decision.CONTINUE,
        Decision.STOP,  # dominated by both others: position 2 of 3
        Decision.CONTINUE,  # dominates everything: position 0 of 4
        Decision.STOP,  # dominated by (0.4, 0.6) and (0.1, 0.9)
        Decision.CONTINUE,  # second front of one point after (0.1, 0.9): position 1 < 6 / 3
    ]
    assert scheduler.on_result(3, {"epoch": 9, "loss": 0.1, "accuracy": 0.9}) is Decision.STOP


def test_moasha_breaks_ties_in_a_front_by_epsilon_net() -> None:
    scheduler = MOASHA(SPACE, metrics=["a", "b"], max_resource=9, reduction_factor=1.5)
    decisions = []
    for a, b in [(0.0, 1.0), (1.0, 0.0), (0.1, 0.9), (0.6, 0.3)]:
        trial_id = _start(scheduler).trial_id
        decisions.append(scheduler.on_result(trial_id, {"epoch": 1, "a": a, "b": b}))
    # One front throughout. The net starts at the best first objective (0, 1), then takes the
    # farthest point (1, 0); (0.1, 0.9) hugs the seed and comes third of 3 (limit 1 / 1.5):
    # stopped, though sorting on the first objective would have kept it. (0.6, 0.3) is 0.5
    # from its nearest pick, so it comes third of 4 and continues (needs position < 4 / 1.5).
    assert decisions == [Decision.CONTINUE, Decision.CONTINUE, Decision.STOP, Decision.CONTINUE]


def test_mo_random_search_tracks_the_pareto_set() -> None:
    scheduler = MORandomSearch(SPACE, metrics=["loss", "accuracy"], modes=["min", "max"], seed=3)
    results = [(0.5, 0.5), (0.4, 0.6), (0.9, 0.1), (0.1, 0.3)]
    for loss, accuracy in results:
        trial_id = _start(scheduler).trial_id
        assert (
            scheduler.on_result(trial_id, {"epoch": 1, "loss": loss, "accuracy": accuracy})
            is Decision.CONTINUE
        )
    assert scheduler.pareto_trials() == [1, 3]
    assert scheduler.results[2] == {"loss": 0.9, "accuracy": 0.1}


# -- Bayesian search (TPE) -----------------------------------------------------------------------


def _quadratic(config: Mapping[str, Any]) -> float:
    return float((config["x"] - 1.3) ** 2 + (config["y"] + 0.7) ** 2)


def _best_of(scheduler: Scheduler, trials: int) -> float:
    best = float("inf")
    for _ in range(trials):
        suggestion = _start(scheduler)
        value = _quadratic(suggestion.config)
        best = min(best, value)
        scheduler.on_complete(suggestion.trial_id, {"loss": value})
    return best


def test_tpe_beats_random_search_on_a_quadratic() -> None:
    tpe = [_best_of(BayesianSearch(QUADRATIC_SPACE, metric="loss", seed=s), 60) for s in range(5)]
    rand = [_best_of(RandomSearch(QUADRATIC_SPACE, metric="loss", seed=s), 60) for s in range(5)]
    assert np.mean(tpe) < 0.5 * np.mean(rand)
    assert sum(t < r for t, r in zip(tpe, rand, strict=True)) >= 4


def test_tpe_maximises_and_handles_conditional_and_categorical_parameters() -> None:
    searcher = TPESearcher(SPACE, mode="max", seed=2, n_startup=5)

    def score(config: Mapping[str, Any]) -> float:
        momentum = 1 - 2 * abs(config["momentum"] - 0.95) if config["optimizer"] == "sgd" else 0.0
        lr_penalty = abs(float(np.log10(config["lr"])) + 3) / 5
        return float(momentum + (config["batch_size"] == 16) - lr_penalty)

    values: list[float] = []
    for trial_id in range(60):
        config = searcher.suggest(trial_id)
        assert config is not None
        SPACE.validate(config)
        values.append(score(config))
        searcher.on_result(trial_id, config, 9, values[-1])
    # The best score is 2 (sgd, momentum 0.95, batch 16, lr 1e-3).
    assert float(np.mean(values[-20:])) > max(1.5, float(np.mean(values[:10])) + 0.5)


def test_tpe_uses_the_highest_level_with_enough_observations() -> None:
    searcher = TPESearcher(QUADRATIC_SPACE, seed=0, n_startup=3)
    for trial_id, x in enumerate([-4.0, -3.0, -2.0, 4.0]):
        config = {"x": x, "y": 0.0}
        searcher.on_result(trial_id, config, 1, abs(x - 4.0))
    # At level 9 only two observations, both claiming x near -4 is best: too few to model.
    for trial_id, x in enumerate([-4.0, -3.9]):
        searcher.on_result(trial_id, {"x": x, "y": 0.0}, 9, 0.0)
    assert searcher._model_level() == 1.0
    suggestions = [searcher.suggest(10 + i) for i in range(20)]
    assert np.mean([s["x"] for s in suggestions if s is not None]) > 0.0


# -- snapshots -----------------------------------------------------------------------------------


def _drive(scheduler: Scheduler, steps: int, seed: int) -> list[Any]:
    """Feeds a scheduler a reproducible stream of results; returns everything it said."""
    rng = np.random.default_rng(seed)
    running: dict[int, int] = {}
    log: list[Any] = []
    for _ in range(steps):
        if len(running) < 4:
            suggestion = scheduler.suggest()
            log.append(suggestion)
            if suggestion is not None:
                running[suggestion.trial_id] = 0
            continue
        trial_id = sorted(running)[int(rng.integers(len(running)))]
        running[trial_id] += 1
        result = {
            "epoch": running[trial_id],
            "loss": float(rng.uniform()),
            "accuracy": float(rng.uniform()),
        }
        decision = scheduler.on_result(trial_id, result)
        log.append((trial_id, decision))
        if decision is not Decision.CONTINUE:
            del running[trial_id]
            if rng.uniform() < 0.1:
                scheduler.on_error(trial_id)
    return log


SCHEDULER_FACTORIES: dict[str, Callable[[], Scheduler]] = {
    "random": lambda: RandomSearch(SPACE, metric="loss", seed=4, max_trials=40),
    "grid": lambda: GridSearch(SPACE, metric="loss", points_per_dimension=3),
    "bayesian": lambda: BayesianSearch(SPACE, metric="loss", seed=4),
    "asha_tpe": lambda: ASHA(SPACE, metric="loss", max_resource=9, searcher="bayesian", seed=4),
    "asha_promotion": lambda: ASHA(
        SPACE, metric="accuracy", mode="max", max_resource=9, type="promotion", seed=4
    ),
    "hyperband_promotion": lambda: Hyperband(
        SPACE, metric="loss", max_resource=27, type="promotion", seed=4
    ),
    "moasha": lambda: MOASHA(
        SPACE, metrics=["loss", "accuracy"], modes=["min", "max"], max_resource=9, brackets=2
    ),
    "mo_random": lambda: MORandomSearch(SPACE, metrics=["loss", "accuracy"], seed=4),
}


@pytest.mark.parametrize("name", sorted(SCHEDULER_FACTORIES))
def test_state_round_trip_continues_identically(name: str) -> None:
    original = SCHEDULER_FACTORIES[name]()
    _drive(original, 150, seed=1)
    snapshot = json.loads(json.dumps(original.state(), allow_nan=False))
    restored = Scheduler.restore(snapshot)
    assert type(restored) is type(original)
    assert restored.state() == snapshot
    assert _drive(restored, 150, seed=2) == _drive(original, 150, seed=2)
    # Trial ids continue where they stopped: nothing reused, nothing skipped.
    assert restored.trial_count == original.trial_count


def test_restore_rejects_unknown_kinds_and_versions() -> None:
    state = ASHA(SPACE, metric="loss", max_resource=9).state()
    with pytest.raises(SchedulerError, match="unknown scheduler kind 'nope'"):
        restore_scheduler({**state, "kind": "nope"})
    with pytest.raises(SchedulerError, match="unsupported scheduler state version 99"):
        restore_scheduler({**state, "version": 99})
