"""cancel_and_wait: a cancellation swallowed once is repeated; a task that never ends is left."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from runtime.tasks import cancel_and_wait, raise_if_cancelled


async def test_a_swallowed_cancellation_is_repeated_until_the_task_ends() -> None:
    swallowed = 0

    async def stubborn() -> None:
        nonlocal swallowed
        while True:
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                if swallowed == 2:
                    raise
                swallowed += 1
                asyncio.current_task().uncancel()  # type: ignore[union-attr]

    task = asyncio.create_task(stubborn())
    await asyncio.sleep(0)
    await cancel_and_wait([task], timeout_s=5)
    assert task.cancelled() and swallowed == 2


async def test_a_task_that_never_ends_is_given_up_on_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    release = asyncio.Event()

    async def immortal() -> None:
        while not release.is_set():
            with contextlib.suppress(asyncio.CancelledError):
                await release.wait()
            asyncio.current_task().uncancel()  # type: ignore[union-attr]

    task = asyncio.create_task(immortal(), name="immortal")
    await asyncio.sleep(0)
    await cancel_and_wait([task], timeout_s=0.3)
    assert not task.done() and "immortal" in caplog.text
    release.set()
    await task


async def test_raise_if_cancelled_ends_a_loop_whose_cancellation_was_swallowed() -> None:
    async def loop() -> None:
        while True:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(10)  # a library swallowing the cancellation
            raise_if_cancelled()

    task = asyncio.create_task(loop())
    await asyncio.sleep(0)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.wait_for(task, timeout=2)
    assert task.cancelled()
