"""Result ranking: rank fusion, score normalisation, confidence buckets, freshness and field weights."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from runtime.errors import ValidationFailed

IMPORTANCE_MIN = 1
IMPORTANCE_MAX = 10


def _check_weights(weights: Sequence[float] | None, n: int) -> list[float]:
    if weights is None:
        return [1.0] * n
    if len(weights) != n:
        raise ValidationFailed(f"expected {n} weights, got {len(weights)}")
    out = [float(w) for w in weights]
    if any(not math.isfinite(w) or w < 0 for w in out):
        raise ValidationFailed("weights must be finite and non-negative")
    return out


def _ordered(scores: Mapping[int, float]) -> list[tuple[int, float]]:
    return sorted(scores.items(), key=lambda item: (-item[1], item[0]))


def reciprocal_rank_fusion(
    rankings: Sequence[Sequence[int]], *, k: int = 60, weights: Sequence[float] | None = None
) -> list[tuple[int, float]]:
    """Fused score of each id: sum over rankings of weight / (k + rank), rank counted from 1."""
    if k < 0:
        raise ValidationFailed("k must not be negative")
    list_weights = _check_weights(weights, len(rankings))
    fused: dict[int, float] = {}
    for ranking, weight in zip(rankings, list_weights, strict=True):
        seen: set[int] = set()
        rank = 0
        for doc in ranking:
            # A repeated id keeps its best (first) rank in that list.
            if doc in seen:
                continue
            seen.add(doc)
            rank += 1
            fused[doc] = fused.get(doc, 0.0) + weight / (k + rank)
    return _ordered(fused)


def _normalise(
    scores: Mapping[int, float], method: Literal["minmax", "zscore"]
) -> dict[int, float]:
    values = list(scores.values())
    if not values:
        return {}
    if any(not math.isfinite(v) for v in values):
        raise ValidationFailed("scores must be finite")
    if method == "minmax":
        low, high = min(values), max(values)
        if high == low:
            return dict.fromkeys(scores, 1.0)
        return {doc: (s - low) / (high - low) for doc, s in scores.items()}
    mean = sum(values) / len(values)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))
    if std == 0.0:
        # Nothing sets the ids of a constant list apart, so each sits at the mean.
        return dict.fromkeys(scores, 0.0)
    return {doc: (s - mean) / std for doc, s in scores.items()}


def normalized_fusion(
    scored: Sequence[Mapping[int, float]],
    *,
    weights: Sequence[float] | None = None,
    method: Literal["minmax", "zscore"] = "minmax",
) -> list[tuple[int, float]]:
    """Weighted sum of per-list normalised scores; an id missing from a list gets 0 from it.

    minmax maps each list onto [0, 1] (a constant list is all 1.0); zscore centres each list on its
    mean with unit variance (a constant list is all 0.0).
    """
    if method not in ("minmax", "zscore"):
        raise ValidationFailed(f"unknown normalisation method {method!r}")
    list_weights = _check_weights(weights, len(scored))
    fused: dict[int, float] = {}
    for scores, weight in zip(scored, list_weights, strict=True):
        for doc, value in _normalise(scores, method).items():
            fused[doc] = fused.get(doc, 0.0) + weight * value
    return _ordered(fused)


class ScoreConfidence(StrEnum):
    VERY_HIGH = "VERY_HIGH"
    HIGH = "HIGH"
    MEDIUM = "MEDIUM"
    LOW = "LOW"
    NOT_AVAILABLE = "NOT_AVAILABLE"


# Cosine similarity of all-MiniLM-L6-v2 embeddings -> level (1 LOW .. 4 VERY_HIGH), highest first.
SEMANTIC_LEVELS: tuple[tuple[float, int], ...] = ((0.75, 4), (0.6, 3), (0.45, 2), (0.3, 1))
# Keyword score / best keyword score of the query -> level; lexical evidence alone tops out at HIGH
# because the best keyword hit of every query has share 1.0, relevant or not.
KEYWORD_LEVELS: tuple[tuple[float, int], ...] = ((0.9, 3), (0.5, 2), (0.25, 1))
# Both signals at MEDIUM or better agree: one level up.
AGREEMENT_LEVEL = 2
# Final 0-based rank -> levels taken off, deepest first.
RANK_PENALTIES: tuple[tuple[int, int], ...] = ((50, 2), (10, 1))
_LEVEL_NAMES = {
    1: ScoreConfidence.LOW,
    2: ScoreConfidence.MEDIUM,
    3: ScoreConfidence.HIGH,
    4: ScoreConfidence.VERY_HIGH,
}


def _level(value: float | None, table: Sequence[tuple[float, int]]) -> int:
    if value is None:
        return 0
    for threshold, level in table:
        if value >= threshold:
            return level
    return 0


def score_confidence(
    *, semantic_similarity: float | None, keyword_rank_share: float | None, rank: int
) -> ScoreConfidence:
    """Kendra-style confidence bucket of one result, monotone in each input.

    Semantic similarity: >= 0.75 VERY_HIGH, >= 0.6 HIGH, >= 0.45 MEDIUM, else LOW.
    Keyword share: >= 0.9 HIGH, >= 0.5 MEDIUM, else LOW.
    The better of the two counts; when both are at least MEDIUM the result goes one level up.
    Rank 10..49 takes one level off, rank 50+ two, never below LOW.
    NOT_AVAILABLE when neither signal is known.
    """
    if rank < 0:
        raise ValidationFailed("rank must not be negative")
    if semantic_similarity is not None and not math.isfinite(semantic_similarity):
        raise ValidationFailed("semantic_similarity must be finite")
    if keyword_rank_share is not None and (
        not math.isfinite(keyword_rank_share) or keyword_rank_share < 0
    ):
        raise ValidationFailed("keyword_rank_share must be finite and non-negative")
    if semantic_similarity is None and keyword_rank_share is None:
        return ScoreConfidence.NOT_AVAILABLE
    semantic = _level(semantic_similarity, SEMANTIC_LEVELS)
    keyword = _level(keyword_rank_share, KEYWORD_LEVELS)
    level = max(semantic, keyword)
    if min(semantic, keyword) >= AGREEMENT_LEVEL:
        level = min(4, level + 1)
    for depth, penalty in RANK_PENALTIES:
        if rank >= depth:
            level -= penalty
            break
    return _LEVEL_NAMES[min(4, max(1, level))]


def _check_importance(importance: int) -> None:
    if (
        isinstance(importance, bool)
        or not isinstance(importance, int)
        or not IMPORTANCE_MIN <= importance <= IMPORTANCE_MAX
    ):
        raise ValidationFailed(
            f"importance must be an integer from {IMPORTANCE_MIN} to {IMPORTANCE_MAX}"
        )


def freshness_multiplier(
    document_time: datetime | None, now: datetime, *, duration: timedelta, importance: int
) -> float:
    """Score multiplier for freshness: 1 + importance/10 for a brand-new document, down to 1.0 at `duration` old.

    Documents without a date, older than `duration`, are not boosted; a date in the future counts
    as brand new.
    """
    _check_importance(importance)
    if duration <= timedelta(0):
        raise ValidationFailed("freshness duration must be positive")
    if document_time is None:
        return 1.0
    if (document_time.tzinfo is None) != (now.tzinfo is None):
        raise ValidationFailed("document time and now must both be timezone-aware or both naive")
    age = max(timedelta(0), now - document_time)
    if age >= duration:
        return 1.0
    max_boost = importance / IMPORTANCE_MAX
    return 1.0 + max_boost * (1.0 - age / duration)


# Geometric on each side of the neutral importance 5: 1 -> 0.3, 5 -> 1.0, 10 -> 3.0.
_NEUTRAL = 5
_LOWEST_WEIGHT = 0.3
_HIGHEST_WEIGHT = 3.0


def field_weight(importance: int) -> float:
    """Multiplicative weight of a Kendra relevance Importance (1..10); 5 is neutral."""
    _check_importance(importance)
    if importance >= _NEUTRAL:
        return float(_HIGHEST_WEIGHT ** ((importance - _NEUTRAL) / (IMPORTANCE_MAX - _NEUTRAL)))
    return float(_LOWEST_WEIGHT ** ((_NEUTRAL - importance) / (_NEUTRAL - IMPORTANCE_MIN)))


def top_k_indices(
    scores: npt.NDArray[Any], k: int, mask: npt.NDArray[np.bool_] | None = None
) -> npt.NDArray[np.intp]:
    """Indices of the k highest scores where mask is True, best first, ties by lower index; NaN never wins."""
    if k < 0:
        raise ValidationFailed("k must not be negative")
    values = np.asarray(scores, dtype=np.float64)
    if values.ndim != 1:
        raise ValidationFailed("scores must be one-dimensional")
    keep = ~np.isnan(values)
    if mask is not None:
        flags = np.asarray(mask, dtype=bool)
        if flags.shape != values.shape:
            raise ValidationFailed("mask must have the same shape as scores")
        keep &= flags
    candidates = np.flatnonzero(keep)
    if k == 0 or candidates.size == 0:
        return np.empty(0, dtype=np.intp)
    chosen = candidates
    if k < candidates.size:
        cand_scores = values[candidates]
        kth = cand_scores[np.argpartition(-cand_scores, k - 1)[k - 1]]
        # Take everything above the cut, then the lowest indices among the ties at it.
        above = candidates[cand_scores > kth]
        tied = candidates[cand_scores == kth][: k - above.size]
        chosen = np.concatenate([above, tied])
    order = np.lexsort((chosen, -values[chosen]))
    return chosen[order].astype(np.intp, copy=False)
