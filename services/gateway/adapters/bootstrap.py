"""Bootstrap admin credentials and the sealing key: from settings, else generated once under the data dir."""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography.fernet import Fernet
from pydantic import SecretStr

from services.gateway.config import BootstrapSettings
from services.gateway.domain.keys import new_access_key

CREDENTIALS_FILE = "credentials.json"
SEALING_KEY_FILE = "sealing.key"


@dataclass(frozen=True)
class BootstrapCredentials:
    api_key: str
    access_key_id: str
    secret_access_key: str

    def __repr__(self) -> str:  # never print secrets by accident
        return f"BootstrapCredentials(access_key_id={self.access_key_id!r})"


def gateway_dir(data_dir: Path) -> Path:
    return Path(data_dir) / "gateway"


def _write_private(path: Path, content: bytes) -> None:
    """Create `path` readable by its owner only, atomically; an existing file is kept."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, content)
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)  # fails if another process created it first: theirs wins
    except FileExistsError:
        pass
    finally:
        tmp.unlink()


def _secret(value: SecretStr | None) -> str | None:
    raw = value.get_secret_value() if value is not None else ""
    return raw or None


def load_or_create_credentials(
    data_dir: Path, settings: BootstrapSettings | None = None
) -> BootstrapCredentials:
    """Settings win; anything unset comes from the stored file, generated on first use."""
    settings = settings or BootstrapSettings()
    path = gateway_dir(data_dir) / CREDENTIALS_FILE
    if not path.exists():
        key_id, secret = new_access_key()
        generated = {
            "api_key": f"tra_{secrets.token_urlsafe(32)}",
            "access_key_id": key_id,
            "secret_access_key": secret,
        }
        _write_private(path, json.dumps(generated, indent=2).encode())
    stored = json.loads(path.read_text())
    return BootstrapCredentials(
        api_key=_secret(settings.admin_api_key) or stored["api_key"],
        access_key_id=settings.admin_access_key_id or stored["access_key_id"],
        secret_access_key=_secret(settings.admin_secret_access_key) or stored["secret_access_key"],
    )


def load_or_create_sealing_key(data_dir: Path, configured: SecretStr | None) -> Fernet:
    key = _secret(configured)
    if key is None:
        path = gateway_dir(data_dir) / SEALING_KEY_FILE
        if not path.exists():
            _write_private(path, Fernet.generate_key())
        key = path.read_text().strip()
    return Fernet(key.encode())
