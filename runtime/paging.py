"""NextToken paging over listed resources: the token is the sort key of the last item returned."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

R = TypeVar("R")


def page(
    items: Sequence[R], key: Callable[[R], str], next_token: str | None, max_results: int
) -> tuple[list[R], str | None]:
    """One page of `items` ordered by `key`, and the token of the next page (None at the end)."""
    ordered = sorted(items, key=key)
    if next_token:
        ordered = [i for i in ordered if key(i) > next_token]
    chosen = ordered[:max_results]
    return chosen, (key(chosen[-1]) if len(ordered) > max_results and chosen else None)
