"""Tuner search spaces: JSON form, validation messages, conditions, sampling and encodings."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest

from services.tuner.domain.space import (
    Choice,
    FiniteRange,
    LogRandInt,
    LogUniform,
    Ordinal,
    RandInt,
    SearchSpace,
    SpaceError,
    Uniform,
)

EXAMPLE: dict[str, Any] = {
    "lr": {"type": "loguniform", "lower": 1e-6, "upper": 1e-4},
    "batch_size": {"type": "choice", "categories": [8, 16]},
    "epochs": 10,
    "momentum": {
        "type": "uniform",
        "lower": 0.5,
        "upper": 0.99,
        "condition": {"param": "optimizer", "in": ["sgd"]},
    },
    "optimizer": {"type": "choice", "categories": ["sgd", "adam"]},
}

EVERY_TYPE: dict[str, Any] = {
    "a": {"type": "uniform", "lower": -1.5, "upper": 2.0},
    "b": {"type": "loguniform", "lower": 1e-5, "upper": 1.0},
    "c": {"type": "randint", "lower": 1, "upper": 6},
    "d": {"type": "lograndint", "lower": 1, "upper": 1024},
    "e": {"type": "choice", "categories": ["x", 3, 2.5, True]},
    "f": {"type": "ordinal", "categories": ["s", "m", "l"]},
    "g": {"type": "ordinal", "categories": [1, 10, 100], "kind": "nn"},
    "h": {"type": "finrange", "lower": 0.0, "upper": 1.0, "size": 5},
    "i": {"type": "logfinrange", "lower": 1, "upper": 1000, "size": 4, "cast_int": True},
    "j": "constant text",
    "k": [1, 2],
}


def test_json_round_trip_is_exact() -> None:
    for spec in (EXAMPLE, EVERY_TYPE):
        space = SearchSpace.from_json(spec)
        assert space.to_json() == spec
        assert SearchSpace.from_json(json.loads(json.dumps(space.to_json()))) == space


def test_hyperparameters_exclude_constants_and_follow_conditions() -> None:
    space = SearchSpace.from_json(EXAMPLE)
    assert space.hyperparameters == ["lr", "batch_size", "optimizer", "momentum"]
    assert space.constants == {"epochs": 10}
    assert space.names == ["lr", "batch_size", "epochs", "momentum", "optimizer"]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            {"lr": {"type": "uniform", "lower": 0.1, "upper": 0.01}},
            "parameter 'lr': lower (0.1) must be < upper (0.01)",
        ),
        (
            {"lr": {"type": "uniform", "lower": 1, "upper": 1}},
            "parameter 'lr': lower (1) must be < upper (1)",
        ),
        (
            {"lr": {"type": "loguniform", "lower": 0, "upper": 1}},
            "parameter 'lr': lower (0) must be > 0 on a log scale",
        ),
        (
            {"n": {"type": "lograndint", "lower": 0, "upper": 8}},
            "parameter 'n': lower (0) must be >= 1 on a log scale",
        ),
        (
            {"bs": {"type": "choice", "categories": []}},
            "parameter 'bs': categories must be a non-empty list, got []",
        ),
        (
            {"bs": {"type": "choice", "categories": [8, 8.0]}},
            "parameter 'bs': duplicate category 8.0",
        ),
        (
            {"x": {"type": "normal", "lower": 0, "upper": 1}},
            "parameter 'x': unknown type 'normal'; expected one of",
        ),
        (
            {"x": {"type": "uniform", "lower": 0, "upper": 1, "step": 2}},
            "parameter 'x': unknown keys ['step'] for type 'uniform'",
        ),
        (
            {"x": {"type": "uniform", "lower": 0}},
            "parameter 'x': missing keys ['upper'] for type 'uniform'",
        ),
        (
            {"x": {"type": "randint", "lower": 0.5, "upper": 3}},
            "parameter 'x': lower must be an integer, got 0.5",
        ),
        (
            {"x": {"type": "uniform", "lower": "0", "upper": 1}},
            "parameter 'x': lower must be a finite number, got '0'",
        ),
        (
            {"x": {"type": "finrange", "lower": 0, "upper": 1, "size": 1}},
            "parameter 'x': size must be >= 2, got 1",
        ),
        (
            {"x": {"type": "ordinal", "categories": [1, 2], "kind": "near"}},
            "parameter 'x': kind must be one of ['equal', 'nn'], got 'near'",
        ),
        (
            {"x": {"type": "ordinal", "categories": [3, 2], "kind": "nn"}},
            "parameter 'x': kind \"nn\" needs strictly increasing categories",
        ),
        (
            {
                "m": {
                    "type": "uniform",
                    "lower": 0,
                    "upper": 1,
                    "condition": {"param": "optimiser", "in": ["sgd"]},
                }
            },
            "parameter 'm': condition refers to unknown parameter 'optimiser'",
        ),
        (
            {
                "m": {
                    "type": "uniform",
                    "lower": 0,
                    "upper": 1,
                    "condition": {"param": "o", "values": ["sgd"]},
                },
                "o": 1,
            },
            "parameter 'm': condition has unknown keys ['values']",
        ),
        (
            {
                "m": {
                    "type": "uniform",
                    "lower": 0,
                    "upper": 1,
                    "condition": {"param": "o", "in": []},
                },
                "o": 1,
            },
            "parameter 'm': condition 'in' must be a non-empty list, got []",
        ),
        (
            {
                "a": {
                    "type": "choice",
                    "categories": [1, 2],
                    "condition": {"param": "b", "in": [1]},
                },
                "b": {
                    "type": "choice",
                    "categories": [1, 2],
                    "condition": {"param": "a", "in": [1]},
                },
                "c": {"type": "choice", "categories": [1, 2]},
            },
            "conditions form a cycle among parameters 'a', 'b'",
        ),
        (
            {"a": {"type": "choice", "categories": [1, 2], "condition": {"param": "a", "in": [1]}}},
            "conditions form a cycle among parameters 'a'",
        ),
    ],
)
def test_invalid_specs_name_the_parameter_and_the_problem(
    spec: dict[str, Any], message: str
) -> None:
    with pytest.raises(SpaceError) as caught:
        SearchSpace.from_json(spec)
    assert str(caught.value).startswith(message)
    assert isinstance(caught.value, ValueError)


def test_conditional_parameter_is_present_only_when_its_condition_holds() -> None:
    space = SearchSpace.from_json(
        {
            **EXAMPLE,
            # Nested: only under sgd (through momentum's parent) and with nesterov on.
            "nesterov": {
                "type": "choice",
                "categories": [True, False],
                "condition": {"param": "optimizer", "in": ["sgd"]},
            },
            "dampening": {
                "type": "uniform",
                "lower": 0.0,
                "upper": 0.1,
                "condition": {"param": "nesterov", "in": [False]},
            },
        }
    )
    rng = np.random.default_rng(3)
    seen = {"sgd": 0, "adam": 0, "dampening": 0}
    for _ in range(300):
        config = space.sample(rng)
        space.validate(config)
        assert config["epochs"] == 10
        seen[config["optimizer"]] += 1
        if config["optimizer"] == "sgd":
            assert "momentum" in config and "nesterov" in config
            assert ("dampening" in config) == (config["nesterov"] is False)
            seen["dampening"] += "dampening" in config
        else:
            assert not {"momentum", "nesterov", "dampening"} & set(config)
    assert min(seen.values()) > 30
    adam = {"lr": 1e-5, "batch_size": 8, "epochs": 10, "optimizer": "adam"}
    assert space.active(adam) == ["lr", "batch_size", "epochs", "optimizer"]
    assert not space.is_active("dampening", {**adam, "nesterov": False})


def test_validate_reports_what_is_wrong() -> None:
    space = SearchSpace.from_json(EXAMPLE)
    good = {"lr": 1e-5, "batch_size": 16, "epochs": 10, "optimizer": "sgd", "momentum": 0.9}
    space.validate(good)
    cases = [
        ({**good, "momentum": 1.5}, "parameter 'momentum': 1.5 is outside"),
        ({k: v for k, v in good.items() if k != "momentum"}, "parameter 'momentum' is missing"),
        ({**good, "optimizer": "adam"}, "parameter 'momentum' is inactive under this config"),
        ({**good, "epochs": 11}, "parameter 'epochs' is the constant 10, got 11"),
        ({**good, "seed": 1}, "unknown parameters ['seed']"),
        ({**good, "batch_size": True}, "parameter 'batch_size': True is outside"),
    ]
    for config, message in cases:
        with pytest.raises(SpaceError, match="^" + message.replace("(", r"\(").replace("[", r"\[")):
            space.validate(config)


def test_samples_stay_inside_their_domains_and_cover_integer_ends() -> None:
    space = SearchSpace.from_json(EVERY_TYPE)
    rng = np.random.default_rng(0)
    samples = [space.sample(rng) for _ in range(2000)]
    for config in samples:
        space.validate(config)
    assert {config["c"] for config in samples} == {1, 2, 3, 4, 5, 6}
    assert {config["i"] for config in samples} == {1, 10, 100, 1000}
    assert all(type(config["c"]) is int and type(config["a"]) is float for config in samples)


def test_log_scale_sampling_centres_on_the_geometric_mean() -> None:
    rng = np.random.default_rng(1)
    log_uniform = LogUniform(1e-6, 1e-2)
    values = np.array([log_uniform.sample(rng) for _ in range(4000)])
    assert abs(math.log10(float(np.median(values))) - (-4.0)) < 0.1
    # A plain uniform draw over the same range would put the median near 5e-3.
    assert np.mean(values < 1e-4) == pytest.approx(0.5, abs=0.03)
    log_int = LogRandInt(1, 1000)
    ints = np.array([log_int.sample(rng) for _ in range(4000)])
    assert 20 <= np.median(ints) <= 45  # geometric mean of 1..1001 is about 31.6
    assert ints.min() >= 1 and ints.max() <= 1000


def test_unit_encoding_round_trips_and_respects_the_scale() -> None:
    rng = np.random.default_rng(2)
    domains = [
        Uniform(-2, 6),
        LogUniform(1e-4, 1.0),
        RandInt(-3, 3),
        LogRandInt(2, 500),
        Choice(["a", "b", "c"]),
        Ordinal(["s", "m", "l"]),
        Ordinal([1, 2, 8], kind="nn"),
        FiniteRange(0.0, 1.0, 5),
        FiniteRange(1, 1000, 4, log=True, cast_int=True),
    ]
    for domain in domains:
        for _ in range(200):
            value = domain.sample(rng)
            unit = domain.to_unit(value)
            assert 0.0 <= unit <= 1.0
            decoded = domain.from_unit(unit)
            if isinstance(value, float):
                assert decoded == pytest.approx(value, rel=1e-9)
            else:
                assert decoded == value
    assert LogUniform(1e-4, 1.0).to_unit(1e-2) == pytest.approx(0.5)
    assert Choice(["a", "b", "c", "d"]).to_unit("c") == pytest.approx(0.625)
    assert Choice(["a", "b", "c", "d"]).from_unit(0.3) == "b"
    assert Ordinal([1, 2, 8], kind="nn").from_unit(0.5) == 2  # 4.5 is nearer 2 than 8
    assert Uniform(0, 1).from_unit(1.7) == 1.0


def test_grid_values_per_domain() -> None:
    assert Uniform(0, 1).grid(3) == [0.0, 0.5, 1.0]
    assert LogUniform(1e-3, 1e-1).grid(3) == pytest.approx([1e-3, 1e-2, 1e-1])
    assert RandInt(1, 10).grid(4) == [1, 4, 7, 10]
    assert RandInt(1, 3).grid(5) == [1, 2, 3]
    assert Choice(["a", "b", "c"]).grid(2) == ["a", "b", "c"]
    assert FiniteRange(0, 1, 5).grid(3) == [0.0, 0.5, 1.0]
    assert FiniteRange(1, 100, 3, log=True, cast_int=True).grid(5) == [1, 10, 100]


def test_space_grid_expands_only_active_parameters() -> None:
    space = SearchSpace.from_json(EXAMPLE)
    grid = list(space.grid(3))
    # lr: 3 points x batch_size: 2 x (sgd with 3 momenta + adam) = 24 configs.
    assert len(grid) == 24
    for config in grid:
        space.validate(config)
    assert len({json.dumps(config, sort_keys=True) for config in grid}) == 24


def test_choice_keeps_booleans_apart_from_numbers() -> None:
    choice = Choice([True, 1, "1"])
    assert choice.contains(True) and choice.contains(1) and choice.contains("1")
    assert not Choice([True]).contains(1)
    assert not Choice([1]).contains(True)
    assert choice.to_unit(1) != choice.to_unit(True)


def test_complete_adds_constants_and_drops_inactive_values() -> None:
    space = SearchSpace.from_json(EXAMPLE)
    values = {"lr": 1e-5, "batch_size": 8, "optimizer": "adam", "momentum": 0.9}
    assert space.complete(values) == {
        "lr": 1e-5,
        "batch_size": 8,
        "epochs": 10,
        "optimizer": "adam",
    }
    with pytest.raises(SpaceError, match="'momentum' is active but has no value"):
        space.complete({"lr": 1e-5, "batch_size": 8, "optimizer": "sgd"})
