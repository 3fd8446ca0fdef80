"""The platform as processes for benchmarks: nats-server and services started as `trellis up` does."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

import httpx

from contracts import subjects
from contracts.system import PingReply, PingRequest
from runtime.bus import Bus
from runtime.embedded_nats import EmbeddedNats
from trellis.cli import process_specs

REPO_ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Platform:
    """nats-server plus some of the services, each its own process.

    The processes are started with exactly the commands `trellis up` uses (trellis.cli
    process_specs); the services a benchmark does not name are left out. `env` adds settings.
    """

    def __init__(self, root: Path, env: dict[str, str] | None = None) -> None:
        self.root = root
        self.extra_env = env or {}
        self.data_dir = root / "data"
        self.logs = root / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.nats = EmbeddedNats(root / "nats", port=0)
        self.url = ""
        self.port = free_port()
        self.http_url = f"http://127.0.0.1:{self.port}"
        self.api_key = f"tra_{secrets.token_urlsafe(32)}"
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start_nats(self) -> str:
        self.url = self.nats.start()
        return self.url

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "TRELLIS_NATS_URL": self.url,
            "TRELLIS_DATA_DIR": str(self.data_dir),
            "TRELLIS_LOG_LEVEL": "WARNING",
            "TRELLIS_GATEWAY_HOST": "127.0.0.1",
            "TRELLIS_GATEWAY_PORT": str(self.port),
            "TRELLIS_ADMIN_API_KEY": self.api_key,
            **self.extra_env,
        }

    def start(self, name: str, argv: list[str] | None = None) -> None:
        spec = next(s for s in process_specs(self.url, 0, self.data_dir) if s.name == name)
        with (self.logs / f"{name}.log").open("ab") as log:
            self.procs[name] = subprocess.Popen(
                argv or spec.argv,
                cwd=REPO_ROOT,
                env={**self.env(), **spec.env},
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )

    def stop(self, name: str, timeout_s: float = 30.0) -> None:
        proc = self.procs.pop(name, None)
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def kill(self, name: str) -> None:
        proc = self.procs.pop(name, None)
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()

    def close(self) -> None:
        for name in reversed(list(self.procs)):
            self.stop(name)
        self.nats.stop()

    def pids(self) -> dict[str, int]:
        out = {name: proc.pid for name, proc in self.procs.items()}
        if self.nats.process is not None:
            out["nats-server"] = self.nats.process.pid
        out["bench client"] = os.getpid()
        return out

    def log_tail(self, name: str, lines: int = 30) -> str:
        path = self.logs / f"{name}.log"
        return (
            "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
            if path.exists()
            else ""
        )

    def check_alive(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                raise RuntimeError(
                    f"{name} exited with {proc.returncode}; its log:\n{self.log_tail(name)}"
                )

    async def wait_ready(
        self, bus: Bus, http: httpx.AsyncClient, names: Sequence[str], timeout_s: float = 120.0
    ) -> float:
        began = time.perf_counter()
        pending = list(names)
        while pending:
            self.check_alive()
            if time.perf_counter() - began > timeout_s:
                raise RuntimeError(f"not ready after {timeout_s:g}s: {pending}")
            name = pending[0]
            try:
                if name == "gateway":
                    ready = (await http.get("/v1/whoami")).status_code == 200
                else:
                    await bus.request(
                        subjects.ping(name), PingRequest(), PingReply, timeout_s=1.0, service=name
                    )
                    ready = True
            except Exception:
                ready = False
            if ready:
                pending.pop(0)
            else:
                await asyncio.sleep(0.2)
        return time.perf_counter() - began
