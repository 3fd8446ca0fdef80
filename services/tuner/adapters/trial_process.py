"""Runs one trial's training script as a subprocess and turns its `[tune-metric]` lines into reports."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import re
import signal
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast

import numpy as np

from trellis.reporter import CHECKPOINT_DIR_ARG, METRIC_PREFIX

__all__ = [
    "MAX_LINE_BYTES",
    "TRIAL_METRIC_PREFIX",
    "OutcomeReason",
    "Report",
    "ReportError",
    "TrialOutcome",
    "TrialProcess",
    "parse_report_line",
    "trial_argv",
]

log = logging.getLogger("trellis.tuner.trial")

TRIAL_METRIC_PREFIX = METRIC_PREFIX
MAX_LINE_BYTES = 64 * 1024

Report = dict[str, float | int | str]
OutcomeReason = Literal["completed", "failed", "stopped", "paused", "timeout", "no_report"]

_CONFIG_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")
_SNIPPET_CHARS = 200
_NO_REPORT_TAIL_LINES = 20
# Each line kept for the error tail is cut to this, so a failed outcome stays a small message.
_TAIL_LINE_CHARS = 2000
# After the script exits, how long to wait for its pipes to close: a descendant that left the
# process group (setsid) can hold them open forever.
_PIPE_DRAIN_S = 2.0
# Lines waiting for the callbacks; above this the pipes stop being read so the script blocks.
_QUEUE_HIGH = 1000
_QUEUE_LOW = 100


class ReportError(ValueError):
    """A line that carries the report prefix but no valid report."""


def _snippet(text: str) -> str:
    return repr(text if len(text) <= _SNIPPET_CHARS else text[:_SNIPPET_CHARS] + "...")


def parse_report_line(line: str) -> Report | None:
    """The metrics of a `[tune-metric]: {json}` line; None for any other line.

    The prefix may follow other text on the line, as Syne Tune's own log scan allows.
    Raises ReportError when the prefix is there but the rest is not a JSON object of
    numbers, strings and booleans, or the line is over 64 KiB.
    """
    at = line.find(TRIAL_METRIC_PREFIX)
    if at < 0:
        return None
    size = len(line.encode("utf-8", errors="surrogatepass"))
    if size > MAX_LINE_BYTES:
        raise ReportError(f"report line is {size} bytes, over the {MAX_LINE_BYTES} byte limit")
    payload = line[at + len(TRIAL_METRIC_PREFIX) :].strip()
    try:
        parsed = json.loads(payload)
    except (ValueError, RecursionError) as exc:
        raise ReportError(f"report is not valid JSON ({exc}): {_snippet(payload)}") from None
    if not isinstance(parsed, dict):
        raise ReportError(
            f"report must be a JSON object, got {type(parsed).__name__}: {_snippet(payload)}"
        )
    for key, value in parsed.items():
        if not isinstance(value, bool | int | float | str):
            raise ReportError(
                f"report value for {key!r} must be a number, string or boolean, "
                f"got {'null' if value is None else type(value).__name__}"
            )
    return parsed


def _render(key: str, value: Any) -> str:
    if isinstance(value, np.generic):
        value = value.item()
    if not isinstance(value, bool | int | float | str):
        raise ValueError(
            f"config value for {key!r} must be a number, string or bool, got {type(value).__name__}"
        )
    text = str(value)
    if "\x00" in text:
        raise ValueError(f"config value for {key!r} contains a NUL character")
    return text


def trial_argv(
    python: str, entry_point: str, config: Mapping[str, Any], checkpoint_dir: Path
) -> list[str]:
    """`[python, entry_point, --name, value, ..., --st_checkpoint_dir, dir]`, values as str()."""
    argv = [python, entry_point]
    for key, value in config.items():
        if not isinstance(key, str) or not _CONFIG_KEY.fullmatch(key):
            raise ValueError(
                f"config key {key!r} is not a valid argument name ([A-Za-z_][A-Za-z0-9_.-]*)"
            )
        if key == CHECKPOINT_DIR_ARG:
            raise ValueError(f"config key {key!r} is reserved for the trial's checkpoint directory")
        argv += [f"--{key}", _render(key, value)]
    argv += [f"--{CHECKPOINT_DIR_ARG}", str(checkpoint_dir)]
    return argv


@dataclass(frozen=True)
class TrialOutcome:
    """How a trial's process ended: returncode is None when it was stopped before it started."""

    returncode: int | None
    reason: OutcomeReason
    error: str | None
    reports: int
    bad_lines: int


@dataclass(frozen=True)
class _Line:
    text: str
    bad: str | None


class _LineSplitter:
    """Splits a byte stream into lines of at most `limit` bytes; longer ones are cut once."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._buffer = bytearray()
        self._discarding = False

    def feed(self, data: bytes) -> list[_Line]:
        self._buffer += data
        lines: list[_Line] = []
        while True:
            end = self._buffer.find(b"\n")
            if end < 0:
                break
            raw = bytes(self._buffer[:end])
            del self._buffer[: end + 1]
            if self._discarding:
                self._discarding = False
            else:
                lines.append(self._line(raw))
        if len(self._buffer) > self._limit and not self._discarding:
            lines.append(self._line(bytes(self._buffer)))
            self._discarding = True
        if self._discarding:
            self._buffer.clear()
        return lines

    def flush(self) -> list[_Line]:
        raw, self._buffer = bytes(self._buffer), bytearray()
        discarding, self._discarding = self._discarding, False
        return [] if discarding or not raw else [self._line(raw)]

    def _line(self, raw: bytes) -> _Line:
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        if len(raw) > self._limit:
            text = raw[: self._limit].decode("utf-8", errors="replace")
            return _Line(text, f"output line over {self._limit} bytes was cut")
        try:
            return _Line(raw.decode("utf-8"), None)
        except UnicodeDecodeError:
            return _Line(raw.decode("utf-8", errors="replace"), "output line is not valid UTF-8")


class _TrialProtocol(asyncio.SubprocessProtocol):
    """Feeds stdout and stderr, line by line, into one queue; tracks exit and pipe closing."""

    def __init__(self, queue: asyncio.Queue[_Line | None], loop: asyncio.AbstractEventLoop) -> None:
        self._queue = queue
        self._splitters = {1: _LineSplitter(MAX_LINE_BYTES), 2: _LineSplitter(MAX_LINE_BYTES)}
        self._open = {1, 2}
        self._transport: asyncio.SubprocessTransport | None = None
        self._paused = False
        self.exited: asyncio.Future[None] = loop.create_future()
        self.pipes_closed: asyncio.Future[None] = loop.create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A subprocess transport by protocol, not by class: uvloop's does not subclass asyncio's.
        self._transport = cast(asyncio.SubprocessTransport, transport)

    def pipe_data_received(self, fd: int, data: bytes | str) -> None:
        chunk = data.encode() if isinstance(data, str) else data
        self._put(self._splitters[fd].feed(chunk))

    def pipe_connection_lost(self, fd: int, exc: Exception | None) -> None:
        if fd not in self._open:
            return
        self._open.discard(fd)
        self._put(self._splitters[fd].flush())
        if not self._open and not self.pipes_closed.done():
            self.pipes_closed.set_result(None)

    def process_exited(self) -> None:
        if not self.exited.done():
            self.exited.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        for fd in sorted(self._open):
            self.pipe_connection_lost(fd, exc)

    def _put(self, lines: list[_Line]) -> None:
        for line in lines:
            self._queue.put_nowait(line)
        if self._queue.qsize() >= _QUEUE_HIGH and not self._paused:
            self._set_reading(False)

    def taken(self) -> None:
        if self._paused and self._queue.qsize() <= _QUEUE_LOW:
            self._set_reading(True)

    def _set_reading(self, on: bool) -> None:
        self._paused = not on
        if self._transport is None:
            return
        for fd in self._open:
            pipe = self._transport.get_pipe_transport(fd)
            if isinstance(pipe, asyncio.ReadTransport) and not pipe.is_closing():
                if on:
                    pipe.resume_reading()
                else:
                    pipe.pause_reading()


class TrialProcess:
    """One trial's script in its own process group: reports go to on_report, other output to on_output.

    stop(), pause() and the timeout all end the whole group (SIGTERM, then SIGKILL after
    grace_s); they differ only in the outcome's reason. Callbacks run one at a time in output
    order; they may call stop() or pause() themselves. A callback that raises is logged and
    the trial goes on.
    """

    def __init__(
        self,
        argv: list[str],
        *,
        cwd: Path,
        env: dict[str, str],
        on_report: Callable[[Report], Awaitable[None]],
        on_output: Callable[[str], Awaitable[None]] | None = None,
        max_output_lines_kept: int = 200,
        timeout_s: float | None = None,
        grace_s: float = 5.0,
    ) -> None:
        if not argv:
            raise ValueError("argv is empty")
        if timeout_s is not None and not (timeout_s > 0 and math.isfinite(timeout_s)):
            raise ValueError(f"timeout_s must be a positive number, got {timeout_s!r}")
        self.argv = list(argv)
        self.cwd = cwd
        # Unbuffered output lets on_output stream lines live and keeps the tail when killed.
        self.env = {"PYTHONUNBUFFERED": "1", **env}
        self.timeout_s = timeout_s
        self.grace_s = grace_s
        self._on_report = on_report
        self._on_output = on_output
        self._tail: deque[str] = deque(maxlen=max(1, max_output_lines_kept))
        self._reports = 0
        self._bad_lines = 0
        self._kill_reason: OutcomeReason | None = None
        self._started = False
        self._pid: int | None = None
        self._launched = asyncio.Event()
        self._protocol: _TrialProtocol | None = None
        self._run: asyncio.Task[TrialOutcome] | None = None
        self._killing: asyncio.Task[None] | None = None

    @property
    def pid(self) -> int | None:
        """The script's pid (also its process group id) once started."""
        return self._pid

    async def start(self) -> None:
        """Launches the script; OSError when it cannot be (no such python, no such cwd)."""
        if self._started:
            raise RuntimeError("trial process already started")
        self._started = True
        if self._kill_reason is not None:
            return
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[_Line | None] = asyncio.Queue()
        protocol = _TrialProtocol(queue, loop)
        try:
            transport, _ = await loop.subprocess_exec(
                lambda: protocol,
                *self.argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                cwd=self.cwd,
                env=self.env,
                start_new_session=True,
            )
            self._protocol = protocol
            self._pid = transport.get_pid()
            self._run = asyncio.create_task(self._supervise(transport, protocol, queue))
        finally:
            self._launched.set()
        if self._kill_reason is not None:
            # stop() or pause() came while the process was being launched.
            self._killing = asyncio.create_task(self._kill_group(protocol))

    async def wait(self) -> TrialOutcome:
        """The outcome once the script has exited and all its output was handled."""
        if self._run is None:
            if self._kill_reason is not None:
                return TrialOutcome(None, self._kill_reason, None, 0, 0)
            raise RuntimeError("trial process not started")
        return await asyncio.shield(self._run)

    async def stop(self) -> None:
        """Ends the trial for good; returns once its process has exited."""
        await self._terminate("stopped")

    async def pause(self) -> None:
        """Ends the process so the trial can resume later from its checkpoint directory."""
        await self._terminate("paused")

    async def _terminate(self, reason: OutcomeReason) -> None:
        if self._protocol is None:
            # The first of stop, pause and timeout decides the reason.
            if self._kill_reason is None:
                self._kill_reason = reason
            if not self._started:
                return
            await self._launched.wait()
        protocol = self._protocol
        if protocol is None or protocol.exited.done():
            return
        if self._kill_reason is None:
            self._kill_reason = reason
        if self._killing is None:
            self._killing = asyncio.create_task(self._kill_group(protocol))
        await asyncio.shield(self._killing)

    async def _kill_group(self, protocol: _TrialProtocol) -> None:
        self._signal_group(signal.SIGTERM)
        try:
            await asyncio.wait_for(asyncio.shield(protocol.exited), self.grace_s)
        except TimeoutError:
            log.warning("trial pid %s ignored SIGTERM for %.1f s; killing", self._pid, self.grace_s)
            self._signal_group(signal.SIGKILL)
            await protocol.exited

    def _signal_group(self, sig: signal.Signals) -> None:
        if self._pid is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._pid, sig)

    async def _supervise(
        self,
        transport: asyncio.SubprocessTransport,
        protocol: _TrialProtocol,
        queue: asyncio.Queue[_Line | None],
    ) -> TrialOutcome:
        dispatcher = asyncio.create_task(self._dispatch(protocol, queue))
        try:
            if self.timeout_s is None:
                await protocol.exited
            else:
                try:
                    await asyncio.wait_for(asyncio.shield(protocol.exited), self.timeout_s)
                except TimeoutError:
                    await self._terminate("timeout")
            # Whatever the script left running in its group goes with it.
            self._signal_group(signal.SIGKILL)
            try:
                await asyncio.wait_for(asyncio.shield(protocol.pipes_closed), _PIPE_DRAIN_S)
            except TimeoutError:
                log.warning("trial pid %s: a process outside its group holds its output", self._pid)
                transport.close()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(protocol.pipes_closed), 1.0)
            queue.put_nowait(None)
            await dispatcher
        finally:
            if not dispatcher.done():
                dispatcher.cancel()
            transport.close()
        return self._outcome(transport.get_returncode())

    async def _dispatch(self, protocol: _TrialProtocol, queue: asyncio.Queue[_Line | None]) -> None:
        while True:
            line = await queue.get()
            protocol.taken()
            if line is None:
                return
            await self._handle(line)

    async def _handle(self, line: _Line) -> None:
        text, bad = line.text, line.bad
        if bad is None:
            try:
                report = parse_report_line(text)
            except ReportError as exc:
                bad = str(exc)
            else:
                if report is not None:
                    self._reports += 1
                    await self._call(self._on_report, report)
                    return
        if bad is not None:
            self._bad_lines += 1
            note = f"[trellis] bad output line: {bad}"
            self._keep(note)
            await self._emit(note)
            if line.bad is None:
                return
        self._keep(text)
        await self._emit(text)

    def _keep(self, text: str) -> None:
        self._tail.append(
            text if len(text) <= _TAIL_LINE_CHARS else text[:_TAIL_LINE_CHARS] + " [cut]"
        )

    async def _emit(self, text: str) -> None:
        if self._on_output is not None:
            await self._call(self._on_output, text)

    async def _call(self, callback: Callable[[Any], Awaitable[None]], value: object) -> None:
        try:
            await callback(value)
        except Exception:
            log.exception("trial pid %s: output callback failed", self._pid)

    def _outcome(self, returncode: int | None) -> TrialOutcome:
        reason: OutcomeReason
        error: str | None = None
        if self._kill_reason is not None:
            reason = self._kill_reason
            if reason == "timeout":
                error = f"trial ran past its time limit of {self.timeout_s:g} s"
        elif returncode == 0 and self._reports > 0:
            reason = "completed"
        elif returncode == 0:
            reason = "no_report"
            error = "\n".join(
                [
                    "the script exited 0 but never reported a metric: it must print "
                    f"'{TRIAL_METRIC_PREFIX}{{...}}' lines, e.g. with trellis.reporter.Reporter "
                    "or syne_tune.Reporter",
                    *list(self._tail)[-_NO_REPORT_TAIL_LINES:],
                ]
            )
        else:
            reason = "failed"
            error = "\n".join([*self._tail, _exit_note(returncode)])
        return TrialOutcome(returncode, reason, error, self._reports, self._bad_lines)


def _exit_note(returncode: int | None) -> str:
    if returncode is not None and returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"[trellis] script killed by {name}"
    return f"[trellis] script exited with code {returncode}"
