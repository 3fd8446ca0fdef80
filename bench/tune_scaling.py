"""Benchmark: trial throughput of a tuning job with 1, 2 and 4 worker slots on a sleep-based trial."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (
    None,
    "",
):  # run as `python bench/tune_scaling.py`: make the repo root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx

from bench.common import cpu_model, fmt, loadavg
from bench.launch import REPO_ROOT, Platform
from runtime.bus import Bus

DEFAULT_OUTPUT = REPO_ROOT / "bench" / "results" / "tune_scaling.json"
TRIAL = """\
import time
from trellis.reporter import Reporter, parse_config
config = parse_config()
time.sleep(float(config["sleep"]))
Reporter()(epoch=1, loss=float(config["x"]))
"""


async def one_job(
    http: httpx.AsyncClient, name: str, script: Path, workers: int, trials: int, sleep: float
) -> float:
    spec: dict[str, Any] = {
        "name": name,
        "entry_point": str(script),
        "config_space": {"x": {"type": "uniform", "lower": 0, "upper": 1}, "sleep": sleep},
        "metrics": [{"name": "loss", "mode": "min"}],
        "stop": {"max_num_trials_started": trials},
        "n_workers": workers,
        "pool": "bench",
    }
    began = time.perf_counter()
    created = await http.post("/v1/tuning-jobs", json=spec)
    created.raise_for_status()
    while True:
        job = (await http.get(f"/v1/tuning-jobs/{name}")).json()
        if job["status"] not in ("InProgress", "Stopping"):
            break
        await asyncio.sleep(0.05)
    elapsed = time.perf_counter() - began
    if job["trial_counts"] != {"completed": trials}:
        raise RuntimeError(f"job {name} ended {job['status']}: {job['trial_counts']}")
    return elapsed


async def run(trials: int, sleep: float, rounds: int) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="trellis-bench-tune-"))
    script = work / "trial.py"
    script.write_text(TRIAL)
    platform = Platform(work / "platform", env={"TRELLIS_TUNER_TICK_S": "0.2"})
    results: dict[str, Any] = {
        "trials": trials,
        "sleep_s": sleep,
        "rounds": rounds,
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
    }
    try:
        url = platform.start_nats()
        for name in ("tuner", "gateway"):
            platform.start(name)
        # One worker process with 4 slots; a job's n_workers caps how many trials run at once.
        platform.start(
            "tuner-worker",
            [sys.executable, "-m", "services.tuner.worker", "--pool", "bench", "--slots", "4"],
        )
        bus = await Bus.connect(url, source="bench")
        async with httpx.AsyncClient(
            base_url=platform.http_url,
            timeout=60,
            headers={"Authorization": f"Bearer {platform.api_key}"},
        ) as http:
            await platform.wait_ready(bus, http, ["tuner", "gateway"])
            await one_job(http, "warm-up", script, 4, 4, sleep)
            for workers in (1, 2, 4):
                times = [
                    await one_job(http, f"w{workers}-r{r}", script, workers, trials, sleep)
                    for r in range(rounds)
                ]
                results[f"workers_{workers}_s"] = times
        await bus.close()
    finally:
        platform.close()
        shutil.rmtree(work, ignore_errors=True)
    base = statistics.median(results["workers_1_s"])
    for workers in (1, 2, 4):
        wall = statistics.median(results[f"workers_{workers}_s"])
        results[f"workers_{workers}_throughput"] = trials / wall
        results[f"workers_{workers}_speedup"] = base / wall
    results["loadavg"] = loadavg()
    return results


def report(r: dict[str, Any]) -> str:
    lines = [
        f"Tuning throughput ({r['trials']} trials of {r['sleep_s']} s each, medians of {r['rounds']} rounds; "
        f"{r['cpu']}, {r['cores']} cores)",
        "",
        "| workers | wall s | trials/s | speed-up | ideal |",
        "|---|---|---|---|---|",
    ]
    for workers in (1, 2, 4):
        lines.append(
            f"| {workers} | {fmt(statistics.median(r[f'workers_{workers}_s']), 2)} | "
            f"{fmt(r[f'workers_{workers}_throughput'], 2)} | {fmt(r[f'workers_{workers}_speedup'], 2)}x | {workers}x |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--sleep", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args()
    results = asyncio.run(run(args.trials, args.sleep, args.rounds))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2))
    print(report(results))


if __name__ == "__main__":
    main()
