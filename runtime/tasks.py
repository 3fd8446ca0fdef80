"""Stopping background tasks for sure: cancellation that a library swallowed is repeated."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

log = logging.getLogger("trellis.tasks")


def raise_if_cancelled() -> None:
    """Ends a loop whose task was cancelled while a library swallowed the CancelledError.

    nats-py can (flushing a large publish, or in Python 3.11's `asyncio.wait_for`, when the
    cancellation races a result): the loop would go on, and its next await is not cancelled again.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


async def cancel_and_wait(tasks: Iterable[asyncio.Task[Any]], timeout_s: float = 10.0) -> None:
    """Cancel the tasks and wait until they end, cancelling again any that carry on.

    Gives up after `timeout_s` with a warning rather than hang a shutdown.
    """
    pending = {task for task in tasks if not task.done()}
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while pending:
        left = deadline - loop.time()
        if left <= 0:
            log.warning(
                "%d tasks did not stop within %.0f s: %s",
                len(pending),
                timeout_s,
                ", ".join(sorted(task.get_name() for task in pending)),
            )
            return
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=min(0.5, left))
