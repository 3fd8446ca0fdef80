"""Dynamic batching in the manner of Triton's: gather requests for a short delay, run them as one."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Generic, TypeVar

I = TypeVar("I")  # noqa: E741 - the input item type
O = TypeVar("O")  # noqa: E741 - the output type

BatchObserver = Callable[[int, float, float], None]  # rows, seconds queued (oldest), seconds run


class BatchTooLarge(ValueError):
    pass


class QueueTimeout(TimeoutError):
    pass


@dataclass
class _Pending(Generic[I, O]):
    item: I
    rows: int
    future: asyncio.Future[O]
    enqueued: float = field(default_factory=time.monotonic)


class DynamicBatcher(Generic[I, O]):
    """Runs `run_batch(items) -> outputs` (one output per item) on batches of queued items.

    A batch closes when it holds `max_batch_size` rows, reaches a preferred size, or its oldest
    item has waited `max_queue_delay_s`. Up to `instances` batches run at once in `executor`.
    If a batch fails, its items are retried one by one so one bad item fails alone.
    """

    def __init__(
        self,
        run_batch: Callable[[list[I]], Sequence[O]],
        *,
        max_batch_size: int,
        max_queue_delay_s: float,
        preferred_batch_sizes: Sequence[int] = (),
        instances: int = 1,
        timeout_s: float = 30.0,
        executor: Executor | None = None,
        observe: BatchObserver | None = None,
        combine: bool = True,
    ) -> None:
        self.run_batch = run_batch
        self.max_batch_size = max_batch_size
        self.max_queue_delay_s = max_queue_delay_s
        self.preferred = frozenset(preferred_batch_sizes)
        self.timeout_s = timeout_s
        self.executor = executor
        self.observe = observe
        self.combine = combine  # False: every request runs alone (batching disabled)
        self._slots = asyncio.Semaphore(instances)
        self._queue: deque[_Pending[I, O]] = deque()
        self._arrived = asyncio.Event()
        self._loop_task: asyncio.Task[None] | None = None
        self._running: set[asyncio.Task[None]] = set()
        self._closed = False
        self._drained = asyncio.Event()
        self._drained.set()

    async def submit(self, item: I, rows: int = 1) -> O:
        if rows > self.max_batch_size:
            raise BatchTooLarge(
                f"{rows} rows exceed the model's max batch size {self.max_batch_size}"
            )
        if self._closed:
            raise RuntimeError("the model is being unloaded")
        if self._loop_task is None:
            self._loop_task = asyncio.create_task(self._collect())
        future: asyncio.Future[O] = asyncio.get_running_loop().create_future()
        self._queue.append(_Pending(item, rows, future))
        self._drained.clear()
        self._arrived.set()
        try:
            return await asyncio.wait_for(asyncio.shield(future), timeout=self.timeout_s)
        except TimeoutError:
            future.cancel()  # still queued: the collector drops it; already running: result ignored
            raise QueueTimeout(f"no result within {self.timeout_s:g}s") from None

    @property
    def queued(self) -> int:
        return len(self._queue)

    async def close(self) -> None:
        """Stop taking items; let queued and running batches finish."""
        self._closed = True
        if self._queue:
            await self._drained.wait()
        if self._running:
            await asyncio.gather(*self._running, return_exceptions=True)
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task

    def _queued_rows(self) -> int:
        return sum(p.rows for p in self._queue if not p.future.done())

    async def _collect(self) -> None:
        while True:
            if not self._queue:
                self._arrived.clear()
                await self._arrived.wait()
            while self._queue and self._queue[0].future.done():  # timed out while queued
                self._queue.popleft()
            if not self._queue:
                self._drained.set()
                continue
            deadline = self._queue[0].enqueued + self.max_queue_delay_s
            while self.combine:
                rows = self._queued_rows()
                remaining = deadline - time.monotonic()
                if rows >= self.max_batch_size or rows in self.preferred or remaining <= 0:
                    break
                self._arrived.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._arrived.wait(), timeout=remaining)
            # Wait for a free instance before cutting the batch: requests that arrive while
            # every instance is busy join this batch instead of waiting for the next one.
            await self._slots.acquire()
            batch: list[_Pending[I, O]] = []
            rows = 0
            while self._queue and rows + self._queue[0].rows <= self.max_batch_size:
                pending = self._queue.popleft()
                if not pending.future.done():
                    batch.append(pending)
                    rows += pending.rows
                    if not self.combine:
                        break
            if not self._queue:
                self._drained.set()
            if not batch:
                self._slots.release()
                continue
            task = asyncio.create_task(self._run(batch, rows))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _run(self, batch: list[_Pending[I, O]], rows: int) -> None:
        loop = asyncio.get_running_loop()
        started = time.monotonic()
        queued_s = started - batch[0].enqueued
        try:
            try:
                outputs = await loop.run_in_executor(
                    self.executor, self.run_batch, [p.item for p in batch]
                )
                if len(outputs) != len(batch):
                    raise RuntimeError(
                        f"run_batch returned {len(outputs)} outputs for {len(batch)} items"
                    )
                for pending, output in zip(batch, outputs, strict=True):
                    if not pending.future.done():
                        pending.future.set_result(output)
            except Exception as exc:
                if len(batch) == 1:
                    if not batch[0].future.done():
                        batch[0].future.set_exception(exc)
                else:
                    await self._run_alone(batch)
        finally:
            self._slots.release()
            if self.observe is not None:
                self.observe(rows, queued_s, time.monotonic() - started)

    async def _run_alone(self, batch: list[_Pending[I, O]]) -> None:
        loop = asyncio.get_running_loop()
        for pending in batch:
            if pending.future.done():
                continue
            try:
                [output] = await loop.run_in_executor(self.executor, self.run_batch, [pending.item])
            except Exception as exc:
                pending.future.set_exception(exc)
            else:
                pending.future.set_result(output)
