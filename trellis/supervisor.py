"""Runs child processes and restarts the ones that exit unexpectedly, with backoff."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger("trellis.supervisor")


@dataclass(frozen=True)
class ProcessSpec:
    name: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)


def next_backoff(
    previous_s: float, uptime_s: float, *, initial_s: float, max_s: float, stable_s: float
) -> float:
    """Delay before a restart: doubles on quick crashes, resets after a stable run."""
    if uptime_s >= stable_s or previous_s <= 0:
        return initial_s
    return min(previous_s * 2, max_s)


class Supervisor:
    def __init__(
        self,
        specs: list[ProcessSpec],
        log_dir: Path,
        *,
        initial_backoff_s: float = 0.5,
        max_backoff_s: float = 30.0,
        stable_after_s: float = 30.0,
        stop_timeout_s: float = 25.0,
        on_event: Callable[[str], None] | None = None,
    ) -> None:
        self.specs = specs
        self.log_dir = log_dir
        self.initial_backoff_s = initial_backoff_s
        self.max_backoff_s = max_backoff_s
        self.stable_after_s = stable_after_s
        self.stop_timeout_s = stop_timeout_s
        self.on_event = on_event or (lambda text: log.info("%s", text))
        self.processes: dict[str, asyncio.subprocess.Process] = {}
        self.restarts: dict[str, int] = {spec.name: 0 for spec in specs}
        self._stopping = asyncio.Event()
        self._watchers: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for spec in self.specs:
            await self._spawn(spec)
            self._watchers.append(asyncio.create_task(self._watch(spec), name=f"watch:{spec.name}"))

    async def _spawn(self, spec: ProcessSpec) -> None:
        log_file = (self.log_dir / f"{spec.name}.log").open("ab")
        try:
            process = await asyncio.create_subprocess_exec(
                *spec.argv,
                env={**os.environ, **spec.env},
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log_file,
                stderr=log_file,
                start_new_session=True,  # Ctrl-C reaches us only; we stop children in order
            )
        finally:
            log_file.close()
        self.processes[spec.name] = process

    async def _watch(self, spec: ProcessSpec) -> None:
        backoff = 0.0
        while True:
            process = self.processes[spec.name]
            started = time.monotonic()
            code = await process.wait()
            if self._stopping.is_set():
                return
            uptime = time.monotonic() - started
            backoff = next_backoff(
                backoff,
                uptime,
                initial_s=self.initial_backoff_s,
                max_s=self.max_backoff_s,
                stable_s=self.stable_after_s,
            )
            self.restarts[spec.name] += 1
            self.on_event(
                f"{spec.name} exited unexpectedly (code {code}) after {uptime:.1f}s; "
                f"restart #{self.restarts[spec.name]} in {backoff:.1f}s (log: {self.log_dir / spec.name}.log)"
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=backoff)
                return
            await self._spawn(spec)
            self.on_event(f"{spec.name} restarted (pid {self.processes[spec.name].pid})")

    async def stop(self, order: list[str] | None = None) -> None:
        """SIGTERM in `order` (default: reverse start order), SIGKILL what outlives the timeout."""
        self._stopping.set()
        names = order or [spec.name for spec in reversed(self.specs)]
        for name in names:
            process = self.processes.get(name)
            if process is not None and process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(signal.SIGTERM)
        waits = [p.wait() for p in self.processes.values() if p.returncode is None]
        if waits:
            _, pending = await asyncio.wait(
                [asyncio.ensure_future(w) for w in waits], timeout=self.stop_timeout_s
            )
            if pending:
                for name, process in self.processes.items():
                    if process.returncode is None:
                        self.on_event(
                            f"{name} did not stop in {self.stop_timeout_s:.0f}s; killing it"
                        )
                        with contextlib.suppress(ProcessLookupError):
                            process.kill()
                await asyncio.gather(*pending, return_exceptions=True)
        for watcher in self._watchers:
            watcher.cancel()
        await asyncio.gather(*self._watchers, return_exceptions=True)
