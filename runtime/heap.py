"""Keep the cyclic garbage collector's full passes off the request path of long-running services."""

from __future__ import annotations

import gc
import logging
import time

log = logging.getLogger("trellis.heap")
_frozen = False  # set by the process's entry point; services run inside tests never freeze


def freeze_heap() -> None:
    """Collect, then move every object alive now out of the collector's reach.

    A service's startup heap (modules, schemas, models) is hundreds of thousands of objects that
    live as long as the process; a full collection walks all of them, which stalls the event
    loop for 50-200 ms on a busy host, and a steady stream of requests triggers such
    collections every few seconds. Frozen objects are still freed by reference counting; only
    cycles among them are never collected, so call this once the heap holds what will last
    (after startup, after loading a model), not on every request.
    """
    global _frozen
    began = time.perf_counter()
    gc.collect()
    gc.freeze()
    _frozen = True
    log.debug(
        "froze %d objects in %.1f ms", gc.get_freeze_count(), (time.perf_counter() - began) * 1e3
    )


def refreeze_heap() -> None:
    """`freeze_heap` again after loading something lasting, in a process that froze at startup
    (an entry point's, not a test's: tests build services in one long pytest process)."""
    if _frozen:
        freeze_heap()
