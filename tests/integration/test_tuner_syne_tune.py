"""An unmodified Syne Tune training script as the trials of a job, on a real worker and NATS."""

from __future__ import annotations

import asyncio
import importlib
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from contracts import subjects
from contracts.envelope import Message
from contracts.tune import JobRef, TuneResult, TuningJobSpec
from runtime.bus import Bus
from services.tuner.worker import Worker

# As Syne Tune's examples write them: argparse, syne_tune.Reporter, --st_checkpoint_dir.
SYNE_TUNE_SCRIPT = """\
import argparse
import math
import time
from pathlib import Path

from syne_tune import Reporter

parser = argparse.ArgumentParser()
parser.add_argument("--lr", type=float, required=True)
parser.add_argument("--epochs", type=int, default=9)
parser.add_argument("--st_checkpoint_dir", type=str, default=None)
args, _ = parser.parse_known_args()

start = 1
checkpoint = Path(args.st_checkpoint_dir) if args.st_checkpoint_dir else None
if checkpoint is not None and (checkpoint / "epoch.txt").exists():
    start = int((checkpoint / "epoch.txt").read_text()) + 1

report = Reporter()
quality = max(0.0, 1 - abs(math.log10(args.lr) + 3) / 3)
for epoch in range(start, args.epochs + 1):
    time.sleep(0.03)
    if checkpoint is not None:
        checkpoint.mkdir(parents=True, exist_ok=True)
        (checkpoint / "epoch.txt").write_text(str(epoch))
    report(epoch=epoch, accuracy=quality * (1 - 0.5**epoch), checkpointed=checkpoint is not None)
"""


def _require_syne_tune() -> None:
    """`make install` installs syne-tune: its absence is a broken environment, not a skip."""
    try:
        reporter = importlib.import_module("syne_tune").Reporter
    except (ImportError, AttributeError) as exc:
        pytest.fail(
            f"`from syne_tune import Reporter` fails ({type(exc).__name__}: {exc}); `make install`"
            " installs syne-tune==0.16.0 (--no-deps) with pandas and dill into .venv",
            pytrace=False,
        )
    assert reporter.__module__ == "syne_tune.report"


async def ask(bus: Bus, operation: str, message: Message) -> dict[str, Any]:
    result = await bus.request(
        subjects.tune_operation(operation), message, TuneResult, timeout_s=10, service="tuner"
    )
    return result.output


@pytest.fixture
async def worker(nats_url: str, tmp_path: Path, unique: str) -> AsyncIterator[Worker]:
    bus = await Bus.connect(nats_url, source="worker")
    running = Worker(bus, f"st{unique}", slots=3, data_dir=tmp_path)
    await running.start()
    yield running
    await running.stop()
    await bus.close()


async def test_an_unmodified_syne_tune_script_reports_and_asha_stops_it(
    tuner: Bus, worker: Worker, unique: str, tmp_path: Path
) -> None:
    _require_syne_tune()
    script = tmp_path / "train_syne_tune.py"
    script.write_text(SYNE_TUNE_SCRIPT)
    name = f"syne-{unique}"
    spec = {
        "name": name,
        "entry_point": str(script),
        "config_space": {"lr": {"type": "loguniform", "lower": 1e-6, "upper": 1.0}, "epochs": 9},
        "metrics": [{"name": "accuracy", "mode": "max"}],
        "scheduler": {"type": "asha", "max_resource": 9, "grace_period": 1, "reduction_factor": 3},
        "stop": {"max_num_trials_started": 9},
        "n_workers": 3,
        "pool": worker.pool,
    }
    await ask(tuner, "create_tuning_job", TuningJobSpec.model_validate(spec))
    deadline = time.monotonic() + 60
    job: dict[str, Any] = {}
    while time.monotonic() < deadline:
        job = await ask(tuner, "describe_tuning_job", JobRef(name=name))
        if job["status"] not in ("InProgress", "Stopping"):
            break
        await asyncio.sleep(0.1)
    assert job["status"] == "Completed", job
    trials = (await ask(tuner, "list_trials", JobRef(name=name)))["trials"]
    assert len(trials) == 9
    for trial in trials:
        reports = trial["reports"]
        assert reports, trial
        # Syne Tune's Reporter wrote them: its own fields ride along with the metrics.
        for seq, report in enumerate(reports):
            assert report["st_worker_iter"] == seq and report["st_worker_time"] >= 0
            assert report["st_worker_timestamp"] > 1e9 and report["checkpointed"] is True
            assert report["epoch"] == seq + 1 and 0 <= report["accuracy"] <= 1
    # ASHA acted on them: weak learning rates stopped at a rung, the best ran all 9 epochs.
    stopped = [t for t in trials if t["status"] == "stopped"]
    completed = [t for t in trials if t["status"] == "completed"]
    assert stopped and all(t["resource"] in (1, 3) for t in stopped), trials
    assert completed and all(t["resource"] == 9 for t in completed)
    best = job["best"]
    assert best["metrics"]["accuracy"] == max(r["accuracy"] for t in trials for r in t["reports"])
