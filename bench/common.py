"""What every benchmark records about the machine it ran on."""

from __future__ import annotations

import importlib.metadata
import platform
import subprocess
from pathlib import Path

from runtime.embedded_nats import nats_server_binary


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def package_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def nats_server_version() -> str:
    try:
        return subprocess.run(
            [str(nats_server_binary()), "--version"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError) as exc:
        return f"unknown ({exc})"
