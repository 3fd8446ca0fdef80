"""Tuner end to end: jobs on a real NATS, workers running real trial scripts, stops, crashes, restarts."""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from contracts import subjects
from contracts.envelope import Message
from contracts.tune import JobChart, JobRef, TuneResult, TuningJobSpec
from runtime.bus import Bus
from runtime.errors import ServiceUnavailable, TrellisError
from runtime.settings import SharedSettings
from services.gateway.adapters.bootstrap import load_or_create_credentials
from services.gateway.config import BootstrapSettings
from services.tuner.worker import Worker
from tests.conftest import serving_gateway

REPO_ROOT = Path(__file__).resolve().parents[2]

# Accuracy peaks at lr = 1e-3 and grows with epochs; it resumes from its checkpoint.
TRAIN = """\
import math, time
from trellis.reporter import Reporter, checkpoint_dir, parse_config

config = parse_config()
lr = float(config["lr"])
epochs = int(config.get("epochs", "9"))
delay = float(config.get("delay", "0.02"))
checkpoint = checkpoint_dir()
start = 1
if checkpoint is not None and (checkpoint / "epoch").exists():
    start = int((checkpoint / "epoch").read_text()) + 1
report = Reporter()
for epoch in range(start, epochs + 1):
    time.sleep(delay)
    quality = max(0.0, 1 - abs(math.log10(lr) + 3) / 3)
    if checkpoint is not None:
        (checkpoint / "epoch").write_text(str(epoch))
    report(epoch=epoch, accuracy=quality * (1 - 0.5 ** epoch))
"""
CRASH = "import sys\nprint('loading data', flush=True)\nraise SystemExit('boom: no such dataset')\n"
SILENT = "print('training without reporting anything')\n"


def spec(name: str, entry_point: Path, pool: str, **changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "name": name,
        "entry_point": str(entry_point),
        "config_space": {
            "lr": {"type": "loguniform", "lower": 1e-5, "upper": 1e-1},
            "epochs": 9,
        },
        "metrics": [{"name": "accuracy", "mode": "max"}],
        "scheduler": {
            "type": "asha",
            "resource_attr": "epoch",
            "max_resource": 9,
            "grace_period": 1,
            "reduction_factor": 3,
        },
        "stop": {"max_num_trials_started": 8},
        "n_workers": 2,
        "pool": pool,
    }
    return {**base, **changes}


async def ask(bus: Bus, operation: str, message: Message) -> dict[str, Any]:
    result = await bus.request(
        subjects.tune_operation(operation), message, TuneResult, timeout_s=10, service="tuner"
    )
    return result.output


async def settled(bus: Bus, name: str, timeout_s: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    job: dict[str, Any] = {}
    while time.monotonic() < deadline:
        try:
            job = await ask(bus, "describe_tuning_job", JobRef(name=name))
        except ServiceUnavailable:  # a tuner restarting
            await asyncio.sleep(0.2)
            continue
        if job["status"] not in ("InProgress", "Stopping"):
            return job
        await asyncio.sleep(0.1)
    raise AssertionError(f"job {name} still {job.get('status')}: {job.get('trial_counts')}")


@pytest.fixture
def scripts(tmp_path: Path) -> dict[str, Path]:
    paths = {}
    for name, text in (("train", TRAIN), ("crash", CRASH), ("silent", SILENT)):
        paths[name] = tmp_path / f"{name}.py"
        paths[name].write_text(text)
    return paths


@pytest.fixture
async def worker(nats_url: str, tmp_path: Path, unique: str) -> AsyncIterator[Worker]:
    bus = await Bus.connect(nats_url, source="worker")
    pool = f"p{unique}"
    running = Worker(bus, pool, slots=2, data_dir=tmp_path, cost_per_hour=3.6)
    await running.start()
    yield running
    await running.stop()
    await bus.close()


async def test_asha_job_runs_on_a_pool_and_finds_the_best_learning_rate(
    tuner: Bus, worker: Worker, scripts: dict[str, Path], unique: str, tmp_path: Path
) -> None:
    name = f"asha-{unique}"
    created = await ask(
        tuner,
        "create_tuning_job",
        TuningJobSpec.model_validate(spec(name, scripts["train"], worker.pool)),
    )
    assert created["status"] == "InProgress" and created["running"] == 2
    job = await settled(tuner, name)
    assert job["status"] == "Completed", job
    assert "max_num_trials_started 8" in job["stop_reason"]
    counts = job["trial_counts"]
    assert sum(counts.values()) == 8
    assert counts.get("stopped", 0) >= 1  # ASHA stopped the weak ones at a rung
    best = job["best"]
    assert best["metrics"]["accuracy"] > 0.3
    trials = (await ask(tuner, "list_trials", JobRef(name=name)))["trials"]
    for trial in trials:
        epochs = [r["epoch"] for r in trial["reports"]]
        assert epochs == sorted(set(epochs)), epochs  # no report applied twice
        assert trial["pool"] == worker.pool and trial["cost"] > 0  # 3.6 per hour
    full = [t for t in trials if t["status"] == "completed"]
    assert full and all(t["resource"] == 9 for t in full)
    stopped = [t for t in trials if t["status"] == "stopped"]
    assert all(t["resource"] < 9 for t in stopped)
    csv = (await ask(tuner, "list_trials", JobRef(name=name)))["csv"].splitlines()
    assert csv[0].startswith("trial_id,status,pool,epochs,lr,epoch,accuracy") and len(csv) == 9


async def test_bad_specs_and_bad_scripts_give_clear_errors(
    tuner: Bus, worker: Worker, scripts: dict[str, Path], unique: str
) -> None:
    bad_space = spec(f"bad-{unique}", scripts["train"], worker.pool)
    bad_space["config_space"]["lr"] = {"type": "uniform", "lower": 1, "upper": 1}
    with pytest.raises(TrellisError, match="lr"):
        await ask(tuner, "create_tuning_job", TuningJobSpec.model_validate(bad_space))
    with pytest.raises(ValueError, match="bogus"):
        TuningJobSpec.model_validate(
            spec(
                f"x-{unique}", scripts["train"], worker.pool, scheduler={"type": "asha", "bogus": 1}
            )
        )
    two_metrics = spec(
        f"mo-{unique}",
        scripts["train"],
        worker.pool,
        metrics=[{"name": "accuracy", "mode": "max"}, {"name": "epoch", "mode": "min"}],
    )
    with pytest.raises(TrellisError, match="moasha"):
        await ask(tuner, "create_tuning_job", TuningJobSpec.model_validate(two_metrics))

    for script, expected in (("crash", "boom: no such dataset"), ("silent", "never")):
        name = f"{script}-{unique}"
        await ask(
            tuner,
            "create_tuning_job",
            TuningJobSpec.model_validate(spec(name, scripts[script], worker.pool)),
        )
        job = await settled(tuner, name)
        assert job["status"] == "Failed", job
        assert expected in job["failure_reason"], job["failure_reason"]
        # It gave up after 3 failures (a trial already queued is stopped), not after all 8.
        counts = job["trial_counts"]
        assert counts["failed"] == 3 and sum(counts.values()) <= 3 + 2, counts


async def test_stop_reaches_running_trials_within_a_second(
    tuner: Bus, worker: Worker, scripts: dict[str, Path], unique: str
) -> None:
    name = f"stop-{unique}"
    slow = spec(name, scripts["train"], worker.pool)
    slow["config_space"]["delay"] = 0.5
    slow["config_space"]["epochs"] = 200
    slow["scheduler"] = {"type": "random"}
    await ask(tuner, "create_tuning_job", TuningJobSpec.model_validate(slow))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        job = await ask(tuner, "describe_tuning_job", JobRef(name=name))
        if job["trial_counts"].get("running", 0) == 2:
            break
        await asyncio.sleep(0.1)
    began = time.monotonic()
    await ask(tuner, "stop_tuning_job", JobRef(name=name))
    job = await settled(tuner, name, timeout_s=15)
    assert job["status"] == "Stopped" and job["stop_reason"] == "stopped by request"
    assert time.monotonic() - began < 5
    assert job["trial_counts"] == {"stopped": 2}
    assert not worker.running


def _process(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            argv, cwd=REPO_ROOT, env=env, stdout=out, stderr=out, start_new_session=True
        )


async def test_kill_9_of_the_tuner_and_of_a_worker_loses_and_duplicates_nothing(
    nats_url: str, scripts: dict[str, Path], unique: str, tmp_path: Path
) -> None:
    env = {
        **os.environ,
        "TRELLIS_NATS_URL": nats_url,
        "TRELLIS_DATA_DIR": str(tmp_path),
        "TRELLIS_TUNER_TICK_S": "0.2",
        "TRELLIS_LOG_LEVEL": "WARNING",
    }
    pool = f"k{unique}"
    worker_argv = [sys.executable, "-m", "services.tuner.worker", "--pool", pool, "--slots", "2"]
    worker_argv += ["--ack-wait-s", "2"]
    tuner = _process([sys.executable, "-m", "services.tuner"], env, tmp_path / "tuner.log")
    first_worker = _process(worker_argv, env, tmp_path / "worker1.log")
    bus = await Bus.connect(nats_url, source="test")
    second_worker: subprocess.Popen[bytes] | None = None
    try:
        name = f"kill-{unique}"
        job_spec = spec(name, scripts["train"], pool, stop={"max_num_trials_started": 6})
        job_spec["config_space"]["delay"] = 0.3
        for _ in range(100):
            try:
                await ask(bus, "create_tuning_job", TuningJobSpec.model_validate(job_spec))
                break
            except TrellisError as exc:
                if "unavailable" not in str(exc):
                    raise
                await asyncio.sleep(0.2)
        # Let trials run, then kill -9 the tuner and the worker in the middle of them.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            job = await ask(bus, "describe_tuning_job", JobRef(name=name))
            if job["trial_counts"].get("running", 0) >= 1:
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.5)
        os.killpg(tuner.pid, signal.SIGKILL)
        os.killpg(first_worker.pid, signal.SIGKILL)
        tuner.wait()
        first_worker.wait()
        tuner = _process([sys.executable, "-m", "services.tuner"], env, tmp_path / "tuner2.log")
        second_worker = _process(worker_argv, env, tmp_path / "worker2.log")
        job = await settled(bus, name, timeout_s=90)
        assert job["status"] == "Completed", (job, (tmp_path / "worker2.log").read_text()[-2000:])
        trials = (await ask(bus, "list_trials", JobRef(name=name)))["trials"]
        assert sorted(t["trial_id"] for t in trials) == list(range(6))  # none lost, none extra
        assert any(t["attempt"] > 1 for t in trials)  # the killed worker's trials ran again
        for trial in trials:
            epochs = [r["epoch"] for r in trial["reports"]]
            assert epochs == sorted(set(epochs)), (trial["trial_id"], epochs)
    finally:
        for process in (tuner, first_worker, second_worker):
            if process is not None and process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        await bus.close()


async def test_rest_and_cli(
    nats_url: str,
    tuner: Bus,
    worker: Worker,
    scripts: dict[str, Path],
    unique: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from trellis import cli

    shared = SharedSettings(data_dir=tmp_path)
    gateway_bus = await Bus.connect(nats_url, source="gateway")
    credentials = load_or_create_credentials(tmp_path, BootstrapSettings())
    try:
        async with serving_gateway(gateway_bus, shared) as url:
            monkeypatch.setenv("TRELLIS_GATEWAY_URL", url)
            monkeypatch.setenv("TRELLIS_API_KEY", credentials.api_key)
            name = f"cli-{unique}"
            path = tmp_path / "spec.yaml"
            path.write_text(
                yaml.safe_dump(
                    spec(name, scripts["train"], worker.pool, stop={"max_num_trials_started": 3})
                )
            )
            code = await asyncio.to_thread(cli.main, ["tune", "run", str(path), "--wait"])
            out = capsys.readouterr().out
            assert code == 0, out
            assert f"{name}: Completed" in out and "best trial" in out
            async with httpx.AsyncClient(
                base_url=url, headers={"Authorization": f"Bearer {credentials.api_key}"}
            ) as http:
                listed = await http.get("/v1/tuning-jobs")
                [row] = [j for j in listed.json()["jobs"] if j["name"] == name]
                assert (
                    sum(row["trial_counts"].values()) == 3 and "accuracy" in row["best"]["metrics"]
                )
                csv = await http.get(f"/v1/tuning-jobs/{name}/trials.csv")
                assert (
                    csv.headers["content-type"].startswith("text/csv")
                    and len(csv.text.splitlines()) == 4
                )
                bad = await http.post("/v1/tuning-jobs", json={"name": "x"})
                assert bad.status_code == 400 and "entry_point" in bad.text
                best = await http.get(f"/v1/tuning-jobs/{name}/charts/best.svg")
                assert best.status_code == 200 and best.headers["content-type"] == "image/svg+xml"
                assert "best accuracy" in best.text.lower()
                png = await http.get(f"/v1/tuning-jobs/{name}/charts/best.png")
                assert png.content.startswith(b"\x89PNG")
                single = await http.get(f"/v1/tuning-jobs/{name}/charts/pareto.svg")
                assert single.status_code == 400 and "two or more metrics" in single.text
                missing = await http.get("/v1/tuning-jobs/nope-nope")
                assert missing.status_code == 404
                anonymous = await httpx.AsyncClient(base_url=url).get("/v1/tuning-jobs")
                assert anonymous.status_code == 401
    finally:
        await gateway_bus.close()


async def test_pools_as_a_hyperparameter_give_a_pareto_set_over_accuracy_and_cost(
    nats_url: str, tuner: Bus, scripts: dict[str, Path], unique: str, tmp_path: Path
) -> None:
    buses = [await Bus.connect(nats_url, source=f"w{i}") for i in range(2)]
    # A cheap pool and a dear one: the same trial costs 100x more on `dear`.
    cheap, dear = f"c{unique}", f"d{unique}"
    workers = [
        Worker(buses[0], cheap, slots=2, data_dir=tmp_path, cost_per_hour=1.0),
        Worker(buses[1], dear, slots=2, data_dir=tmp_path, cost_per_hour=100.0),
    ]
    for worker in workers:
        await worker.start()
    try:
        name = f"pareto-{unique}"
        job_spec = spec(
            name,
            scripts["train"],
            cheap,
            metrics=[{"name": "accuracy", "mode": "max"}, {"name": "cost", "mode": "min"}],
            scheduler={"type": "moasha", "resource_attr": "epoch", "max_resource": 9},
            pool_param="st_instance_type",
            n_workers=4,
            stop={"max_num_trials_started": 10},
        )
        job_spec["config_space"]["st_instance_type"] = {
            "type": "choice",
            "categories": [cheap, dear],
        }
        await ask(tuner, "create_tuning_job", TuningJobSpec.model_validate(job_spec))
        job = await settled(tuner, name)
        assert job["status"] == "Completed", job
        trials = (await ask(tuner, "list_trials", JobRef(name=name)))["trials"]
        assert {t["pool"] for t in trials} == {cheap, dear}
        assert all(t["pool"] == t["config"]["st_instance_type"] for t in trials)
        pareto = job["pareto"]
        assert pareto["trials"] and pareto["hypervolume"] > 0
        # No trial on the front dominates another one (higher accuracy at no more cost).
        points = [(t["metrics"]["accuracy"], t["metrics"]["cost"]) for t in pareto["trials"]]
        for a in points:
            assert not any(b != a and b[0] >= a[0] and b[1] <= a[1] for b in points), points
        chart = await ask(tuner, "job_chart", JobChart(name=name, kind="pareto"))
        svg = base64.b64decode(chart["data"]).decode()
        assert chart["content_type"] == "image/svg+xml" and "<title" in svg
        assert cheap in svg and dear in svg  # the legend names each pool
    finally:
        for worker in workers:
            await worker.stop()
        for bus in buses:
            await bus.close()


async def test_promotion_asha_pauses_trials_and_resumes_them_from_their_checkpoint(
    tuner: Bus, worker: Worker, scripts: dict[str, Path], unique: str
) -> None:
    name = f"promo-{unique}"
    job_spec = spec(name, scripts["train"], worker.pool, stop={"max_num_trials_started": 9})
    job_spec["config_space"]["delay"] = 0.15  # slow enough for a pause to land mid-trial
    job_spec["scheduler"] = {
        "type": "asha",
        "variant": "promotion",
        "resource_attr": "epoch",
        "max_resource": 9,
        "grace_period": 1,
        "reduction_factor": 3,
    }
    await ask(tuner, "create_tuning_job", TuningJobSpec.model_validate(job_spec))
    job = await settled(tuner, name, timeout_s=90)
    assert job["status"] == "Completed", job
    trials = (await ask(tuner, "list_trials", JobRef(name=name)))["trials"]
    resumed = [t for t in trials if t["attempt"] > 1]
    assert resumed, [(t["trial_id"], t["status"], t["resource"]) for t in trials]
    for trial in resumed:
        epochs = [r["epoch"] for r in trial["reports"]]
        # It went on from its checkpoint: epochs continue, none repeated.
        assert epochs == list(range(1, len(epochs) + 1)), epochs
    assert any(t["status"] == "paused" for t in trials), [
        (t["trial_id"], t["status"], t["resource"], t["attempt"]) for t in trials
    ]


async def test_trials_get_their_own_gpus(
    nats_url: str, tuner: Bus, unique: str, tmp_path: Path
) -> None:
    script = tmp_path / "gpus.py"
    script.write_text(
        "import os, time\n"
        "from trellis.reporter import Reporter\n"
        "time.sleep(0.3)\n"
        "Reporter()(epoch=1, loss=1.0, gpus=os.environ.get('CUDA_VISIBLE_DEVICES', ''))\n"
    )
    bus = await Bus.connect(nats_url, source="gpu-worker")
    pool = f"g{unique}"
    # Four GPUs, two per trial: two slots although four were asked for.
    worker = Worker(
        bus, pool, slots=4, data_dir=tmp_path, gpus_per_trial=2, gpus=["0", "1", "2", "3"]
    )
    assert worker.slots == 2
    with pytest.raises(ValueError, match="2 GPUs per trial but this worker has 1"):
        Worker(bus, pool, slots=1, data_dir=tmp_path, gpus_per_trial=2, gpus=["0"])
    await worker.start()
    try:
        name = f"gpu-{unique}"
        job = spec(
            name,
            script,
            pool,
            stop={"max_num_trials_started": 4},
            n_workers=2,
            metrics=[{"name": "loss", "mode": "min"}],
            scheduler={"type": "random"},
        )
        await ask(tuner, "create_tuning_job", TuningJobSpec.model_validate(job))
        assert (await settled(tuner, name))["status"] == "Completed"
        trials = (await ask(tuner, "list_trials", JobRef(name=name)))["trials"]
        seen = [t["reports"][0]["gpus"] for t in trials]
        assert all(g in ("0,1", "2,3") for g in seen), seen
        assert sorted(worker.free_gpus) == ["0", "1", "2", "3"]  # every GPU handed back
    finally:
        await worker.stop()
        await bus.close()
