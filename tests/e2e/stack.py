"""The whole platform as `make run` starts it, in a subprocess: for the end-to-end tests."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from tests.conftest import free_port

READY_TIMEOUT_S = 120


class Stack:
    def __init__(self, data_dir: Path, port: int, extra_env: dict[str, str] | None = None) -> None:
        self.data_dir = data_dir
        self.url = f"http://127.0.0.1:{port}"
        env = {
            **os.environ,
            "TRELLIS_DATA_DIR": str(data_dir),
            "TRELLIS_GATEWAY_PORT": str(port),
            "TRELLIS_IMAGE_BUILDER_REGISTRY": f"127.0.0.1:{free_port()}",
            **(extra_env or {}),
        }
        for name in ("TRELLIS_NATS_URL", "TRELLIS_ADMIN_API_KEY", "TRELLIS_API_KEY"):
            env.pop(name, None)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "trellis.cli", "up", "--nats-port", "0"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip())

    def wait_for(self, check: Callable[[], bool], timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        while not check():
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"timed out waiting for {what}; output:\n" + "\n".join(self.lines)
                )
            time.sleep(0.1)

    def said(self, text: str) -> bool:
        return any(text in line for line in self.lines)

    @property
    def credentials(self) -> dict[str, str]:
        creds: dict[str, str] = json.loads(
            (self.data_dir / "gateway" / "credentials.json").read_text()
        )
        return creds


@contextlib.contextmanager
def running_stack(data_dir: Path, extra_env: dict[str, str] | None = None) -> Iterator[Stack]:
    """Starts `trellis up`, waits until it is ready, and stops it (SIGINT, then kill) after."""
    running = Stack(data_dir, free_port(), extra_env)
    try:
        running.wait_for(
            lambda: running.said("Trellis is ready"), READY_TIMEOUT_S, "the stack to be ready"
        )
        yield running
    finally:
        if running.process.poll() is None:
            running.process.send_signal(signal.SIGINT)
            try:
                running.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                running.process.kill()
