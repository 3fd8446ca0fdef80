"""Simulator jobs end to end: REST to the tuner on a real NATS, simulated time, stop, takeover."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from contracts import subjects, topology
from contracts.envelope import Message
from contracts.tune import JobRef, TuneResult, TuningJobSpec
from runtime.bus import Bus
from runtime.errors import TrellisError
from runtime.kv import ResourceStore
from runtime.settings import SharedSettings
from runtime.topology import ensure_bucket
from services.gateway.adapters.bootstrap import load_or_create_credentials
from services.gateway.config import BootstrapSettings
from services.tuner.app import build as build_tuner
from services.tuner.config import Settings as TunerSettings
from services.tuner.domain.jobs import JobRecord, SimulationState
from services.tuner.domain.simulated import SimulatedRun, resolve_spec
from tests.conftest import serving_gateway


async def ask(bus: Bus, operation: str, message: Message) -> dict[str, Any]:
    result = await bus.request(
        subjects.tune_operation(operation), message, TuneResult, timeout_s=10, service="tuner"
    )
    return result.output


async def settled(bus: Bus, name: str, timeout_s: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    job: dict[str, Any] = {}
    while time.monotonic() < deadline:
        job = await ask(bus, "describe_tuning_job", JobRef(name=name))
        if job["status"] not in ("InProgress", "Stopping"):
            return job
        await asyncio.sleep(0.05)
    raise AssertionError(f"job {name} still {job.get('status')}: {job.get('simulation')}")


def simulated(name: str, benchmark: str = "learning-curves", **changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "name": name,
        "backend": {"type": "simulator", "benchmark": benchmark},
        "scheduler": {"type": "asha", "grace_period": 1, "reduction_factor": 3},
        "stop": {"max_num_trials_started": 60},
        "n_workers": 4,
    }
    return {**base, **changes}


# A GP searcher over six dimensions takes a while per trial: long enough to stop or take over.
SLOW = {"type": "bo", "searcher": "gp", "max_resource": 3}


async def _start_tuner(nats_url: str, tmp_path: Path, **settings: Any) -> tuple[Bus, Any]:
    bus = await Bus.connect(nats_url, source="tuner")
    service = await build_tuner(
        bus,
        TunerSettings(tick_s=0.2, simulation_save_s=0.2, **settings),
        SharedSettings(data_dir=tmp_path),
    )
    await service.start()
    return bus, service


@pytest.fixture
async def tuner(nats_url: str, tmp_path: Path) -> AsyncIterator[Bus]:
    bus, service = await _start_tuner(nats_url, tmp_path)
    yield bus
    await service.stop()
    await bus.close()


async def test_a_simulator_job_over_rest_runs_asha_in_simulated_time(
    nats_url: str, tuner: Bus, unique: str, tmp_path: Path
) -> None:
    gateway_bus = await Bus.connect(nats_url, source="gateway")
    credentials = load_or_create_credentials(tmp_path, BootstrapSettings())
    try:
        async with (
            serving_gateway(gateway_bus, SharedSettings(data_dir=tmp_path)) as url,
            httpx.AsyncClient(
                base_url=url, headers={"Authorization": f"Bearer {credentials.api_key}"}
            ) as http,
        ):
            name = f"sim-{unique}"
            began = time.monotonic()
            created = await http.post("/v1/tuning-jobs", json=simulated(name))
            assert created.status_code == 201, created.text
            body = created.json()
            # What the spec left out came from the benchmark.
            assert body["spec"]["metrics"] == [{"name": "accuracy", "mode": "max"}]
            assert body["spec"]["scheduler"]["max_resource"] == 81
            assert set(body["spec"]["config_space"]) == {"lr", "batch_size", "dropout", "layers"}
            job = await settled(tuner, name)
            assert time.monotonic() - began < 20  # hours of simulated training, in seconds
            assert job["status"] == "Completed", job
            assert job["stop_reason"] == "max_num_trials_started 60 reached"
            assert sum(job["trial_counts"].values()) == 60
            simulation = job["simulation"]
            assert simulation["simulated_time"] > 1800 and simulation["reports"] > 60
            assert simulation["runner"] is None and simulation["starts"] == 1
            assert job["best"]["metrics"]["accuracy"] > 0.5

            trials = (await http.get(f"/v1/tuning-jobs/{name}/trials")).json()["trials"]
            assert len(trials) == 60 and {t["pool"] for t in trials} == {"simulator"}
            stopped = [t for t in trials if t["status"] == "stopped"]
            completed = [t for t in trials if t["status"] == "completed"]
            # ASHA stopped most trials at a rung (1, 3, 9 or 27 epochs) and let a few finish.
            assert len(stopped) > 30 and completed
            assert all(t["resource"] in (1, 3, 9, 27) for t in stopped)
            assert all(t["resource"] == 81 for t in completed)
            for trial in trials:
                epochs = [r["epoch"] for r in trial["reports"]]
                assert epochs == list(range(1, len(epochs) + 1))
                times = [r["st_tuner_time"] for r in trial["reports"]]
                assert times == sorted(times) and times[-1] <= simulation["simulated_time"]
                # Workers' extras, in simulated seconds: 3 s to 51 s per epoch.
                last = trial["reports"][-1]
                assert 3 * len(epochs) <= last["elapsed_time"] <= 51 * len(epochs) + 1e-6
                assert trial["elapsed_s"] == pytest.approx(last["elapsed_time"], abs=1e-3)
            best = job["best"]
            assert best["metrics"]["accuracy"] == max(
                r["accuracy"] for t in trials for r in t["reports"]
            )

            csv = await http.get(f"/v1/tuning-jobs/{name}/trials.csv")
            assert csv.text.splitlines()[0].startswith(
                "trial_id,status,pool,batch_size,dropout,layers,lr,epoch,accuracy"
            )
            assert len(csv.text.splitlines()) == 61
            chart = await http.get(f"/v1/tuning-jobs/{name}/charts/best.svg")
            assert chart.status_code == 200 and "best accuracy" in chart.text.lower()
            listed = (await http.get("/v1/tuning-jobs")).json()["jobs"]
            assert any(j["name"] == name and j["status"] == "Completed" for j in listed)

            # Bad specs: 400s that say what is wrong.
            bad = {
                "backend": {"type": "simulator", "benchmark": "mnist"},
                "entry_point": "train.py",
                "metrics": [{"name": "y", "mode": "min"}],
                "scheduler": {"type": "asha", "max_resource": 100},
                "config_space": {"lr": {"type": "loguniform", "lower": 1e-9, "upper": 1.0}},
                "backend_max": {"type": "simulator", "benchmark": "branin", "max_trials": 10**6},
            }
            cases: list[tuple[dict[str, Any], list[str]]] = [
                (
                    simulated(f"b1-{unique}", backend=bad["backend"]),
                    ["mnist", "learning-curves", "branin", "hartmann6", "branin-currin"],
                ),
                (simulated(f"b2-{unique}", entry_point="train.py"), ["entry_point"]),
                (simulated(f"b3-{unique}", metrics=bad["metrics"]), ["'y'", "accuracy"]),
                (simulated(f"b4-{unique}", scheduler=bad["scheduler"]), ["81", "100"]),
                (simulated(f"b5-{unique}", config_space=bad["config_space"]), ["'lr'", "within"]),
                (simulated(f"b6-{unique}", backend=bad["backend_max"]), ["max_trials"]),
                (
                    simulated(f"b7-{unique}", metrics=[{"name": "accuracy", "mode": "min"}]),
                    ["maximise"],
                ),
                (
                    simulated(f"b8-{unique}", config_space={"width": 3}),
                    ["width", "lr, batch_size, dropout, layers"],
                ),
            ]
            for spec, words in cases:
                refused = await http.post("/v1/tuning-jobs", json=spec)
                assert refused.status_code == 400, (spec, refused.text)
                for word in words:
                    assert word in refused.text, (word, refused.text)
            # A job on workers still needs what it always did.
            legacy = await http.post("/v1/tuning-jobs", json={"name": f"w-{unique}"})
            assert legacy.status_code == 400 and "entry_point" in legacy.text
    finally:
        await gateway_bus.close()


async def test_simulated_time_criteria_gp_bo_moasha_and_narrowed_spaces(
    tuner: Bus, unique: str
) -> None:
    # max_wallclock_time is simulated: an hour of training, no trial reports after it.
    name = f"clock-{unique}"
    spec = simulated(name, stop={"max_wallclock_time": 3600}, n_workers=2)
    await ask(tuner, "create_tuning_job", TuningJobSpec.model_validate(spec))
    job = await settled(tuner, name)
    assert job["status"] == "Completed" and "max_wallclock_time 3600" in job["stop_reason"]
    assert job["simulation"]["simulated_time"] == 3600
    trials = (await ask(tuner, "list_trials", JobRef(name=name)))["trials"]
    assert max(r["st_tuner_time"] for t in trials for r in t["reports"]) <= 3600
    assert not [t for t in trials if t["status"] in ("queued", "running")]

    # A threshold on the metric, with a narrowed space (a fixed batch size, a band of rates).
    name = f"thr-{unique}"
    space = {"batch_size": 64, "lr": {"type": "loguniform", "lower": 3e-4, "upper": 3e-3}}
    spec = simulated(name, config_space=space, stop={"metric_threshold": 0.9})
    await ask(tuner, "create_tuning_job", TuningJobSpec.model_validate(spec))
    job = await settled(tuner, name)
    assert job["status"] == "Completed" and job["stop_reason"] == "accuracy reached 0.9"
    assert job["best"]["metrics"]["accuracy"] >= 0.9
    trials = (await ask(tuner, "list_trials", JobRef(name=name)))["trials"]
    assert all(t["config"]["batch_size"] == 64 for t in trials)
    assert all(3e-4 <= t["config"]["lr"] <= 3e-3 for t in trials)

    # GP BO on Hartmann3: it finds the basin of the global minimum (-3.86).
    name = f"gp-{unique}"
    spec = simulated(name, "hartmann3", scheduler=SLOW, stop={"max_num_trials_started": 30})
    await ask(tuner, "create_tuning_job", TuningJobSpec.model_validate(spec))
    job = await settled(tuner, name)
    assert job["status"] == "Completed" and job["trial_counts"] == {"completed": 30}
    assert job["best"]["metrics"]["y"] < -3.0

    # MO-ASHA on Branin-Currin, with a cost per simulated hour: a Pareto set, costs summed.
    name = f"mo-{unique}"
    spec = simulated(
        name,
        "branin-currin",
        backend={"type": "simulator", "benchmark": "branin-currin", "cost_per_hour": 3.6},
        scheduler={"type": "moasha"},
        stop={"max_num_trials_started": 40},
    )
    created = await ask(tuner, "create_tuning_job", TuningJobSpec.model_validate(spec))
    assert [m["name"] for m in created["spec"]["metrics"]] == ["branin", "currin"]
    job = await settled(tuner, name)
    assert job["status"] == "Completed"
    assert job["pareto"]["trials"] and job["pareto"]["hypervolume"] > 0
    assert job["trial_counts"].get("stopped", 0) > 0
    trials = (await ask(tuner, "list_trials", JobRef(name=name)))["trials"]
    assert job["total_cost"] == pytest.approx(sum(t["elapsed_s"] for t in trials) / 1000, rel=1e-3)


async def test_stop_over_the_bus_ends_a_running_simulation(tuner: Bus, unique: str) -> None:
    name = f"stop-{unique}"
    spec = simulated(
        name,
        "hartmann6",
        backend={"type": "simulator", "benchmark": "hartmann6", "max_trials": 5000},
        scheduler=SLOW,
        stop={},
    )
    await ask(tuner, "create_tuning_job", TuningJobSpec.model_validate(spec))
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        job = await ask(tuner, "describe_tuning_job", JobRef(name=name))
        if sum(job["trial_counts"].values()) >= 8:
            break
        await asyncio.sleep(0.1)
    assert job["status"] == "InProgress", job
    began = time.monotonic()
    stopping = await ask(tuner, "stop_tuning_job", JobRef(name=name))
    assert stopping["status"] in ("Stopping", "Stopped")
    job = await settled(tuner, name, timeout_s=10)
    assert time.monotonic() - began < 5
    assert job["status"] == "Stopped" and job["stop_reason"] == "stopped by request"
    counts = job["trial_counts"]
    assert "running" not in counts and "queued" not in counts and counts["stopped"] >= 1
    assert sum(counts.values()) < 5000


async def test_a_tuner_that_stops_hands_its_simulation_over_and_a_dead_one_loses_it(
    nats_url: str, unique: str, tmp_path: Path
) -> None:
    name = f"handover-{unique}"
    spec = simulated(
        name,
        "hartmann6",
        backend={"type": "simulator", "benchmark": "hartmann6", "max_trials": 2000},
        scheduler=SLOW,
        stop={},
    )
    bus, first = await _start_tuner(nats_url, tmp_path)
    try:
        await ask(bus, "create_tuning_job", TuningJobSpec.model_validate(spec))
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            job = await ask(bus, "describe_tuning_job", JobRef(name=name))
            if sum(job["trial_counts"].values()) >= 5 or job["status"] != "InProgress":
                break
            await asyncio.sleep(0.05)
    finally:
        await first.stop()  # gives the simulation up: the record keeps its progress
        await bus.close()
    other = await Bus.connect(nats_url, source="test")
    try:
        kv = await ensure_bucket(other.js, topology.TUNE_JOBS)
        store = ResourceStore(kv, JobRecord, "tuning job", prefix="job.")
        left = (await store.get(name)).value
        assert left.simulation is not None
        assert left.status == "InProgress", left.status  # its tuner stopped before its end
        assert left.simulation.runner is None and left.simulation.starts == 1
        assert 5 <= len(left.trials) < 2000
        # The run is deterministic: its first 20 trials, simulated here, are those of any run.
        backend = left.spec.backend.model_copy(update={"max_trials": 20})
        expected = SimulatedRun(
            JobRecord(
                spec=left.spec.model_copy(update={"backend": backend}),
                created_at=left.created_at,
            )
        ).run()
        assert len(expected.trials) == 20

        # A job whose runner died (silent for longer than the lease): another tuner replays it.
        dead = f"dead-{unique}"
        resolved = resolve_spec(
            TuningJobSpec.model_validate(
                simulated(
                    dead,
                    "hartmann3",
                    backend={"type": "simulator", "benchmark": "hartmann3", "max_trials": 40},
                    scheduler=SLOW,
                    stop={},
                )
            )
        )
        stale = datetime.now(UTC) - timedelta(seconds=60)
        await store.create(
            dead,
            JobRecord(
                spec=resolved,
                created_at=stale,
                simulation=SimulationState(
                    runner="tuner-that-died", heartbeat_at=stale, starts=1, simulated_time=50
                ),
            ),
        )
        # A job stopped while a replay had not caught up: closed as it was saved.
        ahead = f"ahead-{unique}"
        await store.create(
            ahead,
            JobRecord(
                spec=left.spec.model_copy(update={"name": ahead}),
                created_at=stale,
                simulation=SimulationState(
                    runner="tuner-that-died", heartbeat_at=stale, starts=1, simulated_time=1e9
                ),
            ),
        )
        # A stopped job whose runner died: finished as it was, not replayed.
        halted = f"halted-{unique}"
        await store.create(
            halted,
            JobRecord(
                spec=resolved.model_copy(update={"name": halted}),
                created_at=stale,
                status="Stopping",
                stop_reason="stopped by request",
                simulation=SimulationState(
                    runner="tuner-that-died", heartbeat_at=stale, starts=1, simulated_time=50
                ),
            ),
        )

        bus, second = await _start_tuner(nats_url, tmp_path, max_simulations=4)
        try:
            for _ in range(100):  # taken over, replaying towards a point it will not reach soon
                job = await ask(bus, "describe_tuning_job", JobRef(name=ahead))
                if job["simulation"]["starts"] == 2:
                    break
                await asyncio.sleep(0.05)
            await ask(bus, "stop_tuning_job", JobRef(name=ahead))
            job = await settled(bus, ahead)
            assert job["status"] == "Stopped" and job["trial_counts"] == {}
            assert job["simulation"]["simulated_time"] == 1e9  # what was saved stands

            job = await settled(bus, halted)
            assert job["status"] == "Stopped" and job["trial_counts"] == {}

            # The second tuner takes the job at once, replays it and saves beyond the handover.
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                job = await ask(bus, "describe_tuning_job", JobRef(name=name))
                simulation = job["simulation"]
                if simulation["simulated_time"] > left.simulation.simulated_time + 200:
                    break
                await asyncio.sleep(0.05)
            assert job["status"] == "InProgress" and simulation["starts"] == 2, job
            assert simulation["runner"] is not None
            trials = (await ask(bus, "list_trials", JobRef(name=name)))["trials"]
            assert len(trials) >= 20
            replayed = {t["trial_id"]: (t["config"], t["reports"]) for t in trials[:20]}
            assert replayed == {t.trial_id: (t.config, t.reports) for t in expected.trials.values()}
            # The progress saved before the handover is part of the replayed run.
            for trial in left.trials.values():
                if trial.status == "completed":
                    assert trials[trial.trial_id]["reports"] == trial.reports
            await ask(bus, "stop_tuning_job", JobRef(name=name))
            job = await settled(bus, name)
            assert job["status"] == "Stopped" and job["simulation"]["runner"] is None

            job = await settled(bus, dead, timeout_s=60)
            assert job["status"] == "Completed" and job["simulation"]["starts"] == 2
            assert sum(job["trial_counts"].values()) == 40

        finally:
            await second.stop()
            await bus.close()
    finally:
        await other.close()


async def test_create_over_the_bus_refuses_an_unknown_benchmark(tuner: Bus, unique: str) -> None:
    spec = simulated(f"u-{unique}", backend={"type": "simulator", "benchmark": "nope"})
    with pytest.raises(TrellisError, match="known: branin, branin-currin"):
        await ask(tuner, "create_tuning_job", TuningJobSpec.model_validate(spec))
