"""What tuning scripts import: report metrics the way Syne Tune does and read the trial's arguments."""

from __future__ import annotations

import contextlib
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

__all__ = [
    "CHECKPOINT_DIR_ARG",
    "METRIC_PREFIX",
    "Reporter",
    "checkpoint_dir",
    "parse_config",
]

# The exact tag and argument name Syne Tune uses, so one worker reads both kinds of script.
METRIC_PREFIX = "[tune-metric]: "
CHECKPOINT_DIR_ARG = "st_checkpoint_dir"
WORKER_TIMESTAMP = "st_worker_timestamp"
WORKER_TIME = "st_worker_time"
WORKER_ITER = "st_worker_iter"
# The runner cuts lines longer than this and counts them bad.
MAX_REPORT_BYTES = 64 * 1024


def _plain(key: str, value: object) -> bool | int | float | str:
    if isinstance(value, bool | int | float | str):
        return value
    # numpy scalars (np.float32, np.int64, ...) are what training loops usually hold.
    item = getattr(value, "item", None)
    if callable(item):
        with contextlib.suppress(ValueError, TypeError):
            plain = item()
            if isinstance(plain, bool | int | float | str):
                return plain
    raise TypeError(f"metric {key!r} must be a number, string or bool, got {type(value).__name__}")


class Reporter:
    """Prints one `[tune-metric]: {json}` line per call, like `syne_tune.Reporter`.

    Each report gets `st_worker_timestamp` (time.time()) and `st_worker_iter` (0, 1, ...);
    with `add_time` (the default) also `st_worker_time`, seconds since the Reporter was made.
    """

    def __init__(self, add_time: bool = True) -> None:
        self.add_time = add_time
        self._start = time.perf_counter()
        self._iter = 0

    def __call__(self, **metrics: float | int | str) -> None:
        for key, value in metrics.items():
            if key.startswith("st_"):
                raise ValueError(
                    f"metric name {key!r}: the prefix 'st_' is reserved for the tuner's own keys"
                )
            if value is None:
                raise ValueError(f"metric {key!r} is None; report numbers or strings")
        report: dict[str, object] = {key: _plain(key, value) for key, value in metrics.items()}
        report[WORKER_TIMESTAMP] = time.time()
        if self.add_time:
            report[WORKER_TIME] = time.perf_counter() - self._start
        report[WORKER_ITER] = self._iter
        line = METRIC_PREFIX + json.dumps(report)
        if len(line.encode("utf-8")) > MAX_REPORT_BYTES:
            raise ValueError(
                f"report is over {MAX_REPORT_BYTES} bytes; report fewer or shorter values"
            )
        self._iter += 1
        print(line, flush=True)


def _argv(argv: Sequence[str] | None) -> Sequence[str]:
    return sys.argv[1:] if argv is None else argv


def parse_config(argv: Sequence[str] | None = None) -> dict[str, str]:
    """`--name value` (or `--name=value`) pairs as a dict of strings; defaults to sys.argv[1:].

    Every pair is kept, `st_checkpoint_dir` included; a later repeat wins, as with argparse.
    Raises ValueError on a stray token or a name without a value.
    """
    tokens = list(_argv(argv))
    config: dict[str, str] = {}
    index = 0
    while index < len(tokens):
        token = tokens[index]
        name, sep, value = token[2:].partition("=")
        if not token.startswith("--") or not name:
            raise ValueError(f"expected --name, got {token!r} at position {index}")
        if sep:
            index += 1
        elif index + 1 < len(tokens):
            # The next token is the value even if it starts with '-': trial argv always pairs.
            value = tokens[index + 1]
            index += 2
        else:
            raise ValueError(f"argument --{name} has no value")
        config[name] = value
    return config


def checkpoint_dir(argv: Sequence[str] | None = None) -> Path | None:
    """The trial's `--st_checkpoint_dir` (sys.argv by default), or None when it was not given."""
    tokens = list(_argv(argv))
    flag = f"--{CHECKPOINT_DIR_ARG}"
    found: str | None = None
    for index, token in enumerate(tokens):
        if token == flag and index + 1 < len(tokens):
            found = tokens[index + 1]
        elif token.startswith(flag + "="):
            found = token[len(flag) + 1 :]
    return Path(found) if found else None
