"""Rank fusion, score normalisation, confidence buckets, freshness and field weights."""

from __future__ import annotations

import itertools
import math
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest

from runtime.errors import ValidationFailed
from services.indexer.domain.ranking import (
    ScoreConfidence,
    field_weight,
    freshness_multiplier,
    normalized_fusion,
    reciprocal_rank_fusion,
    score_confidence,
    top_k_indices,
)

NOW = datetime(2026, 1, 1, tzinfo=UTC)
ORDER = [
    ScoreConfidence.LOW,
    ScoreConfidence.MEDIUM,
    ScoreConfidence.HIGH,
    ScoreConfidence.VERY_HIGH,
]


def approx_pairs(result: list[tuple[int, float]], expected: list[tuple[int, float]]) -> None:
    assert [doc for doc, _ in result] == [doc for doc, _ in expected]
    for (_, got), (_, want) in zip(result, expected, strict=True):
        assert got == pytest.approx(want)


# --------------------------------------------------------------------- RRF


def test_rrf_matches_a_hand_computed_example() -> None:
    keyword = [1, 2, 3]
    vector = [3, 1, 4]
    result = reciprocal_rank_fusion([keyword, vector], k=60)
    approx_pairs(
        result,
        [
            (1, 1 / 61 + 1 / 62),
            (3, 1 / 63 + 1 / 61),
            (2, 1 / 62),
            (4, 1 / 63),
        ],
    )


def test_rrf_with_weights() -> None:
    result = reciprocal_rank_fusion([[1, 2], [2, 1]], k=1, weights=[2.0, 1.0])
    approx_pairs(result, [(1, 2 / 2 + 1 / 3), (2, 2 / 3 + 1 / 2)])


def test_rrf_ties_break_by_id() -> None:
    result = reciprocal_rank_fusion([[5, 9], [9, 5]])
    assert [doc for doc, _ in result] == [5, 9]
    assert result[0][1] == result[1][1]


def test_rrf_counts_a_repeated_id_once_per_list() -> None:
    result = reciprocal_rank_fusion([[7, 7, 8]], k=0)
    approx_pairs(result, [(7, 1.0), (8, 0.5)])


def test_rrf_of_nothing() -> None:
    assert reciprocal_rank_fusion([]) == []
    assert reciprocal_rank_fusion([[], []]) == []


@pytest.mark.parametrize(
    ("k", "weights"),
    [(-1, None), (60, [1.0]), (60, [1.0, -0.5]), (60, [1.0, math.nan])],
)
def test_rrf_validates(k: int, weights: list[float] | None) -> None:
    with pytest.raises(ValidationFailed):
        reciprocal_rank_fusion([[1], [2]], k=k, weights=weights)


# ---------------------------------------------------------- normalized fusion


def test_minmax_fusion_with_a_missing_id() -> None:
    keyword = {1: 10.0, 2: 5.0, 3: 0.0}
    vector = {1: 0.2, 3: 0.8}
    result = normalized_fusion([keyword, vector])
    # keyword -> 1: 1.0, 2: 0.5, 3: 0.0; vector -> 1: 0.0, 3: 1.0; 2 gets 0 from vector.
    approx_pairs(result, [(1, 1.0), (3, 1.0), (2, 0.5)])


def test_minmax_fusion_with_weights() -> None:
    result = normalized_fusion([{1: 3.0, 2: 1.0}, {2: 9.0, 1: 1.0}], weights=[0.25, 0.75])
    approx_pairs(result, [(2, 0.75), (1, 0.25)])


def test_minmax_fusion_of_a_constant_list_gives_ones() -> None:
    approx_pairs(normalized_fusion([{4: 2.0, 3: 2.0}]), [(3, 1.0), (4, 1.0)])


def test_zscore_fusion() -> None:
    result = normalized_fusion([{1: 1.0, 2: 2.0, 3: 3.0}, {3: 5.0}], method="zscore")
    z = math.sqrt(3 / 2)
    approx_pairs(result, [(3, z), (2, 0.0), (1, -z)])


def test_fusion_of_empty_lists() -> None:
    assert normalized_fusion([]) == []
    assert normalized_fusion([{}, {}]) == []


@pytest.mark.parametrize(
    "kwargs",
    [
        {"weights": [1.0]},
        {"weights": [1.0, -1.0]},
        {"method": "rank"},
    ],
)
def test_fusion_validates(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValidationFailed):
        normalized_fusion([{1: 1.0}, {1: 2.0}], **kwargs)


def test_fusion_rejects_non_finite_scores() -> None:
    with pytest.raises(ValidationFailed):
        normalized_fusion([{1: math.inf, 2: 1.0}])


# ---------------------------------------------------------------- confidence


@pytest.mark.parametrize(
    ("similarity", "share", "rank", "expected"),
    [
        (None, None, 0, ScoreConfidence.NOT_AVAILABLE),
        (0.8, None, 0, ScoreConfidence.VERY_HIGH),
        (0.65, None, 0, ScoreConfidence.HIGH),
        (0.5, None, 0, ScoreConfidence.MEDIUM),
        (0.35, None, 0, ScoreConfidence.LOW),
        (0.1, None, 0, ScoreConfidence.LOW),
        (None, 1.0, 0, ScoreConfidence.HIGH),
        (None, 0.6, 0, ScoreConfidence.MEDIUM),
        (None, 0.1, 0, ScoreConfidence.LOW),
        (0.65, 0.95, 0, ScoreConfidence.VERY_HIGH),
        (0.5, 0.6, 0, ScoreConfidence.HIGH),
        (0.5, 0.3, 0, ScoreConfidence.MEDIUM),
        (0.65, None, 10, ScoreConfidence.MEDIUM),
        (0.65, None, 50, ScoreConfidence.LOW),
        (0.8, 1.0, 9, ScoreConfidence.VERY_HIGH),
        (0.8, 1.0, 10, ScoreConfidence.HIGH),
    ],
)
def test_score_confidence_buckets(
    similarity: float | None, share: float | None, rank: int, expected: ScoreConfidence
) -> None:
    assert (
        score_confidence(semantic_similarity=similarity, keyword_rank_share=share, rank=rank)
        == expected
    )


def test_score_confidence_thresholds_are_inclusive() -> None:
    def level(sim: float) -> ScoreConfidence:
        return score_confidence(semantic_similarity=sim, keyword_rank_share=None, rank=0)

    assert level(0.6) == ScoreConfidence.HIGH
    assert level(0.5999) == ScoreConfidence.MEDIUM
    assert level(0.45) == ScoreConfidence.MEDIUM
    assert level(0.4499) == ScoreConfidence.LOW


def test_score_confidence_is_monotone_in_each_input() -> None:
    sims: list[float | None] = [None, -0.2, 0.0, 0.29, 0.3, 0.44, 0.45, 0.59, 0.6, 0.74, 0.75, 1.0]
    shares: list[float | None] = [None, 0.0, 0.24, 0.25, 0.49, 0.5, 0.89, 0.9, 1.0]
    ranks = [0, 1, 9, 10, 49, 50, 1000]

    def rank_of(sim: float | None, share: float | None, rank: int) -> int:
        value = score_confidence(semantic_similarity=sim, keyword_rank_share=share, rank=rank)
        return ORDER.index(value) if value != ScoreConfidence.NOT_AVAILABLE else -1

    for share, rank in itertools.product(shares, ranks):
        levels = [rank_of(s, share, rank) for s in sims[1:]]
        assert levels == sorted(levels)
    for sim, rank in itertools.product(sims, ranks):
        levels = [rank_of(sim, s, rank) for s in shares[1:]]
        assert levels == sorted(levels)
    for sim, share in itertools.product(sims, shares):
        levels = [rank_of(sim, share, r) for r in ranks]
        assert levels == sorted(levels, reverse=True)


def test_score_confidence_is_deterministic() -> None:
    results = {
        score_confidence(semantic_similarity=0.52, keyword_rank_share=0.7, rank=3)
        for _ in range(10)
    }
    assert results == {ScoreConfidence.HIGH}


@pytest.mark.parametrize(
    ("similarity", "share", "rank"),
    [(0.5, 0.5, -1), (math.nan, None, 0), (None, -0.1, 0), (None, math.inf, 0)],
)
def test_score_confidence_validates(
    similarity: float | None, share: float | None, rank: int
) -> None:
    with pytest.raises(ValidationFailed):
        score_confidence(semantic_similarity=similarity, keyword_rank_share=share, rank=rank)


def test_score_confidence_values_are_kendra_names() -> None:
    assert [c.value for c in ScoreConfidence] == [
        "VERY_HIGH",
        "HIGH",
        "MEDIUM",
        "LOW",
        "NOT_AVAILABLE",
    ]


# ----------------------------------------------------------------- freshness

DAY = timedelta(days=1)


def test_freshness_brand_new_document_with_importance_10_doubles() -> None:
    assert freshness_multiplier(NOW, NOW, duration=30 * DAY, importance=10) == 2.0


def test_freshness_decays_linearly() -> None:
    half = freshness_multiplier(NOW - 15 * DAY, NOW, duration=30 * DAY, importance=10)
    assert half == pytest.approx(1.5)
    quarter = freshness_multiplier(NOW - 15 * DAY, NOW, duration=30 * DAY, importance=5)
    assert quarter == pytest.approx(1.25)
    new_low = freshness_multiplier(NOW, NOW, duration=30 * DAY, importance=1)
    assert new_low == pytest.approx(1.1)


def test_freshness_boundaries() -> None:
    kw: dict[str, Any] = {"duration": 30 * DAY, "importance": 10}
    assert freshness_multiplier(NOW - 30 * DAY, NOW, **kw) == 1.0
    assert freshness_multiplier(NOW - 31 * DAY, NOW, **kw) == 1.0
    just_inside = freshness_multiplier(
        NOW - 30 * DAY + timedelta(seconds=1), NOW, duration=30 * DAY, importance=10
    )
    assert 1.0 < just_inside < 1.0001
    assert freshness_multiplier(None, NOW, duration=30 * DAY, importance=10) == 1.0
    # A date in the future counts as brand new.
    assert freshness_multiplier(NOW + DAY, NOW, duration=30 * DAY, importance=10) == 2.0


def test_freshness_is_monotone_in_age_and_importance() -> None:
    ages = [0, 1, 5, 10, 29, 30, 60]
    for importance in range(1, 11):
        values = [
            freshness_multiplier(NOW - a * DAY, NOW, duration=30 * DAY, importance=importance)
            for a in ages
        ]
        assert values == sorted(values, reverse=True)
    by_importance = [
        freshness_multiplier(NOW - DAY, NOW, duration=30 * DAY, importance=i) for i in range(1, 11)
    ]
    assert by_importance == sorted(by_importance)


@pytest.mark.parametrize(
    ("document_time", "duration", "importance"),
    [
        (NOW, 30 * DAY, 0),
        (NOW, 30 * DAY, 11),
        (NOW, timedelta(0), 5),
        (NOW, -DAY, 5),
        (datetime(2026, 1, 1), 30 * DAY, 5),
    ],
)
def test_freshness_validates(document_time: datetime, duration: timedelta, importance: int) -> None:
    with pytest.raises(ValidationFailed):
        freshness_multiplier(document_time, NOW, duration=duration, importance=importance)


def test_freshness_validates_importance_even_without_date() -> None:
    with pytest.raises(ValidationFailed):
        freshness_multiplier(None, NOW, duration=DAY, importance=0)


# -------------------------------------------------------------- field weight


def test_field_weight_anchor_points() -> None:
    assert field_weight(5) == 1.0
    assert field_weight(10) == pytest.approx(3.0)
    assert field_weight(1) == pytest.approx(0.3)


def test_field_weight_is_increasing_and_smooth() -> None:
    weights = [field_weight(i) for i in range(1, 11)]
    assert all(a < b for a, b in itertools.pairwise(weights))
    ratios = [b / a for a, b in itertools.pairwise(weights)]
    # Each step multiplies by a constant factor on either side of 5: no jumps.
    assert max(ratios) < 1.4 and min(ratios) > 1.2


@pytest.mark.parametrize("importance", [0, 11, -3, True])
def test_field_weight_validates(importance: int) -> None:
    with pytest.raises(ValidationFailed):
        field_weight(importance)


# ---------------------------------------------------------------- top k


def test_top_k_indices_sorted_descending() -> None:
    scores = np.array([0.1, 0.9, 0.5, 0.7, 0.3])
    assert top_k_indices(scores, 3).tolist() == [1, 3, 2]


def test_top_k_indices_with_mask() -> None:
    scores = np.array([0.1, 0.9, 0.5, 0.7, 0.3])
    mask = np.array([True, False, True, False, True])
    assert top_k_indices(scores, 2, mask).tolist() == [2, 4]


def test_top_k_indices_fewer_than_k() -> None:
    scores = np.array([0.2, 0.4, 0.1])
    mask = np.array([True, False, True])
    assert top_k_indices(scores, 10, mask).tolist() == [0, 2]
    assert top_k_indices(scores, 10).tolist() == [1, 0, 2]
    assert top_k_indices(scores, 0).tolist() == []
    assert top_k_indices(np.array([]), 3).tolist() == []
    assert top_k_indices(scores, 2, np.zeros(3, dtype=bool)).tolist() == []


def test_top_k_indices_ties_prefer_lower_index() -> None:
    scores = np.array([1.0, 2.0, 1.0, 1.0, 2.0, 1.0])
    assert top_k_indices(scores, 3).tolist() == [1, 4, 0]
    assert top_k_indices(scores, 4).tolist() == [1, 4, 0, 2]


def test_top_k_indices_skips_nan() -> None:
    scores = np.array([np.nan, 0.5, np.nan, 0.1])
    assert top_k_indices(scores, 3).tolist() == [1, 3]


def test_top_k_indices_matches_a_full_sort() -> None:
    rng = np.random.default_rng(3)
    scores = rng.integers(0, 50, size=500).astype(np.float32)
    mask = rng.random(500) < 0.6
    got = top_k_indices(scores, 25, mask)
    candidates = [i for i in range(500) if mask[i]]
    want = sorted(candidates, key=lambda i: (-scores[i], i))[:25]
    assert got.tolist() == want
    assert got.dtype == np.intp


def test_top_k_indices_validates() -> None:
    with pytest.raises(ValidationFailed):
        top_k_indices(np.array([1.0]), -1)
    with pytest.raises(ValidationFailed):
        top_k_indices(np.array([[1.0]]), 1)
    with pytest.raises(ValidationFailed):
        top_k_indices(np.array([1.0, 2.0]), 1, np.array([True]))
