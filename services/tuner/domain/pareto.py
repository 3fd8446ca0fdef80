"""Pareto helpers for minimisation: dominance, non-dominated sorting, epsilon-nets, hypervolume."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = [
    "dominance_matrix",
    "epsilon_net_order",
    "hypervolume",
    "non_dominated_sort",
    "pareto_front",
    "priority_order",
    "ranks_within",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.intp]
BoolArray = npt.NDArray[np.bool_]


def _as_points(points: npt.ArrayLike) -> FloatArray:
    array = np.asarray(points, dtype=np.float64)
    if array.ndim == 1:
        array = array.reshape(-1, 1)
    if array.ndim != 2:
        raise ValueError(f"points must be a 2-D array (n points x m objectives), got {array.shape}")
    return array


def dominance_matrix(points: npt.ArrayLike) -> BoolArray:
    """[i, j] is True when point i dominates point j: no worse everywhere, better somewhere."""
    array = _as_points(points)
    count = array.shape[0]
    no_worse = np.ones((count, count), dtype=bool)
    better_somewhere = np.zeros((count, count), dtype=bool)
    # One objective at a time: 2-D comparisons are several times faster than reducing a
    # (n, n, m) array over its short last axis.
    for column in array.T:
        no_worse &= column[:, None] <= column[None, :]
        better_somewhere |= column[:, None] < column[None, :]
    no_worse &= better_somewhere
    return no_worse


def _fronts_from_dominance(dominates: BoolArray) -> list[IntArray]:
    remaining_dominators = dominates.sum(axis=0)
    unassigned = np.ones(dominates.shape[0], dtype=bool)
    fronts: list[IntArray] = []
    while unassigned.any():
        front = np.flatnonzero(unassigned & (remaining_dominators == 0))
        fronts.append(front)
        unassigned[front] = False
        remaining_dominators = remaining_dominators - dominates[front].sum(axis=0)
    return fronts


def non_dominated_sort(points: npt.ArrayLike) -> list[IntArray]:
    """Indices of the successive Pareto fronts (each in ascending index order), best first.

    Costs O(n^2 m) time and O(n^2) memory for n points with m objectives.
    """
    array = _as_points(points)
    if array.shape[0] == 0:
        return []
    return _fronts_from_dominance(dominance_matrix(array))


def pareto_front(points: npt.ArrayLike) -> IntArray:
    """Indices (ascending) of the points no other point dominates; equal points all stay."""
    array = _as_points(points)
    keep = np.ones(array.shape[0], dtype=bool)
    for index in range(array.shape[0]):
        if not keep[index]:
            continue
        # A point dominated by a kept point is out; points it dominates follow transitively.
        dominated = np.all(array[index] <= array, axis=1) & np.any(array[index] < array, axis=1)
        keep &= ~dominated
    return np.flatnonzero(keep)


def _normalise(array: FloatArray) -> FloatArray:
    low = array.min(axis=0)
    span = array.max(axis=0) - low
    span[span == 0] = 1.0
    scaled: FloatArray = (array - low) / span
    return scaled


def _epsilon_net(normalised: FloatArray, stop_at: int | None = None) -> list[int]:
    """Greedy farthest-point order; the seed is the best point on the first objective."""
    count = normalised.shape[0]
    if count == 0:
        return []
    first = int(np.argmin(normalised[:, 0]))
    order = [first]
    nearest = np.linalg.norm(normalised - normalised[first], axis=1)
    nearest[first] = -1.0
    while len(order) < count:
        if stop_at is not None and order[-1] == stop_at:
            break
        chosen = int(np.argmax(nearest))
        order.append(chosen)
        nearest = np.minimum(nearest, np.linalg.norm(normalised - normalised[chosen], axis=1))
        nearest[order] = -1.0
    return order


def epsilon_net_order(points: npt.ArrayLike, *, normalise: bool = True) -> list[int]:
    """Orders points so that each next one is farthest from those already taken.

    Objectives are first scaled to [0, 1] (unless `normalise` is False); the seed is the point
    with the lowest first objective (lowest index on ties), as in Syne Tune's MOASHA.
    """
    array = _as_points(points)
    if array.shape[0] == 0:
        return []
    return _epsilon_net(_normalise(array) if normalise else array)


def priority_order(points: npt.ArrayLike) -> list[int]:
    """MOASHA's ranking: Pareto fronts best first, each front in epsilon-net order.

    Distances inside a front use objectives scaled over all the points, not just that front.
    """
    array = _as_points(points)
    if array.shape[0] == 0:
        return []
    normalised = _normalise(array)
    order: list[int] = []
    for front in non_dominated_sort(array):
        order.extend(int(front[i]) for i in _epsilon_net(normalised[front]))
    return order


def ranks_within(points: npt.ArrayLike, index: int, limit: int) -> bool:
    """Whether points[index] sits at position <= limit (0 = best) in priority_order(points).

    Only the work needed to settle that is done: more than `limit` dominators settle it at once,
    as does having at most `limit` points it does not dominate (only those can rank ahead of
    it); otherwise fronts are peeled, without the points it dominates (they rank after it), up
    to its own, and the epsilon-net runs only when that front straddles the limit.
    """
    array = _as_points(points)
    target = array[index]
    dominated_by = np.all(array <= target, axis=1) & np.any(array < target, axis=1)
    if int(dominated_by.sum()) > limit:
        return False
    dominated = np.all(target <= array, axis=1) & np.any(target < array, axis=1)
    relevant = np.flatnonzero(~dominated)
    if relevant.size - 1 <= limit:
        return True
    subset = array[relevant]
    local_target = int(np.searchsorted(relevant, index))
    dominates = dominance_matrix(subset)
    remaining_dominators = dominates.sum(axis=0)
    unassigned = np.ones(subset.shape[0], dtype=bool)
    ahead = 0
    while True:
        front = np.flatnonzero(unassigned & (remaining_dominators == 0))
        if remaining_dominators[local_target] == 0:
            break
        ahead += front.size
        if ahead > limit:
            return False
        unassigned[front] = False
        remaining_dominators = remaining_dominators - dominates[front].sum(axis=0)
    if ahead + front.size - 1 <= limit:
        return True
    normalised = _normalise(array)[relevant[front]]
    local_in_front = int(np.searchsorted(front, local_target))
    order = _epsilon_net(normalised, stop_at=local_in_front)
    return ahead + order.index(local_in_front) <= limit


def _hypervolume_2d(array: FloatArray, reference: FloatArray) -> float:
    ordered = array[np.lexsort((array[:, 1], array[:, 0]))]
    best_y = np.minimum.accumulate(ordered[:, 1])
    previous_best_y = np.concatenate(([reference[1]], best_y[:-1]))
    return float(np.sum((reference[0] - ordered[:, 0]) * (previous_best_y - best_y)))


def _hypervolume(array: FloatArray, reference: FloatArray) -> float:
    if array.shape[0] == 0:
        return 0.0
    dims = array.shape[1]
    if dims == 1:
        return float(reference[0] - array[:, 0].min())
    if dims == 2:
        return _hypervolume_2d(array, reference)
    # Slice along the last objective: between consecutive levels the dominated region is a
    # prism over the (m-1)-dimensional hypervolume of the points already below the slice.
    ordered = array[np.argsort(array[:, -1], kind="stable")]
    levels = np.append(ordered[:, -1], reference[-1])
    volume = 0.0
    for position in range(ordered.shape[0]):
        height = levels[position + 1] - levels[position]
        if height > 0:
            volume += height * _hypervolume(ordered[: position + 1, :-1], reference[:-1])
    return volume


def hypervolume(points: npt.ArrayLike, reference: npt.ArrayLike) -> float:
    """Volume dominated by the points and bounded by `reference` (minimisation).

    Exact in any dimension: a sweep in 2-D, slicing recursion above (O(n^(m-1) log n)), meant
    for the few hundred points of a tuning job with 2-4 objectives. Points not strictly better
    than the reference on every objective add nothing.
    """
    array = _as_points(points)
    ref = np.asarray(reference, dtype=np.float64).reshape(-1)
    if array.shape[0] == 0:
        return 0.0
    if ref.shape[0] != array.shape[1]:
        raise ValueError(f"reference has {ref.shape[0]} objectives, points have {array.shape[1]}")
    inside = array[np.all(array < ref, axis=1)]
    if inside.shape[0] == 0:
        return 0.0
    return _hypervolume(inside[pareto_front(inside)], ref)
