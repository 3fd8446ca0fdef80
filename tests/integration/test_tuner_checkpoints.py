"""Trial checkpoints travel through the object store: a trial paused on one worker resumes on another."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import nats.js.errors
import pytest

from contracts import topology
from contracts.tune import JobRef, TuningJobSpec
from runtime.bus import Bus
from services.tuner.adapters.checkpoints import (
    CheckpointError,
    CheckpointStore,
    checkpoint_key,
    read_marker,
)
from services.tuner.worker import Worker
from tests.integration.test_tuner import _process, ask, settled

# Resumes its epoch counter from the checkpoint directory and says where it resumed from. The
# trial named by --hang reports once and then runs until stopped, holding its worker's slot.
TRAIN = """\
import os, sys, time
from trellis.reporter import Reporter, checkpoint_dir, parse_config

config = parse_config()
trial = int(os.environ["TRELLIS_TUNE_TRIAL_ID"])
checkpoint = checkpoint_dir()
report = Reporter()
if trial == int(config["hang"]):
    report(epoch=0, accuracy=0.0, resumed_from=0, root=str(checkpoint))
    time.sleep(120)
    sys.exit(0)
accuracy = {0: 0.9, 2: 0.1}.get(trial, 0.5)
state = checkpoint / "epoch"
start = int(state.read_text()) if state.exists() else 0
for epoch in range(start + 1, int(config["epochs"]) + 1):
    if epoch > start + 1:
        time.sleep(float(config["delay"]))  # a pause at the previous rung lands meanwhile
    state.write_text(str(epoch))
    (checkpoint / "pad.bin").write_bytes(b"x" * int(config["pad"]))
    report(epoch=epoch, accuracy=accuracy, resumed_from=start, root=str(checkpoint))
"""


async def until(check: Callable[[], Awaitable[bool]], what: str, timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def promotion_spec(name: str, script: Path, pool: str, **config: Any) -> TuningJobSpec:
    return TuningJobSpec.model_validate(
        {
            "name": name,
            "entry_point": str(script),
            "config_space": {
                "lr": {"type": "loguniform", "lower": 1e-5, "upper": 1e-1},
                "epochs": 2,
                "delay": 20,
                "hang": -1,
                "pad": 0,
                **config,
            },
            "metrics": [{"name": "accuracy", "mode": "max"}],
            # Rung 1 only: the better half of the paused trials is promoted to epoch 2.
            "scheduler": {
                "type": "asha",
                "variant": "promotion",
                "resource_attr": "epoch",
                "max_resource": 2,
                "grace_period": 1,
                "reduction_factor": 2,
            },
            "stop": {"max_num_trials_started": 4},
            "n_workers": 2,
            "pool": pool,
        }
    )


@pytest.fixture
def script(tmp_path: Path) -> Path:
    path = tmp_path / "train.py"
    path.write_text(TRAIN)
    return path


@pytest.fixture
async def workers(nats_url: str) -> AsyncIterator[Callable[..., Awaitable[Worker]]]:
    started: list[tuple[Worker, Bus]] = []

    async def start(pool: str, data_dir: Path, **options: Any) -> Worker:
        bus = await Bus.connect(nats_url, source=f"worker-{data_dir.name}")
        worker = Worker(bus, pool, slots=1, data_dir=data_dir, **options)
        await worker.start()
        started.append((worker, bus))
        return worker

    yield start
    for worker, bus in started:
        await worker.stop()
        await bus.close()


async def stored_keys(bus: Bus, job: str) -> list[str]:
    store = await bus.js.object_store(topology.TUNE_CHECKPOINTS)
    try:
        infos = await store.list(ignore_deletes=True)
    except nats.js.errors.NotFoundError:
        return []
    return sorted(i.name for i in infos if i.name.startswith(f"{job}/"))


async def test_a_trial_paused_on_one_worker_resumes_on_another_from_its_checkpoint(
    tuner: Bus,
    workers: Callable[..., Awaitable[Worker]],
    script: Path,
    unique: str,
    tmp_path: Path,
) -> None:
    pool, name = f"c{unique}", f"ckpt-{unique}"
    first = await workers(pool, tmp_path / "a")
    # One slot each: trial 0 pauses on the first worker, which then holds trial 1 (it hangs),
    # so trial 2 and trial 0's promotion can only go to the second worker.
    await ask(tuner, "create_tuning_job", promotion_spec(name, script, pool, hang=1))

    async def trials() -> dict[int, dict[str, Any]]:
        rows = (await ask(tuner, "list_trials", JobRef(name=name)))["trials"]
        return {row["trial_id"]: row for row in rows}

    async def first_holds_trial_1() -> bool:
        rows = await trials()
        return (
            rows[0]["status"] == "paused"
            and 1 in rows
            and rows[1]["status"] == "running"
            and rows[1]["worker"] == first.id
        )

    await until(first_holds_trial_1, "trial 0 paused and trial 1 running on the first worker")
    assert await stored_keys(tuner, name) == [checkpoint_key(name, 0)]
    second = await workers(pool, tmp_path / "b")

    async def trial_0_completed() -> bool:
        return bool((await trials())[0]["status"] == "completed")

    await until(trial_0_completed, "trial 0 to resume and complete")
    rows = await trials()
    resumed = rows[0]
    assert resumed["attempt"] == 2 and resumed["worker"] == second.id
    first_run, second_run = resumed["reports"]
    assert first_run["epoch"] == 1 and first_run["resumed_from"] == 0
    assert first_run["root"].startswith(str(tmp_path / "a"))
    # On the second worker, from the epoch stored by the first one, not from epoch 0.
    assert second_run["epoch"] == 2 and second_run["resumed_from"] == 1
    assert second_run["root"].startswith(str(tmp_path / "b"))
    local = tmp_path / "b" / "tuner" / "checkpoints" / name / "0"
    assert (local / "epoch").read_text() == "2" and read_marker(local) is not None
    assert rows[2]["status"] == "paused" and rows[2]["worker"] == second.id

    await ask(tuner, "stop_tuning_job", JobRef(name=name))
    job = await settled(tuner, name, timeout_s=20)
    assert job["status"] == "Stopped", job

    async def forgotten() -> bool:
        return not await stored_keys(tuner, name)

    await until(forgotten, "the job's checkpoints to be removed")


async def test_a_checkpoint_over_the_cap_stays_local_and_the_trial_still_resumes(
    tuner: Bus,
    workers: Callable[..., Awaitable[Worker]],
    script: Path,
    unique: str,
    tmp_path: Path,
) -> None:
    pool, name = f"o{unique}", f"over-{unique}"
    await workers(pool, tmp_path / "only", max_checkpoint_bytes=4096)
    await ask(tuner, "create_tuning_job", promotion_spec(name, script, pool, pad=8192))
    job = await settled(tuner, name, timeout_s=25)
    assert job["status"] == "Completed", job
    rows = {
        r["trial_id"]: r for r in (await ask(tuner, "list_trials", JobRef(name=name)))["trials"]
    }
    # Not stored (too big), yet resumed from this worker's own copy.
    assert rows[0]["status"] == "completed" and rows[0]["attempt"] == 2
    assert [r["resumed_from"] for r in rows[0]["reports"]] == [0, 1]
    assert await stored_keys(tuner, name) == []


async def test_checkpoint_store_round_trip_metadata_and_refusals(
    bus: Bus, unique: str, tmp_path: Path
) -> None:
    store = await CheckpointStore.open(bus.js, max_bytes=64 * 1024, scratch=tmp_path / "scratch")
    key = checkpoint_key(f"rt-{unique}", 3)
    here, there = tmp_path / "here", tmp_path / "there"
    (here / "nested").mkdir(parents=True)
    (here / "epoch").write_text("7")
    (here / "nested" / "weights.bin").write_bytes(bytes(range(256)) * 16)

    saved = await store.save(key, here, attempt=2, worker="w-1")
    assert saved is not None
    assert await store.save(key, here, attempt=2, worker="w-1") is None  # unchanged
    stored = await store.stored(key)
    assert stored == saved and (stored.attempt, stored.worker) == (2, "w-1")
    headers = (await store.store.get_info(key)).headers or {}
    assert headers["Trellis-Sha256"] == [saved.sha256]
    assert headers["Trellis-Size"] == [str(1 + 256 * 16)]

    assert await store.restore(key, there) == saved
    assert (there / "epoch").read_text() == "7"
    assert (there / "nested" / "weights.bin").read_bytes() == bytes(range(256)) * 16
    assert await store.restore(key, there) is None  # already this version

    (there / "epoch").write_text("8")
    newer = await store.save(key, there, attempt=3, worker="w-2")
    assert newer is not None and newer.sha256 != saved.sha256
    assert await store.restore(key, here) == newer
    assert (here / "epoch").read_text() == "8"

    (here / "huge.bin").write_bytes(b"\0" * 128 * 1024)
    with pytest.raises(CheckpointError, match="larger than"):
        await store.save(key, here, attempt=4, worker="w-1")

    await store.store.put(key, b"not a tar archive at all" * 64)
    with pytest.raises(CheckpointError, match="not a tar"):
        await store.restore(key, there)
    assert (there / "epoch").read_text() == "8"  # left as it was

    assert await store.delete_job(f"rt-{unique}") == 1
    assert await store.stored(key) is None


async def test_a_trial_whose_worker_is_killed_resumes_from_the_checkpoint_stored_while_it_ran(
    nats_url: str,
    tuner: Bus,
    workers: Callable[..., Awaitable[Worker]],
    script: Path,
    unique: str,
    tmp_path: Path,
) -> None:
    pool, name = f"l{unique}", f"live-{unique}"
    env = {
        **os.environ,
        "TRELLIS_NATS_URL": nats_url,
        "TRELLIS_DATA_DIR": str(tmp_path / "a"),
        "TRELLIS_LOG_LEVEL": "WARNING",
    }
    argv = [sys.executable, "-m", "services.tuner.worker", "--pool", pool, "--slots", "1"]
    argv += ["--ack-wait-s", "2", "--checkpoint-every-s", "0.1"]
    first = _process(argv, env, tmp_path / "worker.log")
    try:
        spec = promotion_spec(name, script, pool, epochs=40, delay=0.4).model_dump()
        spec["scheduler"] = {"type": "random"}
        spec["stop"] = {"max_num_trials_started": 1}
        await ask(tuner, "create_tuning_job", TuningJobSpec.model_validate(spec))
        store = await CheckpointStore.open(tuner.js, max_bytes=2**20, scratch=tmp_path / "scratch")

        async def stored_epoch() -> int:
            copy = tmp_path / f"copy-{time.monotonic_ns()}"  # no sync marker: always fetched
            copy.mkdir()
            if await store.restore(checkpoint_key(name, 0), copy) is None:
                return 0
            return int((copy / "epoch").read_text())

        async def three_epochs_stored() -> bool:
            return await stored_epoch() >= 3

        await until(three_epochs_stored, "the running trial's checkpoint at epoch 3", 40)
        os.killpg(first.pid, signal.SIGKILL)  # the worker and its trial, mid-training
        first.wait()
        stored = await stored_epoch()
        await workers(pool, tmp_path / "b", checkpoint_every_s=0.1)

        async def resumed() -> bool:
            rows = (await ask(tuner, "list_trials", JobRef(name=name)))["trials"]
            return any(r["resumed_from"] > 0 for r in rows[0]["reports"])

        await until(resumed, "the trial to resume on the second worker", 60)
        await ask(tuner, "stop_tuning_job", JobRef(name=name))
        rows = (await ask(tuner, "list_trials", JobRef(name=name)))["trials"]
        second_run = [r for r in rows[0]["reports"] if r["resumed_from"] > 0]
        # From the epoch stored before the kill, not from the start (the trial's own last
        # checkpoint may be one epoch further, its upload cut short by the kill).
        assert second_run[0]["resumed_from"] >= stored >= 3
        assert second_run[0]["root"].startswith(str(tmp_path / "b"))
        assert rows[0]["attempt"] == 2
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
            first.wait()
