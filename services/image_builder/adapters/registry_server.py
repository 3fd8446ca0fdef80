"""The embedded OCI registry: the Distribution registry (Debian's docker-registry) on loopback."""

from __future__ import annotations

import ipaddress
import shutil
from pathlib import Path

REGISTRY_BINARY = "docker-registry"


def is_loopback(address: str) -> bool:
    host = address.rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def registry_argv(data_dir: Path, address: str) -> list[str]:
    """The command that serves a registry at `address`, storing under `data_dir`."""
    binary = shutil.which(REGISTRY_BINARY)
    if binary is None:
        raise RuntimeError(
            f"{REGISTRY_BINARY} is not installed (Debian package 'docker-registry'): "
            "`make run` installs it"
        )
    data_dir.mkdir(parents=True, exist_ok=True)
    config = data_dir / "config.yml"
    # No auth on loopback; delete enabled so that tests and operators can clean up.
    config.write_text(
        "version: 0.1\n"
        "log:\n  level: warn\n  accesslog:\n    disabled: true\n"
        f"storage:\n  filesystem:\n    rootdirectory: {data_dir / 'storage'}\n"
        "  delete:\n    enabled: true\n"
        f"http:\n  addr: {address}\n"
    )
    return [binary, "serve", str(config)]
