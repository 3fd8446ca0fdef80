"""Simulator jobs on a tuner replica: each runs in a thread, holding a lease in its KV record.

The replica that runs a simulation saves its progress every `simulation_save_s`, at the revision
it last wrote: that renews its lease (`simulation.runner`, `heartbeat_at`). A write by anyone else
(a stop request, a takeover) makes the next save conflict, and the runner reads the record again:
a stop request reaches the run, a lost lease ends it here. A replica takes over a job whose runner
is silent for `simulation_lease_s` (it died) or gave it up (it stopped): the run is replayed from
the start, which is deterministic, and saves nothing until it is past what was saved. A job whose
stop was asked for before its runner went away is not replayed: what ran is kept, as Stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import nats.js.errors

from runtime.errors import Conflict, NotFound
from runtime.kv import ResourceStore, Versioned
from runtime.tasks import raise_if_cancelled
from services.tuner.domain.jobs import JobRecord, SimulationState
from services.tuner.domain.simulated import (
    STOPPED_BY_REQUEST,
    SimulatedRun,
    SimulationAbandoned,
    finish_stopped,
)

log = logging.getLogger("trellis.tuner")
_RUNNING = ("InProgress", "Stopping")


class _LeaseLost(Exception):
    """Another replica holds the job now."""


def _now() -> datetime:
    return datetime.now(UTC)


def stop_requested(job: JobRecord) -> bool:
    return job.status == "Stopping" and job.stop_reason == STOPPED_BY_REQUEST


class Simulations:
    def __init__(
        self,
        store: ResourceStore[JobRecord],
        runner: str,
        *,
        max_running: int = 2,
        save_s: float = 1.0,
        lease_s: float = 15.0,
        max_record_bytes: int | None = None,
    ) -> None:
        self.store = store
        self.runner = runner
        self.max_running = max_running
        self.save_s = save_s
        self.lease_s = lease_s
        self.max_record_bytes = max_record_bytes
        self._runs: dict[str, SimulatedRun] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._claiming: set[str] = set()  # claims in flight: one at a time per job
        self._stops: set[str] = set()  # stops asked of this replica, for its runs to read
        self._closed = False
        self._executor = ThreadPoolExecutor(max_running, thread_name_prefix="tuner-simulation")

    def request_stop(self, name: str) -> None:
        """A stop of a job this replica runs reaches it at once, not at its next save (others
        read it from KV). A replay that has not caught up is closed by its driver instead."""
        run = self._runs.get(name)
        if run is None:
            return
        self._stops.add(name)
        if run.now >= run.resume_at:
            run.request_stop()

    def _held_elsewhere(self, job: JobRecord, now: datetime) -> bool:
        state = job.simulation
        if state is None or state.runner is None or state.runner == self.runner:
            return False
        if state.heartbeat_at is None:
            return False
        return (now - state.heartbeat_at).total_seconds() < self.lease_s

    async def claim(self, name: str, seen: JobRecord | None = None) -> None:
        """Runs the job here unless a live replica holds it or this one is busy (`seen`: the
        job as just read, to skip reading it again when it is held elsewhere)."""
        if self._closed or name in self._tasks or name in self._claiming:
            return
        if seen is not None:
            if seen.status not in _RUNNING or self._held_elsewhere(seen, _now()):
                return
            if not stop_requested(seen) and self._busy(claiming=0):
                return
        self._claiming.add(name)
        try:
            await self._claim(name)
        finally:
            self._claiming.discard(name)

    async def _claim(self, name: str) -> None:
        try:
            current = await self.store.get(name)
        except NotFound:
            return
        job = current.value
        now = _now()
        if job.status not in _RUNNING or self._held_elsewhere(job, now):
            return
        if not stop_requested(job) and self._busy(claiming=1):
            return  # a stopped job only needs its record closed: that takes no thread
        previous = job.simulation or SimulationState()
        job.simulation = previous.model_copy(
            update={"runner": self.runner, "heartbeat_at": now, "starts": previous.starts + 1}
        )
        try:
            claimed = await self.store.update(name, job, expected_revision=current.revision)
        except Conflict:
            return  # another replica was quicker, or the job changed: the next tick looks again
        if previous.starts:
            log.info(
                "tuning job %s: taking over its simulation (start %d, was %s)",
                name,
                previous.starts + 1,
                previous.runner,
            )
        task = asyncio.create_task(self._drive(claimed))
        self._tasks[name] = task
        task.add_done_callback(lambda _: self._tasks.pop(name, None))

    def _busy(self, *, claiming: int) -> bool:
        """Whether every thread is taken, not counting `claiming` claims of the caller's."""
        return len(self._tasks) + len(self._claiming) - claiming >= self.max_running

    async def close(self) -> None:
        """Gives up every run (their jobs stay with their last save, for a replica to take)."""
        self._closed = True
        for task in list(self._tasks.values()):
            task.cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)
        self._executor.shutdown(wait=False, cancel_futures=True)

    # -- one job ---------------------------------------------------------------------------------

    async def _drive(self, claimed: Versioned[JobRecord]) -> None:
        job, name, revision = claimed.value, claimed.key, claimed.revision
        lease = job.simulation or SimulationState(runner=self.runner)
        try:
            if stop_requested(job):
                await self.store.update(
                    name, self._released(finish_stopped(job), lease), expected_revision=revision
                )
                return
            replaying = lease.starts > 1
            run = SimulatedRun(
                job,
                lease=lease,
                max_record_bytes=self.max_record_bytes,
                snapshot_s=self.save_s,
                max_snapshot_s=self.lease_s / 3,
                resume_at=lease.simulated_time if replaying else 0.0,
            )
        except (Conflict, NotFound):
            return  # changed meanwhile: the next tick looks again
        except Exception as exc:
            log.exception("tuning job %s: its simulation could not start", name)
            with contextlib.suppress(Exception):
                await self.store.update(
                    name, self._released(_failed(job, exc), lease), expected_revision=revision
                )
            return
        self._runs[name] = run
        future = asyncio.get_running_loop().run_in_executor(self._executor, run.run)
        # An abandoned run ends with SimulationAbandoned that nobody reads: not worth a warning.
        future.add_done_callback(lambda done: done.cancelled() or done.exception())
        try:
            followed = await self._follow(name, run, future, job, revision)
            if followed is None:
                return  # stopped before a replay caught up: closed as it was
            revision = followed
            final = future.result()
            await self._write_final(name, self._released(final, lease), revision)
            log.info(
                "tuning job %s: simulation %s after %d reports, %.0f simulated s (%s)",
                name,
                final.status,
                run.events,
                run.now,
                final.stop_reason,
            )
        except (_LeaseLost, NotFound, SimulationAbandoned):
            run.abandon()
            log.info("tuning job %s: its simulation is held elsewhere now", name)
        except asyncio.CancelledError:
            run.abandon()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._release(name), timeout=5)
            raise
        except Exception:
            run.abandon()
            log.exception("tuning job %s: its simulation broke off", name)
        finally:
            self._runs.pop(name, None)
            self._stops.discard(name)

    async def _follow(
        self,
        name: str,
        run: SimulatedRun,
        future: asyncio.Future[JobRecord],
        stored: JobRecord | None,
        revision: int,
    ) -> int | None:
        """Saves the run's snapshots until it ends, renewing the lease; returns the revision,
        or None when a stop came while a replay had not caught up with the saved record (that
        record is closed as Stopped: the replay would keep less).

        `stored` is what KV holds while the run has published nothing newer (a replay before it
        passes the saved point): the lease is renewed on it.
        """
        stop_seen = False
        last_write = time.monotonic()
        while True:
            raise_if_cancelled()
            done, _ = await asyncio.wait({future}, timeout=self.save_s)
            if done:
                return revision
            if name in self._stops and not stop_seen:
                self._stops.discard(name)
                current = await self._reread(name)
                if stop_requested(current.value):
                    if stored is not None and run.now < run.resume_at:
                        await self._close_stopped(run, current)
                        return None
                    stop_seen = True
                    run.request_stop()
                    stored = current.value
                revision = current.revision
            snapshot = run.take_snapshot()
            if snapshot is not None and stop_seen and not snapshot.stopping:
                snapshot = None  # taken before the stop reached the run: its status is stale
            if snapshot is not None:
                payload, stored = snapshot.payload, None
            elif stored is not None and time.monotonic() - last_write >= self.lease_s / 3:
                lease = stored.simulation or SimulationState()
                stored.simulation = lease.model_copy(
                    update={"runner": self.runner, "heartbeat_at": _now()}
                )
                payload = stored.model_dump_json().encode()
            else:
                continue
            try:
                revision = await self._put(name, payload, revision)
                last_write = time.monotonic()
            except Conflict:
                current = await self._reread(name)
                revision = current.revision
                if stored is not None:
                    stored = current.value
                if not stop_requested(current.value):
                    continue
                if stored is not None and run.now < run.resume_at:
                    await self._close_stopped(run, current)
                    return None
                # Written by a stop request: the run hears of it, and until it publishes a
                # record that shows it, the lease is renewed on the one that says so.
                stop_seen = True
                run.request_stop()
                stored = current.value

    async def _close_stopped(self, run: SimulatedRun, current: Versioned[JobRecord]) -> None:
        """Stopped while replaying: what was saved is more than the replay has, and stands."""
        run.abandon()
        lease = current.value.simulation or SimulationState()
        closed = self._released(finish_stopped(current.value), lease)
        await self.store.update(current.key, closed, expected_revision=current.revision)

    async def _put(self, name: str, record_json: bytes, revision: int) -> int:
        """Stores a record's JSON as ResourceStore keeps it, if still at `revision`."""
        try:
            written = await self.store.kv.update(
                self.store.prefix + name, stored_form(record_json), last=revision
            )
        except nats.js.errors.KeyWrongLastSequenceError:
            raise Conflict(f"tuning job {name!r} changed") from None
        return int(written)

    async def _reread(self, name: str) -> Versioned[JobRecord]:
        current = await self.store.get(name)
        lease = current.value.simulation
        if lease is None or lease.runner != self.runner:
            raise _LeaseLost(name)
        return current

    async def _write_final(self, name: str, final: JobRecord, revision: int) -> None:
        payload = final.model_dump_json().encode()
        for _ in range(10):
            try:
                await self._put(name, payload, revision)
                return
            except Conflict:
                revision = (await self._reread(name)).revision  # the run is over: it stands
        raise Conflict(f"tuning job {name!r} keeps changing")

    def _released(self, record: JobRecord, lease: SimulationState) -> JobRecord:
        progress = record.simulation or lease
        record.simulation = SimulationState(
            runner=None,
            heartbeat_at=_now(),
            simulated_time=progress.simulated_time,
            starts=lease.starts,
            events=progress.events,
        )
        return record

    async def _release(self, name: str) -> None:
        """Leaves the job to the next replica that looks, without waiting out the lease."""

        def release(job: JobRecord) -> JobRecord:
            if job.simulation is not None and job.simulation.runner == self.runner:
                job.simulation = job.simulation.model_copy(update={"runner": None})
            return job

        await self.store.mutate(name, release)


def _failed(job: JobRecord, exc: Exception) -> JobRecord:
    job.status = "Failed"
    job.failure_reason = f"the simulation could not start: {type(exc).__name__}: {exc}"
    job.stop_reason = "the simulation failed"
    job.ended_at = _now()
    return job


def stored_form(record_json: bytes) -> bytes:
    """The bytes ResourceStore keeps for a resource written without a client token, wrapped
    around JSON the run already made (its records can be megabytes: no second encoding)."""
    return b'{"resource":' + record_json + b',"client_token":null}'
