"""freeze_heap: live objects leave the collector's generations and stay alive."""

from __future__ import annotations

import gc

from runtime import heap
from runtime.heap import freeze_heap, refreeze_heap


def test_frozen_objects_are_not_scanned_by_full_collections_and_stay_alive() -> None:
    try:
        kept = [[i] for i in range(50_000)]  # lists: always tracked by the collector
        gc.collect()  # all of them now in the oldest generation
        assert sum(1 for o in gc.get_objects(generation=2) if o is kept) == 1
        freeze_heap()
        assert gc.get_freeze_count() >= len(kept)
        assert not any(o is kept for o in gc.get_objects(generation=2))
        assert kept[-1] == [49_999]
        garbage: list[dict[str, object]] = [{}]
        garbage[0]["self"] = garbage  # a cycle made after the freeze is still collected
        del garbage
        assert gc.collect() >= 2
    finally:
        heap._frozen = False
        gc.unfreeze()


def test_refreeze_only_in_a_process_that_froze_at_startup() -> None:
    try:
        heap._frozen = False
        gc.unfreeze()
        refreeze_heap()
        assert gc.get_freeze_count() == 0
        freeze_heap()
        first = gc.get_freeze_count()
        kept = [[i] for i in range(1_000)]  # lists: always tracked by the collector
        refreeze_heap()
        assert gc.get_freeze_count() >= first + len(kept)
    finally:
        heap._frozen = False
        gc.unfreeze()
