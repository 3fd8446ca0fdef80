"""Simulator jobs without a bus: specs resolved against benchmarks, runs in simulated time."""

from __future__ import annotations

import json
import threading
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from contracts.tune import SimulatorBackend, TuningJobSpec
from runtime.kv import ResourceStore
from services.tuner.domain.benchmarks import BENCHMARKS, benchmark, branin, currin, hartmann
from services.tuner.domain.jobs import JobEngine, JobRecord, JobSpecError, build_scheduler
from services.tuner.domain.simulated import SimulatedRun, finish_stopped, resolve_spec
from services.tuner.simulations import stored_form

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _spec(benchmark: str = "learning-curves", **changes: Any) -> TuningJobSpec:
    spec: dict[str, Any] = {
        "name": "sim",
        "backend": {"type": "simulator", "benchmark": benchmark},
        "scheduler": {"type": "asha"},
        "n_workers": 4,
        "stop": {"max_num_trials_started": 50},
        **changes,
    }
    return resolve_spec(TuningJobSpec.model_validate(spec))


def _run(spec: TuningJobSpec, **options: Any) -> tuple[SimulatedRun, JobRecord]:
    run = SimulatedRun(JobRecord(spec=spec, created_at=T0), **options)
    return run, run.run()


def test_benchmarks_are_the_functions_they_name() -> None:
    assert branin(3.141592653589793, 2.275) == pytest.approx(0.397887, abs=1e-6)
    assert hartmann(__import__("numpy").array([0.114614, 0.555649, 0.852547])) == pytest.approx(
        -3.86278, abs=1e-4
    )
    assert currin(0.5, 1.0) > 0
    for name in BENCHMARKS:
        bench = benchmark(name)
        assert bench.resource_attr == "epoch" and len(bench.metrics) == len(bench.modes)
        # The top epoch is the function itself; lower ones differ (a cheaper fidelity).
        config = {k: v["lower"] for k, v in bench.config_space.items() if "lower" in v}
        config |= {
            k: v["categories"][0] for k, v in bench.config_space.items() if "categories" in v
        }
        top, low = bench.evaluate(config, bench.max_resource), bench.evaluate(config, 1)
        assert set(top) >= set(bench.metrics) and top != low
        assert bench.elapsed(config, 1) > 0
    with pytest.raises(KeyError, match="known: branin, branin-currin, hartmann3"):
        benchmark("mnist")


def test_a_simulator_spec_takes_what_it_leaves_out_from_its_benchmark() -> None:
    spec = _spec()
    assert [m.model_dump() for m in spec.metrics] == [{"name": "accuracy", "mode": "max"}]
    assert spec.scheduler.max_resource == 81 and spec.entry_point is None
    assert list(spec.config_space) == ["lr", "batch_size", "dropout", "layers"]
    assert isinstance(spec.backend, SimulatorBackend) and spec.backend.max_trials == 1000
    multi = _spec("branin-currin", scheduler={"type": "moasha"})
    assert [m.name for m in multi.metrics] == ["branin", "currin"]
    build_scheduler(multi)
    narrowed = _spec(
        config_space={"batch_size": 32, "layers": {"type": "randint", "lower": 2, "upper": 4}}
    )
    assert narrowed.config_space["batch_size"] == 32
    assert narrowed.config_space["lr"]["type"] == "loguniform"  # not given: the benchmark's
    extra = _spec(metrics=[{"name": "accuracy", "mode": "max"}, {"name": "cost", "mode": "min"}])
    assert [m.name for m in extra.metrics] == ["accuracy", "cost"]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"backend": {"type": "simulator", "benchmark": "mnist"}}, "known: branin"),
        ({"metrics": [{"name": "y", "mode": "min"}]}, "reports no 'y'"),
        ({"metrics": [{"name": "loss", "mode": "max"}]}, "minimise"),
        ({"scheduler": {"type": "asha", "max_resource": 82}}, "has 81 epochs"),
        ({"scheduler": {"type": "asha", "resource_attr": "step"}}, "'epoch', not 'step'"),
        ({"config_space": {"depth": 3}}, "'depth' is not a parameter"),
        ({"config_space": {"batch_size": 48}}, "48 is outside"),
        ({"config_space": {"dropout": {"type": "uniform", "lower": 0, "upper": 0.9}}}, "within"),
        (
            {
                "config_space": {
                    "layers": {"type": "choice", "categories": [2, 3]},
                    "lr": {
                        "type": "loguniform",
                        "lower": 1e-4,
                        "upper": 1e-2,
                        "condition": {"param": "layers", "in": [2]},
                    },
                }
            },
            "condition",
        ),
        (
            {"scheduler": {"type": "moasha"}, "metrics": [{"name": "accuracy", "mode": "max"}]},
            "two metrics",
        ),
    ],
)
def test_bad_simulator_specs_name_what_is_wrong(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(JobSpecError, match=message):
        build_scheduler(_spec(**changes))


def test_the_contract_refuses_worker_fields_on_simulator_jobs_and_needs_them_otherwise() -> None:
    simulator = {"name": "s", "backend": {"type": "simulator", "benchmark": "branin"}}
    for field, value in (("entry_point", "x.py"), ("pool_param", "p"), ("trial_timeout_s", 5)):
        with pytest.raises(ValidationError, match=f"{field} cannot be given for a simulator"):
            TuningJobSpec.model_validate({**simulator, field: value})
    with pytest.raises(ValidationError, match="max_trials"):
        TuningJobSpec.model_validate(
            {**simulator, "backend": {**simulator["backend"], "max_trials": 10**5}}  # type: ignore[dict-item]
        )
    with pytest.raises(ValidationError, match="needs entry_point, config_space, metrics"):
        TuningJobSpec.model_validate({"name": "w"})
    with pytest.raises(ValidationError, match="needs max_resource"):
        TuningJobSpec.model_validate(
            {
                "name": "w",
                "entry_point": "t.py",
                "config_space": {"x": 1},
                "metrics": [{"name": "y"}],
                "scheduler": {"type": "asha"},
            }
        )
    # Old records (no backend) read as jobs on workers.
    old = TuningJobSpec.model_validate(
        {"name": "w", "entry_point": "t.py", "config_space": {"x": 1}, "metrics": [{"name": "y"}]}
    )
    assert old.backend.type == "workers"


def test_a_run_is_deterministic_and_kept_like_a_real_job() -> None:
    spec = _spec()
    run, first = _run(spec)
    _, second = _run(spec)
    assert first.model_dump_json() == second.model_dump_json()
    assert first.status == "Completed" and first.stop_reason == "max_num_trials_started 50 reached"
    counts = Counter(t.status for t in first.trials.values())
    assert counts["stopped"] > 20 and counts["completed"] >= 1 and sum(counts.values()) == 50
    assert first.simulation is not None and first.simulation.simulated_time == run.now
    assert (
        first.simulation.events == run.events == sum(len(t.reports) for t in first.trials.values())
    )
    for trial in first.trials.values():
        assert trial.pool == "simulator" and trial.worker == "simulator"
        assert trial.ended_at is not None and trial.ended_at >= T0
        assert [r["epoch"] for r in trial.reports] == list(range(1, len(trial.reports) + 1))
    engine = JobEngine(JobRecord.model_validate_json(first.model_dump_json()))
    assert engine.best() is not None


def test_simulated_time_limits_cost_and_the_trial_cap() -> None:
    _, timed = _run(_spec(stop={"max_wallclock_time": 500}, n_workers=3))
    assert timed.status == "Completed" and "max_wallclock_time 500" in (timed.stop_reason or "")
    assert timed.simulation is not None and timed.simulation.simulated_time == 500
    assert all(r["st_tuner_time"] <= 500 for t in timed.trials.values() for r in t.reports)
    assert all(t.status in ("stopped", "completed") for t in timed.trials.values())

    slow = _spec(
        "branin",
        backend={"type": "simulator", "benchmark": "branin", "time_scale": 2, "cost_per_hour": 36},
        scheduler={"type": "random"},
        stop={"max_num_trials_started": 4},
        n_workers=1,
    )
    _, record = _run(slow)
    # 100 simulated seconds a trial, twice: four trials one after the other.
    assert record.simulation is not None and record.simulation.simulated_time == pytest.approx(800)
    assert record.total_cost == pytest.approx(800 / 3600 * 36)
    assert {t.status for t in record.trials.values()} == {"completed"}

    capped = _spec(
        backend={"type": "simulator", "benchmark": "learning-curves", "max_trials": 7}, stop={}
    )
    _, record = _run(capped)
    assert len(record.trials) == 7 and record.stop_reason == "the simulator's max_trials 7 reached"


def test_a_run_stops_on_request_and_before_its_record_outgrows_the_bus() -> None:
    spec = _spec(stop={}, backend={"type": "simulator", "benchmark": "learning-curves"})
    run = SimulatedRun(JobRecord(spec=spec, created_at=T0))
    calls = 0
    original = run.on_result

    def stop_after_some(trial_id: int, result: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 30:
            threading.Thread(target=run.request_stop).start()
        return original(trial_id, result)

    run.on_result = stop_after_some  # type: ignore[method-assign]
    record = run.run()
    assert record.status == "Stopped" and record.stop_reason == "stopped by request"
    assert len(record.trials) < 1000
    assert not [t for t in record.trials.values() if t.status in ("queued", "running")]

    _, big = _run(_spec(scheduler={"type": "random"}, stop={}), max_record_bytes=200_000)
    size = len(big.model_dump_json())
    assert big.status == "Completed" and "near the" in (big.stop_reason or "")
    assert 0.8 * 200_000 <= size < 200_000


def test_snapshots_carry_the_lease_and_wait_for_a_replay_to_pass_the_saved_point() -> None:
    from services.tuner.domain.jobs import SimulationState

    spec = _spec(stop={"max_num_trials_started": 200})
    ticks = iter(range(10**9))
    run = SimulatedRun(
        JobRecord(spec=spec, created_at=T0),
        lease=SimulationState(runner="me", starts=2),
        snapshot_s=1.0,
        resume_at=2000.0,
        clock=lambda: float(next(ticks)),
    )
    seen: list[float] = []
    original = run.on_complete

    def watch(trial_id: int, result: Any = None) -> None:
        snapshot = run.take_snapshot()
        if snapshot is not None:
            seen.append(snapshot.simulated_time)
            record = json.loads(snapshot.payload)
            assert record["simulation"]["runner"] == "me" and record["simulation"]["starts"] == 2
        original(trial_id, result)

    run.on_complete = watch  # type: ignore[method-assign]
    run.run()
    assert seen and min(seen) >= 2000.0


def test_a_stopped_job_whose_runner_went_away_ends_as_it_was() -> None:
    _, record = _run(_spec())
    record.status = "Stopping"
    record.stop_reason = "stopped by request"
    next(iter(record.trials.values())).status = "running"
    done = finish_stopped(record)
    assert done.status == "Stopped" and done.ended_at is not None
    assert not [t for t in done.trials.values() if t.status in ("queued", "running")]


def test_stored_form_is_what_the_resource_store_writes() -> None:
    _, record = _run(_spec(stop={"max_num_trials_started": 3}))
    store: ResourceStore[JobRecord] = ResourceStore(None, JobRecord, "tuning job")  # type: ignore[arg-type]
    assert stored_form(record.model_dump_json().encode()) == store._encode(record, None)
