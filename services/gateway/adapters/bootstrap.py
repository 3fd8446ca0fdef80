"""Bootstrap admin credentials and the sealing key: from settings, else generated once under the data dir."""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography.fernet import Fernet
from pydantic import SecretStr

from runtime.sealing import configured_secret, load_or_create_fernet, write_private
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
        write_private(path, json.dumps(generated, indent=2).encode())
    stored = json.loads(path.read_text())
    secret_access_key = configured_secret(settings.admin_secret_access_key)
    return BootstrapCredentials(
        api_key=configured_secret(settings.admin_api_key) or stored["api_key"],
        access_key_id=settings.admin_access_key_id or stored["access_key_id"],
        secret_access_key=secret_access_key or stored["secret_access_key"],
    )


def load_or_create_sealing_key(data_dir: Path, configured: SecretStr | None) -> Fernet:
    return load_or_create_fernet(gateway_dir(data_dir) / SEALING_KEY_FILE, configured)
