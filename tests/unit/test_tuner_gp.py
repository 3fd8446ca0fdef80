"""The Gaussian-process BO searcher: quality against random search, snapshots, conditions,
pending configs, multi-fidelity levels, and how it is chosen by name."""

from __future__ import annotations

import itertools
import json
import math
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from contracts.tune import TuningJobSpec
from services.tuner.domain.gp import GPSearcher
from services.tuner.domain.jobs import build_scheduler
from services.tuner.domain.schedulers import (
    ASHA,
    BayesianSearch,
    Decision,
    Hyperband,
    RandomSearcher,
    Scheduler,
    SchedulerError,
    Searcher,
    TPESearcher,
    restore_searcher,
)
from services.tuner.domain.space import SearchSpace

REPO_ROOT = Path(__file__).resolve().parents[2]

BRANIN_SPACE = SearchSpace.from_json(
    {
        "x": {"type": "uniform", "lower": -5.0, "upper": 10.0},
        "y": {"type": "uniform", "lower": 0.0, "upper": 15.0},
    }
)
BRANIN_OPTIMUM = 0.397887
MIXED_SPACE = SearchSpace.from_json(
    {
        "x": {"type": "uniform", "lower": -2.0, "upper": 2.0},
        "lr": {"type": "loguniform", "lower": 1e-5, "upper": 1.0},
        "kind": {"type": "choice", "categories": ["a", "b", "c"]},
    }
)
CONDITIONAL_SPACE = SearchSpace.from_json(
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
        "layers": {"type": "randint", "lower": 1, "upper": 3},
        "width2": {
            "type": "ordinal",
            "categories": [32, 64, 128],
            "condition": {"param": "layers", "in": [2, 3]},
        },
        "width3": {
            "type": "lograndint",
            "lower": 8,
            "upper": 512,
            "condition": {"param": "width2", "in": [64, 128]},
        },
        "decay": {
            "type": "uniform",
            "lower": 0.0,
            "upper": 1.0,
            "condition": {"param": "epochs", "in": [9]},
        },
        "never": {
            "type": "uniform",
            "lower": 0.0,
            "upper": 1.0,
            "condition": {"param": "epochs", "in": [3]},
        },
    }
)


def branin(config: Mapping[str, Any]) -> float:
    x, y = float(config["x"]), float(config["y"])
    b, c, t = 5.1 / (4 * math.pi**2), 5 / math.pi, 1 / (8 * math.pi)
    return (y - b * x * x + c * x - 6) ** 2 + 10 * (1 - t) * math.cos(x) + 10


def mixed(config: Mapping[str, Any]) -> float:
    offsets = {"a": 1.0, "b": 0.0, "c": 0.5}
    log_lr = math.log10(float(config["lr"]))
    return (float(config["x"]) - 0.7) ** 2 + ((log_lr + 2.5) / 2) ** 2 + offsets[config["kind"]]


def conditional_score(config: Mapping[str, Any]) -> float:
    momentum = 1 - 2 * abs(config["momentum"] - 0.95) if config["optimizer"] == "sgd" else 0.0
    lr_penalty = abs(float(np.log10(config["lr"])) + 3) / 5
    return float(momentum + (config["batch_size"] == 16) - lr_penalty)


def best_after(
    searcher: Searcher, function: Callable[[Mapping[str, Any]], float], budget: int
) -> float:
    best = math.inf
    for trial_id in range(budget):
        config = searcher.suggest(trial_id)
        assert config is not None
        value = function(config)
        best = min(best, value)
        searcher.on_result(trial_id, config, 1, value)
    return best


def unit_codes(space: SearchSpace, config: Mapping[str, Any]) -> np.ndarray:
    return np.array([space.domain(name).to_unit(config[name]) for name in space.hyperparameters])


# -- quality -------------------------------------------------------------------------------------


def test_gp_beats_random_search_on_branin() -> None:
    seeds = range(5)
    gp = [best_after(GPSearcher(BRANIN_SPACE, seed=s), branin, 30) - BRANIN_OPTIMUM for s in seeds]
    rand = [
        best_after(RandomSearcher(BRANIN_SPACE, seed=s), branin, 30) - BRANIN_OPTIMUM for s in seeds
    ]
    # Typical regrets: GP below 0.02, random search about 1.5.
    assert max(gp) < 0.1
    assert np.mean(gp) < 0.2 * np.mean(rand)
    assert sum(g < r for g, r in zip(gp, rand, strict=True)) >= 4


def test_gp_beats_random_search_with_a_categorical_parameter() -> None:
    seeds = range(5)
    gp = [best_after(GPSearcher(MIXED_SPACE, seed=s), mixed, 30) for s in seeds]
    rand = [best_after(RandomSearcher(MIXED_SPACE, seed=s), mixed, 30) for s in seeds]
    # The minimum is 0 (x = 0.7, lr = 10^-2.5, kind "b").
    assert np.mean(gp) < 0.3 * np.mean(rand)
    assert sum(g < r for g, r in zip(gp, rand, strict=True)) >= 4


def test_maximises_over_a_conditional_space() -> None:
    searcher = GPSearcher(CONDITIONAL_SPACE, mode="max", seed=3)
    values: list[float] = []
    for trial_id in range(40):
        config = searcher.suggest(trial_id)
        assert config is not None
        CONDITIONAL_SPACE.validate(config)
        assert "never" not in config and "decay" in config
        values.append(conditional_score(config))
        searcher.on_result(trial_id, config, 9, values[-1])
    # The best score is 2 (sgd, momentum 0.95, batch 16, lr 1e-3).
    assert max(values) > 1.5
    assert float(np.mean(values[-15:])) > float(np.mean(values[:10])) + 0.3
    # Every branch of the nested conditions was tried, and decoded consistently.
    assert {c.get("layers") for c in searcher._configs.values()} == {1, 2, 3}
    assert any("width3" in c for c in searcher._configs.values())


def test_inactive_parameters_encode_as_zero_features() -> None:
    searcher = GPSearcher(CONDITIONAL_SPACE, seed=0)
    config = CONDITIONAL_SPACE.complete(
        {"lr": 1e-3, "batch_size": 8, "optimizer": "adam", "layers": 1, "decay": 0.5}
    )
    features = searcher._features(searcher._encode(config)[None, :])[0]
    momentum = next(p for p in searcher._parameters if p.name == "momentum")
    width2 = next(p for p in searcher._parameters if p.name == "width2")
    assert features[momentum.column] == 0.0 and features[width2.column] == 0.0
    # One-hot categories: batch_size 8 and optimizer adam.
    batch = next(p for p in searcher._parameters if p.name == "batch_size")
    assert features[batch.column : batch.column + 3].tolist() == [1.0, 0.0, 0.0]


# -- parallel workers and duplicates ---------------------------------------------------------------


def _observed(space: SearchSpace, seed: int, count: int) -> GPSearcher:
    searcher = GPSearcher(space, seed=seed)
    for trial_id in range(count):
        config = searcher.suggest(trial_id)
        assert config is not None
        searcher.on_result(trial_id, config, 1, branin(config))
    return searcher


def _spread(space: SearchSpace, configs: list[dict[str, Any]]) -> float:
    codes = [unit_codes(space, config) for config in configs]
    return min(float(np.linalg.norm(a - b)) for a, b in itertools.combinations(codes, 2))


def test_pending_configs_get_distinct_suggestions() -> None:
    believer_spreads, plain_spreads = [], []
    for seed in range(6):
        searcher = _observed(BRANIN_SPACE, seed, 12)
        plain = GPSearcher.from_state({**searcher.state(), "max_pending": 0, "recent": []})
        batch = [searcher.suggest(100 + worker) for worker in range(4)]
        alone = [plain.suggest(100 + worker) for worker in range(4)]
        assert all(config is not None for config in batch + alone)
        believer_spreads.append(_spread(BRANIN_SPACE, [c for c in batch if c is not None]))
        plain_spreads.append(_spread(BRANIN_SPACE, [c for c in alone if c is not None]))
    # Four workers asking at once get four different configs, not four draws near one EI
    # maximum as they do when running trials are ignored.
    assert min(believer_spreads) > 0.01
    assert np.mean(believer_spreads) > 5 * np.mean(plain_spreads)


def test_a_finished_or_failed_trial_is_no_longer_pending() -> None:
    searcher = _observed(BRANIN_SPACE, 1, 8)
    searcher.suggest(50)
    searcher.suggest(51)
    searcher.on_error(50)
    config = searcher._configs[51]
    searcher.on_result(51, config, 1, branin(config))
    assert 50 not in searcher._recent
    level = searcher._model_level()
    assert level is not None
    assert all(t in searcher._losses_by_level[level] for t in searcher._recent)


def test_a_small_finite_space_is_enumerated_without_repeats() -> None:
    space = SearchSpace.from_json(
        {
            "a": {"type": "choice", "categories": ["x", "y"]},
            "b": {"type": "randint", "lower": 1, "upper": 3},
        }
    )
    searcher = GPSearcher(space, seed=0, n_initial=2)
    seen = set()
    for trial_id in range(6):
        config = searcher.suggest(trial_id)
        assert config is not None
        seen.add((config["a"], config["b"]))
        searcher.on_result(trial_id, config, 1, float(config["b"]) + (config["a"] == "y"))
    assert len(seen) == 6
    # Once everything was tried it still answers (a repeat) rather than stopping.
    assert searcher.suggest(6) is not None


# -- fidelity levels, bad values -----------------------------------------------------------------


def test_uses_the_highest_level_with_enough_observations() -> None:
    space = SearchSpace.from_json(
        {
            "x": {"type": "uniform", "lower": -5, "upper": 5},
            "y": {"type": "uniform", "lower": -5, "upper": 5},
        }
    )
    searcher = GPSearcher(space, seed=0, n_initial=4)
    for trial_id, x in enumerate([-4.0, -3.0, -2.0, 0.0, 2.0, 4.0]):
        searcher.on_result(trial_id, {"x": x, "y": 0.0}, 1, abs(x - 4.0))
    # At level 9 only two observations, both claiming x near -4 is best: too few to model.
    for trial_id, x in enumerate([-4.0, -3.9]):
        searcher.on_result(trial_id, {"x": x, "y": 0.0}, 9, 0.0)
    assert searcher._model_level() == 1.0
    suggestion = searcher.suggest(10)
    assert suggestion is not None and suggestion["x"] > 1.0


def test_non_finite_results_count_as_the_worst_and_do_not_break_the_model() -> None:
    searcher = GPSearcher(BRANIN_SPACE, seed=2)
    for trial_id in range(12):
        config = searcher.suggest(trial_id)
        assert config is not None
        value = math.nan if trial_id % 3 == 0 else branin(config)
        searcher.on_result(trial_id, config, 1, value)
    assert searcher.suggest(12) is not None
    assert searcher._fit is not None and np.isfinite(searcher._fit.theta).all()


def test_caps_the_observations_the_model_uses() -> None:
    searcher = GPSearcher(BRANIN_SPACE, seed=0, max_observations=20)
    rng = np.random.default_rng(0)
    for trial_id in range(60):
        config = BRANIN_SPACE.sample(rng)
        searcher.on_result(trial_id, config, 1, branin(config))
    codes, losses = searcher._observations(1.0)
    assert codes.shape[0] == losses.size == 20
    everything = sorted(searcher._losses_by_level[1.0].losses[:60])
    assert sorted(losses)[:10] == everything[:10]  # the best half is kept
    assert searcher.suggest(60) is not None


# -- snapshots -----------------------------------------------------------------------------------


def _continue(searcher: GPSearcher, start: int, steps: int) -> list[dict[str, Any] | None]:
    """Suggests in pairs (two workers), then reports both."""
    out: list[dict[str, Any] | None] = []
    for trial_id in range(start, start + steps, 2):
        pair = [searcher.suggest(trial_id), searcher.suggest(trial_id + 1)]
        out.extend(pair)
        for offset, config in enumerate(pair):
            assert config is not None
            searcher.on_result(trial_id + offset, config, 9, conditional_score(config))
    return out


def test_state_round_trip_continues_identically() -> None:
    original = GPSearcher(CONDITIONAL_SPACE, mode="max", seed=5)
    _continue(original, 0, 24)
    original.suggest(24)  # left pending
    snapshot = json.loads(json.dumps(original.state(), allow_nan=False))
    restored = restore_searcher(snapshot)
    assert isinstance(restored, GPSearcher)
    assert restored.state() == snapshot
    assert _continue(restored, 25, 8) == _continue(original, 25, 8)


def _drive(scheduler: Scheduler, steps: int, seed: int) -> list[Any]:
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
        decision = scheduler.on_result(
            trial_id, {"epoch": running[trial_id], "loss": float(rng.uniform())}
        )
        log.append((trial_id, decision))
        if decision is not Decision.CONTINUE:
            del running[trial_id]
    return log


@pytest.mark.parametrize(
    "factory",
    [
        lambda: BayesianSearch(CONDITIONAL_SPACE, metric="loss", searcher="gp", seed=4),
        lambda: ASHA(CONDITIONAL_SPACE, metric="loss", max_resource=9, searcher="gp", seed=4),
    ],
    ids=["bayesian_gp", "asha_gp"],
)
def test_scheduler_state_round_trip_with_gp(factory: Callable[[], Scheduler]) -> None:
    original = factory()
    _drive(original, 80, seed=1)
    assert isinstance(original.searcher, GPSearcher)
    snapshot = json.loads(json.dumps(original.state(), allow_nan=False))
    restored = Scheduler.restore(snapshot)
    assert isinstance(restored.searcher, GPSearcher)
    assert restored.state() == snapshot
    assert _drive(restored, 60, seed=2) == _drive(original, 60, seed=2)


def test_restore_searcher_imports_the_gp_module_when_needed() -> None:
    state = GPSearcher(BRANIN_SPACE, seed=1).state()
    code = (
        "import json, sys\n"
        "from services.tuner.domain.schedulers import restore_searcher\n"
        "assert 'services.tuner.domain.gp' not in sys.modules\n"
        "searcher = restore_searcher(json.loads(sys.stdin.read()))\n"
        "print(type(searcher).__name__)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        input=json.dumps(state),
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        check=True,
        timeout=60,
    )
    assert result.stdout.strip() == "GPSearcher"


# -- settings and names ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"mode": "up"}, "mode must be 'min' or 'max'"),
        ({"seed": -1}, "seed must be an integer >= 0"),
        ({"n_initial": 1}, "n_initial must be an integer >= 2"),
        ({"n_initial": True}, "n_initial must be an integer >= 2"),
        ({"n_candidates": 0}, "n_candidates must be an integer >= 1"),
        ({"max_observations": 1}, "max_observations must be an integer >= 2"),
        ({"max_pending": -1}, "max_pending must be an integer >= 0"),
        ({"refit_every": 0}, "refit_every must be an integer >= 1"),
        ({"n_restarts": 1.5}, "n_restarts must be an integer >= 0"),
    ],
)
def test_invalid_options_are_rejected(options: dict[str, Any], message: str) -> None:
    with pytest.raises(SchedulerError, match=message):
        GPSearcher(BRANIN_SPACE, **options)


def test_default_initial_design_grows_with_the_dimension() -> None:
    assert GPSearcher(BRANIN_SPACE).n_initial == 5
    assert GPSearcher(CONDITIONAL_SPACE).n_initial == 2 * 9


def test_schedulers_choose_the_searcher_by_name() -> None:
    assert isinstance(BayesianSearch(BRANIN_SPACE, metric="loss").searcher, TPESearcher)
    assert isinstance(
        BayesianSearch(BRANIN_SPACE, metric="loss", searcher="gp").searcher, GPSearcher
    )
    asha = ASHA(BRANIN_SPACE, metric="acc", mode="max", max_resource=9, searcher="gp", seed=3)
    assert isinstance(asha.searcher, GPSearcher)
    assert asha.searcher.mode == "max" and asha.searcher.seed == 3
    hyperband = Hyperband(BRANIN_SPACE, metric="loss", max_resource=9, searcher="gp")
    assert isinstance(hyperband.searcher, GPSearcher)
    assert isinstance(ASHA(BRANIN_SPACE, metric="loss", max_resource=9).searcher, RandomSearcher)
    with pytest.raises(SchedulerError, match="searcher must be 'tpe' or 'gp'"):
        BayesianSearch(BRANIN_SPACE, metric="loss", searcher="random")  # type: ignore[arg-type]
    with pytest.raises(SchedulerError, match="'gp'"):
        ASHA(BRANIN_SPACE, metric="loss", max_resource=9, searcher="smac")  # type: ignore[arg-type]


def _spec(scheduler: dict[str, Any]) -> TuningJobSpec:
    return TuningJobSpec.model_validate(
        {
            "name": "job",
            "entry_point": "train.py",
            "config_space": BRANIN_SPACE.to_json(),
            "metrics": [{"name": "loss", "mode": "min"}],
            "scheduler": scheduler,
        }
    )


def test_job_specs_name_the_gp_searcher() -> None:
    bo = build_scheduler(_spec({"type": "bo", "searcher": "gp"}))
    assert isinstance(bo, BayesianSearch) and isinstance(bo.searcher, GPSearcher)
    # bo keeps TPE by default; asha and hyperband keep random search by default.
    assert isinstance(build_scheduler(_spec({"type": "bo"})).searcher, TPESearcher)
    asha = build_scheduler(_spec({"type": "asha", "max_resource": 9, "searcher": "gp"}))
    assert isinstance(asha, ASHA) and isinstance(asha.searcher, GPSearcher)
    plain = build_scheduler(_spec({"type": "asha", "max_resource": 9}))
    assert isinstance(plain.searcher, RandomSearcher)
    tpe = build_scheduler(_spec({"type": "hyperband", "max_resource": 9, "searcher": "tpe"}))
    assert isinstance(tpe.searcher, TPESearcher)
    with pytest.raises(ValidationError, match="searcher"):
        _spec({"type": "bo", "searcher": "smac"})
