"""The job state machine on its own: launches, deduplicated and ordered events, requeues, stops."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from contracts.tune import TrialEnded, TrialEndReason, TrialReported, TuningJobSpec
from services.tuner.domain.jobs import JobEngine, JobRecord, JobSpecError, build_scheduler

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _engine(**changes: Any) -> JobEngine:
    spec: dict[str, Any] = {
        "name": "job",
        "entry_point": "train.py",
        "config_space": {"lr": {"type": "loguniform", "lower": 1e-4, "upper": 1e-1}},
        "metrics": [{"name": "accuracy", "mode": "max"}],
        "scheduler": {"type": "random", "resource_attr": "epoch"},
        "n_workers": 2,
        "pool": "local",
        **changes,
    }
    return JobEngine(JobRecord(spec=TuningJobSpec.model_validate(spec), created_at=T0))


def _report(trial: int, seq: int, epoch: int, accuracy: float, attempt: int = 1) -> TrialReported:
    return TrialReported(
        job="job",
        trial_id=trial,
        attempt=attempt,
        seq=seq,
        metrics={"epoch": epoch, "accuracy": accuracy},
        worker="w",
        reported_at=T0,
    )


def _end(
    trial: int, reason: TrialEndReason, reports: int = 0, attempt: int = 1, elapsed: float = 3600
) -> TrialEnded:
    return TrialEnded(
        job="job",
        trial_id=trial,
        attempt=attempt,
        reason=reason,
        worker="w",
        pool="local",
        elapsed_s=elapsed,
        cost_per_hour=2.0,
        ended_at=T0,
        reports=reports,
    )


def test_fills_free_slots_and_applies_each_report_once() -> None:
    engine = _engine()
    launches, _ = engine.advance(T0)
    assert [launch.trial.trial_id for launch in launches] == [0, 1]
    engine.on_report(_report(0, 0, 1, 0.5))
    engine.on_report(_report(0, 0, 1, 0.5))  # redelivered
    engine.on_report(_report(0, 1, 1, 0.6))  # a restarted script repeating epoch 1
    assert [r["accuracy"] for r in engine.record.trials["0"].reports] == [0.5]
    engine.on_report(_report(0, 2, 2, 0.7))
    assert engine.record.trials["0"].resource == 2


def test_an_end_read_before_its_last_report_waits_for_it() -> None:
    engine = _engine()
    engine.advance(T0)
    engine.on_report(_report(0, 0, 1, 0.5))
    engine.on_end(_end(0, "completed", reports=2))
    assert engine.record.trials["0"].status == "running"
    engine.on_report(_report(0, 1, 2, 0.9))
    trial = engine.record.trials["0"]
    assert trial.status == "completed" and trial.reports[-1]["accuracy"] == 0.9
    assert trial.cost == pytest.approx(2.0) and engine.record.total_cost == pytest.approx(2.0)


def test_a_lost_trial_is_requeued_until_max_attempts_then_failed() -> None:
    engine = _engine(max_attempts=2)
    engine.advance(T0)
    engine.on_end(_end(0, "lost"))
    trial = engine.record.trials["0"]
    assert trial.status == "queued" and trial.attempt == 2 and trial.resume
    launches, _ = engine.advance(T0)
    assert [(launch.trial.trial_id, launch.trial.attempt) for launch in launches] == [(0, 2)]
    engine.on_end(_end(0, "lost"))  # the old attempt again: ignored
    assert trial.attempt == 2
    engine.on_end(_end(0, "lost", attempt=2))
    assert engine.record.trials["0"].status == "failed"
    failing = _engine(on_worker_loss="fail")
    failing.advance(T0)
    failing.on_end(_end(0, "lost"))
    assert failing.record.trials["0"].status == "failed"


@pytest.mark.parametrize(
    ("stop", "reason"),
    [
        ({"max_cost": 3.0}, "max_cost"),
        ({"metric_threshold": 0.8}, "accuracy reached 0.8"),
        ({"max_num_trials_completed": 2}, "max_num_trials_completed 2"),
    ],
)
def test_stop_criteria_stop_running_trials(stop: dict[str, Any], reason: str) -> None:
    engine = _engine(stop=stop)
    engine.advance(T0)
    engine.on_report(_report(0, 0, 1, 0.9))
    engine.on_end(_end(0, "completed", reports=1))
    engine.on_report(_report(1, 0, 1, 0.85))
    engine.on_end(_end(1, "completed", reports=1))
    _, controls = engine.advance(T0)
    assert reason in (engine.record.stop_reason or "")
    for control in controls:
        assert control.action == "stop"
    running = [t for t in engine.record.trials.values() if t.status == "running"]
    assert {c.trial_id for c in controls} == {t.trial_id for t in running}


def test_wall_clock_and_a_broken_script_end_the_job() -> None:
    engine = _engine(stop={"max_wallclock_time": 60})
    engine.advance(T0)
    engine.advance(T0 + timedelta(seconds=61))
    assert engine.record.status == "Completed" and "max_wallclock_time" in engine.record.stop_reason  # type: ignore[operator]
    broken = _engine()
    for _ in range(3):
        broken.advance(T0)
        for trial in [t for t in broken.record.trials.values() if t.status == "queued"][:1]:
            broken.on_end(_end(trial.trial_id, "failed"))
    broken.advance(T0)
    broken.on_end(_end(3, "stopped"))
    broken.advance(T0)
    assert broken.record.status == "Failed" and "none reported" in (
        broken.record.failure_reason or ""
    )


def test_specs_that_cannot_run_are_refused_with_the_reason() -> None:
    with pytest.raises(JobSpecError, match="pool_param"):
        build_scheduler(_engine(pool_param="nope").spec)
    with pytest.raises(JobSpecError, match="two metrics"):
        build_scheduler(_engine(scheduler={"type": "moasha", "max_resource": 3}).spec)
    with pytest.raises(ValueError, match="needs max_resource"):
        _engine(scheduler={"type": "asha"})


def test_the_scheduler_state_survives_a_save_and_restore() -> None:
    engine = _engine(scheduler={"type": "asha", "max_resource": 9})
    engine.advance(T0)
    engine.on_report(_report(0, 0, 1, 0.5))
    saved = engine.save().model_copy(deep=True)
    restored = JobEngine(JobRecord.model_validate(saved.model_dump(mode="json")))
    assert restored.scheduler.state() == engine.scheduler.state()
    following, again = engine.scheduler.suggest(), restored.scheduler.suggest()
    assert following is not None and again is not None
    assert (following.trial_id, following.config) == (again.trial_id, again.config)
