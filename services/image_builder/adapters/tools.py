"""buildah and skopeo as subprocesses: tool checks, streamed output, cancellation, registry auth."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import shutil
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import SecretStr

# Binary -> the Debian package that provides it.
REQUIRED_TOOLS: dict[str, str] = {"buildah": "buildah", "skopeo": "skopeo"}
MAX_LINE = 8192  # a longer line (a progress bar without newlines) is cut


class ToolMissing(RuntimeError):
    pass


class ProcessCancelled(Exception):
    pass


class ProcessTimedOut(Exception):
    pass


def check_tools() -> None:
    """Raise naming every missing tool and the package to install."""
    missing = [name for name in REQUIRED_TOOLS if shutil.which(name) is None]
    if missing:
        raise ToolMissing(
            ", ".join(
                f"{name} is not installed (Debian package {REQUIRED_TOOLS[name]!r})"
                for name in missing
            )
            + ": `make run` installs it"
        )


LineSink = Callable[[str], Awaitable[None]]


async def run_streaming(
    argv: list[str],
    on_line: LineSink,
    *,
    env: dict[str, str],
    cwd: Path | None = None,
    timeout_s: float,
    cancelled: asyncio.Event | None = None,
) -> int:
    """Run `argv`, handing each output line (stdout and stderr merged) to `on_line`; return its code.

    The process gets its own process group so that cancelling also stops what it started
    (a RUN step's shell).
    """
    process = await asyncio.create_subprocess_exec(
        *argv,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        stdin=asyncio.subprocess.DEVNULL,
        env=env,
        cwd=cwd,
        start_new_session=True,
    )
    assert process.stdout is not None

    async def pump() -> None:
        assert process.stdout is not None
        while True:
            try:
                raw = await process.stdout.readuntil(b"\n")
            except asyncio.IncompleteReadError as exc:
                raw = exc.partial
                if raw:
                    await on_line(raw[:MAX_LINE].decode(errors="replace").rstrip("\r\n"))
                return
            except asyncio.LimitOverrunError as exc:
                raw = await process.stdout.readexactly(exc.consumed)
            await on_line(raw[:MAX_LINE].decode(errors="replace").rstrip("\r\n"))

    pumping = asyncio.create_task(pump())
    waiters: set[asyncio.Future[Any]] = {asyncio.ensure_future(process.wait())}
    cancel_wait: asyncio.Future[Any] | None = None
    if cancelled is not None:
        cancel_wait = asyncio.ensure_future(cancelled.wait())
        waiters.add(cancel_wait)
    try:
        done, _ = await asyncio.wait(
            waiters, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED
        )
        if process.returncode is None:
            await _kill(process)
            if cancel_wait is not None and cancel_wait in done:
                raise ProcessCancelled()
            raise ProcessTimedOut()
        await pumping
        return process.returncode
    finally:
        for waiter in waiters:
            waiter.cancel()
        if not pumping.done():
            pumping.cancel()
        if process.returncode is None:
            await _kill(process)


async def _kill(process: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        await asyncio.wait_for(process.wait(), timeout=10)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        await process.wait()


async def run_captured(argv: list[str], *, env: dict[str, str], timeout_s: float) -> bytes:
    """Run `argv` and return its stdout; a failure raises with its stderr."""
    process = await asyncio.create_subprocess_exec(
        *argv,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        stdin=asyncio.subprocess.DEVNULL,
        env=env,
        start_new_session=True,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), timeout=timeout_s)
    except TimeoutError:
        await _kill(process)
        raise ProcessTimedOut() from None
    if process.returncode != 0:
        message = err.decode(errors="replace").strip().splitlines()
        raise RuntimeError(
            message[-1] if message else f"{argv[0]} exited with {process.returncode}"
        )
    return out


@dataclass(frozen=True)
class Registry:
    """The registry builds are pushed to, with its credentials (kept in a 0600 auth file)."""

    address: str
    tls_verify: bool
    username: str | None = None
    password: SecretStr | None = None

    def write_authfile(self, path: Path) -> Path:
        """containers-auth.json for buildah and skopeo: credentials never appear on a command line."""
        auths = {}
        if self.username and self.password:
            token = f"{self.username}:{self.password.get_secret_value()}".encode()
            auths[self.address] = {"auth": base64.b64encode(token).decode()}
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump({"auths": auths}, handle)
        return path

    def verify_for(self, reference: str) -> bool:
        """TLS verification for a reference: off only for this registry when configured so."""
        host = reference.split("/", 1)[0]
        return self.tls_verify or host != self.address


def tool_env(work_dir: Path) -> dict[str, str]:
    """A small, predictable environment: no inherited secrets, containers' config under work_dir."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
        "HOME": str(work_dir),
        "XDG_RUNTIME_DIR": str(work_dir / "run"),
        "BUILDAH_ISOLATION": "chroot",
        "LANG": "C.UTF-8",
    }
    (work_dir / "run").mkdir(parents=True, exist_ok=True)
    return env
