"""A tuner worker: joins a pool, pulls trials from the pool's queue, runs each as a subprocess."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import re
import signal
import socket
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import nats.js.errors

from contracts import subjects, topology
from contracts.envelope import EnvelopeMeta
from contracts.tune import (
    POOL_NAME,
    TrialControl,
    TrialEnded,
    TrialQueued,
    TrialReported,
    WorkerInfo,
)
from runtime.bus import Bus
from runtime.consumer import DurableConsumer
from runtime.errors import NotFound
from runtime.kv import ResourceStore
from runtime.logs import configure_logging
from runtime.main import run as run_main
from runtime.settings import SharedSettings
from runtime.topology import ensure_bucket, ensure_platform, ensure_stream
from services.tuner.adapters.checkpoints import (
    DEFAULT_MAX_CHECKPOINT_BYTES,
    DEFAULT_STORE_BYTES,
    CheckpointStore,
    checkpoint_key,
)
from services.tuner.adapters.trial_process import TrialOutcome, TrialProcess, trial_argv
from services.tuner.domain.jobs import ACTIVE, JobRecord

log = logging.getLogger("trellis.tuner.worker")
REPO_ROOT = Path(__file__).resolve().parents[2]
# Settings a trial's script may see; everything else named TRELLIS_* (keys, secrets) is withheld.
_PASSED_TRELLIS = {"TRELLIS_DATA_DIR", "TRELLIS_LOG_LEVEL"}
# Ends after which the trial may run again (a promotion, or a requeue should this worker die
# before the end is recorded): its checkpoint goes to the store so any worker can resume it.
_SAVED_ON = frozenset({"paused", "completed", "no_report"})
DEFAULT_CHECKPOINT_EVERY_S = 60.0


def trial_env(job: str, trial_id: int, pool: str) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("TRELLIS_") or k in _PASSED_TRELLIS
    }
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    env.update(
        {"TRELLIS_TUNE_JOB": job, "TRELLIS_TUNE_TRIAL_ID": str(trial_id), "TRELLIS_TUNE_POOL": pool}
    )
    return env


class TrialHolderSilent(Exception):
    """Try again later (the message is redelivered), when the holder's registry entry expired."""


class Worker:
    def __init__(
        self,
        bus: Bus,
        pool: str,
        *,
        slots: int,
        data_dir: Path,
        cpus: int | None = None,
        gpus_per_trial: int = 0,
        gpus: list[str] | None = None,
        cost_per_hour: float = 0.0,
        ack_wait_s: float = 30.0,
        python: str = sys.executable,
        max_checkpoint_bytes: int = DEFAULT_MAX_CHECKPOINT_BYTES,
        checkpoint_store_bytes: int = DEFAULT_STORE_BYTES,
        checkpoint_every_s: float = DEFAULT_CHECKPOINT_EVERY_S,
        replicas: int = 1,
    ) -> None:
        self.bus = bus
        self.pool = pool
        # Each running trial holds gpus_per_trial of the GPUs, so GPUs bound the slots.
        self.free_gpus = list(gpus or [])
        if gpus_per_trial > 0:
            if len(self.free_gpus) < gpus_per_trial:
                raise ValueError(
                    f"{gpus_per_trial} GPUs per trial but this worker has {len(self.free_gpus)}"
                )
            slots = min(slots, len(self.free_gpus) // gpus_per_trial)
        self.slots = slots
        self.data_dir = data_dir
        self.cpus = cpus or os.cpu_count() or 1
        self.gpus_per_trial = gpus_per_trial
        self.cost_per_hour = cost_per_hour
        self.ack_wait_s = ack_wait_s
        self.python = python
        # 0 keeps checkpoints on this machine only.
        self.max_checkpoint_bytes = max_checkpoint_bytes
        self.checkpoint_store_bytes = checkpoint_store_bytes
        # While a trial runs, its checkpoint is stored at most this often (0: only when it ends),
        # so a trial requeued after its worker died resumes from it, not from the start.
        self.checkpoint_every_s = checkpoint_every_s
        self.replicas = replicas
        self._checkpoints: CheckpointStore | None = None
        self.id = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}".lower()
        self.started_at = datetime.now(UTC)
        self.running: dict[tuple[str, int], TrialProcess] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._consumer: DurableConsumer[TrialQueued] | None = None

    async def start(self) -> None:
        js = self.bus.js
        await ensure_platform(js)
        await ensure_stream(js, topology.TUNE_TRIAL_QUEUE)
        await ensure_stream(js, topology.TUNE_TRIAL_EVENTS)
        self.jobs_kv = await ensure_bucket(js, topology.TUNE_JOBS)
        self.jobs = ResourceStore(self.jobs_kv, JobRecord, "tuning job", prefix="job.")
        self.workers = await ensure_bucket(js, topology.TUNE_WORKERS)
        await self._checkpoint_store()
        await self.bus.subscribe(
            subjects.TUNE_TRIAL_CONTROL_REQUESTED, TrialControl, self.on_control
        )
        self._consumer = DurableConsumer(
            self.bus,
            topology.tune_pool_consumer(self.pool, self.ack_wait_s),
            TrialQueued,
            self.handle,
            concurrency=self.slots,
            batch=self.slots,
        )
        await self._consumer.start()
        self._tasks.append(asyncio.create_task(self._heartbeat()))
        log.info("worker %s joined pool %s with %d slots", self.id, self.pool, self.slots)

    async def stop(self) -> None:
        for process in list(self.running.values()):
            await process.stop()
        if self._consumer is not None:
            await self._consumer.stop()
        for task in self._tasks:
            task.cancel()
        with contextlib.suppress(Exception):
            await self.workers.delete(self._key())

    def _key(self) -> str:
        return f"{self.pool}.{self.id}"

    async def _heartbeat(self) -> None:
        while True:
            info = WorkerInfo(
                worker=self.id,
                pool=self.pool,
                slots=self.slots,
                busy=len(self.running),
                cpus=self.cpus,
                gpus_per_trial=self.gpus_per_trial,
                cost_per_hour=self.cost_per_hour,
                host=socket.gethostname(),
                started_at=self.started_at,
            )
            with contextlib.suppress(Exception):
                await self.workers.put(self._key(), info.model_dump_json().encode())
            await asyncio.sleep(topology.TUNE_WORKERS.ttl_s / 3)

    async def _alive(self, worker: str) -> bool:
        try:
            await self.workers.get(f"{self.pool}.{worker}")
        except nats.js.errors.KeyNotFoundError:
            return False
        return True

    async def on_control(self, control: TrialControl, _: EnvelopeMeta) -> None:
        process = self.running.get((control.job, control.trial_id))
        if process is None:
            return
        log.info("%s trial %s of %s", control.action, control.trial_id, control.job)
        if control.action == "pause":
            await process.pause()
        else:
            await process.stop()

    async def _claim(self, trial: TrialQueued) -> bool:
        """One run per attempt: the first worker to write the claim runs it. A claim held by a
        worker that is gone means the trial was lost with it."""
        key = f"claim.{trial.job}.{trial.trial_id}.{trial.attempt}"
        try:
            await self.jobs_kv.create(key, self.id.encode())
            return True
        except nats.js.errors.KeyWrongLastSequenceError:
            entry = await self.jobs_kv.get(key)
            holder = (entry.value or b"").decode()
        if holder == self.id:
            return False
        if await self._alive(holder):
            # Redelivered although its holder still shows in the registry: the holder stopped
            # renewing the message, so it is most likely dead and its entry not yet expired.
            raise TrialHolderSilent(f"trial {trial.trial_id} of {trial.job} held by {holder}")
        await self._ended(trial, "lost", f"worker {holder} stopped while running it", 0.0)
        return False

    async def handle(self, trial: TrialQueued, _: EnvelopeMeta) -> None:
        try:
            job = (await self.jobs.get(trial.job)).value
        except NotFound:
            return  # the job is gone
        record = job.trials.get(str(trial.trial_id))
        if record is None or record.attempt != trial.attempt or record.status not in ACTIVE:
            return  # stopped, requeued under a new attempt, or already ended
        if not await self._claim(trial):
            return
        checkpoint = self.data_dir / "tuner" / "checkpoints" / trial.checkpoint_dir
        checkpoint.mkdir(parents=True, exist_ok=True)
        seq = 0
        began = time.monotonic()
        saving: asyncio.Task[None] | None = None
        last_saved = began

        async def on_report(metrics: dict[str, Any]) -> None:
            nonlocal seq, saving, last_saved
            # Time and cost so far, so that a job can minimise them (the seed's Pareto set);
            # a script that reports its own keeps them.
            elapsed = time.monotonic() - began
            metrics.setdefault("elapsed_time", round(elapsed, 6))
            metrics.setdefault("cost", round(elapsed / 3600 * self.cost_per_hour, 9))
            await self.bus.emit(
                subjects.TUNE_TRIAL_REPORTED,
                TrialReported(
                    job=trial.job,
                    trial_id=trial.trial_id,
                    attempt=trial.attempt,
                    seq=seq,
                    metrics=metrics,
                    worker=self.id,
                    reported_at=datetime.now(UTC),
                ),
                message_id=f"{trial.job}-{trial.trial_id}-{trial.attempt}-{seq}",
            )
            seq += 1
            # Scripts write their checkpoint before they report: now is when it is whole.
            due = self.checkpoint_every_s > 0 and time.monotonic() - last_saved >= (
                self.checkpoint_every_s
            )
            if due and (saving is None or saving.done()):
                last_saved = time.monotonic()
                saving = asyncio.create_task(self._save(trial, checkpoint))

        try:
            argv = trial_argv(self.python, trial.entry_point, trial.config, checkpoint)
        except ValueError as exc:
            await self._ended(trial, "failed", f"cannot pass the config to the script: {exc}", 0.0)
            return
        env = trial_env(trial.job, trial.trial_id, trial.pool)
        held = [self.free_gpus.pop(0) for _ in range(self.gpus_per_trial)]
        if self.gpus_per_trial:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(held)
        process = TrialProcess(
            argv, cwd=Path.cwd(), env=env, on_report=on_report, timeout_s=trial.timeout_s
        )
        # Registered before the restore, so that a stop or pause sent meanwhile is not lost.
        self.running[(trial.job, trial.trial_id)] = process
        notes: list[str] = []
        try:
            if trial.resume:
                await self._restore(trial, checkpoint, notes)
            try:
                await process.start()
            except OSError as exc:
                await self._ended(trial, "failed", f"cannot start the script: {exc}", 0.0)
                return
            outcome: TrialOutcome = await process.wait()
        finally:
            self.running.pop((trial.job, trial.trial_id), None)
            self.free_gpus.extend(held)
            if saving is not None:
                await saving  # one upload of a key at a time; it never raises
        if outcome.reason in _SAVED_ON:
            # Before the end is sent: the trial may be queued again the moment it is recorded.
            await self._save(trial, checkpoint, notes)
        error = "\n".join([outcome.error, *notes] if outcome.error else notes) or None
        await self._ended(trial, outcome.reason, error, time.monotonic() - began, seq)

    async def _checkpoint_store(self) -> CheckpointStore | None:
        """The shared checkpoint bucket, opened on first use (and retried after a failure)."""
        if self._checkpoints is None and self.max_checkpoint_bytes > 0:
            try:
                self._checkpoints = await CheckpointStore.open(
                    self.bus.js,
                    max_bytes=self.max_checkpoint_bytes,
                    store_bytes=self.checkpoint_store_bytes,
                    scratch=self.data_dir / "tuner",
                    replicas=self.replicas,
                )
            except Exception as exc:
                log.warning("checkpoint store unavailable: %s", _describe(exc))
        return self._checkpoints

    async def _restore(self, trial: TrialQueued, checkpoint: Path, notes: list[str]) -> None:
        store = await self._checkpoint_store()
        if store is None:
            return
        key = checkpoint_key(trial.job, trial.trial_id)
        try:
            fetched = await store.restore(key, checkpoint)
        except Exception as exc:
            problem = _describe(exc)
            log.warning(
                "trial %s of %s: checkpoint not restored: %s", trial.trial_id, trial.job, problem
            )
            notes.append(
                f"[trellis] the stored checkpoint could not be restored ({problem}); "
                "the trial went on from this worker's own copy, if any"
            )
            return
        if fetched is not None:
            log.info(
                "trial %s of %s: checkpoint of attempt %s (worker %s) restored",
                trial.trial_id,
                trial.job,
                fetched.attempt,
                fetched.worker,
            )

    async def _save(
        self, trial: TrialQueued, checkpoint: Path, notes: list[str] | None = None
    ) -> None:
        """Store the trial's checkpoint. Without `notes` the trial is still running: a copy the
        script changed while it was packed is skipped (its next report tries again), and a
        failure is only logged."""
        store = await self._checkpoint_store()
        if store is None:
            return
        key = checkpoint_key(trial.job, trial.trial_id)
        try:
            await store.save(
                key, checkpoint, attempt=trial.attempt, worker=self.id, live=notes is None
            )
        except Exception as exc:
            problem = _describe(exc)
            log.warning(
                "trial %s of %s: checkpoint not stored: %s", trial.trial_id, trial.job, problem
            )
            if notes is not None:
                notes.append(
                    f"[trellis] the checkpoint could not be stored ({problem}); "
                    "only this worker can resume the trial from it"
                )

    async def _ended(
        self, trial: TrialQueued, reason: Any, error: str | None, elapsed: float, reports: int = 0
    ) -> None:
        await self.bus.emit(
            subjects.TUNE_TRIAL_ENDED,
            TrialEnded(
                job=trial.job,
                trial_id=trial.trial_id,
                attempt=trial.attempt,
                reason=reason,
                error=error[-8000:] if error else None,
                worker=self.id,
                pool=trial.pool,
                elapsed_s=elapsed,
                cost_per_hour=self.cost_per_hour,
                ended_at=datetime.now(UTC),
                reports=reports,
            ),
            message_id=f"{trial.job}-{trial.trial_id}-{trial.attempt}-end",
        )


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:300]}" if text else type(exc).__name__


def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The worker's options, for `python -m services.tuner.worker` and `trellis tuner-worker`."""
    p.add_argument("--pool", required=True, help="the pool to join (a job or pool_param names it)")
    p.add_argument("--slots", type=int, default=None, help="trials at once (default: CPU count)")
    p.add_argument("--cpus", type=int, default=None, help="CPUs this worker offers")
    p.add_argument("--gpus-per-trial", type=int, default=0, help="GPUs each trial gets")
    p.add_argument(
        "--gpus",
        default=os.environ.get("CUDA_VISIBLE_DEVICES", ""),
        help="the GPU ids this worker hands out, comma-separated (default: CUDA_VISIBLE_DEVICES)",
    )
    p.add_argument("--cost-per-hour", type=float, default=0.0, help="what an hour of a slot costs")
    p.add_argument(
        "--ack-wait-s",
        type=float,
        default=30.0,
        help="how soon a trial whose worker went silent goes to another worker",
    )
    p.add_argument(
        "--max-checkpoint-mb",
        type=int,
        default=os.environ.get(
            "TRELLIS_TUNER_MAX_CHECKPOINT_MB", str(DEFAULT_MAX_CHECKPOINT_BYTES // 2**20)
        ),
        help="largest checkpoint (tar) a trial may carry to another worker; 0 keeps checkpoints "
        "on this machine (default 512, env TRELLIS_TUNER_MAX_CHECKPOINT_MB)",
    )
    p.add_argument(
        "--checkpoint-store-mb",
        type=int,
        default=os.environ.get(
            "TRELLIS_TUNER_CHECKPOINT_STORE_MB", str(DEFAULT_STORE_BYTES // 2**20)
        ),
        help="size of the shared checkpoint bucket, set by the worker that creates it "
        "(default 2048, env TRELLIS_TUNER_CHECKPOINT_STORE_MB)",
    )
    p.add_argument(
        "--checkpoint-every-s",
        type=float,
        default=os.environ.get("TRELLIS_TUNER_CHECKPOINT_EVERY_S", str(DEFAULT_CHECKPOINT_EVERY_S)),
        help="store a running trial's checkpoint at most this often, at its reports, so a trial "
        "whose worker dies resumes from it; 0: only when the trial ends or pauses "
        f"(default {DEFAULT_CHECKPOINT_EVERY_S:g}, env TRELLIS_TUNER_CHECKPOINT_EVERY_S)",
    )
    return p


def parser() -> argparse.ArgumentParser:
    return add_arguments(argparse.ArgumentParser(prog="trellis tuner-worker", description=__doc__))


async def run_worker(args: argparse.Namespace) -> int:
    if not re.match(POOL_NAME, args.pool):
        print(
            f"trellis: pool names are lowercase letters, digits and '_' (got {args.pool!r})",
            file=sys.stderr,
        )
        return 2
    shared = SharedSettings()
    configure_logging("tuner-worker", shared.log_level, shared.log_format)
    bus = await Bus.connect(shared.resolved_nats_url(), source=f"tuner-worker.{args.pool}")
    worker = Worker(
        bus,
        args.pool,
        slots=args.slots or os.cpu_count() or 1,
        data_dir=shared.data_dir.resolve(),
        cpus=args.cpus,
        gpus_per_trial=args.gpus_per_trial,
        gpus=[g.strip() for g in args.gpus.split(",") if g.strip()],
        cost_per_hour=args.cost_per_hour,
        ack_wait_s=args.ack_wait_s,
        max_checkpoint_bytes=max(args.max_checkpoint_mb, 0) * 2**20,
        checkpoint_store_bytes=max(args.checkpoint_store_mb, 1) * 2**20,
        checkpoint_every_s=max(args.checkpoint_every_s, 0.0),
        replicas=shared.stream_replicas,
    )
    await worker.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await worker.stop()
    await bus.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    return run(parser().parse_args(argv))


def run(args: argparse.Namespace) -> int:
    return run_main(run_worker(args), SharedSettings())


if __name__ == "__main__":
    sys.exit(main())
