"""The fraud benchmark's goal verdicts: runs at the goal rate judged on their median p99."""

from __future__ import annotations

from typing import Any

from bench.fraud import GOAL_RATE, P99_GOAL_MS, goals


def load(path: str, p99: float, *, explanations: str = "no", **extra: Any) -> dict[str, Any]:
    return {
        "path": path,
        "explanations": explanations,
        "offered_rate": GOAL_RATE,
        "achieved_rate": GOAL_RATE,
        "p99_ms": p99,
        "sustained": True,
        "errors": {},
        **extra,
    }


def test_repeated_runs_are_judged_on_their_median_p99() -> None:
    good, bad = P99_GOAL_MS * 0.5, P99_GOAL_MS * 3
    result = {
        "platform": {
            "loads": [
                load("HTTP REST", bad),
                load("HTTP REST", good),
                load("HTTP REST", good),
                load("HTTP REST", good, explanations="yes"),
                load("HTTP AWS", good),
                load("HTTP AWS", bad),
                load("HTTP AWS", bad),
                load("bus", good),  # not HTTP: not a goal run
                {**load("HTTP REST", good), "offered_rate": 200.0},  # another rate
            ]
        }
    }
    verdicts = {v["goal"]: v for v in goals(result)}
    assert len(verdicts) == 3
    rest = next(v for g, v in verdicts.items() if "REST" in g and "explanations no" in g)
    assert rest["pass"] and "median of 3 runs" in rest["goal"]
    assert f"(median {good:,.1f})" in rest["value"]
    aws = next(v for g, v in verdicts.items() if "AWS" in g)
    assert not aws["pass"]
    single = next(v for g, v in verdicts.items() if "explanations yes" in g)
    assert single["pass"] and "median" not in single["goal"]


def test_a_run_that_was_not_sustained_fails_the_goal_whatever_the_median() -> None:
    loads = [load("HTTP REST", 1.0), load("HTTP REST", 1.0), load("HTTP REST", 1.0)]
    loads[1]["sustained"] = False
    [verdict] = goals({"platform": {"loads": loads}})
    assert not verdict["pass"]
